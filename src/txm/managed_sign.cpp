// Managed senders: the steps of the sender loop that take a transaction to its first attempt:
// gas, fees and the nonce (prepare), then signing and broadcasting (sign_and_send, also used for
// replacements and cancels).

#include "gateway/txm/managed.hpp"
#include "managed_internal.hpp"

#include "gateway/custody/signer.hpp"
#include "gateway/eth/hex.hpp"
#include "gateway/eth/transaction.hpp"
#include "gateway/eth/unsigned_tx.hpp"
#include "gateway/jsonrpc/methods.hpp"
#include "gateway/metrics/metrics.hpp"
#include "gateway/txm/nonce.hpp"
#include "gateway/txm/tx_manager.hpp"
#include "gateway/upstream/forwarder.hpp"
#include "gateway/util/text.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <boost/json/array.hpp>
#include <boost/json/parse.hpp>

#include <algorithm>

namespace gateway::txm {

namespace {

// What a signed attempt came to, for its managed transaction's reason.
std::string attempt_reason(bool cancel, std::size_t number, std::uint64_t nonce, const Fees& fees,
                           const SubmitResult& sent) {
    std::string fee_text;
    if (fees.legacy)
        fee_text = fmt::format("gasPrice {}", fees.gas_price);
    else
        fee_text = fmt::format("maxFeePerGas {}, maxPriorityFeePerGas {}", fees.max_fee_per_gas,
                               fees.max_priority_fee_per_gas);
    std::string outcome;
    if (sent.reply && sent.reply->is_error())
        outcome = "refused by the nodes: " + sent.reply->error.message;
    else if (sent.queued)
        outcome = "journaled, waiting for a node";
    else
        outcome = "sent to " + sent.upstream;
    return fmt::format("{} {} signed (nonce {}, {}): {}", cancel ? "cancel" : "attempt", number,
                       nonce, fee_text, outcome);
}

}  // namespace

asio::awaitable<std::optional<std::uint64_t>> ManagedSenders::nonce_count(
    const std::string& address, const char* block) {
    json::array params;
    params.emplace_back(address);
    params.emplace_back(block);
    // Real time, not clock_: a deadline for the nodes' call (asio timers, the HTTP client).
    upstream::Forwarded f = co_await pool_.forward("eth_getTransactionCount", std::move(params),
                                                   false, Clock::now() + std::chrono::seconds(10));
    co_return f.result_quantity();
}

asio::awaitable<ManagedSenders::Step> ManagedSenders::prepare(Sender& s, std::shared_ptr<Tx> tx) {
    const bool self_send = tx->cancel_requested || tx->req.fills;
    bool has_nonce;
    {
        std::lock_guard lock(mu_);
        has_nonce = tx->rec.state == TxState::signing;
        if (tx->rec.state == TxState::queued) tx->rec.state = TxState::preparing;
    }
    // Gas: the estimate with the margin, or the client's gas when that is enough.
    if (self_send) {
        tx->gas = kTransferGas;
    } else {
        json::object call;
        call["from"] = s.address;
        if (tx->req.to) call["to"] = eth::to_hex(*tx->req.to);
        if (!tx->req.value.empty()) call["value"] = eth::to_quantity(tx->req.value);
        if (!tx->req.input.empty()) call["data"] = eth::to_hex(tx->req.input);
        json::array params;
        params.emplace_back(std::move(call));
        // Real time, not clock_: a deadline for the nodes' call (asio timers, the HTTP client).
        upstream::Forwarded f = co_await pool_.forward("eth_estimateGas", std::move(params), false,
                                                       Clock::now() + std::chrono::seconds(10));
        if (f.outcome != upstream::Forwarded::Outcome::answered) {
            wait(*tx, "waiting for a node to estimate gas: " + f.error.message);
            co_return Step::wait;
        }
        const bool revert = f.reply.is_error() && is_revert(f.reply.error);
        if (revert && tx->req.gas && !has_nonce) {
            // The client set its gas: the estimate's state may not be the one it will run in
            // (a dependent transaction before it); sent as asked, as a node would.
            tx->gas = *tx->req.gas;
        } else if (f.reply.is_error()) {
            const jsonrpc::Error node = f.reply.error;
            if (revert && !has_nonce) {
                {
                    std::lock_guard lock(mu_);
                    tx->refusal = node;
                    ++tx->refusals;
                }
                co_await finish(
                    s, tx, TxState::failed,
                    "eth_estimateGas: " + std::string(util::utf8_prefix(node.message, 300)) +
                        ": it would revert, so it was not sent");
                co_return Step::done;
            }
            co_await step_failed(
                s, tx, "eth_estimateGas: " + std::string(util::utf8_prefix(node.message, 300)),
                node);
            co_return Step::wait;
        }
        if (!tx->gas) {
            const std::optional<std::uint64_t> estimate = f.result_quantity();
            if (!estimate) {
                wait(*tx, "the node's eth_estimateGas answer is not a quantity; asking again");
                co_return Step::wait;
            }
            tx->gas = gas_limit(*estimate, config_.tx.gas_margin_percent, tx->req.gas);
        }
    }
    // Fees: the estimate, or the client's where higher.
    std::string why;
    auto estimate = co_await estimate_fees(why);
    if (!estimate) {
        tx->gas = 0;
        wait(*tx, why);
        co_return Step::wait;
    }
    // A client's fees are the starting point where higher, within the caps. A filler may carry
    // fees above them: it must replace an attempt that may still be pending (21,000 gas at most).
    if (tx->req.fills)
        tx->fees = start_fees(*estimate, tx->req.client_fees);
    else if (self_send)
        tx->fees = capped(*estimate, s.caps);
    else
        tx->fees = capped(start_fees(*estimate, tx->req.client_fees), s.caps);

    TxState st;
    {
        std::lock_guard lock(mu_);
        st = tx->rec.state;
    }
    if (st == TxState::signing) co_return Step::done;  // it has its nonce already

    // The nonce: taken late, in the journal operation that records it.
    auto pending = co_await nonce_count(s.address, "pending");
    if (!pending) {
        tx->gas = 0;
        wait(*tx, "waiting for a node to read the sender's pending nonce");
        co_return Step::wait;
    }
    std::optional<std::uint64_t> held_max = s.orphan_max;
    {
        std::lock_guard lock(mu_);
        for (const auto& other : s.txs) {
            if (other == tx || !other->rec.nonce) continue;
            const TxState os = other->rec.state;
            if (os == TxState::signing || os == TxState::broadcasting || os == TxState::confirming)
                held_max = std::max(held_max.value_or(0), *other->rec.nonce);
        }
    }
    std::uint64_t nonce = 0;
    std::optional<std::uint64_t> lowered_from;
    const std::int64_t now = unix_ms();
    std::string reason;
    store::JournalService::Operation op = [&](store::JournalView& j) {
        // Lowered only when the chain says the range is empty and the gateway holds nothing
        // in it: a nonce it took and never got mined (a dead letter, a crash) is handed out
        // again.
        const auto next = j.next_nonce(config_.name, s.address);
        const NonceStart start = reconcile_nonce(next, *pending, held_max);
        if (start.lowered) {
            j.set_next_nonce(config_.name, s.address, start.next);
            lowered_from = next;
        }
        // Never at or below a nonce the gateway still holds, whatever the journal says.
        const std::uint64_t floor = held_max ? std::max(start.next, *held_max + 1) : start.next;
        nonce = j.take_nonce(config_.name, s.address, floor);
        reason = fmt::format("nonce {} taken (chain pending count {}); gas {}; signing", nonce,
                             *pending, tx->gas);
        j.update_managed(store::ManagedUpdate{tx->rec.id, TxState::signing, reason, now, nonce,
                                              std::nullopt, std::nullopt});
    };
    const auto kept = co_await journal_.run(std::move(op));
    if (!kept) {
        tx->gas = 0;
        wait(*tx, fmt::format("the journal cannot be written ({}); trying again", kept.error()));
        co_return Step::wait;
    }
    if (lowered_from)
        spdlog::warn(
            "chain {}: sender {}: next nonce lowered from {} to {}: the chain has "
            "nothing pending in between and the gateway holds nothing there",
            config_.name, s.address, *lowered_from, *pending);
    {
        std::lock_guard lock(mu_);
        tx->rec.state = TxState::signing;
        tx->rec.nonce = nonce;
        tx->rec.reason = reason;
        tx->rec.updated_ms = now;
    }
    if (metrics_) metrics_->count_managed(config_.name, "SIGNING");
    co_return Step::done;
}

asio::awaitable<ManagedSenders::Step> ManagedSenders::sign_and_send(Sender& s,
                                                                    std::shared_ptr<Tx> tx,
                                                                    Fees fees, bool cancel) {
    std::uint64_t nonce;
    bool replacing;
    {
        std::lock_guard lock(mu_);
        nonce = *tx->rec.nonce;
        replacing = tx->rec.state == TxState::broadcasting;
    }
    eth::UnsignedTx u;
    u.type = fees.legacy ? eth::TxType::legacy : eth::TxType::dynamic_fee;
    u.chain_id = config_.chain_id;
    u.nonce = nonce;
    u.gas_price = fees.gas_price;
    u.max_fee_per_gas = fees.max_fee_per_gas;
    u.max_priority_fee_per_gas = fees.max_priority_fee_per_gas;
    const bool self_send = cancel || tx->req.fills;
    u.gas = self_send ? kTransferGas : tx->gas;
    if (self_send)
        u.to = s.addr;
    else
        u.to = tx->req.to;
    if (!self_send) {
        u.value = tx->req.value;
        u.input = tx->req.input;
    }
    // Real time, not clock_: the signer waits for it on real timers.
    const auto deadline = Clock::now() + s.sign_timeout;
    custody::Signed r = co_await s.signer->sign(u, s.addr, deadline);
    using Outcome = custody::Signed::Outcome;

    std::optional<eth::Transaction> signed_tx;
    if (r.outcome == Outcome::signed_ok) {
        auto parsed = eth::parse_transaction(r.raw);
        if (parsed) {
            signed_tx = std::move(*parsed);
        } else {
            r.outcome = Outcome::malformed;
            r.detail = "its answer is not a valid transaction: " + parsed.error();
        }
        // Exactly the transaction asked for, signed by the sender: re-encoding it with the
        // signature gives the same bytes.
        bool same = false;
        if (signed_tx) {
            try {
                same =
                    signed_tx->sender == s.addr &&
                    eth::encode_signed(u, signed_tx->y_parity, signed_tx->r, signed_tx->s) == r.raw;
            } catch (const std::exception&) {
            }
        }
        if (signed_tx && !same) {
            r.outcome = Outcome::malformed;
            r.detail = "it answered a transaction other than the one asked for";
        }
    }
    if (metrics_) {
        metrics_->count_signing(s.signer->id(), custody::to_string(r.outcome));
        metrics_->set_signer_ready(s.signer->id(), r.outcome != Outcome::unavailable);
    }
    if (r.outcome != Outcome::signed_ok) {
        const std::string what = fmt::format("signer {} {}: {}", s.signer->id(),
                                             custody::to_string(r.outcome), r.detail);
        if (replacing) {
            // An attempt is out there: the replacement waits for the next bump.
            spdlog::warn("chain {}: {}: replacement not signed: {}", config_.name, tx->rec.id,
                         what);
            co_return Step::wait;
        }
        if (r.outcome == Outcome::unavailable || r.outcome == Outcome::pending_approval) {
            // Custody down, slow or not ready (a key not loaded): the transaction waits, with its
            // nonce, and asks again for as long as it takes. Never counted toward
            // retry.max_attempts: custody that is away queues, never skips (C1). Held for a
            // person's approval by the signer's own policy (C2): the same, until approval_ttl_ms
            // passes (round() cancels it then, so the sender does not stall for ever).
            ++tx->waits;
            const auto delay = retry_delay(config_, tx->waits);
            tx->not_before = clock_.now() + delay;
            if (r.outcome == Outcome::pending_approval && !tx->signer_held_since_ms) {
                // The hold starts: journaled, so that its time to live outlives a restart.
                hold_at_signer(*tx, s, unix_ms());
                if (metrics_) metrics_->count_approval(config_.name, "signer", "held");
                co_await update(
                    tx, TxState::signing,
                    fmt::format("{}: {}; nonce {} kept; asking again, CANCELLED if "
                                "not signed within approval_ttl_ms ({} ms)",
                                kSignerHold, what, nonce, s.policy()->approval_ttl.count()));
                co_return Step::wait;
            }
            wait(*tx, fmt::format("{}; nonce {} kept; asking again in {} ms", what, nonce,
                                  delay.count()));
            co_return Step::wait;
        }
        tx->waits = 0;
        if (tx->signer_held_since_ms && r.outcome == Outcome::refused && metrics_) {
            // The signer's hold ended in its no.
            metrics_->count_approval(config_.name, "signer", "rejected");
        }
        tx->signer_held_since_ms = 0;
        if (r.outcome == Outcome::refused && !tx->req.fills) {
            // The signer's no (its policy): the transaction fails with its reason and its nonce
            // is released. A filler is never given up: later nonces wait on it.
            {
                std::lock_guard lock(mu_);
                tx->refusal = jsonrpc::Error(kServerError, what);
                ++tx->refusals;
            }
            co_await finish(s, tx, TxState::failed, what);
            co_return Step::done;
        }
        // An answer that cannot be used: a failed try, a dead letter once they run out.
        co_await step_failed(s, tx, what, jsonrpc::Error(kServerError, what));
        co_return Step::wait;
    }
    tx->waits = 0;
    if (tx->signer_held_since_ms) {
        // Approved at the signer (an operator's cancelling self-send is no approval).
        if (metrics_ && !cancel) metrics_->count_approval(config_.name, "signer", "approved");
        tx->signer_held_since_ms = 0;
    }

    SubmitResult sent = co_await txm_.submit_attempt(r.raw, tx->rec.id, tx->rec.client);
    if (!sent.journaled) {
        // Not on disk, so never sent: signed again (the same bytes) next round.
        std::string why = "the journal cannot be written";
        if (sent.reply && sent.reply->is_error()) why = sent.reply->error.message;
        tx->not_before = clock_.now() + config_.tx.retry.backoff;
        wait(*tx, "the signed attempt was not journaled (" + why + "); trying again");
        co_return Step::wait;
    }
    const std::string hash = eth::to_hex(signed_tx->hash);
    if (std::find(tx->attempts.begin(), tx->attempts.end(), hash) == tx->attempts.end())
        tx->attempts.push_back(hash);
    tx->fees = fees;
    tx->attempt_head = pool_.head().value_or(0);
    if (cancel && !tx->cancel_hash) tx->cancel_hash = hash;
    if (replacing && metrics_) metrics_->count_replacement(config_.name);
    const bool refused = sent.reply && sent.reply->is_error();
    std::string reason = attempt_reason(cancel, tx->attempts.size(), nonce, fees, sent);
    if (refused) {
        // Before the hash is known to waiting clients: they hear of the refusal.
        std::lock_guard lock(mu_);
        tx->refusal = sent.reply->error;
        ++tx->refusals;
    }
    co_await update(tx, TxState::broadcasting, std::move(reason), std::nullopt, hash);
    co_return Step::done;
}

}  // namespace gateway::txm
