#include "gateway/upstream/http_client.hpp"

#include "gateway/util/gzip.hpp"
#include "gateway/util/head_arena.hpp"
#include "gateway/util/nothrow.hpp"
#include "gateway/util/sole_runner.hpp"
#include "gateway/util/text.hpp"

#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <boost/url/parse.hpp>

#include <sys/socket.h>
#include <array>
#include <charconv>
#include <mutex>
#include <optional>
#include <span>
#include <unordered_map>
#include <vector>

namespace gateway::upstream {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
namespace ssl = boost::asio::ssl;
using tcp = asio::ip::tcp;
using boost::system::error_code;
using util::use_nothrow;

void CancelSignal::cancel() {
    std::function<void()> action;
    {
        std::lock_guard lock(mu_);
        if (cancelled_) return;
        cancelled_ = true;
        action = action_;
    }
    if (action) action();
}

bool CancelSignal::cancelled() const {
    std::lock_guard lock(mu_);
    return cancelled_;
}

void CancelSignal::on_cancel(std::function<void()> action) {
    std::function<void()> run_now;
    {
        std::lock_guard lock(mu_);
        action_ = std::move(action);
        if (cancelled_) run_now = action_;
    }
    if (run_now) run_now();
}

namespace {

std::string base64(std::string_view in) {
    std::string out(4 * ((in.size() + 2) / 3), '\0');
    int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                            reinterpret_cast<const unsigned char*>(in.data()),
                            static_cast<int>(in.size()));
    out.resize(static_cast<std::size_t>(n));
    return out;
}

// One connection to the upstream. An exchange on it runs on the caller's strand (or the caller's
// loop, when one thread runs it alone): its deadline timer completes there too, so the timer and
// the I/O it cuts short never run at the same time, and no hop to another strand is needed. A
// caller on neither has its exchange run on the connection's own strand instead.
struct Connection {
    explicit Connection(asio::any_io_executor ex)
        : loop(ex), strand(asio::make_strand(ex)), timer(ex) {}
    asio::any_io_executor loop;  // the event loop its socket and timer belong to
    asio::strand<asio::any_io_executor> strand;
    std::unique_ptr<tcp::socket> plain;
    std::unique_ptr<beast::ssl_stream<tcp::socket>> tls;
    asio::steady_timer timer;
    beast::flat_buffer buffer;
    util::HeadArena head;  // the answer head's fields, emptied for each exchange
    bool connected = false;
    bool cancelled = false;  // set on the exchange's strand by a CancelSignal
    bool timed_out = false;  // set on the exchange's strand by the deadline timer

    tcp::socket& lowest() { return tls ? tls->next_layer() : *plain; }
    bool has_socket() const { return plain || tls; }

    // True when the pooled connection still looks open: the peer has not closed it and sent
    // nothing.
    bool looks_alive() {
        if (!connected || !lowest().is_open() || buffer.size() != 0) return false;
        char c;
        ssize_t r = ::recv(lowest().native_handle(), &c, 1, MSG_PEEK | MSG_DONTWAIT);
        return r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
    }

