// chain::ChainWatcher against a fake pool (MockForwarder) that answers from a scripted chain:
// new blocks, a reorg walked back by parent hash, and the finality it publishes.

#include "gateway/chain/watcher.hpp"
#include "support/mock_forwarder.hpp"

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <boost/asio/io_context.hpp>
#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace gateway {
namespace {

namespace asio = boost::asio;
namespace json = boost::json;
using namespace std::chrono_literals;
using ::testing::_;
using ::testing::AnyNumber;
using ::testing::NiceMock;

// A block's hash: its branch and number, so that a test can tell the branches apart.
std::string hash_of(char branch, std::uint64_t number) {
    return fmt::format("0x{:02x}{:062x}", static_cast<unsigned>(branch), number);
}

// The chain the fake nodes serve: canonical blocks by number, every block ever made by hash.
class FakeChain {
public:
    // Blocks 0..head of branch `branch` (block 0's parent is all zeros).
    explicit FakeChain(std::uint64_t head, char branch = 'a') {
        for (std::uint64_t n = 0; n <= head; ++n) add(branch, n);
    }

    // Appends a block of `branch` on the canonical head.
    void mine(char branch = 'a') { add(branch, canonical_.rbegin()->first + 1); }
    // Replaces the canonical blocks above `ancestor` with `length` blocks of `branch`.
    void fork(std::uint64_t ancestor, std::uint64_t length, char branch) {
        canonical_.erase(canonical_.upper_bound(ancestor), canonical_.end());
        for (std::uint64_t i = 1; i <= length; ++i) add(branch, ancestor + i);
    }

    std::optional<std::uint64_t> safe, finalized;  // the nodes' tags; nullopt: an error

    // The answer to one call, as a node would give it.
    upstream::Forwarded answer(const std::string& method, const json::value& params) const {
        const json::array& p = params.as_array();
        const std::string arg(p.at(0).as_string());
        if (method == "eth_getBlockByHash") {
            auto it = by_hash_.find(arg);
            return test::answered(it == by_hash_.end() ? "null" : text(it->second));
        }
        if (method != "eth_getBlockByNumber") return test::answered_error(-32601, "no method");
        if (arg == "latest") return test::answered(text(canonical_.rbegin()->second));
        if (arg == "safe" || arg == "finalized") {
            const std::optional<std::uint64_t>& tag = arg == "safe" ? safe : finalized;
            if (!tag) return test::answered_error(-32000, "invalid block tag " + arg);
            return test::answered(text(canonical_.at(*tag)));
        }
        const std::uint64_t n = std::stoull(arg.substr(2), nullptr, 16);
        auto it = canonical_.find(n);
        return test::answered(it == canonical_.end() ? "null" : text(it->second));
    }

private:
    void add(char branch, std::uint64_t n) {
        chain::BlockRef b{n, hash_of(branch, n),
                          n == 0 ? hash_of(0, 0) : canonical_.at(n - 1).hash};
        canonical_[n] = b;
        by_hash_[b.hash] = b;
    }
    static std::string text(const chain::BlockRef& b) {
        json::object o;
        o["number"] = fmt::format("0x{:x}", b.number);
        o["hash"] = b.hash;
        o["parentHash"] = b.parent_hash;
        o["transactions"] = json::array();
        return json::serialize(o);
    }

    std::map<std::uint64_t, chain::BlockRef> canonical_;
    std::map<std::string, chain::BlockRef> by_hash_;
};

// A watcher polling every 5 ms through a MockForwarder that answers from `chain`, on an
// io_context the test runs; what it publishes is written down in order in `events`.
class WatcherTest : public ::testing::Test {
protected:
    WatcherTest() : chain(10) {
        config.name = "testnet";
        config.health.interval = std::chrono::milliseconds(5);
        config.health.timeout = std::chrono::milliseconds(500);
        config.reorgs.track = true;
        config.reorgs.depth = 16;
        config.reorgs.finality_depth = 3;
        pool.chain_config = config;
        // The watcher only reads: every call it makes is a read the fake chain answers.
        EXPECT_CALL(pool, forward(_, _, false, _, _))
            .Times(AnyNumber())
            .WillRepeatedly([this](std::string method, json::value params, bool, auto, auto) {
                return test::ready_awaitable(chain.answer(method, params));
            });
        EXPECT_CALL(pool, forward(_, _, true, _, _)).Times(0);
    }

