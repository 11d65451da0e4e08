#pragma once
// A running configuration and a newly read one: which changes a reload applies while serving,
// and which wait for a restart (README, "Reloading the configuration").

#include "gateway/config/config.hpp"

#include <string>
#include <vector>

namespace gateway::config {

struct ReloadPlan {
    /// Changed keys applied at once: chains' upstreams, methods and policies, the API keys and
    /// their clients' limits, the admin token, the log level. e.g. "chains[mainnet].upstreams".
    std::vector<std::string> applied;
    /// Changed keys that keep their running value until a restart, e.g. "server.listen".
    std::vector<std::string> restart;
    /// `running` with the applied changes: what the gateway runs once the plan is carried out.
    Config result;
    /// What to apply, for the gateway to act on (`applied` names the same for people).
    struct ChainChanges {
        bool upstreams = false;
        bool methods = false;
        bool policies = false;
    };
    std::vector<ChainChanges> chains;  ///< one for each of the running chains, in their order
    bool clients = false;
    bool admin_token = false;
    bool log_level = false;
};

ReloadPlan plan_reload(const Config& running, const Config& next);

}  // namespace gateway::config
