#pragma once
// The HTTP(S) client the gateway uses to reach one upstream node: keep-alive connections, pooled.

#include "gateway/config/config.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

namespace gateway::upstream {

/// Why a request did not get an HTTP response.
enum class TransportError {
    none,
    connect_failed,      ///< name resolution or TCP connect failed
    tls_failed,          ///< TLS handshake or certificate verification failed
    timeout,             ///< the attempt's time ran out
    send_failed,         ///< the connection broke while the request was written
    receive_failed,      ///< the connection broke before the whole response arrived
    response_too_large,  ///< the response exceeded max_response_bytes
    bad_http,            ///< the response was not valid HTTP
    cancelled,           ///< the caller gave up on it (a hedged read that another node won)
    over_budget,         ///< the answer passed what the client's request may still hold
};

/// A short label, usable as a metric label value: "connect_failed", "timeout", ...
std::string_view to_string(TransportError error);

struct HttpResult {
    TransportError error = TransportError::none;
    /// False only when the upstream certainly did not get the whole request (connect, TLS or
    /// write failures), so that re-sending it elsewhere cannot do it twice.
    bool maybe_delivered = false;
    std::string detail;  ///< what failed, for people: "connection refused"
    unsigned status = 0;
    std::string body;
    std::optional<std::chrono::seconds> retry_after;  ///< from a Retry-After header in seconds

    bool ok() const { return error == TransportError::none; }
};

/// Lets a caller give up on a post in flight: the post's connection is closed and the post
/// returns TransportError::cancelled. Thread-safe; cancelling twice, or before the post starts,
/// is fine.
class CancelSignal {
public:
    void cancel();
    bool cancelled() const;
    /// For the client: what cancel() must do while a post runs; cleared with nullptr.
    void on_cancel(std::function<void()> action);

private:
    mutable std::mutex mu_;
    bool cancelled_ = false;
    std::function<void()> action_;
};

/// What the answers of one client request may still grow to: the calls of a batch share it, so
/// that their answers together stay within server.max_batch_response_bytes while they arrive,
/// not only once they are whole. Touched only on the request's strand; shared, because an attempt
/// that lost a hedged race may still be reading when the request is over.
struct AnswerBudget {
    std::size_t used = 0;  ///< answers held, and bytes of answers being read
    std::size_t limit = std::numeric_limits<std::size_t>::max();
    bool spent = false;  ///< an answer passed the limit: the calls not started yet are not sent
};

/// One call's share of its request's budget. A call's attempts (a hedge reads the same answer
/// twice) count once: the first attempt whose answer arrives counts it, the others read along
/// uncounted (and stop with it once the budget is spent).
struct CallBudget {
    std::shared_ptr<AnswerBudget> request;
    const void* reader = nullptr;  ///< the attempt counting the answer now
};

struct PostOptions {
    std::chrono::steady_clock::time_point deadline;  ///< the whole attempt, connect included
    /// A request that is safe to send twice. Only such a request is re-sent on a fresh connection
    /// when a pooled connection turns out to have been closed by the upstream.
    bool idempotent = true;
    std::shared_ptr<CancelSignal> cancel;  ///< optional
    /// Optional: the answer's bytes count against it while they arrive (its announced length as
    /// soon as the head is in), and are given back when the post ends; once it is spent the post
    /// ends with TransportError::over_budget. Honoured when the caller is on a strand or on a loop
    /// its thread runs alone (util::SoleRunner): the exchange then runs in place, where the budget
    /// lives.
    std::shared_ptr<CallBudget> budget = nullptr;
    /// Optional: more header lines, each "Name: value\r\n" (the caller's own, checked: no line
    /// breaks inside a value), kept by the caller until the post ends. A view: PostOptions stays
    /// trivially destructible, which GCC 12 needs of temporaries in co_await expressions (it
    /// destroys some twice).
    std::string_view extra_headers;
};

/// Thread-safe: any number of posts may run at once, each on its own connection.
class HttpClient {
public:
    virtual ~HttpClient() = default;

    /// POSTs a JSON body to the upstream URL (a client made with HttpMethod::get sends a GET
    /// instead and ignores `body`). Never throws; every failure is in the result.
    /// Cancelling the awaiting coroutine's operation is not supported; the deadline bounds it.
    virtual boost::asio::awaitable<HttpResult> post(std::string body, PostOptions options) = 0;

    /// Idle connections currently pooled.
    virtual std::size_t idle_connections() const = 0;
};

/// The request method of a client: JSON-RPC nodes take POSTs; documents such as a JWKS are
/// fetched with GET.
enum class HttpMethod { post, get };

/// A client for `config.url`. Each post runs on the caller's event loop, and connections are
/// pooled per event loop. TLS verifies the certificate against the system store (plus
/// `config.ca_file`) and the host name, with SNI. Credentials in the URL (user:password@) are sent
/// as HTTP Basic authentication. Throws std::invalid_argument on an unusable URL or CA file
/// (start-up only).
std::unique_ptr<HttpClient> make_http_client(const config::UpstreamConfig& config,
                                             HttpMethod method = HttpMethod::post);

}  // namespace gateway::upstream
