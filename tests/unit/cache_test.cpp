// The chain cache's rules (what is kept, for how long, what a reorg removes, the byte budget) and
// the coalescer of identical reads. The cache in the whole gateway is in
// tests/gateway/cache_test.cpp.

#include "gateway/cache/chain_cache.hpp"
#include "gateway/cache/coalescer.hpp"
#include "gateway/metrics/metrics.hpp"

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/strand.hpp>
#include <boost/json/parse.hpp>

namespace gateway::cache {
namespace {

namespace json = boost::json;
using ::testing::HasSubstr;
using ::testing::Not;
using Kind = Dependency::Kind;

constexpr const char* kAddr = "0x70997970c51812dc3a010c7d01b50e0d17dc79c8";

std::string hash_of(char c) {
    return "0x" + std::string(64, c);
}

Kind kind_of(std::string_view method, const char* params) {
    auto d = dependency_of(method, json::parse(params));
    EXPECT_TRUE(d) << method << " " << params;
    return d ? d->kind : Kind::none;
}

TEST(CacheRules, WhatEachReadDependsOn) {
    EXPECT_EQ(kind_of("eth_blockNumber", "[]"), Kind::head);
    EXPECT_EQ(kind_of("eth_gasPrice", "[]"), Kind::head);
    EXPECT_EQ(kind_of("eth_getBalance", R"(["0x1","latest"])"), Kind::head);
    EXPECT_EQ(kind_of("eth_getBalance", R"(["0x1"])"), Kind::head);
    EXPECT_EQ(kind_of("eth_call", R"([{},"finalized"])"), Kind::head);
    EXPECT_EQ(kind_of("eth_getBalance", R"(["0x1","0x10"])"), Kind::block);
    EXPECT_EQ(dependency_of("eth_getBalance", json::parse(R"(["0x1","0x10"])"))->number, 16u);
    EXPECT_EQ(dependency_of("eth_getBlockByNumber", json::parse(R"(["earliest",false])"))->number,
              0u);
    EXPECT_EQ(kind_of("eth_getBlockByHash", ("[\"" + hash_of('a') + "\",false]").c_str()),
              Kind::forever);
    EXPECT_EQ(kind_of("eth_call", ("[{},{\"blockHash\":\"" + hash_of('a') + "\"}]").c_str()),
              Kind::forever);
    EXPECT_EQ(kind_of("eth_getBlockReceipts", ("[\"" + hash_of('a') + "\"]").c_str()),
              Kind::forever);
    EXPECT_EQ(kind_of("eth_getTransactionReceipt", ("[\"" + hash_of('b') + "\"]").c_str()),
              Kind::mined);
    EXPECT_EQ(kind_of("eth_getLogs", R"([{"fromBlock":"0x1","toBlock":"0x20"}])"), Kind::block);
    EXPECT_EQ(dependency_of("eth_getLogs", json::parse(R"([{"fromBlock":"0x1","toBlock":"0x20"}])"))
                  ->number,
              32u);
    EXPECT_EQ(kind_of("eth_getLogs", R"([{"fromBlock":"0x1"}])"), Kind::head);
    EXPECT_EQ(kind_of("net_version", "[]"), Kind::forever);
    // Pending, and the two that take pending by default: never served from the cache.
    EXPECT_EQ(kind_of("eth_getTransactionCount", R"(["0x1","pending"])"), Kind::none);
    EXPECT_EQ(kind_of("eth_estimateGas", R"([{}])"), Kind::none);
    EXPECT_EQ(kind_of("eth_estimateGas", R"([{},"latest"])"), Kind::head);
    EXPECT_EQ(kind_of("eth_getLogs", R"([{"toBlock":"pending"}])"), Kind::none);
    EXPECT_EQ(
        kind_of(
            "eth_call",
            ("[{},{\"blockHash\":\"" + hash_of('a') + "\",\"requireCanonical\":true}]").c_str()),
        Kind::none);
    // Never kept at all.
    for (const char* m :
         {"eth_sendRawTransaction", "eth_newFilter", "eth_getFilterChanges", "eth_subscribe",
          "eth_syncing", "net_peerCount", "anvil_mine", "gateway_getTransaction", "eth_sign"})
        EXPECT_FALSE(dependency_of(m, json::parse("[]"))) << m;
}

TEST(CacheRules, KeysIgnoreKeyOrderAndHexCase) {
    EXPECT_EQ(cache_key("eth_call", json::parse(R"([{"to":"0xAB","data":"0x01"},"latest"])")),
              cache_key("eth_call", json::parse(R"([{"data":"0x01","to":"0xab"},"latest"])")));
    EXPECT_NE(cache_key("eth_call", json::parse(R"([{"to":"0xab"},"latest"])")),
              cache_key("eth_call", json::parse(R"([{"to":"0xac"},"latest"])")));
    EXPECT_NE(cache_key("eth_getBalance", json::parse(R"(["0xab"])")),
              cache_key("eth_getCode", json::parse(R"(["0xab"])")));
}

// The key's text, written straight from the call: members by name, hex strings in lower case,
// everything else as JSON writes it (escapes included).
TEST(CacheRules, AKeyIsTheCallsJsonNormalized) {
    const auto key = [](std::string_view params) {
        return cache_key("m", json::parse(params)).substr(2);  // after "m" and its NUL
    };
    EXPECT_EQ(cache_key("m", json::parse("[]")), std::string("m\0[]", 4));
    EXPECT_EQ(key(R"([{"b":[1,"0xAB",{"d":null,"c":true}],"a":"Hi\"X"},"0XFF",-3,false])"),
              R"([{"a":"Hi\"X","b":[1,"0xab",{"c":true,"d":null}]},"0xff",-3,false])");
    EXPECT_EQ(key(R"(["0xAB\u0001\"C"])"), R"(["0xab\u0001\"c"])");
    EXPECT_EQ(key(R"({"z":{},"y":[]})"), R"({"y":[],"z":{}})");
    EXPECT_EQ(key("null"), "null");
    EXPECT_EQ(key(R"({"a\"b":"0xC\u007f\u00e9"})"), "{\"a\\\"b\":\"0xc\x7f\xc3\xa9\"}")
        << "names escaped; DEL and UTF-8 as JSON writes them";
    EXPECT_EQ(key(R"({"a":1,"a":2})"), key(R"({"a":2})")) << "of a repeated name, the last";
}

