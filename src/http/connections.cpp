#include "gateway/http/connections.hpp"

#include <algorithm>

namespace gateway::http {

namespace {

// How many connections one search for an idle connection looks at, at most. Tables up to this
// size are searched whole; in a larger one (a cap of a quarter of a million connections) a full
// search under the lock would stall every connection that closes meanwhile, so it looks at this
// many from where the last search stopped.
constexpr std::size_t kSearchLimit = 4096;

// A claim can lose to a connection that starts a request at that moment; then look again.
constexpr int kClaimAttempts = 4;

boost::asio::ip::address plain(const boost::asio::ip::address& a) {
    if (a.is_v6() && a.to_v6().is_v4_mapped())
        return boost::asio::ip::make_address_v4(boost::asio::ip::v4_mapped, a.to_v6());
    return a;
}

// What the per-address cap counts a peer under: its address, or for IPv6 its /64, the network
// one subscriber gets (an attacker with one holds 2^64 addresses).
boost::asio::ip::address counted_as(const boost::asio::ip::address& peer) {
    const auto a = plain(peer);
    if (!a.is_v6()) return a;
    auto bytes = a.to_v6().to_bytes();
    std::fill(bytes.begin() + 8, bytes.end(), 0);
    return boost::asio::ip::address_v6(bytes);
}

}  // namespace

Connection::Connection(boost::asio::ip::address peer, Clock::time_point now) noexcept
    : idle_since_(now.time_since_epoch().count()), peer_(plain(peer)) {}

void Connection::wait_for_request(Clock::time_point now) noexcept {
    idle_since_.store(now.time_since_epoch().count(), std::memory_order_relaxed);
    served_.store(true, std::memory_order_relaxed);
    std::uint8_t expected = kBusy;
    phase_.compare_exchange_strong(expected, kIdle, std::memory_order_acq_rel);
}

bool Connection::begin_request(Clock::time_point now) noexcept {
    // The request's start, before the phase says so: a claim that sees kReading reads this time.
    idle_since_.store(now.time_since_epoch().count(), std::memory_order_relaxed);
    std::uint8_t expected = kIdle;
    return phase_.compare_exchange_strong(expected, kReading, std::memory_order_acq_rel);
}

bool Connection::request_complete() noexcept {
    std::uint8_t expected = kReading;
    return phase_.compare_exchange_strong(expected, kBusy, std::memory_order_acq_rel);
}

bool Connection::claim_if(Phase from) noexcept {
    std::uint8_t expected = from;
    return phase_.compare_exchange_strong(expected, kEvicted, std::memory_order_acq_rel);
}

ConnectionTable::ConnectionTable(Limits limits, std::function<void(std::size_t)> on_count)
    : limits_(limits), on_count_(std::move(on_count)) {}

ConnectionTable::Admission ConnectionTable::admit(const std::shared_ptr<Connection>& connection) {
    std::lock_guard lock(mu_);
    if (connection->index_ != Connection::kNotHeld) return {};
    const auto peer = counted_as(connection->peer());
    // In a sidecar every client is 127.0.0.1: a per-address cap would be a cap on everyone.
    const bool counted = limits_.max_per_peer > 0 && !connection->peer().is_loopback();
    if (counted) {
        auto it = per_peer_.find(peer);
        if (it != per_peer_.end() && it->second >= limits_.max_per_peer)
            return {Verdict::over_per_ip, nullptr};
    }
    Admission out;
    if (limits_.max_connections > 0 && entries_.size() >= limits_.max_connections) {
        out.evicted = claim_idle_locked();
        if (!out.evicted) return {Verdict::full, nullptr};
        remove_locked(*out.evicted);
    }
    connection->index_ = entries_.size();
    entries_.push_back(Entry{connection.get(), connection});
    if (counted) ++per_peer_[peer];
    if (on_count_) on_count_(entries_.size());
    return out;
}

void ConnectionTable::remove(Connection& connection) {
    std::lock_guard lock(mu_);
    if (connection.index_ == Connection::kNotHeld) return;
    remove_locked(connection);
    if (on_count_) on_count_(entries_.size());
}

void ConnectionTable::remove_locked(Connection& connection) {
    const std::size_t i = connection.index_;
    if (i != entries_.size() - 1) {
        entries_[i] = std::move(entries_.back());
        entries_[i].connection->index_ = i;
    }
    entries_.pop_back();
    connection.index_ = Connection::kNotHeld;
    if (limits_.max_per_peer > 0 && !connection.peer().is_loopback()) {
        auto it = per_peer_.find(counted_as(connection.peer()));
        if (it != per_peer_.end() && --it->second == 0) per_peer_.erase(it);
    }
}

std::shared_ptr<Connection> ConnectionTable::claim_idle_locked() {
    const auto young_since = (Connection::Clock::now() - kYoung).time_since_epoch().count();
    std::vector<const Connection*> passed;  // being destroyed, or won by their own request
    for (int attempt = 0; attempt < kClaimAttempts; ++attempt) {
        const std::size_t n = entries_.size();
        const std::size_t look = std::min(n, kSearchLimit);
        // Lower ranks go first: 0 keep-alive idle, 1 an old unfinished request (or first wait),
        // 2 a young one; within a rank, the oldest.
        std::size_t best = n;
        int best_rank = 3;
        Connection::Phase best_phase = Connection::kIdle;
        Connection::Clock::rep oldest = 0;
        for (std::size_t k = 0; k < look; ++k) {
            const std::size_t i = (cursor_ + k) % n;
            // Entries are alive while listed: a connection leaves the table (under this lock)
            // before its memory goes.
            const Connection& c = *entries_[i].connection;
            if (std::find(passed.begin(), passed.end(), &c) != passed.end()) continue;
            const auto phase =
                static_cast<Connection::Phase>(c.phase_.load(std::memory_order_acquire));
            if (phase != Connection::kIdle && phase != Connection::kReading) continue;
            const auto since = c.idle_since_.load(std::memory_order_relaxed);
            const bool kept_alive =
                phase == Connection::kIdle && c.served_.load(std::memory_order_relaxed);
            const int rank = kept_alive ? 0 : since <= young_since ? 1 : 2;
            if (rank < best_rank || (rank == best_rank && since < oldest)) {
                best = i;
                best_rank = rank;
                best_phase = phase;
                oldest = since;
            }
        }
        if (n > look) cursor_ = (cursor_ + look) % n;
        if (best == n) return nullptr;
        // Being destroyed: it is about to leave by itself; another one makes the room.
        auto owner = entries_[best].owner.lock();
        if (owner && owner->claim_if(best_phase)) return owner;
        passed.push_back(entries_[best].connection);
    }
    return nullptr;
}

std::size_t ConnectionTable::size() const {
    std::lock_guard lock(mu_);
    return entries_.size();
}

std::size_t ConnectionTable::count_from(const boost::asio::ip::address& peer) const {
    std::lock_guard lock(mu_);
    auto it = per_peer_.find(counted_as(peer));
    return it == per_peer_.end() ? 0 : it->second;
}

std::vector<std::shared_ptr<Connection>> ConnectionTable::snapshot() const {
    std::vector<std::shared_ptr<Connection>> out;
    std::lock_guard lock(mu_);
    out.reserve(entries_.size());
    for (const auto& e : entries_)
        if (auto c = e.owner.lock()) out.push_back(std::move(c));
    return out;
}

}  // namespace gateway::http
