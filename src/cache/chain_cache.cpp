#include "gateway/cache/chain_cache.hpp"

#include "gateway/jsonrpc/json_text.hpp"
#include "gateway/jsonrpc/methods.hpp"
#include "gateway/metrics/metrics.hpp"
#include "gateway/util/text.hpp"

#include <boost/container/small_vector.hpp>
#include <boost/json/parse.hpp>

#include <algorithm>
#include <array>
#include <vector>

namespace gateway::cache {

namespace json = boost::json;
using Kind = Dependency::Kind;

namespace {

// The canonical hashes kept, by number, to check answers tied to unfinalized blocks.
constexpr std::size_t kCanonicalKept = 1024;

bool is_hash(std::string_view s) {
    return s.size() == 66 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X') &&
           s.substr(2).find_first_not_of("0123456789abcdefABCDEF") == std::string_view::npos;
}

// A block parameter: a tag, a quantity, a block hash, or an EIP-1898 object. nullopt: pending,
// or something a node would refuse.
std::optional<Dependency> block_dependency(const json::value* v) {
    if (!v || v->is_null()) return Dependency{Kind::head};  // absent: nodes take latest
    if (const auto* s = v->if_string()) {
        if (*s == "latest" || *s == "safe" || *s == "finalized") return Dependency{Kind::head};
        if (*s == "earliest") return Dependency{Kind::block, 0};
        if (auto n = jsonrpc::parse_quantity(*s)) return Dependency{Kind::block, *n};
        if (is_hash(*s)) return Dependency{Kind::forever};
        return std::nullopt;
    }
    if (const auto* o = v->if_object()) {
        if (const auto* hash = o->if_contains("blockHash")) {
            const auto* canonical = o->if_contains("requireCanonical");
            // Whether the block is still canonical can change: not kept.
            if (canonical && canonical->is_bool() && canonical->get_bool()) return std::nullopt;
            if (hash->is_string() && is_hash(hash->get_string())) return Dependency{Kind::forever};
            return std::nullopt;
        }
        if (const auto* n = o->if_contains("blockNumber")) return block_dependency(n);
    }
    return std::nullopt;
}

std::optional<Dependency> logs_dependency(const json::value& params) {
    const auto* a = params.if_array();
    const auto* filter = a && a->size() == 1 ? a->at(0).if_object() : nullptr;
    if (!filter) return std::nullopt;
    if (filter->contains("blockHash")) return block_dependency(&filter->at("blockHash"));
    auto from = block_dependency(filter->if_contains("fromBlock"));
    auto to = block_dependency(filter->if_contains("toBlock"));
    if (!from || !to || from->kind == Kind::forever || to->kind == Kind::forever)
        return std::nullopt;
    if (from->kind == Kind::head || to->kind == Kind::head) return Dependency{Kind::head};
    // A range changes with any of its blocks; a reorg changing one changes every later one.
    return Dependency{Kind::block, std::max(from->number, to->number)};
}

constexpr auto kHeadOnly = std::to_array<std::string_view>(
    {"eth_blobBaseFee", "eth_blockNumber", "eth_gasPrice", "eth_maxPriorityFeePerGas"});
constexpr auto kByBlockHash = std::to_array<std::string_view>(
    {"debug_traceBlockByHash", "eth_getBlockByHash", "eth_getBlockTransactionCountByHash",
     "eth_getHeaderByHash", "eth_getTransactionByBlockHashAndIndex",
     "eth_getUncleByBlockHashAndIndex", "eth_getUncleCountByBlockHash"});
constexpr auto kByTransaction =
    std::to_array<std::string_view>({"eth_getTransactionByHash", "eth_getTransactionReceipt"});
// Never kept: state on one node (filters, subscriptions), signing, or a node's own condition.
constexpr auto kNever = std::to_array<std::string_view>(
    {"eth_coinbase", "eth_mining", "eth_sign", "eth_signTransaction", "eth_signTypedData_v4",
     "eth_subscribe", "eth_syncing", "eth_uninstallFilter", "eth_unsubscribe", "net_listening",
     "net_peerCount", "txpool_content", "txpool_inspect", "txpool_status", "web3_clientVersion"});

template <std::size_t N>
bool listed(const std::array<std::string_view, N>& list, std::string_view method) {
    return std::find(list.begin(), list.end(), method) != list.end();
}

// Appends `v`'s JSON text as a cache key has it: hex strings ("0x...") in lower case, object
// members in the order of their names, so that calls asking the same write the same key; written
// straight out, without a normalized copy of the document.
void append_key_json(std::string& out, const json::value& v) {
    if (const auto* s = v.if_string()) {
        const bool hex = s->size() >= 2 && (*s)[0] == '0' && ((*s)[1] == 'x' || (*s)[1] == 'X');
        if (!hex) {
            jsonrpc::append_json(out, v);
            return;
        }
        // A hex string holds nothing JSON escapes: written as it is, in lower case.
        const bool plain = std::all_of(s->begin(), s->end(), [](char c) {
            return c != '"' && c != '\\' && static_cast<unsigned char>(c) >= 0x20;
        });
        if (!plain) {
            jsonrpc::append_json(out, util::lower(*s));
            return;
        }
        const std::size_t at = out.size();
        out.push_back('"');
        out.append(s->data(), s->size());
        out.push_back('"');
        std::transform(out.begin() + static_cast<std::ptrdiff_t>(at), out.end(),
                       out.begin() + static_cast<std::ptrdiff_t>(at), util::ascii_lower);
        return;
    }
    if (const auto* a = v.if_array()) {
        out.push_back('[');
        for (std::size_t i = 0; i < a->size(); ++i) {
            if (i) out.push_back(',');
            append_key_json(out, (*a)[i]);
        }
        out.push_back(']');
        return;
    }
    if (const auto* o = v.if_object()) {
        std::vector<const json::key_value_pair*> members;
        members.reserve(o->size());
        for (const auto& kv : *o) members.push_back(&kv);
        std::sort(members.begin(), members.end(),
                  [](const json::key_value_pair* a, const json::key_value_pair* b) {
                      return a->key() < b->key();
                  });
        out.push_back('{');
        for (std::size_t i = 0; i < members.size(); ++i) {
            if (i) out.push_back(',');
            const json::string_view key = members[i]->key();
            jsonrpc::append_json(out, std::string_view(key.data(), key.size()));
            out.push_back(':');
            append_key_json(out, members[i]->value());
        }
        out.push_back('}');
        return;
    }
    jsonrpc::append_json(out, v);  // a number, true, false or null
}

// A block number and hash in an answer: a block's number and hash, or a transaction's or
// receipt's blockNumber and blockHash.
template <class Named>
std::optional<Named> named_block(const json::value& v, const char* number_key,
                                 const char* hash_key) {
    const auto* o = v.if_object();
    const auto* n = o ? o->if_contains(number_key) : nullptr;
    const auto* h = o ? o->if_contains(hash_key) : nullptr;
    if (!n || !h || !n->is_string() || !h->is_string()) return std::nullopt;
    auto number = jsonrpc::parse_quantity(n->get_string());
    if (!number) return std::nullopt;
    return Named{*number, util::lower(h->get_string())};
}

}  // namespace

std::optional<Dependency> dependency_of(std::string_view method, const json::value& params) {
    if (jsonrpc::method_kind(method) != jsonrpc::MethodKind::read) return std::nullopt;
    if (method.find("Filter") != std::string_view::npos || listed(kNever, method))
        return std::nullopt;
    if (method == "net_version" || method == "eth_getRawTransactionByHash")
        return Dependency{Kind::forever};
    if (listed(kHeadOnly, method)) return Dependency{Kind::head};
    if (listed(kByBlockHash, method)) return Dependency{Kind::forever};
    if (listed(kByTransaction, method)) return Dependency{Kind::mined};
    if (method == "eth_getLogs") return logs_dependency(params).value_or(Dependency{});
    const auto index = jsonrpc::block_param_index(method);
    if (!index) return Dependency{};
    const auto* a = params.if_array();
    const json::value* block = a && a->size() > *index ? &a->at(*index) : nullptr;
    // Without a block these two take `pending` on some nodes.
    if ((!block || block->is_null()) &&
        (method == "eth_estimateGas" || method == "eth_createAccessList"))
        return Dependency{};
    return block_dependency(block).value_or(Dependency{});
}

// Recursive over the params' depth: client params come from jsonrpc::parse_request, whose
// max_depth (64) bounds it.
std::string cache_key(std::string_view method, const json::value& params) {
    std::string key;
    key.reserve(method.size() + 128);
    key.append(method);
    key.push_back('\0');
    append_key_json(key, params);
    return key;
}

ChainCache::ChainCache(std::string chain, const config::CacheConfig& config,
                       metrics::Metrics* metrics)
    : chain_(std::move(chain)), config_(config), metrics_(metrics) {}

std::optional<ChainCache::Ticket> ChainCache::ticket(std::string_view method,
                                                     const json::value& params) const {
    config::CacheMode mode = config::CacheMode::on;
    if (auto it = config_.methods.find(method); it != config_.methods.end()) mode = it->second;
    if (mode == config::CacheMode::off) return std::nullopt;
    auto dependency = dependency_of(method, params);
    if (!dependency) return std::nullopt;
    Ticket t{cache_key(method, params), jsonrpc::method_label(method), *dependency, mode};
    t.generation = generation_.load();
    t.reorgs = reorgs_.load();
    return t;
}

std::optional<std::string> ChainCache::fresh(const Ticket& ticket, bool head_known) {
    if (!config_.enabled || ticket.dependency.kind == Kind::none) return std::nullopt;
    std::lock_guard lock(mu_);
    auto it = index_.find(ticket.key);
    bool hit = false;
    if (it != index_.end()) {
        const Entry& e = *it->second;
        switch (e.kept) {
            case Kept::forever:
            case Kept::final: hit = true; break;
            // While no node answers, neither a reorg nor a new head would be seen.
            case Kept::canonical: hit = head_known; break;
            case Kept::head: hit = head_known && e.generation == generation_; break;
            case Kept::stale_only: break;
        }
    }
    if (metrics_) metrics_->count_cache(chain_, ticket.label, hit);
    if (!hit) return std::nullopt;
    lru_.splice(lru_.begin(), lru_, it->second);
    return it->second->result;
}

void ChainCache::put(const Ticket& ticket, const std::string& result) {
    const Put one{&ticket, &result};
    put_all(std::span<const Put>(&one, 1));
}

void ChainCache::put_all(std::span<const Put> puts) {
    // A block by number is read (checked against the canonical hash) unless final.
    std::optional<std::uint64_t> finalized;
    if (std::any_of(puts.begin(), puts.end(),
                    [](const Put& p) { return p.ticket->dependency.kind == Kind::block; })) {
        std::lock_guard lock(mu_);
        finalized = finalized_;
    }
    // What each answer names is read before the lock, once for all of them.
    struct Keep {
        const Put* put;
        std::optional<Named> named;
    };
    boost::container::small_vector<Keep, 1> keep;
    keep.reserve(puts.size());
    for (const Put& p : puts) {
        std::optional<Named> named;
        if (keepable(*p.ticket, *p.result, finalized, named))
            keep.push_back({&p, std::move(named)});
    }
    if (keep.empty()) return;
    const Clock::time_point at = Clock::now();
    std::lock_guard lock(mu_);
    for (Keep& k : keep) keep_locked(*k.put->ticket, *k.put->result, std::move(k.named), at);
}

bool ChainCache::keepable(const Ticket& ticket, const std::string& result,
                          std::optional<std::uint64_t> finalized,
                          std::optional<Named>& named) const {
    // Null is "not found (yet)": a block or transaction not mined, which will change.
    if (result == "null") return false;
    if (ticket.key.size() + result.size() + kEntryOverhead > config_.max_bytes / 4)
        return false;  // one huge answer must not empty the cache
    const Dependency& dep = ticket.dependency;
    // Answers that name their block are read. A block or header by number is checked against
    // the canonical hash, unless final.
    bool parse = dep.kind == Kind::mined || ticket.label == "eth_blockNumber";
    if (dep.kind == Kind::block) parse = !finalized || dep.number > *finalized;
    if (!parse) return true;
    json::error_code ec;
    json::value v = json::parse(result, ec);
    if (ec) return false;
    if (dep.kind == Kind::mined) {
        named = named_block<Named>(v, "blockNumber", "blockHash");
        return named.has_value();  // without: pending, not mined yet
    }
    if (dep.kind == Kind::block) {
        // A block or header names itself; a transaction names its block.
        named = named_block<Named>(v, "number", "hash");
        if (!named) named = named_block<Named>(v, "blockNumber", "blockHash");
        if (named && named->number != dep.number) named.reset();  // an uncle
    } else if (v.is_string()) {
        if (auto n = jsonrpc::parse_quantity(v.get_string())) named = Named{*n, {}};
    }
    return true;
}

void ChainCache::keep_locked(const Ticket& ticket, const std::string& result,
                             std::optional<Named> named, Clock::time_point at) {
    const Dependency& dep = ticket.dependency;
    Entry e;  // its key and result are copied once it is known to be kept, and not already
    e.label = ticket.label;
    e.at = at;
    const bool current = ticket.generation == generation_;
    const bool reorged = ticket.reorgs != reorgs_;
    switch (dep.kind) {
        case Kind::none: e.kept = Kept::stale_only; break;
        case Kind::forever: e.kept = Kept::forever; break;
        case Kind::head:
            // eth_blockNumber may itself be how the gateway learns that the head moved.
            if (named && ticket.label == "eth_blockNumber") note_head_locked(named->number);
            e.kept = Kept::head;
            // A node behind the head answered: not given to everyone until the head moves.
            if (named && ticket.label == "eth_blockNumber" && named->number < head_)
                e.kept = Kept::stale_only;
            e.generation = current ? generation_.load() : ticket.generation;
            e.number = head_;
            break;
        case Kind::block:
        case Kind::mined: {
            const std::uint64_t n = dep.kind == Kind::mined ? named->number : dep.number;
            e.number = n;
            if (named) e.hash = named->hash;
            if (dep.kind == Kind::mined) note_head_locked(n);
            if (finalized_ && n <= *finalized_) {
                e.kept = Kept::final;
                break;
            }
            // A reorg while the node answered: the answer may be from the dropped blocks.
            if (reorged) return;
            auto known = canonical_.find(n);
            if (known != canonical_.end() && !e.hash.empty() && e.hash != known->second)
                return;  // from a node on another branch
            // Served again only when the answer names the block the watcher has as canonical
            // there. State at a number (a balance, a call, logs) names no block: a node still on
            // a losing sibling could have given it, so it waits to be final.
            if (known != canonical_.end() && !e.hash.empty()) {
                e.kept = Kept::canonical;
            } else {
                e.kept = Kept::stale_only;
                if (known != canonical_.end()) e.hash = known->second;
            }
            break;
        }
    }
    if (ticket.mode == config::CacheMode::final &&
        (e.kept == Kept::head || e.kept == Kept::canonical))
        e.kept = Kept::stale_only;
    if (!config_.enabled) e.kept = Kept::stale_only;
    if (e.kept == Kept::stale_only && config_.max_stale.count() <= 0) return;

    if (auto it = index_.find(ticket.key); it != index_.end()) {
        // The same call again: its entry takes the new answer in place (its key and its nodes in
        // the list and the index are kept). What may fail (allocate) comes first, so that a
        // failure leaves the entry as it was; the result's room is reused only when it is not
        // much larger than the answer (the budget counts answers' sizes, not rooms kept).
        const Lru::iterator at = it->second;
        Entry& kept = *at;
        const bool reuse = kept.result.capacity() >= result.size() &&
                           kept.result.capacity() <= 2 * result.size() + 64;
        std::string copy;
        if (!reuse) copy = result;
        // At the same block number (a read at the head asked again) its node in the index by
        // number stays as it is; at another, a new node first, the old one dropped below.
        const bool same_number = kept.number == e.number;
        std::multimap<std::uint64_t, Lru::iterator>::iterator by_number{};
        if (same_number && kept.number)
            by_number = kept.by_number;
        else if (e.number)
            by_number = by_number_.emplace(*e.number, at);
        // Nothing below throws.
        bytes_ -= kept.size();
        if (kept.number && !same_number) by_number_.erase(kept.by_number);
        if (reuse) {
            kept.result.assign(result);  // within its room: no allocation
        } else {
            kept.result = std::move(copy);
        }
        kept.label = e.label;
        kept.kept = e.kept;
        kept.number = e.number;
        kept.hash = std::move(e.hash);
        kept.generation = e.generation;
        kept.at = e.at;
        kept.by_number = by_number;
        lru_.splice(lru_.begin(), lru_, at);
        bytes_ += kept.size();
    } else {
        e.key = ticket.key;
        e.result = result;
        bytes_ += e.size();
        lru_.push_front(std::move(e));
        Entry& added = lru_.front();
        index_.emplace(added.key, lru_.begin());
        if (added.number) added.by_number = by_number_.emplace(*added.number, lru_.begin());
    }
    while (!lru_.empty() && bytes_ > config_.max_bytes) {
        if (metrics_) metrics_->count_cache_eviction(chain_, lru_.back().label);
        erase(std::prev(lru_.end()));
    }
}

std::optional<ChainCache::Stale> ChainCache::stale(const Ticket& ticket) {
    std::lock_guard lock(mu_);
    auto it = index_.find(ticket.key);
    if (it == index_.end()) return std::nullopt;
    const auto age =
        std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - it->second->at);
    if (age > config_.max_stale) return std::nullopt;
    lru_.splice(lru_.begin(), lru_, it->second);
    return Stale{it->second->result, age};
}

