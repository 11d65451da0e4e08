#pragma once
// Whether a sender's nonce is used on the canonical chain, and by which of the gateway's
// transactions: the proof needed before an attempt is declared dead (and, for a managed sender,
// signed again with the next nonce). A node behind proves nothing: every answer comes from a
// node at or above the chain's head, and the nonce must be used `confirmations` blocks deep.

#include "gateway/upstream/forwarder.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/json/array.hpp>
#include <boost/json/value.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace gateway::txm {

struct NonceUse {
    enum class Kind {
        unknown,  ///< cannot tell now (no node at the head answered, or not deep enough yet)
        unused,   ///< the chain has not used the nonce, even at its head
        ours,     ///< used by one of `hashes`: `hash` with its `receipt`
        another,  ///< used, `confirmations` deep, by a transaction that is none of `hashes`
    };
    Kind kind = Kind::unknown;
    std::string hash;
    boost::json::value receipt;
    std::uint64_t seen_at = 0;  ///< the block at which the use was seen (for `another`)
};

/// The result of a read answered by a node at or above block `min_block` (a node behind cannot
/// tell what is gone); nullopt when none answered. Never throws.
boost::asio::awaitable<std::optional<boost::json::value>> read_at(upstream::Forwarder& pool,
                                                                  const char* method,
                                                                  boost::json::array params,
                                                                  std::uint64_t min_block);

/// Asks nodes at or above the chain's head for `sender`'s transaction count at the head and at
/// `confirmations` blocks under it, and for the receipts of `hashes`. Never throws.
boost::asio::awaitable<NonceUse> nonce_use(upstream::Forwarder& pool, const std::string& sender,
                                           std::uint64_t nonce,
                                           const std::vector<std::string>& hashes,
                                           unsigned confirmations);

}  // namespace gateway::txm