    ~WatcherTest() override {
        if (!watcher) return;
        watcher->stop();
        ioc.restart();
        ioc.run_for(2s);  // the polling loop ends
        watcher.reset();
    }

    void start() {
        watcher.emplace(config, pool, nullptr, ioc.get_executor());
        chain::ChainEvents ev;
        ev.reorg = [this](const chain::Reorg& r) {
            std::string e = fmt::format("reorg depth {} after {}:", r.depth, r.ancestor);
            for (const auto& b : r.dropped) e += " " + name(b);
            e += " new head " + name(r.new_head);
            events.push_back(e);
        };
        ev.blocks = [this](const std::vector<chain::BlockRef>& blocks) {
            std::string e = "blocks:";
            for (const auto& b : blocks) {
                e += " " + name(b);
                published.push_back(b);
            }
            events.push_back(e);
        };
        ev.finalized = [this](std::uint64_t n) { finalized.push_back(n); };
        watcher->subscribe(std::move(ev));
        watcher->start();
    }

    // Runs the io_context in small steps until `done` holds, for at most 5 s.
    template <class Pred>
    bool run_until(Pred done) {
        const auto until = std::chrono::steady_clock::now() + 5s;
        while (!done()) {
            if (std::chrono::steady_clock::now() > until) return false;
            if (ioc.stopped()) ioc.restart();
            ioc.run_for(2ms);
        }
        return true;
    }
    // Until the block `hash` has been published.
    bool published_block(const std::string& hash) {
        return run_until([&] {
            for (const auto& b : published)
                if (b.hash == hash) return true;
            return false;
        });
    }
    // Until `n` has been published as final.
    bool published_final(std::uint64_t n) {
        return run_until([&] { return !finalized.empty() && finalized.back() == n; });
    }

    // "a5": block 5 of branch a.
    static std::string name(const chain::BlockRef& b) {
        const char branch = static_cast<char>(std::stoi(b.hash.substr(2, 2), nullptr, 16));
        return fmt::format("{}{}", branch, b.number);
    }