    // Closes the socket: whatever is pending fails, and so does the next operation.
    void shut() {
        if (!has_socket()) return;
        error_code ignored;
        lowest().close(ignored);
    }
};

constexpr std::size_t kReadChunk = 16 * 1024;

// An answer's bytes counted against a request's budget while it is read, given back at the end
// (its caller counts the whole answer then). Of a call's attempts, one counts at a time.
struct Counted {
    explicit Counted(std::shared_ptr<CallBudget> c) : call(std::move(c)) {}
    std::shared_ptr<CallBudget> call;
    std::size_t bytes = 0;
    // Counts the answer as `size` bytes now; false once the request's budget is spent.
    bool grow_to(std::size_t size) {
        AnswerBudget& request = *call->request;
        if (call->reader && call->reader != this) return !request.spent;  // counted by another
        call->reader = this;
        if (size > bytes) {
            request.used += size - bytes;
            bytes = size;
        }
        if (request.used > request.limit) request.spent = true;
        return !request.spent;
    }
    ~Counted() {
        if (call->reader != this) return;
        call->reader = nullptr;
        call->request->used -= std::min(call->request->used, bytes);
    }
    Counted(const Counted&) = delete;
    Counted& operator=(const Counted&) = delete;
};

// Whether handlers on this executor never run at the same time: a strand, or a loop this thread
// runs alone (asked from a coroutine running on `ex`).
bool serialized(const asio::any_io_executor& ex) {
    if (const auto* loop = ex.target<asio::io_context::executor_type>())
        return util::runs_alone(loop->context());
    return ex.target<asio::strand<asio::io_context::executor_type>>() != nullptr ||
           ex.target<asio::strand<asio::any_io_executor>>() != nullptr;
}

class HttpClientImpl final : public HttpClient {
public:
    HttpClientImpl(const config::UpstreamConfig& config, HttpMethod method)
        : max_idle_(config.max_idle_connections),
          max_response_(config.max_response_bytes),
          get_(method == HttpMethod::get) {
        auto url = boost::urls::parse_absolute_uri(config.url);
        if (!url || (url->scheme() != "http" && url->scheme() != "https") || url->host().empty())
            throw std::invalid_argument("upstream " + config.id +
                                        ": the URL is not an http(s) URL");
        tls_ = url->scheme() == "https";
        host_ = url->host_address();
        if (url->host_type() == boost::urls::host_type::ipv6)
            host_ = std::string(url->encoded_host_address());
        port_ = url->has_port() ? std::string(url->port()) : (tls_ ? "443" : "80");
        port_number_ = url->has_port() ? url->port_number() : (tls_ ? 443 : 80);
        host_header_ = std::string(url->encoded_host_and_port());
        target_ = std::string(url->encoded_path());
        if (target_.empty()) target_ = "/";
        if (url->has_query()) target_ += "?" + std::string(url->encoded_query());
        if (url->has_userinfo()) authorization_ = "Basic " + base64(url->userinfo());
        request_head_ = (get_ ? "GET " : "POST ") + target_ + " HTTP/1.1\r\nHost: " + host_header_ +
                        "\r\nUser-Agent: chain-gateway/" GATEWAY_VERSION "\r\n";
        if (!get_) request_head_ += "Content-Type: application/json\r\n";
        request_head_ += "Accept: application/json\r\n";
        // A node on this machine (a sidecar's) is not asked to compress: it would cost both ends
        // more CPU than the loopback saves.
        error_code address_ec;
        const auto address = asio::ip::make_address(host_, address_ec);
        const bool local = address_ec ? util::lower(host_) == "localhost" : address.is_loopback();
        if (config.accept_gzip.value_or(!local)) request_head_ += "Accept-Encoding: gzip\r\n";
        if (!authorization_.empty()) request_head_ += "Authorization: " + authorization_ + "\r\n";
        // The head's end comes with each request: a caller's own headers, then for a POST the
        // length (round_trip).
        error_code ec;
        literal_ = asio::ip::make_address(host_, ec);
        has_literal_ = !ec;
        if (tls_) {
            ssl_ = std::make_unique<ssl::context>(ssl::context::tls_client);
            ssl_->set_default_verify_paths();
            if (!config.ca_file.empty()) {
                ssl_->load_verify_file(config.ca_file, ec);
                if (ec)
                    throw std::invalid_argument("upstream " + config.id +
                                                ": cannot load ca_file: " + ec.message());
            }
            ssl_->set_verify_mode(ssl::verify_peer);
        }
    }

    std::size_t idle_connections() const override {
        std::lock_guard lock(mu_);
        return idle_count_;
    }

