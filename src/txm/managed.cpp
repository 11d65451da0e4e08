// Managed senders (see managed.hpp): the senders set up from the configuration, the start-up
// load of unfinished transactions from the journal, and the reopening of one a reorg dropped.
// The sender loop is in managed_loop.cpp, managed_sign.cpp and managed_follow.cpp; the clients'
// calls in managed_client.cpp; the admin API in managed_admin.cpp.

#include "gateway/txm/managed.hpp"
#include "managed_internal.hpp"

#include "gateway/eth/hex.hpp"
#include "gateway/eth/transaction.hpp"
#include "gateway/jsonrpc/methods.hpp"
#include "gateway/txm/tx_manager.hpp"
#include "gateway/util/text.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>

#include <algorithm>
#include <set>

namespace gateway::txm {

namespace {

// Caps combined: 0 is "no cap".
std::uint64_t min_cap(std::uint64_t a, std::uint64_t b) {
    if (!a) return b;
    if (!b) return a;
    return std::min(a, b);
}

// Fees of a signed attempt, read back from its bytes (after a restart).
std::optional<Fees> fees_of(const eth::Transaction& tx) {
    if (tx.gas_price) {
        auto gp = jsonrpc::parse_quantity(*tx.gas_price);
        if (!gp) return std::nullopt;
        return Fees{0, 0, *gp, true};
    }
    if (!tx.max_fee_per_gas || !tx.max_priority_fee_per_gas) return std::nullopt;
    auto mf = jsonrpc::parse_quantity(*tx.max_fee_per_gas);
    auto tip = jsonrpc::parse_quantity(*tx.max_priority_fee_per_gas);
    if (!mf || !tip) return std::nullopt;
    return Fees{*mf, *tip, 0, false};
}

}  // namespace

ManagedSenders::ManagedSenders(const config::ChainConfig& chain, upstream::Forwarder& pool,
                               store::JournalService& journal, TxManager& txm,
                               std::map<std::string, custody::Signer*> signers,
                               std::map<std::string, std::chrono::milliseconds> sign_timeouts,
                               metrics::Metrics* metrics, asio::any_io_executor executor,
                               const util::Clock& clock)
    : config_(chain),
      pool_(pool),
      journal_(journal),
      txm_(txm),
      metrics_(metrics),
      executor_(executor),
      clock_(clock) {
    // Called on the raw layer's strand: the work goes to the sender's.
    txm_.on_reopened([this](std::string parent, std::string sender) {
        if (!stopped_) reopen(std::move(parent), sender);
    });
    for (const auto& account : config_.accounts) {
        const std::string address = util::lower(account.address);
        auto it = signers.find(address);
        auto bytes = eth::from_hex(address);
        if (it == signers.end() || !it->second || !bytes || bytes->size() != 20)
            throw std::runtime_error(fmt::format("chain {}: managed sender {} has no signer",
                                                 config_.name, account.address));
        eth::Address a;
        std::copy(bytes->begin(), bytes->end(), a.begin());
        FeeCaps caps{config_.tx.fee.max_fee_per_gas_gwei * kGwei,
                     config_.tx.fee.max_priority_fee_gwei * kGwei};
        if (account.max_fee_per_gas_gwei)
            caps.max_fee_per_gas =
                min_cap(caps.max_fee_per_gas, *account.max_fee_per_gas_gwei * kGwei);
        if (account.max_priority_fee_gwei)
            caps.max_priority_fee_per_gas =
                min_cap(caps.max_priority_fee_per_gas, *account.max_priority_fee_gwei * kGwei);
        const auto timeout = sign_timeouts.count(address) ? sign_timeouts.at(address)
                                                          : std::chrono::milliseconds(10'000);
        senders_.emplace(address,
                         std::make_shared<Sender>(address, a, it->second, timeout, caps,
                                                  policy_of(account, config_.policy), executor_));
    }
}

// The sender's own rules replace the chain's whole.
std::shared_ptr<const SenderPolicy> ManagedSenders::policy_of(
    const config::AccountConfig& account, const std::optional<config::PolicyConfig>& chain) const {
    auto out = std::make_shared<SenderPolicy>();
    const auto& policy = account.policy ? account.policy : chain;
    if (policy) {
        out->rules = PolicyRules::from(*policy);
        out->approval_ttl = policy->approval_ttl;
        if (policy->service)
            out->service = make_policy_service(*policy->service, "chain " + config_.name);
    }
    return out;
}

std::shared_ptr<ManagedSenders::StagedPolicies> ManagedSenders::stage_policies(
    const config::ChainConfig& chain) const {
    auto staged = std::make_shared<StagedPolicies>();
    for (const auto& account : chain.accounts)
        if (Sender* s = sender_of(account.address))
            staged->next.emplace_back(s, policy_of(account, chain.policy));
    return staged;
}

void ManagedSenders::reconfigure_policies(std::shared_ptr<StagedPolicies> staged) {
    for (auto& [sender, policy] : staged->next) sender->set_policy(std::move(policy));
    spdlog::info("chain {}: the managed senders' policies reloaded", config_.name);
}

ManagedSenders::~ManagedSenders() = default;

bool ManagedSenders::manages(std::string_view address) const {
    return sender_of(address) != nullptr;
}

ManagedSenders::Sender* ManagedSenders::sender_of(std::string_view address) const {
    auto it = senders_.find(util::lower(address));
    return it == senders_.end() ? nullptr : it->second.get();
}

std::shared_ptr<ManagedSenders::Tx> ManagedSenders::find(std::string_view id) const {
    std::lock_guard lock(mu_);
    auto it = by_id_.find(std::string(id));
    return it == by_id_.end() ? nullptr : it->second;
}

std::size_t ManagedSenders::held() const {
    std::lock_guard lock(mu_);
    return by_id_.size();
}

void ManagedSenders::start() {
    if (senders_.empty()) {
        loaded_ = true;
        return;
    }
    asio::co_spawn(executor_, start_senders(), asio::detached);
}

asio::awaitable<void> ManagedSenders::start_senders() {
    asio::steady_timer timer(co_await asio::this_coro::executor);
    while (!stopped_) {
        // A standby of a shared journal does not load it: another gateway dispatches what it
        // holds, until this one takes over.
        bool ok = false;
        if (journal_.dispatching()) ok = co_await load();  // (not in the loop condition: GCC 12)
        if (ok) break;
        timer.expires_after(
            std::min<std::chrono::milliseconds>(config_.tx.poll_interval, kHandoffPoll));
        co_await timer.async_wait(use_nothrow);
    }
    if (stopped_) co_return;
    if (journal_.shared()) asio::co_spawn(executor_, follow_handoffs(), asio::detached);
    for (auto& [address, s] : senders_) {
        asio::co_spawn(s->strand, run(s), [this, a = address](std::exception_ptr e) {
            if (e) {
                try {
                    std::rethrow_exception(e);
                } catch (const std::exception& ex) {
                    spdlog::critical("chain {}: sender {}: the nonce manager stopped: {}",
                                     config_.name, a, ex.what());
                }
            }
        });
    }
}

void ManagedSenders::stop() {
    stopped_ = true;
    for (auto& [address, s] : senders_) wake(*s);
    std::lock_guard lock(mu_);
    for (auto& [id, tx] : by_id_)
        for (auto& w : tx->waiters) asio::post(w->get_executor(), [w] { w->cancel(); });
}

void ManagedSenders::wake(Sender& s) {
    s.wake_pending = true;
    asio::post(s.strand, [&s] { s.timer.cancel(); });
}

void ManagedSenders::notify(Tx& tx) {
    // Called with mu_ held.
    for (auto& w : tx.waiters) asio::post(w->get_executor(), [w] { w->cancel(); });
}

void ManagedSenders::wait(Tx& tx, std::string reason) {
    std::lock_guard lock(mu_);
    if (tx.rec.reason != reason)
        spdlog::info("chain {}: {} ({} from {}): waits: {}", config_.name, tx.rec.id,
                     store::to_string(tx.rec.state), tx.rec.sender, reason);
    tx.rec.reason = std::move(reason);
}

struct ManagedSenders::Journaled {
    store::ManagedRecord rec;
    std::vector<store::TxRecord> attempts;
    bool cancel = false;                      // an operator asked to cancel it
    std::optional<std::int64_t> held_since;   // held by the policy: since when
    std::optional<std::int64_t> signer_held;  // held by its signer: since when
};

ManagedSenders::Journaled ManagedSenders::read_journaled(store::ManagedJournal& j,
                                                         store::ManagedRecord r) {
    Journaled out;
    out.attempts = j.attempts(r.id);
    for (const auto& ev : j.managed_history(r.id)) {
        if (ev.reason.starts_with(kCancelRequested)) out.cancel = true;
        if (ev.state == TxState::pending_approval) out.held_since = ev.at_ms;
        // A signer's hold: its start, while it is the last thing that happened to it (an
        // operator's cancel request aside).
        if (ev.state == TxState::signing && ev.reason.starts_with(kSignerHold))
            out.signer_held = ev.at_ms;
        else if (!ev.reason.starts_with(kCancelRequested))
            out.signer_held.reset();
    }
    out.rec = std::move(r);
    return out;
}

std::shared_ptr<ManagedSenders::Tx> ManagedSenders::carry_on(Journaled&& journaled) {
    // Called with mu_ held.
    store::ManagedRecord& r = journaled.rec;
    Sender* s = sender_of(r.sender);
    const bool has_nonce = r.nonce && !has_no_nonce(r.state);
    auto parsed = parse_stored(r.request, config_.chain_id);
    if (!s || std::holds_alternative<std::string>(parsed)) {
        std::string why = "the sender is no longer configured";
        if (s) why = std::get<std::string>(parsed);
        spdlog::error(
            "chain {}: managed transaction {} of {} cannot carry on ({}); "
            "left as it is",
            config_.name, r.id, r.sender, why);
        if (s && has_nonce) s->orphan_max = std::max(s->orphan_max.value_or(0), *r.nonce);
        return nullptr;
    }
    auto tx = std::make_shared<Tx>();
    tx->req = std::move(std::get<Request>(parsed));
    if (!has_nonce) {
        // Its nonce (if any) and hash are from an earlier try: it takes new ones.
        r.nonce.reset();
        r.hash.reset();
    }
    tx->rec = std::move(r);
    if (has_nonce) adopt_attempts(*tx, *s, journaled.attempts);
    if (journaled.cancel) tx->cancel_requested = true;
    // Not when an attempt was signed before the stop (it carries on: load()).
    if (journaled.signer_held && tx->rec.state == TxState::signing && tx->attempts.empty())
        hold_at_signer(*tx, *s, *journaled.signer_held);
    if (tx->rec.state == TxState::pending_approval) {
        tx->awaiting_service = s->policy()->service && tx->rec.reason.starts_with(kAwaitingService);
        hold(*tx, *s, journaled.held_since.value_or(tx->rec.updated_ms));
    }
    s->txs.push_back(tx);
    by_id_[tx->rec.id] = tx;
    return tx;
}

asio::awaitable<bool> ManagedSenders::load() {
    std::vector<Journaled> records;
    std::vector<store::ManagedRef> reopened;
    store::JournalService::Operation op = [&](store::ManagedJournal& j) {
        reopened = j.reopened_managed();
        for (auto& r : j.unfinished_managed())
            if (r.chain == config_.name) records.push_back(read_journaled(j, std::move(r)));
    };
    const auto read = co_await journal_.run(std::move(op));
    if (!read) {
        spdlog::error(
            "chain {}: cannot load managed transactions from the journal: {}; "
            "eth_sendTransaction is refused until it loads",
            config_.name, read.error());
        co_return false;
    }
    std::vector<std::shared_ptr<Tx>> adopted;
    {
        std::lock_guard lock(mu_);
        for (auto& r : records) {
            if (by_id_.count(r.rec.id)) continue;
            auto tx = carry_on(std::move(r));
            if (tx && tx->rec.state == TxState::signing && !tx->attempts.empty())
                adopted.push_back(tx);
        }
    }
    for (auto& tx : adopted) {
        // Signed and journaled before the restart, its managed state not yet moved on.
        co_await update(tx, TxState::broadcasting,
                        "signed before a restart: its attempt carries on", std::nullopt,
                        tx->attempts.back());
    }
    loaded_ = true;
    if (!records.empty())
        spdlog::info("chain {}: {} managed transaction(s) from the journal carry on", config_.name,
                     held());
    // Finished, but a reorg reopened their attempt when they could not follow (a stop, a crash,
    // a journal fault in between): reopened now.
    for (auto& r : reopened)
        if (r.chain == config_.name) reopen(std::move(r.id), r.sender);
    co_return true;
}

asio::awaitable<void> ManagedSenders::follow_handoffs() {
    asio::steady_timer timer(co_await asio::this_coro::executor);
    while (!stopped_) {
        std::vector<Journaled> records;
        // Handed back should the commit fail or come too late (TxManager::take_handoffs).
        auto taken = std::make_shared<std::vector<store::Handoff>>();
        store::JournalService::Operation op = [&, taken](store::JournalView& j) {
            *taken = j.take_handoffs(config_.name, true, kHandoffBatch);
            for (const auto& h : *taken)
                if (auto r = j.find_managed(h.key); r && !store::is_final(r->state))
                    records.push_back(read_journaled(j, std::move(*r)));
        };
        auto undo = hand_back(taken);
        const auto read = co_await journal_.run(std::move(op), std::move(undo));
        std::vector<Sender*> woken;
        if (read && !records.empty()) {
            std::lock_guard lock(mu_);
            for (auto& r : records) {
                if (by_id_.count(r.rec.id)) continue;  // loaded when this gateway took over
                if (auto tx = carry_on(std::move(r))) woken.push_back(sender_of(tx->rec.sender));
            }
        }
        for (Sender* s : woken) wake(*s);
        if (!records.empty() && read) continue;  // more may wait
        timer.expires_after(kHandoffPoll);
        co_await timer.async_wait(use_nothrow);
    }
}

void ManagedSenders::adopt_attempts(Tx& tx, const Sender& s,
                                    const std::vector<store::TxRecord>& attempts) {
    for (const auto& a : attempts) {
        if (a.nonce != tx.rec.nonce) continue;  // an earlier try's attempt
        tx.attempts.push_back(a.hash);
        const auto decoded = eth::parse_transaction(a.raw);
        if (!decoded) continue;  // journaled by the gateway itself: a fault of the file
        tx.fees = fees_of(*decoded);
        tx.gas = decoded->gas;
        if (is_cancel(a, tx.req, s.addr)) {
            tx.cancel_requested = true;
            if (!tx.cancel_hash) tx.cancel_hash = a.hash;
        }
    }
}

void ManagedSenders::reopen(std::string id, std::string_view sender) {
    // Read once its sender is held (reopen_owned).
    if (Sender* s = sender_of(sender))
        asio::co_spawn(s->strand, reopen_owned(s, std::move(id)), asio::detached);
}

asio::awaitable<void> ManagedSenders::reopen_owned(Sender* s, std::string id) {
    co_await acquire(*s);
    Release<Sender> release(*s);
    if (auto held = find(id)) {
        // Still held and unfinished: follow() sees its attempt reopened. Finished this round
        // (not yet let go): let go now, and reopened from its record.
        if (!store::is_final(held->rec.state)) {
            wake(*s);
            co_return;
        }
        std::lock_guard lock(mu_);
        std::erase(s->txs, held);
        by_id_.erase(id);
    }
    // Read now that the sender is held: nothing finishes it meanwhile.
    std::optional<store::ManagedRecord> found;
    std::vector<store::TxRecord> attempts;
    store::JournalService::Operation op = [&](store::ManagedJournal& j) {
        found = j.find_managed(id);
        if (found) attempts = j.attempts(id);
    };
    const auto read = co_await journal_.run(std::move(op));
    if (!read) {
        spdlog::error(
            "chain {}: {}: a reorg reopened its attempt, but the journal cannot be "
            "read ({}): its state stays as it is until the next start",
            config_.name, id, read.error());
        co_return;
    }
    if (!found || !store::is_final(found->state) || !found->nonce) co_return;  // nothing mined
    // The sender came with the attempt: the record must be this chain's and this sender's.
    if (found->chain != config_.name || util::lower(found->sender) != s->address) co_return;
    store::ManagedRecord rec = std::move(*found);
    auto parsed = parse_stored(rec.request, config_.chain_id);
    if (auto* error = std::get_if<std::string>(&parsed)) {
        spdlog::error("chain {}: {}: a reorg reopened its attempt, but it cannot carry on ({})",
                      config_.name, rec.id, *error);
        co_return;
    }
    auto tx = std::make_shared<Tx>();
    tx->req = std::move(std::get<Request>(parsed));
    tx->rec = std::move(rec);
    adopt_attempts(*tx, *s, attempts);
    const std::string was = fmt::format("{} by attempt {}", store::to_string(tx->rec.state),
                                        tx->rec.hash.value_or("?"));
    {
        std::lock_guard lock(mu_);
        s->txs.push_back(tx);
        by_id_[tx->rec.id] = tx;
    }
    const bool ok = co_await update(
        tx, TxState::broadcasting,
        fmt::format("a reorg before its block was final dropped it ({}): waiting to be mined "
                    "again",
                    was));
    if (!ok) {
        std::lock_guard lock(mu_);
        std::erase(s->txs, tx);
        by_id_.erase(tx->rec.id);
        co_return;
    }
    spdlog::warn("chain {}: {} (sender {}, nonce {}) was {}: a reorg reopened it", config_.name,
                 tx->rec.id, s->address, tx->rec.nonce.value_or(0), was);
    wake(*s);
}

}  // namespace gateway::txm
