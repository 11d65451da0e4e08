#include "session.hpp"

#include "gateway/util/gzip.hpp"
#include "gateway/util/head_arena.hpp"
#include "gateway/util/nothrow.hpp"
#include "gateway/util/text.hpp"

#include <spdlog/spdlog.h>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>

#include <algorithm>
#include <array>
#include <optional>
#include <span>
#include <string>
#include <type_traits>
#include <utility>

namespace gateway::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
namespace ssl = boost::asio::ssl;
using tcp = asio::ip::tcp;
using boost::system::error_code;
using Clock = std::chrono::steady_clock;
using util::use_nothrow;

namespace {

// How long an idle keep-alive connection is still read from once shutdown has begun.
constexpr std::chrono::milliseconds kLastWait{500};
// How long a TLS connection's closing exchange (close_notify both ways) may take.
constexpr std::chrono::milliseconds kTlsShutdownWait{1000};
// What a connection's read buffer makes room for once a request is larger than its first read;
// a unit of the body window it may hold beyond a head (read_buffer_limit).
constexpr std::size_t kReadChunk = 16 * 1024;
// What a connection keeps of an answered request for the next one (the room of its method,
// target and fields), and of its answer's head: beyond these, the room goes (an idle connection
// holds it).
constexpr std::size_t kKeptRequestBytes = 1024;
constexpr std::size_t kKeptFields = 16;
constexpr std::size_t kKeptHeadBytes = 1024;
// What a connection's read for a request's first bytes asks for: an idle connection waits with this
// much allocated (a TLS stream's OpenSSL keeps what does not fit for the next read).
constexpr std::size_t kIdleReadChunk = 512;

// What a connection's read buffer may hold: a whole head, and a window of the body (Beast moves
// body bytes out of it as they are parsed). Without a bound, a chunk extension or a trailer with
// no end of line grew it without limit, under neither the header nor the body limit.
std::size_t read_buffer_limit(const ListenerOptions& options) {
    return options.max_header_bytes + 4 * kReadChunk;
}

// Why a request's framing is not one the listener reads as the client meant, or nullopt: a
// Transfer-Encoding other than one "chunked" (Beast takes a body with another coding for none).
template <class Fields>
std::optional<std::string> framing_problem(const bhttp::request_header<Fields>& head) {
    std::size_t codings = 0;
    bool chunked_only = true;
    for (const auto& field : head) {
        if (field.name() != bhttp::field::transfer_encoding) continue;
        ++codings;
        if (!iequals(util::trim_ows(field.value()), "chunked")) chunked_only = false;
    }
    if (codings == 0 || (codings == 1 && chunked_only)) return std::nullopt;
    return std::string(
        "Transfer-Encoding must be \"chunked\" alone (or absent, with Content-Length): other "
        "codings are not read");
}
// How a request's body is encoded (Content-Encoding): identity, gzip, or one the listener does not
// decode (with its name, for the refusal).
enum class BodyCoding { identity, gzip, other };
template <class Fields>
BodyCoding body_coding(const bhttp::request_header<Fields>& head, std::string& named) {
    BodyCoding coding = BodyCoding::identity;
    for (const auto& field : head) {
        if (field.name() != bhttp::field::content_encoding) continue;
        const auto value = util::trim_ows(field.value());
        if (value.empty() || iequals(value, "identity")) continue;
        // One coding, once: gzip of gzip, or a list, is not what a JSON-RPC client sends.
        if (coding == BodyCoding::identity &&
            (iequals(value, "gzip") || iequals(value, "x-gzip"))) {
            coding = BodyCoding::gzip;
            continue;
        }
        named = std::string(util::utf8_prefix(value, 40));
        return BodyCoding::other;
    }
    return coding;
}

// A request body's share of the listener's budget (ListenerState::reserve_body), given back when it
// goes.
class BodyReservation {
public:
    BodyReservation() = default;
    BodyReservation(ListenerState* state, std::size_t bytes) : state_(state), bytes_(bytes) {}
    BodyReservation(BodyReservation&& o) noexcept
        : state_(std::exchange(o.state_, nullptr)), bytes_(o.bytes_) {}
    BodyReservation& operator=(BodyReservation&& o) noexcept {
        if (this != &o) {
            give_back();
            state_ = std::exchange(o.state_, nullptr);
            bytes_ = o.bytes_;
        }
        return *this;
    }
    ~BodyReservation() { give_back(); }

private:
    void give_back();
    ListenerState* state_ = nullptr;
    std::size_t bytes_ = 0;
};

void BodyReservation::give_back() {
    if (state_) state_->release_body(bytes_);
    state_ = nullptr;
}

using util::HeadArena;

using PlainStream = beast::tcp_stream;
using TlsStream = beast::ssl_stream<beast::tcp_stream>;

// One client connection, plain TCP or TLS: the stream type is a template parameter so that the
// plain path has no indirection of its own.
template <class Stream>
class Session final : public SessionBase, public std::enable_shared_from_this<Session<Stream>> {
    static constexpr bool kTls = std::is_same_v<Stream, TlsStream>;

public:
    template <class... StreamArgs>
    Session(std::shared_ptr<ListenerState> state, const tcp::endpoint& peer,
            Clock::time_point accepted, StreamArgs&&... stream_args)
        : SessionBase(peer.address(), accepted),
          stream_(std::forward<StreamArgs>(stream_args)...),
          last_wait_(stream_.get_executor()),
          state_(std::move(state)),
          buffer_(read_buffer_limit(state_->options)),
          remote_(peer.address().to_string() + ":" + std::to_string(peer.port())),
          header_deadline_(accepted + state_->options.header_timeout) {}

