#pragma once
// One chain's read cache. An answer is kept under its method and normalized params, with what it
// depends on, and served again only while that is still true:
//   - tied to a block hash (eth_getBlockByHash, a {blockHash} param, a raw transaction by hash),
//     or to a finalized block: kept until evicted;
//   - tied to an unfinalized block (by number, or a receipt's block): kept while that block is
//     still the canonical one the head watcher knows; a reorg that drops it removes the entry;
//   - tied to the head (`latest`, no block, eth_blockNumber, eth_gasPrice): kept until the head
//     moves, a write goes through the gateway, or no node tells where the head is.
// Errors and null answers are never kept; `pending` reads are never served from the cache.
// Any kept answer not older than max_stale_ms is served, marked stale, when no node can answer.
// The entries, with their keys and bookkeeping, stay within max_bytes (least recently used
// go first). Thread-safe.

#include "gateway/chain/head_tracker.hpp"
#include "gateway/config/config.hpp"

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <list>
#include <map>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace gateway::metrics {
class Metrics;
}

namespace gateway::cache {

/// What a read's answer depends on, from its method and params alone.
struct Dependency {
    enum class Kind {
        none,     ///< cannot tell (pending, a node's own state): kept for stale serving only
        forever,  ///< a block hash, a raw transaction: the answer cannot change
        head,     ///< the head (latest, safe, finalized, no block)
        block,    ///< the block `number`
        mined,    ///< a transaction: the block named in the answer (blockNumber, blockHash)
    };
    Kind kind = Kind::none;
    std::uint64_t number = 0;  ///< for block
};

/// The dependency of a read; nullopt when its answers are never kept at all (not a read,
/// filters, subscriptions, signing, the gateway's own methods).
std::optional<Dependency> dependency_of(std::string_view method, const boost::json::value& params);

/// The cache key: the method and the params with object keys sorted and 0x-strings lowercased.
std::string cache_key(std::string_view method, const boost::json::value& params);

class ChainCache {
public:
    using Clock = std::chrono::steady_clock;
    /// Counted for each entry on top of its key and answer (list, index and map nodes).
    static constexpr std::size_t kEntryOverhead = 256;

    /// `metrics` may be null; it must outlive the cache.
    ChainCache(std::string chain, const config::CacheConfig& config, metrics::Metrics* metrics);

    /// A read, looked at once: its key, dependency and the cache's state when it was asked.
    struct Ticket {
        std::string key;
        std::string_view label;  ///< the method's metric label
        Dependency dependency;
        config::CacheMode mode = config::CacheMode::on;
        std::uint64_t generation = 0;  ///< the head's generation when asked
        std::uint64_t reorgs = 0;      ///< reorgs seen when asked
    };
    /// nullopt when the call's answers are never kept (see dependency_of, methods: off).
    std::optional<Ticket> ticket(std::string_view method, const boost::json::value& params) const;

    /// The kept answer, if it is still true (counted as a hit or a miss). `head_known`: some
    /// node answers its probes, so a head that moved would have been seen.
    std::optional<std::string> fresh(const Ticket& ticket, bool head_known);
    /// Keeps a node's answer (the result's JSON text) to the ticket's read.
    void put(const Ticket& ticket, const std::string& result);
    /// An answer to keep, for put_all.
    struct Put {
        const Ticket* ticket;
        const std::string* result;
    };
    /// put() for each, under one lock (a batch's answers: one lock, not one for each).
    void put_all(std::span<const Put> puts);
    struct Stale {
        std::string result;
        std::chrono::milliseconds age;
    };
    /// Any kept answer not older than max_stale_ms, for when no node can answer.
    std::optional<Stale> stale(const Ticket& ticket);
    /// Identical calls in flight at once are sent upstream once.
    bool coalesce() const { return config_.coalesce; }

    // What the gateway learns about the chain.
    /// A node's head (probes, answers).
    void note_head(std::uint64_t number);
    /// A call that may change state went through: head-dependent answers are not served again.
    void note_write();
    /// Blocks now canonical, oldest first (the head watcher's new blocks). Entries tied to
    /// another block at the same number are removed.
    void note_blocks(const std::vector<chain::BlockRef>& blocks);
    /// A reorg: every entry tied to a block above the common ancestor is removed.
    void note_reorg(const chain::Reorg& reorg);
    /// The newest finalized block.
    void note_finalized(std::uint64_t number);

    std::size_t entries() const;
    std::size_t bytes() const;
    /// {enabled, entries, bytes, maxBytes, finalized, coalesce}.
    boost::json::object view() const;
    /// Sets the entries and bytes gauges (called when metrics are scraped).
    void publish_metrics() const;

private:
    enum class Kept { forever, final, canonical, head, stale_only };
    struct Entry;
    using Lru = std::list<Entry>;
    struct Entry {
        std::string key;
        std::string result;
        std::string_view label;
        Kept kept = Kept::stale_only;
        std::optional<std::uint64_t> number;  ///< the block it depends on (head: the head then)
        std::string hash;                     ///< that block's hash, when known
        std::uint64_t generation = 0;         ///< head entries: the head's generation
        Clock::time_point at;
        std::multimap<std::uint64_t, Lru::iterator>::iterator by_number;  ///< when `number`
        std::size_t size() const { return key.size() + result.size() + kEntryOverhead; }
    };

    /// The block an answer names (a block's number and hash, a transaction's blockNumber and
    /// blockHash), read before the lock.
    struct Named {
        std::uint64_t number;
        std::string hash;
    };
    /// Whether put() keeps `result` at all, and what it names: false for what is never kept
    /// (null, too large, an answer that does not name its block). Outside the lock.
    bool keepable(const Ticket& ticket, const std::string& result,
                  std::optional<std::uint64_t> finalized, std::optional<Named>& named) const;
    /// Keeps a keepable answer; `at` is when it arrived.
    void keep_locked(const Ticket& ticket, const std::string& result, std::optional<Named> named,
                     Clock::time_point at);
    void erase(Lru::iterator it);
    void note_head_locked(std::uint64_t number);

    std::string chain_;
    config::CacheConfig config_;
    metrics::Metrics* metrics_;

    mutable std::mutex mu_;
    Lru lru_;                                                    // most recently used first
    std::unordered_map<std::string_view, Lru::iterator> index_;  // views of the entries' keys
    std::multimap<std::uint64_t, Lru::iterator> by_number_;
    std::size_t bytes_ = 0;
    std::map<std::uint64_t, std::string> canonical_;  // recent canonical hashes by number
    std::optional<std::uint64_t> finalized_;
    std::uint64_t head_ = 0;  // the highest head seen
    // Changed under mu_; read without it by ticket(), the one lookup each read makes.
    std::atomic<std::uint64_t> generation_{1};
    std::atomic<std::uint64_t> reorgs_{0};
};

}  // namespace gateway::cache
