// Managed senders: the policy (catalog row C2). Each transaction is judged in the journal
// operation that records it, before it has a nonce; one that breaks a rule is held in
// PENDING_APPROVAL until an operator approves it (QUEUED: on to its nonce), rejects it
// (CANCELLED), or its sender's approval_ttl passes (CANCELLED, in the sender loop's round).

#include "gateway/txm/managed.hpp"
#include "managed_internal.hpp"

#include "gateway/custody/signer.hpp"
#include "gateway/eth/wei.hpp"
#include "gateway/metrics/metrics.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <boost/asio/co_spawn.hpp>

namespace gateway::txm {

namespace {

using Outcome = ActionResult::Outcome;
constexpr std::int64_t kDayMs = 24 * 3600 * 1000;

// Whether a transaction counts in its sender's daily sum: it may have moved its value. Not one
// cancelled (its self-send took the nonce), held, or refused before anything was signed.
bool counts(const store::Spending& row) {
    if (row.state == TxState::cancelled || row.state == TxState::pending_approval) return false;
    if ((row.state == TxState::failed || row.state == TxState::dead_letter) && row.attempts == 0)
        return false;
    return true;
}

// Admin answers, built outside coroutines (GCC 12 mishandles initializer lists in them).
ActionResult decision_error(Outcome outcome, std::string message) {
    ActionResult a;
    a.outcome = outcome;
    a.body["error"] = std::move(message);
    return a;
}

ActionResult decision_done(const std::string& id, std::string_view state,
                           const std::string& reason) {
    ActionResult a;
    a.body["id"] = id;
    a.body["state"] = state;
    a.body["reason"] = reason;
    return a;
}

}  // namespace

std::optional<std::string> ManagedSenders::judge(store::ManagedJournal& j, const Sender& s,
                                                 const Request& req, std::string_view id,
                                                 std::int64_t now) const {
    const std::shared_ptr<const SenderPolicy> policy = s.policy();
    if (!policy->rules) return std::nullopt;
    const PolicyRules& rules = *policy->rules;
    eth::Bytes spent;
    if (rules.daily_value && !req.value.empty()) {
        for (const auto& row : j.spending(config_.name, s.address, now - kDayMs)) {
            if (row.id == id || !counts(row)) continue;
            auto sum = eth::add_wei(spent, row.value);
            if (!sum) {  // past 2^256 - 1: over any limit
                spent.assign(32, 0xff);
                break;
            }
            spent = std::move(*sum);
        }
    }
    const auto held = check_policy(rules, req, spent);
    if (!held) return std::nullopt;
    return fmt::format(
        "held for approval: policy rule {}: {}; POST /admin/approvals/{}/approve or /reject",
        held->rule, held->reason, id);
}

Clock::time_point ManagedSenders::hold_deadline(const Sender& s, std::int64_t since_ms) const {
    // On clock_ from now: what is left of the time to live, counted from when it was held.
    const auto left = s.policy()->approval_ttl -
                      std::chrono::milliseconds(std::max<std::int64_t>(0, unix_ms() - since_ms));
    return clock_.now() + std::max(left, std::chrono::milliseconds(0));
}

void ManagedSenders::hold(Tx& tx, const Sender& s, std::int64_t since_ms) {
    tx.held_since_ms = since_ms;
    tx.approval_deadline = hold_deadline(s, since_ms);
}

asio::awaitable<void> ManagedSenders::expire_hold(Sender& s, std::shared_ptr<Tx> tx) {
    co_await finish(s, tx, TxState::cancelled,
                    fmt::format("not approved within approval_ttl_ms ({} ms): cancelled, never "
                                "signed",
                                s.policy()->approval_ttl.count()));
    if (metrics_ && store::is_final(tx->rec.state))
        metrics_->count_approval(config_.name, held_by(*tx), "expired");
}

asio::awaitable<void> ManagedSenders::ask_service(Sender& s, std::shared_ptr<Tx> tx) {
    const std::shared_ptr<const SenderPolicy> policy = s.policy();
    if (!policy->service) {
        // A reload took the service away: the hold stays for a person to decide (or to expire).
        std::lock_guard lock(mu_);
        tx->awaiting_service = false;
        co_return;
    }
    json::object body;
    body["id"] = tx->rec.id;
    body["chain"] = config_.name;
    body["chainId"] = config_.chain_id;
    body["from"] = s.address;
    body["transaction"] = request_json(tx->rec.request);
    body["client"] = tx->rec.client;
    body["idempotencyKey"] =
        tx->rec.idempotency_key ? json::value(*tx->rec.idempotency_key) : json::value(nullptr);
    // Real time, not clock_: the HTTP client waits on real timers.
    const ServiceVerdict verdict =
        co_await policy->service->check(std::move(body), Clock::now() + std::chrono::seconds(60));
    using Kind = ServiceVerdict::Kind;
    if (verdict.kind == Kind::unavailable) {
        // Fail-closed: held, asked again with backoff until it answers or approval_ttl_ms ends.
        // The backoff is the sender's: its other transactions wait for the service too.
        ++s.service_failures;
        const auto delay = retry_delay(config_, s.service_failures);
        s.service_not_before = clock_.now() + delay;
        wait(*tx, fmt::format("{}: {}; held, asking again in {} ms", kAwaitingService,
                              verdict.reason, delay.count()));
        co_return;
    }
    s.service_failures = 0;
    s.service_not_before = {};
    if (verdict.kind == Kind::deny) {
        {
            std::lock_guard lock(mu_);
            tx->awaiting_service = false;
        }
        co_await finish(s, tx, TxState::failed,
                        fmt::format("denied by the policy service: {}; never signed (POST "
                                    "/admin/transactions/{}/retry asks again)",
                                    verdict.reason, tx->rec.id));
        if (metrics_ && tx->rec.state == TxState::failed)
            metrics_->count_approval(config_.name, "service", "denied");
        if (tx->rec.state != TxState::failed) {
            std::lock_guard lock(mu_);
            tx->awaiting_service = true;  // not journaled: asked again
            tx->not_before = clock_.now() + config_.tx.retry.backoff;
        }
        co_return;
    }
    const std::int64_t now = unix_ms();
    store::ManagedUpdate u{tx->rec.id, TxState::pending_approval, "", now};
    u.set_spend = true;
    if (verdict.kind == Kind::hold) {
        u.reason = fmt::format(
            "held for approval: the policy service: {}; POST /admin/approvals/{}/approve or "
            "/reject",
            verdict.reason, tx->rec.id);
    }
    store::JournalService::Operation op = [&](store::ManagedJournal& j) {
        if (verdict.kind == Kind::allow) {
            // The rules again: the day's sum may have moved while the service was asked.
            if (auto held = judge(j, s, tx->req, tx->rec.id, now)) {
                u.reason = std::move(*held);
            } else {
                u.state = TxState::queued;
                u.reason = "allowed by the policy service";
                u.spend_ms = now;
            }
        }
        j.update_managed(u);
    };
    const auto kept = co_await journal_.run(std::move(op));
    if (!kept) {
        wait(*tx, fmt::format("{}: it answered, but the journal cannot be written ({}); asking "
                              "again",
                              kAwaitingService, kept.error()));
        tx->not_before = clock_.now() + config_.tx.retry.backoff;
        co_return;
    }
    spdlog::log(u.state == TxState::queued ? spdlog::level::info : spdlog::level::warn,
                "chain {}: {} (sender {}): {}", config_.name, tx->rec.id, s.address, u.reason);
    {
        std::lock_guard lock(mu_);
        tx->awaiting_service = false;
        tx->rec.state = u.state;
        tx->rec.reason = u.reason;
        tx->rec.updated_ms = now;
        tx->rec.spend_ms = u.spend_ms;
        notify(*tx);
    }
    if (metrics_) {
        if (u.state == TxState::queued) {
            metrics_->count_managed(config_.name, "QUEUED");
            metrics_->count_approval(config_.name, "service", "approved");
        } else {
            metrics_->count_approval(config_.name, "service", "held");
        }
    }
    if (u.state == TxState::pending_approval) tx->held_by_service = verdict.kind == Kind::hold;
    if (u.state == TxState::queued) wake(s);
}

void ManagedSenders::hold_at_signer(Tx& tx, const Sender& s, std::int64_t since_ms) {
    tx.signer_held_since_ms = since_ms;
    tx.signer_hold_deadline = hold_deadline(s, since_ms);
}

json::array ManagedSenders::approvals() const {
    std::vector<std::pair<std::int64_t, json::object>> held;
    std::lock_guard lock(mu_);
    for (const auto& [address, s] : senders_) {
        for (const auto& tx : s->txs) {
            const std::int64_t signer_since = tx->signer_held_since_ms;  // loaded once
            const bool by_policy = tx->rec.state == TxState::pending_approval;
            const bool by_signer = tx->rec.state == TxState::signing && signer_since != 0;
            if (!by_policy && !by_signer) continue;
            const auto& r = tx->rec;
            const std::int64_t since = by_policy ? tx->held_since_ms.load() : signer_since;
            json::object o;
            o["id"] = r.id;
            o["chain"] = r.chain;
            o["from"] = r.sender;
            o["state"] = store::to_string(r.state);
            // The policy's holds are decided here; a signer's, at the signer.
            o["heldBy"] = by_signer ? "signer" : tx->awaiting_service ? "service" : "policy";
            if (by_signer) {
                o["signer"] = s->signer->id();
                o["nonce"] = r.nonce ? json::value(*r.nonce) : json::value(nullptr);
            }
            o["reason"] = r.reason;
            o["request"] = request_json(r.request);
            o["idempotencyKey"] = r.idempotency_key ? json::value(*r.idempotency_key) : nullptr;
            if (!r.client.empty()) o["client"] = r.client;
            o["createdAt"] = util::iso_time(r.created_ms);
            o["heldSince"] = util::iso_time(since);
            o["expiresAt"] = util::iso_time(since + s->policy()->approval_ttl.count());
            held.emplace_back(since, std::move(o));
        }
    }
    // Oldest first, every sender's together.
    std::stable_sort(held.begin(), held.end(),
                     [](const auto& a, const auto& b) { return a.first < b.first; });
    json::array out;
    for (auto& h : held) out.push_back(std::move(h.second));
    return out;
}

asio::awaitable<ActionResult> ManagedSenders::decide(std::string id, bool approve, std::string by,
                                                     std::string reason) {
    if (!loaded_) co_return decision_error(Outcome::unavailable, not_loaded());
    auto tx = find(id);
    if (!tx) {
        // Not held: finished already, or not this chain's.
        auto found = co_await journaled(id);
        if (auto* refused = std::get_if<ActionResult>(&found)) co_return std::move(*refused);
        const auto& rec = std::get<store::ManagedRecord>(found);
        if (rec.state == TxState::pending_approval)
            // Being recorded (a send or a retry whose commit is late): not in memory yet.
            co_return decision_error(Outcome::unavailable,
                                     id + " is being taken in: try again in a moment");
        co_return decision_error(Outcome::conflict,
                                 fmt::format("{} is {}: only PENDING_APPROVAL transactions are "
                                             "approved or rejected",
                                             id, store::to_string(rec.state)));
    }
    Sender* s = sender_of(tx->rec.sender);
    auto answer = co_await asio::co_spawn(
        s->strand, decide_owned(s, tx, approve, std::move(by), std::move(reason)),
        asio::use_awaitable);
    co_return answer;
}

asio::awaitable<ActionResult> ManagedSenders::decide_owned(Sender* s, std::shared_ptr<Tx> tx,
                                                           bool approve, std::string by,
                                                           std::string reason) {
    co_await acquire(*s);
    Release<Sender> release(*s);
    TxState st;
    {
        std::lock_guard lock(mu_);
        st = tx->rec.state;
    }
    if (st == TxState::signing && tx->signer_held_since_ms)
        co_return decision_error(
            Outcome::conflict,
            fmt::format("{} is held by its signer {}, with nonce {}: it is approved there (the "
                        "gateway asks again until approval_ttl_ms passes), or given up with POST "
                        "/admin/transactions/{}/cancel",
                        tx->rec.id, s->signer->id(), tx->rec.nonce.value_or(0), tx->rec.id));
    if (st == TxState::pending_approval && clock_.now() >= tx->approval_deadline) {
        // Its time ran out before the round that would have ended it: ended now.
        co_await expire_hold(*s, tx);
        std::lock_guard lock(mu_);
        st = tx->rec.state;
    }
    // A second decision, or one after it expired, finds it decided.
    if (st != TxState::pending_approval)
        co_return decision_error(
            Outcome::conflict,
            fmt::format("{} is {}: only PENDING_APPROVAL transactions are approved or rejected",
                        tx->rec.id, store::to_string(st)));
    std::string because;
    if (!reason.empty()) because = ": " + reason;
    const char* label = held_by(*tx);  // before the decision clears what held it
    if (!approve) {
        co_await finish(*s, tx, TxState::cancelled,
                        fmt::format("rejected by {}{}; never signed", by, because));
        {
            std::lock_guard lock(mu_);
            if (tx->rec.state == TxState::cancelled) tx->awaiting_service = false;
        }
        {
            std::lock_guard lock(mu_);
            st = tx->rec.state;
        }
        if (st != TxState::cancelled)
            co_return decision_error(Outcome::unavailable, "the journal cannot be written");
        if (metrics_) metrics_->count_approval(config_.name, label, "rejected");
        co_return decision_done(tx->rec.id, "CANCELLED", tx->rec.reason);
    }
    const std::int64_t now = unix_ms();
    store::ManagedUpdate u{
        tx->rec.id, TxState::queued,
        fmt::format("approved by {}{}: on to its nonce and signing", by, because), now};
    // It counts in its sender's daily sum from now.
    u.set_spend = true;
    u.spend_ms = now;
    store::JournalService::Operation op = [&](store::ManagedJournal& j) { j.update_managed(u); };
    const auto kept = co_await journal_.run(std::move(op));
    if (!kept)
        co_return decision_error(Outcome::unavailable,
                                 fmt::format("the journal cannot be written: {}", kept.error()));
    spdlog::warn("chain {}: {} (sender {}): PENDING_APPROVAL -> QUEUED: {}", config_.name,
                 tx->rec.id, s->address, u.reason);
    {
        std::lock_guard lock(mu_);
        tx->awaiting_service = false;  // a person decided: the service is not asked any more
        tx->rec.state = TxState::queued;
        tx->rec.reason = u.reason;
        tx->rec.updated_ms = now;
        tx->rec.spend_ms = now;
        notify(*tx);
    }
    if (metrics_) {
        metrics_->count_managed(config_.name, "QUEUED");
        metrics_->count_approval(config_.name, label, "approved");
    }
    wake(*s);
    co_return decision_done(tx->rec.id, "QUEUED", u.reason);
}

}  // namespace gateway::txm
