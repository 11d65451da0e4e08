// The head tracker on made-up chains: extension, reorgs of depth 1 and 5, a branch deeper than
// the window, gaps, branches that do not link, and rollbacks.

#include "gateway/chain/head_tracker.hpp"

#include <gtest/gtest.h>

#include <stdexcept>
#include <string>
#include <vector>

namespace gateway::chain {
namespace {

// Block `n` of fork `fork`: hashes say which fork and height they belong to.
std::string hash(char fork, std::uint64_t n) {
    return std::string("0x") + fork + std::to_string(n);
}

// Blocks from..to of `fork`, whose block `from` has parent `parent`.
std::vector<BlockRef> blocks(char fork, std::uint64_t from, std::uint64_t to,
                             const std::string& parent) {
    std::vector<BlockRef> out;
    std::string p = parent;
    for (std::uint64_t n = from; n <= to; ++n) {
        out.push_back(BlockRef{n, hash(fork, n), p});
        p = out.back().hash;
    }
    return out;
}

TEST(HeadTracker, ExtendsBlockByBlockWithoutReorgs) {
    HeadTracker t(8);
    EXPECT_FALSE(t.head());
    for (const auto& b : blocks('a', 0, 20, "0xgenesis-parent")) {
        EXPECT_TRUE(t.extends(b));
        EXPECT_FALSE(t.apply({b}));
    }
    EXPECT_EQ(t.head()->number, 20u);
    EXPECT_EQ(t.size(), 8u) << "only the newest `depth` blocks are kept";
    EXPECT_EQ(t.hash_at(20), hash('a', 20));
    EXPECT_EQ(t.hash_at(13), hash('a', 13));
    EXPECT_FALSE(t.hash_at(12));
    EXPECT_FALSE(t.knows(hash('a', 12)));
}

TEST(HeadTracker, AReorgOfDepthOneReplacesTheHead) {
    HeadTracker t;
    t.apply(blocks('a', 0, 10, "0xp"));
    // A sibling of block 10, then its child: the new head's parent is not the old head.
    const auto branch = blocks('b', 10, 11, hash('a', 9));
    EXPECT_FALSE(t.extends(branch.back()));
    EXPECT_TRUE(t.knows(branch.front().parent_hash));
    const auto r = t.apply(branch);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->depth, 1u);
    EXPECT_EQ(r->ancestor, 9u);
    ASSERT_EQ(r->dropped.size(), 1u);
    EXPECT_EQ(r->dropped[0].hash, hash('a', 10));
    EXPECT_EQ(r->new_head.hash, hash('b', 11));
    EXPECT_EQ(t.hash_at(10), hash('b', 10));
    EXPECT_EQ(t.hash_at(9), hash('a', 9));
}

TEST(HeadTracker, AReorgOfDepthFiveDropsFiveBlocksEvenToAShorterBranch) {
    HeadTracker t;
    t.apply(blocks('a', 0, 20, "0xp"));
    // The new chain forks after block 15 and is only 3 blocks long so far (16..18).
    const auto r = t.apply(blocks('c', 16, 18, hash('a', 15)));
    ASSERT_TRUE(r);
    EXPECT_EQ(r->depth, 5u);
    EXPECT_EQ(r->ancestor, 15u);
    EXPECT_EQ(r->dropped.front().number, 16u);
    EXPECT_EQ(r->dropped.back().number, 20u);
    EXPECT_EQ(t.head()->hash, hash('c', 18));
    EXPECT_FALSE(t.hash_at(19));
    EXPECT_FALSE(t.knows(hash('a', 17)));
}

TEST(HeadTracker, SeveralNewBlocksAtOnceAreNotAReorg) {
    HeadTracker t;
    t.apply(blocks('a', 0, 5, "0xp"));
    EXPECT_FALSE(t.apply(blocks('a', 6, 9, hash('a', 5))));
    EXPECT_EQ(t.head()->number, 9u);
    // A branch that repeats blocks the tracker has (same hashes) drops nothing.
    EXPECT_FALSE(t.apply(blocks('a', 8, 12, hash('a', 7))));
    EXPECT_EQ(t.head()->number, 12u);
}

TEST(HeadTracker, ABranchDeeperThanTheWindowReplacesEverything) {
    HeadTracker t(4);
    t.apply(blocks('a', 0, 10, "0xp"));  // holds 7..10
    const auto r = t.apply(blocks('d', 6, 12, hash('x', 5)));
    ASSERT_TRUE(r);
    EXPECT_EQ(r->depth, 4u) << "every block it held was dropped";
    EXPECT_EQ(t.head()->hash, hash('d', 12));
    EXPECT_EQ(t.size(), 4u);
}

TEST(HeadTracker, BranchesThatDoNotLinkAreRefused) {
    HeadTracker t;
    t.apply(blocks('a', 0, 10, "0xp"));
    auto broken = blocks('b', 5, 7, hash('a', 4));
    broken[2].parent_hash = "0xnot-its-parent";
    EXPECT_THROW(t.apply(broken), std::invalid_argument);
    // Starting inside the window on an unknown parent: the caller must walk back further.
    EXPECT_THROW(t.apply(blocks('b', 6, 8, "0xunknown")), std::invalid_argument);
    // A parent the tracker knows, at the wrong height.
    EXPECT_THROW(t.apply(blocks('b', 9, 9, hash('a', 4))), std::invalid_argument);
    EXPECT_EQ(t.head()->hash, hash('a', 10)) << "a refused branch changes nothing";
}

TEST(HeadTracker, AGapAboveTheHeadStartsAgainWithoutAReorg) {
    HeadTracker t;
    t.apply(blocks('a', 0, 10, "0xp"));
    EXPECT_FALSE(t.apply(blocks('a', 50, 52, hash('a', 49))));
    EXPECT_EQ(t.head()->number, 52u);
    EXPECT_EQ(t.size(), 3u);
}

TEST(HeadTracker, ARollbackToAKnownBlockDropsTheBlocksAboveIt) {
    HeadTracker t(16);
    t.apply(blocks('a', 0, 10, "0xp"));
    EXPECT_FALSE(t.rewind_to(hash('a', 10))) << "already the head";
    EXPECT_FALSE(t.rewind_to(hash('z', 3))) << "unknown";
    auto r = t.rewind_to(hash('a', 7));
    ASSERT_TRUE(r);
    EXPECT_EQ(r->depth, 3u);
    EXPECT_EQ(r->ancestor, 7u);
    EXPECT_EQ(r->dropped.front().number, 8u);
    EXPECT_EQ(r->new_head.hash, hash('a', 7));
    EXPECT_EQ(t.head()->number, 7u);
    EXPECT_FALSE(t.knows(hash('a', 9)));
    // New blocks on top of it extend it.
    const auto next = blocks('b', 8, 8, hash('a', 7));
    EXPECT_TRUE(t.extends(next.front()));
    EXPECT_FALSE(t.apply(next));
}

}  // namespace
}  // namespace gateway::chain
