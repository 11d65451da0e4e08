#include "gateway/http/listener.hpp"

#include "session.hpp"

#include "gateway/util/nothrow.hpp"

#include <openssl/ssl.h>
#include <spdlog/spdlog.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace gateway::http {

namespace asio = boost::asio;
namespace ssl = boost::asio::ssl;
using tcp = asio::ip::tcp;
using boost::system::error_code;
using Clock = std::chrono::steady_clock;
using util::use_nothrow;

std::string_view Request::header(std::string_view name) const {
    for (const auto& [k, v] : headers)
        if (k == name) return v;
    return {};
}

std::string_view Request::path() const {
    std::string_view t = target;
    return t.substr(0, t.find('?'));
}

std::string masked_path(std::string_view path) {
    // Keys have at least 16 characters: a first segment that long may be one sent in place of
    // the chain's name, and is masked too.
    constexpr std::size_t kShortest = 16;
    const std::size_t from = !path.empty() && path.front() == '/' ? 1 : 0;
    const auto slash = path.find('/', from);
    const auto first =
        path.substr(from, slash == std::string_view::npos ? path.npos : slash - from);
    if (first.size() >= kShortest) return "/\u2026";
    if (slash == std::string_view::npos || slash + 1 == path.size()) return std::string(path);
    std::string out(path.substr(0, slash));
    out += "/\u2026";
    return out;
}

namespace {

// How often at most a listener warns that it closes new connections at accept.
constexpr std::chrono::seconds kRefusalLogInterval{60};

// The server side of TLS 1.2 and 1.3 with the configured certificate chain and key. Start-up only:
// throws std::invalid_argument naming the file and the setting when they cannot be used.
std::unique_ptr<ssl::context> make_tls_context(const ListenerOptions& options) {
    const auto& tls = options.tls;
    auto ctx = std::make_unique<ssl::context>(ssl::context::tls_server);
    ctx->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                     ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1 |
                     ssl::context::single_dh_use);
    SSL_CTX* native = ctx->native_handle();
    SSL_CTX_set_min_proto_version(native, TLS1_2_VERSION);
    // A client may not make the server redo handshakes (a cheap way to burn its CPU).
    SSL_CTX_set_options(native, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    // An idle connection gives its read and write buffers back (some 34 KB each).
    SSL_CTX_set_mode(native, SSL_MODE_RELEASE_BUFFERS);
    error_code ec;
    ctx->use_certificate_chain_file(tls.cert_file, ec);
    if (ec)
        throw std::invalid_argument(options.name +
                                    " listener: cannot use the certificate chain in " +
                                    tls.cert_file + " (server.tls.cert_file): " + ec.message());
    ctx->use_private_key_file(tls.key_file, ssl::context::pem, ec);
    if (ec)
        throw std::invalid_argument(options.name + " listener: cannot use the private key in " +
                                    tls.key_file + " (server.tls.key_file): " + ec.message());
    if (SSL_CTX_check_private_key(native) != 1)
        throw std::invalid_argument(options.name + " listener: the private key in " + tls.key_file +
                                    " does not belong to the certificate in " + tls.cert_file +
                                    " (server.tls)");
    return ctx;
}

class ListenerImpl final : public Listener {
public:
    ListenerImpl(asio::io_context& ioc, ListenerOptions options, Handler handler,
                 metrics::Metrics* metrics, std::vector<asio::io_context*> session_contexts)
        : ioc_(ioc),
          contexts_(std::move(session_contexts)),
          acceptor_(asio::make_strand(ioc)),
          state_(std::make_shared<ListenerState>(std::move(options), std::move(handler), metrics)) {
        if (contexts_.empty()) contexts_.push_back(&ioc_);
        if (state_->options.tls.enabled()) state_->tls = make_tls_context(state_->options);
        const auto& ep = state_->options.endpoint;
        tcp::endpoint endpoint(asio::ip::make_address(ep.host), ep.port);
        acceptor_.open(endpoint.protocol());
        acceptor_.set_option(asio::socket_base::reuse_address(true));
        acceptor_.bind(endpoint);
        acceptor_.listen(asio::socket_base::max_listen_connections);
        auto bound = acceptor_.local_endpoint();
        local_ = config::Endpoint{bound.address().to_string(), bound.port()};
        if (metrics) metrics->set_open_connections(state_->options.name, 0);
    }

