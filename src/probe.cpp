// The gateway's probe of itself (see probe.hpp): one GET on a plain connection, by hand (the
// status line is all it reads), on its own small event loop.

#include "gateway/probe.hpp"

#include <fmt/format.h>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>

#include <memory>

namespace gateway {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

ProbeResult probe(const config::Endpoint& admin, std::string_view path,
                  std::chrono::milliseconds timeout) {
    std::string host = admin.host;
    if (host == "0.0.0.0" || host.empty()) host = "127.0.0.1";
    if (host == "::") host = "::1";
    const std::string where = fmt::format(
        "{}:{}{}", host.find(':') != std::string::npos ? "[" + host + "]" : host, admin.port, path);
    try {
        asio::io_context ioc;
        tcp::socket socket(ioc);
        const auto request = fmt::format(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: chain-gateway-probe\r\nConnection: "
            "close\r\n\r\n",
            path, where.substr(0, where.size() - path.size()));
        std::string reply;
        boost::system::error_code failure;
        bool done = false;
        // Connect, send, read to the end (Connection: close), all within the timeout.
        tcp::endpoint endpoint(asio::ip::make_address(host), admin.port);
        socket.async_connect(endpoint, [&](boost::system::error_code ec) {
            if (ec) {
                failure = ec;
                done = true;
                return;
            }
            asio::async_write(
                socket, asio::buffer(request), [&](boost::system::error_code ec, std::size_t) {
                    if (ec) {
                        failure = ec;
                        done = true;
                        return;
                    }
                    asio::async_read(
                        socket, asio::dynamic_buffer(reply, 64 * 1024),
                        [&](boost::system::error_code ec, std::size_t) {
                            // The end of the answer, or as much as is kept.
                            if (ec && ec != asio::error::eof && ec != asio::error::not_found)
                                failure = ec;
                            done = true;
                        });
                });
        });
        ioc.run_for(timeout);
        if (!done)
            return {false, fmt::format("no answer from {} within {} ms", where, timeout.count())};
        // "HTTP/1.1 200 OK": what a partial answer holds is enough when its status line came.
        unsigned status = 0;
        if (reply.rfind("HTTP/1.", 0) == 0 && reply.size() >= 12)
            status = static_cast<unsigned>(std::atoi(reply.substr(9, 3).c_str()));
        if (status == 0)
            return {false, fmt::format("{}: {}", where,
                                       failure ? failure.message() : "not an HTTP answer")};
        return {status >= 200 && status <= 299, fmt::format("HTTP {} from {}", status, where)};
    } catch (const std::exception& e) {
        return {false, fmt::format("{}: {}", where, e.what())};
    }
}

}  // namespace gateway
