// Managed senders: the step of the sender loop that follows a transaction's attempts until one
// is mined: a replacement with higher fees when none is, a cancel's self-send, and what is done
// when every attempt died (its nonce used by another party, or refused by the nodes).

#include "gateway/txm/managed.hpp"
#include "gateway/txm/nonce_proof.hpp"
#include "managed_internal.hpp"

#include "gateway/txm/tx_manager.hpp"
#include "gateway/upstream/forwarder.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <boost/json/array.hpp>

#include <algorithm>

namespace gateway::txm {

asio::awaitable<void> ManagedSenders::follow(Sender& s, std::shared_ptr<Tx> tx) {
    // The attempts' states: from the raw layer while it holds them, else from the journal.
    std::vector<store::TxRecord> records;
    bool from_journal = false;
    for (const auto& h : tx->attempts) {
        auto r = txm_.held_record(h);
        if (!r) {
            from_journal = true;
            break;
        }
        records.push_back(std::move(*r));
    }
    if (from_journal) {
        records.clear();
        store::JournalService::Operation op = [&](store::ManagedJournal& j) {
            records = j.attempts(tx->rec.id);
        };
        const auto read = co_await journal_.run(std::move(op));
        if (!read) {
            wait(*tx, fmt::format("the journal cannot be read ({})", read.error()));
            co_return;
        }
    }
    // Only this nonce's attempts: an earlier try's (before a retry or a new nonce) are history.
    std::optional<std::uint64_t> nonce;
    {
        std::lock_guard lock(mu_);
        nonce = tx->rec.nonce;
    }
    std::erase_if(records, [&](const store::TxRecord& a) { return a.nonce != nonce; });
    if (records.empty()) co_return;
    const store::TxRecord* mined = nullptr;
    bool all_final = true;
    for (const auto& a : records) {
        if (is_mined(a)) mined = &a;
        if (!store::is_final(a.state)) all_final = false;
    }
    if (mined) {
        const bool cancelled = is_cancel(*mined, tx->req, s.addr);
        const std::string where = fmt::format("block {} ({})", mined->block_number.value_or(0),
                                              mined->block_hash.value_or("?"));
        TxState st;
        std::optional<std::string> current;
        {
            std::lock_guard lock(mu_);
            st = tx->rec.state;
            current = tx->rec.hash;
        }
        if (mined->state == TxState::confirming) {
            if (st != TxState::confirming || current != mined->hash)
                co_await update(tx, TxState::confirming,
                                fmt::format("{} {} mined in {}", cancelled ? "cancel" : "attempt",
                                            mined->hash, where),
                                std::nullopt, mined->hash);
        } else if (mined->state == TxState::completed) {
            co_await finish(
                s, tx, cancelled ? TxState::cancelled : TxState::completed,
                fmt::format("{} {} mined in {}: {}", cancelled ? "cancelled: self-send" : "attempt",
                            mined->hash, where, mined->reason),
                mined->hash, true);
        } else {
            co_await finish(s, tx, TxState::failed,
                            fmt::format("attempt {} reverted in {}", mined->hash, where),
                            mined->hash, true);
        }
        co_return;
    }
    if (all_final) {
        co_await dead_attempts(s, tx);
        co_return;
    }
    {
        TxState st;
        {
            std::lock_guard lock(mu_);
            st = tx->rec.state;
        }
        if (st == TxState::confirming)
            co_await update(tx, TxState::broadcasting,
                            "its block is no longer in the chain (a reorg): waiting to be mined "
                            "again");
    }
    // None mined yet. A cancel goes out at once; otherwise a replacement with higher fees once
    // tx.fee.bump_after_blocks blocks went by without it.
    const std::uint64_t head = pool_.head().value_or(0);
    const bool cancel_now = tx->cancel_requested && !tx->cancel_hash;
    if (!cancel_now) {
        if (!head) co_return;
        if (!tx->attempt_head || head < tx->attempt_head) {
            tx->attempt_head = head;
            co_return;
        }
        if (head < tx->attempt_head + config_.tx.fee.bump_after_blocks) co_return;
    }
    if (!tx->fees) co_return;
    // A cancel may pass the caps: it costs 21,000 gas at most, and must outbid the original.
    FeeCaps caps = s.caps;
    if (tx->cancel_requested) caps = FeeCaps{};
    const Bump b = bump(*tx->fees, config_.tx.fee.bump_percent, caps);
    Fees next = b.fees;
    if (!b.at_cap) {
        // Re-estimated: a spike may call for more than the minimum raise.
        std::string why;
        std::optional<Fees> fresh = co_await estimate_fees(why);
        if (fresh && fresh->legacy == next.legacy) {
            const Fees f = capped(*fresh, caps);
            next.max_fee_per_gas = std::max(next.max_fee_per_gas, f.max_fee_per_gas);
            next.max_priority_fee_per_gas =
                std::max(next.max_priority_fee_per_gas, f.max_priority_fee_per_gas);
            next.gas_price = std::max(next.gas_price, f.gas_price);
        }
    } else {
        tx->attempt_head = head;
        if (!tx->at_cap) {
            tx->at_cap = true;
            spdlog::warn(
                "chain {}: {} (sender {}, nonce {}) is not mined and its fees are at the "
                "cap (tx.fee.max_fee_per_gas_gwei {}, max_priority_fee_gwei {}): it "
                "stays as it is; raise the cap or cancel it",
                config_.name, tx->rec.id, s.address, tx->rec.nonce.value_or(0),
                config_.tx.fee.max_fee_per_gas_gwei, config_.tx.fee.max_priority_fee_gwei);
            wait(*tx,
                 "not mined, fees at the cap: stuck until the base fee falls or the cap rises");
        }
        if (!cancel_now) co_return;
    }
    if (!b.at_cap) tx->at_cap = false;
    if (!cancel_now) {
        // Mined since the raw layer last looked? Then no replacement is needed.
        for (const auto& a : records) {
            json::array params;
            params.emplace_back(a.hash);
            // Real time, not clock_: a deadline for the nodes' call (asio timers, the HTTP client).
            upstream::Forwarded f =
                co_await pool_.forward("eth_getTransactionReceipt", std::move(params), false,
                                       Clock::now() + std::chrono::seconds(10));
            if (f.outcome != upstream::Forwarded::Outcome::answered || f.reply.is_error() ||
                *f.reply.result != "null")
                co_return;  // mined, or cannot tell: the next round looks again
        }
    }
    if (!cancel_now)
        spdlog::info("chain {}: {} not mined after {} block(s): replacing it with higher fees",
                     config_.name, tx->rec.id, head - tx->attempt_head);
    tx->attempt_head = head;
    co_await sign_and_send(s, tx, next, tx->cancel_requested);
}

asio::awaitable<void> ManagedSenders::dead_attempts(Sender& s, std::shared_ptr<Tx> tx) {
    // Every attempt is final and none was mined: its nonce was used by another party, or the
    // nodes refused it. Only nodes at the chain's head are believed, and another party's use
    // only once it is confirmations deep: a null receipt from a node behind proves nothing, and
    // signing again with the next nonce would pay twice.
    const std::uint64_t nonce = tx->rec.nonce.value_or(0);
    const NonceUse use =
        co_await nonce_use(pool_, s.address, nonce, tx->attempts, config_.tx.confirmations);
    if (use.kind == NonceUse::Kind::unknown) co_return;  // asked again next round
    if (use.kind == NonceUse::Kind::ours) {
        // An attempt given up on one node's word was mined after all.
        const bool ok = use.receipt.is_object() && use.receipt.as_object().contains("status") &&
                        use.receipt.at("status") == "0x1";
        co_await finish(s, tx, ok ? TxState::completed : TxState::failed,
                        fmt::format("attempt {} was mined after all ({})", use.hash,
                                    ok ? "success" : "reverted"),
                        use.hash, true);
        co_return;
    }
    if (use.kind == NonceUse::Kind::another) {
        if (tx->req.fills || tx->cancel_requested) {
            const TxState end = tx->cancel_requested ? TxState::cancelled : TxState::failed;
            const char* what = tx->cancel_requested ? "cancel" : "fill";
            co_await finish(s, tx, end,
                            fmt::format("nonce {} was used by another transaction: nothing "
                                        "left to {}",
                                        nonce, what),
                            std::nullopt, true);
            co_return;
        }
        spdlog::warn(
            "chain {}: {}: nonce {} of {} was used by another transaction, not one of "
            "the gateway's: signing it again with the next nonce",
            config_.name, tx->rec.id, nonce, s.address);
        const bool ok =
            co_await update(tx, TxState::preparing,
                            fmt::format("nonce {} was used by another transaction, not one of the "
                                        "gateway's: signing again with the next nonce",
                                        nonce));
        if (!ok) co_return;
        tx->gas = 0;
        tx->attempt_head = 0;
        {
            std::lock_guard lock(mu_);
            tx->rec.nonce.reset();
        }
        wake(s);
        co_return;
    }
    std::string why = "every attempt was refused";
    {
        // The newest attempt's reason says what the nodes said.
        std::vector<store::TxRecord> records;
        store::JournalService::Operation op = [&](store::ManagedJournal& j) {
            records = j.attempts(tx->rec.id);
        };
        const auto read = co_await journal_.run(std::move(op));
        if (read && !records.empty()) why = records.back().reason;
    }
    co_await step_failed(s, tx, "not mined: " + why, jsonrpc::Error(kServerError, why));
}

}  // namespace gateway::txm
