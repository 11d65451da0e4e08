#pragma once
// The upstreams of one chain: which one gets a call and why, moving on when one fails, hedging
// slow reads, the chain's head, and the health checker that probes every upstream.

#include "gateway/config/config.hpp"
#include "gateway/jsonrpc/jsonrpc.hpp"
#include "gateway/jsonrpc/methods.hpp"
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
#include <string>
#include <unordered_map>
#include <vector>

namespace gateway::metrics {
class Metrics;
}

namespace gateway::upstream {

/// The result of forwarding one call.
struct Forwarded {
    enum class Outcome {
        answered,     ///< a node answered, with a result or a JSON-RPC error, as it came
        unavailable,  ///< no node could answer; nothing was executed
        uncertain,    ///< a write failed after a node may have received it; not sent elsewhere
    };
    Outcome outcome = Outcome::unavailable;
    jsonrpc::Reply reply;  ///< the answer, when answered
    jsonrpc::Error error;  ///< why there is no answer, otherwise
    std::string upstream;  ///< the node(s) that answered, comma-separated
    /// The answer is -32005: it passed what the caller's request may still hold (its batch's
    /// answers). The caller's refusal, not the call's: another caller may be answered.
    bool over_budget = false;
};

/// The answer to a call whose answer passed its request's AnswerBudget (`limit` bytes).
Forwarded over_budget(std::size_t limit);

/// What one upstream did with a broadcast call.
struct Delivery {
    std::string upstream;
    Attempt attempt;
};

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

/// Thread-safe.
class ChainPool {
public:
    /// Builds the upstreams (their clients run on `executor`). Throws std::invalid_argument at
    /// start-up on an unusable upstream configuration.
    ChainPool(const config::ChainConfig& config, boost::asio::any_io_executor executor,
              metrics::Metrics* metrics, const util::Clock& clock = util::SteadyClock::instance());
    ~ChainPool();

    const config::ChainConfig& config() const { return config_; }

    /// Forwards one call (see the README's selection rules): upstreams in order of tier and
    /// score, those unable to serve the call's block left out, the rest as a last resort;
    /// at most failover.max_attempts attempts with backoff; a slow read hedged after
    /// failover.hedge_after_ms; a write sent to another node only when the first certainly did
    /// not get it. Answers count against `budget` while they arrive: once it is spent the call
    /// is answered -32005, not sent on. The pool knows no method by name: the block a call needs
    /// is read from its params (jsonrpc::block_need); what a method needs beyond that (log
    /// ranges split, filters pinned to their node, block numbers that never go back) the RPC
    /// layer does. Never throws; gives up at `deadline`. Must be awaited on a strand (the
    /// caller's connection).
    boost::asio::awaitable<Forwarded> forward(std::string method, boost::json::value params,
                                              bool write,
                                              std::chrono::steady_clock::time_point deadline,
                                              std::shared_ptr<AnswerBudget> budget = nullptr);

    /// forward() for a call needing `need`. `pinned`: only that upstream (by id) may answer,
    /// whatever its health, unless it is cordoned or on the wrong chain (a filter lives on the
    /// node that made it); an unknown id pins nothing.
    boost::asio::awaitable<Forwarded> forward_to(std::string method, boost::json::value params,
                                                 jsonrpc::BlockNeed need, bool write,
                                                 std::chrono::steady_clock::time_point deadline,
                                                 std::shared_ptr<AnswerBudget> budget = nullptr,
                                                 std::string pinned = {});
    /// The smallest max_logs_range of the upstreams in use; 0 when none has one.
    std::uint64_t max_logs_range() const;
    /// An upstream's max_response_bytes; the largest size for an unknown id.
    std::size_t max_response_bytes(std::string_view upstream) const;

    /// A read that only upstreams at or above block `min_block` may answer (none such: an error
    /// after the usual attempts, never a node behind it): for answers whose absence is taken as
    /// proof, such as a receipt that is null. Never throws.
    boost::asio::awaitable<Forwarded> forward_at_least(
        std::string method, boost::json::value params, std::uint64_t min_block,
        std::chrono::steady_clock::time_point deadline);

    /// One read of a client's batch.
    struct BatchCall {
        std::string method;
        boost::json::value params;
    };
    /// The answers to a batch sent as one: one per call, in order; nullopt for a call to send
    /// alone (no answer for it, or a node error another node may not give).
    struct BatchForwarded {
        std::vector<std::optional<jsonrpc::Reply>> replies;
        std::string upstream;
    };
    /// Sends reads as one JSON-RPC batch to the best upstream for the newest block they need,
    /// at most its max_batch_size of them (the first ones). nullopt when that cannot be done now
    /// (no such upstream admits a call, a transport failure, an answer that is not a batch):
    /// the caller sends the calls one by one, which fail over as usual. An upstream whose answer
    /// to a batch is not a batch gets no more batches. The answer counts against `budget` while
    /// it arrives. Never throws.
    boost::asio::awaitable<std::optional<BatchForwarded>> forward_batch(
        std::vector<BatchCall> calls, std::chrono::steady_clock::time_point deadline,
        std::shared_ptr<AnswerBudget> budget = nullptr);

    /// Sends one call to up to `fanout` usable upstreams at once (tier and score order, one attempt
    /// each; down or open upstreams only when nothing else is there) and returns what each did.
    /// For calls that are safe to repeat anywhere, such as a signed transaction's bytes. Empty
    /// when no upstream admits a call now.
    boost::asio::awaitable<std::vector<Delivery>> broadcast(
        std::string method, boost::json::value params, std::size_t fanout,
        std::chrono::steady_clock::time_point deadline);

    /// Starts the health checker: each upstream probed every health.interval_ms (±10 %).
    void start();
    /// Stops the probes; calls in flight are not affected.
    void stop();

    /// At least one upstream answers its probes.
    bool ready() const;
    /// The chain's head: the highest head among upstreams that answer, if any is known.
    std::optional<std::uint64_t> head() const;
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

    // `explain`: fill in the reasons and the score's explanation (for people, not for routing).
    std::vector<Ranked> rank(const jsonrpc::BlockNeed& need, bool explain = false) const;
    static std::vector<Ranked*> in_order(std::vector<Ranked>& ranked);
    // Whether more than half of the upstreams in use claim at least `head` (`self` claiming it).
    bool most_claim(const Upstream& self, std::uint64_t head) const;
    boost::asio::awaitable<Forwarded> forward_one(std::string method, boost::json::value params,
                                                  jsonrpc::BlockNeed need, bool write,
                                                  std::chrono::steady_clock::time_point deadline,
                                                  const Upstream* only = nullptr,
                                                  std::shared_ptr<AnswerBudget> budget = nullptr);
    // `label`: the method's metric label (a static string).
    boost::asio::awaitable<Attempt> attempt(Upstream* upstream, std::string body,
                                            PostOptions options, std::uint64_t id,
                                            std::string_view label);
    boost::asio::awaitable<void> probe_loop(Upstream& upstream, Prober& prober);
    boost::asio::awaitable<void> probe(Upstream& upstream, Prober& prober);

    config::ChainConfig config_;
    boost::asio::any_io_executor executor_;
    metrics::Metrics* metrics_;
    const util::Clock& clock_;
    std::vector<std::unique_ptr<Upstream>> upstreams_;  // configuration order
    std::vector<std::unique_ptr<Prober>> probers_;
    std::atomic<std::uint64_t> next_id_{1};
    std::atomic<bool> stopped_{false};
    std::mutex no_batch_mu_;
    std::vector<const Upstream*> no_batch_;  // answered a batch with something else
};

}  // namespace gateway::upstream
