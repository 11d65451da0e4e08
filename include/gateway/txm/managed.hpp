#pragma once
// Managed senders: the transactions the gateway builds, signs and sends itself
// (eth_sendTransaction, gateway_sendTransaction) for the accounts configured per chain.
//
// One owner per (chain, sender): a coroutine on the sender's own strand takes each transaction
// through PREPARING (gas and fees), SIGNING (the nonce taken in the same journal operation that
// records it; the signer asked, retried with backoff on the same nonce while it is unavailable)
// and BROADCASTING (each signed attempt journaled, then sent by the raw write path, TxManager).
// A transaction not mined after tx.fee.bump_after_blocks is signed again with the same nonce and
// higher fees; a receipt for any attempt settles it. A nonce another party used is replaced by the
// next; a nonce whose transaction died is released, or filled with a zero-value self-send.
//
// Before any of that, the sender's policy (chains[].policy, or its own): a transaction that breaks
// a rule is held in PENDING_APPROVAL, without a nonce, so the sender's later ones go on, until an
// operator approves it (on to QUEUED), rejects it, or approval_ttl_ms passes (CANCELLED).

#include "gateway/config/config.hpp"
#include "gateway/jsonrpc/jsonrpc.hpp"
#include "gateway/store/journal_service.hpp"
#include "gateway/txm/fees.hpp"
#include "gateway/txm/managed_request.hpp"
#include "gateway/util/clock.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace gateway::metrics {
class Metrics;
}
namespace gateway::upstream {
class Forwarder;
}
namespace gateway::custody {
class Signer;
}

namespace gateway::txm {

class TxManager;

/// The result of an operator's action (retry, cancel, resync), for the admin API to answer.
struct ActionResult {
    enum class Outcome {
        done,         ///< done now
        accepted,     ///< started; it goes on (a cancel: its self-send is on its way)
        not_found,    ///< no such transaction or sender here
        conflict,     ///< not in a state the action applies to (the body says why)
        unavailable,  ///< cannot be done now (the journal, the nodes): try again
    };
    Outcome outcome = Outcome::done;
    boost::json::object body;  ///< what was done, or {"error": why}
};

/// A managed transaction as gateway_getTransaction and /admin/transactions show it; with its
/// history and its signed attempts when given.
boost::json::object managed_json(const store::ManagedRecord& record,
                                 const std::vector<store::TxEvent>* history = nullptr,
                                 const std::vector<store::TxRecord>* attempts = nullptr);

/// How a reply to a managed send ended, for the response headers and metrics.
struct ManagedReply {
    jsonrpc::Reply reply;
    bool queued = false;        ///< accepted, no attempt sent to a node yet
    bool store_failed = false;  ///< refused because the journal cannot be written
};

struct SenderPolicy;

class ManagedSenders {
public:
    /// `signers` maps each of the chain's managed addresses (0x-prefixed, lowercase) to its
    /// signer; `sign_timeouts` to how long one signing request may take. Everything referenced
    /// must outlive this object, `clock` too: it times the gateway's own waits (retry backoff,
    /// legacy fees); deadlines handed to nodes and signers stay on the real steady clock.
    ManagedSenders(const config::ChainConfig& chain, upstream::Forwarder& pool,
                   store::JournalService& journal, TxManager& txm,
                   std::map<std::string, custody::Signer*> signers,
                   std::map<std::string, std::chrono::milliseconds> sign_timeouts,
                   metrics::Metrics* metrics, boost::asio::any_io_executor executor,
                   const util::Clock& clock = util::SteadyClock::instance());
    ~ManagedSenders();

    /// Loads the chain's unfinished managed transactions from the journal and starts one
    /// coroutine per sender.
    void start();
    void stop();

    /// eth_sendTransaction (`wait`: answers the first attempt's hash once it is signed, or an
    /// error whose data has the id and state at `deadline`) and gateway_sendTransaction (answers
    /// {id, state, hash} at once). `idempotency_key` is the Idempotency-Key header ("" for none),
    /// scoped to `client` (the authenticated client's id, "" without auth), which is recorded
    /// with the transaction. The caller has checked that the client may use the sender.
    /// Never throws.
    boost::asio::awaitable<ManagedReply> send(const boost::json::value& params,
                                              std::string idempotency_key, bool wait,
                                              std::chrono::steady_clock::time_point deadline,
                                              std::string client = {});

    /// gateway_getTransaction for a gateway id ("gtx-..."): the record, its attempts and history;
    /// null when unknown, or when `owner` is set and another client sent it.
    boost::asio::awaitable<jsonrpc::Reply> describe(
        std::string_view id, std::optional<std::string_view> owner = std::nullopt);

