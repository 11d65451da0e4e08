#include "gateway/http/listener.hpp"

#include "gateway/metrics/metrics.hpp"
#include "gateway/util/text.hpp"

#include <spdlog/spdlog.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <cctype>
#include <mutex>
#include <unordered_map>

namespace gateway::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;
using boost::system::error_code;
constexpr auto use_nothrow = asio::as_tuple(asio::use_awaitable);

std::string_view Request::header(std::string_view name) const {
    for (const auto& [k, v] : headers)
        if (k == name) return v;
    return {};
}

std::string_view Request::path() const {
    std::string_view t = target;
    return t.substr(0, t.find('?'));
}

namespace {

class Session;

// How long an idle keep-alive connection is still read from once shutdown has begun.
constexpr std::chrono::milliseconds kLastWait{500};

// What the listener and its sessions share; sessions keep it alive past the listener.
struct State {
    ListenerOptions options;
    Handler handler;
    metrics::Metrics* metrics = nullptr;
    std::atomic<bool> stopping{false};

    mutable std::mutex mu;
    std::unordered_map<Session*, std::weak_ptr<Session>> sessions;

    void observe(unsigned status) {
        if (metrics) metrics->observe_http(options.name, status);
    }
};

class Session : public std::enable_shared_from_this<Session> {
public:
    Session(tcp::socket socket, std::shared_ptr<State> state)
        : stream_(std::move(socket)), last_wait_(stream_.get_executor()), state_(std::move(state)) {
        error_code ec;
        auto ep = stream_.socket().remote_endpoint(ec);
        if (!ec) remote_ = ep.address().to_string() + ":" + std::to_string(ep.port());
    }

    asio::any_io_executor executor() { return stream_.get_executor(); }

    /// Asks the session to end. A request in progress is answered with `Connection: close`. An
    /// idle keep-alive connection gets a short last wait instead of an immediate close: a client
    /// may have sent its next request just before the shutdown, and that request gets answered.
    void stop() {
        asio::post(stream_.get_executor(), [self = shared_from_this()] {
            if (!self->idle_) return;  // a request is in progress; its answer closes the connection
            // Beast cannot shorten the timeout of a read already pending, hence a timer of our own.
            self->last_wait_.expires_after(kLastWait);
            self->last_wait_.async_wait([self](error_code ec) {
                if (!ec && self->idle_) self->stream_.cancel();
            });
        });
    }

    void close_now() {
        asio::post(stream_.get_executor(), [self = shared_from_this()] {
            error_code ec;
            self->stream_.socket().shutdown(tcp::socket::shutdown_both, ec);
            self->stream_.close();
        });
    }

    asio::awaitable<void> run() {
        co_await serve();
        co_await close_gracefully();
        std::lock_guard lock(state_->mu);
        state_->sessions.erase(this);
    }

private:
    asio::awaitable<void> serve() {
        const ListenerOptions& opt = state_->options;
        for (;;) {
            if (buffer_.size() == 0) {
                // Between requests: wait for the first byte under the idle timeout (shorter
                // once shutdown has begun).
                idle_ = true;
                stream_.expires_after(state_->stopping ? kLastWait : opt.idle_timeout);
                auto [ec, n] =
                    co_await stream_.async_read_some(buffer_.prepare(16 * 1024), use_nothrow);
                idle_ = false;
                if (ec) co_return;  // closed by the peer, idle timeout, or shutdown
                buffer_.commit(n);
            }

            // A request has started: it gets read and answered, even during shutdown.
            bhttp::request_parser<bhttp::string_body> parser;
            parser.body_limit(opt.max_body_bytes);
            parser.header_limit(static_cast<std::uint32_t>(opt.max_header_bytes));
            stream_.expires_after(opt.read_timeout);
            auto [hec, hn] =
                co_await bhttp::async_read_header(stream_, buffer_, parser, use_nothrow);
            if (!hec && parser.get()[bhttp::field::expect] == "100-continue" && !parser.is_done()) {
                bhttp::response<bhttp::empty_body> cont{bhttp::status::continue_,
                                                        parser.get().version()};
                auto [cec, cn] = co_await bhttp::async_write(stream_, cont, use_nothrow);
                if (cec) co_return;
            }
            error_code ec = hec;
            if (!ec)
                std::tie(ec, std::ignore) =
                    co_await bhttp::async_read(stream_, buffer_, parser, use_nothrow);
            if (ec == bhttp::error::end_of_stream) co_return;
            if (ec) {
                co_await refuse(ec);
                co_return;
            }

            bhttp::request<bhttp::string_body> message = parser.release();
            Request request;
            request.method = std::string(message.method_string());
            request.target = std::string(message.target());
            request.remote = remote_;
            for (const auto& field : message)
                request.headers.emplace_back(util::lower(field.name_string()),
                                             std::string(field.value()));
            request.body = std::move(message.body());
            bool keep_alive = message.keep_alive();

            Response response;
            try {
                response = co_await state_->handler(request);
            } catch (const std::exception& e) {
                spdlog::error("{} listener: handler failed for {} {}: {}", opt.name, request.method,
                              request.path(), e.what());
                response.status = 500;
                response.body =
                    opt.error_body ? opt.error_body(500, "internal error") : std::string();
            }

            keep_alive = keep_alive && !state_->stopping;
            const std::string head = response_head(response, message.version(), keep_alive);
            // The answer to HEAD is the head alone, with the length the body would have.
            if (message.method() == bhttp::verb::head) response.body.clear();
            state_->observe(response.status);
            stream_.expires_after(opt.read_timeout);
            const std::array<asio::const_buffer, 2> out{asio::buffer(head),
                                                        asio::buffer(response.body)};
            auto [wec, wn] = co_await asio::async_write(stream_, out, use_nothrow);
            if (wec || !keep_alive) co_return;
        }
    }

