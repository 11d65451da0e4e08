#pragma once
// Private to src/txm: what TxManager holds of each transaction (Entry), and the names and replies
// shared by the files that define its member functions (tx_manager.cpp, tx_intake.cpp,
// tx_receipts.cpp, tx_queries.cpp).

#include "gateway/eth/hex.hpp"
#include "gateway/jsonrpc/jsonrpc.hpp"
#include "gateway/store/journal_service.hpp"
#include "gateway/txm/tx_manager.hpp"
#include "gateway/util/clock.hpp"

#include "handoffs.hpp"
#include "replies.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/json/value.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace gateway::txm {

namespace asio = boost::asio;
namespace json = boost::json;
using store::TxState;
using Clock = std::chrono::steady_clock;

// Who sent a held transaction. Shared by every transaction held from it (TxManager::origin_of):
// a client sends thousands, and each held one's size counts a hundred thousand times.
struct HeldOrigin {
    std::optional<std::string> parent;  // the managed transaction it is an attempt of
    std::string client;
    std::string source;
};

inline const HeldOrigin no_origin{};

// What memory keeps of a held transaction's journal record (store::TxRecord), and no more: not the
// chain (the manager's own), not a decoded form (eth_getTransactionByHash of a pending one decodes
// the bytes again); who sent it is shared (Origin), and its block is apart until it is mined.
struct HeldRecord {
    struct Block {
        std::optional<std::string> hash;
        std::optional<std::uint64_t> number;
    };
    eth::Hash hash{};
    eth::Address sender{};
    std::uint64_t nonce = 0;
    std::vector<std::uint8_t> raw;
    std::string reason;
    std::int64_t created_ms = 0;
    std::int64_t updated_ms = 0;
    std::uint32_t broadcasts = 0;
    TxState state = TxState::queued;
    bool finalized = false;
    std::shared_ptr<const HeldOrigin> origin;  // null: none
    std::unique_ptr<Block> block;              // null: never mined

    std::string hash_hex() const { return eth::to_hex(hash); }
    std::string sender_hex() const { return eth::to_hex(sender); }
    const std::optional<std::string>& parent() const {
        return (origin ? *origin : no_origin).parent;
    }
    const std::string& client() const { return (origin ? *origin : no_origin).client; }
    const std::string& source() const { return (origin ? *origin : no_origin).source; }
    const std::optional<std::string>& block_hash() const {
        static const Block none;
        return (block ? *block : none).hash;
    }
    const std::optional<std::uint64_t>& block_number() const {
        static const Block none;
        return (block ? *block : none).number;
    }
    // Once mined, its Block stays (emptied by a reorg) and is assigned in place: some readers
    // look at the block without the lock, as they did when the fields were the record's own.
    void set_block(const std::optional<std::string>& hash,
                   const std::optional<std::uint64_t>& number) {
        if (!block) {
            if (!hash && !number) return;
            block = std::make_unique<Block>();
        }
        block->hash = hash;
        block->number = number;
    }
};

struct TxManager::Entry {
    HeldRecord rec;
    Clock::time_point last_broadcast{};
    bool busy = false;   // being sent right now (by a client's call or the dispatcher)
    bool taken = false;  // a node accepted it; its BROADCASTING record is being written (busy too)
    // QUEUED in the journal, but a node may have it: the gateway stopped (or the journal failed)
    // between a node's acceptance and the BROADCASTING record. Not replaced as "never sent".
    bool maybe_taken = false;
    bool waiting = false;  // counted in its sender's SenderIndex::waiting (note_waiting)
    // A block scan_new_blocks read held it: its receipt is looked for every round until found.
    bool in_block = false;
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

// A hash or an address as text (0x and hex digits, either case) to the bytes memory keys on;
// nothing when it is not one.
template <std::size_t N>
std::optional<std::array<std::uint8_t, N>> key_of(std::string_view text) {
    if (text.size() != 2 + 2 * N) return std::nullopt;
    const auto bytes = eth::from_hex(text);
    if (!bytes) return std::nullopt;
    std::array<std::uint8_t, N> out{};
    std::copy(bytes->begin(), bytes->end(), out.begin());
    return out;
}
inline std::optional<eth::Hash> hash_key(std::string_view text) {
    return key_of<32>(text);
}
inline std::optional<eth::Address> address_key(std::string_view text) {
    return key_of<20>(text);
}

// A blob transaction's record holds 0x03 || rlp(tx_payload_body) (EIP-4844); its network form,
// sidecar included, is in the journal only.
inline bool is_blob(const HeldRecord& rec) {
    return !rec.raw.empty() && rec.raw.front() == static_cast<std::uint8_t>(eth::TxType::blob);
}

}  // namespace detail

}  // namespace gateway::txm
