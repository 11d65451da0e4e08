// Nonce reconciliation for a managed sender: where its next nonce starts (see nonce.hpp).

#include "gateway/txm/nonce.hpp"

namespace gateway::txm {

NonceStart reconcile_nonce(std::optional<std::uint64_t> journal_next, std::uint64_t chain_pending,
                           std::optional<std::uint64_t> held_max) {
    NonceStart out;
    if (!journal_next) {
        out.next = chain_pending;
        return out;
    }
    if (chain_pending > *journal_next) {
        out.next = chain_pending;
        out.raised = true;
        return out;
    }
    if (chain_pending < *journal_next && (!held_max || *held_max < chain_pending)) {
        out.next = chain_pending;
        out.lowered = true;
        return out;
    }
    out.next = *journal_next;
    return out;
}

}  // namespace gateway::txm
