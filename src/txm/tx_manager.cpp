#include "gateway/txm/nonce_proof.hpp"
#include "tx_manager_internal.hpp"

#include "gateway/metrics/metrics.hpp"
#include "gateway/rpc/methods.hpp"
#include "gateway/upstream/pool.hpp"
#include "gateway/util/text.hpp"
#include "gateway/util/wall_time.hpp"

#include <fmt/chrono.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <algorithm>
#include <chrono>

namespace gateway::txm {

using detail::error_reply;
using util::unix_ms;

namespace {

// A transaction the manager holds, decoded. Its signed bytes are kept once, in the record (the
// journal's copy), not again in the decoded form. Throws as eth::decode_transaction does.
eth::Transaction decode_held(std::span<const std::uint8_t> raw) {
    eth::Transaction tx = eth::decode_transaction(raw);
    tx.raw = {};
    tx.payload = {};
    return tx;
}

constexpr auto use_nothrow = asio::as_tuple(asio::use_awaitable);

}  // namespace

TxManager::TxManager(const config::ChainConfig& chain, upstream::ChainPool& pool,
                     store::JournalService& journal, metrics::Metrics* metrics,
                     asio::any_io_executor executor, const util::Clock& clock)
    : config_(chain),
      pool_(pool),
      journal_(journal),
      metrics_(metrics),
      strand_(asio::make_strand(executor)),
      timer_(strand_),
      clock_(clock) {}

TxManager::~TxManager() = default;

void TxManager::start() {
    running_ = true;
    asio::co_spawn(strand_, run(), [this](std::exception_ptr e) {
        if (e) {
            try {
                std::rethrow_exception(e);
            } catch (const std::exception& ex) {
                spdlog::critical("chain {}: the transaction dispatcher stopped: {}", config_.name,
                                 ex.what());
            }
        }
        running_ = false;
    });
}

void TxManager::stop() {
    stopped_ = true;
    asio::post(strand_, [this] { timer_.cancel(); });
}

void TxManager::wake() {
    wake_pending_ = true;
    asio::post(strand_, [this] { timer_.cancel(); });
}

bool TxManager::stopped() const {
    return stopped_ && !running_ && *recording_ == 0;
}

std::size_t TxManager::held() const {
    std::lock_guard lock(mu_);
    return by_hash_.size();
}

std::size_t TxManager::unfinalized() const {
    std::lock_guard lock(mu_);
    return mined_.size();
}

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

asio::awaitable<void> TxManager::run() {
    while (!stopped_) {
        const bool ok = co_await load();  // (not inside the loop condition: GCC 12)
        if (ok) break;
        timer_.expires_after(config_.tx.poll_interval);
        co_await timer_.async_wait(use_nothrow);
    }
    while (!stopped_) {
        wake_pending_ = false;
        co_await dispatch_round();
        if (stopped_ || wake_pending_) continue;
        timer_.expires_after(config_.tx.poll_interval);
        co_await timer_.async_wait(use_nothrow);
    }
}

asio::awaitable<bool> TxManager::load() {
    std::vector<store::TxRecord> records;
    std::vector<store::TxRecord> mined;
    try {
        store::JournalService::Operation op = [&](store::Journal& j) {
            records = j.unfinished();
            mined = j.unfinalized();
        };
        co_await journal_.run(std::move(op));
    } catch (const std::exception& e) {
        spdlog::error(
            "chain {}: cannot load the transaction journal: {}; writes are refused "
            "until it loads",
            config_.name, e.what());
        co_return false;
    }
    std::size_t count = 0;
    {
        std::lock_guard lock(mu_);
        for (auto& r : records) {
            if (r.chain != config_.name) continue;
            auto e = std::make_shared<Entry>();
            try {
                e->tx = decode_held(r.raw);
            } catch (const std::exception& ex) {
                spdlog::error(
                    "chain {}: journaled transaction {} cannot be decoded ({}); left "
                    "as it is",
                    config_.name, r.hash, ex.what());
                continue;
            }
            e->rec = std::move(r);
            e->maybe_taken = e->rec.state == TxState::queued;
            by_sender_[e->rec.sender][e->rec.nonce].insert(e->rec.hash);
            by_hash_[e->rec.hash] = e;
            // The caps hold across restarts: what a client had before counts again.
            if (!e->rec.parent && !e->rec.source.empty()) ++by_source_[e->rec.source];
            ++count;
        }
        for (auto& r : mined) {
            if (r.chain != config_.name || !r.block_number) continue;
            auto e = std::make_shared<Entry>();
            try {
                e->tx = decode_held(r.raw);
            } catch (const std::exception&) {
                continue;  // said when it was first loaded
            }
            e->rec = std::move(r);
            mined_[e->rec.hash] = e;
        }
    }
    loaded_ = true;
    if (count)
        spdlog::info("chain {}: {} unfinished transaction(s) from the journal carry on",
                     config_.name, count);
    co_return true;
}

void TxManager::forget(const std::string& hash) {
    // Called with mu_ held.
    auto it = by_hash_.find(hash);
    if (it == by_hash_.end()) return;
    const auto& rec = it->second->rec;
    auto s = by_sender_.find(rec.sender);
    if (s != by_sender_.end()) {
        auto n = s->second.find(rec.nonce);
        if (n != s->second.end()) {
            n->second.erase(hash);
            if (n->second.empty()) s->second.erase(n);
        }
        if (s->second.empty()) by_sender_.erase(s);
    }
    if (!rec.parent && !rec.source.empty()) {
        auto c = by_source_.find(rec.source);
        if (c != by_source_.end() && --c->second == 0) by_source_.erase(c);
    }
    by_hash_.erase(it);
}

bool TxManager::note_refusal(Entry& e, const std::string& why, util::Clock::time_point now) {
    // Called with mu_ held.
    e.last_refusal = why;
    // The time since the last refusal counts only when nodes answered all along: a round
    // without any (an outage, a restart) ended the streak (refused_since reset).
    if (e.refused_since && now > *e.refused_since) e.refused_for += now - *e.refused_since;
    e.refused_since = now;
    return config_.tx.expire_after.count() > 0 && !e.rec.parent &&
           e.refused_for >= config_.tx.expire_after;
}

asio::awaitable<void> TxManager::expire(std::shared_ptr<Entry> e) {
    std::string why;
    {
        std::lock_guard lock(mu_);
        why = fmt::format(
            "expired: the nodes refused it for {} min (tx.expire_after_ms {}); last refusal: {}",
            std::chrono::duration_cast<std::chrono::minutes>(e->refused_for).count(),
            config_.tx.expire_after.count(), e->last_refusal);
    }
    co_await transition(e, TxState::failed, std::move(why));
}

asio::awaitable<bool> TxManager::transition(std::shared_ptr<Entry> e, TxState state,
                                            std::string reason, bool count_broadcast,
                                            std::optional<std::string> block_hash,
                                            std::optional<std::uint64_t> block_number) {
    store::TxUpdate u;
    u.hash = e->rec.hash;
    u.state = state;
    u.reason = reason;
    u.at_ms = unix_ms();
    if (count_broadcast) u.broadcasts = e->rec.broadcasts + 1;
    u.set_block = state == TxState::confirming || state == TxState::completed ||
                  state == TxState::failed || state == TxState::broadcasting ||
                  block_hash.has_value();
    if (state == TxState::broadcasting) {
        // Not (or no longer, after a reorg) in a block.
        u.block_hash = block_hash;
        u.block_number = block_number;
    } else if (u.set_block) {
        u.block_hash = block_hash ? block_hash : e->rec.block_hash;
        u.block_number = block_number ? block_number : e->rec.block_number;
    }
    // Mined (it has a block) and final: final for good only once its block is.
    const bool mined = (state == TxState::completed || state == TxState::failed) &&
                       (u.set_block ? u.block_hash : e->rec.block_hash).has_value();
    u.finalized = store::is_final(state) && !mined;
    try {
        store::JournalService::Operation op = [&](store::Journal& j) { j.update(u); };
        co_await journal_.run(std::move(op));
    } catch (const std::exception& ex) {
        spdlog::error("chain {}: transaction {}: cannot journal {} ({}); will try again",
                      config_.name, e->rec.hash, store::to_string(state), ex.what());
        co_return false;
    }
    std::lock_guard lock(mu_);
    if (e->rec.state != state)
        spdlog::info("chain {}: transaction {} (sender {} nonce {}): {} -> {}: {}", config_.name,
                     e->rec.hash, e->rec.sender, e->rec.nonce, store::to_string(e->rec.state),
                     store::to_string(state), reason);
    e->rec.state = state;
    e->rec.reason = std::move(reason);
    e->rec.updated_ms = u.at_ms;
    if (u.broadcasts) e->rec.broadcasts = *u.broadcasts;
    if (u.set_block) {
        e->rec.block_hash = u.block_hash;
        e->rec.block_number = u.block_number;
    }
    e->rec.finalized = u.finalized;
    if (metrics_) metrics_->count_transaction(config_.name, store::to_string(state));
    if (store::is_final(state)) {
        forget(e->rec.hash);
        if (mined) mined_[e->rec.hash] = e;
    }
    co_return true;
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
        const std::uint64_t n = e->rec.block_number.value_or(0);
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
        json::array block_params{json::string(eth::to_quantity(number)), false};
        const auto block =
            co_await read_at(pool_, "eth_getBlockByNumber", std::move(block_params), at);
        const json::object* b = block ? block->if_object() : nullptr;
        const json::value* bh = b ? b->if_contains("hash") : nullptr;
        if (!bh || !bh->is_string()) {
            all_seen = false;  // no node can tell now: looked at again next round
            continue;
        }
        for (const auto& e : group.second) {
            if (e->rec.block_hash == std::string_view(bh->get_string())) {
                if (fin && number <= *fin) final_now.push_back(e->rec.hash);
                continue;
            }
            // Its block is gone: where is it now?
            json::array receipt_params{json::string(e->rec.hash)};
            const auto receipt =
                co_await read_at(pool_, "eth_getTransactionReceipt", std::move(receipt_params), at);
            const json::object* r = receipt ? receipt->if_object() : nullptr;
            const json::value* rh = r ? r->if_contains("blockHash") : nullptr;
            if (!receipt || (r && (!rh || !rh->is_string() ||
                                   e->rec.block_hash == std::string_view(rh->get_string())))) {
                all_seen = false;  // no answer, or one that contradicts the block's
                continue;
            }
            if (!co_await reopen(e, *receipt)) all_seen = false;
        }
    }
    if (!final_now.empty()) {
        try {
            store::JournalService::Operation op = [&](store::Journal& j) {
                j.mark_finalized(final_now);
            };
            co_await journal_.run(std::move(op));
            std::lock_guard lock(mu_);
            for (const auto& h : final_now) {
                if (auto it = mined_.find(h); it != mined_.end()) {
                    it->second->rec.finalized = true;
                    mined_.erase(it);
                }
            }
        } catch (const std::exception& ex) {
            spdlog::warn("chain {}: cannot journal that {} transaction(s) are final ({})",
                         config_.name, final_now.size(), ex.what());
        }
    }
    if (after_reorg && all_seen) reorgs_checked_ = reorgs;
}

