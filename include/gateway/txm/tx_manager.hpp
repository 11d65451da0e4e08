#pragma once
// The write path of one chain for signed (raw) transactions: decode and check, journal first,
// broadcast in nonce order per sender, follow each transaction to its receipt and confirmations,
// keep queued transactions through node outages and restarts.

#include "gateway/config/config.hpp"
#include "gateway/eth/transaction.hpp"
#include "gateway/jsonrpc/jsonrpc.hpp"
#include "gateway/store/journal_service.hpp"
#include "gateway/util/clock.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/json/array.hpp>
#include <boost/json/value.hpp>

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>

namespace gateway::metrics {
class Metrics;
}
namespace gateway::upstream {
class Forwarder;
}

namespace gateway::txm {

/// The answer to one eth_sendRawTransaction.
struct SubmitResult {
    std::optional<jsonrpc::Reply> reply;  ///< the answer: the hash, or an error
    bool queued = false;                  ///< journaled, not yet accepted by a node
    bool store_failed = false;            ///< refused because the journal cannot be written
    bool journaled = false;               ///< it is in the journal (new or known)
    std::string upstream;                 ///< the node(s) that took it
};

/// A journal record as gateway_getTransaction and /admin/transactions show it; with its history
/// when given.
boost::json::object record_json(const store::TxRecord& record,
                                const std::vector<store::TxEvent>* history);
/// A history as those records show it: [{state, reason, at}], oldest first.
boost::json::array history_json(const std::vector<store::TxEvent>& history);

struct HeldOrigin;  // who sent a held transaction (src/txm/tx_manager_internal.hpp)

class TxManager {
public:
    /// The pool, journal, metrics and clock must outlive the manager. `clock` measures how long
    /// nodes have refused a queued transaction (tx.expire_after_ms).
    TxManager(const config::ChainConfig& chain, upstream::Forwarder& pool,
              store::JournalService& journal, metrics::Metrics* metrics,
              boost::asio::any_io_executor executor,
              const util::Clock& clock = util::SteadyClock::instance());
    ~TxManager();

    /// Starts the dispatcher: loads the chain's unfinished transactions from the journal, then
    /// broadcasts and follows them.
    void start();
    void stop();

    /// eth_sendRawTransaction. `client`: who sent it (the authenticated client's id; "" without
    /// auth), recorded with it. `source`: whom tx.max_queued_per_client counts it against (the
    /// client's id, or without auth the peer's address); "": `client`. Never throws.
    boost::asio::awaitable<SubmitResult> submit(const boost::json::value& params,
                                                std::string client = {}, std::string source = {});

    /// A managed transaction's signed attempt: journaled with `parent` (the managed transaction's
    /// id) before it is sent, then sent and followed like any raw transaction. The answer is the
    /// hash, or the nodes' refusal (the attempt is then FAILED). Attempts do not count against
    /// tx.max_queued_per_sender: the managed layer holds its own limit.
    boost::asio::awaitable<SubmitResult> submit_attempt(const eth::Bytes& raw, std::string parent,
                                                        std::string client = {});

    /// The managed transaction `parent` is settled by its attempt `used_by` (mined): its other
    /// attempts still held end REPLACED, pointing to it. Never throws.
    boost::asio::awaitable<void> replace_attempts(std::string parent, std::string used_by);

    /// A copy of a transaction the gateway holds (not final); nullopt once it is final or when
    /// unknown.
    std::optional<store::TxRecord> held_record(std::string_view hash) const;

    /// gateway_getTransaction: the journal's record and history; null when unknown, or when
    /// `owner` is set and another client sent it.
    boost::asio::awaitable<jsonrpc::Reply> describe(
        const boost::json::value& params, std::optional<std::string_view> owner = std::nullopt);

