// Managed senders: the admin API. Retry a dead letter or a failed transaction, cancel one, and
// resynchronise a sender's next nonce with the chain; each on its sender's strand, holding it.

#include "gateway/txm/managed.hpp"
#include "managed_internal.hpp"

#include "gateway/metrics/metrics.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/json/object.hpp>

#include <algorithm>

namespace gateway::txm {

namespace {

// Admin answers, built outside coroutines (GCC 12 mishandles initializer lists in them).
using Outcome = ActionResult::Outcome;

ActionResult admin_error(Outcome outcome, std::string message) {
    ActionResult a;
    a.outcome = outcome;
    a.body["error"] = std::move(message);
    return a;
}

ActionResult admin_state(Outcome outcome, const std::string& id, std::string_view state,
                         std::string_view note = {}) {
    ActionResult a;
    a.outcome = outcome;
    a.body["id"] = id;
    a.body["state"] = state;
    if (!note.empty()) a.body["cancel"] = note;
    return a;
}

ActionResult admin_body(json::object body) {
    ActionResult a;
    a.body = std::move(body);
    return a;
}

}  // namespace

asio::awaitable<std::variant<store::ManagedRecord, ActionResult>> ManagedSenders::journaled(
    std::string id) {
    using Found = std::variant<store::ManagedRecord, ActionResult>;
    std::optional<store::ManagedRecord> rec;
    store::JournalService::Operation op = [&](store::ManagedJournal& j) {
        rec = j.find_managed(id);
    };
    const auto read = co_await journal_.run(std::move(op));
    if (!read) {
        co_return Found(admin_error(Outcome::unavailable,
                                    fmt::format("the journal cannot be read: {}", read.error())));
    }
    if (!rec || rec->chain != config_.name)
        co_return Found(admin_error(Outcome::not_found,
                                    "no managed transaction " + id + " on chain " + config_.name));
    co_return Found(std::move(*rec));
}

std::string ManagedSenders::not_loaded() const {
    if (journal_.standby())
        return "this gateway is a standby: another gateway owns the shared journal and dispatches "
               "its managed transactions; send this to that one";
    return "the journal is still loading: try again";
}

asio::awaitable<ActionResult> ManagedSenders::retry(std::string id) {
    if (!loaded_) co_return admin_error(Outcome::unavailable, not_loaded());
    auto found = co_await journaled(id);
    if (auto* refused = std::get_if<ActionResult>(&found)) co_return std::move(*refused);
    auto* rec = &std::get<store::ManagedRecord>(found);
    Sender* s = sender_of(rec->sender);
    if (!s) co_return admin_error(Outcome::conflict, "its sender is no longer configured");
    if (rec->request.find(kFillsField) != std::string::npos)
        co_return admin_error(Outcome::conflict,
                              id + " fills the nonce of another transaction: not retried");
    if (rec->state != TxState::dead_letter && rec->state != TxState::failed)
        co_return admin_error(Outcome::conflict,
                              fmt::format("{} is {}: only DEAD_LETTER and FAILED transactions are "
                                          "retried",
                                          id, store::to_string(rec->state)));
    // On the sender's strand: its owner.
    auto answer =
        co_await asio::co_spawn(s->strand, retry_owned(s, std::move(*rec)), asio::use_awaitable);
    co_return answer;
}

asio::awaitable<ActionResult> ManagedSenders::retry_owned(Sender* s, store::ManagedRecord rec) {
    co_await acquire(*s);
    Release<Sender> release(*s);
    if (find(rec.id))
        co_return admin_error(Outcome::conflict, rec.id + " is being retried already");
    auto parsed = parse_stored(rec.request, config_.chain_id);
    if (auto* error = std::get_if<std::string>(&parsed))
        co_return admin_error(Outcome::conflict, *error);
    auto tx = std::make_shared<Tx>();
    tx->rec = rec;
    tx->req = std::move(std::get<Request>(parsed));
    {
        std::lock_guard lock(mu_);
        s->txs.push_back(tx);
        by_id_[rec.id] = tx;
    }
    // The policy again: what it let through then may break a rule now (the day's sum).
    const std::int64_t now = unix_ms();
    store::ManagedUpdate u{rec.id, TxState::queued,
                           "retried by an operator: a new nonce, gas and fees", now};
    u.set_spend = true;
    // What it moves, for the daily sums (a transaction from before they were kept has none), and
    // no nonce on disk either: a reorg must not find it by its earlier try's.
    u.value = tx->req.value;
    u.clear_nonce = true;
    store::JournalService::Operation op = [&](store::ManagedJournal& j) {
        if (auto held = judge(j, *s, tx->req, rec.id, now)) {
            u.state = TxState::pending_approval;
            u.reason = "retried by an operator, and " + *held;
        } else if (s->policy()->service) {
            u.state = TxState::pending_approval;
            u.reason = std::string(kAwaitingService);
        } else {
            u.spend_ms = now;
        }
        j.update_managed(u);
    };
    const auto kept = co_await journal_.run(std::move(op));
    if (!kept) {
        std::lock_guard lock(mu_);
        std::erase(s->txs, tx);
        by_id_.erase(rec.id);
        co_return admin_error(Outcome::unavailable,
                              fmt::format("the journal cannot be written: {}", kept.error()));
    }
    const bool asking = u.reason == kAwaitingService;
    const bool held = u.state == TxState::pending_approval && !asking;
    if (u.state == TxState::pending_approval) hold(*tx, *s, now);
    spdlog::warn("chain {}: {} (sender {}): {} -> {}: {}", config_.name, rec.id, s->address,
                 store::to_string(rec.state), store::to_string(u.state), u.reason);
    {
        std::lock_guard lock(mu_);
        tx->rec.state = u.state;
        tx->rec.reason = u.reason;
        tx->rec.updated_ms = now;
        tx->rec.spend_ms = u.spend_ms;
        tx->rec.nonce.reset();
        tx->rec.hash.reset();
        tx->awaiting_service = asking;
    }
    if (metrics_) {
        metrics_->count_managed(config_.name, store::to_string(u.state));
        if (held) metrics_->count_approval(config_.name, "policy", "held");
    }
    wake(*s);
    co_return admin_state(Outcome::done, rec.id, store::to_string(u.state));
}

asio::awaitable<ActionResult> ManagedSenders::cancel(std::string id) {
    if (!loaded_) co_return admin_error(Outcome::unavailable, not_loaded());
    auto tx = find(id);
    if (!tx) {
        // Not held: finished already, or not this chain's.
        auto found = co_await journaled(id);
        if (auto* refused = std::get_if<ActionResult>(&found)) co_return std::move(*refused);
        const auto& rec = std::get<store::ManagedRecord>(found);
        co_return admin_error(Outcome::conflict,
                              fmt::format("{} is {} already", id, store::to_string(rec.state)));
    }
    Sender* s = sender_of(tx->rec.sender);
    auto answer = co_await asio::co_spawn(s->strand, cancel_owned(s, tx), asio::use_awaitable);
    co_return answer;
}

asio::awaitable<ActionResult> ManagedSenders::cancel_owned(Sender* s, std::shared_ptr<Tx> tx) {
    co_await acquire(*s);
    Release<Sender> release(*s);
    TxState st;
    {
        std::lock_guard lock(mu_);
        st = tx->rec.state;
    }
    if (store::is_final(st))
        co_return admin_error(Outcome::conflict,
                              fmt::format("{} is {} already", tx->rec.id, store::to_string(st)));
    if (st == TxState::confirming)
        co_return admin_error(Outcome::conflict, tx->rec.id + " is mined already (CONFIRMING)");
    if (has_no_nonce(st)) {
        co_await finish(*s, tx, TxState::cancelled,
                        "cancelled by an operator before it had a nonce");
        if (st == TxState::pending_approval && metrics_ && tx->rec.state == TxState::cancelled)
            metrics_->count_approval(config_.name, held_by(*tx), "rejected");
        co_return admin_state(Outcome::done, tx->rec.id, "CANCELLED");
    }
    if (tx->req.fills)
        co_return admin_error(Outcome::conflict,
                              tx->rec.id + " fills the nonce of another transaction");
    // Journaled, so that a restart keeps the request.
    const bool ok = co_await update(
        tx, st,
        std::string(kCancelRequested) + ": a zero-value self-send with the same nonce replaces it");
    if (!ok) co_return admin_error(Outcome::unavailable, "the journal cannot be written");
    tx->cancel_requested = true;
    tx->not_before = {};
    wake(*s);
    co_return admin_state(Outcome::accepted, tx->rec.id, store::to_string(st),
                          "a zero-value self-send with the same nonce replaces it; "
                          "CANCELLED once that is mined");
}

asio::awaitable<ActionResult> ManagedSenders::resync(std::string address) {
    if (!loaded_) co_return admin_error(Outcome::unavailable, not_loaded());
    Sender* s = sender_of(address);
    if (!s)
        co_return admin_error(
            Outcome::not_found,
            fmt::format("{} is not a managed sender of chain {}", address, config_.name));
    auto answer = co_await asio::co_spawn(s->strand, resync_owned(s), asio::use_awaitable);
    co_return answer;
}

asio::awaitable<ActionResult> ManagedSenders::resync_owned(Sender* s) {
    co_await acquire(*s);
    Release<Sender> release(*s);
    auto pending = co_await nonce_count(s->address, "pending");
    auto latest = co_await nonce_count(s->address, "latest");
    if (!pending || !latest)
        co_return admin_error(Outcome::unavailable, "no node answered the sender's nonce");
    std::optional<std::uint64_t> held_max = s->orphan_max;
    {
        std::lock_guard lock(mu_);
        for (const auto& tx : s->txs)
            if (tx->rec.nonce && !has_no_nonce(tx->rec.state))
                held_max = std::max(held_max.value_or(0), *tx->rec.nonce);
    }
    std::uint64_t next = *pending;
    if (held_max) next = std::max(next, *held_max + 1);
    std::optional<std::uint64_t> previous;
    store::JournalService::Operation op = [&](store::NonceLedger& j) {
        previous = j.next_nonce(config_.name, s->address);
        j.set_next_nonce(config_.name, s->address, next);
    };
    const auto kept = co_await journal_.run(std::move(op));
    if (!kept) {
        co_return admin_error(Outcome::unavailable,
                              fmt::format("the journal cannot be written: {}", kept.error()));
    }
    std::string was = "none";
    if (previous) was = std::to_string(*previous);
    spdlog::warn(
        "chain {}: sender {}: nonce resynchronised by an operator: next {} "
        "(was {}; chain pending {}, latest {})",
        config_.name, s->address, next, was, *pending, *latest);
    json::object body;
    body["chain"] = config_.name;
    body["address"] = s->address;
    body["chainPending"] = *pending;
    body["chainLatest"] = *latest;
    body["next"] = next;
    body["previous"] = nullptr;
    if (previous) body["previous"] = *previous;
    body["heldUpTo"] = nullptr;
    if (held_max) body["heldUpTo"] = *held_max;
    wake(*s);
    co_return admin_body(std::move(body));
}

}  // namespace gateway::txm
