#pragma once
// The recent canonical chain of one network, as (number, hash, parent hash) for a bounded depth,
// and the reorgs it reveals. Pure: the caller fetches blocks and feeds them in.
//
// A new head whose parent is the current head extends the chain. Any other head is the tip of a
// branch: the caller walks back through parent hashes (fetching blocks by hash) until it reaches
// a block the tracker knows (`knows`), then applies the branch, oldest first. Applying a branch
// drops the canonical blocks above the common ancestor; when there are any, that is a reorg of
// that depth.

#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <vector>

namespace gateway::chain {

struct BlockRef {
    std::uint64_t number = 0;
    std::string hash;         ///< 0x-prefixed, lowercase
    std::string parent_hash;  ///< 0x-prefixed, lowercase
};

struct Reorg {
    std::uint64_t depth = 0;        ///< canonical blocks dropped
    std::uint64_t ancestor = 0;     ///< the number of the last block both chains share
    std::vector<BlockRef> dropped;  ///< oldest first
    BlockRef new_head;
};

/// Not thread-safe: one owner (the chain's pool) calls it.
class HeadTracker {
public:
    /// Keeps the newest `depth` blocks (at least 2).
    explicit HeadTracker(std::size_t depth = 128);

    /// Whether `hash` is a block of the canonical chain the tracker holds.
    bool knows(const std::string& hash) const;
    /// Whether `head` extends the current head directly (or the tracker is empty).
    bool extends(const BlockRef& head) const;
    /// Applies a branch, oldest first, whose first block's parent the tracker knows (or any
    /// branch when the tracker is empty or the branch reaches below everything it holds). The
    /// blocks must link by parent hash and number. Returns the reorg it makes, if it drops
    /// canonical blocks. Throws std::invalid_argument on a branch that does not link.
    std::optional<Reorg> apply(const std::vector<BlockRef>& branch);

    /// Makes the known block `hash` the head again, dropping the blocks above it: a chain rolled
    /// back (anvil_rollback, evm_revert) with nothing new on top yet. Returns the reorg it makes;
    /// nullopt when `hash` is unknown or already the head.
    std::optional<Reorg> rewind_to(const std::string& hash);

    std::optional<BlockRef> head() const;
    /// The canonical hash at `number`, if the tracker holds it.
    std::optional<std::string> hash_at(std::uint64_t number) const;
    std::size_t size() const { return blocks_.size(); }
    std::size_t depth() const { return depth_; }

private:
    std::size_t depth_;
    std::deque<BlockRef> blocks_;  // consecutive numbers, oldest first
};

}  // namespace gateway::chain