    // A session that never ran (refused at accept), or whose coroutine was abandoned by a forced
    // stop, leaves the table here; the others have left already.
    ~Session() override { state_->table.remove(*this); }

    asio::any_io_executor executor() override { return stream_.get_executor(); }

    /// A request in progress is answered with `Connection: close`. An idle keep-alive connection
    /// gets a short last wait instead of an immediate close: a client may have sent its next
    /// request just before the shutdown, and that request gets answered.
    void stop() override {
        asio::post(executor(), [self = this->shared_from_this()] {
            // A request in progress: its answer closes the connection, or, if it was written
            // already, the next idle wait starts the last wait itself.
            if (self->idle()) self->start_last_wait();
        });
    }

    void close_now() override {
        asio::post(executor(), [self = this->shared_from_this()] { self->close_socket(); });
    }

    void evict() override {
        // The claim made this session unable to start a request (begin_request() says no), so
        // whatever it waits for now, the TLS handshake or a request's first byte, ends here.
        // Closing rather than cancelling: the next step of a handshake then fails at once too.
        asio::post(executor(), [self = this->shared_from_this()] {
            if (self->evicted()) self->close_socket();
        });
    }

    asio::awaitable<void> run() override {
        co_await serve();
        // An evicted connection's place belongs to another already: its descriptor goes now.
        if (evicted()) {
            close_socket();
        } else {
            // Its last answer is written: while what the client still sends is drained, it is
            // the first connection to close for a newcomer.
            wait_for_request(Clock::now());
            co_await close_gracefully();
        }
        state_->table.remove(*this);
    }

private:
    beast::tcp_stream& tcp() { return beast::get_lowest_layer(stream_); }

    // Ends an idle wait after kLastWait by cancelling the read, not by the stream's timeout,
    // which would close the socket under a TLS connection before its close_notify is sent.
    // Beast cannot shorten the timeout of a read already pending, hence a timer of our own.
    void start_last_wait() {
        last_wait_.expires_after(kLastWait);
        last_wait_.async_wait([self = this->shared_from_this()](error_code ec) {
            if (!ec && self->idle()) self->tcp().cancel();
        });
    }

    // Waits for a request's first bytes and reads them into buffer_, which is empty. Idle, a
    // connection holds a small read buffer only: with thousands of keep-alive connections, 16 KiB
    // each would be gigabytes. The first read asks for kIdleReadChunk bytes, which hold a whole
    // small request; a larger one is read on from there. (A plain connection could wait for
    // readability with nothing allocated, but Asio re-arms the descriptor with epoll_ctl for
    // every such wait: a system call per request, about 8 % more CPU on small reads.) False when
    // the connection ended meanwhile (closed, idle timeout, shutdown).
    asio::awaitable<bool> read_first_bytes() {
        // What a larger request made room for goes; the first read's 512 bytes stay (given back
        // and taken again, they cost an allocation per request).
        if (buffer_.capacity() > kIdleReadChunk) buffer_.shrink_to_fit();
        auto [ec, n] =
            co_await stream_.async_read_some(buffer_.prepare(kIdleReadChunk), use_nothrow);
        if (ec) co_return false;
        buffer_.commit(n);
        // A full first read: more is likely there (a batch), and Beast reads on in steps of
        // the room left, or of 512 bytes when there is none.
        if (n == kIdleReadChunk) buffer_.reserve(kReadChunk);
        co_return true;
    }