asio::awaitable<bool> TxManager::reopen(std::shared_ptr<Entry> e, const json::value& receipt) {
    const std::string was =
        fmt::format("{} in block {} ({})", store::to_string(e->rec.state),
                    e->rec.block_number.value_or(0), e->rec.block_hash.value_or("?"));
    bool ok = false;
    const json::object* o = receipt.if_object();
    const auto number = o && o->contains("blockNumber") && o->at("blockNumber").is_string()
                            ? rpc::parse_quantity(o->at("blockNumber").get_string())
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
                 config_.name, e->rec.hash, e->rec.sender, e->rec.nonce, was);
    {
        std::lock_guard lock(mu_);
        mined_.erase(e->rec.hash);
        by_sender_[e->rec.sender][e->rec.nonce].insert(e->rec.hash);
        by_hash_[e->rec.hash] = e;
        e->last_broadcast = {};
        e->checked_head = 0;
    }
    if (e->rec.parent && on_reopened_) on_reopened_(*e->rec.parent, e->rec.sender);
    co_return true;
}

asio::awaitable<TxManager::BroadcastResult> TxManager::send(const Entry& e,
                                                            const eth::Bytes* network) {
    BroadcastResult out;
    // A blob transaction goes out with its sidecar, which only the journal holds; read for this
    // broadcast and let go after it.
    std::optional<eth::Bytes> loaded;
    if (e.tx.type == eth::TxType::blob && !network) {
        try {
            store::JournalService::Operation op = [&](store::Journal& j) {
                loaded = j.network_form(e.rec.hash);
            };
            co_await journal_.run(std::move(op));
        } catch (const std::exception& ex) {
            out.detail =
                fmt::format("its blob sidecar cannot be read from the journal ({})", ex.what());
            co_return out;
        }
        if (!loaded) {
            // Nothing can send it without its blobs; the client can, by sending it again.
            out.verdict = Broadcast::refused;
            out.detail =
                "its blob sidecar is not in the journal: send its network form again to retry";
            out.node_reply = error_reply(jsonrpc::ErrorCode::internal_error,
                                         "invalid transaction: " + out.detail);
            co_return out;
        }
        network = &*loaded;
    }
    const std::string raw = eth::to_hex(network ? *network : e.rec.raw);
    json::value params = json::array{json::string(raw)};  // (GCC 12: no braces inside co_await)
    auto deliveries = co_await pool_.broadcast("eth_sendRawTransaction", std::move(params),
                                               config_.tx.broadcast_fanout,
                                               Clock::now() + std::chrono::seconds(10));
    if (deliveries.empty()) {
        out.detail = "no upstream admits a call now";
        co_return out;
    }
    std::vector<std::string> accepted;
    std::optional<BroadcastResult> refused;
    std::optional<BroadcastResult> used;
    std::string not_now;
    for (auto& d : deliveries) {
        const auto& a = d.attempt;
        if (a.kind == upstream::Attempt::Kind::answered && a.reply) {
            if (!a.reply->is_error()) {
                accepted.push_back(d.upstream);
                continue;
            }
            const auto verdict =
                upstream::classify_write_refusal(a.reply->error.code, a.reply->error.message);
            const std::string detail =
                fmt::format("{}: {} ({})", d.upstream,
                            util::utf8_prefix(a.reply->error.message, 300), a.reply->error.code);
            switch (verdict) {
                case upstream::WriteVerdict::accepted: accepted.push_back(d.upstream); break;
                case upstream::WriteVerdict::nonce_too_low:
                    used = BroadcastResult{Broadcast::nonce_used, a.reply, detail, d.upstream};
                    break;
                case upstream::WriteVerdict::refused:
                case upstream::WriteVerdict::replacement_underpriced:
                    refused = BroadcastResult{Broadcast::refused, a.reply, detail, d.upstream};
                    break;
                case upstream::WriteVerdict::retry_later:
                    not_now += (not_now.empty() ? "" : "; ") + detail;
                    out.refusal += (out.refusal.empty() ? "" : "; ") + detail;
                    break;
            }
            continue;
        }
        not_now += fmt::format("{}{}: {}", not_now.empty() ? "" : "; ", d.upstream, a.detail);
    }
    if (!accepted.empty()) {
        out.verdict = Broadcast::accepted;
        out.upstream = fmt::format("{}", fmt::join(accepted, ","));
        out.detail = "accepted by " + out.upstream;
        co_return out;
    }
    if (used) co_return std::move(*used);
    if (refused) co_return std::move(*refused);
    out.detail = not_now;
    co_return out;  // not_now, with `refusal` when a node answered
}

