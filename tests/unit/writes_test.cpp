// Durable writes in-process: the journal (state names, an unusable SQLite store; what every
// backend does is in journal_contract_test.cpp) and the raw transaction manager in front of a
// simulated chain (accept, refuse, mine, reorg, outage), stale reads.

#include "gateway/eth/transaction.hpp"
#include "gateway/store/journal_service.hpp"
#include "gateway/store/store.hpp"
#include "gateway/txm/tx_manager.hpp"
#include "gateway/upstream/pool.hpp"
#include "gateway/util/wall_time.hpp"
#include "support/gateway_fixture.hpp"
#include "support/io_thread.hpp"
#include "support/journal_records.hpp"
#include "support/tx_signer.hpp"

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <boost/json/serialize.hpp>

#include <sys/wait.h>
#include <unistd.h>
#include <csignal>
#include <filesystem>
#include <map>
#include <mutex>
#include <thread>

namespace gateway {
namespace {

using namespace std::chrono_literals;
using test::record;
using ::testing::HasSubstr;
namespace json = boost::json;
using store::TxState;
using test::FakeReply;
using test::FakeUpstream;
using test::GatewayTest;
using test::http_get;

// ---------------------------------------------------------------------------------------------
// The journal.

TEST(Journal, StateNamesRoundTrip) {
    for (TxState st : {TxState::queued, TxState::preparing, TxState::signing, TxState::broadcasting,
                       TxState::confirming, TxState::completed, TxState::failed,
                       TxState::dead_letter, TxState::cancelled})
        EXPECT_EQ(store::parse_tx_state(store::to_string(st)), st);
    EXPECT_FALSE(store::parse_tx_state("queued"));
    EXPECT_TRUE(store::is_final(TxState::failed));
    EXPECT_FALSE(store::is_final(TxState::confirming));
}

TEST(JournalService, AnUnusableStoreFailsClearlyAndIsUsedOnceItOpens) {
    const std::string dir = test::make_temp_dir("journal-unusable");
    test::write_file(dir + "/data", "a file where the folder should be");
    // Tried again 20 ms after a failure (doubling), not a second: the test waits for the
    // journal to open, not for a time.
    store::JournalService service(
        [&] {
            return std::unique_ptr<store::Journal>(
                store::open_store(config::StoreConfig{"sqlite", dir + "/data/j.db"}));
        },
        {.reopen_after = 20ms, .reopen_max = 40ms});
    try {
        service.run_blocking([](store::JournalView&) {});
        FAIL() << "no error";
    } catch (const store::StoreError& e) {
        EXPECT_THAT(e.what(), HasSubstr(dir + "/data/j.db"));
    }
    EXPECT_THAT(service.failure(), HasSubstr("cannot create the folder"));
    // Refused again while it cannot open (nothing of the operation kept), and used once it can.
    EXPECT_THROW(service.run_blocking([](store::JournalView& j) { j.insert(record("0xaa", 0)); }),
                 store::StoreError);
    std::filesystem::remove(dir + "/data");
    EXPECT_TRUE(test::insert_once_usable(service, record("0xaa", 0)));
    EXPECT_EQ(service.failure(), "");
}

// ---------------------------------------------------------------------------------------------
// The transaction manager against a simulated chain.

const std::string kSender0 = test::address_of(test::kKey0);
const std::string kSender1 = test::address_of(test::kKey1);

std::string hash_of(const std::string& raw) {
    return eth::to_hex(eth::decode_transaction(*eth::from_hex(raw)).hash);
}

// A node with a mempool and blocks. Thread-safe.
class Chain {
public:
    Chain() {
        node_ = std::make_unique<FakeUpstream>(
            31337, [this](const std::string& m, const json::value& req) { return answer(m, req); });
    }
    // The node first: its server may still be answering the gateway's calls with the members
    // below, which would otherwise go before it (members end in reverse order).
    ~Chain() { node_.reset(); }
    Chain(const Chain&) = delete;
    Chain& operator=(const Chain&) = delete;
    std::string url() const { return node_->url(); }
    FakeUpstream& node() { return *node_; }

    /// What eth_sendRawTransaction answers instead of accepting (an error message), or "".
    void refuse_with(std::string message) {
        std::lock_guard lock(mu_);
        refusal_ = std::move(message);
    }
    /// Every call fails with HTTP 503 (the node is gone) or works again.
    void set_down(bool down) {
        std::lock_guard lock(mu_);
        down_ = down;
    }
    std::size_t mempool_size() const {
        std::lock_guard lock(mu_);
        return mempool_.size();
    }
    /// Mines the mempool into a new block; returns its number.
    std::uint64_t mine() {
        std::lock_guard lock(mu_);
        ++head_;
        for (auto& h : mempool_) mined_[h] = head_;
        mempool_.clear();
        return head_;
    }
    /// The last block goes away (a reorg); its transactions return to nobody's pool.
    void drop_last_block() {
        std::lock_guard lock(mu_);
        std::erase_if(mined_, [&](const auto& m) { return m.second == head_; });
        --head_;
    }
    /// The order in which transactions were accepted, as (sender, nonce).
    std::vector<std::pair<std::string, std::uint64_t>> accepted() const {
        std::lock_guard lock(mu_);
        return accepted_;
    }
    std::size_t broadcasts() const {
        std::lock_guard lock(mu_);
        return broadcasts_;
    }
    /// Blocks above `number` are replaced by others (a reorg that keeps block `number`).
    void replace_blocks_above(std::uint64_t number) {
        std::lock_guard lock(mu_);
        ++generation_;
        replaced_above_ = number;
    }
    /// Receipts are answered null, as by a node without a transaction index.
    void set_receipts_null(bool null) {
        std::lock_guard lock(mu_);
        receipts_null_ = null;
    }
    /// The forms blob transactions were sent in, in order.
    std::vector<eth::BlobSidecar> blob_forms() const {
        std::lock_guard lock(mu_);
        return blob_forms_;
    }
    /// What eth_getTransactionCount answers, at any block (0 until set).
    void set_nonce_count(std::uint64_t count) {
        std::lock_guard lock(mu_);
        nonce_count_ = count;
    }

private:
    std::optional<FakeReply> answer(const std::string& m, const json::value& req) {
        std::lock_guard lock(mu_);
        if (down_) return FakeReply::http(503, "down");
        if (m == "eth_blockNumber") return FakeReply::ok(fmt::format("\"0x{:x}\"", head_));
        if (m == "eth_sendRawTransaction") {
            ++broadcasts_;
            if (!refusal_.empty()) return FakeReply::rpc_error(-32000, refusal_);
            const auto tx =
                eth::decode_transaction(*eth::from_hex(req.at("params").at(0).as_string()));
            if (tx.type == eth::TxType::blob) {
                // As geth: a blob transaction comes with its blobs or not at all.
                if (tx.sidecar == eth::BlobSidecar::none)
                    return FakeReply::rpc_error(-32000, "blobless blob transaction");
                blob_forms_.push_back(tx.sidecar);
            }
            const std::string h = eth::to_hex(tx.hash);
            if (!mined_.count(h) &&
                std::find(mempool_.begin(), mempool_.end(), h) == mempool_.end()) {
                mempool_.push_back(h);
                accepted_.emplace_back(eth::to_hex(tx.sender), tx.nonce);
            }
            return FakeReply::ok("\"" + h + "\"");
        }
        if (m == "eth_getTransactionReceipt") {
            const std::string h(req.at("params").at(0).as_string());
            auto it = mined_.find(h);
            if (it == mined_.end() || receipts_null_) return FakeReply::ok("null");
            return FakeReply::ok(fmt::format(
                R"({{"transactionHash":"{}","blockNumber":"0x{:x}","blockHash":"{}","status":"0x1"}})",
                h, it->second, block_hash(it->second)));
        }
        if (m == "eth_getBlockByNumber" || m == "eth_getBlockByHash") {
            const std::string p(req.at("params").at(0).as_string());
            std::uint64_t n = head_;
            if (m == "eth_getBlockByHash") {
                n = std::stoull(p.substr(2), nullptr, 16) / 1000;
                if (n > head_ || block_hash(n) != p) return FakeReply::ok("null");
            } else if (p != "latest") {
                n = std::stoull(p.substr(2), nullptr, 16);
            }
            if (n > head_) return FakeReply::ok("null");
            return FakeReply::ok(
                fmt::format(R"({{"number":"0x{:x}","hash":"{}","parentHash":"{}"}})", n,
                            block_hash(n), n ? block_hash(n - 1) : std::string(66, '0')));
        }
        if (m == "eth_getBalance") return FakeReply::ok("\"0x64\"");
        if (m == "eth_getTransactionCount")
            return FakeReply::ok(fmt::format("\"0x{:x}\"", nonce_count_));
        if (m == "eth_getTransactionByHash") return FakeReply::ok("null");
        return std::nullopt;
    }