    asio::io_context ioc;
    FakeChain chain;
    config::ChainConfig config;
    NiceMock<test::MockForwarder> pool;
    std::optional<chain::ChainWatcher> watcher;
    std::vector<std::string> events;
    std::vector<chain::BlockRef> published;
    std::vector<std::uint64_t> finalized;
};

TEST_F(WatcherTest, NewBlocksArePublishedOnceEachInOrder) {
    start();
    ASSERT_TRUE(published_block(hash_of('a', 10)));
    chain.mine();
    ASSERT_TRUE(published_block(hash_of('a', 11)));
    // Two blocks between polls: the one skipped is fetched by its hash and published first.
    chain.mine();
    chain.mine();
    ASSERT_TRUE(published_block(hash_of('a', 13)));
    chain.mine();
    ASSERT_TRUE(published_block(hash_of('a', 14)));
    // Polls with nothing new publish nothing.
    const std::size_t seen = events.size();
    ioc.run_for(30ms);
    EXPECT_EQ(events.size(), seen) << "nothing new, nothing published";

    EXPECT_THAT(events, ::testing::ElementsAre("blocks: a10", "blocks: a11", "blocks: a12 a13",
                                               "blocks: a14"));
    for (const auto& b : published)
        EXPECT_EQ(b.hash, hash_of('a', b.number)) << "block " << b.number;
    EXPECT_EQ(watcher->view().at("head").at("number").as_uint64(), 14u);
    EXPECT_EQ(watcher->view().at("reorgs").as_uint64(), 0u);
}

TEST_F(WatcherTest, AReorgIsPublishedWithTheDroppedBlocksAndThenTheNewBranch) {
    start();
    ASSERT_TRUE(published_block(hash_of('a', 10)));
    chain.mine();
    ASSERT_TRUE(published_block(hash_of('a', 11)));
    chain.mine();
    ASSERT_TRUE(published_block(hash_of('a', 12)));
    // Blocks 11 and 12 replaced by a longer branch b from block 10: its head's parent is not
    // a block the watcher knows, so it walks back by parent hash to block 10.
    chain.fork(10, 3, 'b');
    ASSERT_TRUE(published_block(hash_of('b', 13)));

    EXPECT_THAT(events, ::testing::ElementsAre("blocks: a10", "blocks: a11", "blocks: a12",
                                               "reorg depth 2 after 10: a11 a12 new head b13",
                                               "blocks: b11 b12 b13"));
    const json::object view = watcher->view();
    EXPECT_EQ(view.at("head").at("hash").as_string(), hash_of('b', 13));
    EXPECT_EQ(view.at("reorgs").as_uint64(), 1u);
    ASSERT_EQ(view.at("recentReorgs").as_array().size(), 1u);
    EXPECT_EQ(view.at("recentReorgs").as_array()[0].at("depth").as_uint64(), 2u);

    // The new branch goes on as usual.
    chain.mine('b');
    ASSERT_TRUE(published_block(hash_of('b', 14)));
    EXPECT_EQ(events.back(), "blocks: b14");
}

TEST_F(WatcherTest, FinalityComesFromTheNodesFinalizedTag) {
    chain.safe = 8;
    chain.finalized = 5;  // not head - finality_depth (7)
    start();
    ASSERT_TRUE(published_final(5));
    EXPECT_EQ(watcher->finalized(), 5u);
    json::object view = watcher->view();
    EXPECT_EQ(view.at("finalized").at("number").as_uint64(), 5u);
    EXPECT_EQ(view.at("finalized").at("source").as_string(), "node");
    EXPECT_EQ(view.at("safe").at("number").as_uint64(), 8u);
    EXPECT_EQ(view.at("safe").at("source").as_string(), "node");

    chain.mine();
    chain.finalized = 6;
    ASSERT_TRUE(published_final(6));
    EXPECT_EQ(watcher->finalized(), 6u);
    // A failed read of the tag keeps the node's last answer, not the depth under the head.
    chain.finalized.reset();
    chain.mine();
    const std::size_t told = finalized.size();
    ASSERT_TRUE(published_block(hash_of('a', 12)));
    ASSERT_TRUE(run_until([&] { return finalized.size() >= told + 2; }));
    EXPECT_EQ(finalized.back(), 6u);
    EXPECT_EQ(watcher->finalized(), 6u);
    EXPECT_EQ(watcher->view().at("finalized").at("source").as_string(), "node");
}

TEST_F(WatcherTest, FinalityIsTheHeadLessTheFinalityDepthWhenTheNodeHasNoTag) {
    // chain.safe and chain.finalized unset: the nodes answer an error for the tags.
    start();
    ASSERT_TRUE(published_final(10 - 3));
    EXPECT_EQ(watcher->finalized(), 7u);
    json::object view = watcher->view();
    EXPECT_EQ(view.at("finalized").at("number").as_uint64(), 7u);
    EXPECT_EQ(view.at("finalized").at("source").as_string(), "depth");
    EXPECT_EQ(view.at("safe").at("source").as_string(), "depth");

    chain.mine();
    chain.mine();
    ASSERT_TRUE(published_final(12 - 3));
    EXPECT_EQ(watcher->finalized(), 9u);
    for (std::uint64_t n : finalized) EXPECT_TRUE(n == 7 || n == 8 || n == 9) << n;
}

}  // namespace
}  // namespace gateway
