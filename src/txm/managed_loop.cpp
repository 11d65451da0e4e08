// Managed senders: the sender loop. One coroutine per sender takes its transactions a round at a
// time through their steps (prepare and sign_and_send in managed_sign.cpp, follow in
// managed_follow.cpp); here the rounds, and how a transaction's state changes, fails or ends.

#include "gateway/txm/managed.hpp"
#include "managed_internal.hpp"

#include "gateway/metrics/metrics.hpp"
#include "gateway/txm/tx_manager.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <boost/asio/steady_timer.hpp>

#include <algorithm>

namespace gateway::txm {

asio::awaitable<void> ManagedSenders::acquire(Sender& s) {
    asio::steady_timer t(s.strand);
    while (s.busy) {
        t.expires_after(std::chrono::milliseconds(5));
        co_await t.async_wait(use_nothrow);
    }
    s.busy = true;
}

asio::awaitable<void> ManagedSenders::run(std::shared_ptr<Sender> s) {
    while (!stopped_) {
        s->wake_pending = false;
        co_await acquire(*s);
        co_await round(*s);
        s->busy = false;
        if (stopped_ || s->wake_pending) continue;
        s->timer.expires_after(config_.tx.poll_interval);
        co_await s->timer.async_wait(use_nothrow);
    }
}

asio::awaitable<void> ManagedSenders::round(Sender& s) {
    std::vector<std::shared_ptr<Tx>> txs;
    {
        std::lock_guard lock(mu_);
        txs = s.txs;
    }
    // Nonces are taken in the order transactions came: while an earlier one cannot take its
    // nonce, later ones wait.
    bool blocked = false;
    bool signer_down = false;  // one unanswered signing request a round: the others wait
    std::size_t stuck = 0;
    for (auto& tx : txs) {
        if (stopped_) co_return;
        TxState st;
        {
            std::lock_guard lock(mu_);
            st = tx->rec.state;
        }
        if (store::is_final(st)) continue;
        if (st == TxState::pending_approval) {
            // Held by the policy, without a nonce: later transactions go on past it.
            if (clock_.now() >= tx->approval_deadline) {
                co_await expire_hold(s, tx);
                continue;
            }
            bool asking;
            {
                std::lock_guard lock(mu_);
                asking = tx->awaiting_service;
            }
            if (asking && clock_.now() >= tx->not_before && clock_.now() >= s.service_not_before)
                co_await ask_service(s, tx);
            continue;
        }
        if (tx->cancel_requested && has_no_nonce(st)) {
            co_await finish(s, tx, TxState::cancelled,
                            "cancelled by an operator before it had a nonce");
            continue;
        }
        if (st == TxState::queued || st == TxState::preparing ||
            (st == TxState::signing && (!tx->gas || !tx->fees))) {
            const bool needs_nonce = st != TxState::signing;
            if ((needs_nonce && blocked) || clock_.now() < tx->not_before) {
                blocked = blocked || needs_nonce;
                continue;
            }
            const Step step = co_await prepare(s, tx);
            if (step == Step::wait) {
                blocked = blocked || needs_nonce;
                continue;
            }
            std::lock_guard lock(mu_);
            st = tx->rec.state;
        }
        if (st == TxState::signing) {
            if (tx->signer_held_since_ms && !tx->req.fills &&
                clock_.now() >= tx->signer_hold_deadline) {
                // Its signer's approval did not come: given up, its nonce released or filled
                // with a zero-value self-send, so later transactions go on. (A filler is never
                // given up: later nonces wait on it.)
                co_await finish(s, tx, TxState::cancelled,
                                fmt::format("its signer's approval did not come within "
                                            "approval_ttl_ms ({} ms): cancelled, never signed",
                                            s.policy()->approval_ttl.count()));
                if (metrics_ && store::is_final(tx->rec.state))
                    metrics_->count_approval(config_.name, "signer", "expired");
                continue;
            }
            if (signer_down || clock_.now() < tx->not_before || !tx->fees) {
                // Held by its signer: the sender's later transactions wait behind it.
                if (tx->signer_held_since_ms) signer_down = true;
                continue;
            }
            const Fees fees = *tx->fees;
            const Step step = co_await sign_and_send(s, tx, fees, tx->cancel_requested);
            if (step == Step::wait && tx->waits > 0) signer_down = true;
            continue;
        }
        if (st == TxState::broadcasting || st == TxState::confirming) {
            co_await follow(s, tx);
            if (tx->at_cap) ++stuck;
        }
    }
    if (stuck != s.stuck) {
        s.stuck = stuck;
        if (metrics_)
            metrics_->set_stuck_at_cap(config_.name, s.address, static_cast<double>(stuck));
    }
    std::lock_guard lock(mu_);
    std::erase_if(s.txs, [&](const std::shared_ptr<Tx>& tx) {
        if (!store::is_final(tx->rec.state)) return false;
        notify(*tx);
        by_id_.erase(tx->rec.id);
        return true;
    });
}

asio::awaitable<void> ManagedSenders::step_failed(Sender& s, std::shared_ptr<Tx> tx,
                                                  std::string reason,
                                                  std::optional<jsonrpc::Error> error) {
    ++tx->failures;
    const unsigned max = std::max(1u, config_.tx.retry.max_attempts);
    {
        std::lock_guard lock(mu_);
        if (error) tx->refusal = std::move(error);
        ++tx->refusals;
    }
    if (!tx->req.fills && tx->failures >= max) {
        co_await finish(s, tx, TxState::dead_letter,
                        fmt::format("{} (failure {} of {}: retries exhausted; POST "
                                    "/admin/transactions/{}/retry to try again)",
                                    reason, tx->failures, max, tx->rec.id));
        co_return;
    }
    const auto delay = retry_delay(config_, tx->failures);
    tx->not_before = clock_.now() + delay;
    TxState st;
    {
        std::lock_guard lock(mu_);
        st = tx->rec.state;
    }
    // With its nonce it is signed again; without, its nonce is still to take.
    const TxState next = tx->rec.nonce && !has_no_nonce(st) ? TxState::signing : st;
    spdlog::warn("chain {}: {}: {} (failure {} of {}; trying again in {} ms)", config_.name,
                 tx->rec.id, reason, tx->failures, max, delay.count());
    co_await update(tx, next,
                    fmt::format("{} (failure {} of {}; trying again in {} ms)", reason,
                                tx->failures, max, delay.count()));
    std::lock_guard lock(mu_);
    notify(*tx);
}

asio::awaitable<void> ManagedSenders::finish(Sender& s, std::shared_ptr<Tx> tx, TxState state,
                                             std::string reason, std::optional<std::string> hash,
                                             bool nonce_used) {
    // A transaction that ends without using the nonce it took releases it: handed out again when
    // it was the last one taken and no attempt ever reached a node, else filled with a zero-value
    // self-send (outbidding any attempt still pending somewhere) so later nonces are not stuck.
    std::optional<std::uint64_t> nonce;
    TxState before;
    {
        std::lock_guard lock(mu_);
        before = tx->rec.state;
        nonce = tx->rec.nonce;
    }
    const bool releases = !nonce_used && state != TxState::completed && !tx->req.fills && nonce &&
                          !has_no_nonce(before);
    const auto attempts = static_cast<std::uint32_t>(tx->attempts.size());
    std::optional<Fees> outbid;
    if (tx->fees) outbid = bump(*tx->fees, config_.tx.fee.bump_percent, FeeCaps{}).fees;
    const std::int64_t now = unix_ms();
    std::optional<store::ManagedRecord> filler;
    bool released = false;
    store::JournalService::Operation op = [&](store::JournalView& j) {
        j.update_managed(
            store::ManagedUpdate{tx->rec.id, state, reason, now, std::nullopt, hash, attempts});
        if (!releases) return;
        bool reached_a_node = false;
        for (const auto& a : j.attempts(tx->rec.id))
            if (a.nonce == *nonce && a.broadcasts > 0) reached_a_node = true;
        const auto next = j.next_nonce(config_.name, s.address);
        if (!reached_a_node && next && *next == *nonce + 1) {
            j.set_next_nonce(config_.name, s.address, *nonce);
            released = true;
            return;
        }
        store::ManagedRecord f;
        f.id = new_id();
        f.chain = config_.name;
        f.sender = s.address;
        f.request = filler_request(s.address, tx->rec.id, outbid);
        f.nonce = *nonce;
        f.state = TxState::signing;
        f.reason = fmt::format(
            "fills nonce {} of {} (a dead letter) so later transactions "
            "are not stuck",
            *nonce, tx->rec.id);
        f.created_ms = f.updated_ms = now;
        filler = j.insert_managed(f).first;
    };
    const auto kept = co_await journal_.run(std::move(op));
    if (!kept) {
        wait(*tx, fmt::format("the journal cannot be written ({}); trying again", kept.error()));
        co_return;
    }
    // The nonce is used by the attempt `hash`: the others will never be mined.
    if (hash && nonce_used) co_await txm_.replace_attempts(tx->rec.id, *hash);
    std::string nonce_text;
    if (nonce) nonce_text = fmt::format(", nonce {}", *nonce);
    spdlog::log(state == TxState::completed || state == TxState::confirming ? spdlog::level::info
                                                                            : spdlog::level::warn,
                "chain {}: {} (sender {}{}): {} -> {}: {}", config_.name, tx->rec.id, s.address,
                nonce_text, store::to_string(before), store::to_string(state), reason);
    if (released)
        spdlog::info("chain {}: sender {}: nonce {} is handed out again", config_.name, s.address,
                     *nonce);
    {
        std::lock_guard lock(mu_);
        tx->rec.state = state;
        tx->rec.reason = std::move(reason);
        tx->rec.updated_ms = now;
        if (hash) tx->rec.hash = hash;
        notify(*tx);
        if (filler) {
            auto f = std::make_shared<Tx>();
            f->rec = *filler;
            f->req = std::get<Request>(parse_stored(filler->request, config_.chain_id));
            s.txs.push_back(f);
            by_id_[f->rec.id] = f;
            spdlog::warn("chain {}: sender {}: {} fills nonce {} of {}", config_.name, s.address,
                         f->rec.id, *nonce, tx->rec.id);
        }
    }
    if (metrics_) metrics_->count_managed(config_.name, store::to_string(state));
}

asio::awaitable<bool> ManagedSenders::update(std::shared_ptr<Tx> tx, TxState state,
                                             std::string reason, std::optional<std::uint64_t> nonce,
                                             std::optional<std::string> hash) {
    TxState before;
    {
        std::lock_guard lock(mu_);
        before = tx->rec.state;
        if (reason.empty()) reason = tx->rec.reason;
    }
    const store::ManagedUpdate u{tx->rec.id,
                                 state,
                                 reason,
                                 unix_ms(),
                                 nonce,
                                 hash,
                                 static_cast<std::uint32_t>(tx->attempts.size())};
    store::JournalService::Operation op = [&](store::ManagedJournal& j) { j.update_managed(u); };
    const auto kept = co_await journal_.run(std::move(op));
    if (!kept) {
        wait(*tx, fmt::format("the journal cannot be written ({}); trying again", kept.error()));
        co_return false;
    }
    if (before != state)
        spdlog::info("chain {}: {} (sender {}): {} -> {}: {}", config_.name, tx->rec.id,
                     tx->rec.sender, store::to_string(before), store::to_string(state), reason);
    // Out of SIGNING, no signer holds it any more.
    if (state != TxState::signing) tx->signer_held_since_ms = 0;
    std::lock_guard lock(mu_);
    tx->rec.state = state;
    tx->rec.reason = std::move(reason);
    tx->rec.updated_ms = u.at_ms;
    tx->rec.attempts = *u.attempts;
    if (nonce) tx->rec.nonce = nonce;
    if (hash) tx->rec.hash = hash;
    notify(*tx);
    if (before != state && metrics_) metrics_->count_managed(config_.name, store::to_string(state));
    co_return true;
}

}  // namespace gateway::txm
