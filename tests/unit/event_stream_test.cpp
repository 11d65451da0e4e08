// Event streams (catalog rows I1 and I2) in-process: the chain is a gmock Forwarder answering
// eth_getLogs from a scripted list, the application's webhook a FakeUpstream on loopback, the
// journal the real one in a temporary folder. What is delivered, how it is signed, that a batch
// the handler does not acknowledge is sent again and never skipped, and that a restart resumes
// from the last acknowledged checkpoint.

#include "gateway/streams/event_stream.hpp"

#include "gateway/metrics/metrics.hpp"
#include "gateway/store/store.hpp"
#include "support/fake_upstream.hpp"
#include "support/io_thread.hpp"
#include "support/mock_forwarder.hpp"
#include "support/process.hpp"

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <atomic>
#include <limits>
#include <mutex>
#include <thread>

namespace gateway {
namespace {

using namespace std::chrono_literals;
using ::testing::_;
using ::testing::HasSubstr;
namespace json = boost::json;

const std::string kSecret = "a-webhook-secret-of-32-bytes-xx";

// Block `block`'s hash: a reorg (`forked`) replaces it with another.
std::string block_hash(std::uint64_t block, bool forked = false) {
    return forked ? fmt::format("0xf{:063x}", block) : fmt::format("0x{:064x}", block);
}

// A log of block `block` (one per block here), index `index`.
std::string log_json(std::uint64_t block, unsigned index = 0, bool forked = false) {
    return fmt::format(
        R"({{"address":"0x5fbdb2315678afecb367f032d93f642f64180aa3","topics":["0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"],"data":"0x","blockNumber":"0x{:x}","blockHash":"{}","transactionHash":"0x{:064x}","logIndex":"0x{:x}","removed":false}})",
        block, block_hash(block, forked), block * 100 + index, index);
}

// The value of `series` (name and labels) in the metrics' text; -1 when it is not there.
double metric_value(const std::string& text, const std::string& series) {
    const std::string key = "\n" + series + " ";
    const auto pos = text.find(key);
    if (pos == std::string::npos) return -1;
    return std::stod(text.substr(pos + key.size()));
}

// An event's id: (chain id, block hash, log index).
std::string event_id(std::uint64_t block, bool forked = false) {
    return "31337:" + block_hash(block, forked) + ":0";
}

class EventStreamTest : public ::testing::Test {
protected:
    EventStreamTest()
        : dir_(test::make_temp_dir("event-stream")), journal_([d = dir_] {
              return std::unique_ptr<store::Journal>(
                  store::open_store(config::StoreConfig{"sqlite", d + "/j.db"}));
          }) {
        webhook.watch_header("x-gateway-signature");
        ON_CALL(pool, head()).WillByDefault([this] {
            return std::optional<std::uint64_t>(head.load());
        });
        // Asked of nodes at or above the range's last block only (forward_at_least): plain
        // forward() is not scripted, so a stream that used it would get nothing.
        ON_CALL(pool, forward_at_least(_, _, _, _))
            .WillByDefault(
                [this](std::string method, json::value params, std::uint64_t min_block, auto&&...) {
                    if (method == "eth_getLogs") {
                        std::lock_guard lock(mu_);
                        min_blocks.push_back(min_block);
                    }
                    return test::ready_awaitable(logs(method, params));
                });
        config.id = "transfers";
        config.chain = "devnet";
        config.from_block = 5;
        config.confirmations = 2;
        config.batch_size = 2;
        config.webhook.url = webhook.url() + "/events";
        config.webhook.timeout = 2s;
        config.webhook.secret = kSecret;
    }
    ~EventStreamTest() override {
        if (stream) stream->stop();
        io.finish();
    }
    // (The loop runs out before the stream goes: its coroutine is over by then.)