    void close_socket() {
        error_code ec;
        tcp().socket().shutdown(tcp::socket::shutdown_both, ec);
        tcp().close();
    }

    asio::awaitable<void> serve() {
        const ListenerOptions& opt = state_->options;
        // From accept, the TLS handshake and the first request's head are due by one deadline:
        // a silent new connection is a head not arriving.
        tcp().expires_at(state_->stopping ? std::min(header_deadline_, Clock::now() + kLastWait)
                                          : header_deadline_);
        if constexpr (kTls) {
            auto [ec] = co_await stream_.async_handshake(ssl::stream_base::server, use_nothrow);
            if (ec) {
                spdlog::debug("{} listener: TLS handshake with {} failed: {}", opt.name, remote_,
                              ec.message());
                co_return;
            }
            handshake_done_ = true;
        }
        bool first = true;
        for (;;) {
            // The previous request's parser is gone: its fields' space is free again, and what
            // a large head borrowed from the heap goes back before the connection waits.
            head_arena_.reset();
            // Between requests the connection is idle (and may be claimed), whether or not the
            // next request's bytes are here already (a pipelining client).
            if (!first) wait_for_request(Clock::now());
            if (buffer_.size() == 0) {
                // Wait for the first byte under the idle timeout (shorter once shutdown has
                // begun). The first request's wait keeps the header deadline.
                if (!first) {
                    tcp().expires_after(opt.idle_timeout);
                    if (state_->stopping) start_last_wait();
                }
                const bool read = co_await read_first_bytes();
                // A request has begun: a last wait that shutdown started for the idle
                // connection ends here (it would otherwise cut the closing exchange short).
                last_wait_.cancel();
                if (!read) co_return;
            }
            // Claimed for eviction before its request started: the place is someone else's.
            if (!begin_request()) co_return;
            // A request has started: it gets read and answered, even during shutdown. Its head
            // is due within the header timeout of its first byte. Until it is read whole, it may
            // still be claimed (a slow client: slowloris).
            if (!first) tcp().expires_after(opt.header_timeout);
            first = false;

            bhttp::request_parser<bhttp::string_body, HeadArena::Allocator> parser(
                std::piecewise_construct, std::make_tuple(),
                std::make_tuple(head_arena_.allocator()));
            parser.body_limit(opt.max_body_bytes);
            parser.header_limit(static_cast<std::uint32_t>(opt.max_header_bytes));
            auto [hec, hn] =
                co_await bhttp::async_read_header(stream_, buffer_, parser, use_nothrow);
            if (hec == bhttp::error::end_of_stream) co_return;
            if (hec) {
                co_await refuse(hec);
                co_return;
            }
            const auto& head = parser.get();
            // A framing Beast would read otherwise than the client meant: with a
            // Transfer-Encoding other than chunked alone, it takes the body for none, and the body
            // for the next request (RFC 9112 section 6.3 asks for a 400 and the end of the
            // connection).
            if (const auto why = framing_problem(head)) {
                co_await refuse_with(400, *why);
                co_return;
            }
            std::string coding_named;
            const BodyCoding coding = body_coding(head, coding_named);
            if (coding == BodyCoding::other) {
                co_await refuse_with(415, "request Content-Encoding \"" + coding_named +
                                              "\" is not read: send gzip or none");
                co_return;
            }
            // Kept from request to request, with the room its strings grew (an allocation or
            // more for every request before); what a large one grew goes after its answer.
            Request& request = request_;
            request.method.assign(head.method_string());
            request.target.assign(head.target());
            request.body.clear();
            request.remote = remote_;
            request.principal.reset();
            std::size_t fields = 0;
            for (const auto& field : head) {
                if (fields == request.headers.size()) request.headers.emplace_back();
                auto& [name, value] = request.headers[fields++];
                name.assign(field.name_string());
                std::transform(name.begin(), name.end(), name.begin(), util::ascii_lower);
                value.assign(field.value());
            }
            request.headers.resize(fields);
            const unsigned version = head.version();
            request.version = version;
            bool keep_alive = head.keep_alive();
            const bool head_only = head.method() == bhttp::verb::head;
            const bool has_body = !parser.is_done();

            Response response;
            BodyReservation reservation;  // the body's share of the budget, until written
            // The browser checks first, on the head: a page refused by them learns nothing of
            // what the credential check would have said (a rebinding page could otherwise tell
            // a valid key from an invalid one by 401 or not), and sends no body that is read. A
            // CORS preflight, which never carries credentials, is answered here too.
            std::optional<Response> early = browser_check(request, state_->browser, has_body);
            std::optional<Response> refused;
            if (!early && opt.head_check) refused = co_await opt.head_check(request);
            if (early) {
                spdlog::debug("{} listener: answered {} {} from {} with {} before the handler",
                              opt.name, request.method, masked_path(request.path()), remote_,
                              early->status);
                // Written whole: the connection is not claimed meanwhile.
                if (!request_complete()) co_return;
                response = std::move(*early);
                // A body is not read: the connection ends after the answer, and so it does after
                // a 400 (two Hosts or none: the client's idea of the request is not ours).
                if (has_body || response.status == 400) keep_alive = false;
            } else if (refused) {
                // Refused before its body was read: the body is never read, and the connection
                // ends after the answer (written whole: the connection is not claimed meanwhile).
                if (!request_complete()) co_return;
                response = std::move(*refused);
                add_cors_headers(request, state_->browser, response);
                keep_alive = false;
            } else {
                // Its body counts against the listener's budget from now until its answer is
                // written: a flood of large bodies is refused before they are read.
                if (!parser.is_done()) {
                    // A gzip body counts as the most it may decode to.
                    const std::size_t size =
                        coding == BodyCoding::gzip
                            ? opt.max_body_bytes
                            : parser.content_length().value_or(opt.max_body_bytes);
                    if (!state_->reserve_body(size)) {
                        co_await refuse_with(
                            503,
                            "too many request bodies are being read at once "
                            "(server.max_body_bytes_in_flight): send it again shortly",
                            true);
                        co_return;
                    }
                    reservation = BodyReservation(state_.get(), size);
                }
                if (!parser.is_done()) {
                    // The head is in; the body has the read timeout.
                    tcp().expires_after(opt.read_timeout);
                    if (head[bhttp::field::expect] == "100-continue") {
                        bhttp::response<bhttp::empty_body> cont{bhttp::status::continue_, version};
                        auto [cec, cn] = co_await bhttp::async_write(stream_, cont, use_nothrow);
                        if (cec) co_return;
                    }
                    auto [bec, bn] =
                        co_await bhttp::async_read(stream_, buffer_, parser, use_nothrow);
                    if (bec == bhttp::error::end_of_stream) co_return;
                    if (bec) {
                        co_await refuse(bec);
                        co_return;
                    }
                }
                // Read whole: from now on it is served, not claimed. (Claimed while it arrived,
                // slowly: the place is someone else's.)
                if (!request_complete()) co_return;
                request.body = std::move(parser.get().body());
                if (coding != BodyCoding::gzip || decode_body(request, response))
                    co_await answer(request, response);
                compress(request, response);
            }

            keep_alive = keep_alive && !state_->stopping;
            const std::string& out_head = response_head(response, version, keep_alive);
            // The answer to HEAD is the head alone, with the length the body would have.
            if (head_only) response.body.clear();
            state_->observe(response.status, response.body.size());
            tcp().expires_after(opt.read_timeout);
            // Passed as a span, not as the array: Asio's own handling of a two-buffer array
            // leaves a written head as an empty first buffer, and Beast's TLS stream writes the
            // first buffer alone when it cannot flatten them (over 16 KiB): a write of nothing,
            // which ended the answer after its head.
            const std::array<asio::const_buffer, 2> out{asio::buffer(out_head),
                                                        asio::buffer(response.body)};
            auto [wec, wn] = co_await asio::async_write(
                stream_, std::span<const asio::const_buffer>(out), use_nothrow);
            forget_large(request);
            if (wec || !keep_alive) co_return;
        }
    }

