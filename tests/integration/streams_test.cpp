// Catalog rows I1 and I2 end to end: the real binary follows the logs of a contract on anvil (a
// hand-assembled one that logs its call data) and delivers them to a reference consumer, a
// program of its own (tests/support/stream_consumer_main.cpp) that checks each batch's signature
// and keeps the ids it processed in an SQLite table, so that processing is exactly once over
// at-least-once delivery. Its handler fails now and then (before processing, and after processing
// but before answering, as a crash there would); the gateway and the consumer are each killed with
// SIGKILL; a reorg drops delivered blocks: every event is processed once, none missing, and the
// dropped ones are undone.

#include "devnet.hpp"

#include "gateway/eth/hex.hpp"
#include "gateway/jsonrpc/methods.hpp"
#include "gateway/streams/event_stream.hpp"
#include "support/http_test_client.hpp"
#include "support/json_values.hpp"
#include "support/process.hpp"
#include "support/tcp_forwarder.hpp"

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <atomic>
#include <csignal>
#include <cstdlib>
#include <mutex>
#include <set>

namespace gateway::test {
namespace {

namespace json = boost::json;

const std::string kSecret = "stream-secret-0123456789abcdef";
const std::string kTopic = "0x" + std::string(62, '0') + "aa";

// Runtime: mem[0..32] = calldata[0..32]; LOG1(mem[0..32], kTopic); STOP. Init: copy it, return it.
std::string logger_bytecode() {
    const std::string runtime =
        "600035600052"
        "7f" +
        kTopic.substr(2) + "60206000a100";
    const std::string init = fmt::format("60{:02x}80600b6000396000f3", runtime.size() / 2);
    return "0x" + init + runtime;
}

class StreamsTest : public DevnetTest {
protected:
    void SetUp() override { start_devnet("gateway-streams"); }

    json::value node_call(const std::string& method, const std::string& params) {
        const json::value v =
            json::parse(http_post(anvil->port(), "/", rpc_body(method, params)).body);
        if (!v.as_object().contains("result")) ADD_FAILURE() << method << ": " << str(v);
        return v.as_object().contains("result") ? v.at("result") : json::value(nullptr);
    }
    void start_gateway(const std::string& contract, const std::string& webhook) {
        ::setenv("STREAM_SECRET", kSecret.c_str(), 1);
        const std::string chains = fmt::format(
            "  - name: devnet\n"
            "    chain_id: 31337\n"
            "    health: {{interval_ms: 100, timeout_ms: 500}}\n"
            "    tx: {{poll_interval_ms: 50}}\n"
            "    upstreams:\n"
            "      - {{id: node, url: \"{}\", timeout_ms: 1000}}\n",
            anvil->url());
        const std::string streams = fmt::format(
            "streams:\n"
            "  - id: logger\n"
            "    chain: devnet\n"
            "    addresses: [\"{}\"]\n"
            "    topics: [\"{}\"]\n"
            "    from_block: 0\n"
            "    confirmations: 0\n"
            "    batch_size: 50\n"
            "    webhook: {{url: \"{}/events\", timeout_ms: 2000, secret_env: STREAM_SECRET}}\n",
            contract, kTopic, webhook);
        run_gateway(std::make_unique<GatewayProcess>(dir, chains, "", "", streams));
        ASSERT_TRUE(gw->wait_ready()) << gw->process().output();
    }
    std::string deploy() {
        const std::string from = str(node_call("eth_accounts", "[]").at(0));
        const std::string hash = str(node_call(
            "eth_sendTransaction", fmt::format(R"([{{"from":"{}","data":"{}","gas":"0x30000"}}])",
                                               from, logger_bytecode())));
        json::value receipt;
        // Mined at once (automine), its receipt a moment later.
        EXPECT_TRUE(wait_until([&] {
            receipt = node_call("eth_getTransactionReceipt", "[\"" + hash + "\"]");
            return receipt.is_object();
        }));
        return receipt.is_object() ? str(receipt.at("contractAddress")) : "";
    }
    void emit(const std::string& contract, int from, int to) {
        const std::string sender = str(node_call("eth_accounts", "[]").at(0));
        for (int i = from; i < to; ++i)
            node_call(
                "eth_sendTransaction",
                fmt::format(R"([{{"from":"{}","to":"{}","data":"0x{:064x}","gas":"0x10000"}}])",
                            sender, contract, i));
    }
};

// The reference consumer as a process of its own (tests/support/stream_consumer_main.cpp), behind
// a forwarder whose port stays while the consumer is killed and started again.
class ConsumerProcess {
public:
    ConsumerProcess(const std::string& dir) : dir_(dir) { start(); }
    void start() {
        process_ = std::make_unique<Process>(
            std::vector<std::string>{STREAM_CONSUMER, dir_ + "/consumer.db", kSecret},
            dir_ + "/consumer-" + std::to_string(++starts_) + ".log");
        const auto port =
            process_->wait_for_output(std::regex("port (\\d+)\\n"), std::chrono::seconds(10));
        if (!port) throw std::runtime_error("stream_consumer did not start: " + process_->output());
        const auto target = static_cast<std::uint16_t>(std::stoi(*port));
        const std::uint16_t listen = forwarder_ ? forwarder_->port() : 0;
        forwarder_.reset();
        forwarder_ = std::make_unique<TcpForwarder>(target, listen);
    }
    void kill() {
        process_->signal(SIGKILL);
        process_->wait(std::chrono::seconds(10));
    }
    std::string url() const { return forwarder_->url(); }