    asio::awaitable<HttpResult> post(std::string body, PostOptions options) override {
        // Connections are pooled per event loop: one made on the caller's loop stays on it.
        asio::any_io_executor ex = co_await asio::this_coro::executor;
        asio::execution_context* loop = &asio::query(ex, asio::execution::context);
        // On the caller's strand (or a loop one thread runs alone) the exchange is run in place,
        // in this frame; otherwise on the connection's strand.
        const bool in_place = serialized(ex);
        std::shared_ptr<Connection> conn = take_idle(loop, !options.idempotent);
        const bool reused = conn != nullptr;
        if (!conn) conn = std::make_shared<Connection>(ex);
        HttpResult result;
        for (int attempt = 0;; ++attempt) {
            const asio::any_io_executor on = in_place ? ex : asio::any_io_executor(conn->strand);
            // A cancel meanwhile closes the connection.
            if (options.cancel) {
                options.cancel->on_cancel([conn, on] {
                    asio::post(on, [conn] {
                        conn->cancelled = true;
                        conn->shut();
                    });
                });
            }
            bool stale = false;
            if (!in_place) {
                // On another strand than the caller's: a budget the caller's strand keeps is not
                // ours to touch.
                result = co_await asio::co_spawn(on,
                                                 exchange(conn, on, body, options.deadline, stale,
                                                          nullptr, options.extra_headers),
                                                 asio::use_awaitable);
            } else if (auto early = begin_exchange(conn, on, options.deadline, stale)) {
                result = std::move(*early);
            } else {
                // exchange() written out here: a coroutine frame fewer for every call.
                Connection& c = *conn;
                if (!c.connected) result = co_await connect(c);
                if (result.ok()) {
                    if (tls_) {
                        result = co_await round_trip(*c.tls, c, body, stale, options.budget,
                                                     options.extra_headers);
                    } else {
                        result = co_await round_trip(*c.plain, c, body, stale, options.budget,
                                                     options.extra_headers);
                    }
                }
                end_exchange(c);
            }
            if (options.cancel) {
                // Once the action is cleared, a signal that has not fired yet never touches this
                // connection; one that has may still, so the connection is not pooled.
                options.cancel->on_cancel(nullptr);
                if (options.cancel->cancelled()) {
                    conn->connected = false;
                    if (!result.ok()) {
                        result.error = TransportError::cancelled;
                        result.detail = "cancelled";
                    }
                }
            }
            // A pooled connection the upstream had already closed: the request never reached it
            // (or, when it was written, a request that is safe to repeat). Once more on a fresh
            // connection.
            if (attempt == 0 && reused && stale &&
                (!result.maybe_delivered || options.idempotent) &&
                !(options.cancel && options.cancel->cancelled()) &&
                std::chrono::steady_clock::now() < options.deadline) {
                conn = std::make_shared<Connection>(ex);
                result = HttpResult{};
                continue;
            }
            break;
        }
        if (result.ok() && conn->connected) give_back(loop, std::move(conn));
        co_return result;
    }

private:
    // A pooled connection. For a request that must not be sent twice, one that still looks open
    // (a peek: one more system call); a request safe to repeat goes again on a fresh connection
    // when a pooled one turns out closed, so it skips the peek.
    std::shared_ptr<Connection> take_idle(asio::execution_context* loop, bool check) {
        std::lock_guard lock(mu_);
        auto it = idle_.find(loop);
        if (it == idle_.end()) return nullptr;
        auto& idle = it->second;
        while (!idle.empty()) {
            std::shared_ptr<Connection> c = std::move(idle.back());
            idle.pop_back();
            --idle_count_;
            if (check ? c->looks_alive()
                      : c->connected && c->buffer.size() == 0 && c->lowest().is_open())
                return c;
        }
        return nullptr;
    }

    // At most max_idle_ per event loop: a quiet loop's idle connections never use up a busy
    // loop's share.
    void give_back(asio::execution_context* loop, std::shared_ptr<Connection> c) {
        std::lock_guard lock(mu_);
        auto& idle = idle_[loop];
        if (idle.size() >= max_idle_) return;
        idle.push_back(std::move(c));
        ++idle_count_;
    }

    static HttpResult failure(TransportError error, std::string detail, bool maybe_delivered) {
        HttpResult r;
        r.error = error;
        r.detail = std::move(detail);
        r.maybe_delivered = maybe_delivered;
        return r;
    }

