#pragma once
// The connections a listener holds, and its limits on them (max_connections,
// max_connections_per_ip): whether a new connection is admitted, and which idle one is closed to
// make room for it. No I/O here: the listener closes what the table tells it to, and tests drive
// the table with connections of their own from any peer address.

#include <boost/asio/ip/address.hpp>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

namespace gateway::http {

/// A connection as the limits see it: its peer, and whether it waits for a request (idle), reads
/// a request (its head, then its body), or serves one. Waiting and reading make it a candidate for
/// eviction: a request that takes long to arrive is a slow or silent client. The listener's
/// sessions derive from it.
///
/// Eviction is decided by one atomic transition, so that the acceptor and the connection's own
/// strand cannot both win: the table claims a connection only while it is idle or reading a
/// request (-> evicted), and the connection moves on only from those phases (idle -> reading when
/// a request's first byte is there, reading -> busy once the request is whole). Whichever comes
/// first stands.
class Connection {
public:
    using Clock = std::chrono::steady_clock;

    /// A new connection starts idle (it waits for its first request) since `now`.
    Connection(boost::asio::ip::address peer, Clock::time_point now) noexcept;
    virtual ~Connection() = default;
    Connection(const Connection&) = delete;
    Connection& operator=(const Connection&) = delete;

    /// The peer's address (an IPv4-mapped IPv6 address is given as the IPv4 address).
    const boost::asio::ip::address& peer() const noexcept { return peer_; }

    /// On the connection's strand: from `now` on it waits for a request's first byte, and the
    /// table may claim it to make room. No effect once it was claimed.
    void wait_for_request(Clock::time_point now) noexcept;

    /// On the connection's strand, when a request's first byte is there (read now, or left in
    /// the buffer by a pipelining client): true when the request may be read. False when the table
    /// claimed the connection first; it must then close without serving, its place has gone to a
    /// newer connection. While the request is read the connection may still be claimed.
    bool begin_request(Clock::time_point now = Clock::now()) noexcept;

    /// On the connection's strand, once the request is read whole (head and body): true when it
    /// may be served (it can no longer be claimed). False when the table claimed it meanwhile.
    bool request_complete() noexcept;

    /// Whether it waits for a request (and may be claimed). Any thread.
    bool idle() const noexcept { return phase_.load(std::memory_order_acquire) == kIdle; }
    /// Whether the table claimed it to make room (it is no longer counted). Any thread.
    bool evicted() const noexcept { return phase_.load(std::memory_order_acquire) == kEvicted; }

private:
    friend class ConnectionTable;
    static constexpr std::size_t kNotHeld = std::numeric_limits<std::size_t>::max();
    enum Phase : std::uint8_t { kIdle, kReading, kBusy, kEvicted };

    // Claims it when it is in `from` (kIdle or kReading).
    bool claim_if(Phase from) noexcept;
    // Has answered a request (a keep-alive connection): idle, it goes before the others.
    std::atomic<bool> served_{false};

    std::atomic<std::uint8_t> phase_{kIdle};
    std::atomic<Clock::rep> idle_since_;  // or, while a request is read, since its first byte
    boost::asio::ip::address peer_;
    std::size_t index_ = kNotHeld;  // its place in the table's list; under the table's lock
};

/// The connections one listener holds. Thread-safe: one mutex, held for a short scan at most
/// (admissions run on the acceptor's strand, removals on the connections' threads).
class ConnectionTable {
public:
    /// Connections younger than this (waiting for their first request, or reading one) are
    /// claimed only when no older one can be: time for a client to send its request (a TLS
    /// handshake takes round trips), while an attacker's stale connections go first.
    static constexpr std::chrono::milliseconds kYoung{1000};

    struct Limits {
        std::size_t max_connections = 0;  ///< 0: no cap
        std::size_t max_per_peer = 0;     ///< 0: no cap; loopback peers are never counted
    };

    enum class Verdict {
        admitted,
        full,         ///< at max_connections with no idle connection to close
        over_per_ip,  ///< the peer already holds max_per_peer connections
    };

    struct Admission {
        Verdict verdict = Verdict::admitted;
        /// Admitted at the cap: the idle connection claimed to make room, no longer counted. The
        /// caller closes it (on its own executor).
        std::shared_ptr<Connection> evicted;
    };

    /// `on_count` is called with the number of connections held after every change, under the
    /// table's lock, so that calls arrive in the order of the changes (a gauge never lags).
    explicit ConnectionTable(Limits limits, std::function<void(std::size_t)> on_count = {});

    /// Admits a new connection (not yet held), or says why not. At the cap one is claimed to
    /// make room, in this order: the keep-alive connection idle longest (it has been served and
    /// waits for more); the one whose first request has been awaited, or whose request has been
    /// arriving, the longest, if that is at least kYoung (a slow or silent client: slowloris);
    /// then the same among younger ones. Only a part of a very large table is searched, so
    /// "longest" is among those looked at.
    Admission admit(const std::shared_ptr<Connection>& connection);

    /// Forgets a connection that closed. Idempotent; a claimed connection is already forgotten.
    /// A held connection must be removed before it is destroyed.
    void remove(Connection& connection);

    /// Connections held now.
    std::size_t size() const;
    /// Connections held now from `peer` (always 0 for a loopback peer: they are not counted;
    /// an IPv6 peer counts with its /64).
    std::size_t count_from(const boost::asio::ip::address& peer) const;
    /// The connections held now (for shutdown).
    std::vector<std::shared_ptr<Connection>> snapshot() const;

private:
    struct Entry {
        Connection* connection;
        std::weak_ptr<Connection> owner;
    };

    std::shared_ptr<Connection> claim_idle_locked();
    void remove_locked(Connection& connection);

    const Limits limits_;
    const std::function<void(std::size_t)> on_count_;
    mutable std::mutex mu_;
    std::vector<Entry> entries_;  // dense: a removal moves the last entry into the hole
    // By peer address; an IPv6 peer by its /64 (one subscriber's network holds billions).
    std::unordered_map<boost::asio::ip::address, std::size_t> per_peer_;
    std::size_t cursor_ = 0;  // where the next search for an idle connection starts
};

}  // namespace gateway::http
