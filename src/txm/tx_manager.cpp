// TxManager's core: construction, start and the journal load, the dispatcher loop that
// broadcasts queued transactions in nonce order per sender, the broadcast itself, state
// transitions (journal first) and expiry. Raw intake is in tx_intake.cpp, receipts and reorgs in
// tx_receipts.cpp, the read-only views in tx_queries.cpp.

#include "tx_manager_internal.hpp"

#include "gateway/metrics/metrics.hpp"
#include "gateway/upstream/forwarder.hpp"
#include "gateway/util/nothrow.hpp"
#include "gateway/util/text.hpp"
#include "gateway/util/wall_time.hpp"

#include <cstring>
#include <random>

#include <fmt/chrono.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <chrono>

namespace gateway::txm {

using detail::error_reply;
using util::unix_ms;

namespace {

using util::use_nothrow;

}  // namespace

TxManager::TxManager(const config::ChainConfig& chain, upstream::Forwarder& pool,
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

std::int64_t TxManager::oldest_unfinished_ms() const {
    std::lock_guard lock(mu_);
    std::int64_t oldest = 0;
    for (const auto& [hash, e] : by_hash_)
        if (oldest == 0 || e->rec.created_ms < oldest) oldest = e->rec.created_ms;
    return oldest;
}

std::size_t TxManager::unfinalized() const {
    std::lock_guard lock(mu_);
    return mined_.size();
}

asio::awaitable<void> TxManager::run() {
    while (!stopped_) {
        // A standby of a shared journal does not load it: another gateway dispatches what it
        // holds, until this one takes over.
        bool ok = false;
        if (journal_.dispatching()) ok = co_await load();  // (not in the loop condition: GCC 12)
        if (ok) break;
        timer_.expires_after(
            std::min<std::chrono::milliseconds>(config_.tx.poll_interval, kHandoffPoll));
        co_await timer_.async_wait(use_nothrow);
    }
    while (!stopped_) {
        wake_pending_ = false;
        co_await take_handoffs();
        co_await dispatch_round();
        if (stopped_ || wake_pending_) continue;
        // Handed over by the standbys (a shared journal) more often than a round: a transaction
        // one of them accepted is sent within kHandoffPoll.
        const auto until = std::chrono::steady_clock::now() + config_.tx.poll_interval;
        for (;;) {
            timer_.expires_at(journal_.shared()
                                  ? std::min(until, std::chrono::steady_clock::now() + kHandoffPoll)
                                  : until);
            co_await timer_.async_wait(use_nothrow);
            if (stopped_ || wake_pending_ || std::chrono::steady_clock::now() >= until) break;
            const bool handed = co_await take_handoffs();
            if (handed) break;
        }
    }
}

asio::awaitable<bool> TxManager::take_handoffs() {
    if (!journal_.shared()) co_return false;
    std::vector<store::TxRecord> records;
    // What this operation took, handed back should its commit fail or come too late.
    auto taken = std::make_shared<std::vector<store::Handoff>>();
    store::JournalService::Operation op = [&, taken](store::JournalView& j) {
        *taken = j.take_handoffs(config_.name, false, kHandoffBatch);
        for (const auto& h : *taken)
            if (auto r = j.find(h.key); r && !store::is_final(r->state) && !r->parent)
                records.push_back(std::move(*r));
    };
    auto undo = hand_back(taken);  // named: not a temporary in the co_await (GCC 12)
    const auto read = co_await journal_.run(std::move(op), std::move(undo));
    if (!read) co_return false;  // left in the journal, or handed back: taken at the next try
    std::size_t count = 0;
    auto later = std::make_shared<std::vector<store::Handoff>>();  // held still: taken later
    {
        std::lock_guard lock(mu_);
        for (auto& r : records) {
            const auto h = detail::hash_key(r.hash);
            if (!h) {
                spdlog::error("chain {}: handed-over transaction {} has no hash; not held",
                              config_.name, r.hash);
                continue;
            }
            if (auto held = by_hash_.find(*h); held != by_hash_.end()) {
                // Known here already: loaded when this gateway took over, or sent to it too.
                // Taken again later (handed back) when this gateway may still let it go without
                // having journaled it: one it has finished but not yet let go of (a standby
                // queued it again, sent again after it failed), or one a client's send holds
                // while its journal operation is on the way (which may fail).
                if (store::is_final(held->second->rec.state) || held->second->busy)
                    later->push_back(store::Handoff{config_.name, false, r.hash, r.sender});
                continue;
            }
            auto e = std::make_shared<Entry>();
            const std::string hash = r.hash;
            if (!hold(*e, std::move(r))) {
                spdlog::error("chain {}: handed-over transaction {} has no sender; not held",
                              config_.name, hash);
                continue;
            }
            e->maybe_taken = e->rec.state == TxState::queued;
            index(e);
            ++count;
        }
    }
    if (!later->empty()) {
        auto again = hand_back(later);
        co_await journal_.run(std::move(again));
    }
    if (count)
        spdlog::debug("chain {}: {} transaction(s) accepted by a standby taken over", config_.name,
                      count);
    co_return !records.empty();
}

asio::awaitable<bool> TxManager::load() {
    std::vector<store::TxRecord> records;
    std::vector<store::TxRecord> mined;
    store::JournalService::Operation op = [&](store::RawJournal& j) {
        records = j.unfinished();
        mined = j.unfinalized();
    };
    const auto read = co_await journal_.run(std::move(op));
    if (!read) {
        spdlog::error(
            "chain {}: cannot load the transaction journal: {}; writes are refused "
            "until it loads",
            config_.name, read.error());
        co_return false;
    }
    std::size_t count = 0;
    {
        std::lock_guard lock(mu_);
        // Not decoded again (a signature's key recovery is about 40 µs, seconds for a full
        // queue): the journal holds what was checked when it came in.
        auto held = [&](store::TxRecord& r) -> std::shared_ptr<Entry> {
            auto e = std::make_shared<Entry>();
            if (hold(*e, std::move(r))) return e;
            // hold() took nothing from it.
            spdlog::error("chain {}: journal record {} has no hash or sender; not held",
                          config_.name, r.hash);
            return nullptr;
        };
        for (auto& r : records) {
            if (r.chain != config_.name) continue;
            auto e = held(r);
            if (!e) continue;
            e->maybe_taken = e->rec.state == TxState::queued;
            index(e);  // the caps hold across restarts: what a client had before counts again
            ++count;
        }
        for (auto& r : mined) {
            if (r.chain != config_.name || !r.block_number) continue;
            if (auto e = held(r)) index_mined(e);
        }
    }
    loaded_ = true;
    if (count)
        spdlog::info("chain {}: {} unfinished transaction(s) from the journal carry on",
                     config_.name, count);
    co_return true;
}

void TxManager::index(const std::shared_ptr<Entry>& e) {
    // Called with mu_ held. Another entry held under the same hash (a reopened transaction meeting
    // the same bytes sent again) leaves every index first: no view of it or pointer to it stays.
    forget(e->rec.hash);
    by_sender_[e->rec.sender].slots.insert(SenderSlot{e->rec.nonce, e.get()});
    by_hash_.emplace(e->rec.hash, e);
    note_waiting(*e);  // its flag is clear: forget() clears it, and only an indexed entry sets it
    if (!e->rec.parent() && !e->rec.source().empty()) ++by_source_[e->rec.source()];
}

std::shared_ptr<const HeldOrigin> TxManager::origin_of(std::optional<std::string> parent,
                                                       std::string client, std::string source) {
    // Called with mu_ held.
    if (!parent && client.empty() && source.empty()) return nullptr;
    // Each field after its length: no two triples make one key, whatever bytes they hold.
    std::string key;
    auto add = [&key](std::string_view field) {
        key.append(std::to_string(field.size())).append(1, ':').append(field);
    };
    add(client);
    add(source);
    if (parent) add(*parent);
    auto& slot = origins_[key];
    if (auto held = slot.lock()) return held;
    auto made = std::make_shared<const HeldOrigin>(
        HeldOrigin{std::move(parent), std::move(client), std::move(source)});
    slot = made;
    // Those no transaction holds any more leave as the map doubles: a client that comes and
    // goes (or an attacker's many addresses) cannot grow it for good.
    if (origins_.size() > 2 * origins_swept_at_ + 64) {
        std::erase_if(origins_, [](const auto& kv) { return kv.second.expired(); });
        origins_swept_at_ = origins_.size();
    }
    return made;
}

bool TxManager::hold(Entry& e, store::TxRecord&& r) {
    // Called with mu_ held.
    const auto hash = detail::hash_key(r.hash);
    const auto sender = detail::address_key(r.sender);
    if (!hash || !sender) return false;
    HeldRecord& h = e.rec;
    h.hash = *hash;
    h.sender = *sender;
    h.nonce = r.nonce;
    h.raw = std::move(r.raw);
    h.reason = std::move(r.reason);
    h.created_ms = r.created_ms;
    h.updated_ms = r.updated_ms;
    h.broadcasts = r.broadcasts;
    h.state = r.state;
    h.finalized = r.finalized;
    h.origin = origin_of(std::move(r.parent), std::move(r.client), std::move(r.source));
    h.set_block(std::move(r.block_hash), r.block_number);
    return true;
}

std::size_t TxManager::HashBucket::operator()(const eth::Hash& h) const noexcept {
    static const std::uint64_t seed = [] {
        std::random_device rd;
        return (std::uint64_t{rd()} << 32) ^ rd();
    }();
    std::uint64_t a = 0;
    std::uint64_t b = 0;
    std::memcpy(&a, h.data(), sizeof a);
    std::memcpy(&b, h.data() + 24, sizeof b);
    std::uint64_t v = (a ^ seed) * 0x9e3779b97f4a7c15ULL;
    v ^= b + (v >> 29);
    return static_cast<std::size_t>(v * 0xbf58476d1ce4e5b9ULL ^ (v >> 32));
}

store::TxRecord TxManager::record_of(const Entry& e) const {
    const HeldRecord& h = e.rec;
    store::TxRecord r;
    r.hash = h.hash_hex();
    r.chain = config_.name;
    r.chain_id = config_.chain_id;
    r.sender = h.sender_hex();
    r.nonce = h.nonce;
    r.raw = h.raw;
    r.state = h.state;
    r.reason = h.reason;
    r.created_ms = h.created_ms;
    r.updated_ms = h.updated_ms;
    r.broadcasts = h.broadcasts;
    r.block_hash = h.block_hash();
    r.block_number = h.block_number();
    r.parent = h.parent();
    r.client = h.client();
    r.finalized = h.finalized;
    r.source = h.source();
    return r;
}

bool TxManager::ByNonceThenHash::operator()(const SenderSlot& a, const SenderSlot& b) const {
    if (a.nonce != b.nonce) return a.nonce < b.nonce;
    // No entry: before every transaction of its nonce (a key for lower_bound).
    if (!a.entry || !b.entry) return !a.entry && b.entry;
    return a.entry->rec.hash < b.entry->rec.hash;
}

void TxManager::note_waiting(Entry& e) {
    // Called with mu_ held. Only the entry held under its hash counts (not a mined one in
    // mined_, nor one a reorg is reopening before index() takes it).
    const bool waiting = e.rec.state == TxState::queued && !e.taken;
    if (waiting == e.waiting) return;
    auto held = by_hash_.find(e.rec.hash);
    if (held == by_hash_.end() || held->second.get() != &e) return;
    auto s = by_sender_.find(e.rec.sender);
    if (s == by_sender_.end()) return;
    auto& w = s->second.waiting;
    if (waiting) {
        w.insert(e.rec.nonce);
    } else if (auto n = w.find(e.rec.nonce); n != w.end()) {
        w.erase(n);
    }
    e.waiting = waiting;
}

void TxManager::index_mined(const std::shared_ptr<Entry>& e) {
    // Called with mu_ held.
    mined_.insert_or_assign(e->rec.hash, e);
}

void TxManager::forget(const eth::Hash& hash, const Entry* only) {
    // Called with mu_ held. `hash` may be the entry's own: nothing reads it after the entry's
    // last index lets go of it.
    auto it = by_hash_.find(hash);
    if (it == by_hash_.end() || (only && it->second.get() != only)) return;
    const auto& rec = it->second->rec;
    auto s = by_sender_.find(rec.sender);
    if (s != by_sender_.end()) {
        s->second.slots.erase(SenderSlot{rec.nonce, it->second.get()});
        if (it->second->waiting) {
            auto w = s->second.waiting.find(rec.nonce);
            if (w != s->second.waiting.end()) s->second.waiting.erase(w);
            it->second->waiting = false;
        }
        if (s->second.slots.empty()) by_sender_.erase(s);
    }
    if (!rec.parent() && !rec.source().empty()) {
        auto c = by_source_.find(rec.source());
        if (c != by_source_.end() && --c->second == 0) by_source_.erase(c);
    }
    by_hash_.erase(it);
}

bool TxManager::note_refusal(Entry& e, const std::string& why, util::Clock::time_point now) {
    // Called with mu_ held.
    if (!e.refusal) e.refusal = std::make_unique<Entry::Refusal>();
    Entry::Refusal& r = *e.refusal;
    r.last_refusal = why;
    // The time since the last refusal counts only when nodes answered all along: a round
    // without any (an outage, a restart) ended the streak (refused_since reset).
    if (r.refused_since && now > *r.refused_since) r.refused_for += now - *r.refused_since;
    r.refused_since = now;
    return config_.tx.expire_after.count() > 0 && !e.rec.parent() &&
           r.refused_for >= config_.tx.expire_after;
}

asio::awaitable<void> TxManager::expire(std::shared_ptr<Entry> e) {
    std::string why;
    {
        std::lock_guard lock(mu_);
        const Entry::Refusal none;
        const Entry::Refusal& r = e->refusal ? *e->refusal : none;
        why = fmt::format(
            "expired: the nodes refused it for {} min (tx.expire_after_ms {}); last refusal: {}",
            std::chrono::duration_cast<std::chrono::minutes>(r.refused_for).count(),
            config_.tx.expire_after.count(), r.last_refusal);
    }
    co_await transition(e, TxState::failed, std::move(why));
}

asio::awaitable<bool> TxManager::transition(std::shared_ptr<Entry> e, TxState state,
                                            std::string reason, bool count_broadcast,
                                            std::optional<std::string> block_hash,
                                            std::optional<std::uint64_t> block_number) {
    store::TxUpdate u;
    u.hash = e->rec.hash_hex();
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
        u.block_hash = block_hash ? block_hash : e->rec.block_hash();
        u.block_number = block_number ? block_number : e->rec.block_number();
    }
    // Mined (it has a block) and final: final for good only once its block is.
    const bool mined = (state == TxState::completed || state == TxState::failed) &&
                       (u.set_block ? u.block_hash : e->rec.block_hash()).has_value();
    u.finalized = store::is_final(state) && !mined;
    store::JournalService::Operation op = [&](store::RawJournal& j) { j.update(u); };
    const auto kept = co_await journal_.run(std::move(op));
    if (!kept) {
        spdlog::error("chain {}: transaction {}: cannot journal {} ({}); will try again",
                      config_.name, e->rec.hash_hex(), store::to_string(state), kept.error());
        co_return false;
    }
    std::lock_guard lock(mu_);
    if (e->rec.state != state)
        spdlog::info("chain {}: transaction {} (sender {} nonce {}): {} -> {}: {}", config_.name,
                     u.hash, e->rec.sender_hex(), e->rec.nonce, store::to_string(e->rec.state),
                     store::to_string(state), reason);
    e->rec.state = state;
    if (state != TxState::broadcasting) e->in_block = false;
    note_waiting(*e);
    e->rec.reason = std::move(reason);
    e->rec.updated_ms = u.at_ms;
    if (u.broadcasts) e->rec.broadcasts = *u.broadcasts;
    if (u.set_block) e->rec.set_block(u.block_hash, u.block_number);
    e->rec.finalized = u.finalized;
    if (metrics_) metrics_->count_transaction(config_.name, store::to_string(state));
    if (store::is_final(state)) {
        forget(e->rec.hash, e.get());
        if (mined) index_mined(e);
    }
    co_return true;
}

asio::awaitable<TxManager::BroadcastResult> TxManager::send(const Entry& e,
                                                            const eth::Bytes* network) {
    BroadcastResult out;
    // A blob transaction goes out with its sidecar, which only the journal holds; read for this
    // broadcast and let go after it.
    std::optional<eth::Bytes> loaded;
    if (detail::is_blob(e.rec) && !network) {
        store::JournalService::Operation op = [&](store::RawJournal& j) {
            loaded = j.network_form(e.rec.hash_hex());
        };
        const auto read = co_await journal_.run(std::move(op));
        if (!read) {
            out.detail =
                fmt::format("its blob sidecar cannot be read from the journal ({})", read.error());
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
    // Real time, not clock_: a deadline for the nodes' call (asio timers, the HTTP client).
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

TxState TxManager::state_of(const Entry& e) const {
    std::lock_guard lock(mu_);
    return e.rec.state;
}

asio::awaitable<void> TxManager::dispatch_round() {
    struct Count {
        std::atomic<std::uint64_t>& n;
        ~Count() { ++n; }
    } count{rounds_};
    if (metrics_) {
        metrics_->set_transactions_held(config_.name, static_cast<double>(held()));
        metrics_->set_oldest_unfinished(config_.name, oldest_unfinished_ms());
        metrics_->set_transactions_unfinalized(config_.name, static_cast<double>(unfinalized()));
    }
    if (!pool_.ready()) {
        // No node to refuse anything: the time until one answers again does not count towards
        // tx.expire_after_ms (a queued transaction is kept however long an outage lasts).
        std::lock_guard lock(mu_);
        for (auto& [hash, e] : by_hash_) e->refusals_interrupted();
        co_return;
    }
    co_await watch_unfinalized(pool_.head().value_or(0));
    // A snapshot: per sender, its transactions in nonce order.
    std::vector<std::vector<std::shared_ptr<Entry>>> senders;
    bool any_sent = false;  // BROADCASTING: followed by the blocks that may hold them
    {
        std::lock_guard lock(mu_);
        for (const auto& [sender, txs] : by_sender_) {
            auto& list = senders.emplace_back();
            list.reserve(txs.slots.size());
            for (const SenderSlot& slot : txs.slots)
                if (auto it = by_hash_.find(slot.entry->rec.hash); it != by_hash_.end()) {
                    any_sent = any_sent || it->second->rec.state == TxState::broadcasting;
                    list.push_back(it->second);
                }
        }
    }
    const std::uint64_t head = pool_.head().value_or(0);
    if (any_sent) {
        co_await scan_new_blocks(head);
    } else {
        // Nothing to follow: no block is read, and the next one sent starts the scan afresh.
        scanned_head_ = 0;
        std::lock_guard lock(mu_);
        scan_known_ = false;
    }
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
                        e->refusals_interrupted();
                }
                if (expired) co_await expire(e);
                continue;
            }
            if (st != TxState::queued) {
                if (st == TxState::broadcasting || st == TxState::confirming) {
                    // Most sent transactions are not due in a given round (track() asks the same
                    // first): no hash in hex and no coroutine for those, of 100k held every round.
                    if (!receipt_due(*e, head)) continue;
                    auto it = receipts.find(e->rec.hash_hex());
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
                e->last_broadcast = clock_.now();
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
                        e->refusals_interrupted();
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