class ChainCacheTest : public ::testing::Test {
protected:
    ChainCacheTest() { config.max_bytes = 1 << 20; }

    ChainCache& cache() {
        if (!cache_) cache_ = std::make_unique<ChainCache>("devnet", config, &metrics);
        return *cache_;
    }
    ChainCache::Ticket ticket(const char* method, const std::string& params) {
        auto t = cache().ticket(method, json::parse(params));
        EXPECT_TRUE(t) << method;
        return t.value_or(ChainCache::Ticket{});
    }
    std::optional<std::string> fresh(const char* method, const std::string& params,
                                     bool head_known = true) {
        return cache().fresh(ticket(method, params), head_known);
    }
    void put(const char* method, const std::string& params, const std::string& result) {
        cache().put(ticket(method, params), result);
    }
    bool stale(const char* method, const std::string& params) {
        return cache().stale(ticket(method, params)).has_value();
    }
    // Blocks a..b (inclusive) made canonical, with hashes of `c`-filler and their number.
    void canonical(std::uint64_t from, std::uint64_t to, char c) {
        std::vector<chain::BlockRef> blocks;
        for (std::uint64_t n = from; n <= to; ++n) blocks.push_back(block(n, c));
        cache().note_blocks(blocks);
    }
    static chain::BlockRef block(std::uint64_t n, char c) {
        std::string h = hash_of(c);
        const std::string digits = std::to_string(n);
        h.replace(h.size() - digits.size(), digits.size(), digits);
        return chain::BlockRef{n, h, {}};
    }
    static std::string block_json(std::uint64_t n, char c) {
        return R"({"number":"0x)" + fmt::format("{:x}", n) + R"(","hash":")" + block(n, c).hash +
               R"(","transactions":[]})";
    }
    static std::string by_number(std::uint64_t n) { return fmt::format(R"(["0x{:x}",false])", n); }

    config::CacheConfig config;
    metrics::Metrics metrics;
    std::unique_ptr<ChainCache> cache_;
};

