#pragma once
// The journal of transactions: every transaction the gateway accepted, its signed bytes, and every
// state it went through with the time and the reason. A row is written before the effect it
// allows (the bytes before the first broadcast), so a restart replays the journal and loses
// nothing. Split by role (see the interfaces below); each database backend implements them all as
// a Journal.

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace gateway::store {

/// The transaction state machine (see the README). A raw transaction enters at `queued`.
enum class TxState {
    queued,            ///< journaled, not yet accepted by a node
    preparing,         ///< managed: gas, fees and the nonce being worked out
    signing,           ///< managed: nonce taken, waiting for the signer
    broadcasting,      ///< accepted by a node, waiting to be mined
    confirming,        ///< mined, counting confirmations
    completed,         ///< mined with `confirmations` blocks on top, status success (final)
    failed,            ///< refused by the nodes, replaced, or reverted (final)
    dead_letter,       ///< the gateway gave up on it; a person decides (final)
    cancelled,         ///< managed: replaced by a zero-value self-send on request (final)
    pending_approval,  ///< managed: held by the sender's policy for an operator, no nonce yet
    replaced,  ///< an attempt of a managed transaction whose nonce another attempt used (final)
    // New states go above `replaced`: the SQLite store lists the states up to it. (Kept as text:
    // the order is not stored.)
};

std::string_view to_string(TxState state);  ///< "QUEUED", "BROADCASTING", ...
std::optional<TxState> parse_tx_state(std::string_view text);
inline bool is_final(TxState s) {
    return s == TxState::completed || s == TxState::failed || s == TxState::dead_letter ||
           s == TxState::cancelled || s == TxState::replaced;
}

struct TxRecord {
    std::string hash;  ///< 0x-prefixed, lowercase
    std::string chain;
    std::uint64_t chain_id = 0;
    std::string sender;  ///< 0x-prefixed, lowercase
    std::uint64_t nonce = 0;
    /// The signed transaction as the client sent it; a blob transaction without its sidecar
    /// (0x03 || rlp(tx_payload_body)), whose network form is kept apart (network_form).
    std::vector<std::uint8_t> raw;
    TxState state = TxState::queued;
    std::string reason;           ///< why it is in this state, for people
    std::int64_t created_ms = 0;  ///< Unix time in milliseconds
    std::int64_t updated_ms = 0;
    std::uint32_t broadcasts = 0;  ///< times it was sent to the nodes
    std::optional<std::string> block_hash;
    std::optional<std::uint64_t> block_number;
    std::optional<std::string> parent;  ///< the managed transaction this is an attempt of
    std::string client;                 ///< the authenticated client that sent it; "" without auth
    /// In a final state that nothing can change any more: never mined, or mined in a block that
    /// is final. A mined transaction (COMPLETED, or FAILED by a revert) is not, until its block
    /// is: a reorg before that reopens it.
    bool finalized = false;
    /// Whom tx.max_queued_per_client counts it against: the client's id with auth, else the
    /// peer's address; "" for a managed transaction's attempt.
    std::string source;
};

/// Whether a record in a final state was mined (COMPLETED, or FAILED by a revert): it has a
/// block.
inline bool is_mined_final(const TxRecord& r) {
    return (r.state == TxState::completed || r.state == TxState::failed) &&
           r.block_hash.has_value();
}

/// A transaction the gateway builds, signs and sends for a managed sender. Its signed attempts
/// are TxRecords whose `parent` is its id.
struct ManagedRecord {
    std::string id;  ///< the gateway's transaction id
    std::string chain;
    std::string sender;   ///< 0x-prefixed, lowercase
    std::string request;  ///< the client's transaction object, JSON text
    std::optional<std::string> idempotency_key;
    std::optional<std::uint64_t> nonce;  ///< taken late, once gas and fees are known
    TxState state = TxState::queued;
    std::string reason;
    std::int64_t created_ms = 0;
    std::int64_t updated_ms = 0;
    std::uint32_t attempts = 0;       ///< signed attempts so far
    std::optional<std::string> hash;  ///< the latest signed attempt's hash
    std::string client;               ///< the authenticated client that sent it; "" without auth
    /// The wei it moves (big-endian, no leading zeros; empty: none), for the policy's daily sums.
    std::vector<std::uint8_t> value;
    /// When the policy let it spend (it was let through, or approved); unset while it is held, and
    /// for transactions from before the policy. What the daily sums count from.
    std::optional<std::int64_t> spend_ms;
};

/// What a managed transaction moved, for a sender's daily sum (ManagedJournal::spending).
struct Spending {
    std::string id;
    TxState state = TxState::queued;
    std::uint32_t attempts = 0;
    std::vector<std::uint8_t> value;  ///< big-endian wei, not empty
    std::int64_t spend_ms = 0;
};

/// Which managed transaction, of which sender: enough to find its sender before reading it.
struct ManagedRef {
    std::string id;
    std::string chain;
    std::string sender;
};

struct ManagedUpdate {
    std::string id;
    TxState state = TxState::queued;
    std::string reason;
    std::int64_t at_ms = 0;
    std::optional<std::uint64_t> nonce;  ///< set: written
    std::optional<std::string> hash;     ///< set: written
    std::optional<std::uint32_t> attempts;
    /// Frees its idempotency key: a transaction the client was told was not accepted, whose key
    /// the client sends again for a new one.
    bool release_idempotency_key = false;
    /// Writes spend_ms (ManagedRecord::spend_ms), unset included.
    bool set_spend = false;
    std::optional<std::int64_t> spend_ms;
    /// Set: writes the wei it moves (ManagedRecord::value; empty: none).
    std::optional<std::vector<std::uint8_t>> value;
    /// Forgets its nonce (a retry takes a new one): `nonce` is not written then.
    bool clear_nonce = false;
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
    bool finalized = false;  ///< TxRecord::finalized
};

/// How many unfinished raw transactions (not managed attempts) a chain holds in the journal:
/// its caps (tx.max_queued, tx.max_queued_per_sender, tx.max_queued_per_client), counted by a
/// gateway that does not hold them in memory (a replica that does not dispatch).
struct QueuedCounts {
    std::size_t chain = 0;
    std::size_t sender = 0;
    std::size_t source = 0;
};

/// A managed sender's unfinished transactions in the journal, for the same reason: those held for
/// a person apart from the rest (ManagedSenders counts them so).
struct ManagedCounts {
    std::size_t unfinished = 0;  ///< every unfinished one but those held for a person
    std::size_t held = 0;        ///< PENDING_APPROVAL, but not waiting for the policy service
};

/// A transaction a gateway that does not dispatch accepted and journaled, handed to the one that
/// does (several gateways on one database): that one takes it from the journal and carries it on.
struct Handoff {
    std::string chain;
    bool managed = false;  ///< a managed transaction's id; else a raw transaction's hash
    std::string key;
    std::string sender;   ///< whose nonces it uses: what a gateway that owns senders apart takes
    std::int64_t id = 0;  ///< growing, in the order they were handed (set by the journal)
};

/// What one Retention::prune deleted.
struct Pruned {
    std::size_t transactions = 0;  ///< raw transactions, a managed one's attempts included
    std::size_t managed = 0;       ///< managed transactions
    /// A kind reached the call's limit: more may be due.
    bool more = false;
};

/// The journal could not be read or written (disk full, unwritable file, closed).
class StoreError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// The journal's interfaces, one per role, so that code asks for what it uses:
// - RawJournal: raw transactions (the client's signed bytes), their states and histories;
// - ManagedJournal: transactions the gateway builds and signs for a managed sender;
// - NonceLedger: the next nonce of each managed sender;
// - StreamJournal: event streams' checkpoints, and the state changes transaction streams read;
// - HandoffJournal: transactions a standby accepted, handed to the gateway that dispatches;
// - LeaseJournal: the leases gateways sharing a journal split its work by;
// - JournalView: those together, what an operation run by a JournalService is given;
// - Retention: deleting finished transactions of both kinds, which only the service does, on
//   its own schedule;
// - TransactionControl: the database transactions the service groups operations in; operations
//   never see it;
// - Journal: all of them, what a backend implements and what a JournalService holds.
// None is thread-safe: a JournalService calls them from its own thread. Every method throws
// StoreError when the database fails.

/// Raw transactions: inserted as the client sent them, or as a managed transaction's signed
/// attempts, and moved from state to state with their histories.
class RawJournal {
public:
    virtual ~RawJournal() = default;

    /// Inserts a new transaction with its first event. When one with the same hash exists
    /// nothing changes and the existing record is returned with `false`.
    virtual std::pair<TxRecord, bool> insert(const TxRecord& record) = 0;
    /// Moves a transaction to a state and records the event. False when the hash is unknown. A
    /// final state drops its network form: nothing sends it again.
    virtual bool update(const TxUpdate& update) = 0;
    /// Keeps a blob transaction's network form (its signed bytes with the sidecar, up to ~1 MB),
    /// the bytes to broadcast, apart from its record so that loading records does not load
    /// blobs; replaces the one kept before. The transaction must be in the journal.
    virtual void put_network_form(std::string_view hash,
                                  const std::vector<std::uint8_t>& network) = 0;
    /// The network form kept for a transaction; nullopt when none is (not a blob transaction,
    /// or final).
    virtual std::optional<std::vector<std::uint8_t>> network_form(std::string_view hash) = 0;
    virtual std::optional<TxRecord> find(std::string_view hash) = 0;
    /// Every transaction not in a final state, ordered by chain, sender and nonce.
    virtual std::vector<TxRecord> unfinished() = 0;
    /// Mined transactions in a final state whose block is not final yet (a reorg may still
    /// reopen them), ordered by chain, sender and nonce.
    virtual std::vector<TxRecord> unfinalized() = 0;
    /// Their blocks are final now: nothing can change them any more.
    virtual void mark_finalized(const std::vector<std::string>& hashes) = 0;
    /// The newest transactions first, optionally in one state.
    virtual std::vector<TxRecord> list(std::optional<TxState> state, std::size_t limit) = 0;
    /// A transaction's states, oldest first.
    virtual std::vector<TxEvent> history(std::string_view hash) = 0;
    /// The unfinished raw transactions (not managed attempts) of `chain`, of its `sender`, and of
    /// those counted against `source`.
    virtual QueuedCounts queued_counts(std::string_view chain, std::string_view sender,
                                       std::string_view source) = 0;
};

/// Managed transactions: what a client asked the gateway to build, sign and send, with their
/// states, histories and signed attempts (raw transactions whose `parent` is their id).
class ManagedJournal {
public:
    virtual ~ManagedJournal() = default;

    /// Inserts a managed transaction with its first event. When one with the same id, or the same
    /// (chain, sender, client, idempotency key), exists nothing changes and that one is returned
    /// with `false`.
    virtual std::pair<ManagedRecord, bool> insert_managed(const ManagedRecord& record) = 0;
    /// Moves a managed transaction to a state and records the event. False when the id is unknown.
    virtual bool update_managed(const ManagedUpdate& update) = 0;
    virtual std::optional<ManagedRecord> find_managed(std::string_view id) = 0;
    /// Every managed transaction not in a final state, ordered by chain, sender and creation.
    virtual std::vector<ManagedRecord> unfinished_managed() = 0;
    virtual std::vector<TxEvent> managed_history(std::string_view id) = 0;
    /// Managed transactions, the last changed first, at most `limit`: in `state` when it is set,
    /// with `idempotency_key` when it is set (every chain's, sender's and client's), for the admin
    /// API (the operator page asks every few seconds: each way is answered from an index).
    virtual std::vector<ManagedRecord> list_managed(std::optional<TxState> state,
                                                    std::optional<std::string_view> idempotency_key,
                                                    std::size_t limit) = 0;
    /// Managed transactions in a final state whose attempt of their nonce is unfinished again (a
    /// reorg reopened it), oldest first.
    virtual std::vector<ManagedRef> reopened_managed() = 0;
    /// The signed attempts of a managed transaction, oldest first.
    virtual std::vector<TxRecord> attempts(std::string_view id) = 0;
    /// The managed transactions of (chain, sender) that move wei and were let spend at or after
    /// `since_ms`, in every state: the caller decides which count.
    virtual std::vector<Spending> spending(std::string_view chain, std::string_view sender,
                                           std::int64_t since_ms) = 0;
    /// (chain, sender)'s unfinished managed transactions; those in PENDING_APPROVAL whose reason
    /// starts with `awaiting_service` (waiting for the policy service, not a person) count as
    /// unfinished.
    virtual ManagedCounts managed_counts(std::string_view chain, std::string_view sender,
                                         std::string_view awaiting_service) = 0;
};

/// The nonces handed out to managed senders, per (chain, sender). They outlive every transaction:
/// they are what the next managed nonce counts from.
class NonceLedger {
public:
    virtual ~NonceLedger() = default;

    /// Takes the next nonce of (chain, sender): the larger of `floor` and one past the last taken,
    /// and remembers it; inside the caller's operation, so a nonce is taken together with the
    /// state change that uses it.
    virtual std::uint64_t take_nonce(std::string_view chain, std::string_view sender,
                                     std::uint64_t floor) = 0;
    /// Sets the next nonce to hand out (reconciliation with the chain, in both directions).
    virtual void set_next_nonce(std::string_view chain, std::string_view sender,
                                std::uint64_t next) = 0;
    /// The next nonce to hand out, if one was ever taken.
    virtual std::optional<std::uint64_t> next_nonce(std::string_view chain,
                                                    std::string_view sender) = 0;
};

/// An event stream's place (catalog row I1): the first block whose events it has not yet had
/// acknowledged, and whether an operator paused it.
struct StreamRecord {
    std::string id;
    std::string chain;
    std::optional<std::uint64_t> next_block;  ///< unset: not started (from its from_block)
    bool paused = false;
    std::int64_t updated_ms = 0;
    /// What else the stream needs to go on, as JSON text (empty: nothing): a log stream's
    /// recently delivered blocks (to undo them after a reorg), a transaction stream's cursors.
    std::string cursor;
    /// A stream created through the admin API: its definition, as JSON text. Unset: the config's.
    std::optional<std::string> definition;
};

/// A change of state of one of the gateway's own transactions, as a transaction stream reads it.
struct StateChange {
    bool managed = false;  ///< a managed transaction's change; else a raw transaction's
    std::int64_t seq = 0;  ///< the change's number, growing in its journal (raw or managed)
    std::string tx;        ///< the managed transaction's id, or the raw transaction's hash
    std::string sender;
    std::optional<std::uint64_t> nonce;
    TxState state = TxState::queued;
    std::string reason;
    std::int64_t at_ms = 0;
    std::optional<std::string> idempotency_key;
};

/// What StreamJournal::changes read: the changes, and the numbers of each kind it has read up to
/// (past changes of other chains and of attempts, which it skipped): where to read on from. (A
/// journal whose numbers can become visible out of order, unlike SQLite's, must not move past one
/// not yet visible.)
struct ChangesPage {
    std::vector<StateChange> changes;
    std::int64_t raw_upto = 0;
    std::int64_t managed_upto = 0;
};

/// Event streams' checkpoints. Each stream has one writer: its follower (and the admin actions
/// it runs).
class StreamJournal {
public:
    virtual ~StreamJournal() = default;
    virtual std::optional<StreamRecord> find_stream(std::string_view id) = 0;
    virtual std::vector<StreamRecord> streams() = 0;
    /// Inserts or replaces the stream's record.
    virtual void put_stream(const StreamRecord& record) = 0;
    /// False when there was none.
    virtual bool delete_stream(std::string_view id) = 0;
    /// The changes of `chain`'s transactions after the given numbers, oldest first, at most
    /// `limit` of each kind: raw transactions the clients sent (not a managed transaction's
    /// attempts), and managed transactions.
    virtual ChangesPage changes(std::string_view chain, std::int64_t after_raw,
                                std::int64_t after_managed, std::size_t limit) = 0;
    /// The numbers of the last changes of each kind so far (0: none): where a transaction stream
    /// that starts from now starts.
    virtual std::pair<std::int64_t, std::int64_t> last_changes() = 0;
};

/// Transactions handed from the gateways that accept them to the one that dispatches them, on a
/// journal several gateways share (one table, read and emptied by the dispatcher).
class HandoffJournal {
public:
    virtual ~HandoffJournal() = default;
    /// Hands a journaled transaction to the dispatcher, in the operation that journals it.
    virtual void hand_off(const Handoff& handoff) = 0;
    /// Takes back a handoff not taken yet (the standby's caller was told its send failed): true
    /// when it was there, false when the dispatcher took it already (and carries it on).
    virtual bool withdraw_handoff(std::string_view chain, bool managed, std::string_view key) = 0;
    /// Takes (reads and deletes) at most `limit` of `chain`'s handoffs of one kind, oldest first.
    virtual std::vector<Handoff> take_handoffs(std::string_view chain, bool managed,
                                               std::size_t limit) = 0;
};

/// An operation needed a lease this gateway does not hold (LeaseJournal::require_lease): another
/// gateway may be the one to write it. Not a failure of the journal.
class LeaseLost : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

/// Leases on a journal several gateways share, so that they split the work between them: a
/// (chain, sender) whose nonces one gateway drives, an event stream one gateway delivers. A lease
/// is this gateway's for as long as its session with the database lives (PostgreSQL's
/// session-level advisory locks): a gateway that dies, or whose session the server ends, loses
/// them all at once, and each write that needs one checks it in its own operation, on that same
/// session (require_lease), so that a gateway that lost a lease cannot write under it. A journal
/// only one gateway opens (SQLite's) holds every lease.
class LeaseJournal {
public:
    virtual ~LeaseJournal() = default;
    /// Takes the lease `name` without waiting: true when this gateway holds it (now, or already).
    /// Held until the session ends, even when the operation that took it is rolled back.
    virtual bool take_lease(std::string_view name) = 0;
    /// Throws LeaseLost unless this gateway holds the lease `name` in this session.
    virtual void require_lease(std::string_view name) const = 0;
    /// Leases this gateway holds in this session.
    virtual std::size_t leases_held() const = 0;
    /// Gateways that have the journal open now, this one included (each is known to the others
    /// for as long as its session lives).
    virtual std::size_t replicas() = 0;
};

/// What an operation run by a JournalService reads and writes: the data, without the control of
/// database transactions (the service commits operations together) or retention.
class JournalView : public RawJournal,
                    public ManagedJournal,
                    public NonceLedger,
                    public StreamJournal,
                    public HandoffJournal,
                    public LeaseJournal {};

/// Deleting what the journal need not keep any more. The JournalService does it on its own
/// schedule (store.retention_ms), in its own database transaction.
class Retention {
public:
    virtual ~Retention() = default;

    /// Deletes finished transactions whose last change is older than `before_ms` (Unix ms), with
    /// their histories: at most `limit` raw transactions, and at most `limit` managed ones, each
    /// with all its attempts, once every attempt is final too. Attempts of a managed transaction
    /// go only with it. The nonces are kept: they are what the next managed nonce counts from.
    virtual Pruned prune(std::int64_t before_ms, std::size_t limit) = 0;
};

/// Database transactions, for the JournalService only. Group commit: the service runs several
/// callers' operations in one database transaction, each inside a savepoint so one failure does
/// not undo the others, and makes them durable with one commit.
class TransactionControl {
public:
    virtual ~TransactionControl() = default;

    virtual void begin() = 0;
    virtual void commit() = 0;
    virtual void rollback() noexcept = 0;
    virtual void savepoint() = 0;
    virtual void release_savepoint() = 0;
    virtual void rollback_to_savepoint() noexcept = 0;
    /// Whether a database transaction is open. False after the database rolled one back by
    /// itself (SQLite does on SQLITE_FULL, SQLITE_IOERR and SQLITE_NOMEM), which drops its
    /// savepoints too: a statement run then commits on its own.
    virtual bool in_transaction() const = 0;
};

/// A whole journal: what each database backend implements, and what a JournalService holds.
class Journal : public JournalView, public Retention, public TransactionControl {
public:
    /// A journal several gateways share (PostgreSQL's) is owned by one at a time, and each
    /// opening that made a gateway its owner has a number, one more than the one before: a
    /// gateway that opens it again and finds a number more than one past its own last one knows
    /// another gateway owned it in between (and may have changed what it holds in memory). None
    /// for a journal only one gateway ever opens (SQLite's file).
    virtual std::optional<std::uint64_t> owner_epoch() const { return std::nullopt; }
    /// Whether the opening before this one was this process's: one whose answer it never heard
    /// (its connection lost right then), which moved the number without anyone else owning it.
    virtual bool last_owner_was_this_process() const { return false; }
    /// Whether this gateway owns the journal: it dispatches what the journal holds (loads it,
    /// broadcasts, signs, follows). A journal only one gateway opens is always owned; a shared
    /// one by one gateway at a time, and the others (standbys) journal what they accept and hand
    /// it over (HandoffJournal).
    virtual bool owns() const { return true; }
    /// Tries to become the owner, without waiting; true when this gateway owns it (then
    /// owner_epoch() is this opening's number). Outside any database transaction.
    virtual bool try_own() { return true; }
};

}  // namespace gateway::store
