#pragma once
// Journal rows for tests: raw transactions of one sender on the devnet chain.

#include "gateway/store/journal.hpp"
#include "gateway/store/journal_service.hpp"

#include <chrono>
#include <cstdint>
#include <string>
#include <thread>

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

/// `r` with a raw transaction of `bytes` bytes (a large one fills a small disk).
inline store::TxRecord with_raw_size(store::TxRecord r, std::size_t bytes) {
    r.raw.assign(bytes, 0x02);
    return r;
}

/// Inserts `r` as soon as the journal takes writes again (after a failure, it tries to open
/// again on its own schedule); false when it did not within `tries` tries 5 ms apart.
inline bool insert_once_usable(store::JournalService& service, const store::TxRecord& r,
                               int tries = 500) {
    for (int i = 0; i < tries; ++i) {
        try {
            service.run_blocking([&](store::JournalView& j) { j.insert(r); });
            return true;
        } catch (const store::StoreError&) {
            std::this_thread::sleep_for(std::chrono::milliseconds(5));  // its next try to open
        }
    }
    return false;
}

}  // namespace gateway::test