TEST_F(ChainCacheTest, AnswersTiedToABlockHashStayUntilEvicted) {
    const std::string params = "[\"" + hash_of('a') + "\",false]";
    EXPECT_FALSE(fresh("eth_getBlockByHash", params));
    put("eth_getBlockByHash", params, R"({"number":"0x5"})");
    cache().note_head(100);
    cache().note_write();
    cache().note_reorg(chain::Reorg{3, 1, {}, {}});
    EXPECT_EQ(fresh("eth_getBlockByHash", params, false), R"({"number":"0x5"})");
    const std::string text = metrics.render();
    EXPECT_THAT(
        text,
        HasSubstr(
            R"(gateway_cache_requests_total{chain="devnet",method="eth_getBlockByHash",result="hit"} 1)"));
    EXPECT_THAT(
        text,
        HasSubstr(
            R"(gateway_cache_requests_total{chain="devnet",method="eth_getBlockByHash",result="miss"} 1)"));
}

TEST_F(ChainCacheTest, HeadAnswersLiveUntilTheHeadMovesOrAWriteGoesThrough) {
    cache().note_head(10);
    const std::string params = std::string("[\"") + kAddr + "\",\"latest\"]";
    put("eth_getBalance", params, "\"0x64\"");
    EXPECT_EQ(fresh("eth_getBalance", params), "\"0x64\"");
    // No node says where the head is: it may have moved.
    EXPECT_FALSE(fresh("eth_getBalance", params, false));
    cache().note_head(10);  // the same head: still true
    EXPECT_EQ(fresh("eth_getBalance", params), "\"0x64\"");
    cache().note_head(11);
    EXPECT_FALSE(fresh("eth_getBalance", params));
    EXPECT_TRUE(stale("eth_getBalance", params)) << "kept for when no node answers";

    put("eth_getBalance", params, "\"0x65\"");
    EXPECT_EQ(fresh("eth_getBalance", params), "\"0x65\"");
    cache().note_write();
    EXPECT_FALSE(fresh("eth_getBalance", params));

    // A new head at the same height (the watcher's new block) ends them too.
    put("eth_getBalance", params, "\"0x66\"");
    canonical(11, 11, 'c');
    EXPECT_FALSE(fresh("eth_getBalance", params));
}

TEST_F(ChainCacheTest, AnAnswerGivenBeforeAWriteIsNotServedAfterIt) {
    cache().note_head(10);
    const std::string params = std::string("[\"") + kAddr + "\",\"latest\"]";
    auto asked = ticket("eth_getBalance", params);
    cache().note_write();  // while the node was answering
    cache().put(asked, "\"0x64\"");
    EXPECT_FALSE(fresh("eth_getBalance", params));
    EXPECT_TRUE(stale("eth_getBalance", params));
}

TEST_F(ChainCacheTest, EthBlockNumberIsKeptAtTheHeadItReports) {
    cache().note_head(10);
    put("eth_blockNumber", "[]", "\"0xb\"");  // the node is ahead of the probes
    EXPECT_EQ(fresh("eth_blockNumber", "[]"), "\"0xb\"");
    cache().note_head(11);
    EXPECT_EQ(fresh("eth_blockNumber", "[]"), "\"0xb\"") << "the head it told is the head";
    cache().note_head(12);
    EXPECT_FALSE(fresh("eth_blockNumber", "[]"));
}