    /// When `hash` is an attempt of a managed transaction another attempt of which was mined:
    /// that attempt's hash. For eth_getTransactionReceipt on a hash that was replaced.
    boost::asio::awaitable<std::optional<std::string>> mined_instead(std::string hash);

    /// Whether `address` (any case) is a managed sender of this chain.
    bool manages(std::string_view address) const;

    // The admin API.
    boost::asio::awaitable<ActionResult> retry(std::string id);
    boost::asio::awaitable<ActionResult> cancel(std::string id);
    boost::asio::awaitable<ActionResult> resync(std::string address);
    /// An operator's decision on a transaction held by the policy: approved, it goes on to its
    /// nonce and signing (and counts in its sender's daily sum from now); rejected, it is
    /// CANCELLED. `by` (who decided) and `reason` go into its history.
    boost::asio::awaitable<ActionResult> decide(std::string id, bool approve, std::string by,
                                                std::string reason);
    /// The transactions held for approval now, oldest first.
    boost::json::array approvals() const;

    /// Managed transactions not final, held now.
    std::size_t held() const;
    /// Whether the chain's unfinished managed transactions were loaded from the journal (sends
    /// are refused until then).
    bool loaded() const { return loaded_; }

    /// The policies `chain` gives the senders (a configuration reload), made but not in use:
    /// throws what making one throws (a policy service that cannot be set up), changing nothing.
    struct StagedPolicies;
    std::shared_ptr<StagedPolicies> stage_policies(const config::ChainConfig& chain) const;
    /// Puts them in use; cannot fail (the senders themselves stay as they are). A transaction
    /// judged already keeps its verdict; a hold's time to live is the new one from the next
    /// round. Thread-safe.
    void reconfigure_policies(std::shared_ptr<StagedPolicies> staged);

private:
    struct Tx;
    struct Sender;
    std::shared_ptr<const SenderPolicy> policy_of(
        const config::AccountConfig& account,
        const std::optional<config::PolicyConfig>& chain_policy) const;
    enum class Step { done, wait };

