// What TxManager shows of transactions without changing them: gateway_getTransaction (journal
// record and history), and the held transactions that reads of pending nonces and transactions
// count.

#include "tx_manager_internal.hpp"

#include "gateway/util/text.hpp"
#include "gateway/util/wall_time.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <boost/json/serialize.hpp>

namespace gateway::txm {

using detail::error_reply;
using detail::journal_unreadable;
using detail::result_reply;
using util::iso_time;

namespace {

std::optional<std::string> hash_param(const json::value& params) {
    const json::array* a = params.if_array();
    const json::string* h = a && a->size() == 1 ? a->at(0).if_string() : nullptr;
    if (!h || h->size() != 66 || !eth::from_hex(*h)) return std::nullopt;
    return util::lower(*h);
}

}  // namespace

std::optional<store::TxRecord> TxManager::held_record(std::string_view hash) const {
    const auto key = detail::hash_key(hash);
    if (!key) return std::nullopt;
    std::lock_guard lock(mu_);
    auto it = by_hash_.find(*key);
    if (it == by_hash_.end()) return std::nullopt;
    return record_of(*it->second);
}

std::optional<std::uint64_t> TxManager::pending_nonce(std::string_view sender) const {
    const auto key = detail::address_key(sender);
    if (!key) return std::nullopt;
    std::lock_guard lock(mu_);
    auto s = by_sender_.find(*key);
    if (s == by_sender_.end()) return std::nullopt;
    std::optional<std::uint64_t> next;
    for (const SenderSlot& slot : s->second.slots) {
        const TxState st = slot.entry->rec.state;
        if (st == TxState::queued || st == TxState::broadcasting) next = slot.nonce + 1;
    }
    return next;
}

std::optional<std::string> TxManager::pending_transaction_json(
    std::string_view hash, std::optional<std::string_view> owner) const {
    const auto key = detail::hash_key(hash);
    if (!key) return std::nullopt;
    eth::Bytes raw;
    {
        std::lock_guard lock(mu_);
        auto it = by_hash_.find(*key);
        if (it == by_hash_.end() || (owner && it->second->rec.client() != *owner))
            return std::nullopt;
        const TxState st = it->second->rec.state;
        if (st != TxState::queued && st != TxState::broadcasting) return std::nullopt;
        raw = it->second->rec.raw;
    }
    // Decoded again (memory keeps only the bytes), outside the lock: the key recovery takes tens
    // of microseconds. It decoded when it came in; a failure here is a journal gone bad.
    auto tx = eth::parse_transaction(raw);
    if (!tx) {
        spdlog::error(
            "chain {}: held transaction {} no longer decodes ({}); its journal row is "
            "damaged",
            config_.name, eth::to_hex(*key), tx.error());
        return std::nullopt;
    }
    return json::serialize(eth::to_rpc_json(*tx));
}

json::array history_json(const std::vector<store::TxEvent>& history) {
    json::array h;
    for (const auto& ev : history)
        h.push_back(json::object{{"state", store::to_string(ev.state)},
                                 {"reason", ev.reason},
                                 {"at", iso_time(ev.at_ms)}});
    return h;
}

json::object record_json(const store::TxRecord& r, const std::vector<store::TxEvent>* history) {
    json::object o{
        {"hash", r.hash},
        {"chain", r.chain},
        {"chainId", eth::to_quantity(r.chain_id)},
        {"from", r.sender},
        {"nonce", eth::to_quantity(r.nonce)},
        {"state", store::to_string(r.state)},
        {"reason", r.reason},
        {"createdAt", iso_time(r.created_ms)},
        {"updatedAt", iso_time(r.updated_ms)},
        {"broadcasts", r.broadcasts},
        // Whether the state can still change: a mined one's block may yet be dropped by a reorg.
        {"final", r.finalized},
    };
    if (r.parent) o["transaction"] = *r.parent;  // the managed transaction it is an attempt of
    if (!r.client.empty()) o["client"] = r.client;
    o["blockHash"] = r.block_hash ? json::value(*r.block_hash) : json::value(nullptr);
    o["blockNumber"] =
        r.block_number ? json::value(eth::to_quantity(*r.block_number)) : json::value(nullptr);
    if (history) o["history"] = history_json(*history);
    return o;
}

asio::awaitable<jsonrpc::Reply> TxManager::describe(const json::value& params,
                                                    std::optional<std::string_view> owner) {
    const auto hash = hash_param(params);
    if (!hash)
        co_return error_reply(jsonrpc::ErrorCode::invalid_params,
                              "gateway_getTransaction takes one parameter: a transaction hash "
                              "(0x and 64 hex digits)");
    std::optional<store::TxRecord> rec;
    std::vector<store::TxEvent> history;
    store::JournalService::Operation op = [&](store::RawJournal& j) {
        rec = j.find(*hash);
        if (rec) history = j.history(*hash);
    };
    const auto read = co_await journal_.run(std::move(op));
    if (!read) co_return journal_unreadable(read.error());
    // Another client's transaction is not this caller's business: as if unknown.
    if (!rec || rec->chain != config_.name || (owner && rec->client != *owner))
        co_return result_reply("null");
    {
        // The live reason (e.g. why it still waits) is fresher than the journal's.
        std::lock_guard lock(mu_);
        const auto key = detail::hash_key(*hash);
        if (auto it = key ? by_hash_.find(*key) : by_hash_.end(); it != by_hash_.end())
            rec->reason = it->second->rec.reason;
    }
    co_return result_reply(json::serialize(record_json(*rec, &history)));
}

}  // namespace gateway::txm
