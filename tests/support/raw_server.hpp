#pragma once
// A TCP server whose every connection is handled by a plain function on its own thread: for
// upstream behaviour no HTTP library would produce (garbage, closing mid-answer).

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/write.hpp>

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace gateway::test {

class RawServer {
public:
    using Handler =
        std::function<void(boost::asio::ip::tcp::socket&, std::size_t connection_index)>;

    explicit RawServer(Handler handler) : handler_(std::move(handler)) {
        using tcp = boost::asio::ip::tcp;
        acceptor_.open(tcp::v4());
        acceptor_.bind(tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), 0));
        acceptor_.listen();
        accept_thread_ = std::thread([this] {
            for (std::size_t i = 0;; ++i) {
                tcp::socket socket(ioc_);
                boost::system::error_code ec;
                acceptor_.accept(socket, ec);
                if (ec || stopping_) return;
                connections_ = i + 1;
                auto s = std::make_shared<tcp::socket>(std::move(socket));
                std::lock_guard lock(mu_);
                sockets_.push_back(s);
                workers_.emplace_back([this, s, i] {
                    handler_(*s, i);
                    // Shut down rather than close, so the descriptor stays ours until the
                    // destructor: it may shut it down again at any moment.
                    ::shutdown(s->native_handle(), SHUT_RDWR);
                });
            }
        });
    }

    ~RawServer() {
        stopping_ = true;
        boost::system::error_code ec;
        acceptor_.cancel(ec);
        ::shutdown(acceptor_.native_handle(), SHUT_RDWR);
        accept_thread_.join();
        std::lock_guard lock(mu_);
        // A handler blocked reading a keep-alive connection its client still holds open ends now.
        for (auto& s : sockets_) ::shutdown(s->native_handle(), SHUT_RDWR);
        for (auto& w : workers_) w.join();
    }

    std::uint16_t port() const { return acceptor_.local_endpoint().port(); }
    std::size_t connections() const { return connections_; }

    /// Reads one HTTP request (headers and a Content-Length body) from the socket; "" on EOF.
    static std::string read_request(boost::asio::ip::tcp::socket& s) {
        boost::asio::streambuf buf;
        boost::system::error_code ec;
        std::size_t n = boost::asio::read_until(s, buf, "\r\n\r\n", ec);
        if (ec) return "";
        std::string head(boost::asio::buffers_begin(buf.data()),
                         boost::asio::buffers_begin(buf.data()) + n);
        buf.consume(n);
        std::size_t length = 0;
        auto pos = head.find("Content-Length: ");
        if (pos == std::string::npos) pos = head.find("content-length: ");
        if (pos != std::string::npos) length = std::stoul(head.substr(pos + 16));
        std::string body(boost::asio::buffers_begin(buf.data()),
                         boost::asio::buffers_end(buf.data()));
        if (body.size() < length) {
            std::string rest(length - body.size(), '\0');
            boost::asio::read(s, boost::asio::buffer(rest), ec);
            body += rest;
        }
        return head + body;
    }

    static void write(boost::asio::ip::tcp::socket& s, const std::string& bytes) {
        boost::system::error_code ec;
        boost::asio::write(s, boost::asio::buffer(bytes), ec);
    }

    /// An HTTP 200 answer with a JSON body, keep-alive.
    static std::string ok_response(const std::string& body) {
        return "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " +
               std::to_string(body.size()) + "\r\n\r\n" + body;
    }

private:
    Handler handler_;
    boost::asio::io_context ioc_;
    boost::asio::ip::tcp::acceptor acceptor_{ioc_};
    std::thread accept_thread_;
    std::atomic<bool> stopping_{false};
    std::atomic<std::size_t> connections_{0};
    std::mutex mu_;
    std::vector<std::shared_ptr<boost::asio::ip::tcp::socket>> sockets_;
    std::vector<std::thread> workers_;
};

}  // namespace gateway::test
