#pragma once
// Custody: whatever holds a managed sender's key signs its transactions. One interface; local
// keys (hex file, environment variable, Web3 keystore v3), a remote signer over JSON-RPC
// (eth_signTransaction, the Web3Signer shape) and a custody stub whose faults a test can set.

#include "gateway/eth/hex.hpp"
#include "gateway/eth/unsigned_tx.hpp"

#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

namespace gateway::custody {

/// What one signing request came to. Custody that cannot sign now is waited for, never counted
/// against the transaction (catalog row C1: it queues, it is never skipped); only a signer's no
/// ends a transaction, and only answers that cannot be used count toward retry.max_attempts.
struct Signed {
    enum class Outcome {
        signed_ok,    ///< `raw` holds the signed transaction
        unavailable,  ///< the signer cannot sign now (unreachable, timed out, an HTTP error, a key
                      ///< not loaded or locked, not ready): asked again later, for as long as it
                      ///< takes
        pending_approval,  ///< the signer holds it for a person's approval (its own policy): asked
                           ///< again later with the same nonce, until the sender's
                           ///< approval_ttl_ms passes
        refused,           ///< the signer answered no (its policy, an address it holds no key for):
                           ///< the transaction fails with `detail`; a person decides
        malformed,  ///< its answer cannot be used (not JSON-RPC, no signed transaction, another
                    ///< transaction than the one asked for): a failed try, counted
    };
    Outcome outcome = Outcome::unavailable;
    eth::Bytes raw;      ///< the signed transaction (eth_sendRawTransaction's bytes)
    std::string detail;  ///< why not, for people; never a secret
};

/// Whether a signer's own error message says it cannot sign now rather than that it will not:
/// a key not loaded, locked or not unlocked, not ready or unavailable, an approval pending,
/// "try again". Case-insensitive.
bool says_not_ready(std::string_view message);

/// Whether a signer's own error message that says_not_ready() says a person has yet to approve
/// ("pending approval", "awaiting approval", "requires approval"). Case-insensitive.
bool says_approval_pending(std::string_view message);

/// The outcome's name in metrics and logs: signed, unavailable, pending_approval, refused,
/// malformed.
const char* to_string(Signed::Outcome outcome);

/// Thread-safe. Never throws from sign(); secrets never appear in `detail` or logs.
class Signer {
public:
    virtual ~Signer() = default;
    /// The signer's id from the configuration, for logs and metrics.
    virtual const std::string& id() const = 0;
    /// The addresses it can sign for.
    virtual std::vector<eth::Address> addresses() const = 0;
    /// Signs `tx` for `from`, giving up at `deadline`. Must be awaited on a strand.
    virtual boost::asio::awaitable<Signed> sign(const eth::UnsignedTx& tx, const eth::Address& from,
                                                std::chrono::steady_clock::time_point deadline) = 0;
};

}  // namespace gateway::custody