TEST_F(ChainCacheTest, UnfinalizedBlocksAreServedWhileCanonicalAndDroppedByAReorg) {
    canonical(1, 20, 'a');
    cache().note_finalized(4);
    // A block the watcher knows: kept while it is canonical.
    put("eth_getBlockByNumber", by_number(18), block_json(18, 'a'));
    EXPECT_EQ(fresh("eth_getBlockByNumber", by_number(18)), block_json(18, 'a'));
    // A finalized one: kept whatever comes.
    put("eth_getBlockByNumber", by_number(3), block_json(3, 'a'));
    // A node on another branch: its block is not kept.
    put("eth_getBlockByNumber", by_number(19), block_json(19, 'x'));
    EXPECT_FALSE(fresh("eth_getBlockByNumber", by_number(19)));
    EXPECT_FALSE(stale("eth_getBlockByNumber", by_number(19)));
    // A block above the head the watcher knows: cannot be checked, kept for stale serving only.
    put("eth_getBlockByNumber", by_number(21), block_json(21, 'a'));
    EXPECT_FALSE(fresh("eth_getBlockByNumber", by_number(21)));
    EXPECT_TRUE(stale("eth_getBlockByNumber", by_number(21)));
    // While no node answers, a reorg would not be seen: not served as still true.
    EXPECT_FALSE(fresh("eth_getBlockByNumber", by_number(18), false));
    // State at a block number names no block (a node on a losing sibling could have answered):
    // kept for stale serving until final.
    const std::string balance_at_17 = std::string("[\"") + kAddr + "\",\"0x11\"]";
    put("eth_getBalance", balance_at_17, "\"0x1\"");
    EXPECT_FALSE(fresh("eth_getBalance", balance_at_17));
    EXPECT_TRUE(stale("eth_getBalance", balance_at_17));
    // A transaction by block number and index names its block.
    const std::string tx_at_18 = R"(["0x12","0x0"])";
    put("eth_getTransactionByBlockNumberAndIndex", tx_at_18,
        R"({"hash":")" + hash_of('f') + R"(","blockNumber":"0x12","blockHash":")" +
            block(18, 'a').hash + R"("})");
    EXPECT_TRUE(fresh("eth_getTransactionByBlockNumberAndIndex", tx_at_18));

    // Blocks 17..20 replaced after 16.
    cache().note_reorg(chain::Reorg{4, 16, {}, {}});
    canonical(17, 21, 'b');
    EXPECT_FALSE(fresh("eth_getBlockByNumber", by_number(18)));
    EXPECT_FALSE(stale("eth_getBlockByNumber", by_number(18))) << "not even stale";
    EXPECT_FALSE(stale("eth_getBlockByNumber", by_number(21)));
    EXPECT_FALSE(stale("eth_getBalance", balance_at_17));
    EXPECT_EQ(fresh("eth_getBlockByNumber", by_number(3)), block_json(3, 'a'));
    EXPECT_FALSE(stale("eth_getTransactionByBlockNumberAndIndex", tx_at_18));
    EXPECT_THAT(metrics.render(),
                HasSubstr(R"(gateway_cache_invalidations_total{chain="devnet"} 4)"));

    // The new block 18 is kept.
    put("eth_getBlockByNumber", by_number(18), block_json(18, 'b'));
    EXPECT_EQ(fresh("eth_getBlockByNumber", by_number(18)), block_json(18, 'b'));
}

TEST_F(ChainCacheTest, AnAnswerTheWatcherLaterFindsOnADroppedBranchIsRemoved) {
    canonical(1, 10, 'a');
    // A receipt in block 12, which the watcher has not seen: kept for stale serving only.
    const std::string receipt_params = "[\"" + hash_of('d') + "\"]";
    put("eth_getTransactionReceipt", receipt_params,
        R"({"blockNumber":"0xc","blockHash":")" + block(12, 'x').hash + R"(","status":"0x1"})");
    EXPECT_FALSE(fresh("eth_getTransactionReceipt", receipt_params));
    EXPECT_TRUE(stale("eth_getTransactionReceipt", receipt_params));
    // Block 12 turns out to be another one: that receipt was on a branch now gone.
    canonical(11, 12, 'a');
    EXPECT_FALSE(stale("eth_getTransactionReceipt", receipt_params));

    // A receipt in a block the watcher knows is served while that block stays.
    put("eth_getTransactionReceipt", receipt_params,
        R"({"blockNumber":"0xc","blockHash":")" + block(12, 'a').hash + R"(","status":"0x1"})");
    EXPECT_TRUE(fresh("eth_getTransactionReceipt", receipt_params));
    canonical(12, 12, 'z');  // the watcher's next look finds another block 12
    EXPECT_FALSE(fresh("eth_getTransactionReceipt", receipt_params));
}