    // A gzip request body, decoded in place, within max_body_bytes once decoded. False with
    // `response` the refusal (413, 400) when it cannot be: the body was read, so the connection
    // carries on.
    bool decode_body(Request& request, Response& response) {
        const ListenerOptions& opt = state_->options;
        if (request.body.empty()) return true;  // nothing to decode (a bodiless request)
        util::GunzipError why{};
        auto decoded = util::gunzip(request.body, opt.max_body_bytes, &why);
        if (decoded) {
            request.body = std::move(*decoded);
            return true;
        }
        response.status = why == util::GunzipError::too_large ? 413 : 400;
        const std::string message =
            why == util::GunzipError::too_large
                ? "request body too large once decoded: the limit is " +
                      std::to_string(opt.max_body_bytes) + " bytes (server.max_body_bytes)"
                : std::string("request body is not valid gzip (Content-Encoding: gzip)");
        spdlog::debug("{} listener: refused a request from {}: {}", opt.name, remote_, message);
        response.body = opt.error_body ? opt.error_body(response.status, message) : std::string();
        add_cors_headers(request, state_->browser, response);
        return false;
    }

    // The handler's answer gzip-compressed when the client accepts it and it is large enough to
    // gain (server.compression.min_bytes); an answer that could have been says Vary, for caches.
    void compress(const Request& request, Response& response) const {
        const ListenerOptions& opt = state_->options;
        if (!opt.compress_min_bytes || response.body.size() < opt.compress_min_bytes) return;
        if (response.status == 204 || response.status == 304 || response.status < 200) return;
        for (const auto& [name, value] : response.headers)
            if (iequals(name, "content-encoding")) return;  // the handler's own
        response.headers.emplace_back("Vary", "Accept-Encoding");
        if (!util::accepts_gzip(request.header("accept-encoding"))) return;
        try {
            response.body = util::gzip(response.body, opt.compress_level);
        } catch (const std::exception& e) {
            // zlib out of memory: the answer goes as it is.
            spdlog::warn("{} listener: cannot compress an answer: {}", opt.name, e.what());
            return;
        }
        response.headers.emplace_back("Content-Encoding", "gzip");
    }