    mutable std::mutex mu_;
    std::unique_ptr<FakeUpstream> node_;
    std::string refusal_;
    bool down_ = false;
    std::string block_hash(std::uint64_t n) const {
        return fmt::format("0x{:064x}", n * 1000 + (n > replaced_above_ ? generation_ : 0));
    }

    std::uint64_t head_ = 16;
    std::uint64_t generation_ = 0;
    std::uint64_t replaced_above_ = 0;
    bool receipts_null_ = false;
    std::vector<std::string> mempool_;
    std::map<std::string, std::uint64_t> mined_;
    std::vector<std::pair<std::string, std::uint64_t>> accepted_;
    std::size_t broadcasts_ = 0;
    std::vector<eth::BlobSidecar> blob_forms_;
    std::uint64_t nonce_count_ = 0;
};

class WritesTest : public GatewayTest {
protected:
    void start_on(Chain& chain, std::function<void(config::Config&)> tweak = {}) {
        start({chain.url()}, [&](config::Config& c) {
            c.chains[0].tx.poll_interval = 20ms;
            c.chains[0].tx.confirmations = 2;
            if (tweak) tweak(c);
            store_path = c.store.path;
        });
    }
    test::HttpReply send(const std::string& raw) {
        return post(R"({"jsonrpc":"2.0","id":1,"method":"eth_sendRawTransaction","params":[")" +
                    raw + R"("]})");
    }
    json::value tx(const std::string& hash) {
        return json::parse(
                   post(R"({"jsonrpc":"2.0","id":1,"method":"gateway_getTransaction","params":[")" +
                        hash + R"("]})")
                       .body)
            .at("result");
    }
    std::string state_of(const std::string& hash) {
        const json::value v = tx(hash);
        return v.is_null() ? "unknown" : std::string(v.at("state").as_string());
    }
    static bool wait_until(const std::function<bool()>& done,
                           std::chrono::milliseconds timeout = 5s) {
        const auto deadline = std::chrono::steady_clock::now() + timeout;
        while (std::chrono::steady_clock::now() < deadline) {
            if (done()) return true;
            std::this_thread::sleep_for(10ms);
        }
        return false;
    }
    bool wait_tx_state(const std::string& hash, const std::string& state,
                       std::chrono::milliseconds timeout = 5s) {
        const auto deadline = std::chrono::steady_clock::now() + timeout;
        while (std::chrono::steady_clock::now() < deadline) {
            if (state_of(hash) == state) return true;
            std::this_thread::sleep_for(10ms);
        }
        return false;
    }
    std::size_t journaled() {
        return json::parse(http_get(admin_port(), "/admin/transactions").body)
            .at("transactions")
            .as_array()
            .size();
    }
    std::string store_path;
};

TEST_F(WritesTest, ATransactionGoesFromQueuedToCompletedAndBackOnAReorg) {
    Chain chain;
    start_on(chain);
    wait_ready();
    const std::string raw = test::sign_legacy(test::kKey0, {.nonce = 0});
    const std::string hash = hash_of(raw);
    auto r = send(raw);
    EXPECT_EQ(r.status, 200u);
    EXPECT_EQ(json::parse(r.body).at("result"), hash.c_str());
    EXPECT_EQ(r.headers.count("x-gateway-queued"), 0u) << "a node took it at once";
    EXPECT_EQ(r.header("x-gateway-upstream"), "node-0");
    // The answer comes once a node took it; its BROADCASTING record is written right after.
    EXPECT_TRUE(wait_tx_state(hash, "BROADCASTING"));

    const std::uint64_t block = chain.mine();
    ASSERT_TRUE(wait_tx_state(hash, "CONFIRMING"));
    EXPECT_EQ(tx(hash).at("blockNumber"), fmt::format("0x{:x}", block).c_str());
    std::this_thread::sleep_for(100ms);
    EXPECT_EQ(state_of(hash), "CONFIRMING") << "one confirmation of two";

    // A reorg takes the block away: back to BROADCASTING, sent again, mined again.
    chain.drop_last_block();
    ASSERT_TRUE(wait_tx_state(hash, "BROADCASTING"));
    bool told = false;
    const json::value after_reorg = tx(hash);
    for (const auto& h : after_reorg.at("history").as_array())
        told = told || std::string(h.at("reason").as_string()).find("reorg") != std::string::npos;
    EXPECT_TRUE(told) << json::serialize(after_reorg);
    chain.mine();
    ASSERT_TRUE(wait_tx_state(hash, "CONFIRMING"));
    chain.mine();
    ASSERT_TRUE(wait_tx_state(hash, "COMPLETED"));
    const json::value v = tx(hash);
    EXPECT_EQ(v.at("from"), kSender0.c_str());
    EXPECT_EQ(v.at("nonce"), "0x0");
    std::vector<std::string> states;
    for (const auto& h : v.at("history").as_array()) states.emplace_back(h.at("state").as_string());
    // Sent, mined, dropped by the reorg, sent again, mined again, confirmed.
    EXPECT_EQ(states,
              (std::vector<std::string>{"QUEUED", "BROADCASTING", "CONFIRMING", "BROADCASTING",
                                        "BROADCASTING", "CONFIRMING", "COMPLETED"}));
    EXPECT_GE(chain.broadcasts(), 2u) << "sent again after the reorg";
    EXPECT_THAT(http_metrics(),
                HasSubstr(R"(gateway_transactions_total{chain="devnet",state="COMPLETED"} 1)"));
    // Admin views.
    const json::value one = json::parse(http_get(admin_port(), "/admin/transactions/" + hash).body);
    EXPECT_EQ(one.at("state"), "COMPLETED");
    EXPECT_EQ(json::parse(http_get(admin_port(), "/admin/transactions?state=COMPLETED").body)
                  .at("transactions")
                  .as_array()
                  .size(),
              1u);
    EXPECT_EQ(http_get(admin_port(), "/admin/transactions?state=bogus").status, 400u);
    EXPECT_EQ(http_get(admin_port(), "/admin/transactions/0x1234").status, 404u);
}

// A COMPLETED transaction stays open to reorgs until its block is final, but only its block
// being replaced reopens it: a null receipt (a node without a transaction index, or a liar)
// after a reorg above its block proves nothing, and sending it again could pay twice.
TEST_F(WritesTest, AReorgAboveItsBlockAndNullReceiptsDoNotReopenACompletedTransaction) {
    Chain chain;
    start_on(chain, [](config::Config& c) {
        c.chains[0].tx.confirmations = 1;
        c.chains[0].reorgs.track = true;
    });
    wait_ready();
    const std::string raw = test::sign_legacy(test::kKey0, {.nonce = 0});
    const std::string hash = hash_of(raw);
    ASSERT_EQ(send(raw).status, 200u);
    ASSERT_TRUE(wait_tx_state(hash, "BROADCASTING"));
    const std::uint64_t block = chain.mine();
    ASSERT_TRUE(wait_tx_state(hash, "COMPLETED"));
    EXPECT_EQ(tx(hash).at("final"), false);
    chain.mine();
    chain.mine();
    const auto reorgs = [&] {
        return json::parse(http_get(admin_port(), "/admin/chains").body)
            .at("chains")
            .at(0)
            .at("reorgs")
            .to_number<int>();
    };
    ASSERT_TRUE(wait_until([&] {
        const json::value head =
            json::parse(http_get(admin_port(), "/admin/chains").body).at("chains").at(0).at("head");
        return head.is_object() && head.at("number") == block + 2;
    }));

    // Two blocks above its own are replaced, and every receipt is null.
    chain.set_receipts_null(true);
    chain.replace_blocks_above(block);
    ASSERT_TRUE(wait_until([&] { return reorgs() == 1; }));
    std::this_thread::sleep_for(300ms);  // many dispatcher rounds
    EXPECT_EQ(state_of(hash), "COMPLETED") << json::serialize(tx(hash));
    const std::size_t broadcasts = chain.broadcasts();

    // Its own block replaced: reopened, with the reason, and mined again once nodes say so.
    chain.replace_blocks_above(block - 1);
    ASSERT_TRUE(wait_until([&] { return reorgs() == 2; }));
    ASSERT_TRUE(wait_tx_state(hash, "BROADCASTING")) << json::serialize(tx(hash));
    EXPECT_THAT(json::serialize(tx(hash).at("history")),
                HasSubstr("a reorg before its block was final dropped it"));
    EXPECT_TRUE(wait_until([&] { return chain.broadcasts() > broadcasts; })) << "sent again";
    chain.set_receipts_null(false);
    ASSERT_TRUE(wait_tx_state(hash, "COMPLETED")) << json::serialize(tx(hash));
    EXPECT_EQ(tx(hash).at("final"), false);
}

