#pragma once
// Recent answers to reads, kept so that a read no upstream can answer gets the last known answer,
// marked stale with its age, instead of an error. Bounded by entries and bytes (least recently
// used go first). Thread-safe.

#include "gateway/config/config.hpp"

#include <boost/json/value.hpp>

#include <chrono>
#include <list>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

namespace gateway::cache {

class ReadCache {
public:
    using Clock = std::chrono::steady_clock;

    explicit ReadCache(const config::CacheConfig& config);

    /// Keeps a node's answer (the result's JSON text) to a read.
    void put(std::string_view chain, std::string_view method, const boost::json::value& params,
             std::string result);

    struct Hit {
        std::string result;
        std::chrono::milliseconds age;
    };
    /// The last answer to the same read, if one is kept and not older than cache.max_stale_ms.
    std::optional<Hit> get(std::string_view chain, std::string_view method,
                           const boost::json::value& params);

    std::size_t entries() const;
    std::size_t bytes() const;

    /// Reads whose answers are worth keeping: not filters, not the gateway's own methods.
    static bool cacheable(std::string_view method);

private:
    struct Item {
        std::string key;
        std::string result;
        Clock::time_point at;
    };
    static std::string key_of(std::string_view chain, std::string_view method,
                              const boost::json::value& params);

    config::CacheConfig config_;
    mutable std::mutex mu_;
    std::list<Item> lru_;  // most recently used first
    std::unordered_map<std::string, std::list<Item>::iterator> index_;
    std::size_t bytes_ = 0;
};

}  // namespace gateway::cache
