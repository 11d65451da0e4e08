// Following sent transactions to their receipts: confirmations, CONFIRMING -> COMPLETED, reverts,
// rebroadcasts of those without one, nonces a node says are used; and after mining, the blocks
// not final yet, watched for reorgs that reopen their transactions.

#include "tx_manager_internal.hpp"

#include "gateway/jsonrpc/methods.hpp"
#include "gateway/txm/nonce_proof.hpp"
#include "gateway/upstream/forwarder.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <boost/json/parse.hpp>

#include <algorithm>
#include <chrono>
#include <map>

namespace gateway::txm {

namespace {

// Block `n` as a node at or above `at` has it: its hash, its parent's, and its transactions'
// hashes (false: not the transactions in full, most of a block's size).
asio::awaitable<std::optional<json::value>> block_at(upstream::Forwarder& pool, std::uint64_t n,
                                                     std::uint64_t at) {
    json::array params{json::string(eth::to_quantity(n)), false};
    co_return co_await read_at(pool, "eth_getBlockByNumber", std::move(params), at);
}

}  // namespace

void TxManager::set_finality(std::function<std::optional<std::uint64_t>()> finalized) {
    finality_ = std::move(finalized);
}

void TxManager::reorged() {
    ++reorgs_;
    wake();
}

void TxManager::on_reopened(std::function<void(std::string parent, std::string sender)> callback) {
    on_reopened_ = std::move(callback);
}

std::optional<std::uint64_t> TxManager::final_block(std::uint64_t head) const {
    // Never above the believed head: one node's finalized tag is not the chain's word.
    if (finality_)
        if (auto f = finality_()) return std::min(*f, head);
    const std::uint64_t depth = config_.reorgs.finality_depth;
    if (!head || head < depth) return std::nullopt;
    return head - depth;
}

asio::awaitable<void> TxManager::watch_unfinalized(std::uint64_t head) {
    std::vector<std::shared_ptr<Entry>> list;
    {
        std::lock_guard lock(mu_);
        for (const auto& [hash, e] : mined_) list.push_back(e);
    }
    if (list.empty() || !head) co_return;
    const auto fin = final_block(head);
    const std::uint64_t reorgs = reorgs_;
    const bool after_reorg = reorgs != reorgs_checked_;
    // The blocks to look at: every one after a reorg (on a chain without reorgs that costs
    // nothing), and those about to be taken as final, which must be canonical first.
    std::map<std::uint64_t, std::vector<std::shared_ptr<Entry>>> by_block;
    for (const auto& e : list) {
        const std::uint64_t n = e->rec.block_number().value_or(0);
        if (after_reorg || (fin && n <= *fin)) by_block[n].push_back(e);
    }
    bool all_seen = true;
    std::vector<std::string> final_now;
    for (const auto& group : by_block) {
        const std::uint64_t number = group.first;
        if (stopped_) co_return;
        // The block at that height as a node at the chain's head has it: its hash, not a receipt,
        // proves a block gone (a node without a transaction index answers receipts with null),
        // and a node that has not reached the head may not have seen the reorg.
        const std::uint64_t at = std::max(head, number);
        const auto block = co_await block_at(pool_, number, at);
        const json::object* b = block ? block->if_object() : nullptr;
        const json::value* bh = b ? b->if_contains("hash") : nullptr;
        if (!bh || !bh->is_string()) {
            all_seen = false;  // no node can tell now: looked at again next round
            continue;
        }
        for (const auto& e : group.second) {
            if (e->rec.block_hash() == std::string_view(bh->get_string())) {
                if (fin && number <= *fin) final_now.push_back(e->rec.hash_hex());
                continue;
            }
            // Its block is gone: where is it now?
            json::array receipt_params{json::string(e->rec.hash_hex())};
            const auto receipt =
                co_await read_at(pool_, "eth_getTransactionReceipt", std::move(receipt_params), at);
            const json::object* r = receipt ? receipt->if_object() : nullptr;
            const json::value* rh = r ? r->if_contains("blockHash") : nullptr;
            if (!receipt || (r && (!rh || !rh->is_string() ||
                                   e->rec.block_hash() == std::string_view(rh->get_string())))) {
                all_seen = false;  // no answer, or one that contradicts the block's
                continue;
            }
            if (!co_await reopen(e, *receipt)) all_seen = false;
        }
    }
    if (!final_now.empty()) {
        store::JournalService::Operation op = [&](store::RawJournal& j) {
            j.mark_finalized(final_now);
        };
        const auto kept = co_await journal_.run(std::move(op));
        if (!kept) {
            spdlog::warn("chain {}: cannot journal that {} transaction(s) are final ({})",
                         config_.name, final_now.size(), kept.error());
        } else {
            std::lock_guard lock(mu_);
            for (const auto& text : final_now) {
                const auto h = detail::hash_key(text);
                if (!h) continue;
                if (auto it = mined_.find(*h); it != mined_.end()) {
                    it->second->rec.finalized = true;
                    mined_.erase(it);
                }
            }
        }
    }
    if (after_reorg && all_seen) reorgs_checked_ = reorgs;
}

asio::awaitable<bool> TxManager::reopen(std::shared_ptr<Entry> e, const json::value& receipt) {
    const std::string was =
        fmt::format("{} in block {} ({})", store::to_string(e->rec.state),
                    e->rec.block_number().value_or(0), e->rec.block_hash().value_or("?"));
    bool ok = false;
    const json::object* o = receipt.if_object();
    const auto number = o && o->contains("blockNumber") && o->at("blockNumber").is_string()
                            ? jsonrpc::parse_quantity(o->at("blockNumber").get_string())
                            : std::nullopt;
    if (o && number) {
        const std::string block_hash(o->at("blockHash").get_string());
        ok = co_await transition(
            e, TxState::confirming,
            fmt::format("a reorg before its block was final moved it: {}, now mined in block {} "
                        "({})",
                        was, *number, block_hash),
            false, block_hash, *number);
    } else {
        ok = co_await transition(
            e, TxState::broadcasting,
            fmt::format("a reorg before its block was final dropped it: {}; sending it again", was),
            false, std::nullopt, std::nullopt);
    }
    if (!ok) co_return false;
    spdlog::warn("chain {}: transaction {} (sender {} nonce {}) was {}: a reorg reopened it",
                 config_.name, e->rec.hash_hex(), e->rec.sender_hex(), e->rec.nonce, was);
    {
        std::lock_guard lock(mu_);
        mined_.erase(e->rec.hash);
        index(e);
        e->last_broadcast = {};
        e->checked_head = 0;
    }
    if (e->rec.parent() && on_reopened_) on_reopened_(*e->rec.parent(), e->rec.sender_hex());
    co_return true;
}

asio::awaitable<std::optional<json::value>> TxManager::receipt(const std::string& hash) {
    json::value params = json::array{json::string(hash)};
    // Real time, not clock_: a deadline for the nodes' call (asio timers, the HTTP client).
    upstream::Forwarded f = co_await pool_.forward("eth_getTransactionReceipt", std::move(params),
                                                   false, Clock::now() + std::chrono::seconds(10));
    co_return f.result_json();
}

asio::awaitable<void> TxManager::settle_used_nonce(std::shared_ptr<Entry> e) {
    // Dead only on the word of nodes at the head, with the nonce used confirmations deep: a
    // null receipt from a node behind proves nothing (and a managed sender would pay twice).
    // The attempts of the same managed transaction count as ours: one of them mined ends the
    // others as REPLACED.
    const std::string own = e->rec.hash_hex();
    std::vector<std::string> hashes{own};
    if (e->rec.parent()) {
        // From the journal: the one mined may be final and out of memory already.
        std::vector<store::TxRecord> attempts;
        store::JournalService::Operation op = [&](store::ManagedJournal& j) {
            attempts = j.attempts(*e->rec.parent());
        };
        const auto read = co_await journal_.run(std::move(op));
        if (!read) co_return;  // cannot tell now: the next round asks again
        for (const auto& a : attempts)
            if (a.hash != own) hashes.push_back(a.hash);
    }
    const NonceUse use = co_await nonce_use(pool_, e->rec.sender_hex(), e->rec.nonce, hashes,
                                            config_.tx.confirmations);
    switch (use.kind) {
        case NonceUse::Kind::unknown:
        case NonceUse::Kind::unused: co_return;  // cannot tell now: the next round asks again
        case NonceUse::Kind::ours:
            if (use.hash != own) {
                co_await transition(e, TxState::replaced, "replaced by " + use.hash);
                co_return;
            }
            co_await track(e, pool_.head().value_or(0), &use.receipt, true);
            co_return;
        case NonceUse::Kind::another: break;
    }
    co_await transition(e, TxState::failed,
                        fmt::format("nonce {} of {} was used by another transaction (seen at "
                                    "block {} by a node at the chain's head)",
                                    e->rec.nonce, e->rec.sender_hex(), use.seen_at));
}

asio::awaitable<void> TxManager::replace_attempts(std::string parent, std::string used_by) {
    std::vector<std::shared_ptr<Entry>> others;
    {
        const auto used = detail::hash_key(used_by);
        std::lock_guard lock(mu_);
        for (const auto& [hash, e] : by_hash_)
            if (e->rec.parent() == parent && (!used || hash != *used)) others.push_back(e);
    }
    for (auto& e : others) co_await transition(e, TxState::replaced, "replaced by " + used_by);
}

namespace {
// Blocks scan_new_blocks reads in one round; a head that moved further is not scanned.
constexpr std::uint64_t kScanBlocks = 16;
// A sent transaction that no block scanned held is still looked for this often (in rounds): a
// node's block that left one out, a reorg at the same height.
constexpr int kRecheckRounds = 30;
}  // namespace

asio::awaitable<void> TxManager::scan_new_blocks(std::uint64_t head) {
    auto text = [](const json::object* b, const char* key) -> std::optional<std::string_view> {
        const json::value* v = b ? b->if_contains(key) : nullptr;
        if (!v || !v->is_string()) return std::nullopt;
        return std::string_view(v->get_string());
    };
    const std::uint64_t reorgs = reorgs_;
    const std::uint64_t from = scanned_head_;
    std::string last = scanned_hash_;
    bool known = head && from && !last.empty() && head >= from && head - from <= kScanBlocks &&
                 reorgs == scanned_reorgs_;
    // From the block scanned last (still the one it was: no reorg at its height) to the head,
    // each the child of the one before: one branch, the one the last round saw grown.
    bool branch_changed = false;
    for (std::uint64_t n = from; known && n <= head && !stopped_; ++n) {
        const auto block = co_await block_at(pool_, n, head);
        const json::object* b = block ? block->if_object() : nullptr;
        const auto hash = text(b, "hash");
        const auto parent = text(b, "parentHash");
        const json::value* txs = b ? b->if_contains("transactions") : nullptr;
        if (!hash || (n == from ? *hash != last : !parent || *parent != last)) {
            known = false;  // not read, or another branch: nothing is known
            branch_changed = hash.has_value();
            break;
        }
        last = std::string(*hash);
        if (n == from) continue;
        if (!txs || !txs->is_array()) {
            known = false;
            break;
        }
        // Marked on the entries held here (what else the block holds is not kept).
        std::lock_guard lock(mu_);
        for (const auto& t : txs->get_array()) {
            const json::string* h = t.if_string();
            const auto key = h ? detail::hash_key(*h) : std::nullopt;
            if (!key) continue;
            if (auto it = by_hash_.find(*key); it != by_hash_.end()) it->second->in_block = true;
        }
    }
    if (!known && head && !stopped_) {
        // The next round scans from here: the head's block as it is now.
        const auto block = co_await block_at(pool_, head, head);
        const auto hash = text(block ? block->if_object() : nullptr, "hash");
        last = hash ? std::string(*hash) : std::string();
    }
    scanned_head_ = head;
    scanned_hash_ = last;
    scanned_reorgs_ = reorgs;
    std::lock_guard lock(mu_);
    scan_known_ = known;
    // Blocks the last rounds read are gone, maybe at the same height (the head did not move):
    // every sent transaction is looked for again, as after a head move.
    if (branch_changed)
        for (auto& held : by_hash_) held.second->checked_head = 0;
}

bool TxManager::receipt_due(const Entry& e, std::uint64_t head) const {
    // A receipt changes with the chain: ask when the head moved, and now and then regardless
    // (a reorg at the same height, a head that went back). A sent transaction, while the new
    // blocks are known (scan_new_blocks), only once one of them held it (every round from then
    // until its receipt is found), or rarely, in case. The fields are written by the dispatcher
    // and by clients' calls: under the lock.
    std::lock_guard lock(mu_);
    const auto now = clock_.now();
    if (now - e.last_broadcast >= config_.tx.rebroadcast_after) return true;
    if (e.rec.state == TxState::broadcasting && scan_known_ && head)
        return e.in_block || now - e.checked_at >= kRecheckRounds * config_.tx.poll_interval;
    return !(head && head == e.checked_head && now - e.checked_at < 5 * config_.tx.poll_interval);
}

asio::awaitable<std::unordered_map<std::string, json::value>> TxManager::prefetch_receipts(
    const std::vector<std::vector<std::shared_ptr<Entry>>>& senders, std::uint64_t head) {
    std::unordered_map<std::string, json::value> out;
    std::vector<std::string> hashes;
    for (const auto& list : senders)
        for (const auto& e : list) {
            const TxState st = state_of(*e);
            if ((st == TxState::broadcasting || st == TxState::confirming) && receipt_due(*e, head))
                hashes.push_back(e->rec.hash_hex());
        }
    // One call alone costs as much as a batch of many: thousands of sent transactions waiting
    // for their blocks would otherwise be thousands of calls a round.
    constexpr std::size_t kBatch = 100;
    std::size_t next = 0;
    while (next < hashes.size() && !stopped_) {
        // The calls are views of `params`, which is filled first and then left alone.
        std::vector<json::value> params;
        for (std::size_t i = next; i < hashes.size() && params.size() < kBatch; ++i)
            params.emplace_back(json::array{json::string(hashes[i])});
        std::vector<upstream::BatchCall> calls;
        calls.reserve(params.size());
        for (const auto& p : params)
            calls.push_back(upstream::BatchCall{"eth_getTransactionReceipt", &p});
        // Real time, not clock_: a deadline for the nodes' call (asio timers, the HTTP client).
        auto answered =
            co_await pool_.forward_batch(std::move(calls), Clock::now() + std::chrono::seconds(10));
        if (!answered || answered->replies.empty()) break;  // the rest are asked for alone
        for (std::size_t i = 0; i < answered->replies.size(); ++i) {
            const auto& reply = answered->replies[i];
            if (!reply || reply->is_error()) continue;
            json::error_code ec;
            json::value v = json::parse(*reply->result, ec);
            if (!ec) out.emplace(hashes[next + i], std::move(v));
        }
        next += answered->replies.size();
    }
    co_return out;
}

asio::awaitable<void> TxManager::track(std::shared_ptr<Entry> e, std::uint64_t head,
                                       const json::value* prefetched, bool due_anyway) {
    if (!due_anyway && !receipt_due(*e, head)) co_return;
    {
        std::lock_guard lock(mu_);
        e->checked_head = head;
        e->checked_at = clock_.now();
    }
    std::optional<json::value> r;
    if (prefetched) {
        r = *prefetched;
    } else {
        r = co_await receipt(e->rec.hash_hex());
    }
    if (!r) co_return;
    const json::object* receipt = r->if_object();
    if (!receipt) {
        // No receipt.
        if (state_of(*e) == TxState::confirming) {
            co_await transition(
                e, TxState::broadcasting,
                fmt::format("block {} ({}) no longer holds it (a reorg): sending it again",
                            e->rec.block_number().value_or(0), e->rec.block_hash().value_or("?")),
                false, std::nullopt, std::nullopt);
            std::lock_guard lock(mu_);
            e->last_broadcast = {};
        }
        bool resend = false;
        {
            std::lock_guard lock(mu_);
            resend = e->rec.state == TxState::broadcasting && !e->busy &&
                     clock_.now() - e->last_broadcast >= config_.tx.rebroadcast_after;
            if (resend) e->busy = true;
        }
        if (resend) {
            BroadcastResult b = co_await send(*e);
            {
                std::lock_guard lock(mu_);
                e->last_broadcast = clock_.now();
            }
            // Still busy while the verdict is written: nobody else sends it meanwhile.
            if (b.verdict == Broadcast::accepted)
                co_await transition(e, TxState::broadcasting, "sent again: " + b.detail, true);
            else if (b.verdict == Broadcast::nonce_used)
                co_await settle_used_nonce(e);
            else if (b.verdict == Broadcast::refused)
                co_await transition(e, TxState::failed, "refused when sent again: " + b.detail);
            std::lock_guard lock(mu_);
            e->busy = false;
        }
        co_return;
    }
    const json::value* bn = receipt->if_contains("blockNumber");
    const json::value* bh = receipt->if_contains("blockHash");
    if (!bn || !bn->is_string() || !bh || !bh->is_string()) co_return;  // pending receipt
    const auto number = jsonrpc::parse_quantity(bn->get_string());
    if (!number) co_return;
    const std::string block_hash(bh->get_string());
    const bool success = receipt->contains("status") && receipt->at("status") == "0x1";
    bool moved;
    {
        std::lock_guard lock(mu_);
        moved = e->rec.state != TxState::confirming || e->rec.block_hash() != block_hash;
    }
    if (moved) {
        std::string why = fmt::format("mined in block {} ({})", *number, block_hash);
        const bool ok =
            co_await transition(e, TxState::confirming, std::move(why), false, block_hash, *number);
        if (!ok) co_return;
    }
    head = std::max(head, *number);
    const std::uint64_t confirmations = head - *number + 1;
    if (confirmations < config_.tx.confirmations) co_return;
    if (success)
        co_await transition(e, TxState::completed,
                            fmt::format("mined in block {} ({}), {} confirmation(s)", *number,
                                        block_hash, confirmations),
                            false, block_hash, *number);
    else
        co_await transition(
            e, TxState::failed,
            fmt::format("reverted in block {} ({}): mined, its nonce is used", *number, block_hash),
            false, block_hash, *number);
}

}  // namespace gateway::txm