// The same call answered again: its one entry holds the new answer, counts its size (not the
// old one's), and depends on the block the new answer names.
TEST_F(ChainCacheTest, ACallAnsweredAgainTakesTheNewAnswerInItsEntry) {
    canonical(1, 20, 'a');
    const std::string params = "[\"" + hash_of('d') + "\"]";
    const auto receipt = [](std::uint64_t n, std::size_t padding) {
        return R"({"blockNumber":"0x)" + fmt::format("{:x}", n) + R"(","blockHash":")" +
               block(n, 'a').hash + R"(","status":"0x1","logsBloom":"0x)" +
               std::string(padding, '0') + R"("})";
    };
    const std::size_t key = cache_key("eth_getTransactionReceipt", json::parse(params)).size();
    put("eth_getTransactionReceipt", params, receipt(12, 4000));
    EXPECT_EQ(cache().bytes(), key + receipt(12, 4000).size() + ChainCache::kEntryOverhead);
    // Mined again in block 13 (a reorg the watcher has not reported yet), a shorter answer.
    put("eth_getTransactionReceipt", params, receipt(13, 10));
    EXPECT_EQ(cache().entries(), 1u);
    EXPECT_EQ(cache().bytes(), key + receipt(13, 10).size() + ChainCache::kEntryOverhead);
    EXPECT_EQ(fresh("eth_getTransactionReceipt", params), receipt(13, 10));
    // Longer again, then the same: still one entry, counted as it is now.
    put("eth_getTransactionReceipt", params, receipt(13, 6000));
    put("eth_getTransactionReceipt", params, receipt(13, 6000));
    EXPECT_EQ(cache().entries(), 1u);
    EXPECT_EQ(cache().bytes(), key + receipt(13, 6000).size() + ChainCache::kEntryOverhead);
    // It depends on block 13 now: blocks after 12 replaced drop it (with its old block, 12, it
    // would stay).
    cache().note_reorg(chain::Reorg{8, 12, {}, {}});
    canonical(13, 20, 'b');
    EXPECT_FALSE(stale("eth_getTransactionReceipt", params));
    EXPECT_EQ(cache().entries(), 0u);
    EXPECT_EQ(cache().bytes(), 0u);
}

TEST_F(ChainCacheTest, AfterAGapInTheWatchersViewUnfinalizedAnswersAreNotTrusted) {
    canonical(1, 10, 'a');
    put("eth_getBlockByNumber", by_number(9), block_json(9, 'a'));
    EXPECT_TRUE(fresh("eth_getBlockByNumber", by_number(9)));
    // The watcher next sees block 300: blocks 11..299, and any reorg among them, went unseen.
    canonical(300, 300, 'a');
    EXPECT_FALSE(fresh("eth_getBlockByNumber", by_number(9)));
}

TEST_F(ChainCacheTest, ABlockNumberFromANodeBehindIsNotGivenToEveryone) {
    cache().note_head(12);
    put("eth_blockNumber", "[]", "\"0xb\"");
    EXPECT_FALSE(fresh("eth_blockNumber", "[]"));
    put("eth_blockNumber", "[]", "\"0xc\"");
    EXPECT_EQ(fresh("eth_blockNumber", "[]"), "\"0xc\"");
}

TEST_F(ChainCacheTest, NullsErrorsAndPendingTransactionsAreNotKept) {
    canonical(1, 10, 'a');
    const std::string tx = "[\"" + hash_of('e') + "\"]";
    put("eth_getTransactionReceipt", tx, "null");
    EXPECT_FALSE(stale("eth_getTransactionReceipt", tx));
    put("eth_getTransactionByHash", tx, R"({"hash":"0x1","blockNumber":null,"blockHash":null})");
    EXPECT_FALSE(stale("eth_getTransactionByHash", tx));
    put("eth_getBlockByNumber", by_number(5), "null");
    EXPECT_FALSE(stale("eth_getBlockByNumber", by_number(5)));
}

TEST_F(ChainCacheTest, AnAnswerFromBeforeAReorgIsNotKept) {
    canonical(1, 10, 'a');
    auto asked = ticket("eth_getBlockByNumber", by_number(9));
    cache().note_reorg(chain::Reorg{2, 8, {}, {}});
    canonical(9, 10, 'b');
    cache().put(asked, block_json(9, 'b'));
    EXPECT_FALSE(stale("eth_getBlockByNumber", by_number(9)));
}