    /// The next nonce of `sender` counting the transactions the gateway holds and no node has
    /// mined yet; nullopt when it holds none.
    std::optional<std::uint64_t> pending_nonce(std::string_view sender) const;
    /// A transaction the gateway holds and no node has mined yet, in eth_getTransactionByHash's
    /// shape (block fields null); nullopt when it holds no such transaction, or when `owner` is
    /// set and another client sent it.
    std::optional<std::string> pending_transaction_json(
        std::string_view hash, std::optional<std::string_view> owner = std::nullopt) const;

    /// Unfinished transactions held now (all states but the final ones).
    std::size_t held() const;
    /// When the oldest of them was accepted (Unix ms); 0 when none.
    std::int64_t oldest_unfinished_ms() const;
    /// Mined transactions held until their block is final (a reorg before then reopens them).
    std::size_t unfinalized() const;

    /// The newest block taken as final (the chain watcher's: the nodes' "finalized" tag, or
    /// head - reorgs.finality_depth). Without it, head - reorgs.finality_depth. Before start().
    void set_finality(std::function<std::optional<std::uint64_t>()> finalized);
    /// A reorg was seen: the mined transactions whose blocks are not final are looked at again.
    void reorged();
    /// Called on the manager's strand when a reorg reopens a mined attempt of a managed
    /// transaction: `parent` is that managed transaction's id, `sender` its sender. Before
    /// start().
    void on_reopened(std::function<void(std::string parent, std::string sender)> callback);
    /// Transactions loaded from the journal at start (0 before).
    bool loaded() const { return loaded_; }

    /// Dispatcher rounds run so far (tests wait on it).
    std::uint64_t rounds() const { return rounds_; }

    /// Wakes the dispatcher now (a node came back, a transaction was queued).
    void wake();
    /// stop() was called and the dispatcher has ended.
    bool stopped() const;

private:
    struct Entry;
    /// The one HeldOrigin of these three, shared by every transaction held from it (with mu_); null
    /// for none.
    std::shared_ptr<const HeldOrigin> origin_of(std::optional<std::string> parent,
                                                std::string client, std::string source);
    /// What memory keeps of a journal record (with mu_: its origin is shared), and the record
    /// again. False (nothing kept) when the record's hash or sender is not one.
    bool hold(Entry& e, store::TxRecord&& r);
    store::TxRecord record_of(const Entry& e) const;
    enum class Broadcast { accepted, refused, nonce_used, not_now };
    struct BroadcastResult {
        Broadcast verdict = Broadcast::not_now;
        std::optional<jsonrpc::Reply> node_reply;  // the refusal as the node wrote it
        std::string detail;
        std::string upstream;
        // not_now: the nodes that answered and refused it for now (a fee below the base fee, a
        // nonce gap), as they wrote it; empty when no node answered at all.
        std::string refusal;
    };

