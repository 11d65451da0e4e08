#pragma once
// An HTTP/1.1 server: keep-alive sessions, limits and timeouts, graceful shutdown. What a request
// means is the handler's business; the listener only refuses what it cannot read.

#include "gateway/config/config.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace gateway::metrics {
class Metrics;
}

namespace gateway::http {

using Headers = std::vector<std::pair<std::string, std::string>>;

struct Request {
    std::string method;  ///< "POST", "GET", ...
    std::string target;  ///< path and query, as sent
    std::string body;
    Headers headers;        ///< names in lower case
    std::string remote;     ///< the peer's address, for logs
    unsigned version = 11;  ///< HTTP/1.1: 11, HTTP/1.0: 10
    /// Who is calling, as the listener's head check established it (the check's own type, which
    /// its handler reads back); empty without a head check.
    std::shared_ptr<const void> principal;

    /// The first header of that (lower-case) name, or "".
    std::string_view header(std::string_view name) const;
    /// The target without its query string.
    std::string_view path() const;
};

struct Response {
    unsigned status = 200;
    /// A literal (the listener writes it as it is): a std::string of this length was an allocation
    /// for every answer.
    std::string_view content_type = "application/json";
    std::string body;
    Headers headers;
};

/// Answers one request. Runs on the connection's strand (or its loop,
/// which one thread runs alone: ListenerOptions::loops_run_alone); must not throw (an exception is
/// logged and answered with HTTP 500, as a last resort).
using Handler = std::function<boost::asio::awaitable<Response>(Request&)>;

/// Looks at a request once its head is in, before its body is read (the request has no body
/// yet): an answer refuses it, and its body is never read. May set `principal`. Runs on the
/// connection's strand or loop, as Handler; must not throw.
using HeadCheck = std::function<boost::asio::awaitable<std::optional<Response>>(Request&)>;

struct ListenerOptions {
    std::string name;  ///< "rpc" or "admin": for logs and metrics
    config::Endpoint endpoint;
    std::size_t max_body_bytes = 5 * 1024 * 1024;
    std::size_t max_header_bytes = 8 * 1024;
    config::Millis idle_timeout{60'000};
    config::Millis read_timeout{30'000};
    /// The body for a request the listener refuses itself (HTTP 400, 403, 413, 415, 431).
    std::function<std::string(unsigned status, std::string_view message)> error_body;

    /// From accept (or, on a keep-alive connection, from a request's first byte) until the
    /// request's head is complete; a slower client is disconnected.
    config::Millis header_timeout{10'000};
    /// Connections held at once; 0: no cap. At the cap an idle connection (waiting for a request)
    /// is closed to make room; with none idle, the new connection is closed at accept.
    std::size_t max_connections = 0;
    /// Connections from one peer address at once; 0: no cap. Loopback peers are exempt.
    std::size_t max_connections_per_ip = 0;
    /// Request bodies read and held at once, all connections together (a body counts its
    /// Content-Length, or max_body_bytes when chunked, from its head until its answer is
    /// written); a request that would pass it gets 503 with Retry-After before its body is read.
    /// 0: no cap.
    std::size_t max_body_bytes_in_flight = 0;

    /// Browser checks, on a request's head, before the head check and before its body is read:
    /// - more than one Host, or none in an HTTP/1.1 request, gets 400 (RFC 9112 section 3.2);
    /// - on a loopback endpoint, a Host that is not a loopback name or address gets 403 (DNS
    ///   rebinding);
    /// - an Origin that is neither the listener's own (scheme://Host) nor in `allowed_origins`
    ///   ("*": any) gets 403; allowed cross-origin requests get CORS headers, and an OPTIONS
    ///   preflight from one is answered 204 by the listener;
    /// - a POST announcing a body whose Content-Type is not JSON (application/json,
    ///   application/json-rpc, application/jsonrequest, parameters allowed) gets 415.
    std::vector<std::string> allowed_origins;
    /// The admin listener: pages of its own origin only. `allowed_origins` must be empty, and a
    /// refused origin's message does not point at server.cors.allowed_origins (it would not help).
    bool own_origin_only = false;
    /// Request headers a CORS preflight may ask for.
    std::vector<std::string> cors_allow_headers{"authorization", "content-type", "idempotency-key"};
    /// Response headers a cross-origin page may read (X-Gateway-*).
    std::vector<std::string> cors_expose_headers;

    /// The handler's answers of at least this many bytes are gzip-compressed for a client whose
    /// Accept-Encoding takes gzip, at zlib level `compress_level`; 0: never. A request body with
    /// Content-Encoding gzip is decoded whatever this says, within max_body_bytes once decoded
    /// (413 beyond, 400 when it is not gzip); another coding gets 415.
    std::size_t compress_min_bytes = 0;
    int compress_level = 1;

    /// TLS: when set, connections are TLS only (the handshake counts toward header_timeout).
    config::TlsConfig tls;

    /// Each session context is run by one thread alone, which says so with util::SoleRunner:
    /// sessions run on their loop's executor without a strand. Otherwise each has a strand.
    bool loops_run_alone = false;

    /// Optional: who may send a body at all (the RPC listener: credentials), so that a stranger
    /// cannot make the listener hold max_body_bytes per connection.
    HeadCheck head_check;
};

/// Raises the process's soft RLIMIT_NOFILE to its hard limit, or to the kernel's per-process
/// ceiling (/proc/sys/fs/nr_open) when the hard limit is above it or unlimited (setrlimit refuses
/// those). Returns the soft limit now.
std::size_t raise_descriptor_limit();

/// The soft RLIMIT_NOFILE raise_descriptor_limit() asks for: the hard limit, capped at `nr_open`
/// when that is known (an unlimited hard limit is RLIM_INFINITY, above any nr_open), and never
/// below `soft`.
std::uint64_t descriptor_limit_target(std::uint64_t soft, std::uint64_t hard,
                                      std::optional<std::uint64_t> nr_open);

/// Client connections each listener holds at most when server.max_connections is not set: a
/// quarter of the descriptor limit (half for clients, split between the two listeners), at least
/// 1 and at most kMaxDefaultConnections.
std::size_t default_max_connections(std::size_t descriptor_limit);

/// A descriptor limit of a million would otherwise allow 262,144 connections per listener: more
/// than one gateway serves, and what idle connections cost in memory adds up. Setting
/// server.max_connections lifts it.
inline constexpr std::size_t kMaxDefaultConnections = 65'536;

/// A path with everything after its first segment masked ("/devnet/…"), for logs and messages:
/// a key may follow the chain's name in the path.
std::string masked_path(std::string_view path);

/// Thread-safe. Owned by whoever owns the io_context; must outlive the io_context's run().
class Listener {
public:
    virtual ~Listener() = default;

    /// The bound address; the port is the real one when 0 was configured.
    virtual config::Endpoint local_endpoint() const = 0;

    /// Starts accepting connections.
    virtual void start() = 0;

    /// Stops accepting. Idle keep-alive connections are closed; a connection whose request is
    /// being read or answered finishes it, answers with `Connection: close`, then closes.
    virtual void shutdown() = 0;

    /// Connections still open (after shutdown(): the ones still finishing a request).
    /// Bytes of request bodies counted against max_body_bytes_in_flight now.
    virtual std::size_t body_bytes_held() const = 0;
    virtual std::size_t open_connections() const = 0;

    /// Closes every connection now, whatever it is doing (the end of a shutdown grace period).
    virtual void close_all() = 0;
};

/// Binds `options.endpoint` (throws std::system_error when it cannot: start-up only). `metrics`
/// may be null. Connections are accepted on `ioc`; each is served on one of `session_contexts`
/// in turn (on `ioc` when there are none), like the worker processes of nginx: with one thread
/// per context, a connection's work never crosses threads.
std::unique_ptr<Listener> make_listener(
    boost::asio::io_context& ioc, ListenerOptions options, Handler handler,
    metrics::Metrics* metrics, std::vector<boost::asio::io_context*> session_contexts = {});

}  // namespace gateway::http