    void start() {
        stream = std::make_unique<streams::EventStream>(config, 31337, pool, journal_, &metrics,
                                                        io.ioc.get_executor(), 10ms);
        stream->start();
    }
    // The events the webhook got, every delivery's, in order (repeats included).
    std::vector<std::string> delivered_ids() const {
        std::vector<std::string> out;
        for (const auto& [body, signature] : webhook.raw_requests()) {
            const json::value batch = json::parse(body);  // kept: the loop reads into it
            for (const auto& e : batch.at("events").as_array())
                out.push_back(std::string(e.at("id").as_string()));
        }
        return out;
    }
    static bool wait_for(const std::function<bool()>& done) {
        const auto deadline = std::chrono::steady_clock::now() + 10s;
        while (std::chrono::steady_clock::now() < deadline) {
            if (done()) return true;
            std::this_thread::sleep_for(2ms);
        }
        return done();
    }
    std::uint64_t next_block() const {
        const json::value v = stream->view().at("nextBlock");
        return v.is_null() ? 0 : v.to_number<std::uint64_t>();
    }

    // eth_getLogs over the scripted chain: one log in each block of `blocks_with_logs`; and
    // eth_getBlockByNumber, for its hash (blocks from `fork_from` on replaced by a reorg).
    upstream::Forwarded logs(const std::string& method, const json::value& params) {
        if (method == "eth_getBlockByNumber") {
            const auto n = std::stoull(std::string(params.at(0).as_string()), nullptr, 16);
            std::lock_guard lock(mu_);
            return test::answered(fmt::format(R"({{"number":"0x{:x}","hash":"{}"}})", n,
                                              block_hash(n, n >= fork_from)));
        }
        if (method != "eth_getLogs") return test::unavailable("not scripted: " + method);
        const auto& filter = params.at(0).as_object();
        const auto from = std::stoull(std::string(filter.at("fromBlock").as_string()), nullptr, 16);
        const auto to = std::stoull(std::string(filter.at("toBlock").as_string()), nullptr, 16);
        std::lock_guard lock(mu_);
        asked.emplace_back(from, to);
        std::string out = "[";
        for (auto b : blocks_with_logs)
            if (b >= from && b <= to)
                out += (out.size() > 1 ? "," : "") + log_json(b, 0, b >= fork_from);
        return test::answered(out + "]");
    }
    // Every delivery's events from the `first`th on: {id, removed}.
    std::vector<std::pair<std::string, bool>> events_since(std::size_t first) const {
        std::vector<std::pair<std::string, bool>> out;
        const auto requests = webhook.raw_requests();
        for (std::size_t i = first; i < requests.size(); ++i) {
            const json::value batch = json::parse(requests[i].first);
            for (const auto& e : batch.at("events").as_array()) {
                const bool removed = e.at("removed").as_bool();
                EXPECT_EQ(e.at("log").at("removed").as_bool(), removed);
                out.emplace_back(std::string(e.at("id").as_string()), removed);
            }
        }
        return out;
    }