    boost::asio::awaitable<void> run();
    boost::asio::awaitable<bool> load();
    /// Takes the transactions standbys accepted and handed over (a shared journal, this gateway
    /// dispatching) into memory: true when it took any.
    boost::asio::awaitable<bool> take_handoffs();
    /// eth_sendRawTransaction on a standby of a shared journal: checked against the caps as the
    /// journal counts them, journaled and handed to the gateway that dispatches; answered with
    /// its hash, queued.
    boost::asio::awaitable<SubmitResult> admit_standby(const eth::Transaction& tx, eth::Bytes raw,
                                                       eth::Bytes network, std::string client,
                                                       std::string source);
    /// Journals a decoded transaction and sends it (or queues it), as submit() and
    /// submit_attempt() do. `network`: a blob transaction's network form, journaled with it.
    /// `tx`: `e`'s decoded form, which fills its record; read before the first suspension.
    boost::asio::awaitable<SubmitResult> admit(std::shared_ptr<Entry> e, const eth::Transaction& tx,
                                               eth::Bytes raw, eth::Bytes network,
                                               std::optional<std::string> parent,
                                               std::string client, std::string source);
    boost::asio::awaitable<void> dispatch_round();
    /// Broadcasts a transaction: its record's bytes, or a blob transaction's network form,
    /// `network` when the caller has it, else read from the journal.
    boost::asio::awaitable<BroadcastResult> send(const Entry& e,
                                                 const eth::Bytes* network = nullptr);
    /// Follows a sent transaction to its receipt. `prefetched`: its receipt (or null) fetched
    /// with others in one batch this round; asked for alone when absent.
    /// `due_anyway`: looked at whatever receipt_due says (a receipt a nonce proof found).
    boost::asio::awaitable<void> track(std::shared_ptr<Entry> e, std::uint64_t head,
                                       const boost::json::value* prefetched = nullptr,
                                       bool due_anyway = false);
    /// Reads the blocks since the last round's head (on the strand) for which transactions they
    /// hold, and marks those held here: a sent transaction no block held is not looked for (one
    /// call a block, not one a held transaction). Nothing is known (every sent one is looked for,
    /// as the head moved) on the first round, after a reorg reported or seen (the last block
    /// scanned changed, or a block is not the child of the one before), when the head went back
    /// or jumped more than kScanBlocks, or when a block could not be read whole.
    boost::asio::awaitable<void> scan_new_blocks(std::uint64_t head);
    /// Whether a sent transaction's receipt is due for a look: in a new block (or, without a
    /// scan, the head moved), a rebroadcast due, or a while passed.
    bool receipt_due(const Entry& e, std::uint64_t head) const;
    /// The receipts due this round, fetched in batches: hash -> receipt (null when none). Those
    /// a batch did not answer are missing (track asks for them alone).
    boost::asio::awaitable<std::unordered_map<std::string, boost::json::value>> prefetch_receipts(
        const std::vector<std::vector<std::shared_ptr<Entry>>>& senders, std::uint64_t head);
    /// Journals a state change and applies it in memory. False when the journal failed.
    boost::asio::awaitable<bool> transition(
        std::shared_ptr<Entry> e, store::TxState state, std::string reason,
        bool count_broadcast = false, std::optional<std::string> block_hash = std::nullopt,
        std::optional<std::uint64_t> block_number = std::nullopt);
    /// Settles a transaction whose nonce a node says is used: mined (ours) or taken by another.
    boost::asio::awaitable<void> settle_used_nonce(std::shared_ptr<Entry> e);
    boost::asio::awaitable<std::optional<boost::json::value>> receipt(const std::string& hash);
    /// Holds an unfinished transaction (with mu_): indexed by its hash and by its sender's nonce,
    /// and counted against its client's cap (tx.max_queued_per_client).
    void index(const std::shared_ptr<Entry>& e);
    /// Holds a mined transaction until its block is final (with mu_).
    void index_mined(const std::shared_ptr<Entry>& e);
    /// A final transaction leaves memory (with mu_): the one held under `hash`, or only if that is
    /// `only`.
    void forget(const eth::Hash& hash, const Entry* only = nullptr);
    /// A client's transaction a node accepted: its BROADCASTING record, written after the
    /// client's answer.
    boost::asio::awaitable<void> record_taken(std::shared_ptr<Entry> e, std::string detail);
    bool earlier_queued(const Entry& e) const;
    /// Keeps `e` in or out of its sender's `waiting` as its state and `taken` say, after either
    /// changed (with mu_; `e` indexed).
    void note_waiting(Entry& e);
    /// The mined transactions whose blocks became final (and are still canonical) leave memory;
    /// after a reorg, those whose block a node at the head no longer has are reopened.
    boost::asio::awaitable<void> watch_unfinalized(std::uint64_t head);
    /// Back to BROADCASTING (no receipt) or CONFIRMING (mined elsewhere), held again. False when
    /// the journal failed.
    boost::asio::awaitable<bool> reopen(std::shared_ptr<Entry> e,
                                        const boost::json::value& receipt);
    std::optional<std::uint64_t> final_block(std::uint64_t head) const;
    /// Nodes answered and refused a queued transaction for now (`why`); true when they have done
    /// so for tx.expire_after_ms, counting only time during which they kept answering. With mu_.
    bool note_refusal(Entry& e, const std::string& why, util::Clock::time_point now);
    /// Ends a transaction the nodes refused for tx.expire_after_ms: FAILED, "expired".
    boost::asio::awaitable<void> expire(std::shared_ptr<Entry> e);
    store::TxState state_of(const Entry& e) const;

