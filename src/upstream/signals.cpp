#include "gateway/upstream/signals.hpp"

#include <algorithm>

namespace gateway::upstream {

void LatencyTracker::record(std::chrono::microseconds latency) {
    const double ms = static_cast<double>(latency.count()) / 1000.0;
    ewma_ms_ = count_ == 0 ? ms : 0.2 * ms + 0.8 * ewma_ms_;
    samples_[next_] = ms;
    next_ = (next_ + 1) % kSamples;
    count_ = std::min(count_ + 1, kSamples);
    // Nearest rank: the smallest sample with at least 90 % of the samples at or below it.
    std::array<double, kSamples> sorted = samples_;
    const auto end = sorted.begin() + static_cast<std::ptrdiff_t>(count_);
    const auto p90 = sorted.begin() + static_cast<std::ptrdiff_t>((9 * count_ + 9) / 10 - 1);
    std::nth_element(sorted.begin(), p90, end);
    p90_ms_ = *p90;
}

std::int64_t SlidingWindow::slot_of(TimePoint t) const {
    const auto width = std::max<std::chrono::milliseconds>(
        span_ / static_cast<std::int64_t>(kBuckets), std::chrono::milliseconds(1));
    return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()) / width;
}

void SlidingWindow::record(TimePoint now, bool error, bool throttled) {
    const std::int64_t slot = slot_of(now);
    Bucket& b = buckets_[static_cast<std::size_t>(slot) % kBuckets];
    if (b.slot != slot) b = Bucket{slot};
    ++b.requests;
    if (error) ++b.errors;
    if (throttled) ++b.throttled;
}

SlidingWindow::Bucket SlidingWindow::sum(TimePoint now) const {
    const std::int64_t newest = slot_of(now);
    Bucket total;
    for (const Bucket& b : buckets_) {
        if (b.slot < 0 || b.slot > newest || newest - b.slot >= static_cast<std::int64_t>(kBuckets))
            continue;
        total.requests += b.requests;
        total.errors += b.errors;
        total.throttled += b.throttled;
    }
    return total;
}

std::uint64_t SlidingWindow::requests(TimePoint now) const {
    return sum(now).requests;
}

double SlidingWindow::error_rate(TimePoint now) const {
    const Bucket s = sum(now);
    return s.requests ? static_cast<double>(s.errors) / static_cast<double>(s.requests) : 0.0;
}

double SlidingWindow::throttle_rate(TimePoint now) const {
    const Bucket s = sum(now);
    return s.requests ? static_cast<double>(s.throttled) / static_cast<double>(s.requests) : 0.0;
}

std::string_view to_string(CircuitBreaker::State state) {
    switch (state) {
        case CircuitBreaker::State::closed: return "closed";
        case CircuitBreaker::State::open: return "open";
        case CircuitBreaker::State::half_open: return "half_open";
    }
    return "closed";
}

CircuitBreaker::State CircuitBreaker::state(TimePoint now) const {
    if (!open_) return State::closed;
    return now - opened_at_ >= cooldown_ ? State::half_open : State::open;
}

bool CircuitBreaker::would_allow(TimePoint now) const {
    switch (state(now)) {
        case State::closed: return true;
        case State::open: return false;
        case State::half_open: return !trial_taken_;
    }
    return true;
}

bool CircuitBreaker::allow(TimePoint now) {
    if (!would_allow(now)) return false;
    if (open_) trial_taken_ = true;  // half-open: this caller is the trial
    return true;
}

void CircuitBreaker::record_success() {
    failures_ = 0;
    open_ = false;
    trial_taken_ = false;
}

void CircuitBreaker::record_failure(TimePoint now) {
    ++failures_;
    if (open_ || failures_ >= threshold_) {
        // A failed trial opens the breaker for another cooldown.
        open_ = true;
        trial_taken_ = false;
        opened_at_ = now;
    }
}

void TokenBucket::refill(TimePoint now) {
    if (!started_) {
        started_ = true;
        last_ = now;
        return;
    }
    const double elapsed = std::chrono::duration<double>(now - last_).count();
    if (elapsed > 0) {
        tokens_ = std::min(burst_, tokens_ + elapsed * rate_);
        last_ = now;
    }
}

bool TokenBucket::try_take(TimePoint now) {
    if (unlimited()) return true;
    refill(now);
    if (tokens_ < 1.0) return false;
    tokens_ -= 1.0;
    return true;
}

TimePoint TokenBucket::next_token(TimePoint now) {
    if (unlimited()) return now;
    refill(now);
    if (tokens_ >= 1.0) return now;
    const double wait = (1.0 - tokens_) / rate_;
    return now +
           std::chrono::duration_cast<TimePoint::duration>(std::chrono::duration<double>(wait));
}

}  // namespace gateway::upstream