void ChainCache::erase(Lru::iterator it) {
    bytes_ -= it->size();
    if (it->number) by_number_.erase(it->by_number);
    index_.erase(it->key);
    lru_.erase(it);
}

void ChainCache::note_head_locked(std::uint64_t number) {
    if (number <= head_) return;
    head_ = number;
    ++generation_;
}

void ChainCache::note_head(std::uint64_t number) {
    std::lock_guard lock(mu_);
    note_head_locked(number);
}

void ChainCache::note_write() {
    std::lock_guard lock(mu_);
    ++generation_;
}

void ChainCache::note_blocks(const std::vector<chain::BlockRef>& blocks) {
    std::lock_guard lock(mu_);
    std::size_t removed = 0;
    if (!blocks.empty() && !canonical_.empty() &&
        blocks.front().number > canonical_.rbegin()->first + 1) {
        // A gap (the watcher could not look for a while): what happened in it is unknown, so
        // nothing unfinalized is trusted any more.
        for (auto it = by_number_.begin(); it != by_number_.end();) {
            Lru::iterator entry = (it++)->second;
            if (entry->kept == Kept::canonical) {
                erase(entry);
                ++removed;
            }
        }
        canonical_.clear();
    }
    for (const auto& b : blocks) {
        auto [known, added] = canonical_.try_emplace(b.number, b.hash);
        if (!added && known->second == b.hash) continue;
        known->second = b.hash;
        // Entries tied to another block at this number came from a branch now dropped.
        for (auto [it, end] = by_number_.equal_range(b.number); it != end;) {
            Lru::iterator entry = (it++)->second;
            if (entry->kept != Kept::head && !entry->hash.empty() && entry->hash != b.hash) {
                erase(entry);
                ++removed;
            }
        }
    }
    if (!blocks.empty()) {
        // A new head (even at the same height): head-dependent answers are done.
        ++generation_;
        head_ = std::max(head_, blocks.back().number);
    }
    while (canonical_.size() > kCanonicalKept) canonical_.erase(canonical_.begin());
    if (removed && metrics_) metrics_->count_cache_invalidations(chain_, removed);
}

