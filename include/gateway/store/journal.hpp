#pragma once
// The journal of transactions: every transaction the gateway accepted, its signed bytes, and every
// state it went through with the time and the reason. A row is written before the effect it
// allows (the bytes before the first broadcast), so a restart replays the journal and loses
// nothing. One interface; each database backend implements it.

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace gateway::store {

/// The transaction state machine (see the README). A raw transaction enters at `queued`.
enum class TxState {
    queued,        ///< journaled, not yet accepted by a node
    broadcasting,  ///< accepted by a node, waiting to be mined
    confirming,    ///< mined, counting confirmations
    completed,     ///< mined with `confirmations` blocks on top, status success (final)
    failed,        ///< refused by the nodes, replaced, or reverted (final)
    dead_letter,   ///< the gateway gave up on it; a person decides (final)
};

std::string_view to_string(TxState state);  ///< "QUEUED", "BROADCASTING", ...
std::optional<TxState> parse_tx_state(std::string_view text);
inline bool is_final(TxState s) {
    return s == TxState::completed || s == TxState::failed || s == TxState::dead_letter;
}

struct TxRecord {
    std::string hash;  ///< 0x-prefixed, lowercase
    std::string chain;
    std::uint64_t chain_id = 0;
    std::string sender;  ///< 0x-prefixed, lowercase
    std::uint64_t nonce = 0;
    std::vector<std::uint8_t> raw;  ///< the signed transaction as the client sent it
    TxState state = TxState::queued;
    std::string reason;           ///< why it is in this state, for people
    std::int64_t created_ms = 0;  ///< Unix time in milliseconds
    std::int64_t updated_ms = 0;
    std::uint32_t broadcasts = 0;  ///< times it was sent to the nodes
    std::optional<std::string> block_hash;
    std::optional<std::uint64_t> block_number;
};

/// One step in a transaction's history.
struct TxEvent {
    TxState state = TxState::queued;
    std::string reason;
    std::int64_t at_ms = 0;
};

/// A change of state, written with its event.
struct TxUpdate {
    std::string hash;
    TxState state = TxState::queued;
    std::string reason;
    std::int64_t at_ms = 0;
    std::optional<std::uint32_t> broadcasts;  ///< set: the new count
    bool set_block = false;                   ///< write block_hash and block_number (may be unset)
    std::optional<std::string> block_hash;
    std::optional<std::uint64_t> block_number;
};

/// The journal could not be read or written (disk full, unwritable file, closed).
class StoreError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

/// Not thread-safe: a JournalService calls it from its own thread. Every method throws
/// StoreError when the database fails.
class Journal {
public:
    virtual ~Journal() = default;

    /// Inserts a new transaction with its first event. When one with the same hash exists
    /// nothing changes and the existing record is returned with `false`.
    virtual std::pair<TxRecord, bool> insert(const TxRecord& record) = 0;
    /// Moves a transaction to a state and records the event. False when the hash is unknown.
    virtual bool update(const TxUpdate& update) = 0;
    virtual std::optional<TxRecord> find(std::string_view hash) = 0;
    /// Every transaction not in a final state, ordered by chain, sender and nonce.
    virtual std::vector<TxRecord> unfinished() = 0;
    /// The newest transactions first, optionally in one state.
    virtual std::vector<TxRecord> list(std::optional<TxState> state, std::size_t limit) = 0;
    /// A transaction's states, oldest first.
    virtual std::vector<TxEvent> history(std::string_view hash) = 0;

    /// Group commit: the JournalService runs several callers' operations in one database
    /// transaction, each inside a savepoint so one failure does not undo the others, and makes
    /// them durable with one commit.
    virtual void begin() = 0;
    virtual void commit() = 0;
    virtual void rollback() noexcept = 0;
    virtual void savepoint() = 0;
    virtual void release_savepoint() = 0;
    virtual void rollback_to_savepoint() noexcept = 0;
};

}  // namespace gateway::store
