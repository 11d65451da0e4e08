// Managed senders: the clients' calls. eth_sendTransaction and gateway_sendTransaction (send),
// gateway_getTransaction (describe, with the JSON view of a managed transaction) and the hash
// mined instead of a replaced one (mined_instead).

#include "gateway/txm/managed.hpp"
#include "managed_internal.hpp"

#include "gateway/eth/hex.hpp"
#include "gateway/eth/transaction.hpp"
#include "gateway/metrics/metrics.hpp"
#include "gateway/txm/tx_manager.hpp"
#include "gateway/util/text.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/json/serialize.hpp>

#include <algorithm>
#include <tuple>

namespace gateway::txm {

using util::iso_time;

namespace {

// What eth_sendTransaction answers about a transaction it has no hash of yet.
json::object snapshot_of(const store::ManagedRecord& r) {
    json::object o{{"id", r.id}, {"state", store::to_string(r.state)}, {"reason", r.reason}};
    o["hash"] = r.hash ? json::value(*r.hash) : nullptr;
    return o;
}
// Held for a person: no hash until one decides, so the client is told now, not at its deadline.
jsonrpc::Reply held_for_person(const store::ManagedRecord& r) {
    return error_reply(kServerError,
                       fmt::format("transaction {} is held for an operator's approval: {}; follow "
                                   "it with gateway_getTransaction(\"{}\")",
                                   r.id, r.reason, r.id),
                       json::value(snapshot_of(r)));
}
jsonrpc::Reply ended_unsent(const store::ManagedRecord& r) {
    return error_reply(
        kServerError,
        fmt::format("transaction {} is {}: {}", r.id, store::to_string(r.state), r.reason),
        json::value(snapshot_of(r)));
}
jsonrpc::Reply not_signed_in_time(const store::ManagedRecord& r) {
    return error_reply(kServerError,
                       fmt::format("transaction {} was accepted but not signed in time ({}: {}); "
                                   "it stays queued and is sent once signed: follow it with "
                                   "gateway_getTransaction(\"{}\")",
                                   r.id, store::to_string(r.state), r.reason, r.id),
                       json::value(snapshot_of(r)));
}
jsonrpc::Reply held_full_reply(std::string_view sender, std::size_t held, std::size_t cap) {
    return error_reply(
        static_cast<int>(jsonrpc::ErrorCode::limit_exceeded),
        fmt::format("sender {} has {} transactions held for approval (tx.max_queued_per_sender "
                    "{}), and this one breaks its policy too: decide on those first (GET "
                    "/admin/approvals)",
                    sender, held, cap));
}
jsonrpc::Reply sender_full_reply(std::string_view sender, std::size_t unfinished, std::size_t cap) {
    return error_reply(static_cast<int>(jsonrpc::ErrorCode::limit_exceeded),
                       fmt::format("sender {} has {} unfinished transactions in the gateway "
                                   "(tx.max_queued_per_sender {}): wait for some to be mined",
                                   sender, unfinished, cap));
}
jsonrpc::Reply key_reused_reply(std::string_view key, const store::ManagedRecord& existing) {
    return error_reply(static_cast<int>(jsonrpc::ErrorCode::invalid_params),
                       fmt::format("Idempotency-Key '{}' was used for another transaction ({}) of "
                                   "{}: use a new key for a new transaction",
                                   key, existing.id, existing.sender));
}
// Told 503, "not accepted", when the journal does not answer in time (or fails), the client must
// not find the transaction signed and sent later (at the next start) should the commit go
// through anyway: the journal takes it back first, and frees its idempotency key for the
// client's retry (see TxManager::admit). One a standby handed over (`handed_on`: its chain) is
// taken back only while its handoff is: once the dispatching gateway took it, it carries it on
// (the client was told it may have been kept), and its key finds it.
store::JournalService::Operation undo_insert(std::string id, std::shared_ptr<bool> inserted_here,
                                             std::optional<std::string> handed_on = {}) {
    return [id = std::move(id), inserted_here, handed_on](store::JournalView& j) {
        if (!*inserted_here) return;
        if (handed_on && !j.withdraw_handoff(*handed_on, true, id)) return;
        store::ManagedUpdate u{id, TxState::failed,
                               "not accepted: the journal did not answer in time or failed (the "
                               "client was told so); never signed",
                               unix_ms()};
        u.release_idempotency_key = true;
        j.update_managed(u);
    };
}

}  // namespace

bool ManagedSenders::admit_policy(store::ManagedJournal& j, const Sender& s, const Request& req,
                                  store::ManagedRecord& rec, bool held_full) const {
    // The policy first, in the operation that records the transaction: the daily sum it reads is
    // the one the insert adds to.
    if (auto held = judge(j, s, req, rec.id, rec.created_ms)) {
        rec.reason = std::move(*held);
        if (held_full) return false;
        rec.state = TxState::pending_approval;
        rec.spend_ms.reset();
    } else if (s.policy()->service) {
        // Let through by the rules: held until the policy service answers too.
        rec.state = TxState::pending_approval;
        rec.reason = std::string(kAwaitingService);
        rec.spend_ms.reset();
    } else {
        rec.state = TxState::queued;
        rec.reason = "received";
        rec.spend_ms = rec.created_ms;
    }
    return true;
}

asio::awaitable<ManagedReply> ManagedSenders::send_standby(Sender* s, store::ManagedRecord rec,
                                                           Request req, bool wait_for_hash,
                                                           Clock::time_point deadline) {
    ManagedReply out;
    const std::size_t cap = config_.tx.max_queued_per_sender;
    std::optional<jsonrpc::Reply> refused;
    store::ManagedRecord existing;
    bool inserted = false;
    auto inserted_here = std::make_shared<bool>(false);
    store::JournalService::Operation op = [&, inserted_here](store::JournalView& j) {
        // The caps as the journal counts them (what every gateway on the database holds); the
        // same key again from the same client is its answer, never refused.
        bool replay = false;
        if (rec.idempotency_key)
            for (const auto& r : j.list_managed(std::nullopt, *rec.idempotency_key, 64))
                replay = replay ||
                         (r.chain == rec.chain && r.sender == rec.sender && r.client == rec.client);
        store::ManagedCounts n;
        if (!replay) n = j.managed_counts(rec.chain, rec.sender, kAwaitingService);
        if (n.unfinished >= cap) {
            refused = sender_full_reply(s->address, n.unfinished, cap);
            return;
        }
        if (!admit_policy(j, *s, req, rec, n.held >= cap)) {
            refused = held_full_reply(s->address, n.held, cap);
            return;
        }
        std::tie(existing, inserted) = j.insert_managed(rec);
        *inserted_here = inserted;
        if (inserted) j.hand_off({rec.chain, true, rec.id, rec.sender});
    };
    // Named: a temporary in the co_await (GCC 12 destroys those twice).
    auto undo = undo_insert(rec.id, inserted_here, rec.chain);
    const auto kept = co_await journal_.run(std::move(op), std::move(undo));
    if (!kept) {
        out.store_failed = true;
        out.reply = journal_unsure(kept.error());
        co_return out;
    }
    if (refused) {
        out.reply = std::move(*refused);
        co_return out;
    }
    if (!inserted && existing.request != rec.request) {
        out.reply = key_reused_reply(*rec.idempotency_key, existing);
        co_return out;
    }
    if (inserted) {
        if (metrics_) metrics_->count_managed(config_.name, store::to_string(rec.state));
        spdlog::info("chain {}: {} from {} journaled by this standby: {}", config_.name, rec.id,
                     s->address, rec.reason);
    } else {
        rec = existing;
    }
    // Followed in the journal: the gateway that dispatches signs it. Each look is an operation on
    // the shared journal, so the looks space out (kStandbyPoll, doubling to a second).
    asio::steady_timer pause(co_await asio::this_coro::executor);
    Clock::duration every = kStandbyPoll;
    for (;;) {
        if (!wait_for_hash) {
            out.queued = !rec.hash;
            out.reply = jsonrpc::Reply::success(json::serialize(snapshot_of(rec)));
            co_return out;
        }
        if (rec.hash) {
            out.reply = jsonrpc::Reply::success(json::serialize(json::value(*rec.hash)));
            co_return out;
        }
        if (rec.state == TxState::pending_approval && !rec.reason.starts_with(kAwaitingService)) {
            out.queued = true;
            out.reply = held_for_person(rec);
            co_return out;
        }
        if (store::is_final(rec.state)) {
            out.reply = ended_unsent(rec);
            co_return out;
        }
        if (Clock::now() >= deadline || stopped_) {
            out.queued = true;
            out.reply = not_signed_in_time(rec);
            co_return out;
        }
        pause.expires_after(std::min<Clock::duration>(every, deadline - Clock::now()));
        every = std::min<Clock::duration>(every * 2, std::chrono::seconds(1));
        co_await pause.async_wait(use_nothrow);
        std::optional<store::ManagedRecord> now;
        store::JournalService::Operation read = [&](store::ManagedJournal& j) {
            now = j.find_managed(rec.id);
        };
        const auto got = co_await journal_.run(std::move(read));
        if (got && now) rec = std::move(*now);
    }
}

json::object managed_json(const store::ManagedRecord& r, const std::vector<store::TxEvent>* history,
                          const std::vector<store::TxRecord>* attempts) {
    json::object o{
        {"id", r.id},
        {"chain", r.chain},
        {"from", r.sender},
        {"state", store::to_string(r.state)},
        {"reason", r.reason},
        {"createdAt", iso_time(r.created_ms)},
        {"updatedAt", iso_time(r.updated_ms)},
        {"attempts", r.attempts},
    };
    o["request"] = request_json(r.request);
    o["idempotencyKey"] = r.idempotency_key ? json::value(*r.idempotency_key) : nullptr;
    if (!r.client.empty()) o["client"] = r.client;
    o["nonce"] = r.nonce && !has_no_nonce(r.state) ? json::value(eth::to_quantity(*r.nonce))
                                                   : json::value(nullptr);
    o["hash"] = r.hash ? json::value(*r.hash) : nullptr;
    if (attempts) {
        json::array list;
        json::value mined = nullptr;
        for (const auto& a : *attempts) {
            json::object ao = record_json(a, nullptr);
            if (const auto tx = eth::parse_transaction(a.raw)) {
                if (tx->max_fee_per_gas) ao["maxFeePerGas"] = *tx->max_fee_per_gas;
                if (tx->max_priority_fee_per_gas)
                    ao["maxPriorityFeePerGas"] = *tx->max_priority_fee_per_gas;
                if (tx->gas_price) ao["gasPrice"] = *tx->gas_price;
                ao["gas"] = eth::to_quantity(tx->gas);
            }
            if (a.block_hash) mined = json::value(a.hash);
            list.push_back(std::move(ao));
        }
        o["minedHash"] = std::move(mined);
        o["signedAttempts"] = std::move(list);
        // Final once no attempt can change: a mined one's block may yet be dropped by a reorg,
        // which reopens it.
        o["final"] = store::is_final(r.state) &&
                     std::all_of(attempts->begin(), attempts->end(),
                                 [](const store::TxRecord& a) { return a.finalized; });
    }
    if (history) o["history"] = history_json(*history);
    return o;
}

asio::awaitable<ManagedReply> ManagedSenders::send(const json::value& params,
                                                   std::string idempotency_key, bool wait_for_hash,
                                                   Clock::time_point deadline, std::string client) {
    ManagedReply out;
    const char* method = wait_for_hash ? "eth_sendTransaction" : "gateway_sendTransaction";
    const json::array* a = params.if_array();
    const json::object* object = a && a->size() == 1 ? a->at(0).if_object() : nullptr;
    if (!object) {
        out.reply = error_reply(static_cast<int>(jsonrpc::ErrorCode::invalid_params),
                                fmt::format("{} takes one parameter: the transaction object "
                                            "({{from, to, value, data, ...}})",
                                            method));
        co_return out;
    }
    json::object request = *object;
    request.erase(kFillsField);  // an internal mark, never a client's
    const json::value* from = request.if_contains("from");
    std::optional<eth::Address> from_address;
    if (from) from_address = parse_address(*from);
    if (!from_address) {
        out.reply = error_reply(static_cast<int>(jsonrpc::ErrorCode::invalid_params),
                                "invalid transaction object: 'from' must be a 0x-prefixed 20-byte "
                                "address of a managed sender (eth_accounts lists them)");
        co_return out;
    }
    Sender* s = sender_of(eth::to_hex(*from_address));
    if (!s) {
        std::string which = "it has none: chains[].accounts";
        if (!senders_.empty()) which = fmt::format("{} of them", senders_.size());
        out.reply = error_reply(
            kServerError,
            fmt::format("unknown account {}: the gateway signs only for the managed senders of "
                        "chain {} ({}; eth_accounts lists them); sign it yourself and use "
                        "eth_sendRawTransaction",
                        eth::to_hex(*from_address), config_.name, which));
        co_return out;
    }
    auto parsed = parse_request(request, config_.chain_id);
    if (auto* error = std::get_if<std::string>(&parsed)) {
        out.reply = error_reply(static_cast<int>(jsonrpc::ErrorCode::invalid_params), *error);
        co_return out;
    }
    if (idempotency_key.size() > 256) {
        out.reply = error_reply(static_cast<int>(jsonrpc::ErrorCode::invalid_params),
                                "the Idempotency-Key header is longer than 256 characters");
        co_return out;
    }
    // Printable ASCII, as the header's draft standard has it (a structured-field string): bytes
    // a journal's text column refuses (PostgreSQL takes only valid UTF-8, no NUL) or that a
    // person cannot read back are not a key. (Not echoed: it is not text.)
    if (std::any_of(idempotency_key.begin(), idempotency_key.end(),
                    [](char c) { return c < 0x20 || c > 0x7e; })) {
        out.reply =
            error_reply(static_cast<int>(jsonrpc::ErrorCode::invalid_params),
                        "the Idempotency-Key header holds a character that is not printable ASCII");
        co_return out;
    }
    // A standby of a shared journal (or a gateway taking it over, still loading) journals it and
    // hands it to the gateway that dispatches.
    const bool standby = !loaded_ && journal_.shared();
    if (!loaded_ && !standby) {
        out.store_failed = true;
        out.reply = journal_unavailable(journal_.failure());
        co_return out;
    }

    store::ManagedRecord rec;
    rec.id = new_id();
    rec.chain = config_.name;
    rec.sender = s->address;
    rec.request = json::serialize(request);
    if (!idempotency_key.empty()) rec.idempotency_key = idempotency_key;
    rec.client = std::move(client);
    rec.state = TxState::queued;
    rec.reason = "received";
    rec.created_ms = rec.updated_ms = unix_ms();
    const Request& req = std::get<Request>(parsed);
    rec.value = req.value;
    if (standby)
        co_return co_await send_standby(s, std::move(rec), std::get<Request>(std::move(parsed)),
                                        wait_for_hash, deadline);

    std::shared_ptr<Tx> tx;
    // Those held for approval are counted apart, against the same cap: a flood of transactions
    // that break the policy is refused without refusing the sender's other traffic.
    bool held_full = false;
    std::size_t held_now = 0;
    {
        std::lock_guard lock(mu_);
        std::size_t unfinished = 0;
        bool replay = false;
        for (const auto& t : s->txs) {
            // Waiting for the policy service's answer counts as unfinished: within the rules,
            // and a service that is down must not let them pile up past the cap.
            if (t->rec.state == TxState::pending_approval && !t->awaiting_service)
                ++held_now;
            else
                ++unfinished;
            replay =
                replay || (rec.idempotency_key && t->rec.idempotency_key == rec.idempotency_key &&
                           t->rec.client == rec.client);
        }
        if (unfinished >= config_.tx.max_queued_per_sender && !replay) {
            out.reply = sender_full_reply(s->address, unfinished, config_.tx.max_queued_per_sender);
            co_return out;
        }
        held_full = held_now >= config_.tx.max_queued_per_sender && !replay;
    }
    bool refused_held = false;
    store::ManagedRecord existing;
    bool inserted = false;
    auto inserted_here = std::make_shared<bool>(false);
    store::JournalService::Operation op = [&, inserted_here](store::ManagedJournal& j) {
        refused_held = !admit_policy(j, *s, req, rec, held_full);
        if (refused_held) return;
        std::tie(existing, inserted) = j.insert_managed(rec);
        *inserted_here = inserted;
    };
    auto undo = undo_insert(rec.id, inserted_here);  // named (GCC 12, above)
    const auto kept = co_await journal_.run(std::move(op), std::move(undo));
    if (!kept) {
        out.store_failed = true;
        out.reply = journal_unwritable(kept.error());
        co_return out;
    }
    if (refused_held) {
        out.reply = held_full_reply(s->address, held_now, config_.tx.max_queued_per_sender);
        co_return out;
    }
    if (!inserted) {
        if (existing.request != rec.request) {
            out.reply = key_reused_reply(idempotency_key, existing);
            co_return out;
        }
        tx = find(existing.id);
        // The same key sent twice at once: the first request may not have put it in memory yet.
        for (int i = 0; !tx && !store::is_final(existing.state) && i < 50; ++i) {
            asio::steady_timer pause(co_await asio::this_coro::executor);
            pause.expires_after(std::chrono::milliseconds(20));
            co_await pause.async_wait(use_nothrow);
            tx = find(existing.id);
        }
        if (!tx) {
            // Finished already: its record answers.
            tx = std::make_shared<Tx>();
            tx->rec = existing;
        }
    } else {
        tx = std::make_shared<Tx>();
        tx->rec = rec;
        tx->req = std::move(std::get<Request>(parsed));
        const bool held = rec.state == TxState::pending_approval;
        const bool asking = held && rec.reason == kAwaitingService;
        if (held) hold(*tx, *s, rec.created_ms);
        tx->awaiting_service = asking;
        {
            std::lock_guard lock(mu_);
            s->txs.push_back(tx);
            by_id_[rec.id] = tx;
        }
        if (metrics_) metrics_->count_managed(config_.name, store::to_string(rec.state));
        if (asking) {
            spdlog::info("chain {}: {} from {}: {}", config_.name, rec.id, s->address, rec.reason);
            wake(*s);
        } else if (held) {
            if (metrics_) metrics_->count_approval(config_.name, "policy", "held");
            spdlog::warn("chain {}: {} from {}: {}", config_.name, rec.id, s->address, rec.reason);
        } else {
            spdlog::info("chain {}: {} from {} queued{}", config_.name, rec.id, s->address,
                         rec.idempotency_key ? " (with an idempotency key)" : "");
            wake(*s);
        }
    }

    const auto snapshot = [&] { return snapshot_of(tx->rec); };
    if (!wait_for_hash) {
        std::lock_guard lock(mu_);
        out.queued = !tx->rec.hash;
        out.reply = jsonrpc::Reply::success(json::serialize(snapshot()));
        co_return out;
    }

    // eth_sendTransaction: the first attempt's hash once it is signed.
    std::uint64_t seen_refusals;
    {
        std::lock_guard lock(mu_);
        seen_refusals = inserted ? 0 : tx->refusals;
    }
    auto timer = std::make_shared<asio::steady_timer>(co_await asio::this_coro::executor);
    for (;;) {
        {
            std::lock_guard lock(mu_);
            std::erase(tx->waiters, timer);
            const TxState st = tx->rec.state;
            if (tx->refusals > seen_refusals && tx->refusal) {
                const jsonrpc::Error& e = *tx->refusal;
                json::object data = snapshot();
                if (e.data) data["nodeData"] = *e.data;
                const bool over = store::is_final(st);
                std::string what = "the gateway tries again: " + tx->rec.reason;
                if (over) what = "the transaction is " + std::string(store::to_string(st));
                if (is_revert(e)) {
                    // As a node answers a revert: the revert data where wallets decode it.
                    out.reply =
                        error_reply(e.code, fmt::format("{} ({})", e.message, tx->rec.id), e.data);
                    co_return out;
                }
                out.reply = error_reply(kServerError,
                                        fmt::format("{} ({}): {}", e.message, tx->rec.id, what),
                                        json::value(std::move(data)));
                co_return out;
            }
            if (tx->rec.hash) {
                out.reply = jsonrpc::Reply::success(json::serialize(json::value(*tx->rec.hash)));
                co_return out;
            }
            if (st == TxState::pending_approval && !tx->awaiting_service) {
                out.queued = true;
                out.reply = held_for_person(tx->rec);
                co_return out;
            }
            if (store::is_final(st)) {
                out.reply = ended_unsent(tx->rec);
                co_return out;
            }
            // Real time, not clock_: the caller's deadline, also waited for by timer->expires_at.
            if (Clock::now() >= deadline || stopped_) {
                out.queued = true;
                out.reply = not_signed_in_time(tx->rec);
                co_return out;
            }
            tx->waiters.push_back(timer);
        }
        timer->expires_at(deadline);
        co_await timer->async_wait(use_nothrow);
    }
}

asio::awaitable<jsonrpc::Reply> ManagedSenders::describe(std::string_view id,
                                                         std::optional<std::string_view> owner) {
    std::optional<store::ManagedRecord> rec;
    std::vector<store::TxEvent> history;
    std::vector<store::TxRecord> attempts;
    const std::string key(id);
    store::JournalService::Operation op = [&](store::ManagedJournal& j) {
        rec = j.find_managed(key);
        if (!rec) return;
        history = j.managed_history(key);
        attempts = j.attempts(key);
    };
    const auto read = co_await journal_.run(std::move(op));
    if (!read) co_return journal_unreadable(read.error());
    if (!rec || rec->chain != config_.name || (owner && rec->client != *owner))
        co_return jsonrpc::Reply::success("null");
    if (auto tx = find(rec->id)) {
        std::lock_guard lock(mu_);
        rec->reason = tx->rec.reason;  // the live reason (why it waits) is fresher
    }
    co_return jsonrpc::Reply::success(json::serialize(managed_json(*rec, &history, &attempts)));
}

asio::awaitable<std::optional<std::string>> ManagedSenders::mined_instead(std::string hash) {
    if (senders_.empty()) co_return std::nullopt;
    std::optional<std::string> out;
    hash = util::lower(hash);
    store::JournalService::Operation op = [&](store::JournalView& j) {
        auto rec = j.find(hash);
        if (!rec || !rec->parent || rec->chain != config_.name) return;
        for (const auto& a : j.attempts(*rec->parent))
            if (a.hash != hash && is_mined(a)) out = a.hash;
    };
    const auto read = co_await journal_.run(std::move(op));
    if (!read) co_return std::nullopt;
    co_return out;
}

}  // namespace gateway::txm