    // The status line and headers of an answer, written as they are: cheaper than Beast's
    // serializer, which walks its field list through layers of buffer views.
    static std::string response_head(Response& response, unsigned version, bool keep_alive) {
        const unsigned status = response.status;
        const bool bodiless = status == 204 || status == 304 || (status >= 100 && status < 200);
        if (bodiless) response.body.clear();
        std::string head;
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
        } else if (ec == bhttp::error::header_limit) {
            status = 431;
            message = "request headers too large: the limit is " +
                      std::to_string(opt.max_header_bytes) + " bytes (server.max_header_bytes)";
        } else if (ec.category() == bhttp::make_error_code(bhttp::error::bad_method).category() ||
                   ec == bhttp::error::partial_message) {
            status = 400;
            message = "malformed HTTP request: " + ec.message();
        } else {
            // The connection failed, or the request did not arrive within the read timeout (Beast
            // has closed the socket then): nobody to answer.
            co_return;
        }
        spdlog::debug("{} listener: refused a request from {}: {}", opt.name, remote_, message);
        bhttp::response<bhttp::string_body> out{static_cast<bhttp::status>(status), 11};
        out.set(bhttp::field::server, "chain-gateway");
        out.set(bhttp::field::content_type, "application/json");
        out.body() = opt.error_body ? opt.error_body(status, message) : std::string();
        out.keep_alive(false);
        out.prepare_payload();
        state_->observe(status);
        stream_.expires_after(std::chrono::seconds(5));
        co_await bhttp::async_write(stream_, out, use_nothrow);
    }

    // Half-closes, then reads what the client still sends for a short while, so that unread
    // bytes (the rest of a refused body) do not turn the close into a reset the client may see
    // before it reads the answer.
    asio::awaitable<void> close_gracefully() {
        error_code ec;
        stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
        if (!ec) {
            stream_.expires_after(std::chrono::seconds(2));
            std::array<char, 16 * 1024> scratch;
            std::size_t drained = 0;
            while (drained < 64 * 1024 * 1024) {
                auto [rec, n] =
                    co_await stream_.async_read_some(asio::buffer(scratch), use_nothrow);
                if (rec) break;
                drained += n;
            }
        }
        stream_.close();
    }

    beast::tcp_stream stream_;
    asio::steady_timer last_wait_;
    beast::flat_buffer buffer_;
    std::shared_ptr<State> state_;
    std::string remote_;
    bool idle_ = false;  // waiting for the first byte of a request; touched on the strand only
};