void ChainCache::note_reorg(const chain::Reorg& reorg) {
    std::lock_guard lock(mu_);
    ++reorgs_;
    ++generation_;
    head_ = reorg.new_head.number;  // lower after a rollback: the next block is news again
    std::size_t removed = 0;
    // Everything tied to a block above the common ancestor, including head-dependent answers
    // given while such a block was the head.
    for (auto it = by_number_.upper_bound(reorg.ancestor); it != by_number_.end();) {
        Lru::iterator entry = (it++)->second;
        if (entry->kept == Kept::forever) continue;
        erase(entry);
        ++removed;
    }
    canonical_.erase(canonical_.upper_bound(reorg.ancestor), canonical_.end());
    if (removed && metrics_) metrics_->count_cache_invalidations(chain_, removed);
}

void ChainCache::note_finalized(std::uint64_t number) {
    std::lock_guard lock(mu_);
    finalized_ = number;
}

std::size_t ChainCache::entries() const {
    std::lock_guard lock(mu_);
    return lru_.size();
}

std::size_t ChainCache::bytes() const {
    std::lock_guard lock(mu_);
    return bytes_;
}

json::object ChainCache::view() const {
    std::lock_guard lock(mu_);
    json::object o;
    o["enabled"] = config_.enabled;
    o["coalesce"] = config_.coalesce;
    o["entries"] = lru_.size();
    o["bytes"] = bytes_;
    o["maxBytes"] = config_.max_bytes;
    o["finalized"] = nullptr;
    if (finalized_) o["finalized"] = *finalized_;
    return o;
}

void ChainCache::publish_metrics() const {
    if (!metrics_) return;
    std::lock_guard lock(mu_);
    metrics_->set_cache_size(chain_, static_cast<double>(lru_.size()), static_cast<double>(bytes_));
}

}  // namespace gateway::cache
