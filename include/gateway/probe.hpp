#pragma once
// `chain-gateway --probe FILE`: the gateway asks itself whether it is alive, for a container's
// HEALTHCHECK and Kubernetes exec probes in an image without curl: an HTTP GET of the admin
// listener's /healthz (or another path) from the config's admin_listen, on loopback.

#include "gateway/config/config.hpp"

#include <chrono>
#include <string>
#include <string_view>

namespace gateway {

struct ProbeResult {
    bool healthy = false;
    std::string said;  ///< "HTTP 200 from 127.0.0.1:9545/healthz", or why there is no answer
};

/// GET `path` of the admin listener at `admin` (0.0.0.0 and :: are asked on 127.0.0.1 and ::1),
/// within `timeout`: healthy on a 2xx. Never throws.
ProbeResult probe(const config::Endpoint& admin, std::string_view path,
                  std::chrono::milliseconds timeout);

}  // namespace gateway