    asio::awaitable<HttpResult> connect(Connection& c) {
        if (tls_) {
            c.tls = std::make_unique<beast::ssl_stream<tcp::socket>>(c.loop, *ssl_);
        } else {
            c.plain = std::make_unique<tcp::socket>(c.loop);
        }
        error_code ec;
        if (has_literal_) {
            std::tie(ec) = co_await c.lowest().async_connect(tcp::endpoint(literal_, port_number_),
                                                             use_nothrow);
        } else {
            tcp::resolver resolver(c.loop);
            auto [rec, endpoints] = co_await resolver.async_resolve(host_, port_, use_nothrow);
            if (c.timed_out)
                co_return failure(TransportError::timeout, "timed out resolving the host", false);
            // A cancel while resolving found no socket to close: it ends the attempt here.
            if (c.cancelled) co_return failure(TransportError::cancelled, "cancelled", false);
            if (rec)
                co_return failure(TransportError::connect_failed,
                                  "cannot resolve host: " + rec.message(), false);
            std::tie(ec, std::ignore) =
                co_await asio::async_connect(c.lowest(), endpoints, use_nothrow);
        }
        if (c.timed_out) co_return failure(TransportError::timeout, "timed out connecting", false);
        if (c.cancelled) co_return failure(TransportError::cancelled, "cancelled", false);
        if (ec) co_return failure(TransportError::connect_failed, ec.message(), false);
        error_code ignored;
        c.lowest().set_option(tcp::no_delay(true), ignored);

        if (tls_) {
            if (!has_literal_ && !SSL_set_tlsext_host_name(c.tls->native_handle(), host_.c_str()))
                co_return failure(TransportError::tls_failed, "cannot set SNI", false);
            c.tls->set_verify_callback(ssl::host_name_verification(host_));
            auto [hec] = co_await c.tls->async_handshake(ssl::stream_base::client, use_nothrow);
            if (c.timed_out)
                co_return failure(TransportError::timeout, "timed out in the TLS handshake", false);
            if (hec)
                co_return failure(TransportError::tls_failed,
                                  "TLS handshake failed: " + hec.message(), false);
        }
        c.connected = true;
        co_return HttpResult{};
    }

    // An answer's body as its Content-Encoding says: decoded from gzip (within
    // max_response_bytes), or a failure for a coding not asked for. An error status's body that
    // cannot be read so is left as it is: the status tells what happened.
    struct Decoded {
        std::optional<std::string> body;  // the decoded body; none: the body is as it came
        std::optional<HttpResult> failure;
    };
    template <class Fields>
    Decoded decode(const bhttp::response<bhttp::string_body, Fields>& res) const {
        Decoded out;
        auto it = res.find(bhttp::field::content_encoding);
        if (it == res.end() || res.body().empty()) return out;
        const auto coding = util::lower(it->value());
        const bool ok = res.result_int() >= 200 && res.result_int() < 300;
        if (coding == "gzip" || coding == "x-gzip") {
            util::GunzipError why{};
            out.body = util::gunzip(res.body(), max_response_, &why);
            if (!out.body && ok)
                out.failure =
                    why == util::GunzipError::too_large
                        ? failure(TransportError::response_too_large,
                                  "response larger than max_response_bytes once decoded", true)
                        : failure(TransportError::bad_http, "response is not valid gzip", true);
        } else if (!coding.empty() && coding != "identity" && ok) {
            out.failure =
                failure(TransportError::bad_http,
                        "response Content-Encoding \"" +
                            std::string(util::utf8_prefix(coding, 40)) + "\" was not asked for",
                        true);
        }
        return out;
    }

