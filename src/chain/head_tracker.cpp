#include "gateway/chain/head_tracker.hpp"

#include <algorithm>
#include <stdexcept>

namespace gateway::chain {

HeadTracker::HeadTracker(std::size_t depth) : depth_(std::max<std::size_t>(depth, 2)) {}

bool HeadTracker::knows(const std::string& hash) const {
    return std::any_of(blocks_.begin(), blocks_.end(),
                       [&](const BlockRef& b) { return b.hash == hash; });
}

bool HeadTracker::extends(const BlockRef& head) const {
    return blocks_.empty() ||
           (head.number == blocks_.back().number + 1 && head.parent_hash == blocks_.back().hash);
}

std::optional<BlockRef> HeadTracker::head() const {
    if (blocks_.empty()) return std::nullopt;
    return blocks_.back();
}

std::optional<std::string> HeadTracker::hash_at(std::uint64_t number) const {
    if (blocks_.empty() || number < blocks_.front().number || number > blocks_.back().number)
        return std::nullopt;
    return blocks_[number - blocks_.front().number].hash;
}

std::optional<Reorg> HeadTracker::apply(const std::vector<BlockRef>& branch) {
    if (branch.empty()) return std::nullopt;
    for (std::size_t i = 1; i < branch.size(); ++i)
        if (branch[i].number != branch[i - 1].number + 1 ||
            branch[i].parent_hash != branch[i - 1].hash)
            throw std::invalid_argument("a branch's blocks must link by number and parent hash");
    const BlockRef& first = branch.front();

    // Where the branch leaves the canonical chain: right after its first block's parent; or,
    // when the parent is unknown, at the first block's height (everything from there is
    // replaced: the branch reaches below what the tracker holds, or the tracker is empty).
    std::optional<std::size_t> keep;  // canonical blocks kept, from the oldest
    for (std::size_t i = 0; i < blocks_.size(); ++i)
        if (blocks_[i].hash == first.parent_hash) keep = i + 1;
    if (keep && first.number != blocks_[*keep - 1].number + 1)
        throw std::invalid_argument("a branch's first block must follow its parent's number");
    if (!keep) {
        if (!blocks_.empty() && first.number > blocks_.back().number + 1) {
            // A gap above the head with an unknown parent: the chain moved on while nobody
            // looked; nothing known links to it, so start again from the branch.
            keep = 0;
        } else if (!blocks_.empty() && first.number > blocks_.front().number) {
            throw std::invalid_argument(
                "a branch must start on a block the tracker knows, or below everything it holds");
        } else {
            keep = 0;
        }
    }

    Reorg reorg;
    for (std::size_t i = *keep; i < blocks_.size(); ++i) reorg.dropped.push_back(blocks_[i]);
    // Blocks the branch repeats (the same hash at the same height) are not dropped.
    std::size_t same = 0;
    while (same < reorg.dropped.size() && same < branch.size() &&
           reorg.dropped[same].hash == branch[same].hash)
        ++same;
    reorg.dropped.erase(reorg.dropped.begin(), reorg.dropped.begin() + static_cast<long>(same));
    const bool gap = !blocks_.empty() && *keep == 0 && first.number > blocks_.back().number + 1;

    blocks_.resize(*keep);
    for (const auto& b : branch) blocks_.push_back(b);
    while (blocks_.size() > depth_) blocks_.pop_front();

    if (reorg.dropped.empty() || gap) return std::nullopt;
    reorg.depth = reorg.dropped.size();
    reorg.ancestor = reorg.dropped.front().number - 1;
    reorg.new_head = blocks_.back();
    return reorg;
}

std::optional<Reorg> HeadTracker::rewind_to(const std::string& hash) {
    auto it = std::find_if(blocks_.begin(), blocks_.end(),
                           [&](const BlockRef& b) { return b.hash == hash; });
    if (it == blocks_.end() || std::next(it) == blocks_.end()) return std::nullopt;
    Reorg reorg;
    reorg.dropped.assign(std::next(it), blocks_.end());
    reorg.depth = reorg.dropped.size();
    reorg.ancestor = it->number;
    reorg.new_head = *it;
    blocks_.erase(std::next(it), blocks_.end());
    return reorg;
}

}  // namespace gateway::chain