TEST_F(WritesTest, ANodesRefusalGoesBackAsItCameAndTheJournalSaysWhy) {
    Chain chain;
    start_on(chain);
    wait_ready();
    chain.refuse_with("insufficient funds for gas * price + value");
    const std::string raw = test::sign_legacy(test::kKey0, {.nonce = 0});
    auto r = send(raw);
    EXPECT_EQ(r.status, 200u);
    EXPECT_EQ(json::parse(r.body).at("error").at("message"),
              "insufficient funds for gas * price + value");
    EXPECT_EQ(json::parse(r.body).at("error").at("code"), -32000);
    EXPECT_EQ(state_of(hash_of(raw)), "FAILED");
    EXPECT_THAT(std::string(tx(hash_of(raw)).at("reason").as_string()),
                HasSubstr("insufficient funds"));

    // "already known" is as good as accepted.
    chain.refuse_with("already known");
    const std::string known = test::sign_legacy(test::kKey1, {.nonce = 0});
    r = send(known);
    EXPECT_EQ(json::parse(r.body).at("result"), hash_of(known).c_str());
    EXPECT_EQ(state_of(hash_of(known)), "BROADCASTING");

    // "nonce too low", the nonce used confirmations deep and no receipt for our hash from a node
    // at the head: another transaction used the nonce.
    chain.set_nonce_count(5);
    chain.refuse_with("nonce too low: next nonce 5, tx nonce 1");
    const std::string low = test::sign_legacy(test::kKey1, {.nonce = 1});
    r = send(low);
    EXPECT_THAT(std::string(json::parse(r.body).at("error").at("message").as_string()),
                HasSubstr("nonce too low"));
    EXPECT_EQ(state_of(hash_of(low)), "FAILED");
    EXPECT_THAT(std::string(tx(hash_of(low)).at("reason").as_string()),
                HasSubstr("used by another transaction"));
}

// A null receipt from a node behind proves nothing: after "nonce too low", the transaction is
// settled on the word of a node at the chain's head, which has it mined.
TEST_F(GatewayTest, ANullReceiptFromALaggingNodeDoesNotFailAMinedTransaction) {
    const std::string raw = test::sign_legacy(test::kKey0, {.nonce = 0});
    const std::string hash = hash_of(raw);
    auto node = [hash](std::uint64_t head, bool has_it) {
        return [=](const std::string& m, const json::value&) -> std::optional<FakeReply> {
            if (m == "eth_blockNumber") return FakeReply::ok(fmt::format("\"0x{:x}\"", head));
            if (m == "eth_sendRawTransaction")
                return FakeReply::rpc_error(-32000, "nonce too low: next nonce 1, tx nonce 0");
            if (m == "eth_getTransactionCount")
                return FakeReply::ok(has_it ? "\"0x1\"" : "\"0x0\"");
            if (m == "eth_getTransactionReceipt")
                return FakeReply::ok(
                    has_it
                        ? fmt::format(
                              R"({{"transactionHash":"{}","blockNumber":"0x{:x}","blockHash":"0x{:064x}","status":"0x1"}})",
                              hash, head, head)
                        : "null");
            return std::nullopt;
        };
    };
    // The lagging node (two blocks behind: within max_lag_blocks) is the primary and ranks first.
    FakeUpstream lagging(31337, node(0x12, false)), ahead(31337, node(0x14, true));
    start({lagging.url(), ahead.url()}, [](config::Config& c) {
        test::first_is_primary(c);
        c.chains[0].tx.poll_interval = 20ms;
        c.chains[0].tx.confirmations = 1;
    });
    wait_ready();
    for (int i = 0; i < 100 && upstreams().at("chains").at("devnet").at("head") != 0x14; ++i)
        std::this_thread::sleep_for(10ms);
    post(R"({"jsonrpc":"2.0","id":1,"method":"eth_sendRawTransaction","params":[")" + raw +
         R"("]})");
    std::string state;
    for (int i = 0; i < 200; ++i) {
        const json::value v =
            json::parse(
                post(R"({"jsonrpc":"2.0","id":1,"method":"gateway_getTransaction","params":[")" +
                     hash + R"("]})")
                    .body)
                .at("result");
        state = std::string(v.at("state").as_string());
        if (state == "COMPLETED" || state == "FAILED") break;
        std::this_thread::sleep_for(10ms);
    }
    EXPECT_EQ(state, "COMPLETED") << "mined in block 0x14, as the node at the head says";
}

// One eth_feeHistory error is not "this chain has no base fee": the next estimate asks again,
// and a chain that answers it again gets EIP-1559 fees again.
TEST_F(GatewayTest, OneFeeHistoryErrorDoesNotSwitchAChainToLegacyFeesForGood) {
    std::mutex mu;
    int fee_history_calls = 0;
    std::vector<eth::TxType> sent;
    FakeUpstream node(
        31337, [&](const std::string& m, const json::value& req) -> std::optional<FakeReply> {
            std::lock_guard lock(mu);
            if (m == "eth_feeHistory") {
                if (++fee_history_calls == 1)
                    return FakeReply::rpc_error(-32000, "fee history out of service");
                return FakeReply::ok(
                    R"({"oldestBlock":"0xb","baseFeePerGas":["0x3b9aca00","0x3b9aca00","0x3b9aca00","0x3b9aca00","0x3b9aca00","0x3b9aca00"],"gasUsedRatio":[0.5,0.5,0.5,0.5,0.5],"reward":[["0x1"],["0x1"],["0x1"],["0x1"],["0x1"]]})");
            }
            if (m == "eth_gasPrice") return FakeReply::ok("\"0x3b9aca00\"");
            if (m == "eth_getTransactionCount")
                return FakeReply::ok(fmt::format("\"0x{:x}\"", sent.size()));
            if (m == "eth_estimateGas") return FakeReply::ok("\"0x5208\"");
            if (m == "eth_getBalance") return FakeReply::ok("\"0xde0b6b3a7640000\"");
            if (m == "eth_sendRawTransaction") {
                const auto tx =
                    eth::decode_transaction(*eth::from_hex(req.at("params").at(0).as_string()));
                sent.push_back(tx.type);
                return FakeReply::ok("\"" + eth::to_hex(tx.hash) + "\"");
            }
            if (m == "eth_getTransactionReceipt") return FakeReply::ok("null");
            return std::nullopt;
        });
    const std::string dir = test::make_temp_dir("fees");
    test::write_file(dir + "/k0", test::kKey0.substr(2));
    start({node.url()}, [&](config::Config& c) {
        c.signers.push_back(
            config::SignerConfig{.id = "k0", .type = "local", .key_file = dir + "/k0"});
        c.chains[0].accounts.push_back(config::AccountConfig{kSender0, "k0"});
    });
    wait_ready();
    const std::string send = fmt::format(
        R"({{"jsonrpc":"2.0","id":1,"method":"eth_sendTransaction","params":[{{"from":"{}","to":"0x000000000000000000000000000000000000dEaD","value":"0x1","gas":"0x5208"}}]}})",
        kSender0);
    for (int i = 0; i < 2; ++i) {
        auto r = post(send);
        ASSERT_EQ(r.status, 200u) << r.body;
        ASSERT_TRUE(json::parse(r.body).as_object().contains("result")) << r.body;
        for (int w = 0; w < 300; ++w) {
            {
                std::lock_guard lock(mu);
                if (sent.size() == static_cast<std::size_t>(i + 1)) break;
            }
            std::this_thread::sleep_for(10ms);
        }
    }
    std::lock_guard lock(mu);
    ASSERT_EQ(sent.size(), 2u);
    EXPECT_GE(fee_history_calls, 2) << "asked again after the error";
    EXPECT_EQ(sent.back(), eth::TxType::dynamic_fee) << "and answered: EIP-1559 fees again";
}

TEST_F(WritesTest, WithEveryNodeDownTransactionsQueueAndGoOutInNonceOrder) {
    Chain chain;
    start_on(chain);
    wait_ready();
    chain.set_down(true);
    ASSERT_TRUE(wait_state("node-0", "down"));

    // Out of order on purpose, and two senders.
    std::vector<std::string> hashes;
    for (std::uint64_t nonce : {2, 0, 1}) {
        const std::string raw = test::sign_legacy(test::kKey0, {.nonce = nonce});
        auto r = send(raw);
        EXPECT_EQ(r.status, 200u);
        EXPECT_EQ(r.header("x-gateway-queued"), "true");
        EXPECT_EQ(json::parse(r.body).at("result"), hash_of(raw).c_str());
        hashes.push_back(hash_of(raw));
    }
    const std::string other = test::sign_legacy(test::kKey1, {.nonce = 0});
    EXPECT_EQ(send(other).header("x-gateway-queued"), "true");
    hashes.push_back(hash_of(other));
    for (const auto& h : hashes) EXPECT_EQ(state_of(h), "QUEUED");

    // What the gateway holds shows in pending nonces and lookups by hash.
    auto count = post(R"({"jsonrpc":"2.0","id":1,"method":"eth_getTransactionCount","params":[")" +
                      kSender0 + R"(","pending"]})");
    EXPECT_EQ(json::parse(count.body).at("result"), "0x3");
    auto byhash = json::parse(
        post(R"({"jsonrpc":"2.0","id":1,"method":"eth_getTransactionByHash","params":[")" +
             hashes[0] + R"("]})")
            .body);
    EXPECT_EQ(byhash.at("result").at("hash"), hashes[0].c_str());
    EXPECT_EQ(byhash.at("result").at("nonce"), "0x2");
    EXPECT_TRUE(byhash.at("result").at("blockHash").is_null());
    EXPECT_EQ(chain.broadcasts(), 0u);

    chain.set_down(false);
    for (const auto& h : hashes) ASSERT_TRUE(wait_tx_state(h, "BROADCASTING")) << h;
    std::vector<std::uint64_t> order;
    for (const auto& [sender, nonce] : chain.accepted())
        if (sender == kSender0) order.push_back(nonce);
    EXPECT_EQ(order, (std::vector<std::uint64_t>{0, 1, 2}));
    chain.mine();
    chain.mine();
    for (const auto& h : hashes) EXPECT_TRUE(wait_tx_state(h, "COMPLETED")) << h;
}