    config::Endpoint local_endpoint() const override { return local_; }

    void start() override {
        const auto& opt = state_->options;
        spdlog::info("{} listener: listening on {}{} ({})", opt.name, local_.to_string(),
                     state_->tls ? " with TLS" : "",
                     opt.max_connections
                         ? "at most " + std::to_string(opt.max_connections) + " connections"
                         : std::string("no cap on connections"));
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

    std::size_t open_connections() const override { return state_->table.size(); }
    std::size_t body_bytes_held() const override { return state_->bodies.load(); }

    void close_all() override {
        for (auto& s : sessions()) s->close_now();
    }

private:
    std::vector<std::shared_ptr<SessionBase>> sessions() const {
        std::vector<std::shared_ptr<SessionBase>> out;
        for (auto& c : state_->table.snapshot())
            out.push_back(std::static_pointer_cast<SessionBase>(std::move(c)));
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

    // The next session context's executor: the accepted socket belongs to that context's event
    // loop. A strand on it, unless one thread runs each loop alone (then the loop is as good as a
    // strand, and cheaper). On the acceptor's strand only.
    asio::any_io_executor next_session_executor() {
        asio::io_context* ctx = contexts_[next_context_++ % contexts_.size()];
        if (state_->options.loops_run_alone) return ctx->get_executor();
        return asio::make_strand(*ctx);
    }

    // On the acceptor's strand.
    void serve(tcp::socket socket) {
        error_code ec;
        const auto peer = socket.remote_endpoint(ec);
        if (ec) return;  // gone already
        socket.set_option(tcp::no_delay(true), ec);
        std::shared_ptr<SessionBase> session =
            make_session(state_, std::move(socket), peer, Clock::now());

        auto admission = state_->table.admit(session);
        switch (admission.verdict) {
            case ConnectionTable::Verdict::admitted: break;
            case ConnectionTable::Verdict::full:
                refused_at_accept("max_connections", peer,
                                  "every one of its " +
                                      std::to_string(state_->options.max_connections) +
                                      " connections is serving a request "
                                      "(server.max_connections)");
                return;  // the session goes, and its socket with it, before anything is read
            case ConnectionTable::Verdict::over_per_ip:
                refused_at_accept("max_per_ip", peer,
                                  "the address already holds " +
                                      std::to_string(state_->options.max_connections_per_ip) +
                                      " connections (server.max_connections_per_ip)");
                return;
        }
        if (admission.evicted) {
            state_->count_closed("evicted");
            std::static_pointer_cast<SessionBase>(admission.evicted)->evict();
        }
        asio::co_spawn(
            session->executor(), [session]() { return session->run(); }, asio::detached);
    }

    void refused_at_accept(std::string_view reason, const tcp::endpoint& peer,
                           const std::string& why) {
        state_->count_closed(reason);
        const auto now = Clock::now();
        const bool warn = now - last_refusal_log_ >= kRefusalLogInterval;
        if (warn) last_refusal_log_ = now;
        spdlog::log(
            warn ? spdlog::level::warn : spdlog::level::debug,
            "{} listener: closed a new connection from {} at once: {}{}", state_->options.name,
            peer.address().to_string(), why,
            warn ? " (said at most once a minute; see gateway_connections_closed_total)" : "");
    }

    asio::io_context& ioc_;
    std::vector<asio::io_context*> contexts_;
    std::size_t next_context_ = 0;
    tcp::acceptor acceptor_;
    std::shared_ptr<ListenerState> state_;
    config::Endpoint local_;
    Clock::time_point last_refusal_log_{};  // on the acceptor's strand
};

}  // namespace

std::unique_ptr<Listener> make_listener(asio::io_context& ioc, ListenerOptions options,
                                        Handler handler, metrics::Metrics* metrics,
                                        std::vector<asio::io_context*> session_contexts) {
    return std::make_unique<ListenerImpl>(ioc, std::move(options), std::move(handler), metrics,
                                          std::move(session_contexts));
}

}  // namespace gateway::http
