#pragma once
// One upstream node: its client, and what the gateway knows of its health.

#include "gateway/config/config.hpp"
#include "gateway/upstream/http_client.hpp"

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

namespace gateway::metrics {
class Metrics;
}

namespace gateway::upstream {

enum class Health {
    unknown,      ///< not probed yet; calls may go there
    up,           ///< answering
    down,         ///< failed `unhealthy_threshold` times in a row; only probes go there
    wrong_chain,  ///< answers for another chain id; excluded until the gateway restarts
};

std::string_view to_string(Health health);

/// What an operator needs to know about an upstream, at one moment.
struct UpstreamStatus {
    std::string id;
    config::Tier tier = config::Tier::primary;
    Health health = Health::unknown;
    std::string reason;  ///< why it is in that state, for people
    unsigned consecutive_failures = 0;
    std::uint64_t requests = 0;
    std::uint64_t failures = 0;
    std::chrono::steady_clock::time_point since;  ///< when `health` last changed
};

/// Thread-safe: state changes take a short lock.
class Upstream {
public:
    Upstream(std::string chain, const config::UpstreamConfig& config,
             const config::HealthConfig& health, std::unique_ptr<HttpClient> client,
             metrics::Metrics* metrics);

    const std::string& id() const { return config_.id; }
    const std::string& chain() const { return chain_; }
    const config::UpstreamConfig& config() const { return config_; }
    HttpClient& client() { return *client_; }

    /// Calls may be sent here: the upstream is up, or not probed yet.
    bool usable() const;
    /// A probe or a call has confirmed the upstream answers.
    bool up() const;

    /// A call or probe got an answer from the node (a JSON-RPC error answer counts: the node
    /// works).
    void record_success();
    /// A call or probe failed in transport, timed out, or got HTTP 5xx/429 or garbage.
    void record_failure(std::string_view reason);
    /// The node reports another chain id than the configured one.
    void record_wrong_chain(std::uint64_t expected, std::uint64_t reported);

    UpstreamStatus status() const;

private:
    void set_health(Health health, std::string reason);  // with mu_ held

    const std::string chain_;
    const config::UpstreamConfig config_;
    const config::HealthConfig health_config_;
    std::unique_ptr<HttpClient> client_;
    metrics::Metrics* metrics_;

    mutable std::mutex mu_;
    Health health_ = Health::unknown;
    std::string reason_ = "not probed yet";
    unsigned consecutive_failures_ = 0;
    unsigned consecutive_successes_ = 0;
    std::uint64_t requests_ = 0;
    std::uint64_t failures_ = 0;
    std::chrono::steady_clock::time_point since_ = std::chrono::steady_clock::now();
};

}  // namespace gateway::upstream