TEST_F(WritesTest, TheSameBytesTwiceAreOneEntryAndAQueuedOneCanBeReplaced) {
    Chain chain;
    start_on(chain);
    wait_ready();
    chain.set_down(true);
    ASSERT_TRUE(wait_state("node-0", "down"));
    const std::string raw = test::sign_legacy(test::kKey0, {.nonce = 0, .value = 1});
    EXPECT_EQ(json::parse(send(raw).body).at("result"), hash_of(raw).c_str());
    EXPECT_EQ(json::parse(send(raw).body).at("result"), hash_of(raw).c_str());
    EXPECT_EQ(journaled(), 1u);

    // Another transaction for the same nonce while the first waits: it takes its place.
    const std::string second = test::sign_legacy(test::kKey0, {.nonce = 0, .value = 2});
    EXPECT_EQ(json::parse(send(second).body).at("result"), hash_of(second).c_str());
    EXPECT_EQ(state_of(hash_of(raw)), "FAILED");
    EXPECT_THAT(std::string(tx(hash_of(raw)).at("reason").as_string()),
                HasSubstr("replaced by " + hash_of(second)));
    chain.set_down(false);
    ASSERT_TRUE(wait_tx_state(hash_of(second), "BROADCASTING"));
    ASSERT_EQ(chain.accepted().size(), 1u) << "never two transactions of one nonce sent";
}

TEST_F(WritesTest, QueuesAreBounded) {
    Chain chain;
    start_on(chain, [](config::Config& c) { c.chains[0].tx.max_queued_per_sender = 2; });
    wait_ready();
    chain.set_down(true);
    ASSERT_TRUE(wait_state("node-0", "down"));
    EXPECT_EQ(send(test::sign_legacy(test::kKey0, {.nonce = 0})).status, 200u);
    EXPECT_EQ(send(test::sign_legacy(test::kKey0, {.nonce = 1})).status, 200u);
    const std::string third = test::sign_legacy(test::kKey0, {.nonce = 2});
    auto r = json::parse(send(third).body);
    EXPECT_EQ(r.at("error").at("code"), -32005);
    EXPECT_THAT(std::string(r.at("error").at("message").as_string()),
                HasSubstr("max_queued_per_sender"));
    EXPECT_EQ(state_of(hash_of(third)), "unknown") << "nothing kept that was refused";
    EXPECT_EQ(json::parse(send(test::sign_legacy(test::kKey1, {.nonce = 0})).body).at("result"),
              hash_of(test::sign_legacy(test::kKey1, {.nonce = 0})).c_str());
}

TEST_F(WritesTest, BadTransactionsAreRefusedAndNothingIsJournaled) {
    Chain chain;
    start_on(chain);
    wait_ready();
    auto error_of = [&](const std::string& raw) {
        const json::value v = json::parse(send(raw).body);
        EXPECT_EQ(v.at("error").at("code"), -32602) << raw;
        return std::string(v.at("error").at("message").as_string());
    };
    EXPECT_THAT(error_of(test::sign_legacy(test::kKey0, {.chain_id = 1})),
                HasSubstr("signed for chain id 1, but chain devnet has id 31337"));
    EXPECT_THAT(error_of("0xf8ff00"), HasSubstr("invalid transaction"));
    EXPECT_THAT(error_of("0x12zz"), HasSubstr("hex"));
    EXPECT_THAT(error_of(test::sign_legacy(test::kKey0, {.high_s = true})),
                HasSubstr("EIP-2 forbids"));
    auto not_array = json::parse(
        post(R"({"jsonrpc":"2.0","id":1,"method":"eth_sendRawTransaction","params":{}})").body);
    EXPECT_EQ(not_array.at("error").at("code"), -32602);
    // gateway_getTransaction with anything but one hash: a clear error; an unknown hash: null.
    for (const std::string params : {R"([])", R"(["0x12"])", R"([1])", R"({})"}) {
        auto v = json::parse(
            post(R"({"jsonrpc":"2.0","id":1,"method":"gateway_getTransaction","params":)" + params +
                 "}")
                .body);
        EXPECT_EQ(v.at("error").at("code"), -32602) << params;
        EXPECT_THAT(std::string(v.at("error").at("message").as_string()),
                    HasSubstr("takes one parameter: a transaction hash"));
    }
    EXPECT_TRUE(tx("0x" + std::string(64, 'a')).is_null());
    EXPECT_EQ(journaled(), 0u);
    EXPECT_EQ(chain.broadcasts(), 0u);
}

TEST_F(WritesTest, ABlobTransactionGoesOutWithItsSidecarWhichTheJournalKeepsUntilItIsMined) {
    Chain chain;
    start_on(chain);
    wait_ready();
    const test::BlobTx blob = test::sign_blob(test::kKey0, {.nonce = 0, .blobs = 6});
    const eth::Bytes network =
        test::network_form(blob.payload, blob.parts, eth::BlobSidecar::eip7594);
    auto r = send(eth::to_hex(network));
    EXPECT_EQ(r.status, 200u);
    EXPECT_EQ(json::parse(r.body).at("result"), blob.hash.c_str()) << r.body;
    EXPECT_EQ(r.header("x-gateway-upstream"), "node-0");
    ASSERT_TRUE(wait_tx_state(blob.hash, "BROADCASTING"));
    EXPECT_EQ(chain.blob_forms(), std::vector<eth::BlobSidecar>{eth::BlobSidecar::eip7594});
    // Pending, it shows as nodes show it: blob fee and versioned hashes, no sidecar.
    const json::value pending = json::parse(
        post(R"({"jsonrpc":"2.0","id":1,"method":"eth_getTransactionByHash","params":[")" +
             blob.hash + R"("]})")
            .body);
    EXPECT_EQ(pending.at("result").at("type"), "0x3") << json::serialize(pending);
    EXPECT_EQ(pending.at("result").at("blobVersionedHashes").as_array().size(), 6u);
    {
        auto journal = store::open_store(config::StoreConfig{"sqlite", store_path});
        EXPECT_EQ(journal->find(blob.hash)->raw, blob.payload) << "the record is the payload";
        EXPECT_EQ(journal->network_form(blob.hash), network);
    }
    chain.mine();
    chain.mine();
    ASSERT_TRUE(wait_tx_state(blob.hash, "COMPLETED"));
    auto journal = store::open_store(config::StoreConfig{"sqlite", store_path});
    EXPECT_TRUE(journal->network_form(blob.hash)) << "a reorg may still reopen it";
    EXPECT_EQ(chain.broadcasts(), 1u);
}