    template <class Stream>
    asio::awaitable<HttpResult> round_trip(Stream& stream, Connection& c, const std::string& body,
                                           bool& stale, std::shared_ptr<CallBudget> budget,
                                           std::string_view extra_headers) {
        // The head is fixed but for the caller's headers and the length: written with the body
        // in one gather write. A GET has no body: its head ends with the caller's headers.
        char length[24];
        auto [end, lec] = std::to_chars(length, length + sizeof length, body.size());
        (void)lec;
        // (Plain statements: GCC 12 mishandles conditional expressions in coroutines.)
        static constexpr std::string_view kLength = "Content-Length: ";
        asio::const_buffer head_end = asio::buffer(kLength.data(), kLength.size());
        if (get_) head_end = asio::buffer("\r\n", 2);
        std::array<asio::const_buffer, 6> request;
        request[0] = asio::buffer(request_head_);
        request[1] = asio::buffer(extra_headers.data(), extra_headers.size());
        request[2] = head_end;
        request[3] = asio::buffer(length, static_cast<std::size_t>(end - length));
        request[4] = asio::buffer("\r\n\r\n", 4);
        request[5] = asio::buffer(body);
        auto [wec, wn] = co_await asio::async_write(
            stream, std::span<const asio::const_buffer>(request).first(get_ ? 3 : request.size()),
            use_nothrow);
        if (wec) {
            c.connected = false;
            stale = !c.timed_out;
            // Not all of the request was written, so the upstream cannot act on it.
            if (c.timed_out)
                co_return failure(TransportError::timeout, "timed out sending the request", false);
            co_return failure(TransportError::send_failed, "sending failed: " + wec.message(),
                              false);
        }

        // Beast reads as much as the buffer has room for: 16 KB at a time instead of its
        // 512-byte start (a 10 KB answer was 40 reads).
        c.buffer.reserve(kReadChunk);
        // The previous exchange's parser is gone: the head's space is free again.
        c.head.reset();
        bhttp::response_parser<bhttp::string_body, util::HeadArena::Allocator> parser(
            std::piecewise_construct, std::make_tuple(), std::make_tuple(c.head.allocator()));
        parser.body_limit(max_response_);
        parser.header_limit(64 * 1024);
        error_code rec;
        bool over_budget = false;
        Decoded decoding;
        if (!budget) {
            std::tie(rec, std::ignore) =
                co_await bhttp::async_read(stream, c.buffer, parser, use_nothrow);
            if (!rec) decoding = decode(parser.get());
        } else {
            // Read piece by piece so that the budget sees the answer grow (and its announced
            // length at once: the body is reserved to it).
            Counted counted(budget);
            // A cancelled attempt (a hedge that lost) ends as cancelled, whatever its read did:
            // its answer is nobody's, and says nothing about the budget.
            const auto ended = [&] {
                if (!rec && c.cancelled) rec = asio::error::operation_aborted;
                return static_cast<bool>(rec);
            };
            std::tie(rec, std::ignore) =
                co_await bhttp::async_read_header(stream, c.buffer, parser, use_nothrow);
            const std::size_t announced =
                !ended() ? static_cast<std::size_t>(parser.content_length().value_or(0)) : 0;
            over_budget = !rec && !counted.grow_to(announced);
            while (!rec && !over_budget && !parser.is_done()) {
                std::tie(rec, std::ignore) =
                    co_await bhttp::async_read_some(stream, c.buffer, parser, use_nothrow);
                if (ended()) break;
                over_budget = !counted.grow_to(std::max(announced, parser.get().body().size()));
            }
            // A compressed answer counts as decoded, while the budget still sees it.
            if (!rec && !over_budget) {
                decoding = decode(parser.get());
                if (decoding.body) over_budget = !counted.grow_to(decoding.body->size());
            }
        }
        if (over_budget) {
            c.connected = false;  // the rest of the answer is still on its way
            co_return failure(TransportError::over_budget,
                              "the answers of this request passed their limit", true);
        }
        if (rec) {
            c.connected = false;
            if (c.timed_out)
                co_return failure(TransportError::timeout, "timed out waiting for the response",
                                  true);
            if (rec == bhttp::error::body_limit)
                co_return failure(TransportError::response_too_large,
                                  "response larger than max_response_bytes", true);
            // The upstream closed a pooled connection without answering: most likely it had
            // closed it before our request arrived.
            stale = !parser.got_some() &&
                    (rec == bhttp::error::end_of_stream || rec == asio::error::connection_reset ||
                     rec == asio::error::eof || rec == ssl::error::stream_truncated);
            if (rec.category() == bhttp::make_error_code(bhttp::error::bad_version).category() &&
                rec != bhttp::error::end_of_stream && rec != bhttp::error::partial_message)
                co_return failure(TransportError::bad_http,
                                  "invalid HTTP response: " + rec.message(), true);
            co_return failure(TransportError::receive_failed,
                              "connection lost before the response: " + rec.message(), true);
        }
        auto& res = parser.get();
        HttpResult result;
        result.maybe_delivered = true;
        result.status = res.result_int();
        if (auto it = res.find(bhttp::field::retry_after); it != res.end()) {
            auto v = it->value();
            unsigned long long seconds = 0;
            auto [vend, ec] = std::from_chars(v.data(), v.data() + v.size(), seconds);
            if (ec == std::errc() && vend == v.data() + v.size())
                result.retry_after = std::chrono::seconds(seconds);
        }
        result.body = std::move(res.body());
        if (!res.keep_alive()) c.connected = false;
        if (decoding.failure) co_return std::move(*decoding.failure);
        if (decoding.body) result.body = std::move(*decoding.body);
        co_return result;
    }

