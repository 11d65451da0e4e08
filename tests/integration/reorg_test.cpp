// Reorgs seen through the gateway with anvil's anvil_reorg and anvil_rollback: the head tracker
// tells a reorg from new blocks, with the right depth, and says so at /admin/chains and in the
// metrics; the cache drops what the reorg dropped; a transaction mined in a dropped block is
// followed to its new one.

#include "integration/devnet.hpp"
#include "support/http_test_client.hpp"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <csignal>
#include <functional>
#include <thread>

namespace gateway::test {
namespace {

namespace json = boost::json;
using Clock = std::chrono::steady_clock;

class ReorgTest : public DevnetTest {
protected:
    void start(const std::string& chain_yaml) {
        start_devnet("gateway-reorg");
        gw_chains = fmt::format(
            "  - name: devnet\n"
            "    chain_id: 31337\n"
            "    health: {{interval_ms: 100}}\n"
            "{}"
            "    upstreams:\n"
            "      - {{id: node, url: \"{}\"}}\n",
            chain_yaml, anvil->url());
        run_gateway(std::make_unique<GatewayProcess>(dir, gw_chains));
        ASSERT_TRUE(gw->wait_ready()) << gw->process().output();
    }

    /// anvil's first account sends 1 wei to 0x…dEaD with nonce 0, signed by cast.
    static std::string first_transfer() {
        return cast({"mktx", "--private-key",
                     "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
                     "--chain", "31337", "--nonce", "0", "--gas-limit", "21000", "--gas-price",
                     "2000000000", "--priority-gas-price", "1000000000",
                     "0x000000000000000000000000000000000000dEaD", "--value", "1"});
    }
    HttpReply node(const std::string& method, const std::string& params) {
        return http_post(anvil->port(), "/", rpc_body(method, params));
    }
    HttpReply via_gateway(const std::string& method, const std::string& params) {
        return http_post(gw->port(), "/", rpc_body(method, params));
    }
    /// The chain's entry at /admin/chains.
    json::value chain() {
        const json::value v = json::parse(http_get(gw->admin_port(), "/admin/chains").body);
        return v.at("chains").at(0);
    }
    bool head_is(std::uint64_t n) {
        const json::value c = chain();
        return c.at("head").is_object() &&
               c.at("head").at("number").to_number<std::uint64_t>() == n;
    }

