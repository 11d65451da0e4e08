#include "support/jwks_server.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>

#include <atomic>
#include <future>
#include <mutex>
#include <optional>
#include <set>
#include <stdexcept>
#include <thread>

namespace gateway::test {

namespace asio = boost::asio;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;
using boost::system::error_code;
constexpr auto use_nothrow = asio::as_tuple(asio::use_awaitable);

struct JwksServer::Impl {
    asio::io_context ioc;
    std::optional<asio::executor_work_guard<asio::io_context::executor_type>> guard{
        ioc.get_executor()};
    std::thread thread;
    std::atomic<std::uint16_t> port{0};
    std::atomic<std::size_t> answered{0};

    mutable std::mutex mu;
    std::string body;
    unsigned status = 200;

    // On the io thread only.
    tcp::acceptor acceptor{ioc};
    std::set<std::shared_ptr<tcp::socket>> sockets;

    // Runs `f` on the io thread and waits for it; its exception, if any, is rethrown here.
    template <class F>
    void on_io(F f) {
        std::packaged_task<void()> task(std::move(f));
        auto done = task.get_future();
        asio::post(ioc, [&task] { task(); });
        done.get();
    }

    void listen(std::uint16_t wanted) {
        if (acceptor.is_open()) return;  // up already
        const tcp::endpoint endpoint(asio::ip::make_address("127.0.0.1"), wanted);
        // The port was free a moment ago; something else may hold it for an instant.
        for (int attempt = 0;; ++attempt) {
            error_code ec;
            acceptor.open(endpoint.protocol(), ec);
            if (!ec) acceptor.set_option(asio::socket_base::reuse_address(true), ec);
            if (!ec) acceptor.bind(endpoint, ec);
            if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
            if (!ec) break;
            error_code ignored;
            acceptor.close(ignored);
            if (attempt == 40)
                throw std::runtime_error("jwks server: cannot listen: " + ec.message());
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
        port = acceptor.local_endpoint().port();
        asio::co_spawn(ioc, accept_loop(), asio::detached);
    }

    void close_all() {
        error_code ignored;
        acceptor.close(ignored);
        for (const auto& s : sockets) {
            s->shutdown(tcp::socket::shutdown_both, ignored);
            s->close(ignored);
        }
    }

    asio::awaitable<void> accept_loop() {
        for (;;) {
            auto [ec, socket] = co_await acceptor.async_accept(use_nothrow);
            if (ec) co_return;  // closed by down()
            auto s = std::make_shared<tcp::socket>(std::move(socket));
            sockets.insert(s);
            asio::co_spawn(ioc, session(s), asio::detached);
        }
    }

    asio::awaitable<void> session(std::shared_ptr<tcp::socket> s) {
        boost::beast::flat_buffer buffer;
        for (;;) {
            bhttp::request<bhttp::string_body> request;
            auto [rec, rn] = co_await bhttp::async_read(*s, buffer, request, use_nothrow);
            if (rec) break;
            bhttp::response<bhttp::string_body> response;
            response.version(11);
            if (request.method() == bhttp::verb::get) {
                std::lock_guard lock(mu);
                response.result(status);
                response.body() = body;
            } else {
                response.result(bhttp::status::method_not_allowed);
            }
            response.set(bhttp::field::content_type, "application/json");
            response.keep_alive(request.keep_alive());
            response.prepare_payload();
            ++answered;
            auto [wec, wn] = co_await bhttp::async_write(*s, response, use_nothrow);
            if (wec || !response.keep_alive()) break;
        }
        error_code ignored;
        s->shutdown(tcp::socket::shutdown_both, ignored);
        s->close(ignored);
        sockets.erase(s);
    }
};

JwksServer::JwksServer(std::string body) : impl_(std::make_unique<Impl>()) {
    impl_->body = std::move(body);
    impl_->listen(0);
    impl_->thread = std::thread([impl = impl_.get()] { impl->ioc.run(); });
}

JwksServer::~JwksServer() {
    impl_->on_io([impl = impl_.get()] { impl->close_all(); });
    impl_->guard.reset();
    impl_->ioc.stop();
    impl_->thread.join();
}

std::uint16_t JwksServer::port() const {
    return impl_->port;
}

std::string JwksServer::url() const {
    return "http://127.0.0.1:" + std::to_string(port()) + "/.well-known/jwks.json";
}

void JwksServer::set_body(std::string body) {
    std::lock_guard lock(impl_->mu);
    impl_->body = std::move(body);
}

void JwksServer::set_status(unsigned status) {
    std::lock_guard lock(impl_->mu);
    impl_->status = status;
}

void JwksServer::down() {
    impl_->on_io([impl = impl_.get()] { impl->close_all(); });
}

void JwksServer::up() {
    impl_->on_io([impl = impl_.get()] { impl->listen(impl->port); });
}

std::size_t JwksServer::answered() const {
    return impl_->answered;
}

}  // namespace gateway::test
