#pragma once
// The measurements an upstream's health and score are made of: latency, rates over a sliding
// window, a circuit breaker and a token bucket. Plain values, no locking: the owner (Upstream)
// guards them. Time comes from the caller, so tests can move it.

#include "gateway/util/clock.hpp"

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace gateway::upstream {

using TimePoint = util::Clock::time_point;

/// Latency of recent answers: an exponentially weighted mean and a p90 over the last 64.
class LatencyTracker {
public:
    static constexpr std::size_t kSamples = 64;
    void record(std::chrono::microseconds latency);
    bool empty() const { return count_ == 0; }
    /// Mean weighted towards recent answers (alpha 0.2), in milliseconds.
    double ewma_ms() const { return ewma_ms_; }
    /// 90th percentile of the last kSamples answers, in milliseconds.
    double p90_ms() const { return p90_ms_; }

private:
    std::array<double, kSamples> samples_{};
    std::size_t count_ = 0;
    std::size_t next_ = 0;
    double ewma_ms_ = 0;
    double p90_ms_ = 0;
};

/// Counts of requests, errors and throttled answers over the last `span`, kept in buckets so
/// old events age out.
class SlidingWindow {
public:
    static constexpr std::size_t kBuckets = 10;
    explicit SlidingWindow(std::chrono::milliseconds span = std::chrono::seconds(30))
        : span_(span) {}

    void record(TimePoint now, bool error, bool throttled);
    std::uint64_t requests(TimePoint now) const;
    /// Share of requests in the window that failed (0 when there were none).
    double error_rate(TimePoint now) const;
    /// Share of requests in the window that were refused for a rate limit.
    double throttle_rate(TimePoint now) const;

private:
    struct Bucket {
        std::int64_t slot = -1;
        std::uint64_t requests = 0;
        std::uint64_t errors = 0;
        std::uint64_t throttled = 0;
    };
    std::int64_t slot_of(TimePoint t) const;
    Bucket sum(TimePoint now) const;

    std::chrono::milliseconds span_;
    std::array<Bucket, kBuckets> buckets_{};
};

/// Stops sending calls to an upstream that keeps failing: open after `threshold` failures in a
/// row, a single trial call (half-open) after `cooldown`, closed again when the trial succeeds.
class CircuitBreaker {
public:
    enum class State { closed, open, half_open };
    CircuitBreaker(unsigned threshold, std::chrono::milliseconds cooldown)
        : threshold_(threshold), cooldown_(cooldown) {}

    /// Whether a call may go now. In half-open, the first caller gets the trial and later
    /// callers are refused until it reports.
    bool allow(TimePoint now);
    /// What allow() would say, without taking the half-open trial.
    bool would_allow(TimePoint now) const;
    void record_success();
    void record_failure(TimePoint now);
    State state(TimePoint now) const;
    unsigned consecutive_failures() const { return failures_; }

private:
    unsigned threshold_;
    std::chrono::milliseconds cooldown_;
    unsigned failures_ = 0;
    bool open_ = false;
    bool trial_taken_ = false;
    TimePoint opened_at_{};
};

std::string_view to_string(CircuitBreaker::State state);

/// A token bucket: `rate` tokens a second, up to `burst` saved. A rate of 0 means unlimited.
class TokenBucket {
public:
    TokenBucket(double rate, double burst) : rate_(rate), burst_(burst), tokens_(burst) {}
    bool unlimited() const { return rate_ <= 0; }
    /// Takes a token if one is there.
    bool try_take(TimePoint now);
    /// When the next token will be there (now if one is).
    TimePoint next_token(TimePoint now);

private:
    void refill(TimePoint now);
    double rate_;
    double burst_;
    double tokens_;
    TimePoint last_{};
    bool started_ = false;
};

}  // namespace gateway::upstream