asio::awaitable<std::optional<json::value>> TxManager::receipt(const std::string& hash) {
    json::value params = json::array{json::string(hash)};
    upstream::Forwarded f = co_await pool_.forward("eth_getTransactionReceipt", std::move(params),
                                                   false, Clock::now() + std::chrono::seconds(10));
    if (f.outcome != upstream::Forwarded::Outcome::answered || f.reply.is_error())
        co_return std::nullopt;
    json::error_code ec;
    json::value v = json::parse(*f.reply.result, ec);
    if (ec) co_return std::nullopt;
    co_return v;
}

asio::awaitable<void> TxManager::settle_used_nonce(std::shared_ptr<Entry> e) {
    // Dead only on the word of nodes at the head, with the nonce used confirmations deep: a
    // null receipt from a node behind proves nothing (and a managed sender would pay twice).
    // The attempts of the same managed transaction count as ours: one of them mined ends the
    // others as REPLACED.
    std::vector<std::string> hashes{e->rec.hash};
    if (e->rec.parent) {
        // From the journal: the one mined may be final and out of memory already.
        std::vector<store::TxRecord> attempts;
        try {
            store::JournalService::Operation op = [&](store::Journal& j) {
                attempts = j.attempts(*e->rec.parent);
            };
            co_await journal_.run(std::move(op));
        } catch (const std::exception&) {
            co_return;  // cannot tell now: the next round asks again
        }
        for (const auto& a : attempts)
            if (a.hash != e->rec.hash) hashes.push_back(a.hash);
    }
    const NonceUse use =
        co_await nonce_use(pool_, e->rec.sender, e->rec.nonce, hashes, config_.tx.confirmations);
    switch (use.kind) {
        case NonceUse::Kind::unknown:
        case NonceUse::Kind::unused: co_return;  // cannot tell now: the next round asks again
        case NonceUse::Kind::ours:
            if (use.hash != e->rec.hash) {
                co_await transition(e, TxState::replaced, "replaced by " + use.hash);
                co_return;
            }
            co_await track(e, pool_.head().value_or(0), &use.receipt);
            co_return;
        case NonceUse::Kind::another: break;
    }
    co_await transition(e, TxState::failed,
                        fmt::format("nonce {} of {} was used by another transaction (seen at "
                                    "block {} by a node at the chain's head)",
                                    e->rec.nonce, e->rec.sender, use.seen_at));
}