// The sidecar of a queued blob transaction is read back from the journal after a restart; one
// replaced before any node took it (a higher blob fee for its nonce) is not sent at all.
TEST_F(WritesTest, AQueuedBlobTransactionGoesOutWithItsSidecarAfterARestart) {
    Chain chain;
    start_on(chain);
    wait_ready();
    chain.set_down(true);
    ASSERT_TRUE(wait_state("node-0", "down"));
    const test::BlobTx first = test::sign_blob(test::kKey0, {.nonce = 0, .blobs = 2});
    const test::BlobTx bumped = test::sign_blob(
        test::kKey0, {.nonce = 0, .max_fee_per_blob_gas = 2'000'000'000, .blobs = 2});
    const test::BlobTx next = test::sign_blob(test::kKey0, {.nonce = 1});
    for (const test::BlobTx* b : {&first, &bumped, &next}) {
        auto r = send(eth::to_hex(test::network_form(
            b->payload, b->parts,
            b == &next ? eth::BlobSidecar::eip7594 : eth::BlobSidecar::eip4844)));
        EXPECT_EQ(json::parse(r.body).at("result"), b->hash.c_str()) << r.body;
        EXPECT_EQ(r.header("x-gateway-queued"), "true");
    }
    EXPECT_EQ(state_of(first.hash), "FAILED") << "replaced before any node took it";
    gw->shutdown();
    runner.join();
    gw.reset();

    chain.set_down(false);
    const std::string path = store_path;
    start({chain.url()}, [&](config::Config& c) {
        c.store.path = path;
        c.chains[0].tx.poll_interval = 20ms;
        c.chains[0].tx.confirmations = 1;
    });
    ASSERT_TRUE(wait_tx_state(bumped.hash, "BROADCASTING"));
    ASSERT_TRUE(wait_tx_state(next.hash, "BROADCASTING"));
    EXPECT_EQ(chain.blob_forms(), (std::vector<eth::BlobSidecar>{eth::BlobSidecar::eip4844,
                                                                 eth::BlobSidecar::eip7594}));
    chain.mine();
    EXPECT_TRUE(wait_tx_state(bumped.hash, "COMPLETED"));
    EXPECT_TRUE(wait_tx_state(next.hash, "COMPLETED"));
    EXPECT_EQ(state_of(first.hash), "FAILED");
    EXPECT_EQ(chain.broadcasts(), 2u) << "each sent once";
}

TEST_F(WritesTest, BadBlobTransactionsAreRefusedAndNothingIsJournaled) {
    Chain chain;
    start_on(chain);
    wait_ready();
    auto error_of = [&](const eth::Bytes& raw) {
        const json::value v = json::parse(send(eth::to_hex(raw)).body);
        EXPECT_EQ(v.at("error").at("code"), -32602) << json::serialize(v);
        return std::string(v.at("error").at("message").as_string());
    };
    const test::BlobTx blob = test::sign_blob(test::kKey0, {.blobs = 2});
    EXPECT_THAT(error_of(blob.payload),
                HasSubstr("a blob transaction without its sidecar (0x03 || rlp(tx_payload_body)) "
                          "cannot be sent; send its network form"));
    test::BlobParts swapped = blob.parts;
    std::swap(swapped.commitments[0], swapped.commitments[1]);
    EXPECT_THAT(error_of(test::network_form(blob.payload, swapped, eth::BlobSidecar::eip4844)),
                HasSubstr("commitment 0 does not match versioned hash 0"));
    const test::BlobTx mainnet = test::sign_blob(test::kKey0, {.chain_id = 1});
    EXPECT_THAT(
        error_of(test::network_form(mainnet.payload, mainnet.parts, eth::BlobSidecar::eip7594)),
        HasSubstr("signed for chain id 1, but chain devnet has id 31337"));
    const test::BlobTx create = test::sign_blob(test::kKey0, {.to = ""});
    EXPECT_THAT(
        error_of(test::network_form(create.payload, create.parts, eth::BlobSidecar::eip4844)),
        HasSubstr("cannot create a contract"));
    EXPECT_EQ(journaled(), 0u);
    EXPECT_EQ(chain.broadcasts(), 0u);
}

TEST_F(WritesTest, QueuedTransactionsCarryOnAfterARestart) {
    Chain chain;
    start_on(chain);
    wait_ready();
    chain.set_down(true);
    ASSERT_TRUE(wait_state("node-0", "down"));
    std::vector<std::string> hashes;
    for (std::uint64_t n = 0; n < 3; ++n) {
        const std::string raw = test::sign_legacy(test::kKey0, {.nonce = n});
        send(raw);
        hashes.push_back(hash_of(raw));
    }
    gw->shutdown();
    runner.join();
    gw.reset();

    chain.set_down(false);
    const std::string path = store_path;
    start({chain.url()}, [&](config::Config& c) {
        c.store.path = path;
        c.chains[0].tx.poll_interval = 20ms;
    });
    for (const auto& h : hashes) ASSERT_TRUE(wait_tx_state(h, "BROADCASTING")) << h;
    std::vector<std::uint64_t> order;
    for (const auto& [sender, nonce] : chain.accepted()) order.push_back(nonce);
    EXPECT_EQ(order, (std::vector<std::uint64_t>{0, 1, 2}));
    chain.mine();
    for (const auto& h : hashes) EXPECT_TRUE(wait_tx_state(h, "COMPLETED")) << h;
}

TEST_F(WritesTest, AnUnusableJournalRefusesWritesAndReadsGoOn) {
    Chain chain;
    const std::string dir = test::make_temp_dir("writes-unusable");
    test::write_file(dir + "/file", "x");
    start_on(chain, [&](config::Config& c) { c.store.path = dir + "/file/gateway.db"; });
    wait_ready();
    auto r = send(test::sign_legacy(test::kKey0, {}));
    EXPECT_EQ(r.status, 503u);
    const json::value v = json::parse(r.body);
    EXPECT_EQ(v.at("error").at("code"), -32002);
    EXPECT_THAT(std::string(v.at("error").at("message").as_string()), HasSubstr("journal"));
    EXPECT_EQ(chain.broadcasts(), 0u) << "nothing is sent that is not kept";
    auto read = post(R"({"jsonrpc":"2.0","id":1,"method":"eth_getBalance","params":[")" + kSender0 +
                     R"(","latest"]})");
    EXPECT_EQ(read.status, 200u);
    EXPECT_EQ(json::parse(read.body).at("result"), "0x64");
}

TEST_F(WritesTest, WhenNoNodeAnswersAReadTheLastAnswerIsServedMarkedStale) {
    Chain chain;
    start_on(chain);
    wait_ready();
    const std::string balance = R"({"jsonrpc":"2.0","id":7,"method":"eth_getBalance","params":[")" +
                                kSender0 + R"(","latest"]})";
    auto fresh = post(balance);
    EXPECT_EQ(fresh.status, 200u);
    EXPECT_EQ(fresh.headers.count("x-gateway-stale"), 0u);
    chain.set_down(true);
    ASSERT_TRUE(wait_state("node-0", "down"));
    std::this_thread::sleep_for(30ms);
    auto stale = post(balance);
    EXPECT_EQ(stale.status, 200u);
    EXPECT_EQ(stale.body, R"({"jsonrpc":"2.0","id":7,"result":"0x64"})");
    EXPECT_EQ(stale.header("x-gateway-stale"), "true");
    EXPECT_GE(std::stol(stale.header("x-gateway-data-age-ms")), 30);
    auto never = post(R"({"jsonrpc":"2.0","id":1,"method":"eth_getBalance","params":[")" +
                      kSender1 + R"(","latest"]})");
    EXPECT_EQ(never.status, 503u);
    EXPECT_EQ(never.headers.count("x-gateway-stale"), 0u);
    EXPECT_THAT(http_metrics(), HasSubstr(R"(gateway_stale_answers_total{chain="devnet"} 1)"));
}

// A journal whose writes fail while `full` is set, as on a full disk, and whose updates take
// `update_delay` (a slow disk). It wraps a whole journal, every role forwarded to `inner`: the
// JournalService holds it as it holds a backend.
class FullDisk final : public store::Journal {
public:
    FullDisk(std::unique_ptr<store::Store> inner, std::atomic<bool>& full,
             std::chrono::milliseconds update_delay = {})
        : inner_(std::move(inner)), full_(full), update_delay_(update_delay) {}

    // RawJournal.
    std::pair<store::TxRecord, bool> insert(const store::TxRecord& r) override {
        check();
        return inner_->insert(r);
    }
    bool update(const store::TxUpdate& u) override {
        check();
        std::this_thread::sleep_for(update_delay_);
        return inner_->update(u);
    }
    void put_network_form(std::string_view h, const std::vector<std::uint8_t>& n) override {
        check();
        inner_->put_network_form(h, n);
    }
    std::optional<std::vector<std::uint8_t>> network_form(std::string_view h) override {
        return inner_->network_form(h);
    }
    std::optional<store::TxRecord> find(std::string_view h) override { return inner_->find(h); }
    std::vector<store::TxRecord> unfinished() override { return inner_->unfinished(); }
    std::vector<store::TxRecord> unfinalized() override { return inner_->unfinalized(); }
    void mark_finalized(const std::vector<std::string>& hashes) override {
        check();
        inner_->mark_finalized(hashes);
    }
    std::vector<store::TxRecord> list(std::optional<TxState> s, std::size_t n) override {
        return inner_->list(s, n);
    }
    std::vector<store::TxEvent> history(std::string_view h) override { return inner_->history(h); }

    // ManagedJournal.
    std::pair<store::ManagedRecord, bool> insert_managed(const store::ManagedRecord& r) override {
        check();
        return inner_->insert_managed(r);
    }
    bool update_managed(const store::ManagedUpdate& u) override {
        check();
        return inner_->update_managed(u);
    }
    std::optional<store::ManagedRecord> find_managed(std::string_view id) override {
        return inner_->find_managed(id);
    }
    std::vector<store::ManagedRecord> unfinished_managed() override {
        return inner_->unfinished_managed();
    }
    std::vector<store::TxEvent> managed_history(std::string_view id) override {
        return inner_->managed_history(id);
    }
    std::vector<store::ManagedRef> reopened_managed() override {
        return inner_->reopened_managed();
    }
    std::vector<store::TxRecord> attempts(std::string_view id) override {
        return inner_->attempts(id);
    }