    // What the consumer's database holds (read beside it: WAL).
    std::int64_t count(const std::string& sql) const {
        sqlite3* db = nullptr;
        std::int64_t n = -1;
        if (sqlite3_open_v2((dir_ + "/consumer.db").c_str(), &db, SQLITE_OPEN_READONLY, nullptr) ==
            SQLITE_OK) {
            sqlite3_busy_timeout(db, 2000);
            sqlite3_stmt* st = nullptr;
            if (sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr) == SQLITE_OK &&
                sqlite3_step(st) == SQLITE_ROW)
                n = sqlite3_column_int64(st, 0);
            sqlite3_finalize(st);
        }
        sqlite3_close(db);
        return n;
    }
    std::int64_t facts() const { return count("SELECT COUNT(*) FROM facts;"); }
    std::int64_t counter(const std::string& name) const {
        const std::int64_t n = count("SELECT n FROM counters WHERE name = '" + name + "';");
        return n < 0 ? 0 : n;
    }

private:
    std::string dir_;
    int starts_ = 0;
    std::unique_ptr<Process> process_;
    std::unique_ptr<TcpForwarder> forwarder_;
};

// I1 and I2 end to end, 1,000 events: the consumer's handler fails before and after processing now
// and then, the gateway is killed with SIGKILL, then the consumer, and a reorg drops delivered
// blocks (their events come back as removed, then the chain's new ones). At the end the
// consumer's facts are exactly the chain's events, each processed once.
TEST_F(StreamsTest, I1_I2_AThousandEventsAreProcessedOnceThroughKillsOfBothSidesAndAReorg) {
    ConsumerProcess consumer(dir);
    const std::string contract = deploy();
    ASSERT_THAT(contract, ::testing::StartsWith("0x"));
    start_gateway(contract, consumer.url());
    auto status = [&] {
        return fmt::format("{} facts, {} removed, {} repeats; {}", consumer.facts(),
                           consumer.counter("removed"), consumer.counter("repeats"),
                           gw ? http_get(gw->admin_port(), "/admin/streams").body : "");
    };

    emit(contract, 0, 300);
    ASSERT_TRUE(wait_until([&] { return consumer.facts() >= 150; }, std::chrono::seconds(60)))
        << status();
    // The gateway killed mid-way; more events while it is down; back.
    gw->process().signal(SIGKILL);
    gw->process().wait(std::chrono::seconds(10));
    emit(contract, 300, 500);
    start_gateway(contract, consumer.url());
    ASSERT_TRUE(wait_until([&] { return consumer.facts() >= 400; }, std::chrono::seconds(60)))
        << status();
    // The consumer killed mid-way (what it committed stays); more events; back.
    consumer.kill();
    emit(contract, 500, 700);
    consumer.start();
    ASSERT_TRUE(wait_until([&] { return consumer.facts() == 700; }, std::chrono::seconds(90)))
        << status();
    // A reorg drops the last 5 blocks, delivered already: their events are undone, then sent
    // again (new transactions in new blocks) with the rest. Mostly one event a block, but anvil
    // may have mined two sent close together in one: counted, not assumed.
    const std::uint64_t head = *jsonrpc::parse_quantity(str(node_call("eth_blockNumber", "[]")));
    const std::size_t dropped =
        node_call("eth_getLogs",
                  fmt::format(R"([{{"fromBlock":"{}","toBlock":"{}","address":"{}"}}])",
                              eth::to_quantity(head - 4), eth::to_quantity(head), contract))
            .as_array()
            .size();
    ASSERT_GE(dropped, 5u);
    node_call("anvil_reorg", "[5, []]");
    ASSERT_TRUE(
        wait_until([&] { return consumer.facts() == static_cast<std::int64_t>(700 - dropped); },
                   std::chrono::seconds(60)))
        << status();
    EXPECT_EQ(consumer.counter("removed"), static_cast<std::int64_t>(dropped));
    emit(contract, 700 - static_cast<int>(dropped), 1000);
    ASSERT_TRUE(wait_until([&] { return consumer.facts() == 1000; }, std::chrono::seconds(120)))
        << status();

    // Each event once, none missing: the call data 0..999, each in one fact.
    EXPECT_EQ(consumer.count("SELECT COUNT(DISTINCT data) FROM facts;"), 1000);
    for (int i : {0, 299, 300, 499, 500, 694, 695, 699, 999})
        EXPECT_EQ(
            consumer.count(fmt::format("SELECT COUNT(*) FROM facts WHERE data = '0x{:064x}';", i)),
            1)
            << i;
    // At least once underneath: deliveries came again (failures, the kills), and were dropped.
    EXPECT_GT(consumer.counter("repeats"), 0);
    const json::value view = json::parse(http_get(gw->admin_port(), "/admin/streams").body);
    EXPECT_EQ(str(view.at("streams").at(0).at("id")), "logger");
    EXPECT_EQ(view.at("streams").at(0).at("reorgsUndone").to_number<int>(), 1);
    EXPECT_THAT(http_get(gw->admin_port(), "/metrics").body,
                ::testing::HasSubstr("gateway_stream_reorgs_total{stream=\"logger\"} 1"));
}

}  // namespace
}  // namespace gateway::test
