#include "support/tcp_forwarder.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <atomic>
#include <future>
#include <optional>
#include <set>
#include <thread>

namespace gateway::test {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
constexpr auto use_nothrow = asio::as_tuple(asio::use_awaitable);

struct TcpForwarder::Impl : std::enable_shared_from_this<Impl> {
    asio::io_context ioc;
    std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work{
        ioc.get_executor()};
    std::thread thread;
    tcp::acceptor acceptor{ioc};
    std::uint16_t target_port = 0;
    std::atomic<std::uint16_t> port{0};
    std::atomic<Mode> mode{Mode::forward};
    std::atomic<long> delay_ms{0};
    std::atomic<std::size_t> accepted{0};
    std::set<std::shared_ptr<tcp::socket>> sockets;  // io thread only

    // Runs f on the io thread and waits for it.
    template <class F>
    void run_sync(F f) {
        std::promise<void> done;
        asio::post(ioc, [&] {
            f();
            done.set_value();
        });
        done.get_future().get();
    }

    void listen(std::uint16_t p) {
        tcp::endpoint ep(asio::ip::make_address("127.0.0.1"), p);
        acceptor.open(ep.protocol());
        acceptor.set_option(asio::socket_base::reuse_address(true));
        acceptor.bind(ep);
        acceptor.listen();
        port = acceptor.local_endpoint().port();
        asio::co_spawn(ioc, accept_loop(shared_from_this()), asio::detached);
    }

    static asio::awaitable<void> accept_loop(std::shared_ptr<Impl> self) {
        for (;;) {
            auto [ec, socket] = co_await self->acceptor.async_accept(use_nothrow);
            if (ec) co_return;
            ++self->accepted;
            auto client = std::make_shared<tcp::socket>(std::move(socket));
            self->sockets.insert(client);
            asio::co_spawn(self->ioc, serve(self, client), asio::detached);
        }
    }

    static asio::awaitable<void> serve(std::shared_ptr<Impl> self,
                                       std::shared_ptr<tcp::socket> client) {
        const Mode m = self->mode;
        if (m == Mode::reset) {
            boost::system::error_code ec;
            client->set_option(asio::socket_base::linger(true, 0), ec);
            client->close(ec);
            self->sockets.erase(client);
            co_return;
        }
        if (m == Mode::drop) {
            boost::system::error_code ec;
            client->shutdown(tcp::socket::shutdown_both, ec);
            client->close(ec);
            self->sockets.erase(client);
            co_return;
        }
        if (m == Mode::blackhole) {
            co_await drain(client);
            self->sockets.erase(client);
            co_return;
        }
        auto server = std::make_shared<tcp::socket>(self->ioc);
        auto [ec] = co_await server->async_connect(
            tcp::endpoint(asio::ip::make_address("127.0.0.1"), self->target_port), use_nothrow);
        if (ec) {
            boost::system::error_code ignored;
            client->close(ignored);
            self->sockets.erase(client);
            co_return;
        }
        self->sockets.insert(server);
        asio::co_spawn(self->ioc, pump(self, client, server, true), asio::detached);
        asio::co_spawn(self->ioc, pump(self, server, client, false), asio::detached);
    }

    static asio::awaitable<void> drain(std::shared_ptr<tcp::socket> s) {
        std::array<char, 16384> buf;
        for (;;) {
            auto [ec, n] = co_await s->async_read_some(asio::buffer(buf), use_nothrow);
            if (ec) co_return;
        }
    }

    static asio::awaitable<void> pump(std::shared_ptr<Impl> self, std::shared_ptr<tcp::socket> from,
                                      std::shared_ptr<tcp::socket> to, bool from_client) {
        std::array<char, 16384> buf;
        asio::steady_timer timer(self->ioc);
        for (;;) {
            auto [ec, n] = co_await from->async_read_some(asio::buffer(buf), use_nothrow);
            if (ec) break;
            if (self->mode == Mode::blackhole) continue;
            if (from_client && self->delay_ms > 0) {
                timer.expires_after(std::chrono::milliseconds(self->delay_ms.load()));
                co_await timer.async_wait(use_nothrow);
            }
            auto [wec, wn] =
                co_await asio::async_write(*to, asio::buffer(buf.data(), n), use_nothrow);
            if (wec) break;
        }
        boost::system::error_code ignored;
        to->shutdown(tcp::socket::shutdown_send, ignored);
        if (!from_client) {
            from->close(ignored);
            to->close(ignored);
        }
        self->sockets.erase(from);
    }
};

TcpForwarder::TcpForwarder(std::uint16_t target_port, std::uint16_t listen_port)
    : impl_(std::make_shared<Impl>()) {
    impl_->target_port = target_port;
    impl_->listen(listen_port);
    impl_->thread = std::thread([impl = impl_.get()] { impl->ioc.run(); });
}

TcpForwarder::~TcpForwarder() {
    // With every socket closed, each coroutine ends and run() returns by itself; the coroutines
    // hold the Impl, and impl_ stays the last owner.
    stop();
    impl_->work.reset();
    impl_->thread.join();
}

std::uint16_t TcpForwarder::port() const {
    return impl_->port;
}
void TcpForwarder::set_mode(Mode mode) {
    impl_->mode = mode;
}
void TcpForwarder::set_delay(std::chrono::milliseconds delay) {
    impl_->delay_ms = delay.count();
}
std::size_t TcpForwarder::accepted() const {
    return impl_->accepted;
}

void TcpForwarder::stop() {
    impl_->run_sync([impl = impl_.get()] {
        boost::system::error_code ec;
        impl->acceptor.close(ec);
        for (auto& s : impl->sockets) {
            s->set_option(asio::socket_base::linger(true, 0), ec);
            s->close(ec);
        }
        impl->sockets.clear();
    });
}

void TcpForwarder::break_connections() {
    impl_->run_sync([impl = impl_.get()] {
        boost::system::error_code ec;
        for (auto& s : impl->sockets) {
            s->set_option(asio::socket_base::linger(true, 0), ec);
            s->close(ec);
        }
        impl->sockets.clear();
    });
}

void TcpForwarder::start() {
    impl_->run_sync([impl = impl_.get()] {
        if (!impl->acceptor.is_open()) impl->listen(impl->port);
    });
}

}  // namespace gateway::test