    // NonceLedger.
    std::uint64_t take_nonce(std::string_view c, std::string_view s, std::uint64_t f) override {
        check();
        return inner_->take_nonce(c, s, f);
    }
    void set_next_nonce(std::string_view c, std::string_view s, std::uint64_t n) override {
        check();
        inner_->set_next_nonce(c, s, n);
    }
    std::optional<std::uint64_t> next_nonce(std::string_view c, std::string_view s) override {
        return inner_->next_nonce(c, s);
    }

    // Retention.
    store::Pruned prune(std::int64_t before_ms, std::size_t limit) override {
        check();
        return inner_->prune(before_ms, limit);
    }

    // TransactionControl: the service's transactions, as they are (a full disk fails the
    // statements).
    void begin() override { inner_->begin(); }
    void commit() override { inner_->commit(); }
    void rollback() noexcept override { inner_->rollback(); }
    void savepoint() override { inner_->savepoint(); }
    void release_savepoint() override { inner_->release_savepoint(); }
    void rollback_to_savepoint() noexcept override { inner_->rollback_to_savepoint(); }
    bool in_transaction() const override { return inner_->in_transaction(); }

private:
    void check() {
        if (full_) throw store::StoreError("store: database or disk is full");
    }
    std::unique_ptr<store::Store> inner_;
    std::atomic<bool>& full_;
    std::chrono::milliseconds update_delay_;
};

// A transaction manager on a Chain, with a FullDisk journal.
struct ManagerRig {
    /// `seed` writes to the journal before the manager loads it.
    explicit ManagerRig(Chain& chain, std::chrono::milliseconds update_delay = {},
                        std::function<void(store::JournalView&)> seed = {},
                        std::chrono::milliseconds poll_interval = 10s,
                        const util::Clock& clock = util::SteadyClock::instance())
        : dir(test::make_temp_dir("writes-rig")),
          journal([this, update_delay] {
              return std::unique_ptr<store::Journal>(std::make_unique<FullDisk>(
                  store::open_store(config::StoreConfig{"sqlite", dir + "/j.db"}), full,
                  update_delay));
          }),
          cfg(chain_config(chain, poll_interval)),
          pool(cfg, io.ioc.get_executor(), nullptr),
          manager(cfg, pool, journal, nullptr, io.ioc.get_executor(), clock) {
        if (seed) journal.run_blocking(seed);
        pool.start();
        manager.start();
        for (int i = 0; i < 200 && !(pool.ready() && manager.loaded()); ++i)
            std::this_thread::sleep_for(10ms);
    }
    ~ManagerRig() {
        manager.stop();
        pool.stop();
        for (int i = 0; i < 300 && !manager.stopped(); ++i) std::this_thread::sleep_for(10ms);
        EXPECT_TRUE(manager.stopped());
        // The pool's stop() posts a cancel to each prober's strand, and a probe in flight runs
        // until its answer or timeout: the pool may go only once all of that has run. A sleep
        // ordered nothing (ThreadSanitizer reported the prober's timer destroyed here while the
        // cancel had run on the io thread) and could be too short; the io thread running out of
        // work and being joined is the signal, and the ordering.
        io.finish();
    }
    static config::ChainConfig chain_config(Chain& chain, std::chrono::milliseconds poll) {
        config::ChainConfig c;
        c.name = "devnet";
        c.chain_id = 31337;
        c.health.interval = 20ms;
        c.tx.poll_interval = poll;  // 10 s by default: the dispatcher stays out of the way
        c.tx.confirmations = 1;
        config::UpstreamConfig u;
        u.id = "node-0";
        u.url = chain.url();
        u.timeout = 1s;
        c.upstreams.push_back(u);
        return c;
    }
    txm::SubmitResult submit(const std::string& raw) {
        json::value params = json::array{json::string(raw)};
        return io.run(manager.submit(params));
    }
    std::optional<store::TxRecord> record(const std::string& hash) {
        std::optional<store::TxRecord> r;
        journal.run_blocking([&](store::JournalView& j) { r = j.find(hash); });
        return r;
    }
    /// Waits until the dispatcher has run `n` more rounds.
    bool wait_rounds(std::uint64_t n) {
        const std::uint64_t until = manager.rounds() + n;
        for (int i = 0; i < 500 && manager.rounds() < until; ++i) std::this_thread::sleep_for(5ms);
        return manager.rounds() >= until;
    }
    /// Waits until the chain has been sent `n` more transactions.
    bool wait_broadcasts(Chain& chain, std::size_t n) {
        const std::size_t until = chain.broadcasts() + n;
        for (int i = 0; i < 500 && chain.broadcasts() < until; ++i)
            std::this_thread::sleep_for(5ms);
        return chain.broadcasts() >= until;
    }
    bool wait_state(const std::string& hash, TxState state) {
        for (int i = 0; i < 500; ++i) {
            if (auto r = record(hash); r && r->state == state) return true;
            std::this_thread::sleep_for(10ms);
        }
        return false;
    }

    test::IoThread io;
    std::atomic<bool> full{false};
    std::string dir;
    store::JournalService journal;
    config::ChainConfig cfg;
    upstream::ChainPool pool;
    txm::TxManager manager;
};

