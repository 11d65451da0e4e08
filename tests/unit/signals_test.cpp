// The health signals of a node: latency tracking, the sliding window of outcomes, the circuit
// breaker and the token bucket.

#include "gateway/upstream/signals.hpp"

#include <gtest/gtest.h>

namespace gateway::upstream {
namespace {

using namespace std::chrono_literals;

TEST(LatencyTracker, EwmaFollowsRecentAnswersAndP90IgnoresTheRareSlowOne) {
    LatencyTracker t;
    EXPECT_TRUE(t.empty());
    t.record(10ms);
    EXPECT_DOUBLE_EQ(t.ewma_ms(), 10.0);
    t.record(20ms);
    EXPECT_DOUBLE_EQ(t.ewma_ms(), 12.0);  // 0.2 x 20 + 0.8 x 10
    LatencyTracker p;
    for (int i = 1; i <= 100; ++i) p.record(std::chrono::milliseconds(i));
    // The last 64 samples are 37..100; their p90 (nearest rank 58 of 64) is 94.
    EXPECT_DOUBLE_EQ(p.p90_ms(), 94.0);
    LatencyTracker one_slow;
    for (int i = 0; i < 20; ++i) one_slow.record(1ms);
    one_slow.record(1000ms);
    EXPECT_DOUBLE_EQ(one_slow.p90_ms(), 1.0);
}

TEST(SlidingWindow, RatesCoverTheWindowAndOldEventsAgeOut) {
    util::ManualClock clock;
    SlidingWindow w(std::chrono::milliseconds(10'000));
    EXPECT_EQ(w.error_rate(clock.now()), 0.0);
    for (int i = 0; i < 6; ++i) w.record(clock.now(), false, false);
    w.record(clock.now(), true, false);
    w.record(clock.now(), true, false);
    w.record(clock.now(), false, true);
    w.record(clock.now(), false, true);
    EXPECT_EQ(w.requests(clock.now()), 10u);
    EXPECT_DOUBLE_EQ(w.error_rate(clock.now()), 0.2);
    EXPECT_DOUBLE_EQ(w.throttle_rate(clock.now()), 0.2);
    clock.advance(5s);
    w.record(clock.now(), false, false);
    EXPECT_EQ(w.requests(clock.now()), 11u);
    clock.advance(6s);  // the first ten are now more than 10 s old
    EXPECT_EQ(w.requests(clock.now()), 1u);
    EXPECT_EQ(w.error_rate(clock.now()), 0.0);
    clock.advance(20s);
    EXPECT_EQ(w.requests(clock.now()), 0u);
}

TEST(CircuitBreaker, OpensAfterTheThresholdTriesOnceAfterTheCooldownAndCloses) {
    util::ManualClock clock;
    CircuitBreaker b(3, 5000ms);
    EXPECT_EQ(b.state(clock.now()), CircuitBreaker::State::closed);
    b.record_failure(clock.now());
    b.record_failure(clock.now());
    EXPECT_TRUE(b.allow(clock.now()));
    b.record_failure(clock.now());
    EXPECT_EQ(b.state(clock.now()), CircuitBreaker::State::open);
    EXPECT_FALSE(b.allow(clock.now()));
    clock.advance(4999ms);
    EXPECT_FALSE(b.would_allow(clock.now()));
    clock.advance(1ms);
    EXPECT_EQ(b.state(clock.now()), CircuitBreaker::State::half_open);
    EXPECT_TRUE(b.allow(clock.now()));   // the trial
    EXPECT_FALSE(b.allow(clock.now()));  // only one at a time
    b.record_failure(clock.now());       // the trial failed: open again, for a new cooldown
    EXPECT_EQ(b.state(clock.now()), CircuitBreaker::State::open);
    clock.advance(5000ms);
    EXPECT_TRUE(b.allow(clock.now()));
    b.record_success();
    EXPECT_EQ(b.state(clock.now()), CircuitBreaker::State::closed);
    EXPECT_EQ(b.consecutive_failures(), 0u);
    EXPECT_TRUE(b.allow(clock.now()));
}

TEST(CircuitBreaker, ASuccessResetsTheCount) {
    util::ManualClock clock;
    CircuitBreaker b(2, 1000ms);
    b.record_failure(clock.now());
    b.record_success();
    b.record_failure(clock.now());
    EXPECT_EQ(b.state(clock.now()), CircuitBreaker::State::closed);
}

TEST(TokenBucket, BurstThenRate) {
    util::ManualClock clock;
    TokenBucket unlimited(0, 0);
    for (int i = 0; i < 1000; ++i) EXPECT_TRUE(unlimited.try_take(clock.now()));
    TokenBucket b(10, 10);
    for (int i = 0; i < 10; ++i) EXPECT_TRUE(b.try_take(clock.now())) << i;
    EXPECT_FALSE(b.try_take(clock.now()));
    EXPECT_EQ(b.next_token(clock.now()) - clock.now(), std::chrono::steady_clock::duration(100ms));
    clock.advance(100ms);
    EXPECT_TRUE(b.try_take(clock.now()));
    EXPECT_FALSE(b.try_take(clock.now()));
    clock.advance(10s);  // saves no more than the burst
    for (int i = 0; i < 10; ++i) EXPECT_TRUE(b.try_take(clock.now()));
    EXPECT_FALSE(b.try_take(clock.now()));
}

}  // namespace
}  // namespace gateway::upstream