    config::ChainConfig config_;
    upstream::Forwarder& pool_;
    store::JournalService& journal_;
    metrics::Metrics* metrics_;
    boost::asio::strand<boost::asio::any_io_executor> strand_;
    boost::asio::steady_timer timer_;
    std::atomic<bool> stopped_{false};
    std::atomic<bool> loaded_{false};
    std::atomic<bool> running_{false};
    // record_taken calls not finished
    std::shared_ptr<std::atomic<int>> recording_ = std::make_shared<std::atomic<int>>(0);
    std::atomic<bool> wake_pending_{false};
    const util::Clock& clock_;
    std::atomic<std::uint64_t> rounds_{0};

    // Hashes and addresses as bytes, not text: a held transaction's size counts a hundred
    // thousand times. Bucketed with a seed of the process's own: a client choosing what it signs
    // cannot aim many transactions at one bucket.
    struct HashBucket {
        std::size_t operator()(const eth::Hash& h) const noexcept;
    };
    mutable std::mutex mu_;
    std::unordered_map<eth::Hash, std::shared_ptr<Entry>, HashBucket> by_hash_;  // unfinished ones
    // Per sender, its transactions in nonce order (and by hash within a nonce), one set node each,
    // each pointing to the entry by_hash_ holds: walking a sender's earlier nonces costs no hash
    // lookup (every intake does, and a sender may hold thousands).
    struct SenderSlot {
        std::uint64_t nonce = 0;
        Entry* entry = nullptr;  // alive while in the set: by_hash_ holds it; null: a search key
    };
    struct ByNonceThenHash {
        bool operator()(const SenderSlot& a, const SenderSlot& b) const;
    };
    struct SenderIndex {
        std::set<SenderSlot, ByNonceThenHash> slots;
        // The nonces of its transactions that are QUEUED and not taken by a node: whether an
        // earlier nonce still waits (earlier_queued) without walking every earlier one.
        std::multiset<std::uint64_t> waiting;
    };
    std::map<eth::Address, SenderIndex> by_sender_;
    // Mined and in a final state, but their block not final yet.
    std::unordered_map<eth::Hash, std::shared_ptr<Entry>, HashBucket> mined_;
    // Whether scan_new_blocks read this round's new blocks (with mu_: it marks the entries they
    // hold, Entry::in_block); the head it read up to, that block's hash and the reorg count then
    // (on the strand).
    bool scan_known_ = false;
    std::uint64_t scanned_head_ = 0;
    std::string scanned_hash_;
    std::uint64_t scanned_reorgs_ = 0;

    std::function<std::optional<std::uint64_t>()> finality_;
    std::function<void(std::string parent, std::string sender)> on_reopened_;
    // Reorgs reported, and how many of them the mined transactions were looked at for (on the
    // strand). One to begin with: what happened while the gateway was down.
    std::atomic<std::uint64_t> reorgs_{1};
    std::uint64_t reorgs_checked_ = 0;
    // Unfinished raw transactions (not managed attempts) by source: tx.max_queued_per_client.
    std::unordered_map<std::string, std::size_t> by_source_;
    // The origins in use, by their three strings (origin_of); swept of those no transaction holds
    // any more as the map doubles.
    std::unordered_map<std::string, std::weak_ptr<const HeldOrigin>> origins_;
    std::size_t origins_swept_at_ = 0;
};

}  // namespace gateway::txm