    // An exchange's start, on `ex` (a strand): its deadline timer, whose handler runs there too
    // and closes the connection when time runs out. A failure when it cannot start.
    std::optional<HttpResult> begin_exchange(const std::shared_ptr<Connection>& conn,
                                             const asio::any_io_executor& ex,
                                             std::chrono::steady_clock::time_point deadline,
                                             bool& stale) {
        Connection& c = *conn;
        stale = false;
        if (c.cancelled) return failure(TransportError::cancelled, "cancelled", false);
        if (deadline <= std::chrono::steady_clock::now())
            return failure(TransportError::timeout, "no time left for this attempt", false);
        // One deadline for the whole attempt: (connect, handshake,) write and read.
        c.timed_out = false;
        c.timer.expires_at(deadline);
        c.timer.async_wait(asio::bind_executor(ex, [conn](error_code ec) {
            if (ec) return;  // cancelled: the exchange ended in time
            conn->timed_out = true;
            conn->shut();
        }));
        return std::nullopt;
    }

    // A timer that can no longer be cancelled has fired or is about to: its handler closes this
    // connection later, so it is not pooled.
    static void end_exchange(Connection& c) {
        if (c.timer.cancel() == 0) c.connected = false;
    }

    // The exchange proper, on `ex` (a strand other than the caller's).
    asio::awaitable<HttpResult> exchange(std::shared_ptr<Connection> conn, asio::any_io_executor ex,
                                         const std::string& body,
                                         std::chrono::steady_clock::time_point deadline,
                                         bool& stale, std::shared_ptr<CallBudget> budget,
                                         std::string_view extra_headers) {
        if (auto early = begin_exchange(conn, ex, deadline, stale)) co_return std::move(*early);
        Connection& c = *conn;
        HttpResult result;
        if (!c.connected) result = co_await connect(c);
        if (result.ok()) {
            if (tls_) {
                result = co_await round_trip(*c.tls, c, body, stale, budget, extra_headers);
            } else {
                result = co_await round_trip(*c.plain, c, body, stale, budget, extra_headers);
            }
        }
        end_exchange(c);
        co_return result;
    }

    std::size_t max_idle_;
    std::size_t max_response_;
    bool get_ = false;  // GET without a body (else POST)
    bool tls_ = false;
    std::string host_;
    std::string port_;
    std::uint16_t port_number_ = 0;
    std::string host_header_;
    std::string target_;
    std::string authorization_;
    asio::ip::address literal_;
    bool has_literal_ = false;
    std::unique_ptr<ssl::context> ssl_;
    std::string request_head_;  // the request line and headers, up to the Content-Length value

    mutable std::mutex mu_;
    // Idle connections by the event loop they belong to.
    std::unordered_map<asio::execution_context*, std::vector<std::shared_ptr<Connection>>> idle_;
    std::size_t idle_count_ = 0;
};

}  // namespace

std::unique_ptr<HttpClient> make_http_client(const config::UpstreamConfig& config,
                                             HttpMethod method) {
    return std::make_unique<HttpClientImpl>(config, method);
}

}  // namespace gateway::upstream