// A transaction QUEUED in the journal at start may be one a node took just before the gateway
// stopped (the answer comes before its BROADCASTING record). Another transaction of its nonce
// does not replace it as "never sent": both are kept, and the nodes decide.
TEST(TxManager, AQueuedTransactionFromBeforeARestartIsNotReplacedAsNeverSent) {
    Chain chain;
    chain.set_down(true);  // nothing is sent during the test
    const std::string first = test::sign_legacy(test::kKey0, {.nonce = 0});
    const std::string faster =
        test::sign_legacy(test::kKey0, {.nonce = 0, .gas_price = 9'000'000'000});
    ManagerRig rig(chain, {}, [&](store::JournalView& j) {
        store::TxRecord r = record(hash_of(first), 0);
        r.sender = test::address_of(test::kKey0);
        r.raw = *eth::from_hex(first);
        j.insert(r);
    });
    for (int i = 0; i < 200 && !rig.manager.loaded(); ++i) std::this_thread::sleep_for(10ms);
    ASSERT_TRUE(rig.manager.loaded());
    txm::SubmitResult r = rig.submit(faster);
    ASSERT_TRUE(r.reply && !r.reply->is_error()) << r.reply->error.message;
    EXPECT_TRUE(r.queued) << "no node is up";
    EXPECT_EQ(rig.record(hash_of(first))->state, TxState::queued) << "it was replaced";
    EXPECT_EQ(rig.record(hash_of(faster))->state, TxState::queued);
    EXPECT_EQ(rig.manager.held(), 2u);
}

// Sent transactions waiting for their blocks have their receipts asked for in batches: thousands
// of them are a few calls a round, not thousands.
TEST(TxManager, ReceiptsOfSentTransactionsAreFetchedInBatches) {
    Chain chain;
    chain.node().set_batches(true);
    ManagerRig rig(chain, {}, {}, 50ms);
    ASSERT_TRUE(rig.pool.ready() && rig.manager.loaded());
    std::vector<std::string> hashes;
    for (std::uint64_t nonce = 0; nonce < 30; ++nonce) {
        const std::string raw = test::sign_legacy(test::kKey0, {.nonce = nonce});
        txm::SubmitResult r = rig.submit(raw);
        ASSERT_TRUE(r.reply && !r.reply->is_error());
        hashes.push_back(hash_of(raw));
    }
    chain.mine();
    auto all_completed = [&] {
        for (const auto& h : hashes)
            if (auto r = rig.record(h); !r || r->state != TxState::completed) return false;
        return true;
    };
    for (int i = 0; i < 500 && !all_completed(); ++i) std::this_thread::sleep_for(10ms);
    EXPECT_TRUE(all_completed());
    EXPECT_GE(chain.node().calls("(batch)"), 1u);
    EXPECT_GE(chain.node().calls("eth_getTransactionReceipt"), 30u);
}

TEST(TxManager, AFullDiskRefusesWritesAndNothingIsSent) {
    Chain chain;
    ManagerRig rig(chain);
    ASSERT_TRUE(rig.pool.ready() && rig.manager.loaded());
    rig.full = true;
    const std::string raw = test::sign_legacy(test::kKey0, {.nonce = 0});
    txm::SubmitResult r = rig.submit(raw);
    EXPECT_TRUE(r.store_failed);
    ASSERT_TRUE(r.reply && r.reply->is_error());
    EXPECT_EQ(r.reply->error.code, -32002);
    EXPECT_THAT(r.reply->error.message, HasSubstr("disk is full"));
    EXPECT_EQ(chain.broadcasts(), 0u) << "nothing is sent that is not kept";
    EXPECT_EQ(rig.manager.held(), 0u);

    rig.full = false;  // space again: the same transaction is taken
    r = rig.submit(raw);
    EXPECT_FALSE(r.store_failed);
    ASSERT_TRUE(r.reply && !r.reply->is_error());
    EXPECT_EQ(*r.reply->result, "\"" + hash_of(raw) + "\"");
    EXPECT_EQ(chain.broadcasts(), 1u);
}

// The client hears of an accepted transaction once a node has it; its BROADCASTING record is
// written after the answer (QUEUED made it durable). The sender's next nonce still goes out at
// once. (Whether it would be held when its QUEUED record commits together with the earlier one's
// BROADCASTING record depends on which completion runs first; `Entry::taken` covers that race,
// which this test cannot force.)
TEST(TxManager, TheAnswerDoesNotWaitForTheBroadcastingRecordNorDoesTheNextNonce) {
    Chain chain;
    ManagerRig rig(chain, 1500ms);  // every update (QUEUED -> BROADCASTING) takes 1.5 s
    ASSERT_TRUE(rig.pool.ready() && rig.manager.loaded());
    const std::string first = test::sign_legacy(test::kKey0, {.nonce = 0});
    const std::string second = test::sign_legacy(test::kKey0, {.nonce = 1});
    const auto t0 = std::chrono::steady_clock::now();
    txm::SubmitResult a = rig.submit(first);
    ASSERT_TRUE(a.reply && !a.reply->is_error());
    EXPECT_FALSE(a.queued);
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 1200ms) << "the answer waited for the record";
    // The same bytes again, while the record is being written: a node has it, so not "queued".
    txm::SubmitResult again = rig.submit(first);
    ASSERT_TRUE(again.reply && !again.reply->is_error());
    EXPECT_FALSE(again.queued);

    txm::SubmitResult b = rig.submit(second);
    ASSERT_TRUE(b.reply && !b.reply->is_error());
    EXPECT_FALSE(b.queued) << "nonce 1 was held back although a node has nonce 0";
    EXPECT_EQ(chain.broadcasts(), 2u);

    // Both records follow.
    for (int i = 0; i < 500; ++i) {
        auto ra = rig.record(hash_of(first));
        auto rb = rig.record(hash_of(second));
        if (ra && rb && ra->state == TxState::broadcasting && rb->state == TxState::broadcasting)
            break;
        std::this_thread::sleep_for(10ms);
    }
    EXPECT_EQ(rig.record(hash_of(first))->state, TxState::broadcasting);
    EXPECT_EQ(rig.record(hash_of(second))->state, TxState::broadcasting);
}

// ---------------------------------------------------------------------------------------------
// Transactions that can never be sent: expiry, and caps per sender and per client.

const std::string kBelowBaseFee =
    "max fee per gas less than block base fee: maxFeePerGas: 1, baseFee: 7";

// A throwaway private key of its own for each `i` (any small scalar is a valid key).
std::string throwaway_key(std::size_t i) {
    return fmt::format("0x{:064x}", i + 1);
}

// Nodes that keep answering "not now" (a fee below the base fee) for tx.expire_after_ms: the
// transaction is FAILED, "expired", with the nodes' last word; the sender's later nonce, held back
// behind it all along, goes with it.
TEST(TxManager, ATransactionTheNodesKeepRefusingExpiresWithTheLastRefusal) {
    Chain chain;
    chain.refuse_with(kBelowBaseFee);
    util::ManualClock clock;
    ManagerRig rig(chain, {}, {}, 20ms, clock);
    ASSERT_TRUE(rig.pool.ready() && rig.manager.loaded());
    const std::string first = test::sign_legacy(test::kKey0, {.nonce = 0});
    const std::string second = test::sign_legacy(test::kKey0, {.nonce = 1});
    txm::SubmitResult r = rig.submit(first);
    ASSERT_TRUE(r.reply && !r.reply->is_error());
    EXPECT_TRUE(r.queued);
    ASSERT_TRUE(rig.submit(second).queued);
    ASSERT_TRUE(rig.wait_broadcasts(chain, 2));

    clock.advance(59min);
    ASSERT_TRUE(rig.wait_broadcasts(chain, 2));
    EXPECT_EQ(rig.record(hash_of(first))->state, TxState::queued) << "expired before its time";
    EXPECT_EQ(rig.manager.held(), 2u);

    clock.advance(2min);  // an hour and a minute of refusals: tx.expire_after_ms is an hour
    ASSERT_TRUE(rig.wait_state(hash_of(first), TxState::failed));
    ASSERT_TRUE(rig.wait_state(hash_of(second), TxState::failed));
    const std::string why = rig.record(hash_of(first))->reason;
    EXPECT_THAT(why, HasSubstr("expired"));
    EXPECT_THAT(why, HasSubstr("less than block base fee"));
    EXPECT_THAT(rig.record(hash_of(second))->reason, HasSubstr("held back behind nonce 0"));
    EXPECT_EQ(rig.manager.held(), 0u) << "their places are free again";
}

// Catalog row B2: a queued transaction is kept however long no node can be reached. Time without
// a reachable node does not count towards expiry; the time the nodes refused it before and after
// does.
TEST(TxManager, TimeWithoutAReachableNodeDoesNotCountTowardsExpiry) {
    Chain chain;
    chain.refuse_with(kBelowBaseFee);
    util::ManualClock clock;
    ManagerRig rig(chain, {}, {}, 20ms, clock);
    ASSERT_TRUE(rig.pool.ready() && rig.manager.loaded());
    const std::string raw = test::sign_legacy(test::kKey0, {.nonce = 0});
    ASSERT_TRUE(rig.submit(raw).queued);
    ASSERT_TRUE(rig.wait_broadcasts(chain, 1));
    clock.advance(30min);  // refused for half an hour
    ASSERT_TRUE(rig.wait_broadcasts(chain, 2));

    chain.set_down(true);
    for (int i = 0; i < 500 && rig.pool.ready(); ++i) std::this_thread::sleep_for(10ms);
    ASSERT_FALSE(rig.pool.ready());
    ASSERT_TRUE(rig.wait_rounds(2));  // the dispatcher saw the outage
    clock.advance(5h);                // a long outage
    ASSERT_TRUE(rig.wait_rounds(2));
    chain.set_down(false);
    for (int i = 0; i < 500 && !rig.pool.ready(); ++i) std::this_thread::sleep_for(10ms);
    ASSERT_TRUE(rig.pool.ready());
    ASSERT_TRUE(rig.wait_broadcasts(chain, 2));
    EXPECT_EQ(rig.record(hash_of(raw))->state, TxState::queued) << "the outage counted";

    clock.advance(29min);  // 59 minutes of refusals in all
    ASSERT_TRUE(rig.wait_broadcasts(chain, 2));
    EXPECT_EQ(rig.record(hash_of(raw))->state, TxState::queued);
    clock.advance(2min);
    ASSERT_TRUE(rig.wait_state(hash_of(raw), TxState::failed));
    EXPECT_THAT(rig.record(hash_of(raw))->reason, HasSubstr("expired"));
}

// One client with throwaway senders cannot fill the chain's queue: tx.max_queued_per_client
// refuses its next one with -32005, counted in gateway_transaction_refusals_total, while others
// go on. Without auth the client is the peer's address. The caps are counted again from the
// journal after a restart.
TEST_F(WritesTest, QueueCapsPerSenderAndPerClientHoldAcrossARestart) {
    Chain chain;
    const auto caps = [](config::Config& c) {
        c.chains[0].tx.max_queued_per_sender = 2;
        c.chains[0].tx.max_queued_per_client = 3;
    };
    start_on(chain, caps);
    wait_ready();
    chain.set_down(true);
    ASSERT_TRUE(wait_state("node-0", "down"));
    for (std::uint64_t n = 0; n < 2; ++n)
        ASSERT_EQ(send(test::sign_legacy(throwaway_key(0), {.nonce = n})).status, 200u);
    ASSERT_EQ(send(test::sign_legacy(throwaway_key(1), {.nonce = 0})).status, 200u);
    auto refused = [&](const std::string& raw, const std::string& cap) {
        const auto reply = send(raw);
        EXPECT_EQ(reply.status, 200u);
        const json::value v = json::parse(reply.body);
        EXPECT_EQ(v.at("error").at("code"), -32005) << reply.body;
        EXPECT_THAT(std::string(v.at("error").at("message").as_string()), HasSubstr(cap));
        EXPECT_EQ(state_of(hash_of(raw)), "unknown") << "nothing kept that was refused";
    };
    refused(test::sign_legacy(throwaway_key(2), {.nonce = 0}), "tx.max_queued_per_client 3");
    refused(test::sign_legacy(throwaway_key(0), {.nonce = 2}), "tx.max_queued_per_sender 2");
    EXPECT_THAT(
        http_metrics(),
        HasSubstr(
            R"(gateway_transaction_refusals_total{chain="devnet",reason="max_queued_per_client"} 1)"));

    gw->shutdown();
    runner.join();
    gw.reset();
    const std::string path = store_path;
    start_on(chain, [&](config::Config& c) {
        caps(c);
        c.store.path = path;
    });
    ASSERT_TRUE(wait_state("node-0", "down"));
    refused(test::sign_legacy(throwaway_key(3), {.nonce = 0}), "tx.max_queued_per_client 3");
    refused(test::sign_legacy(throwaway_key(1), {.nonce = 1}), "tx.max_queued_per_client 3");
    refused(test::sign_legacy(throwaway_key(0), {.nonce = 2}), "tx.max_queued_per_sender 2");

    // Mined, a transaction frees its client's place.
    chain.set_down(false);
    const std::string mined = hash_of(test::sign_legacy(throwaway_key(1), {.nonce = 0}));
    ASSERT_TRUE(wait_tx_state(mined, "BROADCASTING"));
    chain.mine();
    chain.mine();
    ASSERT_TRUE(wait_tx_state(mined, "COMPLETED"));
    const std::string next = test::sign_legacy(throwaway_key(3), {.nonce = 0});
    EXPECT_EQ(json::parse(send(next).body).at("result"), hash_of(next).c_str());
}

// With auth, the client is the credential: one client at its cap does not stop another.
TEST_F(WritesTest, TheQueueCapPerClientCountsEachAuthenticatedClientApart) {
    Chain chain;
    const std::string alice_key = "alice-key-0123456789abcdef";
    const std::string bob_key = "bob-key-0123456789abcdef000";
    start_on(chain, [&](config::Config& c) {
        c.chains[0].tx.max_queued_per_client = 2;
        c.auth.clients.push_back(config::ClientConfig{.id = "alice", .keys = {alice_key}});
        c.auth.clients.push_back(config::ClientConfig{.id = "bob", .keys = {bob_key}});
    });
    chain.set_down(true);
    ASSERT_TRUE(wait_state("node-0", "down"));
    auto send_as = [&](const std::string& key, const std::string& raw) {
        test::HttpConnection c(port());
        return json::parse(
            c.request("POST", "/",
                      R"({"jsonrpc":"2.0","id":1,"method":"eth_sendRawTransaction","params":[")" +
                          raw + R"("]})",
                      {{"Authorization", "Bearer " + key}})
                .body);
    };
    EXPECT_TRUE(
        send_as(alice_key, test::sign_legacy(throwaway_key(0), {})).as_object().contains("result"));
    EXPECT_TRUE(
        send_as(alice_key, test::sign_legacy(throwaway_key(1), {})).as_object().contains("result"));
    const json::value third = send_as(alice_key, test::sign_legacy(throwaway_key(2), {}));
    EXPECT_EQ(third.at("error").at("code"), -32005);
    EXPECT_THAT(std::string(third.at("error").at("message").as_string()),
                HasSubstr("client alice has 2 unfinished transactions"));
    EXPECT_TRUE(
        send_as(bob_key, test::sign_legacy(throwaway_key(2), {})).as_object().contains("result"))
        << "bob is not alice";
}