    // A whole request that passed the browser checks (on its head): the handler's answer.
    asio::awaitable<void> answer(Request& request, Response& response) {
        const ListenerOptions& opt = state_->options;
        try {
            response = co_await state_->handler(request);
        } catch (const std::exception& e) {
            spdlog::error("{} listener: handler failed for {} {}: {}", opt.name, request.method,
                          masked_path(request.path()), e.what());
            response.status = 500;
            response.body = opt.error_body ? opt.error_body(500, "internal error") : std::string();
        }
        add_cors_headers(request, state_->browser, response);
    }

    // What an answered request leaves the connection holding while it waits for the next. Its
    // body goes (it may be megabytes). Its target and field values are written over, not only
    // cleared: a key in the path or an Authorization field is not kept while the connection
    // waits. And the room of its method, target and fields goes too when it passed
    // kKeptRequestBytes, as does an answer head's over kKeptHeadBytes: a head near
    // max_header_bytes kept by every idle connection would be gigabytes across them.
    void forget_large(Request& request) {
        std::string().swap(request.body);
        request.principal.reset();
        wipe(request.target);
        std::size_t room = request.method.capacity() + request.target.capacity();
        for (auto& [name, value] : request.headers) {
            wipe(value);
            room += name.capacity() + value.capacity();
        }
        if (room > kKeptRequestBytes || request.headers.size() > kKeptFields) {
            std::string().swap(request.method);
            std::string().swap(request.target);
            Headers().swap(request.headers);
        }
        if (out_head_.capacity() > kKeptHeadBytes) std::string().swap(out_head_);
    }
    static void wipe(std::string& s) {
        std::fill(s.begin(), s.end(), '\0');
        s.clear();
    }

    // The status line and headers of an answer, written as they are: cheaper than Beast's
    // serializer, which walks its field list through layers of buffer views. Into the
    // connection's own string, which keeps its room.
    const std::string& response_head(Response& response, unsigned version, bool keep_alive) {
        const unsigned status = response.status;
        const bool bodiless = status == 204 || status == 304 || (status >= 100 && status < 200);
        if (bodiless) response.body.clear();
        std::string& head = out_head_;
        head.clear();
        head.reserve(192);
        head += version == 10 ? "HTTP/1.0 " : "HTTP/1.1 ";
        head += std::to_string(status);
        head += ' ';
        head += bhttp::obsolete_reason(static_cast<bhttp::status>(status));
        head += "\r\nServer: chain-gateway\r\n";
        if (!bodiless) {
            head += "Content-Type: ";
            head += response.content_type;
            head += "\r\nContent-Length: ";
            head += std::to_string(response.body.size());
            head += "\r\n";
        }
        for (const auto& [name, value] : response.headers) {
            head += name;
            head += ": ";
            head += value;
            head += "\r\n";
        }
        if (version == 10 && keep_alive) head += "Connection: keep-alive\r\n";
        if (version != 10 && !keep_alive) head += "Connection: close\r\n";
        head += "\r\n";
        return head;
    }

