#pragma once
// Private to src/txm: what TxManager holds of each transaction (Entry), and the names and replies
// shared by the files that define its member functions (tx_manager.cpp, tx_intake.cpp,
// tx_receipts.cpp, tx_queries.cpp).

#include "gateway/jsonrpc/jsonrpc.hpp"
#include "gateway/store/journal_service.hpp"
#include "gateway/txm/tx_manager.hpp"
#include "gateway/util/clock.hpp"

#include "replies.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/json/value.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

namespace gateway::txm {

namespace asio = boost::asio;
namespace json = boost::json;
using store::TxState;
using Clock = std::chrono::steady_clock;

// What memory holds of a transaction is its journal record and the dispatcher's notes, not its
// decoded form: eth_getTransactionByHash of a pending one decodes the record's bytes again.
struct TxManager::Entry {
    store::TxRecord rec;
    Clock::time_point last_broadcast{};
    bool busy = false;   // being sent right now (by a client's call or the dispatcher)
    bool taken = false;  // a node accepted it; its BROADCASTING record is being written (busy too)
    // QUEUED in the journal, but a node may have it: the gateway stopped (or the journal failed)
    // between a node's acceptance and the BROADCASTING record. Not replaced as "never sent".
    bool maybe_taken = false;
    bool waiting = false;            // counted in its sender's SenderIndex::waiting (note_waiting)
    std::uint64_t checked_head = 0;  // the chain head at its last receipt check
    Clock::time_point checked_at{};  // and when that was
    // QUEUED and refused for now by nodes that answered: for how long so far (only time during
    // which they kept answering counts), since when without a break, and what they said last.
    // Apart (null until the first refusal): most transactions are never refused, and each held
    // one's size counts a hundred thousand times.
    struct Refusal {
        util::Clock::duration refused_for{};
        std::optional<util::Clock::time_point> refused_since;
        std::string last_refusal;
    };
    std::unique_ptr<Refusal> refusal;
    /// The streak of refusals ended (a round in which no node answered).
    void refusals_interrupted() {
        if (refusal) refusal->refused_since.reset();
    }
};

namespace detail {

// A blob transaction's record holds 0x03 || rlp(tx_payload_body) (EIP-4844); its network form,
// sidecar included, is in the journal only.
inline bool is_blob(const store::TxRecord& rec) {
    return !rec.raw.empty() && rec.raw.front() == static_cast<std::uint8_t>(eth::TxType::blob);
}

}  // namespace detail

}  // namespace gateway::txm
