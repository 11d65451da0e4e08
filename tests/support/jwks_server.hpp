#pragma once
// An authentication service's JWKS endpoint for tests: HTTP/1.1 on 127.0.0.1 (a port the system
// picks), on its own thread, answering every GET with the current document. It can go down
// (connections refused, open ones closed) and come back on the same port.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace gateway::test {

class JwksServer {
public:
    explicit JwksServer(std::string body = R"({"keys":[]})");
    ~JwksServer();
    JwksServer(const JwksServer&) = delete;
    JwksServer& operator=(const JwksServer&) = delete;

    std::uint16_t port() const;
    /// http://127.0.0.1:<port>/.well-known/jwks.json
    std::string url() const;

    /// The document served from now on (any thread).
    void set_body(std::string body);
    /// The status served with it (200 unless told otherwise).
    void set_status(unsigned status);

    /// Stops accepting and closes every connection: a client is refused until up().
    void down();
    /// Listens again on the same port.
    void up();

    /// Requests answered so far.
    std::size_t answered() const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace gateway::test
