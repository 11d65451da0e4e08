#pragma once
// Custody: whatever holds a managed sender's key signs its transactions. One interface; local
// keys (hex file, environment variable, Web3 keystore v3), a remote signer over JSON-RPC
// (eth_signTransaction, the Web3Signer shape) and a custody stub whose faults a test can set.

#include "gateway/eth/hex.hpp"
#include "gateway/eth/unsigned_tx.hpp"

#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <string>
#include <vector>

namespace gateway::custody {

/// What one signing request came to.
struct Signed {
    enum class Outcome {
        signed_ok,    ///< `raw` holds the signed transaction
        unavailable,  ///< the signer could not be reached or timed out: try again later
        refused,      ///< the signer answered no (unknown address, policy): a person decides
    };
    Outcome outcome = Outcome::unavailable;
    eth::Bytes raw;      ///< the signed transaction (eth_sendRawTransaction's bytes)
    std::string detail;  ///< why not, for people; never a secret
};

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
