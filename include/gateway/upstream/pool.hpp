#pragma once
// The upstreams of one chain: which one gets a call and why, moving on when one fails, hedging
// slow reads, the chain's head, and the health checker that probes every upstream.

#include "gateway/config/config.hpp"
#include "gateway/jsonrpc/jsonrpc.hpp"
#include "gateway/jsonrpc/methods.hpp"
#include "gateway/upstream/forwarder.hpp"
#include "gateway/upstream/upstream.hpp"
#include "gateway/util/clock.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/json/value.hpp>

#include <atomic>
#include <chrono>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

namespace gateway::metrics {
class Metrics;
}

namespace gateway::upstream {

/// An upstream as the pool sees it now: its state, and its place in the order with the reasons.
struct UpstreamView {
    UpstreamStatus status;
    std::string state;                 ///< up, unknown, lagging, syncing, throttled, breaker_open,
                                       ///< breaker_half_open, down, cordoned, wrong_chain
    std::string reason;                ///< the state's reason, for people
    std::optional<std::uint64_t> lag;  ///< blocks behind the chain's head
    double score = 0;                  ///< lower is better
    std::string score_explained;       ///< how the score was made
};

/// The Forwarder of one chain: its upstreams, their selection and failover, and their health
/// checker. Thread-safe. The Forwarder overrides are documented there (and take their default
/// arguments from there: call them through a Forwarder&).
class ChainPool final : public Forwarder {
public:
    using BatchCall = upstream::BatchCall;
    using BatchForwarded = upstream::BatchForwarded;

    /// Builds the upstreams (their clients run on `executor`). Throws std::invalid_argument at
    /// start-up on an unusable upstream configuration.
    ChainPool(const config::ChainConfig& config, boost::asio::any_io_executor executor,
              metrics::Metrics* metrics, const util::Clock& clock = util::SteadyClock::instance());
    ~ChainPool() override;

    // Forwarder
    const config::ChainConfig& config() const override { return config_; }
    bool ready() const override;
    std::optional<std::uint64_t> head() const override;
    boost::asio::awaitable<Forwarded> forward(std::string method, boost::json::value params,
                                              bool write,
                                              std::chrono::steady_clock::time_point deadline,
                                              std::shared_ptr<AnswerBudget> budget) override;
    boost::asio::awaitable<Forwarded> forward_to(std::string method, boost::json::value params,
                                                 jsonrpc::BlockNeed need, bool write,
                                                 std::chrono::steady_clock::time_point deadline,
                                                 std::shared_ptr<AnswerBudget> budget,
                                                 std::string pinned) override;
    boost::asio::awaitable<Forwarded> forward_at_least(
        std::string method, boost::json::value params, std::uint64_t min_block,
        std::chrono::steady_clock::time_point deadline) override;
    boost::asio::awaitable<std::optional<BatchForwarded>> forward_batch(
        std::vector<BatchCall> calls, std::chrono::steady_clock::time_point deadline,
        std::shared_ptr<AnswerBudget> budget) override;
    boost::asio::awaitable<std::vector<Delivery>> broadcast(
        std::string method, boost::json::value params, std::size_t fanout,
        std::chrono::steady_clock::time_point deadline) override;
    std::uint64_t max_logs_range() const override;
    std::size_t max_response_bytes(std::string_view upstream) const override;

    /// Starts the health checker: each upstream probed every health.interval_ms (±10 %).
    void start();
    /// Stops the probes; calls in flight are not affected.
    void stop();

    /// A reload's upstreams for the chain, made (HTTP clients and all) but not in use yet.
    struct Staged;
    /// Makes them: one whose id and settings are unchanged is the one in use (health, breaker,
    /// connections, scores); a new or changed one is new (a changed one keeps an operator's
    /// cordon). Throws what making one throws (a ca_file that is not PEM), changing nothing.
    std::shared_ptr<Staged> stage(const std::vector<config::UpstreamConfig>& upstreams) const;
    /// Puts staged upstreams in use; cannot fail. A new or changed one is probed, a last resort
    /// until its chain id is verified; a removed one gets no new calls and its probes stop,
    /// while the calls it is serving finish. One reload at a time.
    void reconfigure(std::shared_ptr<Staged> staged);

