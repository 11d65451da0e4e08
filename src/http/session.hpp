#pragma once
// Private to the listener (src/http/listener.cpp, session.cpp): what a listener and its
// connections share, and the one call that makes a connection. The sessions themselves (reading a
// request, answering it, refusing one the listener cannot read) are in session.cpp; the acceptor
// and its connection table in listener.cpp.

#include "gateway/http/browser.hpp"
#include "gateway/http/connections.hpp"
#include "gateway/http/listener.hpp"
#include "gateway/metrics/metrics.hpp"
#include "gateway/util/memory.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <memory>
#include <string_view>
#include <utility>

namespace gateway::http {

// What the listener and its sessions share; sessions keep it alive past the listener.
struct ListenerState {
    ListenerState(ListenerOptions o, Handler h, metrics::Metrics* m)
        : options(std::move(o)),
          handler(std::move(h)),
          metrics(m),
          browser(BrowserPolicy::from(options)),
          table({options.max_connections, options.max_connections_per_ip}, [this](std::size_t n) {
              if (metrics) metrics->set_open_connections(options.name, static_cast<double>(n));
          }) {}

    ListenerOptions options;
    Handler handler;
    metrics::Metrics* metrics;
    BrowserPolicy browser;
    /// Bytes of request bodies being read or held now (max_body_bytes_in_flight).
    std::atomic<std::size_t> bodies{0};
    std::unique_ptr<boost::asio::ssl::context> tls;  // set when the listener speaks TLS
    std::atomic<bool> stopping{false};
    ConnectionTable table;

    void observe(unsigned status, std::size_t body_bytes) {
        if (metrics) metrics->observe_http(options.name, status, body_bytes);
    }
    /// Takes `n` bytes of the body budget; false (nothing taken) when they would pass it.
    bool reserve_body(std::size_t n) {
        const std::size_t cap = options.max_body_bytes_in_flight;
        std::size_t now = bodies.load();
        do {
            if (cap && (n > cap || now > cap - n)) return false;
        } while (!bodies.compare_exchange_weak(now, now + n));
        return true;
    }
    void release_body(std::size_t n) {
        const std::size_t left = bodies.fetch_sub(n) - n;
        // glibc's malloc keeps what large bodies freed (a flood of them left gigabytes held after
        // it ended): handed back once the last large body in flight is gone. (jemalloc, the
        // binary's, hands it back on a thread of its own: nothing is done here then.)
        if (n >= kTrimAfterBytes && left == 0) util::give_back_free_memory();
    }
    static constexpr std::size_t kTrimAfterBytes = 1 << 20;
    void count_closed(std::string_view reason) {
        if (metrics) metrics->count_connection_closed(options.name, reason);
    }
};

// What the listener asks of a connection, whatever its stream. These virtual calls happen once
// per connection (start) or at shutdown and eviction; a request never goes through them.
class SessionBase : public Connection {
public:
    using Connection::Connection;
    virtual boost::asio::any_io_executor executor() = 0;
    virtual boost::asio::awaitable<void> run() = 0;
    /// Asks the session to end (shutdown).
    virtual void stop() = 0;
    /// Closes now, whatever it does (the end of a shutdown grace period).
    virtual void close_now() = 0;
    /// Closes a session the table claimed to make room, on its own executor.
    virtual void evict() = 0;
};

/// A session for a connection just accepted at `accepted` from `peer`: TLS when the listener
/// speaks TLS. Not started: the listener admits it to its table first, then spawns run().
std::shared_ptr<SessionBase> make_session(std::shared_ptr<ListenerState> state,
                                          boost::asio::ip::tcp::socket socket,
                                          const boost::asio::ip::tcp::endpoint& peer,
                                          std::chrono::steady_clock::time_point accepted);

}  // namespace gateway::http
