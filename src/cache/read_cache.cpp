#include "gateway/cache/read_cache.hpp"

#include <boost/json/serialize.hpp>

namespace gateway::cache {

ReadCache::ReadCache(const config::CacheConfig& config) : config_(config) {}

std::string ReadCache::key_of(std::string_view chain, std::string_view method,
                              const boost::json::value& params) {
    std::string key(chain);
    key.push_back('\0');
    key.append(method);
    key.push_back('\0');
    key.append(boost::json::serialize(params));
    return key;
}

bool ReadCache::cacheable(std::string_view method) {
    return method.find("Filter") == std::string_view::npos && method.substr(0, 8) != "gateway_" &&
           method != "eth_sendRawTransaction" && method != "eth_subscribe";
}

void ReadCache::put(std::string_view chain, std::string_view method,
                    const boost::json::value& params, std::string result) {
    if (config_.max_entries == 0) return;
    std::string key = key_of(chain, method, params);
    const std::size_t size = key.size() + result.size();
    if (size > config_.max_bytes / 4) return;  // one huge answer must not empty the cache
    std::lock_guard lock(mu_);
    if (auto it = index_.find(key); it != index_.end()) {
        bytes_ -= it->second->key.size() + it->second->result.size();
        lru_.erase(it->second);
        index_.erase(it);
    }
    lru_.push_front(Item{std::move(key), std::move(result), Clock::now()});
    index_[lru_.front().key] = lru_.begin();
    bytes_ += size;
    while (!lru_.empty() && (lru_.size() > config_.max_entries || bytes_ > config_.max_bytes)) {
        bytes_ -= lru_.back().key.size() + lru_.back().result.size();
        index_.erase(lru_.back().key);
        lru_.pop_back();
    }
}

std::optional<ReadCache::Hit> ReadCache::get(std::string_view chain, std::string_view method,
                                             const boost::json::value& params) {
    const std::string key = key_of(chain, method, params);
    std::lock_guard lock(mu_);
    auto it = index_.find(key);
    if (it == index_.end()) return std::nullopt;
    const auto age =
        std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - it->second->at);
    if (age > config_.max_stale) return std::nullopt;
    lru_.splice(lru_.begin(), lru_, it->second);
    return Hit{it->second->result, age};
}

std::size_t ReadCache::entries() const {
    std::lock_guard lock(mu_);
    return lru_.size();
}

std::size_t ReadCache::bytes() const {
    std::lock_guard lock(mu_);
    return bytes_;
}

}  // namespace gateway::cache
