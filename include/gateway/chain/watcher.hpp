#pragma once
// Follows one chain's head through its node pool and reports reorgs: each new head is checked
// against the recent canonical chain (HeadTracker); a head that does not extend it is walked back
// by parent hash to the common ancestor, and the blocks dropped make a reorg with its depth,
// logged, counted (gateway_reorgs_total, gateway_reorg_depth_blocks) and shown at
// GET /admin/chains.

#include "gateway/chain/head_tracker.hpp"
#include "gateway/config/config.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/json/object.hpp>

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace gateway::metrics {
class Metrics;
}
namespace gateway::upstream {
class Forwarder;
}
namespace gateway::chain {

/// What the watcher tells the rooms above it (the cache, the transaction manager), which
/// app.cpp subscribes: the watcher includes none of them. Each callback is optional and runs on
/// the watcher's strand; it must not block.
struct ChainEvents {
    /// A reorg: the blocks it dropped, oldest first. Told before the blocks that replace them.
    std::function<void(const Reorg&)> reorg;
    /// New canonical blocks, oldest first (after a reorg, its new branch).
    std::function<void(const std::vector<BlockRef>&)> blocks;
    /// The newest block taken as final (see finalized()), after each look at the tags.
    std::function<void(std::uint64_t)> finalized;
};

class ChainWatcher {
public:
    /// The pool and metrics must outlive the watcher.
    ChainWatcher(const config::ChainConfig& chain, upstream::Forwarder& pool,
                 metrics::Metrics* metrics, boost::asio::any_io_executor executor);

    /// Polls the head every health.interval_ms until stop().
    void start();
    void stop();

    /// Adds a subscriber; subscribers are told in the order they subscribed. Before start().
    void subscribe(ChainEvents events) { subscribers_.push_back(std::move(events)); }

    /// {chain, head: {number, hash} | null, safe and finalized: {number, source: "node" |
    /// "depth"} | null, depth, reorgs, recentReorgs: [...]}.
    boost::json::object view() const;

    /// The newest block taken as final: the nodes' "finalized" tag, or head - finality_depth.
    std::optional<std::uint64_t> finalized() const;

private:
    boost::asio::awaitable<void> run();
    boost::asio::awaitable<void> poll();
    boost::asio::awaitable<void> poll_tags();
    boost::asio::awaitable<std::optional<BlockRef>> fetch(const char* method, std::string what);
    // Whether the nodes answer that there is no block `number` (it was rolled back).
    boost::asio::awaitable<bool> missing(std::uint64_t number);

    config::ChainConfig config_;
    upstream::Forwarder& pool_;
    metrics::Metrics* metrics_;
    boost::asio::strand<boost::asio::any_io_executor> strand_;
    boost::asio::steady_timer timer_;
    std::atomic<bool> stopped_{false};
    HeadTracker tracker_;  // strand only
    std::vector<ChainEvents> subscribers_;

    mutable std::mutex mu_;  // guards what view() shows
    std::optional<BlockRef> head_;
    struct Tag {
        std::uint64_t number = 0;
        bool from_node = false;  // the node's tag, or head - finality_depth
    };
    std::optional<Tag> safe_, finalized_;
    std::uint64_t reorgs_ = 0;
    std::deque<boost::json::object> recent_;  // newest first, at most 20
};

}  // namespace gateway::chain
