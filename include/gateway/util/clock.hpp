#pragma once
// Time as the gateway's logic sees it: injected, so that tests can move it.

#include <atomic>
#include <chrono>

namespace gateway::util {

/// A source of steady time. Thread-safe.
class Clock {
public:
    using time_point = std::chrono::steady_clock::time_point;
    using duration = std::chrono::steady_clock::duration;
    virtual ~Clock() = default;
    virtual time_point now() const = 0;
};

/// The real steady clock.
class SteadyClock final : public Clock {
public:
    time_point now() const override { return std::chrono::steady_clock::now(); }
    /// One shared instance for production code.
    static const SteadyClock& instance() {
        static const SteadyClock clock;
        return clock;
    }
};

/// A clock that only moves when told to (tests).
class ManualClock final : public Clock {
public:
    time_point now() const override { return time_point(duration(ticks_.load())); }
    void advance(duration d) { ticks_ += d.count(); }

private:
    std::atomic<duration::rep> ticks_{std::chrono::hours(1000).count()};
};

}  // namespace gateway::util
