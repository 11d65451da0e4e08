#include "gateway/upstream/upstream.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>

namespace gateway::upstream {

std::string_view to_string(Health health) {
    switch (health) {
        case Health::unknown: return "unknown";
        case Health::up: return "up";
        case Health::down: return "down";
        case Health::wrong_chain: return "wrong_chain";
    }
    return "unknown";
}

Upstream::Upstream(std::string chain, const config::UpstreamConfig& config,
                   const config::HealthConfig& health, const config::FailoverConfig& failover,
                   std::unique_ptr<HttpClient> client, const util::Clock& clock)
    : chain_(std::move(chain)),
      config_(config),
      health_config_(health),
      client_(std::move(client)),
      clock_(clock),
      since_(clock.now()),
      breaker_(failover.breaker_threshold, failover.breaker_cooldown),
      bucket_(config.max_rps, std::max(1.0, config.max_rps)) {}

void Upstream::set_health(Health health, std::string reason) {
    const Health before = health_;
    health_ = health;
    reason_ = std::move(reason);
    if (before == health) return;
    since_ = clock_.now();
    switch (health) {
        case Health::up:
            spdlog::info("upstream {} (chain {}) is up{}", config_.id, chain_,
                         before == Health::down ? " again" : "");
            break;
        case Health::down:
            spdlog::warn("upstream {} (chain {}) is down after {} failed probes in a row: {}",
                         config_.id, chain_, probe_failures_, reason_);
            break;
        case Health::wrong_chain:
            spdlog::error("upstream {} (chain {}) is EXCLUDED: {}", config_.id, chain_, reason_);
            break;
        case Health::unknown: break;
    }
}

void Upstream::probe_succeeded(std::chrono::microseconds latency, std::uint64_t head,
                               bool syncing) {
    std::lock_guard lock(mu_);
    if (!head_ || head != *head_) head_changed_ = clock_.now();
    head_ = head;
    claimed_head_ = head;
    if (!head_doubt_.empty())
        spdlog::info("upstream {} (chain {}): its head {} is believed again", config_.id, chain_,
                     head);
    head_doubt_.clear();
    answered_probe(latency, syncing);
}

void Upstream::head_not_believed(std::chrono::microseconds latency, std::uint64_t claimed,
                                 bool syncing, std::string why) {
    std::lock_guard lock(mu_);
    if (head_doubt_.empty())
        spdlog::warn("upstream {} (chain {}): its head is not believed, no latest reads: {}",
                     config_.id, chain_, why);
    claimed_head_ = claimed;
    head_doubt_ = std::move(why);
    answered_probe(latency, syncing);
}

std::optional<std::uint64_t> Upstream::claimed_head() const {
    std::lock_guard lock(mu_);
    return claimed_head_;
}

void Upstream::answered_probe(std::chrono::microseconds latency, bool syncing) {
    const auto now = clock_.now();
    latency_.record(latency);
    window_.record(now, false, false);
    if (syncing != syncing_)
        spdlog::info("upstream {} (chain {}) {} syncing", config_.id, chain_,
                     syncing ? "is" : "is no longer");
    syncing_ = syncing;
    probe_failures_ = 0;
    ++probe_successes_;
    if (health_ == Health::wrong_chain) return;
    if (health_ == Health::unknown ||
        (health_ == Health::down && probe_successes_ >= health_config_.healthy_threshold)) {
        // Back from down: the probes have shown it answers, so calls need not wait out a
        // breaker opened while it was away.
        if (health_ == Health::down) breaker_.record_success();
        set_health(Health::up, "answering probes");
    }
}

void Upstream::probe_failed(std::string_view reason) {
    std::lock_guard lock(mu_);
    window_.record(clock_.now(), true, false);
    probe_successes_ = 0;
    ++probe_failures_;
    if (health_ == Health::wrong_chain) return;
    if (health_ == Health::down) {
        reason_ = std::string(reason);  // keep the newest reason, no new log line
    } else if (probe_failures_ >= health_config_.unhealthy_threshold) {
        set_health(Health::down, std::string(reason));
    }
}

void Upstream::record_wrong_chain(std::uint64_t expected, std::uint64_t reported) {
    std::lock_guard lock(mu_);
    if (health_ == Health::wrong_chain) return;
    set_health(Health::wrong_chain, "reports chain id " + std::to_string(reported) +
                                        ", the chain is configured with " +
                                        std::to_string(expected) + "; check the upstream URL");
}

Upstream::Admission Upstream::admit() {
    std::lock_guard lock(mu_);
    const auto now = clock_.now();
    if (throttled_until_ && now < *throttled_until_) return Admission::throttled;
    if (config_.max_concurrency && in_flight_ >= config_.max_concurrency)
        return Admission::at_capacity;
    if (!breaker_.would_allow(now)) return Admission::breaker_open;
    if (!bucket_.try_take(now)) return Admission::at_capacity;
    breaker_.allow(now);
    ++in_flight_;
    return Admission::admitted;
}

void Upstream::release() {
    std::lock_guard lock(mu_);
    if (in_flight_ > 0) --in_flight_;
}

void Upstream::call_succeeded() {
    std::lock_guard lock(mu_);
    ++requests_;
    window_.record(clock_.now(), false, false);
    breaker_.record_success();
}

void Upstream::call_failed(const Attempt& attempt) {
    std::lock_guard lock(mu_);
    const auto now = clock_.now();
    ++requests_;
    if (attempt.node_fault) ++failures_;
    window_.record(now, attempt.node_fault, attempt.throttled);
    if (attempt.throttled) {
        // Honour Retry-After (capped at a minute); without one, a second's rest.
        const auto rest = std::min<std::chrono::seconds>(
            attempt.retry_after.value_or(std::chrono::seconds(1)), std::chrono::seconds(60));
        throttled_until_ = now + rest;
    }
    if (attempt.node_fault) {
        const bool was_closed = breaker_.state(now) == CircuitBreaker::State::closed;
        breaker_.record_failure(now);
        if (was_closed && breaker_.state(now) != CircuitBreaker::State::closed)
            spdlog::warn(
                "upstream {} (chain {}): circuit breaker open after {} failed calls in a row: {}",
                config_.id, chain_, breaker_.consecutive_failures(), attempt.detail);
    } else if (attempt.kind == Attempt::Kind::rpc_error) {
        // The node answered, it just could not serve this call: the breaker sees a working node.
        breaker_.record_success();
    }
}

void Upstream::set_cordoned(bool cordoned, std::string reason) {
    std::lock_guard lock(mu_);
    if (cordoned_ != cordoned)
        spdlog::warn("upstream {} (chain {}) {}: {}", config_.id, chain_,
                     cordoned ? "cordoned" : "uncordoned", reason);
    cordoned_ = cordoned;
    cordon_reason_ = cordoned ? std::move(reason) : std::string();
}

bool Upstream::excluded() const {
    std::lock_guard lock(mu_);
    return cordoned_ || health_ == Health::wrong_chain;
}

std::optional<std::uint64_t> Upstream::usable_head() const {
    std::lock_guard lock(mu_);
    if (cordoned_ || health_ != Health::up || syncing_ || !head_doubt_.empty()) return std::nullopt;
    return head_;
}

bool Upstream::serving() const {
    std::lock_guard lock(mu_);
    return !cordoned_ && health_ == Health::up;
}

UpstreamStatus Upstream::status(bool with_reason) const {
    std::lock_guard lock(mu_);
    const auto now = clock_.now();
    UpstreamStatus s;
    s.id = config_.id;
    s.tier = config_.tier;
    s.health = health_;
    if (with_reason) s.reason = reason_;
    s.since = since_;
    s.cordoned = cordoned_;
    s.cordon_reason = cordon_reason_;
    s.syncing = syncing_;
    s.head = head_;
    s.head_changed = head_changed_;
    s.claimed_head = claimed_head_;
    s.head_doubt = head_doubt_;
    s.has_latency = !latency_.empty();
    s.latency_ewma_ms = latency_.ewma_ms();
    s.latency_p90_ms = latency_.p90_ms();
    s.error_rate = window_.error_rate(now);
    s.throttle_rate = window_.throttle_rate(now);
    s.breaker = breaker_.state(now);
    s.consecutive_failures = breaker_.consecutive_failures();
    if (throttled_until_ && now < *throttled_until_) s.throttled_until = throttled_until_;
    s.in_flight = in_flight_;
    s.requests = requests_;
    s.failures = failures_;
    return s;
}

}  // namespace gateway::upstream
