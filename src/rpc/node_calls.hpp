#pragma once
// Private to src/rpc: how a client's call reaches the nodes of one chain, with what some methods
// need beyond the pool's choice of a node: eth_getLogs over more blocks than the upstreams serve
// is split and merged (log_split.cpp), filters are pinned to the node that made them, and
// eth_blockNumber never goes back. The pool knows no method by name; this is where the
// methods it used to know live. Thread-safe (one per chain, shared by every connection).

#include "gateway/config/config.hpp"
#include "gateway/upstream/forwarder.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/json/value.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

namespace gateway::metrics {
class Metrics;
}

namespace gateway::rpc {

class NodeCalls {
public:
    /// The pool and metrics must outlive this.
    NodeCalls(upstream::Forwarder& pool, metrics::Metrics* metrics);

    /// A client's call for the nodes (see Forwarder::forward). Never throws; gives up at
    /// `deadline`. Must be awaited on a strand or a loop
    /// one thread runs alone (the caller's connection).
    boost::asio::awaitable<upstream::Forwarded> forward(
        std::string method, boost::json::value params, bool write,
        std::chrono::steady_clock::time_point deadline,
        std::shared_ptr<upstream::AnswerBudget> budget = nullptr);

private:
    // forward() for a method the answer of which the gateway reads or keeps (a log range it may
    // split, a new filter, the head): a coroutine of its own. The others go to the pool directly.
    boost::asio::awaitable<upstream::Forwarded> forward_kept(
        std::string method, boost::json::value params, bool write,
        std::chrono::steady_clock::time_point deadline,
        std::shared_ptr<upstream::AnswerBudget> budget);
    // Filters live on the node that made them: eth_getFilterChanges and friends go there.
    void remember_filter(const std::string& filter_id, const std::string& upstream_id);
    std::string filter_home(const boost::json::value& params);
    // Never a lower block number than one a client of this chain was already given.
    void floor_block_number(upstream::Forwarded& f);
    // eth_getLogs over more blocks than an upstream serves: nullopt when it needs no split.
    boost::asio::awaitable<std::optional<upstream::Forwarded>> split_logs(
        const boost::json::value& params, std::chrono::steady_clock::time_point deadline,
        std::shared_ptr<upstream::AnswerBudget> budget);

    upstream::Forwarder& pool_;
    const config::ChainConfig& config_;
    metrics::Metrics* metrics_;
    std::atomic<std::uint64_t> served_head_{0};  // the highest eth_blockNumber given to a client
    struct FilterHome {
        std::string upstream;
        std::chrono::steady_clock::time_point last_used;
    };
    std::mutex filters_mu_;
    std::unordered_map<std::string, FilterHome> filters_;  // filter id -> the node holding it
};

}  // namespace gateway::rpc
