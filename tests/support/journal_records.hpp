#pragma once
// Journal rows for tests: raw transactions of one sender on the devnet chain.

#include "gateway/store/journal.hpp"

#include <cstdint>
#include <string>

namespace gateway::test {

/// A raw transaction of the sender every test uses, created at `at_ms`.
inline store::TxRecord raw_tx(const std::string& hash, store::TxState state, std::int64_t at_ms,
                              std::uint64_t nonce = 0) {
    store::TxRecord r;
    r.hash = hash;
    r.chain = "devnet";
    r.chain_id = 31337;
    r.sender = "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266";
    r.nonce = nonce;
    r.raw = {0x02, 0xf8, 0x01};
    r.state = state;
    r.reason = "received";
    r.created_ms = r.updated_ms = at_ms;
    return r;
}

/// The same with nonce `nonce`, created at 1000 + its nonce.
inline store::TxRecord record(const std::string& hash, std::uint64_t nonce,
                              store::TxState state = store::TxState::queued) {
    return raw_tx(hash, state, 1000 + static_cast<std::int64_t>(nonce), nonce);
}

}  // namespace gateway::test
