#pragma once
// An outside policy service (catalog row C2), asked about each managed transaction the sender's own
// rules let through, before it takes a nonce. The contract (README, "The policy service"): a POST
// of {id, chain, chainId, from, transaction, client, idempotencyKey}, answered 2xx with
// {"decision": "allow"}, {"decision": "hold", "reason": "..."} or {"decision": "deny",
// "reason": "..."}. Anything else (unreachable, slow, another status, another body) is no answer:
// the transaction stays held and the service is asked again (fail-closed).

#include "gateway/config/config.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/json/object.hpp>

#include <chrono>
#include <memory>
#include <string>

namespace gateway::txm {

struct ServiceVerdict {
    enum class Kind {
        allow,
        hold,         ///< for a person to decide
        deny,         ///< the transaction fails with `reason`
        unavailable,  ///< no usable answer: asked again later
    };
    Kind kind = Kind::unavailable;
    std::string reason;  ///< the service's words (hold, deny), or what went wrong; never the URL
};

class PolicyService {
public:
    virtual ~PolicyService() = default;
    /// Asks about one transaction (`request`: the body above). Never throws.
    virtual boost::asio::awaitable<ServiceVerdict> check(
        boost::json::object request, std::chrono::steady_clock::time_point deadline) = 0;
};

/// A client of `config.url`, each check bounded by the sooner of the caller's deadline and
/// `config.timeout`; `name` names it in reasons (the chain, or the chain and sender). Credentials
/// in the URL are sent as HTTP Basic authentication and never put in a reason. Throws
/// std::runtime_error on an unusable URL (start-up only).
std::unique_ptr<PolicyService> make_policy_service(const config::PolicyConfig::Service& config,
                                                   std::string name);

}  // namespace gateway::txm