    /// Every upstream, in configuration order.
    std::vector<UpstreamView> view() const;
    /// Takes an upstream out of (or back into) use by hand. False when no upstream has that id.
    bool cordon(std::string_view id, bool cordoned, std::string reason);
    /// Updates the per-upstream gauges (state, lag, score, breaker, latency, head); called when
    /// the metrics are scraped, so they are as of the scrape.
    void publish_metrics() const;

private:
    struct Prober;
    struct Race;
    struct Ranked;
    struct Member;
    using Members = std::vector<Member>;
    /// The upstreams now: a call ranks the set it started with, which a reload does not change.
    std::shared_ptr<const Members> members() const;
    std::optional<std::uint64_t> head_of(const Members& members) const;
    void start_probing(const Member& member);

    // `explain`: fill in the reasons and the score's explanation (for people, not for routing).
    std::vector<Ranked> rank(const jsonrpc::BlockNeed& need, bool explain = false) const;
    static std::vector<Ranked*> in_order(std::vector<Ranked>& ranked);
    // Whether more than half of the upstreams in use claim at least `head` (`self` claiming it).
    bool most_claim(const Upstream& self, std::uint64_t head) const;
    boost::asio::awaitable<Forwarded> forward_one(std::string method, boost::json::value params,
                                                  jsonrpc::BlockNeed need, bool write,
                                                  std::chrono::steady_clock::time_point deadline,
                                                  std::string only = {},
                                                  std::shared_ptr<AnswerBudget> budget = nullptr);
    // `label`: the method's metric label (a static string).
    boost::asio::awaitable<Attempt> attempt(Upstream* upstream, std::string body,
                                            PostOptions options, std::uint64_t id,
                                            std::string_view label);
    // A part of a client's batch (forward_batch): its calls [from, from + n), under the ids
    // first_id to first_id + n - 1, and what the node answered when it was sent.
    struct BatchPart {
        std::size_t from = 0;
        std::size_t n = 0;
        std::uint64_t first_id = 0;
        bool sent = false;
        HttpResult result;
        double seconds = 0;  // its exchange
    };
    // A client's batch being sent to one node, part by part, by a few workers on the caller's
    // executor (one thread at a time).
    struct BatchSend {
        Upstream* upstream = nullptr;
        std::span<const BatchCall> calls;
        std::vector<BatchPart> parts;
        std::size_t next = 0;         // the next part a worker takes
        bool first_admitted = false;  // an admission taken for the first part sent, not used yet
        std::chrono::steady_clock::time_point until;
        std::shared_ptr<AnswerBudget> budget;  // the answers held, the batch's own
    };
    // Parts of one client batch in flight to a node at once: one batch cannot take many of its
    // connections (or all of its max_concurrency) for itself.
    static constexpr std::size_t kPartsAtOnce = 4;
    boost::asio::awaitable<void> send_parts(BatchSend* send);
    boost::asio::awaitable<void> probe_loop(std::shared_ptr<Upstream> upstream,
                                            std::shared_ptr<Prober> prober);
    boost::asio::awaitable<void> probe(Upstream& upstream, Prober& prober);

    config::ChainConfig config_;
    boost::asio::any_io_executor executor_;
    metrics::Metrics* metrics_;
    const util::Clock& clock_;
    // config_ holds the chain's settings as at start; its upstreams are members_, which a reload
    // replaces.
    mutable std::mutex members_mu_;
    std::shared_ptr<const Members> members_;  // configuration order
    bool started_ = false;                    // guarded by members_mu_
    std::atomic<std::uint64_t> next_id_{1};
    std::atomic<bool> stopped_{false};
};

}  // namespace gateway::upstream
