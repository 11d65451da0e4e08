#pragma once
// The upstreams of one chain: which one gets a call, moving to the next when one fails, and the
// background probes that find out when a node is back.

#include "gateway/config/config.hpp"
#include "gateway/jsonrpc/jsonrpc.hpp"
#include "gateway/upstream/upstream.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/json/value.hpp>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

namespace gateway::upstream {

/// The result of forwarding one call.
struct Forwarded {
    enum class Outcome {
        answered,     ///< a node answered, with a result or a JSON-RPC error
        unavailable,  ///< no node could answer; nothing was executed
        uncertain,    ///< a write failed after a node may have received it; not sent elsewhere
    };
    Outcome outcome = Outcome::unavailable;
    jsonrpc::Reply reply;  ///< the node's answer, when answered
    jsonrpc::Error error;  ///< why there is no answer, otherwise
    std::string upstream;  ///< the id of the node that answered
};

/// Thread-safe.
class ChainPool {
public:
    /// Builds the upstreams (their clients run on `executor`). Throws std::invalid_argument at
    /// start-up on an unusable upstream configuration.
    ChainPool(const config::ChainConfig& config, boost::asio::any_io_executor executor,
              metrics::Metrics* metrics);
    ~ChainPool();

    const config::ChainConfig& config() const { return config_; }

    /// Sends a call to the first usable upstream (primaries in configured order, then fallbacks)
    /// and moves on to the next one on a transport failure, a timeout, HTTP 5xx or 429, or a
    /// malformed answer. A write (`write`: the call may change state) moves on only while it is
    /// certain that no node received it. Never throws; gives up at `deadline`.
    boost::asio::awaitable<Forwarded> forward(std::string_view method,
                                              const boost::json::value& params, bool write,
                                              std::chrono::steady_clock::time_point deadline);

    /// Starts the health probes (eth_chainId every health.interval_ms, with jitter).
    void start();
    /// Stops the probes; in-flight calls are not affected.
    void stop();

    /// At least one upstream is known to answer.
    bool ready() const;

    std::vector<UpstreamStatus> status() const;

private:
    struct Prober;
    boost::asio::awaitable<void> probe_loop(Upstream& upstream, Prober& prober);
    boost::asio::awaitable<void> probe(Upstream& upstream);

    config::ChainConfig config_;
    boost::asio::any_io_executor executor_;
    metrics::Metrics* metrics_;
    std::vector<std::unique_ptr<Upstream>>
        upstreams_;  // primaries first, then fallbacks; config order within a tier
    std::vector<std::unique_ptr<Prober>> probers_;
    std::atomic<std::uint64_t> next_id_{1};
    std::atomic<bool> stopped_{false};
};

}  // namespace gateway::upstream