asio::awaitable<void> TxManager::replace_attempts(std::string parent, std::string used_by) {
    std::vector<std::shared_ptr<Entry>> others;
    {
        std::lock_guard lock(mu_);
        for (const auto& [hash, e] : by_hash_)
            if (e->rec.parent == parent && hash != used_by) others.push_back(e);
    }
    for (auto& e : others) co_await transition(e, TxState::replaced, "replaced by " + used_by);
}

TxState TxManager::state_of(const Entry& e) const {
    std::lock_guard lock(mu_);
    return e.rec.state;
}

bool TxManager::receipt_due(const Entry& e, std::uint64_t head) const {
    // A receipt changes with the chain: ask when the head moved, and now and then regardless
    // (a reorg at the same height, a head that went back). The fields are written by the
    // dispatcher and by clients' calls: under the lock.
    std::lock_guard lock(mu_);
    const auto now = Clock::now();
    return !(head && head == e.checked_head && now - e.checked_at < 5 * config_.tx.poll_interval &&
             now - e.last_broadcast < config_.tx.rebroadcast_after);
}

asio::awaitable<std::unordered_map<std::string, json::value>> TxManager::prefetch_receipts(
    const std::vector<std::vector<std::shared_ptr<Entry>>>& senders, std::uint64_t head) {
    std::unordered_map<std::string, json::value> out;
    std::vector<std::string> hashes;
    for (const auto& list : senders)
        for (const auto& e : list) {
            const TxState st = state_of(*e);
            if ((st == TxState::broadcasting || st == TxState::confirming) && receipt_due(*e, head))
                hashes.push_back(e->rec.hash);
        }
    // One call alone costs as much as a batch of many: thousands of sent transactions waiting
    // for their blocks would otherwise be thousands of calls a round.
    constexpr std::size_t kBatch = 100;
    std::size_t next = 0;
    while (next < hashes.size() && !stopped_) {
        std::vector<upstream::ChainPool::BatchCall> calls;
        for (std::size_t i = next; i < hashes.size() && calls.size() < kBatch; ++i) {
            json::value params = json::array{json::string(hashes[i])};
            calls.push_back(
                upstream::ChainPool::BatchCall{"eth_getTransactionReceipt", std::move(params)});
        }
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
                                       const json::value* prefetched) {
    if (!receipt_due(*e, head)) co_return;
    {
        std::lock_guard lock(mu_);
        e->checked_head = head;
        e->checked_at = Clock::now();
    }
    std::optional<json::value> r;
    if (prefetched) {
        r = *prefetched;
    } else {
        r = co_await receipt(e->rec.hash);
    }
    if (!r) co_return;
    const json::object* receipt = r->if_object();
    if (!receipt) {
        // No receipt.
        if (state_of(*e) == TxState::confirming) {
            co_await transition(
                e, TxState::broadcasting,
                fmt::format("block {} ({}) no longer holds it (a reorg): sending it again",
                            e->rec.block_number.value_or(0), e->rec.block_hash.value_or("?")),
                false, std::nullopt, std::nullopt);
            std::lock_guard lock(mu_);
            e->last_broadcast = {};
        }
        bool resend = false;
        {
            std::lock_guard lock(mu_);
            resend = e->rec.state == TxState::broadcasting && !e->busy &&
                     Clock::now() - e->last_broadcast >= config_.tx.rebroadcast_after;
            if (resend) e->busy = true;
        }
        if (resend) {
            BroadcastResult b = co_await send(*e);
            {
                std::lock_guard lock(mu_);
                e->last_broadcast = Clock::now();
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
    const auto number = rpc::parse_quantity(bn->get_string());
    if (!number) co_return;
    const std::string block_hash(bh->get_string());
    const bool success = receipt->contains("status") && receipt->at("status") == "0x1";
    bool moved;
    {
        std::lock_guard lock(mu_);
        moved = e->rec.state != TxState::confirming || e->rec.block_hash != block_hash;
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

asio::awaitable<void> TxManager::dispatch_round() {
    struct Count {
        std::atomic<std::uint64_t>& n;
        ~Count() { ++n; }
    } count{rounds_};
    if (metrics_) {
        metrics_->set_transactions_held(config_.name, static_cast<double>(held()));
        metrics_->set_transactions_unfinalized(config_.name, static_cast<double>(unfinalized()));
    }
    if (!pool_.ready()) {
        // No node to refuse anything: the time until one answers again does not count towards
        // tx.expire_after_ms (a queued transaction is kept however long an outage lasts).
        std::lock_guard lock(mu_);
        for (auto& [hash, e] : by_hash_) e->refused_since.reset();
        co_return;
    }
    co_await watch_unfinalized(pool_.head().value_or(0));
    // A snapshot: per sender, its transactions in nonce order.
    std::vector<std::vector<std::shared_ptr<Entry>>> senders;
    {
        std::lock_guard lock(mu_);
        for (const auto& [sender, nonces] : by_sender_) {
            auto& list = senders.emplace_back();
            for (const auto& [nonce, hashes] : nonces)
                for (const auto& h : hashes)
                    if (auto it = by_hash_.find(h); it != by_hash_.end())
                        list.push_back(it->second);
        }
    }
    const std::uint64_t head = pool_.head().value_or(0);
    const auto receipts = co_await prefetch_receipts(senders, head);
    // Why a sender's later nonces wait this round.
    enum class Hold { none, refused, unreachable, other };
    for (auto& list : senders) {
        Hold hold = Hold::none;
        std::string held_back;  // with Hold::refused: what the nodes said of the earlier nonce
        for (auto& e : list) {
            if (stopped_) co_return;
            const TxState st = state_of(*e);
            if (hold != Hold::none) {
                // Held back behind an earlier nonce. One the nodes refuse holds the later ones
                // back as long, so they are refused too and expire with it (a nonce gap once it
                // is gone); when no node answered, their time does not count either.
                if (st != TxState::queued) continue;
                bool expired = false;
                {
                    std::lock_guard lock(mu_);
                    if (hold == Hold::refused)
                        expired = note_refusal(*e, held_back, clock_.now());
                    else if (hold == Hold::unreachable)
                        e->refused_since.reset();
                }
                if (expired) co_await expire(e);
                continue;
            }
            if (st != TxState::queued) {
                if (st == TxState::broadcasting || st == TxState::confirming) {
                    auto it = receipts.find(e->rec.hash);
                    co_await track(e, head, it == receipts.end() ? nullptr : &it->second);
                }
                continue;
            }
            {
                std::lock_guard lock(mu_);
                if (e->busy) {  // a client's call is sending it; later nonces wait
                    hold = Hold::other;
                    continue;
                }
                e->busy = true;
            }
            BroadcastResult b = co_await send(*e);
            {
                std::lock_guard lock(mu_);
                e->last_broadcast = Clock::now();
            }
            // Still busy while the verdict is written: a client's call does not send it again
            // meanwhile.
            struct Release {
                TxManager* self;
                Entry* e;
                ~Release() {
                    std::lock_guard lock(self->mu_);
                    e->busy = false;
                }
            } release{this, e.get()};
            bool go_on = true;
            bool expired = false;
            switch (b.verdict) {
                case Broadcast::accepted:
                    go_on = co_await transition(e, TxState::broadcasting, b.detail, true);
                    break;
                case Broadcast::refused:
                    co_await transition(e, TxState::failed, "refused: " + b.detail);
                    break;
                case Broadcast::nonce_used: co_await settle_used_nonce(e); break;
                case Broadcast::not_now: {
                    std::lock_guard lock(mu_);
                    e->rec.reason = "waiting for a node: " + b.detail;
                    go_on = false;
                    if (b.refusal.empty()) {
                        e->refused_since.reset();
                        hold = Hold::unreachable;
                        break;
                    }
                    expired = note_refusal(*e, b.refusal, clock_.now());
                    hold = Hold::refused;
                    held_back = fmt::format("held back behind nonce {}, which the nodes refuse: {}",
                                            e->rec.nonce, b.refusal);
                    break;
                }
            }
            if (expired) co_await expire(e);
            if (!go_on && hold == Hold::none) hold = Hold::other;
        }
    }
}

}  // namespace gateway::txm