    std::string gw_chains;
};

// Catalog: a reorg after COMPLETED. With the default single confirmation, a transaction is
// COMPLETED in its block at once; until that block is final (anvil's finalized tag: 64 under
// the head) a reorg that drops it reopens it, from the journal after a restart too, and it is
// mined again. `final` says whether its state can still change.
TEST_F(ReorgTest, ACompletedTransactionWhoseBlockIsDroppedBeforeItIsFinalIsMinedAgain) {
    ASSERT_NO_FATAL_FAILURE(start("    tx: {poll_interval_ms: 100}\n"));
    const json::value sent =
        json::parse(http_post(gw->port(), "/",
                              rpc_body("eth_sendRawTransaction", "[\"" + first_transfer() + "\"]"))
                        .body);
    ASSERT_TRUE(sent.as_object().contains("result")) << json::serialize(sent);
    const std::string hash(sent.at("result").as_string());
    const auto record = [&] {
        return json::parse(http_get(gw->admin_port(), "/admin/transactions/" + hash).body);
    };
    ASSERT_TRUE(wait_until([&] { return record().at("state") == "COMPLETED"; }))
        << json::serialize(record());
    EXPECT_EQ(record().at("final"), false) << "its block is not final yet";
    const std::string first_block(record().at("blockHash").as_string());
    const std::uint64_t mined_in =
        std::stoull(std::string(record().at("blockNumber").as_string()), nullptr, 16);
    node("anvil_mine", "[\"0x3\"]");

    // A restart: the journal has it as mined but not final.
    gw->process().signal(SIGKILL);
    gw->process().wait(std::chrono::seconds(10));
    run_gateway(std::make_unique<GatewayProcess>(dir, gw_chains));
    ASSERT_TRUE(gw->wait_ready()) << gw->process().output();

    // The restarted gateway's head tracker has the blocks the reorg replaces.
    ASSERT_TRUE(wait_until([&] { return head_is(mined_in + 3); })) << json::serialize(chain());
    // Every block from its own up is replaced; anvil leaves the transaction out of them.
    node("anvil_reorg", fmt::format("[{}, []]", 3 + 1));
    ASSERT_EQ(
        json::parse(node("eth_getTransactionReceipt", "[\"" + hash + "\"]").body).at("result"),
        json::value(nullptr))
        << "anvil_reorg did not drop block " << mined_in;
    ASSERT_TRUE(wait_until([&] {
        const json::value r = record();
        return r.at("state") == "COMPLETED" && r.at("blockHash") != json::value(first_block);
    })) << json::serialize(record())
        << gw->process().output();
    const std::string history = json::serialize(record().at("history"));
    EXPECT_NE(history.find("a reorg before its block was final dropped it"), std::string::npos)
        << history;
    // Mined once, on the canonical chain, where the journal says.
    const json::value receipt =
        json::parse(node("eth_getTransactionReceipt", "[\"" + hash + "\"]").body).at("result");
    ASSERT_TRUE(receipt.is_object());
    EXPECT_EQ(receipt.at("blockHash"), record().at("blockHash"));
    EXPECT_EQ(json::parse(node("eth_getTransactionCount",
                               "[\"0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266\", \"latest\"]")
                              .body)
                  .at("result"),
              "0x1");
    EXPECT_EQ(record().at("final"), false);

    // 64 blocks on top, its block is final: nothing can change it any more.
    node("anvil_mine", "[\"0x50\"]");
    ASSERT_TRUE(wait_until([&] { return record().at("final") == true; }))
        << json::serialize(record());
    EXPECT_EQ(record().at("state"), "COMPLETED");
}

TEST_F(ReorgTest, ReorgsOfDepthOneAndFiveAreSeenWithTheirDepth) {
    ASSERT_NO_FATAL_FAILURE(start("    reorgs: {depth: 64}\n"));

    // New blocks, one by one and ten at once, are not reorgs.
    node("anvil_mine", "[\"0x1\"]");
    ASSERT_TRUE(wait_until([&] { return head_is(1); })) << json::serialize(chain());
    node("anvil_mine", "[\"0xa\"]");
    ASSERT_TRUE(wait_until([&] { return head_is(11); })) << json::serialize(chain());
    EXPECT_EQ(chain().at("reorgs"), 0);

    // The last block replaced: depth 1.
    node("anvil_reorg", "[1, []]");
    ASSERT_TRUE(wait_until([&] { return chain().at("reorgs") == 1; }))
        << json::serialize(chain()) << gw->process().output();
    json::value last = chain().at("recentReorgs").at(0);
    EXPECT_EQ(last.at("depth"), 1);
    EXPECT_EQ(last.at("ancestor"), 10);

    // The last five replaced: depth 5, blocks 7..11 dropped.
    node("anvil_reorg", "[5, []]");
    ASSERT_TRUE(wait_until([&] { return chain().at("reorgs") == 2; })) << json::serialize(chain());
    last = chain().at("recentReorgs").at(0);
    EXPECT_EQ(last.at("depth"), 5);
    EXPECT_EQ(last.at("ancestor"), 6);
    EXPECT_EQ(last.at("dropped").as_array().size(), 5u);
    EXPECT_EQ(last.at("dropped").at(0).at("number"), 7);
    // Head tracking goes on: the next block extends the new chain.
    node("anvil_mine", "[\"0x1\"]");
    ASSERT_TRUE(wait_until([&] { return head_is(12); }));
    EXPECT_EQ(chain().at("reorgs"), 2);

    // The nodes' safe and finalized tags are followed (anvil: 32 and 64 under the head).
    node("anvil_mine", "[\"0x64\"]");
    ASSERT_TRUE(wait_until([&] {
        const json::value c = chain();
        return head_is(112) && c.at("finalized").is_object() &&
               c.at("finalized").at("number") == 48;
    })) << json::serialize(chain());
    EXPECT_EQ(chain().at("safe").at("number"), 80);
    EXPECT_EQ(chain().at("finalized").at("source"), "node");

    const std::string metrics = http_get(gw->admin_port(), "/metrics").body;
    EXPECT_NE(metrics.find("gateway_reorgs_total{chain=\"devnet\"} 2"), std::string::npos);
    EXPECT_NE(metrics.find("gateway_reorg_depth_blocks_count{chain=\"devnet\"} 2"),
              std::string::npos);
    EXPECT_NE(gw->process().output().find("reorg of depth 5"), std::string::npos);
}

TEST_F(ReorgTest, B3_ATransactionInADroppedBlockIsMinedAgainAndItsStateFollows) {
    ASSERT_NO_FATAL_FAILURE(start("    tx: {confirmations: 4, poll_interval_ms: 100}\n"));
    const std::string raw = first_transfer();
    const json::value sent = json::parse(
        http_post(gw->port(), "/", rpc_body("eth_sendRawTransaction", "[\"" + raw + "\"]")).body);
    ASSERT_TRUE(sent.as_object().contains("result")) << json::serialize(sent);
    const std::string hash(sent.at("result").as_string());
    const auto record = [&] {
        return json::parse(http_post(gw->port(), "/",
                                     rpc_body("gateway_getTransaction", "[\"" + hash + "\"]"))
                               .body)
            .at("result");
    };
    ASSERT_TRUE(wait_until([&] { return record().at("state") == "CONFIRMING"; }))
        << json::serialize(record());

    // Its block is dropped (anvil leaves the transaction out of the new chain): it is never
    // COMPLETED while off the canonical chain; the gateway sends it again and follows it.
    node("anvil_reorg", "[1, []]");
    ASSERT_TRUE(wait_until([&] {
        const json::value r = record();
        return r.at("state") == "CONFIRMING" && r.at("blockHash") != json::value(nullptr) &&
               json::serialize(r.at("history")).find("BROADCASTING") !=
                   json::serialize(r.at("history")).rfind("BROADCASTING");
    })) << json::serialize(record());
    EXPECT_NE(record().at("state"), "COMPLETED");
    node("anvil_mine", "[\"0x4\"]");
    ASSERT_TRUE(wait_until([&] { return record().at("state") == "COMPLETED"; }))
        << json::serialize(record());

    // CONFIRMING -> BROADCASTING -> CONFIRMING -> COMPLETED, in that order.
    std::vector<std::string> states;
    const json::value done = record();
    for (const auto& h : done.at("history").as_array())
        if (states.empty() || states.back() != h.at("state").as_string())
            states.emplace_back(h.at("state").as_string());
    const std::vector<std::string> tail{"CONFIRMING", "BROADCASTING", "CONFIRMING", "COMPLETED"};
    ASSERT_GE(states.size(), tail.size()) << json::serialize(record());
    EXPECT_EQ(std::vector<std::string>(states.end() - 4, states.end()), tail)
        << json::serialize(record());
    // Mined once, on the canonical chain, as the node says.
    const json::value receipt =
        json::parse(node("eth_getTransactionReceipt", "[\"" + hash + "\"]").body).at("result");
    EXPECT_EQ(receipt.at("blockHash"), record().at("blockHash"));
    // (Whether the head watcher saw the dropped block at all depends on its timing: the journal's
    // receipts are what tell, and they did.)
}

TEST_F(ReorgTest, CachedReadsOfDroppedBlocksAreNotServedAfterTheReorg) {
    ASSERT_NO_FATAL_FAILURE(start(""));
    node("anvil_mine", "[\"0xa\"]");
    ASSERT_TRUE(wait_until([&] { return head_is(10); })) << json::serialize(chain());
    const auto block = [&](std::uint64_t n) {
        return via_gateway("eth_getBlockByNumber", fmt::format("[\"0x{:x}\",false]", n));
    };
    const auto hash_of = [](const HttpReply& r) {
        return std::string(json::parse(r.body).at("result").at("hash").as_string());
    };

    // Blocks 9 and 3, read twice: the second time from the cache.
    const HttpReply nine = block(9);
    ASSERT_EQ(nine.status, 200u) << nine.body;
    EXPECT_EQ(nine.header("x-gateway-cache"), "");
    EXPECT_EQ(block(9).header("x-gateway-cache"), "hit");
    const HttpReply three = block(3);
    EXPECT_EQ(block(3).header("x-gateway-cache"), "hit");

    // Blocks 8..10 replaced (with a transaction, so that they differ).
    const std::string tx = first_transfer();
    node("anvil_reorg", fmt::format("[3, [[\"{}\", 1]]]", tx));
    ASSERT_TRUE(wait_until([&] { return chain().at("reorgs") == 1; })) << json::serialize(chain());
    // anvil mines the new blocks one by one: the watcher may have seen the reorg part way (a new
    // head 8) and the rest not yet. Until it is at 10 again, blocks 9 and 10 are above its head
    // (not cached), and the rollback below would take it from 9 to 9 (no reorg to see).
    ASSERT_TRUE(wait_until([&] { return head_is(10); })) << json::serialize(chain());
    const std::string new_nine = hash_of(node("eth_getBlockByNumber", "[\"0x9\",false]"));
    ASSERT_NE(new_nine, hash_of(nine)) << "anvil_reorg did not replace block 9";

    // Block 9 as the node has it now, not the dropped one the cache held.
    const HttpReply after = block(9);
    EXPECT_EQ(after.header("x-gateway-cache"), "");
    EXPECT_EQ(hash_of(after), new_nine);
    EXPECT_EQ(block(9).header("x-gateway-cache"), "hit");
    EXPECT_EQ(hash_of(block(9)), new_nine);
    // Block 3, under the common ancestor, is still served from the cache.
    const HttpReply three_again = block(3);
    EXPECT_EQ(three_again.header("x-gateway-cache"), "hit");
    EXPECT_EQ(hash_of(three_again), hash_of(three));
    const std::string metrics = http_get(gw->admin_port(), "/metrics").body;
    EXPECT_NE(metrics.find("gateway_cache_invalidations_total{chain=\"devnet\"}"),
              std::string::npos)
        << metrics;

    // anvil_rollback: block 10 is gone (no new one yet). The cached one is not served.
    EXPECT_EQ(block(10).header("x-gateway-cache"), "");
    EXPECT_EQ(block(10).header("x-gateway-cache"), "hit");
    node("anvil_rollback", "[1]");
    ASSERT_TRUE(wait_until([&] { return chain().at("reorgs") == 2; })) << json::serialize(chain());
    const json::value rollback = chain().at("recentReorgs").at(0);
    EXPECT_EQ(rollback.at("depth"), 1);
    EXPECT_EQ(rollback.at("ancestor"), 9);
    EXPECT_TRUE(head_is(9));
    const HttpReply gone = block(10);
    EXPECT_EQ(gone.header("x-gateway-cache"), "");
    EXPECT_EQ(json::parse(gone.body).at("result"), nullptr) << gone.body;
}

}  // namespace
}  // namespace gateway::test
