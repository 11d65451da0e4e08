#pragma once
// A small blocking HTTP/1.1 client for tests, with keep-alive and socket timeouts.

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace gateway::test {

struct HttpReply {
    unsigned status = 0;
    std::string body;
    std::map<std::string, std::string> headers;  ///< names in lower case
    bool keep_alive = false;

    std::string header(const std::string& lower_name) const {
        auto it = headers.find(lower_name);
        return it == headers.end() ? std::string() : it->second;
    }
};

/// One keep-alive connection to 127.0.0.1:port. Transport failures throw
/// boost::system::system_error.
class HttpConnection {
public:
    explicit HttpConnection(std::uint16_t port,
                            std::chrono::milliseconds timeout = std::chrono::seconds(30));
    ~HttpConnection();

    HttpReply request(const std::string& method, const std::string& target, const std::string& body,
                      const std::vector<std::pair<std::string, std::string>>& headers = {});
    /// The two halves of request(), for tests that care about when a request was sent.
    void send(const std::string& method, const std::string& target, const std::string& body,
              const std::vector<std::pair<std::string, std::string>>& headers = {});
    HttpReply receive();
    HttpReply post(const std::string& target, const std::string& body) {
        return request("POST", target, body);
    }
    HttpReply get(const std::string& target) { return request("GET", target, ""); }

    /// Writes bytes as they are (for malformed requests).
    void send_raw(const std::string& bytes);
    /// Reads until the server closes the connection or the timeout; what arrived.
    std::string read_until_close();
    /// Whether the server has closed the connection (a read returns end of stream at once).
    bool closed_by_server();

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

/// One request on a fresh connection.
HttpReply http_post(std::uint16_t port, const std::string& target, const std::string& body);
HttpReply http_get(std::uint16_t port, const std::string& target);

/// A loopback port nothing listens on: held, bound and not listening, until the process ends.
std::uint16_t closed_port();

/// A JSON-RPC call body: {"jsonrpc":"2.0","id":id,"method":method,"params":params_json}.
std::string rpc_body(const std::string& method, const std::string& params_json = "[]", int id = 1);

}  // namespace gateway::test