// The gateway prunes its journal by itself: finished transactions older than store.retention_ms
// go at start (and every minute), counted in gateway_journal_pruned_total; the rest stay.
TEST_F(WritesTest, FinishedTransactionsPastRetentionLeaveTheJournal) {
    Chain chain;
    const std::string path = test::make_temp_dir("writes-retention") + "/gateway.db";
    const std::int64_t eight_days_ago = util::unix_ms() - 8 * 24 * 3'600'000LL;
    {
        auto s = store::open_store(config::StoreConfig{"sqlite", path});
        s->insert(record("0xold1", 0, TxState::completed));
        s->insert(record("0xold2", 1, TxState::failed));
        s->insert(record("0xopen", 2, TxState::broadcasting));
        store::TxRecord recent = record("0xnew", 3, TxState::completed);
        recent.created_ms = recent.updated_ms = util::unix_ms();
        s->insert(recent);
        for (const char* h : {"0xold1", "0xold2", "0xopen"})
            s->update(store::TxUpdate{h, s->find(h)->state, "as it was", eight_days_ago});
    }
    start_on(chain, [&](config::Config& c) { c.store.path = path; });
    wait_ready();
    for (int i = 0; i < 300 && journaled() != 2; ++i) std::this_thread::sleep_for(10ms);
    EXPECT_EQ(journaled(), 2u);
    EXPECT_THAT(http_metrics(), HasSubstr(R"(gateway_journal_pruned_total{kind="transaction"} 2)"));
    auto s = store::open_store(config::StoreConfig{"sqlite", path});
    EXPECT_FALSE(s->find("0xold1"));
    EXPECT_FALSE(s->find("0xold2"));
    EXPECT_TRUE(s->find("0xopen")) << "unfinished: kept however old";
    EXPECT_TRUE(s->find("0xnew")) << "finished within retention: kept";
}

// A held blob transaction costs memory for its payload only: the sidecar (768 KiB of blobs for
// six) is read from the journal for each broadcast.
TEST(TxManager, HoldsABlobTransactionWithoutItsSidecar) {
    Chain chain;
    chain.set_down(true);
    ManagerRig rig(chain, {}, {}, 20ms);
    const test::BlobTx blob = test::sign_blob(test::kKey0, {.blobs = 6});
    const eth::Bytes network =
        test::network_form(blob.payload, blob.parts, eth::BlobSidecar::eip7594);
    txm::SubmitResult r = rig.submit(eth::to_hex(network));
    ASSERT_TRUE(r.reply && !r.reply->is_error()) << r.reply->error.message;
    EXPECT_TRUE(r.queued);
    const auto held = rig.manager.held_record(blob.hash);
    ASSERT_TRUE(held);
    EXPECT_EQ(held->raw, blob.payload);
    EXPECT_LT(held->raw.size(), 500u);
    std::optional<std::vector<std::uint8_t>> kept;
    rig.journal.run_blocking([&](store::JournalView& j) { kept = j.network_form(blob.hash); });
    EXPECT_EQ(kept, network);

    chain.set_down(false);
    rig.manager.wake();
    for (int i = 0; i < 300 && chain.blob_forms().empty(); ++i) std::this_thread::sleep_for(10ms);
    EXPECT_EQ(chain.blob_forms(), std::vector<eth::BlobSidecar>{eth::BlobSidecar::eip7594});
}

// Managed senders: keys are loaded at start, and eth_accounts lists the chain's senders.
TEST_F(GatewayTest, ManagedAccountsAreListedAndTheirKeysCheckedAtStart) {
    ::setenv("GATEWAY_TEST_KEY0", test::kKey0.c_str(), 1);
    FakeUpstream node(
        31337, [](const std::string& m, const json::value&) -> std::optional<FakeReply> {
            if (m == "eth_accounts")
                return FakeReply::ok(R"(["0x0000000000000000000000000000000000000001"])");
            return std::nullopt;
        });
    auto managed = [&](config::Config& c, const std::string& address) {
        config::SignerConfig s;
        s.id = "hot";
        s.type = "local";
        s.key_env = "GATEWAY_TEST_KEY0";
        c.signers = {s};
        c.chains[0].accounts = {config::AccountConfig{address, "hot"}};
    };
    start({node.url()}, [&](config::Config& c) { managed(c, kSender0); });
    wait_ready();
    auto r = json::parse(post(R"({"jsonrpc":"2.0","id":1,"method":"eth_accounts"})").body);
    EXPECT_EQ(r.at("result"), json::array{"0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"})
        << "the managed sender, checksummed; never the node's accounts";
    EXPECT_EQ(node.calls("eth_accounts"), 0u);
    gw->shutdown();
    runner.join();
    gw.reset();

    // An account its signer cannot sign for stops the start.
    config::Config bad;
    bad.server.listen = {"127.0.0.1", 0};
    bad.server.admin_listen = {"127.0.0.1", 0};
    bad.store.path = test::make_temp_dir("managed-bad") + "/gateway.db";
    config::ChainConfig chain;
    chain.name = "devnet";
    chain.chain_id = 31337;
    config::UpstreamConfig u;
    u.id = "node-0";
    u.url = node.url();
    chain.upstreams.push_back(u);
    bad.chains.push_back(chain);
    managed(bad, kSender1);
    try {
        Gateway g(bad);
        ADD_FAILURE() << "started with an account nobody can sign for";
    } catch (const std::exception& e) {
        EXPECT_THAT(e.what(), HasSubstr("account " + kSender1 + " is not one signer 'hot'"));
    }
    // A key that cannot be loaded stops the start, naming the signer and not the key.
    ::setenv("GATEWAY_TEST_KEY0", "0x1234", 1);
    managed(bad, kSender0);
    try {
        Gateway g(bad);
        ADD_FAILURE() << "started with an unusable key";
    } catch (const std::exception& e) {
        EXPECT_THAT(e.what(), HasSubstr("GATEWAY_TEST_KEY0"));
        EXPECT_THAT(e.what(), ::testing::Not(HasSubstr("0x1234")));
    }
    ::unsetenv("GATEWAY_TEST_KEY0");
}

}  // namespace
}  // namespace gateway
