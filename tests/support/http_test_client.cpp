#include "support/http_test_client.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>
#include <algorithm>
#include <stdexcept>

namespace gateway::test {

namespace asio = boost::asio;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;

struct HttpConnection::Impl {
    asio::io_context ioc;
    tcp::socket socket{ioc};
    boost::beast::flat_buffer buffer;
};

HttpConnection::HttpConnection(std::uint16_t port, std::chrono::milliseconds timeout)
    : impl_(std::make_unique<Impl>()) {
    impl_->socket.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
    timeval tv{static_cast<time_t>(timeout.count() / 1000),
               static_cast<suseconds_t>((timeout.count() % 1000) * 1000)};
    setsockopt(impl_->socket.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(impl_->socket.native_handle(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

HttpConnection::~HttpConnection() {
    boost::system::error_code ec;
    impl_->socket.close(ec);
}

HttpReply HttpConnection::request(const std::string& method, const std::string& target,
                                  const std::string& body,
                                  const std::vector<std::pair<std::string, std::string>>& headers) {
    send(method, target, body, headers);
    return receive();
}

void HttpConnection::send(const std::string& method, const std::string& target,
                          const std::string& body,
                          const std::vector<std::pair<std::string, std::string>>& headers) {
    bhttp::request<bhttp::string_body> req{bhttp::string_to_verb(method), target, 11};
    req.set(bhttp::field::host, "127.0.0.1");
    if (!body.empty()) req.set(bhttp::field::content_type, "application/json");
    for (auto& [k, v] : headers) req.set(k, v);
    req.body() = body;
    req.prepare_payload();
    bhttp::write(impl_->socket, req);
}

HttpReply HttpConnection::receive() {
    bhttp::response_parser<bhttp::string_body> parser;
    parser.body_limit(1ull << 30);
    bhttp::read(impl_->socket, impl_->buffer, parser);
    auto res = parser.release();
    HttpReply reply;
    reply.status = res.result_int();
    reply.body = res.body();
    reply.keep_alive = res.keep_alive();
    for (auto& f : res) {
        std::string name(f.name_string());
        std::transform(name.begin(), name.end(), name.begin(),
                       [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
        reply.headers[name] = std::string(f.value());
    }
    return reply;
}

void HttpConnection::send_raw(const std::string& bytes) {
    asio::write(impl_->socket, asio::buffer(bytes));
}

std::string HttpConnection::read_until_close() {
    std::string out(static_cast<const char*>(impl_->buffer.data().data()), impl_->buffer.size());
    impl_->buffer.clear();
    char buf[4096];
    for (;;) {
        boost::system::error_code ec;
        std::size_t n = impl_->socket.read_some(asio::buffer(buf), ec);
        if (ec) break;
        out.append(buf, n);
    }
    return out;
}

bool HttpConnection::closed_by_server() {
    char c;
    boost::system::error_code ec;
    impl_->socket.read_some(asio::buffer(&c, 1), ec);
    return ec == asio::error::eof || ec == asio::error::connection_reset;
}

HttpReply http_post(std::uint16_t port, const std::string& target, const std::string& body) {
    return HttpConnection(port).post(target, body);
}

HttpReply http_get(std::uint16_t port, const std::string& target) {
    return HttpConnection(port).get(target);
}

std::uint16_t closed_port() {
    // Bound and never listening, the socket is kept until the process ends: a connection is
    // refused, and no other test's server (run in parallel) nor any outgoing connection's source
    // port (a connection to itself would succeed) can take the port meanwhile.
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) throw std::runtime_error("closed_port: socket() failed");
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
        ::close(fd);
        throw std::runtime_error("closed_port: bind() failed");
    }
    return ntohs(addr.sin_port);
}

std::string rpc_body(const std::string& method, const std::string& params_json, int id) {
    return R"({"jsonrpc":"2.0","id":)" + std::to_string(id) + R"(,"method":")" + method +
           R"(","params":)" + params_json + "}";
}

}  // namespace gateway::test