class ListenerImpl final : public Listener {
public:
    ListenerImpl(asio::io_context& ioc, ListenerOptions options, Handler handler,
                 metrics::Metrics* metrics, std::vector<asio::io_context*> session_contexts)
        : ioc_(ioc),
          contexts_(std::move(session_contexts)),
          acceptor_(asio::make_strand(ioc)),
          state_(std::make_shared<State>()) {
        if (contexts_.empty()) contexts_.push_back(&ioc_);
        state_->options = std::move(options);
        state_->handler = std::move(handler);
        state_->metrics = metrics;
        const auto& ep = state_->options.endpoint;
        tcp::endpoint endpoint(asio::ip::make_address(ep.host), ep.port);
        acceptor_.open(endpoint.protocol());
        acceptor_.set_option(asio::socket_base::reuse_address(true));
        acceptor_.bind(endpoint);
        acceptor_.listen(asio::socket_base::max_listen_connections);
        auto bound = acceptor_.local_endpoint();
        local_ = config::Endpoint{bound.address().to_string(), bound.port()};
    }

    config::Endpoint local_endpoint() const override { return local_; }

    void start() override {
        spdlog::info("{} listener: listening on {}", state_->options.name, local_.to_string());
        asio::co_spawn(acceptor_.get_executor(), accept_loop(), asio::detached);
    }

    void shutdown() override {
        state_->stopping = true;
        asio::post(acceptor_.get_executor(), [this] {
            // Connections the kernel has completed but nobody accepted yet would be reset by the
            // close; their clients may already have sent a request. Take them in first.
            error_code ec;
            acceptor_.non_blocking(true, ec);
            for (;;) {
                tcp::socket socket(next_session_executor());
                acceptor_.accept(socket, ec);
                if (ec) break;
                serve(std::move(socket));
            }
            acceptor_.close(ec);
        });
        for (auto& s : sessions()) s->stop();
    }

    std::size_t open_connections() const override {
        std::lock_guard lock(state_->mu);
        return state_->sessions.size();
    }

    void close_all() override {
        for (auto& s : sessions()) s->close_now();
    }

private:
    std::vector<std::shared_ptr<Session>> sessions() const {
        std::vector<std::shared_ptr<Session>> out;
        std::lock_guard lock(state_->mu);
        for (auto& [ptr, weak] : state_->sessions)
            if (auto s = weak.lock()) out.push_back(std::move(s));
        return out;
    }

    asio::awaitable<void> accept_loop() {
        asio::steady_timer backoff(acceptor_.get_executor());
        for (;;) {
            auto [ec, socket] =
                co_await acceptor_.async_accept(next_session_executor(), use_nothrow);
            if (!ec) serve(std::move(socket));
            if (state_->stopping || !acceptor_.is_open()) co_return;
            if (ec) {
                // Out of file descriptors and the like: say so, wait a little, keep serving.
                spdlog::warn("{} listener: accept failed: {}", state_->options.name, ec.message());
                backoff.expires_after(std::chrono::milliseconds(100));
                co_await backoff.async_wait(use_nothrow);
            }
        }
    }

    // A strand on the next session context: the accepted socket belongs to that context's event
    // loop. On the acceptor's strand only.
    asio::strand<asio::io_context::executor_type> next_session_executor() {
        asio::io_context* ctx = contexts_[next_context_++ % contexts_.size()];
        return asio::make_strand(*ctx);
    }

    void serve(tcp::socket socket) {
        error_code ignored;
        socket.set_option(tcp::no_delay(true), ignored);
        auto session = std::make_shared<Session>(std::move(socket), state_);
        {
            std::lock_guard lock(state_->mu);
            state_->sessions.emplace(session.get(), session);
        }
        asio::co_spawn(
            session->executor(), [session]() { return session->run(); }, asio::detached);
    }

    asio::io_context& ioc_;
    std::vector<asio::io_context*> contexts_;
    std::size_t next_context_ = 0;
    tcp::acceptor acceptor_;
    std::shared_ptr<State> state_;
    config::Endpoint local_;
};

}  // namespace

std::unique_ptr<Listener> make_listener(asio::io_context& ioc, ListenerOptions options,
                                        Handler handler, metrics::Metrics* metrics,
                                        std::vector<asio::io_context*> session_contexts) {
    return std::make_unique<ListenerImpl>(ioc, std::move(options), std::move(handler), metrics,
                                          std::move(session_contexts));
}

}  // namespace gateway::http