// A batch's answers are kept under one lock (put_all): each is kept, or not, as put() alone
// would, whatever the others are.
TEST_F(ChainCacheTest, ABatchsAnswersAreKeptAsEachWouldBeAlone) {
    canonical(1, 20, 'a');
    cache().note_finalized(4);
    cache().note_head(20);
    const std::string balance = std::string("[\"") + kAddr + "\",\"latest\"]";
    const std::string tx = "[\"" + hash_of('e') + "\"]";
    const auto before_reorg = ticket("eth_getBlockByNumber", by_number(19));
    cache().note_reorg(chain::Reorg{2, 18, {}, {}});
    canonical(19, 20, 'b');
    const std::vector<std::pair<ChainCache::Ticket, std::string>> answers{
        {ticket("eth_getBlockByNumber", by_number(18)), block_json(18, 'a')},  // canonical
        {ticket("eth_getBlockByNumber", by_number(17)), block_json(17, 'x')},  // another branch
        {ticket("eth_getBlockByNumber", by_number(3)), block_json(3, 'z')},    // final: unchecked
        {ticket("eth_getBlockByNumber", by_number(5)), "null"},
        {ticket("eth_getTransactionByHash", tx), R"({"hash":"0x1","blockNumber":null})"},
        {ticket("eth_getBalance", balance), "\"0x10\""},
        {before_reorg, block_json(19, 'b')},  // asked before a reorg
    };
    std::vector<ChainCache::Put> puts;
    for (const auto& [t, result] : answers) puts.push_back({&t, &result});
    cache().put_all(puts);

    EXPECT_EQ(fresh("eth_getBlockByNumber", by_number(18)), block_json(18, 'a'));
    EXPECT_FALSE(stale("eth_getBlockByNumber", by_number(17)));
    EXPECT_EQ(fresh("eth_getBlockByNumber", by_number(3)), block_json(3, 'z'));
    EXPECT_FALSE(stale("eth_getBlockByNumber", by_number(5)));
    EXPECT_FALSE(stale("eth_getTransactionByHash", tx));
    EXPECT_EQ(fresh("eth_getBalance", balance), "\"0x10\"");
    EXPECT_FALSE(stale("eth_getBlockByNumber", by_number(19)));
    EXPECT_EQ(cache().entries(), 3u);
    cache().put_all({});  // nothing to keep: nothing changes
    EXPECT_EQ(cache().entries(), 3u);
}

TEST_F(ChainCacheTest, MethodOverridesAndTurningItOff) {
    config.methods["eth_getBalance"] = config::CacheMode::final;
    config.methods["eth_call"] = config::CacheMode::off;
    cache().note_head(10);
    canonical(1, 10, 'a');
    const std::string latest = std::string("[\"") + kAddr + "\",\"latest\"]";
    put("eth_getBalance", latest, "\"0x1\"");
    EXPECT_FALSE(fresh("eth_getBalance", latest));
    EXPECT_TRUE(stale("eth_getBalance", latest));
    cache().note_finalized(5);
    const std::string at_3 = std::string("[\"") + kAddr + "\",\"0x3\"]";
    put("eth_getBalance", at_3, "\"0x2\"");
    EXPECT_EQ(fresh("eth_getBalance", at_3), "\"0x2\"");
    EXPECT_FALSE(cache().ticket("eth_call", json::parse(R"([{},"0x3"])")));
}

TEST_F(ChainCacheTest, DisabledItServesNothingFreshButStillServesStale) {
    config.enabled = false;
    put("eth_getBlockByHash", "[\"" + hash_of('a') + "\",false]", "{}");
    EXPECT_FALSE(fresh("eth_getBlockByHash", "[\"" + hash_of('a') + "\",false]"));
    EXPECT_TRUE(stale("eth_getBlockByHash", "[\"" + hash_of('a') + "\",false]"));
    EXPECT_THAT(metrics.render(), Not(HasSubstr("gateway_cache_requests_total{")));
}

TEST_F(ChainCacheTest, StaysWithinItsByteBudgetDroppingTheLeastRecentlyUsed) {
    config.max_bytes = 64 * 1024;
    const std::string answer = "\"0x" + std::string(1000, 'f') + "\"";
    const auto params = [](int i) {
        return fmt::format(R"(["{}",false])",
                           hash_of('a').substr(0, 60) + fmt::format("{:06d}", i));
    };
    put("eth_getBlockByHash", params(0), answer);
    std::size_t most = 0;
    for (int i = 1; i < 1000; ++i) {
        put("eth_getBlockByHash", params(i), answer);
        // The first entry is read now and then: the least recently used go first, not it.
        if (i % 10 == 0) {
            EXPECT_TRUE(fresh("eth_getBlockByHash", params(0))) << i;
        }
        EXPECT_LE(cache().bytes(), config.max_bytes) << i;
        most = std::max(most, cache().entries());
    }
    // Each entry counts its key, its answer and the bookkeeping.
    const std::size_t entry = cache_key("eth_getBlockByHash", json::parse(params(1))).size() +
                              answer.size() + ChainCache::kEntryOverhead;
    EXPECT_EQ(cache().entries(), config.max_bytes / entry);
    EXPECT_EQ(cache().bytes(), cache().entries() * entry);
    EXPECT_EQ(most, cache().entries());
    EXPECT_FALSE(fresh("eth_getBlockByHash", params(1)));
    EXPECT_TRUE(fresh("eth_getBlockByHash", params(999)));
    EXPECT_THAT(
        metrics.render(),
        HasSubstr(fmt::format(
            R"(gateway_cache_evictions_total{{chain="devnet",method="eth_getBlockByHash"}} {})",
            1000 - cache().entries())));
    // One answer over a quarter of the budget is not kept: it would empty the cache.
    put("eth_getBlockByHash", params(5000), "\"" + std::string(20000, 'f') + "\"");
    EXPECT_FALSE(stale("eth_getBlockByHash", params(5000)));
    cache().publish_metrics();
    EXPECT_THAT(
        metrics.render(),
        HasSubstr(fmt::format(R"(gateway_cache_bytes{{chain="devnet"}} {})", cache().bytes())));
}

