#include "gateway/upstream/upstream.hpp"

#include "gateway/metrics/metrics.hpp"

#include <spdlog/spdlog.h>

namespace gateway::upstream {

std::string_view to_string(Health health) {
    switch (health) {
        case Health::unknown:
            return "unknown";
        case Health::up:
            return "up";
        case Health::down:
            return "down";
        case Health::wrong_chain:
            return "wrong_chain";
    }
    return "unknown";
}

Upstream::Upstream(std::string chain, const config::UpstreamConfig& config,
                   const config::HealthConfig& health, std::unique_ptr<HttpClient> client,
                   metrics::Metrics* metrics)
    : chain_(std::move(chain)),
      config_(config),
      health_config_(health),
      client_(std::move(client)),
      metrics_(metrics) {
    if (metrics_) metrics_->set_upstream_up(chain_, config_.id, false);
}

bool Upstream::usable() const {
    std::lock_guard lock(mu_);
    return health_ == Health::unknown || health_ == Health::up;
}

bool Upstream::up() const {
    std::lock_guard lock(mu_);
    return health_ == Health::up;
}

void Upstream::set_health(Health health, std::string reason) {
    const Health before = health_;
    health_ = health;
    reason_ = std::move(reason);
    if (before == health) return;
    since_ = std::chrono::steady_clock::now();
    if (metrics_) metrics_->set_upstream_up(chain_, config_.id, health == Health::up);
    switch (health) {
        case Health::up:
            spdlog::info("upstream {} (chain {}) is up{}", config_.id, chain_,
                         before == Health::down ? " again" : "");
            break;
        case Health::down:
            spdlog::warn("upstream {} (chain {}) is down after {} failures in a row: {}",
                         config_.id, chain_, consecutive_failures_, reason_);
            break;
        case Health::wrong_chain:
            spdlog::error("upstream {} (chain {}) is EXCLUDED: {}", config_.id, chain_, reason_);
            break;
        case Health::unknown:
            break;
    }
}

void Upstream::record_success() {
    std::lock_guard lock(mu_);
    ++requests_;
    consecutive_failures_ = 0;
    ++consecutive_successes_;
    if (health_ == Health::wrong_chain) return;
    if (health_ == Health::unknown ||
        (health_ == Health::down && consecutive_successes_ >= health_config_.healthy_threshold))
        set_health(Health::up, "answering");
}

void Upstream::record_failure(std::string_view reason) {
    std::lock_guard lock(mu_);
    ++requests_;
    ++failures_;
    consecutive_successes_ = 0;
    ++consecutive_failures_;
    if (health_ == Health::wrong_chain) return;
    if (health_ == Health::down) {
        reason_ = std::string(reason);  // keep the newest reason, no new log line
    } else if (consecutive_failures_ >= health_config_.unhealthy_threshold) {
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

UpstreamStatus Upstream::status() const {
    std::lock_guard lock(mu_);
    return UpstreamStatus{config_.id, config_.tier, health_, reason_, consecutive_failures_,
                          requests_,  failures_,    since_};
}

}  // namespace gateway::upstream
