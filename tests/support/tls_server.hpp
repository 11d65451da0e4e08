#pragma once
// TLS for tests: a throwaway CA and server certificate made at run time, and an HTTPS server that
// answers every request with one JSON-RPC result and remembers the SNI name it was sent.

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace gateway::test {

struct TestPki {
    std::string ca_cert_pem;
    std::string server_cert_pem;
    std::string server_key_pem;
};

/// A CA, and a server certificate it signed for the given DNS names and IP addresses.
TestPki make_test_pki(const std::vector<std::string>& dns_names,
                      const std::vector<std::string>& ips);

class TlsServer {
public:
    explicit TlsServer(const TestPki& pki);
    ~TlsServer();
    std::uint16_t port() const;
    /// The SNI host name of the last handshake ("" when the client sent none).
    std::string last_sni() const;
    /// Requests answered.
    std::size_t answered() const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace gateway::test
