// Durable writes in the whole gateway, in-process, against a simulated chain
// (support/simulated_chain.hpp) over HTTP: eth_sendRawTransaction from QUEUED to COMPLETED and
// back on a reorg, a node's refusal, every node down (queued, then sent in nonce order), restarts,
// blob transactions and their sidecars, bad transactions, queue caps per sender and per client,
// an unusable journal, retention, stale reads, fees and managed accounts at start.

#include "gateway/eth/transaction.hpp"
#include "gateway/store/store.hpp"
#include "gateway/util/wall_time.hpp"
#include "support/gateway_fixture.hpp"
#include "support/journal_records.hpp"
#include "support/simulated_chain.hpp"
#include "support/tx_signer.hpp"

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <boost/json/serialize.hpp>

#include <cstdlib>
#include <mutex>
#include <thread>

namespace gateway {
namespace {

using namespace std::chrono_literals;
using test::record;
using ::testing::HasSubstr;
namespace json = boost::json;
using store::TxState;
using test::Chain;
using test::FakeReply;
using test::FakeUpstream;
using test::GatewayTest;
using test::hash_of;
using test::http_get;

const std::string kSender0 = test::address_of(test::kKey0);
const std::string kSender1 = test::address_of(test::kKey1);

// A throwaway private key of its own for each `i` (any small scalar is a valid key).
std::string throwaway_key(std::size_t i) {
    return fmt::format("0x{:064x}", i + 1);
}

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