    // Coroutines with their arguments in their own frames (GCC 12 mishandles lambda coroutines
    // with captures).
    boost::asio::awaitable<void> start_senders();
    /// Why an operator's action is refused before the managed transactions are loaded: a standby
    /// of a shared journal (another gateway dispatches them), or still loading.
    std::string not_loaded() const;
    /// Whether `rec` may be recorded, judged by `s`'s policy inside the journal operation that
    /// records it: its state and reason set (QUEUED, or PENDING_APPROVAL held by the rules or
    /// waiting for the policy service); false, with the rule's reason, when the policy would
    /// hold it but `held_full` (its sender's held ones are at the cap).
    bool admit_policy(store::ManagedJournal& j, const Sender& s, const Request& req,
                      store::ManagedRecord& rec, bool held_full) const;
    /// send() on a standby of a shared journal: the caps as the journal counts them, the policy,
    /// journaled and handed to the gateway that dispatches, then followed in the journal for
    /// eth_sendTransaction's hash.
    boost::asio::awaitable<ManagedReply> send_standby(
        Sender* s, store::ManagedRecord rec, Request req, bool wait_for_hash,
        std::chrono::steady_clock::time_point deadline);
    /// Takes the transactions standbys handed over into memory (this gateway dispatching a
    /// shared journal), every kHandoffPoll, until stopped.
    boost::asio::awaitable<void> follow_handoffs();
    /// A managed transaction as the journal has it, with what carrying it on needs.
    struct Journaled;
    /// Read inside a journal operation.
    static Journaled read_journaled(store::ManagedJournal& j, store::ManagedRecord r);
    /// Holds it in memory to carry on (at load, or handed over); null when it cannot (its sender
    /// is no longer configured, its request does not parse), logged. With mu_.
    std::shared_ptr<Tx> carry_on(Journaled&& journaled);
    /// An operator action's transaction, as the journal has it: this chain's record of `id`, or
    /// why not (the journal cannot be read; no such transaction here).
    boost::asio::awaitable<std::variant<store::ManagedRecord, ActionResult>> journaled(
        std::string id);
    boost::asio::awaitable<ActionResult> retry_owned(Sender* s, store::ManagedRecord rec);
    boost::asio::awaitable<ActionResult> cancel_owned(Sender* s, std::shared_ptr<Tx> tx);
    boost::asio::awaitable<ActionResult> resync_owned(Sender* s);
    boost::asio::awaitable<ActionResult> decide_owned(Sender* s, std::shared_ptr<Tx> tx,
                                                      bool approve, std::string by,
                                                      std::string reason);
    /// The policy's verdict on `req` of sender `s` (transaction `id`), inside the journal
    /// operation that records it, so that the daily sum and the record agree (called on the
    /// journal thread; throws what the journal throws). nullopt: let through.
    std::optional<std::string> judge(store::ManagedJournal& j, const Sender& s, const Request& req,
                                     std::string_view id, std::int64_t now) const;
    /// Holds `tx` from now (or from `since_ms`, after a restart) until approval_ttl passes.
    void hold(Tx& tx, const Sender& s, std::int64_t since_ms);
    /// The same for a hold by the signer (the transaction keeps its nonce).
    void hold_at_signer(Tx& tx, const Sender& s, std::int64_t since_ms);
    /// When a hold that began at `since_ms` (Unix ms) ends, on clock_.
    std::chrono::steady_clock::time_point hold_deadline(const Sender& s,
                                                        std::int64_t since_ms) const;
    /// A policy hold whose approval_ttl passed: CANCELLED, never signed.
    boost::asio::awaitable<void> expire_hold(Sender& s, std::shared_ptr<Tx> tx);
    /// Asks the policy service about `tx`, held until it answers, and acts on the answer.
    boost::asio::awaitable<void> ask_service(Sender& s, std::shared_ptr<Tx> tx);
    /// A reorg reopened a mined attempt of the finished transaction `id`: it is followed again.
    void reopen(std::string id, std::string_view sender);
    boost::asio::awaitable<void> reopen_owned(Sender* s, std::string id);
    /// Takes the signed attempts of its nonce from the journal's `attempts`: their hashes, and
    /// the fees, gas and cancel of the last (called with mu_ held, or before it is shared).
    void adopt_attempts(Tx& tx, const Sender& s, const std::vector<store::TxRecord>& attempts);
    boost::asio::awaitable<void> run(std::shared_ptr<Sender> s);
    /// Takes the sender for a round or an admin action (see Sender::busy).
    boost::asio::awaitable<void> acquire(Sender& s);
    boost::asio::awaitable<bool> load();
    boost::asio::awaitable<void> round(Sender& s);
    boost::asio::awaitable<Step> prepare(Sender& s, std::shared_ptr<Tx> tx);
    boost::asio::awaitable<Step> sign_and_send(Sender& s, std::shared_ptr<Tx> tx, Fees fees,
                                               bool cancel);
    boost::asio::awaitable<void> follow(Sender& s, std::shared_ptr<Tx> tx);
    boost::asio::awaitable<void> dead_attempts(Sender& s, std::shared_ptr<Tx> tx);
    boost::asio::awaitable<void> step_failed(Sender& s, std::shared_ptr<Tx> tx, std::string reason,
                                             std::optional<jsonrpc::Error> error);
    boost::asio::awaitable<void> finish(Sender& s, std::shared_ptr<Tx> tx, store::TxState state,
                                        std::string reason,
                                        std::optional<std::string> hash = std::nullopt,
                                        bool nonce_used = false);
    /// Journals a state change of `tx` and applies it; false when the journal failed.
    boost::asio::awaitable<bool> update(std::shared_ptr<Tx> tx, store::TxState state,
                                        std::string reason,
                                        std::optional<std::uint64_t> nonce = std::nullopt,
                                        std::optional<std::string> hash = std::nullopt);
    boost::asio::awaitable<std::optional<Fees>> estimate_fees(std::string& why);
    boost::asio::awaitable<std::optional<std::uint64_t>> nonce_count(const std::string& address,
                                                                     const char* block);
    void wait(Tx& tx, std::string reason);
    void notify(Tx& tx);
    void wake(Sender& s);
    Sender* sender_of(std::string_view address) const;
    std::shared_ptr<Tx> find(std::string_view id) const;

    config::ChainConfig config_;
    upstream::Forwarder& pool_;
    store::JournalService& journal_;
    TxManager& txm_;
    metrics::Metrics* metrics_;
    boost::asio::any_io_executor executor_;
    const util::Clock& clock_;
    std::atomic<bool> stopped_{false};
    std::atomic<bool> loaded_{false};
    // Until when the chain is taken to have no base fee (its eth_feeHistory said so, or no node
    // serves the method); then eth_feeHistory is asked again. Any other error answer counts for
    // that estimate only: one error must not switch a chain to legacy fees for good.
    std::optional<std::chrono::steady_clock::time_point> legacy_until_;
    std::mutex legacy_mu_;

    std::map<std::string, std::shared_ptr<Sender>> senders_;  // by address; fixed after ctor
    mutable std::mutex mu_;  // guards every Tx's fields shared with request coroutines
    std::map<std::string, std::shared_ptr<Tx>> by_id_;  // unfinished ones
};

}  // namespace gateway::txm
