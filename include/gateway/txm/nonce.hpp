#pragma once
// Nonce reconciliation for a managed sender: where its next nonce starts, from what the journal
// handed out, what the chain counts and what the gateway still holds. Pure.

#include <cstdint>
#include <optional>

namespace gateway::txm {

struct NonceStart {
    std::uint64_t next = 0;  ///< the next nonce to hand out
    bool raised = false;     ///< the chain counts more: another party used nonces
    bool lowered = false;    ///< the journal handed out nonces that never reached the chain
};

/// `journal_next`: one past the last nonce handed out (none: never). `chain_pending`: the
/// chain's pending transaction count. `held_max`: the highest nonce of a transaction the gateway
/// still holds unfinished with a nonce (none: it holds none).
///
/// The next nonce is max(chain_pending, journal_next); but when journal_next is above the chain
/// and the gateway holds nothing at or above chain_pending, the range [chain_pending,
/// journal_next) is proven empty (nothing of the gateway's is in it, and the chain has nothing
/// there) and the next nonce goes down to chain_pending, so no gap stops the sender.
NonceStart reconcile_nonce(std::optional<std::uint64_t> journal_next, std::uint64_t chain_pending,
                           std::optional<std::uint64_t> held_max);

}  // namespace gateway::txm