    // Answers a request the listener cannot read, then the connection ends.
    asio::awaitable<void> refuse(error_code ec) {
        const ListenerOptions& opt = state_->options;
        unsigned status = 0;
        std::string message;
        if (ec == bhttp::error::body_limit) {
            status = 413;
            message = "request body too large: the limit is " + std::to_string(opt.max_body_bytes) +
                      " bytes (server.max_body_bytes)";
        } else if (ec == bhttp::error::buffer_overflow) {
            status = 431;
            message = "request framing too large: a head, chunk header or trailer over " +
                      std::to_string(read_buffer_limit(opt)) + " bytes";
        } else if (ec == bhttp::error::header_limit) {
            status = 431;
            message = "request headers too large: the limit is " +
                      std::to_string(opt.max_header_bytes) + " bytes (server.max_header_bytes)";
        } else if (ec.category() == bhttp::make_error_code(bhttp::error::bad_method).category() ||
                   ec == bhttp::error::partial_message) {
            status = 400;
            message = "malformed HTTP request: " + ec.message();
        } else {
            // The connection failed, or the request did not arrive within its timeout (Beast has
            // closed the socket then): nobody to answer.
            co_return;
        }
        co_await refuse_with(status, message);
    }

    /// Answers `status` with `message` (and Retry-After: 1 when `retry`), and the connection
    /// ends: what the client sent after the head is not read.
    asio::awaitable<void> refuse_with(unsigned status, const std::string& message,
                                      bool retry = false) {
        const ListenerOptions& opt = state_->options;
        spdlog::debug("{} listener: refused a request from {}: {}", opt.name, remote_, message);
        // Written whole: not claimed meanwhile (a claim already made wins: nothing is written).
        if (!request_complete()) co_return;
        bhttp::response<bhttp::string_body> out{static_cast<bhttp::status>(status), 11};
        out.set(bhttp::field::server, "chain-gateway");
        out.set(bhttp::field::content_type, "application/json");
        if (retry) out.set(bhttp::field::retry_after, "1");
        out.body() = opt.error_body ? opt.error_body(status, message) : std::string();
        out.keep_alive(false);
        out.prepare_payload();
        state_->observe(status, out.body().size());
        tcp().expires_after(std::chrono::seconds(5));
        co_await bhttp::async_write(stream_, out, use_nothrow);
    }

    // TLS: a close_notify exchange, bounded in time. Then half-closes, and reads what the client
    // still sends for a short while, so that unread bytes (the rest of a refused body) do not
    // turn the close into a reset the client may see before it reads the answer.
    asio::awaitable<void> close_gracefully() {
        if constexpr (kTls) {
            if (handshake_done_ && tcp().socket().is_open()) {
                tcp().expires_after(kTlsShutdownWait);
                co_await stream_.async_shutdown(use_nothrow);
            }
        }
        error_code ec;
        tcp().socket().shutdown(tcp::socket::shutdown_send, ec);
        if (!ec) {
            tcp().expires_after(std::chrono::seconds(2));
            std::array<char, 16 * 1024> scratch;
            std::size_t drained = 0;
            while (drained < 64 * 1024 * 1024) {
                auto [rec, n] = co_await tcp().async_read_some(asio::buffer(scratch), use_nothrow);
                if (rec) break;
                drained += n;
            }
        }
        tcp().close();
    }

    Stream stream_;
    asio::steady_timer last_wait_;
    std::shared_ptr<ListenerState> state_;
    beast::flat_buffer buffer_;
    std::string remote_;
    Clock::time_point header_deadline_;
    HeadArena head_arena_;
    Request request_;       // the request being answered, kept with its room (forget_large)
    std::string out_head_;  // the answer's head, kept with its room
    bool handshake_done_ = false;
};

}  // namespace

std::shared_ptr<SessionBase> make_session(std::shared_ptr<ListenerState> state, tcp::socket socket,
                                          const tcp::endpoint& peer, Clock::time_point accepted) {
    if (state->tls) {
        ssl::context& tls = *state->tls;
        return std::make_shared<Session<TlsStream>>(std::move(state), peer, accepted,
                                                    std::move(socket), tls);
    }
    return std::make_shared<Session<PlainStream>>(std::move(state), peer, accepted,
                                                  std::move(socket));
}

}  // namespace gateway::http
