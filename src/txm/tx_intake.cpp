// Raw-transaction intake: eth_sendRawTransaction and managed attempts, decoded and checked
// (chain id, sidecar), counted against the caps, journaled first, then sent at once or left
// queued for the dispatcher.

#include "tx_manager_internal.hpp"

#include "gateway/metrics/metrics.hpp"
#include "gateway/upstream/forwarder.hpp"
#include "gateway/util/wall_time.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/json/serialize.hpp>

#include <tuple>

namespace gateway::txm {

using detail::error_reply;
using detail::journal_unavailable;
using detail::journal_unsure;
using detail::journal_unwritable;
using detail::result_reply;
using util::unix_ms;

namespace {

// A transaction as a client sent it, split into what memory holds and what only the journal
// does: a blob transaction's record holds its payload (what its hash is over), and its network
// form, sidecar included (up to ~1 MB), is journaled apart and read back to be broadcast.
struct Received {
    eth::Transaction tx;  // decoded, without its bytes
    eth::Bytes raw;       // the record's bytes
    eth::Bytes network;   // a blob transaction's network form; empty for the other types
};

// Why not, as eth::parse_transaction says, or for a blob transaction without its sidecar.
boost::system::result<Received, std::string> receive(eth::Bytes bytes) {
    auto parsed = eth::parse_transaction(bytes);
    if (!parsed) return {boost::system::in_place_error, std::move(parsed.error())};
    Received out;
    out.tx = std::move(*parsed);
    out.tx.raw = {};
    if (out.tx.type != eth::TxType::blob) {
        out.raw = std::move(bytes);
        return out;
    }
    // Nodes refuse it too: without its blobs nobody can check or propagate it.
    if (out.tx.sidecar == eth::BlobSidecar::none)
        return {boost::system::in_place_error,
                "invalid transaction: a blob transaction without its sidecar (0x03 || "
                "rlp(tx_payload_body)) cannot be sent; send its network form, 0x03 || "
                "rlp([tx_payload_body, blobs, commitments, proofs]) (EIP-4844) or 0x03 || "
                "rlp([tx_payload_body, 1, blobs, commitments, cell_proofs]) (EIP-7594)"};
    out.raw = std::move(out.tx.payload);
    out.tx.payload = {};
    out.network = std::move(bytes);
    return out;
}

std::string quoted(std::string_view s) {
    return json::serialize(json::string(s));
}

// The refusals of the three caps, as the memory of the dispatching gateway or the journal (on a
// standby) counts them.
jsonrpc::Reply sender_full(std::string_view sender, std::size_t n, std::size_t cap) {
    return error_reply(jsonrpc::ErrorCode::limit_exceeded,
                       fmt::format("sender {} has {} unfinished transactions in the gateway "
                                   "(tx.max_queued_per_sender {}): wait for some to be mined",
                                   sender, n, cap));
}
jsonrpc::Reply client_full(std::string_view source, std::size_t n, std::size_t cap) {
    return error_reply(jsonrpc::ErrorCode::limit_exceeded,
                       fmt::format("client {} has {} unfinished transactions in the gateway "
                                   "(tx.max_queued_per_client {}): wait for some to be mined",
                                   source, n, cap));
}
// A received transaction's record, QUEUED, as the journal keeps it.
store::TxRecord received_record(const config::ChainConfig& chain, const eth::Transaction& tx,
                                eth::Bytes raw, std::optional<std::string> parent,
                                std::string client, std::string source, std::int64_t now) {
    store::TxRecord rec;
    rec.hash = eth::to_hex(tx.hash);
    rec.chain = chain.name;
    rec.chain_id = chain.chain_id;
    rec.sender = eth::to_hex(tx.sender);
    rec.nonce = tx.nonce;
    rec.raw = std::move(raw);
    rec.parent = std::move(parent);
    rec.client = std::move(client);
    rec.source = std::move(source);
    rec.state = TxState::queued;
    rec.reason = "received";
    rec.created_ms = rec.updated_ms = now;
    return rec;
}

jsonrpc::Reply chain_full(std::string_view chain, std::size_t n) {
    return error_reply(jsonrpc::ErrorCode::limit_exceeded,
                       fmt::format("chain {} holds {} unfinished transactions (tx.max_queued): "
                                   "wait for some to be mined",
                                   chain, n));
}

}  // namespace

bool TxManager::earlier_queued(const Entry& e) const {
    // Called with mu_ held.
    auto s = by_sender_.find(e.rec.sender);
    if (s == by_sender_.end()) return false;
    const auto& waiting = s->second.waiting;
    return !waiting.empty() && *waiting.begin() < e.rec.nonce;
}

asio::awaitable<void> TxManager::record_taken(std::shared_ptr<Entry> e, std::string detail) {
    // Counted until done: stopped() is false while a record is being written. The count is
    // shared: a coroutine destroyed unfinished (a forced stop) may outlive the manager.
    struct Count {
        std::shared_ptr<std::atomic<int>> n;
        ~Count() { --*n; }
    } count{recording_};
    const bool written = co_await transition(e, TxState::broadcasting, std::move(detail), true);
    // Written or not (the dispatcher sends it again if not), others may send it now.
    std::lock_guard lock(mu_);
    e->busy = false;
    e->taken = false;
    note_waiting(*e);
    if (!written) e->maybe_taken = true;
}

asio::awaitable<SubmitResult> TxManager::submit(const json::value& params, std::string client,
                                                std::string source) {
    SubmitResult out;
    const json::array* a = params.if_array();
    const json::string* text = a && a->size() == 1 ? a->at(0).if_string() : nullptr;
    if (!text) {
        out.reply = error_reply(jsonrpc::ErrorCode::invalid_params,
                                "eth_sendRawTransaction takes one parameter: the signed "
                                "transaction as 0x-prefixed hex");
        co_return out;
    }
    auto raw = eth::from_hex(*text);
    if (!raw || raw->empty()) {
        out.reply = error_reply(jsonrpc::ErrorCode::invalid_params,
                                "invalid transaction: not 0x-prefixed hex of even length");
        co_return out;
    }
    auto e = std::make_shared<Entry>();
    auto got = receive(std::move(*raw));
    if (!got) {
        out.reply = error_reply(jsonrpc::ErrorCode::invalid_params, std::move(got.error()));
        co_return out;
    }
    Received& received = *got;
    const eth::Transaction& tx = received.tx;
    if (!tx.chain_id) {
        out.reply = error_reply(jsonrpc::ErrorCode::invalid_params,
                                "only replay-protected (EIP-155) transactions are accepted: sign "
                                "it with chain id " +
                                    std::to_string(config_.chain_id));
        co_return out;
    }
    if (*tx.chain_id != config_.chain_id) {
        out.reply = error_reply(
            jsonrpc::ErrorCode::invalid_params,
            fmt::format("invalid transaction: it is signed for chain id {}, but chain {} has id "
                        "{}; sign it for {} or send it to that chain's endpoint",
                        *tx.chain_id, config_.name, config_.chain_id, config_.chain_id));
        co_return out;
    }
    if (source.empty()) source = client;
    co_return co_await admit(std::move(e), tx, std::move(received.raw), std::move(received.network),
                             std::nullopt, std::move(client), std::move(source));
}

asio::awaitable<SubmitResult> TxManager::submit_attempt(const eth::Bytes& raw, std::string parent,
                                                        std::string client) {
    SubmitResult out;
    auto e = std::make_shared<Entry>();
    auto got = receive(raw);
    if (!got) {
        out.reply = error_reply(jsonrpc::ErrorCode::invalid_params, std::move(got.error()));
        co_return out;
    }
    Received& received = *got;
    co_return co_await admit(std::move(e), received.tx, std::move(received.raw),
                             std::move(received.network), std::move(parent), std::move(client), {});
}

asio::awaitable<SubmitResult> TxManager::admit(std::shared_ptr<Entry> e, const eth::Transaction& tx,
                                               eth::Bytes raw, eth::Bytes network,
                                               std::optional<std::string> parent,
                                               std::string client, std::string source) {
    SubmitResult out;
    if (!loaded_) {
        // A standby of a shared journal (or a gateway taking it over, still loading): the
        // dispatching gateway sends it.
        if (journal_.shared() && !parent)
            co_return co_await admit_standby(tx, std::move(raw), std::move(network),
                                             std::move(client), std::move(source));
        out.store_failed = true;
        out.reply = journal_unavailable(journal_.failure());
        co_return out;
    }

    const std::int64_t now = unix_ms();
    // The record as the journal keeps it; memory keeps less of it (hold()).
    store::TxRecord rec = received_record(config_, tx, std::move(raw), std::move(parent),
                                          std::move(client), std::move(source), now);
    const std::string hash_json = quoted(rec.hash);

    // Reserve its place, or find it there already.
    std::vector<std::shared_ptr<Entry>> replaced;
    {
        std::lock_guard lock(mu_);
        if (auto it = by_hash_.find(tx.hash); it != by_hash_.end()) {
            out.journaled = true;
            out.reply = result_reply(hash_json);  // the same bytes again: one entry
            // Not queued when a node took it and only its BROADCASTING row is still being written.
            out.queued = it->second->rec.state == TxState::queued && !it->second->taken;
            co_return out;
        }
        std::size_t of_sender = 0;
        if (auto s = by_sender_.find(tx.sender); s != by_sender_.end()) {
            const auto& slots = s->second.slots;
            of_sender = slots.size();
            for (auto n = slots.lower_bound(SenderSlot{rec.nonce, nullptr});
                 n != slots.end() && n->nonce == rec.nonce; ++n) {
                auto& other = by_hash_.at(n->entry->rec.hash);
                // One that no node ever took is replaced: never two of one nonce sent.
                if (other->rec.state == TxState::queued && !other->busy && !other->maybe_taken)
                    replaced.push_back(other);
            }
        }
        if (!rec.parent && of_sender - replaced.size() >= config_.tx.max_queued_per_sender) {
            out.reply = sender_full(rec.sender, of_sender, config_.tx.max_queued_per_sender);
            if (metrics_)
                metrics_->count_transaction_refusal(config_.name, "max_queued_per_sender");
            co_return out;
        }
        // One client (a credential, or without auth an address) cannot fill the chain's queue
        // with throwaway senders and lock everyone else out.
        if (!rec.parent && !rec.source.empty()) {
            std::size_t of_source = 0;
            if (auto c = by_source_.find(rec.source); c != by_source_.end()) of_source = c->second;
            for (const auto& r : replaced)
                if (r->rec.source() == rec.source && of_source > 0) --of_source;
            if (of_source >= config_.tx.max_queued_per_client) {
                out.reply = client_full(rec.source, of_source, config_.tx.max_queued_per_client);
                if (metrics_)
                    metrics_->count_transaction_refusal(config_.name, "max_queued_per_client");
                co_return out;
            }
        }
        if (!rec.parent && by_hash_.size() >= config_.tx.max_queued) {
            out.reply = chain_full(config_.name, by_hash_.size());
            if (metrics_) metrics_->count_transaction_refusal(config_.name, "max_queued");
            co_return out;
        }
        for (auto& r : replaced) r->busy = true;  // nobody sends them now
        e->busy = true;
        hold(*e, store::TxRecord(rec));
        index(e);
    }

    // Journal first: the client hears of the transaction only once it is on disk.
    bool inserted = false;
    store::TxRecord existing;
    // Whether this operation made the transaction QUEUED (new, or sent again after it had
    // failed); the undo's to read, after this coroutine may have gone.
    auto queued_here = std::make_shared<bool>(false);
    // Whether this operation took over a standby's QUEUED row of the same bytes (withdrawing its
    // handoff): the undo's to read, as queued_here.
    auto taken_over = std::make_shared<bool>(false);
    store::JournalService::Operation op = [&, queued_here, taken_over](store::JournalView& j) {
        std::tie(existing, inserted) = j.insert(rec);
        // QUEUED in the journal but not in memory: a standby's, handed over and not taken yet.
        // Carried on from here: its handoff is withdrawn in this operation, so that neither the
        // standby's take-back (when its caller was told it failed) nor the handoff's taker acts
        // on it as well.
        if (!inserted && existing.state == TxState::queued && !existing.parent &&
            existing.chain == config_.name) {
            j.withdraw_handoff(config_.name, false, rec.hash);
            *taken_over = true;
        }
        // Sent again after it failed: queued anew, unless it was mined (reverted: its nonce
        // is used, and it stays open to a reorg until its block is final).
        if (!inserted && ((existing.state == TxState::failed && !existing.block_hash) ||
                          existing.state == TxState::dead_letter)) {
            j.update(store::TxUpdate{rec.hash, TxState::queued, "sent again by a client", now});
            existing.state = TxState::queued;
            existing.reason = "sent again by a client";
            inserted = true;
        }
        *queued_here = inserted;
        if (inserted && !network.empty()) j.put_network_form(rec.hash, network);
        for (auto& r : replaced)
            j.update(store::TxUpdate{r->rec.hash_hex(), TxState::failed,
                                     "replaced by " + rec.hash + " before any node took it", now});
    };
    // The client is told 503, "not accepted", when the journal does not answer within
    // store.timeout_ms, even if this operation's commit (a stalled fsync) goes through later,
    // and when the commit fails (a failed fsync may leave its rows on disk). Left QUEUED, the
    // transaction would be sent at the next start, after its client may have given up on it
    // or signed another for the nonce. So the journal takes it back once it can, before any
    // later operation (a client sending the same bytes again then finds it FAILED and queues
    // it anew): FAILED, and the transactions it replaced QUEUED again, as they still are in
    // memory (see the failure below). Everything it uses is its own: this coroutine has gone by
    // then. A crash between that late commit and the undo's leaves the transaction QUEUED,
    // to be sent at the next start: the one window left, as long as one commit.
    std::vector<std::string> replaced_hashes;
    for (const auto& r : replaced) replaced_hashes.push_back(r->rec.hash_hex());
    store::JournalService::Operation undo =
        [hash = rec.hash, queued_here, taken_over,
         handoff = store::Handoff{config_.name, false, rec.hash, rec.sender},
         replaced_hashes](store::JournalView& j) {
            const std::int64_t at = unix_ms();
            // Taken over from a standby and then given up here: handed over again.
            if (*taken_over) j.hand_off(handoff);
            if (*queued_here)
                j.update(store::TxUpdate{hash, TxState::failed,
                                         "not accepted: the journal did not answer in time or "
                                         "failed (the client was told so); never sent",
                                         at});
            for (const auto& h : replaced_hashes)
                if (auto r = j.find(h); r && r->state == TxState::failed)
                    j.update(store::TxUpdate{
                        h, TxState::queued,
                        "queued again: " + hash + ", which replaced it, was not accepted", at});
        };
    const auto kept = co_await journal_.run(std::move(op), std::move(undo));
    if (!kept) {
        std::lock_guard lock(mu_);
        forget(e->rec.hash, e.get());
        for (auto& r : replaced) r->busy = false;
        out.store_failed = true;
        out.reply = journal_unwritable(kept.error());
        co_return out;
    }
    out.journaled = true;
    bool handed = false;  // a standby's, carried on here
    {
        std::lock_guard lock(mu_);
        for (auto& r : replaced) {
            spdlog::info("chain {}: transaction {} replaced by {} before any node took it",
                         config_.name, r->rec.hash_hex(), rec.hash);
            forget(r->rec.hash, r.get());
        }
        if (*taken_over) {
            // A standby's (above): carried on from here, as the journal has it.
            e->rec.reason = existing.reason;
            e->rec.created_ms = existing.created_ms;
            e->rec.updated_ms = existing.updated_ms;
            e->rec.broadcasts = existing.broadcasts;
            inserted = true;
            handed = true;
        } else if (!inserted) {
            // Known and finished already (mined): the same bytes again change nothing. (A reorg
            // may have reopened it meanwhile: that entry stays.)
            forget(e->rec.hash, e.get());
            out.reply = result_reply(hash_json);
            co_return out;
        }
    }
    if (metrics_ && !handed) metrics_->count_transaction(config_.name, "QUEUED");

    bool wait;
    {
        std::lock_guard lock(mu_);
        wait = earlier_queued(*e) || !pool_.ready();
        if (wait) e->busy = false;
    }
    if (wait) {
        wake();
        out.reply = result_reply(hash_json);
        out.queued = true;
        co_return out;
    }

    BroadcastResult b = co_await send(*e, network.empty() ? nullptr : &network);
    {
        std::lock_guard lock(mu_);
        e->last_broadcast = clock_.now();
        // Accepted: busy until its BROADCASTING record is written (record_taken). Refused or
        // nonce used: busy until the verdict is written below, so the dispatcher does not send it
        // again meanwhile. Not now: the dispatcher's from here on.
        e->busy = b.verdict != Broadcast::not_now;
        e->taken = b.verdict == Broadcast::accepted;
        note_waiting(*e);
    }
    struct Release {
        TxManager* self;
        Entry* e;
        bool now;
        ~Release() {
            if (!now) return;
            std::lock_guard lock(self->mu_);
            e->busy = false;
        }
    } release{this, e.get(), b.verdict == Broadcast::refused || b.verdict == Broadcast::nonce_used};
    switch (b.verdict) {
        case Broadcast::accepted:
            // The client hears now. The transaction is durable since its QUEUED record and a node
            // has it; BROADCASTING is journaled after the answer. A crash before that record
            // sends the same bytes again at start-up, which a node takes as already known.
            ++*recording_;
            asio::co_spawn(strand_, record_taken(e, std::move(b.detail)), asio::detached);
            out.reply = result_reply(hash_json);
            out.upstream = b.upstream;
            break;
        case Broadcast::refused:
            co_await transition(e, TxState::failed, "refused: " + b.detail);
            out.reply = std::move(b.node_reply);
            out.upstream = b.upstream;
            break;
        case Broadcast::nonce_used:
            co_await settle_used_nonce(e);
            out.upstream = b.upstream;
            if (const TxState st = state_of(*e);
                st == TxState::confirming || st == TxState::completed)
                out.reply = result_reply(hash_json);
            else
                out.reply = std::move(b.node_reply);
            break;
        case Broadcast::not_now: {
            {
                std::lock_guard lock(mu_);
                e->rec.reason = "waiting for a node: " + b.detail;
                // The first refusal starts its time towards tx.expire_after_ms.
                if (!b.refusal.empty()) note_refusal(*e, b.refusal, clock_.now());
            }
            wake();
            out.reply = result_reply(hash_json);
            out.queued = true;
            break;
        }
    }
    co_return out;
}

asio::awaitable<SubmitResult> TxManager::admit_standby(const eth::Transaction& tx, eth::Bytes raw,
                                                       eth::Bytes network, std::string client,
                                                       std::string source) {
    SubmitResult out;
    const std::int64_t now = unix_ms();
    store::TxRecord rec = received_record(config_, tx, std::move(raw), std::nullopt,
                                          std::move(client), std::move(source), now);
    rec.reason = "received (by a standby, handed to the gateway that dispatches)";

    // The caps as the journal counts them, in the operation that journals it: what every
    // gateway on the database holds. (A transaction of the same nonce that no node took is not
    // replaced here, as the dispatching gateway does: both are kept, and the nodes take one.)
    std::optional<jsonrpc::Reply> refused;
    const char* refusal = nullptr;
    auto queued_here = std::make_shared<bool>(false);
    bool known = false;  // journaled already, and unfinished
    store::JournalService::Operation op = [&, queued_here](store::JournalView& j) {
        const auto existing = j.find(rec.hash);
        // Sent again after it failed: queued anew (see admit()), within the caps as a new one.
        // Not a managed transaction's attempt: only its sender's owner sends those.
        const bool again = existing && !existing->parent &&
                           ((existing->state == TxState::failed && !existing->block_hash) ||
                            existing->state == TxState::dead_letter);
        if (existing && !again) {
            known = !store::is_final(existing->state);
            return;
        }
        const store::QueuedCounts n = j.queued_counts(rec.chain, rec.sender, rec.source);
        if (n.sender >= config_.tx.max_queued_per_sender) {
            refused = sender_full(rec.sender, n.sender, config_.tx.max_queued_per_sender);
            refusal = "max_queued_per_sender";
        } else if (!rec.source.empty() && n.source >= config_.tx.max_queued_per_client) {
            refused = client_full(rec.source, n.source, config_.tx.max_queued_per_client);
            refusal = "max_queued_per_client";
        } else if (n.chain >= config_.tx.max_queued) {
            refused = chain_full(config_.name, n.chain);
            refusal = "max_queued";
        }
        if (refused) return;
        if (again)
            j.update(store::TxUpdate{rec.hash, TxState::queued, "sent again by a client", now});
        else
            j.insert(rec);
        if (!network.empty()) j.put_network_form(rec.hash, network);
        j.hand_off({config_.name, false, rec.hash, rec.sender});
        *queued_here = true;
    };
    // As admit()'s: a client told its send failed does not find it sent later, unless the
    // dispatching gateway took it over first (then it carries it on, and the client was told
    // that it may have been kept).
    store::JournalService::Operation undo = [chain = config_.name, hash = rec.hash,
                                             queued_here](store::JournalView& j) {
        if (*queued_here && j.withdraw_handoff(chain, false, hash))
            j.update(store::TxUpdate{hash, TxState::failed,
                                     "not accepted: the journal did not answer in time or "
                                     "failed (the client was told so); never sent",
                                     unix_ms()});
    };
    const auto kept = co_await journal_.run(std::move(op), std::move(undo));
    if (!kept) {
        out.store_failed = true;
        out.reply = journal_unsure(kept.error());
        co_return out;
    }
    if (refused) {
        if (metrics_) metrics_->count_transaction_refusal(config_.name, refusal);
        out.reply = std::move(refused);
        co_return out;
    }
    out.journaled = true;
    out.queued = *queued_here || known;
    out.reply = result_reply(quoted(rec.hash));
    if (*queued_here && metrics_) metrics_->count_transaction(config_.name, "QUEUED");
    co_return out;
}

}  // namespace gateway::txm
