#pragma once
// A signer that asks a remote signing service over JSON-RPC: eth_signTransaction with the
// transaction object, answered with the signed raw transaction (the Web3Signer shape).

#include "gateway/custody/signer.hpp"

#include <chrono>
#include <memory>
#include <string>
#include <vector>

namespace gateway::custody {

/// A signer for `addresses` behind `url` (http:// or https://; credentials in the URL are sent as
/// HTTP Basic authentication and never logged or put in a `detail`). Each sign() is one POST
/// through the gateway's pooled HTTP client, bounded by the sooner of the caller's deadline and
/// `timeout`.
///
/// The answer is checked before it is believed: it must decode as a signed transaction whose
/// sender is `from` and whose contents (chain id, nonce, fees, gas, to, value, data) are those
/// requested; anything else, like a body that is not JSON-RPC, is `malformed` with the reason.
/// Transport failures, timeouts, HTTP 5xx, 401, 403, 404, 408 and 429, and JSON-RPC errors
/// that say the service cannot sign now (a key not loaded, locked, an approval pending:
/// says_not_ready) are `unavailable`; any other JSON-RPC error is `refused` with the service's
/// message; an address not in `addresses` is `refused` without asking.
///
/// Throws std::runtime_error on an unusable URL (start-up only).
std::unique_ptr<Signer> make_remote_signer(std::string id, std::string url,
                                           std::vector<eth::Address> addresses,
                                           std::chrono::milliseconds timeout);

}  // namespace gateway::custody
