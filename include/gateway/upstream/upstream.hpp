#pragma once
// One upstream node: its client, and everything the gateway knows of it: health from the probes,
// head, latency, error and throttle rates, circuit breaker, rate and concurrency limits, cordon.

#include "gateway/config/config.hpp"
#include "gateway/upstream/errors.hpp"
#include "gateway/upstream/http_client.hpp"
#include "gateway/upstream/signals.hpp"
#include "gateway/util/clock.hpp"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

namespace gateway::upstream {

/// What the probes say.
enum class Health {
    unknown,      ///< not probed yet; calls may go there
    up,           ///< answering probes
    down,         ///< failed `unhealthy_threshold` probes in a row; calls only as a last resort
    wrong_chain,  ///< answers for another chain id; never used again until the gateway restarts
};

std::string_view to_string(Health health);

/// Everything known about an upstream at one moment.
struct UpstreamStatus {
    std::string id;
    config::Tier tier = config::Tier::primary;
    Health health = Health::unknown;
    std::string reason;  ///< why it is in that health state, for people
    TimePoint since{};   ///< when `health` last changed
    bool cordoned = false;
    std::string cordon_reason;
    bool syncing = false;
    std::optional<std::uint64_t> head;  ///< its latest head the gateway believes
    TimePoint head_changed{};           ///< when `head` last moved
    /// The latest head it claimed (eth_blockNumber), believed or not.
    std::optional<std::uint64_t> claimed_head;
    /// Why its latest claimed head is not believed (it could not serve that block, and most
    /// upstreams do not agree); empty when it is. Such a node gets no `latest` reads.
    std::string head_doubt;
    bool has_latency = false;
    double latency_ewma_ms = 0;
    double latency_p90_ms = 0;
    double error_rate = 0;     ///< calls and probes over the last 30 s
    double throttle_rate = 0;  ///< share refused for a rate limit over the last 30 s
    CircuitBreaker::State breaker = CircuitBreaker::State::closed;
    unsigned consecutive_failures = 0;  ///< failed calls in a row (the breaker's count)
    std::optional<TimePoint> throttled_until;
    std::size_t in_flight = 0;
    std::uint64_t requests = 0;
    std::uint64_t failures = 0;
};

/// Thread-safe: every method takes a short lock.
class Upstream {
public:
    Upstream(std::string chain, const config::UpstreamConfig& config,
             const config::HealthConfig& health, const config::FailoverConfig& failover,
             std::unique_ptr<HttpClient> client, const util::Clock& clock);

    const std::string& id() const { return config_.id; }
    const std::string& chain() const { return chain_; }
    const config::UpstreamConfig& config() const { return config_; }
    HttpClient& client() { return *client_; }

    // --- the health checker ---
    /// A probe round answered: latency of the head query, the head, whether the node syncs.
    /// The head is the node's latest, believed (not the highest ever seen: one bogus answer
    /// must not stay the head for good).
    void probe_succeeded(std::chrono::microseconds latency, std::uint64_t head, bool syncing);
    /// A probe round answered with a head that is not believed (`why`): the node answers, so
    /// it is up, but its head stays what it was and it gets no `latest` reads until a later
    /// round's head is believed.
    void head_not_believed(std::chrono::microseconds latency, std::uint64_t claimed, bool syncing,
                           std::string why);
    /// Its latest claimed head (eth_blockNumber of a probe), believed or not.
    std::optional<std::uint64_t> claimed_head() const;
    void probe_failed(std::string_view reason);
    /// The node reports another chain id than the configured one: excluded for good.
    void record_wrong_chain(std::uint64_t expected, std::uint64_t reported);

    // --- calls ---
    enum class Admission { admitted, breaker_open, throttled, at_capacity };
    /// Asks to send one call now: takes the breaker's half-open trial, a token, a concurrency
    /// slot. Every admitted call must end with release().
    Admission admit();
    void release();
    /// The call got the node's answer.
    void call_succeeded();
    /// The call failed on this node (see Attempt: node faults feed the breaker; a rate limit
    /// throttles the node for Retry-After, or a second).
    void call_failed(const Attempt& attempt);

    // --- operators ---
    void set_cordoned(bool cordoned, std::string reason);

    /// It answered a batch with something else than a batch: client batches' calls go to it one
    /// by one from then on. mark_no_batches() says whether this call was the first to find it.
    bool takes_batches() const { return takes_batches_.load(std::memory_order_relaxed); }
    bool mark_no_batches() { return takes_batches_.exchange(false, std::memory_order_relaxed); }

    /// Never used: wrong chain or cordoned.
    bool excluded() const;
    /// Its head when it is up, in use and not syncing (what the chain's head is made of);
    /// without copying the whole status.
    std::optional<std::uint64_t> usable_head() const;
    /// In use (not excluded) and up, without copying the whole status.
    bool serving() const;
    /// `with_reason` false leaves `reason` empty (a call ranking the upstreams needs no text).
    UpstreamStatus status(bool with_reason = true) const;

private:
    void set_health(Health health, std::string reason);                    // with mu_ held
    void answered_probe(std::chrono::microseconds latency, bool syncing);  // with mu_ held

    const std::string chain_;
    std::atomic<bool> takes_batches_{true};
    const config::UpstreamConfig config_;
    const config::HealthConfig health_config_;
    std::unique_ptr<HttpClient> client_;
    const util::Clock& clock_;

    mutable std::mutex mu_;
    Health health_ = Health::unknown;
    std::string reason_ = "not probed yet";
    TimePoint since_;
    unsigned probe_failures_ = 0;
    unsigned probe_successes_ = 0;
    bool cordoned_ = false;
    std::string cordon_reason_;
    bool syncing_ = false;
    std::optional<std::uint64_t> head_;
    TimePoint head_changed_{};
    std::optional<std::uint64_t> claimed_head_;
    std::string head_doubt_;
    LatencyTracker latency_;
    SlidingWindow window_;
    CircuitBreaker breaker_;
    TokenBucket bucket_;
    std::optional<TimePoint> throttled_until_;
    std::size_t in_flight_ = 0;
    std::uint64_t requests_ = 0;
    std::uint64_t failures_ = 0;
};

}  // namespace gateway::upstream