    metrics::Metrics metrics;
    test::IoThread io;
    ::testing::NiceMock<test::MockForwarder> pool;
    test::FakeUpstream webhook;
    config::StreamConfig config;
    std::atomic<std::uint64_t> head{20};
    std::vector<std::uint64_t> blocks_with_logs{5, 6, 7, 9, 30};
    std::uint64_t fork_from = std::numeric_limits<std::uint64_t>::max();
    std::vector<std::pair<std::uint64_t, std::uint64_t>> asked;
    std::vector<std::uint64_t> min_blocks;  // what forward_at_least was asked to need
    std::unique_ptr<streams::EventStream> stream;

private:
    std::string dir_;

protected:
    store::JournalService journal_;
    std::mutex mu_;
};

TEST(EventStreamSignature, IsTheHmacSha256OfTheTimeAndTheBody) {
    // Computed independently: Python's hmac.new(b"Jefe", b'1700000000.{"a":1}', sha256).
    EXPECT_EQ(streams::signature("Jefe", 1'700'000'000, R"({"a":1})"),
              "t=1700000000,v1=fa5f6481efc59da48b19c9dc10196c9953e5651f8304b3a318b6b87d70272e0a");
}

TEST_F(EventStreamTest, I2_BatchesAreSignedAndTheCheckpointMovesOnlyOnceAcknowledged) {
    // The handler fails twice (HTTP 500), then acknowledges.
    std::atomic<int> answers{0};
    webhook.set_script(
        [&](const std::string&, const json::value&) -> std::optional<test::FakeReply> {
            if (++answers <= 2) return test::FakeReply::http(500, "handler failed");
            return test::FakeReply::http(200, "{}");
        });
    start();
    // Blocks 5-18 are confirmed (head 20, 2 confirmations): events of 5, 6, 7 and 9. (The view
    // shows the checkpoint once it is journaled, and the delivery's count just after: both.)
    ASSERT_TRUE(wait_for([&] {
        return next_block() == 19 && stream->view().at("deliveredEvents").to_number<int>() >= 4;
    })) << json::serialize(stream->view());
    const auto requests = webhook.raw_requests();
    ASSERT_GE(requests.size(), 4u);
    // The first batch three times (two failures, then its acknowledgement), never skipped.
    const std::vector<std::string> first = {"31337:0x" + fmt::format("{:064x}", 5) + ":0",
                                            "31337:0x" + fmt::format("{:064x}", 6) + ":0"};
    for (int i = 0; i < 3; ++i) {
        std::vector<std::string> ids;
        const json::value batch = json::parse(requests[i].first);
        for (const auto& e : batch.at("events").as_array())
            ids.push_back(std::string(e.at("id").as_string()));
        EXPECT_EQ(ids, first) << i;
    }
    // Then the rest, in order: every event once acknowledged.
    const json::value second = json::parse(requests[3].first);
    EXPECT_EQ(second.at("events").as_array().size(), 2u);
    EXPECT_EQ(second.at("checkpoint").at("fromBlock").to_number<int>(), 7);
    EXPECT_EQ(second.at("checkpoint").at("nextBlock").to_number<int>(), 19);
    // Each delivery is signed: t=<unix seconds>,v1=<HMAC-SHA256 of "<t>.<body>">.
    for (const auto& [body, header] : requests) {
        ASSERT_THAT(header, HasSubstr("t="));
        const auto comma = header.find(',');
        const std::int64_t t = std::stoll(header.substr(2, comma - 2));
        EXPECT_EQ(header, streams::signature(kSecret, t, body));
        EXPECT_NEAR(static_cast<double>(t),
                    static_cast<double>(std::chrono::duration_cast<std::chrono::seconds>(
                                            std::chrono::system_clock::now().time_since_epoch())
                                            .count()),
                    60.0);
    }
    EXPECT_NE(streams::signature(kSecret, 1, "a"),
              streams::signature("another-secret-xxxxx", 1, "a"));
    EXPECT_EQ(stream->view().at("deliveredEvents").to_number<int>(), 4);
    {
        // Every range was asked of nodes that have its last block.
        std::lock_guard lock(mu_);
        ASSERT_EQ(asked.size(), min_blocks.size());
        for (std::size_t i = 0; i < asked.size(); ++i) EXPECT_EQ(min_blocks[i], asked[i].second);
    }
    // The chain grows: block 30's event once 32 is the head.
    head = 32;
    ASSERT_TRUE(wait_for([&] { return next_block() == 31; }));
    EXPECT_EQ(delivered_ids().back(), "31337:0x" + fmt::format("{:064x}", 30) + ":0");
}

TEST_F(EventStreamTest, I1_ARestartResumesFromTheLastAcknowledgedCheckpoint) {
    std::atomic<bool> down{false};
    webhook.set_script(
        [&](const std::string&, const json::value&) -> std::optional<test::FakeReply> {
            if (down) return test::FakeReply::http(503, "down");
            return test::FakeReply::http(204, "");
        });
    start();
    ASSERT_TRUE(wait_for([&] { return next_block() == 19; }));
    // The handler goes down; new events come; the gateway stops before they are acknowledged.
    down = true;
    {
        std::lock_guard lock(mu_);  // logs() reads it on the loop's thread
        blocks_with_logs.push_back(22);
    }
    head = 30;
    ASSERT_TRUE(wait_for([&] { return stream->view().at("failures").to_number<int>() >= 1; }));
    EXPECT_EQ(next_block(), 19u);
    // The failed deliveries are counted, and the lag shows the confirmed blocks 19-28 waiting.
    const std::string text = metrics.render();
    EXPECT_GE(metric_value(
                  text, R"(gateway_stream_deliveries_total{outcome="failed",stream="transfers"})"),
              1);
    EXPECT_EQ(metric_value(text, R"(gateway_stream_lag_blocks{stream="transfers"})"), 10);
    EXPECT_EQ(stream->view().at("lagBlocks").to_number<int>(), 10);
    stream->stop();
    ASSERT_TRUE(wait_for([&] { return stream->finished(); }));
    stream.reset();

    // Back: from the checkpoint (19), the unacknowledged event comes again, nothing before it.
    const std::size_t before = webhook.raw_requests().size();
    down = false;
    start();
    ASSERT_TRUE(wait_for([&] { return next_block() == 29; })) << json::serialize(stream->view());
    std::vector<std::string> after;
    const auto requests = webhook.raw_requests();
    for (std::size_t i = before; i < requests.size(); ++i) {
        const json::value batch = json::parse(requests[i].first);
        for (const auto& e : batch.at("events").as_array())
            after.push_back(std::string(e.at("id").as_string()));
    }
    EXPECT_EQ(after, (std::vector<std::string>{"31337:0x" + fmt::format("{:064x}", 22) + ":0"}));
    // Caught up: no lag, and the acknowledged deliveries of both runs counted.
    const std::string caught_up = metrics.render();
    EXPECT_EQ(metric_value(caught_up, R"(gateway_stream_lag_blocks{stream="transfers"})"), 0);
    EXPECT_GE(metric_value(
                  caught_up,
                  R"(gateway_stream_deliveries_total{outcome="acknowledged",stream="transfers"})"),
              3);
}

TEST_F(EventStreamTest, PauseResumeAndResetAreAnOperatorsAndResetDeliversAgain) {
    webhook.set_script(
        [](const std::string&, const json::value&) -> std::optional<test::FakeReply> {
            return test::FakeReply::http(200, "ok");
        });
    start();
    ASSERT_TRUE(wait_for([&] { return next_block() == 19; }));
    const auto paused = io.run(stream->act("pause", std::nullopt));
    EXPECT_EQ(paused.status, 200u);
    EXPECT_TRUE(paused.body.at("paused").as_bool());
    const std::size_t before = webhook.raw_requests().size();
    head = 40;  // block 30's event is confirmed, but the stream is paused
    std::this_thread::sleep_for(100ms);
    EXPECT_EQ(webhook.raw_requests().size(), before);
    EXPECT_EQ(next_block(), 19u);
    EXPECT_EQ(stream->view().at("lagBlocks").to_number<int>(), 20);  // blocks 19-38

    ASSERT_EQ(io.run(stream->act("resume", std::nullopt)).status, 200u);
    ASSERT_TRUE(wait_for([&] { return next_block() == 39; }));
    // Reset never skips: past the checkpoint it is refused.
    const auto skip = io.run(stream->act("reset", 1000));
    EXPECT_EQ(skip.status, 409u);
    EXPECT_THAT(json::serialize(skip.body), HasSubstr("would skip blocks"));
    EXPECT_EQ(next_block(), 39u);
    // Reset to block 6: its events come again (at least once: the receiver drops repeats).
    ASSERT_EQ(io.run(stream->act("reset", 6)).status, 200u);
    ASSERT_TRUE(wait_for([&] {
        const auto ids = delivered_ids();
        return std::count(ids.begin(), ids.end(), "31337:0x" + fmt::format("{:064x}", 6) + ":0") ==
               2;
    }));
}

// A reorg deeper than the confirmations replaces blocks 7 and up after they were delivered: the
// events of the dropped blocks come again as removed (newest first, ids of their own), then the
// new chain's events from the block after the last one the chain still has.
TEST_F(EventStreamTest, I1_AReorgUndoesTheDroppedBlocksEventsThenDeliversTheNewOnes) {
    webhook.set_script(
        [](const std::string&, const json::value&) -> std::optional<test::FakeReply> {
            return test::FakeReply::http(200, "ok");
        });
    start();
    ASSERT_TRUE(wait_for([&] { return next_block() == 19; }));
    const std::size_t before = webhook.raw_requests().size();
    {
        std::lock_guard lock(mu_);
        fork_from = 7;
        blocks_with_logs = {5, 6, 8, 9, 30};  // the new 7 has no event, the new 8 has one
    }
    ASSERT_TRUE(wait_for([&] {
        return stream->view().at("reorgsUndone").to_number<int>() == 1 && next_block() == 19;
    })) << json::serialize(stream->view());
    const std::vector<std::pair<std::string, bool>> expected = {{event_id(9) + ":removed", true},
                                                                {event_id(7) + ":removed", true},
                                                                {event_id(8, true), false},
                                                                {event_id(9, true), false}};
    EXPECT_EQ(events_since(before), expected);
    const json::value undo = json::parse(webhook.raw_requests()[before].first);
    EXPECT_TRUE(undo.at("checkpoint").at("reorg").as_bool());
    EXPECT_EQ(undo.at("checkpoint").at("nextBlock").to_number<int>(), 7);

    // Remembered across a restart: the chain going back to its first blocks is undone too, a
    // batch (now one event) at a time.
    stream->stop();
    ASSERT_TRUE(wait_for([&] { return stream->finished(); }));
    stream.reset();
    config.batch_size = 1;
    const std::size_t second = webhook.raw_requests().size();
    {
        std::lock_guard lock(mu_);
        fork_from = std::numeric_limits<std::uint64_t>::max();
        blocks_with_logs = {5, 6, 7, 9, 30};
    }
    start();
    ASSERT_TRUE(wait_for([&] {
        return stream->view().at("reorgsUndone").to_number<int>() == 1 && next_block() == 19;
    })) << json::serialize(stream->view());
    const std::vector<std::pair<std::string, bool>> back = {{event_id(9, true) + ":removed", true},
                                                            {event_id(8, true) + ":removed", true},
                                                            {event_id(7), false},
                                                            {event_id(9), false}};
    EXPECT_EQ(events_since(second), back);
    const auto requests = webhook.raw_requests();
    ASSERT_GE(requests.size(), second + 2);
    for (std::size_t i = second; i < second + 2; ++i) {
        const json::value batch = json::parse(requests[i].first);
        EXPECT_EQ(batch.at("events").as_array().size(), 1u);
        EXPECT_TRUE(batch.at("checkpoint").at("reorg").as_bool());
    }
}

// A batch whose answer was lost may have been processed: a reorg that drops its blocks undoes it
// too, though it was never acknowledged.
TEST_F(EventStreamTest, I1_AReorgUndoesABatchSentButNeverAcknowledged) {
    std::atomic<bool> down{true};
    webhook.set_script(
        [&](const std::string&, const json::value&) -> std::optional<test::FakeReply> {
            return test::FakeReply::http(down ? 500 : 200, "");
        });
    start();
    ASSERT_TRUE(wait_for([&] { return webhook.raw_requests().size() >= 1; }));
    EXPECT_EQ(next_block(), 5u);
    {
        std::lock_guard lock(mu_);
        fork_from = 5;
        blocks_with_logs = {8};
    }
    down = false;
    ASSERT_TRUE(wait_for([&] { return next_block() == 19; })) << json::serialize(stream->view());
    const auto all = events_since(0);
    ASSERT_GE(all.size(), 5u);
    const std::vector<std::pair<std::string, bool>> tail(all.end() - 3, all.end());
    const std::vector<std::pair<std::string, bool>> expected = {{event_id(6) + ":removed", true},
                                                                {event_id(5) + ":removed", true},
                                                                {event_id(8, true), false}};
    EXPECT_EQ(tail, expected);
}

// kind: transactions: the state changes of the gateway's own transactions of the chosen senders,
// from when the stream starts, each once, with the id (chain id, transaction, change number); a
// restart goes on from the cursor.
TEST_F(EventStreamTest, ATransactionStreamDeliversTheStateChangesOfItsSenders) {
    webhook.set_script(
        [](const std::string&, const json::value&) -> std::optional<test::FakeReply> {
            return test::FakeReply::http(200, "ok");
        });
    const std::string mine = "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266";
    auto raw = [&](const std::string& hash, const std::string& sender) {
        store::TxRecord r;
        r.hash = hash;
        r.chain = "devnet";
        r.chain_id = 31337;
        r.sender = sender;
        r.raw = {0x02};
        r.reason = "received";
        r.created_ms = r.updated_ms = 1000;
        journal_.run_blocking([&](store::JournalView& j) { j.insert(r); });
    };
    raw("0xbefore", mine);  // before the stream: not delivered
    config.kind = config::StreamConfig::Kind::transactions;
    config.senders = {mine};
    config.from_block.reset();
    config.confirmations = 0;
    config.batch_size = 100;
    start();
    ASSERT_TRUE(wait_for([&] { return stream->view().at("state") == "following"; }));
    raw("0xa1", mine);
    raw("0xb1", "0x70997970c51812dc3a010c7d01b436ee9ddcf79c");  // another sender's
    journal_.run_blocking([&](store::JournalView& j) {
        j.update(store::TxUpdate{"0xa1", store::TxState::broadcasting, "accepted by node-a", 1100});
    });
    ASSERT_TRUE(wait_for([&] {
        return stream->view().at("deliveredEvents").to_number<int>() == 2;
    })) << json::serialize(stream->view());
    std::vector<std::string> states;
    std::vector<std::string> ids;
    for (const auto& [body, signature] : webhook.raw_requests()) {
        const json::value batch = json::parse(body);
        EXPECT_EQ(batch.at("kind"), "transactions");
        for (const auto& e : batch.at("events").as_array()) {
            EXPECT_EQ(e.at("transaction"), "0xa1");
            EXPECT_EQ(e.at("sender").as_string(), mine);
            states.push_back(std::string(e.at("state").as_string()));
            ids.push_back(std::string(e.at("id").as_string()));
        }
    }
    EXPECT_EQ(states, (std::vector<std::string>{"QUEUED", "BROADCASTING"}));
    ASSERT_EQ(ids.size(), 2u);
    EXPECT_THAT(ids[0], ::testing::StartsWith("31337:0xa1:"));
    EXPECT_NE(ids[0], ids[1]);
    EXPECT_EQ(io.run(stream->act("reset", 1)).status, 409u) << "it has no blocks to go back to";

    // A restart goes on after what was acknowledged.
    stream->stop();
    ASSERT_TRUE(wait_for([&] { return stream->finished(); }));
    stream.reset();
    const std::size_t before = webhook.raw_requests().size();
    journal_.run_blocking([&](store::JournalView& j) {
        j.update(store::TxUpdate{"0xa1", store::TxState::completed, "mined", 1200});
    });
    start();
    ASSERT_TRUE(
        wait_for([&] { return stream->view().at("deliveredEvents").to_number<int>() == 1; }));
    const json::value last = json::parse(webhook.raw_requests().at(before).first);
    ASSERT_EQ(last.at("events").as_array().size(), 1u);
    EXPECT_EQ(last.at("events").at(0).at("state"), "COMPLETED");
}

// A managed transaction's changes are delivered too: ids (chain id, gateway id, change number),
// and its end (here CANCELLED, with its reason); its signed attempts are not the client's.
TEST_F(EventStreamTest, ATransactionStreamDeliversAManagedTransactionsChangesToItsEnd) {
    webhook.set_script(
        [](const std::string&, const json::value&) -> std::optional<test::FakeReply> {
            return test::FakeReply::http(200, "ok");
        });
    const std::string mine = "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266";
    const std::string id = "gtx-0123456789abcdef01234567";
    config.kind = config::StreamConfig::Kind::transactions;
    config.senders = {mine};
    config.from_block.reset();
    config.confirmations = 0;
    config.batch_size = 100;
    start();
    ASSERT_TRUE(wait_for([&] { return stream->view().at("state") == "following"; }));
    journal_.run_blocking([&](store::JournalView& j) {
        store::ManagedRecord m;
        m.id = id;
        m.chain = "devnet";
        m.sender = mine;
        m.request =
            R"({"from":")" + mine + R"(","to":"0x000000000000000000000000000000000000dEaD"})";
        m.idempotency_key = "order-7";
        m.reason = "queued";
        m.created_ms = m.updated_ms = 1000;
        ASSERT_TRUE(j.insert_managed(m).second);
        store::ManagedUpdate signing{id, store::TxState::signing, "signing", 1100};
        signing.nonce = 5;
        ASSERT_TRUE(j.update_managed(signing));
        // Its signed attempt: a raw transaction of its own, not delivered as one.
        store::TxRecord attempt;
        attempt.hash = "0xa7";
        attempt.chain = "devnet";
        attempt.chain_id = 31337;
        attempt.sender = mine;
        attempt.raw = {0x02};
        attempt.reason = "signed";
        attempt.parent = id;
        attempt.created_ms = attempt.updated_ms = 1150;
        j.insert(attempt);
        ASSERT_TRUE(j.update_managed(
            store::ManagedUpdate{id, store::TxState::cancelled, "cancelled by an operator", 1200}));
    });
    ASSERT_TRUE(wait_for([&] {
        return stream->view().at("deliveredEvents").to_number<int>() == 3;
    })) << json::serialize(stream->view());
    std::vector<json::object> events;
    std::int64_t checkpoint = 0;  // the last batch's place in the managed changes
    for (const auto& [body, signature] : webhook.raw_requests()) {
        const json::value batch = json::parse(body);  // kept: the loop reads into it
        for (const auto& e : batch.at("events").as_array()) events.push_back(e.as_object());
        checkpoint = batch.at("checkpoint").at("managed").to_number<std::int64_t>();
    }
    ASSERT_EQ(events.size(), 3u);
    std::vector<std::string> states;
    std::vector<std::int64_t> seqs;
    for (const auto& e : events) {
        EXPECT_EQ(e.at("transaction").as_string(), id);
        EXPECT_TRUE(e.at("managed").as_bool());
        EXPECT_EQ(e.at("sender").as_string(), mine);
        EXPECT_EQ(e.at("idempotencyKey").as_string(), "order-7");
        states.push_back(std::string(e.at("state").as_string()));
        const std::string event_id(e.at("id").as_string());
        const std::string prefix = "31337:" + id + ":";
        ASSERT_THAT(event_id, ::testing::StartsWith(prefix));
        const std::string seq = event_id.substr(prefix.size());
        ASSERT_FALSE(seq.empty());
        ASSERT_EQ(seq.find_first_not_of("0123456789"), std::string::npos) << event_id;
        seqs.push_back(std::stoll(seq));
    }
    EXPECT_EQ(states, (std::vector<std::string>{"QUEUED", "SIGNING", "CANCELLED"}));
    // The change numbers are the journal's: one after the other, the last where it stands.
    EXPECT_EQ(seqs[1], seqs[0] + 1);
    EXPECT_EQ(seqs[2], seqs[1] + 1);
    std::int64_t last = 0;
    journal_.run_blocking([&](store::JournalView& j) { last = j.last_changes().second; });
    EXPECT_EQ(seqs[2], last);
    EXPECT_EQ(checkpoint, last);
    EXPECT_EQ(events[1].at("nonce").to_number<std::uint64_t>(), 5u);
    EXPECT_EQ(events[2].at("reason").as_string(), "cancelled by an operator");
}

}  // namespace
}  // namespace gateway
