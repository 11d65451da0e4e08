#include "gateway/chain/watcher.hpp"

#include "gateway/jsonrpc/methods.hpp"
#include "gateway/metrics/metrics.hpp"
#include "gateway/upstream/forwarder.hpp"
#include "gateway/util/nothrow.hpp"
#include "gateway/util/text.hpp"
#include "gateway/util/wall_time.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/array.hpp>
#include <boost/json/parse.hpp>

#include <algorithm>
#include <stdexcept>
#include <vector>

namespace gateway::chain {

namespace asio = boost::asio;
namespace json = boost::json;
using Clock = std::chrono::steady_clock;

namespace {

using util::use_nothrow;
constexpr std::size_t kRecentReorgs = 20;

// A block object's number, hash and parent hash; nullopt for anything else (null: not found).
std::optional<BlockRef> block_ref(const json::value& v) {
    const json::object* o = v.if_object();
    if (!o) return std::nullopt;
    const json::value* number = o->if_contains("number");
    const json::value* hash = o->if_contains("hash");
    const json::value* parent = o->if_contains("parentHash");
    if (!number || !number->is_string() || !hash || !hash->is_string() || !parent ||
        !parent->is_string())
        return std::nullopt;
    auto n = jsonrpc::parse_quantity(number->get_string());
    if (!n) return std::nullopt;
    return BlockRef{*n, util::lower(hash->get_string()), util::lower(parent->get_string())};
}

json::object block_json(const BlockRef& b) {
    json::object o;
    o["number"] = b.number;
    o["hash"] = b.hash;
    return o;
}

json::object reorg_json(const Reorg& r) {
    json::object o;
    o["at"] = util::iso_time(util::unix_ms());
    o["depth"] = r.depth;
    o["ancestor"] = r.ancestor;
    json::array dropped;
    for (const auto& b : r.dropped) dropped.push_back(block_json(b));
    o["dropped"] = std::move(dropped);
    o["newHead"] = block_json(r.new_head);
    return o;
}

}  // namespace

ChainWatcher::ChainWatcher(const config::ChainConfig& chain, upstream::Forwarder& pool,
                           metrics::Metrics* metrics, asio::any_io_executor executor)
    : config_(chain),
      pool_(pool),
      metrics_(metrics),
      strand_(asio::make_strand(executor)),
      timer_(strand_),
      tracker_(chain.reorgs.depth) {}

void ChainWatcher::start() {
    if (!config_.reorgs.track) return;
    asio::co_spawn(strand_, run(), asio::detached);
}

void ChainWatcher::stop() {
    stopped_ = true;
    asio::post(strand_, [this] { timer_.cancel(); });
}

json::object ChainWatcher::view() const {
    std::lock_guard lock(mu_);
    json::object o;
    o["chain"] = config_.name;
    o["head"] = nullptr;
    if (head_) o["head"] = block_json(*head_);
    for (const auto& [name, tag] :
         {std::pair{"safe", &safe_}, std::pair{"finalized", &finalized_}}) {
        o[name] = nullptr;
        if (!*tag) continue;
        json::object t;
        t["number"] = (*tag)->number;
        t["source"] = (*tag)->from_node ? "node" : "depth";
        o[name] = std::move(t);
    }
    o["depth"] = config_.reorgs.depth;
    o["reorgs"] = reorgs_;
    json::array recent;
    for (const auto& r : recent_) recent.push_back(r);
    o["recentReorgs"] = std::move(recent);
    return o;
}

std::optional<std::uint64_t> ChainWatcher::finalized() const {
    std::lock_guard lock(mu_);
    if (!finalized_) return std::nullopt;
    return finalized_->number;
}

asio::awaitable<void> ChainWatcher::poll_tags() {
    std::optional<BlockRef> safe = co_await fetch("eth_getBlockByNumber", "safe");
    std::optional<BlockRef> finalized = co_await fetch("eth_getBlockByNumber", "finalized");
    std::lock_guard lock(mu_);
    if (!head_) co_return;
    // A chain (or node) without the tags: the configured depth under the head. Once a node has
    // answered a tag, a failed read of it keeps the last answer (the depth could be above it).
    const std::uint64_t depth = config_.reorgs.finality_depth;
    Tag by_depth;
    if (head_->number > depth) by_depth.number = head_->number - depth;
    if (safe)
        safe_ = Tag{safe->number, true};
    else if (!safe_ || !safe_->from_node)
        safe_ = by_depth;
    if (finalized)
        finalized_ = Tag{finalized->number, true};
    else if (!finalized_ || !finalized_->from_node)
        finalized_ = by_depth;
    for (const auto& s : subscribers_)
        if (s.finalized) s.finalized(finalized_->number);
    if (metrics_) metrics_->set_chain_tags(config_.name, safe_->number, finalized_->number);
}

asio::awaitable<void> ChainWatcher::run() {
    while (!stopped_) {
        try {
            co_await poll();
            co_await poll_tags();
        } catch (const std::exception& e) {
            spdlog::error("chain {}: head tracking: {}", config_.name, e.what());
        }
        if (stopped_) break;
        timer_.expires_after(config_.health.interval);
        co_await timer_.async_wait(use_nothrow);
    }
}

asio::awaitable<std::optional<BlockRef>> ChainWatcher::fetch(const char* method, std::string what) {
    json::array params;
    params.emplace_back(std::move(what));
    params.emplace_back(false);
    upstream::Forwarded f = co_await pool_.forward(method, std::move(params), false,
                                                   Clock::now() + config_.health.timeout);
    const std::optional<json::value> v = f.result_json();
    if (!v) co_return std::nullopt;
    co_return block_ref(*v);
}

asio::awaitable<bool> ChainWatcher::missing(std::uint64_t number) {
    json::array params;
    params.emplace_back(fmt::format("0x{:x}", number));
    params.emplace_back(false);
    // Sent to nodes whose probes reached `number`: null from one of them means it is gone.
    upstream::Forwarded f = co_await pool_.forward("eth_getBlockByNumber", std::move(params), false,
                                                   Clock::now() + config_.health.timeout);
    co_return f.outcome == upstream::Forwarded::Outcome::answered && !f.reply.is_error() &&
        *f.reply.result == "null";
}

asio::awaitable<void> ChainWatcher::poll() {
    std::optional<BlockRef> latest = co_await fetch("eth_getBlockByNumber", "latest");
    if (!latest) co_return;
    std::vector<BlockRef> branch;
    std::optional<Reorg> reorg;
    if (tracker_.knows(latest->hash)) {
        // A block the tracker holds: a node a little behind answered (nothing new), or the chain
        // was rolled back (anvil_rollback, evm_revert) and the blocks above it are gone. It is a
        // rollback when the nodes that reached our head's number no longer have a block there.
        const std::optional<BlockRef> head = tracker_.head();
        if (!head || latest->number >= head->number) co_return;
        const bool gone = co_await missing(head->number);
        if (!gone) co_return;
        reorg = tracker_.rewind_to(latest->hash);
        if (!reorg) co_return;
    } else {
        branch.push_back(*latest);
    }
    if (!branch.empty() && !tracker_.extends(*latest)) {
        // Walk back to a block the tracker knows: the common ancestor.
        // (The tracker's blocks are consecutive up to its head.)
        std::uint64_t oldest = 0;
        if (const auto head = tracker_.head()) oldest = head->number + 1 - tracker_.size();
        while (!tracker_.knows(branch.back().parent_hash) && branch.back().number > oldest &&
               branch.size() < tracker_.depth()) {
            std::optional<BlockRef> parent =
                co_await fetch("eth_getBlockByHash", branch.back().parent_hash);
            if (!parent) co_return;  // asked again next time
            branch.push_back(*parent);
        }
        std::reverse(branch.begin(), branch.end());
    }
    try {
        if (!branch.empty()) reorg = tracker_.apply(branch);
    } catch (const std::invalid_argument& e) {
        spdlog::warn("chain {}: head tracking: the nodes' blocks do not link ({}); next time",
                     config_.name, e.what());
        co_return;
    }
    {
        std::lock_guard lock(mu_);
        head_ = tracker_.head();
    }
    // First what the reorg dropped, then the blocks that replace them.
    if (reorg)
        for (const auto& s : subscribers_)
            if (s.reorg) s.reorg(*reorg);
    for (const auto& s : subscribers_)
        if (s.blocks) s.blocks(branch);
    if (!reorg) co_return;
    std::lock_guard lock(mu_);
    ++reorgs_;
    spdlog::warn(
        "chain {}: reorg of depth {}: blocks {}..{} dropped after block {}; new head {} ({})",
        config_.name, reorg->depth, reorg->dropped.front().number, reorg->dropped.back().number,
        reorg->ancestor, reorg->new_head.number, reorg->new_head.hash);
    if (metrics_) metrics_->count_reorg(config_.name, reorg->depth);
    recent_.push_front(reorg_json(*reorg));
    if (recent_.size() > kRecentReorgs) recent_.pop_back();
}

}  // namespace gateway::chain