// The coalescer alone: a follower gets the leader's answer; a flight from another head generation
// is not joined; an abandoned flight leaves its followers to their deadline and is not joined.
TEST(Coalescer, FollowersGetTheLeadersAnswerAndAbandonedFlightsEndAtTheDeadline) {
    namespace asio = boost::asio;
    using Clock = std::chrono::steady_clock;
    Coalescer c;
    auto first = c.join("k", 1);
    EXPECT_TRUE(first.leader);
    auto second = c.join("k", 1);
    EXPECT_FALSE(second.leader);
    EXPECT_EQ(second.flight, first.flight);
    EXPECT_TRUE(c.join("k", 2).leader) << "a flight from before a write or a new head";
    EXPECT_TRUE(c.join("other", 1).leader);

    asio::io_context ioc;
    upstream::Forwarded got;
    auto strand = asio::make_strand(ioc);
    asio::co_spawn(strand, c.wait(second.flight, Clock::now() + std::chrono::seconds(5)),
                   [&](std::exception_ptr, std::optional<upstream::Forwarded> f) {
                       got = std::move(f.value());
                   });
    upstream::Forwarded answer;
    answer.outcome = upstream::Forwarded::Outcome::answered;
    answer.reply = jsonrpc::Reply::success("\"0x1\"");
    ioc.poll();  // the follower is waiting now
    c.finish(first.flight, answer);
    const auto t0 = Clock::now();
    ioc.run();
    EXPECT_LT(Clock::now() - t0, std::chrono::seconds(1)) << "woken, not timed out";
    EXPECT_EQ(got.outcome, upstream::Forwarded::Outcome::answered);
    EXPECT_EQ(*got.reply.result, "\"0x1\"");

    // A leader that never finishes (its frame destroyed at a forced stop).
    auto leader = c.join("gone", 1);
    auto follower = c.join("gone", 1);
    ASSERT_FALSE(follower.leader);
    ioc.restart();
    upstream::Forwarded late;
    late.outcome = upstream::Forwarded::Outcome::answered;
    asio::co_spawn(strand, c.wait(follower.flight, Clock::now() + std::chrono::milliseconds(100)),
                   [&](std::exception_ptr, std::optional<upstream::Forwarded> f) {
                       late = std::move(f.value());
                   });
    ioc.poll();
    c.abandon(leader.flight);
    EXPECT_TRUE(c.join("gone", 1).leader) << "an abandoned flight is not joined";
    ioc.run();
    EXPECT_EQ(late.outcome, upstream::Forwarded::Outcome::unavailable);
    EXPECT_THAT(late.error.message, HasSubstr("no answer in time"));

    // A leader whose answer was its own (its request's limit): the followers fetch theirs.
    auto own = c.join("own", 1);
    auto other = c.join("own", 1);
    ioc.restart();
    std::optional<std::optional<upstream::Forwarded>> told;
    asio::co_spawn(strand, c.wait(other.flight, Clock::now() + std::chrono::seconds(5)),
                   [&](std::exception_ptr, std::optional<upstream::Forwarded> f) { told = f; });
    ioc.poll();
    c.give_up(own.flight);
    const auto t1 = Clock::now();
    ioc.run();
    EXPECT_LT(Clock::now() - t1, std::chrono::seconds(1)) << "woken, not timed out";
    ASSERT_TRUE(told.has_value());
    EXPECT_FALSE(told->has_value()) << "no answer handed on: fetch your own";
    EXPECT_TRUE(c.join("own", 1).leader);
}

}  // namespace
}  // namespace gateway::cache
