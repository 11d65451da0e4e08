// The configuration of who may call the gateway: auth.clients, auth.jwt, auth.admin, the browser
// and connection limits of the listeners, and the refusals of exposed setups without credentials.

#include "gateway/config/config.hpp"

#include "support/config_parse.hpp"
#include "support/process.hpp"

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <map>

namespace gateway::config {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

using test::error_of;
using test::parse;

// A chain with one managed sender (signed by a key from HOT).
const std::string kManagedChain = R"(
signers: [{id: hot, type: local, key_env: HOT}]
chains:
  - name: devnet
    chain_id: 31337
    accounts: [{address: "0x2c7536E3605D9C16a7a3D7b1898e529396a65c23", signer: hot}]
    upstreams: [{id: node-a, url: "http://127.0.0.1:18545"}]
)";
constexpr const char* kSender = "0x2c7536e3605d9c16a7a3d7b1898e529396a65c23";

TEST(ConfigAuth, ClientsJwtAndAdminAreRead) {
    const std::string dir = test::make_temp_dir("config-auth");
    std::ofstream(dir + "/keys") << "# rotated on the 1st\nfile-key-0123456789abcdef\n"
                                 << "file-key-fedcba9876543210  # the new one\n";
    std::ofstream(dir + "/admin") << "admin-token-0123456789\n";
    const Config c = parse(R"(
auth:
  clients:
    - id: backend
      key_env: BACKEND_KEY
      senders: ["0x2C7536E3605D9C16a7a3D7b1898e529396a65c23"]
      methods: ["eth_*", net_version]
      max_rps: 200
    - id: indexer
      key_file: )" + dir + R"(/keys
  jwt:
    jwks_url: https://auth.internal/.well-known/jwks.json
    issuer: https://auth.internal/
    audience: chain-gateway
    senders_claim: wallets
    refresh_ms: 60000
    methods: [eth_call]
    max_rps: 5
  admin:
    token_file: )" + dir + R"(/admin
)" + kManagedChain,
                           {{"BACKEND_KEY", "key-one-0123456789abcdef, key-two-0123456789abcdef"},
                            {"HOT", "x"}});
    ASSERT_EQ(c.auth.clients.size(), 2u);
    const ClientConfig& backend = c.auth.clients[0];
    EXPECT_EQ(backend.id, "backend");
    EXPECT_EQ(backend.keys,
              (std::vector<std::string>{"key-one-0123456789abcdef", "key-two-0123456789abcdef"}));
    EXPECT_EQ(backend.senders, std::vector<std::string>{kSender});
    EXPECT_EQ(backend.methods, (std::vector<std::string>{"eth_*", "net_version"}));
    EXPECT_EQ(backend.max_rps, 200);
    EXPECT_EQ(c.auth.clients[1].keys,
              (std::vector<std::string>{"file-key-0123456789abcdef", "file-key-fedcba9876543210"}));
    EXPECT_TRUE(c.auth.clients[1].senders.empty()) << "absent: none";
    EXPECT_TRUE(c.auth.jwt.enabled());
    EXPECT_EQ(c.auth.jwt.issuer, "https://auth.internal/");
    EXPECT_EQ(c.auth.jwt.audience, "chain-gateway");
    EXPECT_EQ(c.auth.jwt.senders_claim, "wallets");
    EXPECT_EQ(c.auth.jwt.refresh, Millis(60'000));
    EXPECT_EQ(c.auth.jwt.methods, std::vector<std::string>{"eth_call"});
    EXPECT_EQ(c.auth.jwt.max_rps, 5);
    EXPECT_EQ(c.auth.admin_token, "admin-token-0123456789");
    EXPECT_TRUE(c.auth.clients_required());
}

TEST(ConfigAuth, NoAuthMeansNoCredentialsAsked) {
    const Config c = parse(kManagedChain, {{"HOT", "x"}});
    EXPECT_FALSE(c.auth.clients_required());
    EXPECT_TRUE(c.auth.admin_token.empty());
}

TEST(ConfigAuth, SecretsAreNeverRepeatedInErrors) {
    const std::string weak = "short-key";
    const std::string msg = error_of(R"(
auth:
  clients: [{id: backend, key_env: K}]
)" + kManagedChain,
                                     {{"K", weak}, {"HOT", "x"}});
    EXPECT_THAT(msg, HasSubstr("auth.clients[0]: variable K holds a key that is not 16-512"));
    EXPECT_THAT(msg, Not(HasSubstr(weak)));

    const std::string odd = "a-key-with-a-slash/in-it-0123";
    EXPECT_THAT(error_of("auth: {clients: [{id: backend, key_env: K}]}\n" + kManagedChain,
                         {{"K", odd}, {"HOT", "x"}}),
                Not(HasSubstr(odd)));

    const std::string shared = "shared-key-0123456789abcdef";
    const std::string twice =
        error_of(R"(
auth:
  clients:
    - {id: a, key_env: K1}
    - {id: b, key_env: K2}
)" + kManagedChain,
                 {{"K1", shared}, {"K2", "other-key-0123456789, " + shared}, {"HOT", "x"}});
    EXPECT_THAT(twice, HasSubstr("client 'b' has a key of client 'a'"));
    EXPECT_THAT(twice, Not(HasSubstr(shared)));
}

TEST(ConfigAuth, MistakesNameTheKey) {
    const std::map<std::string, std::string> env{{"HOT", "x"}, {"K", "a-good-key-0123456789"}};
    EXPECT_THAT(error_of("auth: {clients: [{id: backend}]}\n" + kManagedChain, env),
                HasSubstr("auth.clients[0]: takes exactly one of key_env and key_file"));
    EXPECT_THAT(error_of("auth: {clients: [{id: backend, key_env: UNSET}]}\n" + kManagedChain, env),
                HasSubstr("auth.clients[0].key_env: variable UNSET is not set"));
    EXPECT_THAT(
        error_of("auth: {clients: [{id: backend, key_file: /nonexistent/keys}]}\n" + kManagedChain,
                 env),
        HasSubstr("auth.clients[0].key_file: cannot read file /nonexistent/keys"));
    EXPECT_THAT(
        error_of("auth: {clients: [{id: b, key_env: K}, {id: b, key_env: K}]}\n" + kManagedChain,
                 env),
        HasSubstr("auth.clients[1].id: client 'b' is listed twice"));
    EXPECT_THAT(error_of("auth: {clients: [{id: 'jwt:x', key_env: K}]}\n" + kManagedChain, env),
                HasSubstr("auth.clients[0].id: 'jwt:x' must be"));
    EXPECT_THAT(error_of(R"(
auth: {clients: [{id: b, key_env: K, senders: ["0x70997970C51812dc3A010C7d01b50e0d17dc79C8"]}]}
)" + kManagedChain,
                         env),
                HasSubstr("auth.clients[0].senders[0]: 0x70997970c51812dc3a010c7d01b50e0d17dc79c8 "
                          "is not a managed sender of any chain"));
    EXPECT_THAT(
        error_of("auth: {clients: [{id: b, key_env: K, methods: ['eth_call(']}]}\n" + kManagedChain,
                 env),
        HasSubstr("auth.clients[0].methods[0]: 'eth_call(' is not a method name"));
    EXPECT_THAT(
        error_of("auth: {clients: [{id: b, key_env: K, weight: 1}]}\n" + kManagedChain, env),
        HasSubstr("auth.clients[0].weight: unknown key"));
    EXPECT_THAT(
        error_of("auth: {jwt: {jwks_url: 'ftp://x/', issuer: i, audience: a}}\n" + kManagedChain,
                 env),
        HasSubstr("auth.jwt.jwks_url: must be an http:// or https:// URL"));
    EXPECT_THAT(error_of("auth: {jwt: {jwks_url: 'https://x/'}}\n" + kManagedChain, env),
                HasSubstr("auth.jwt.issuer: is required"));
    EXPECT_THAT(error_of("auth: {admin: {token_env: UNSET}}\n" + kManagedChain, env),
                HasSubstr("auth.admin.token_env: variable UNSET is not set"));
}

TEST(ConfigAuth, ASenderMayBeNamedWithItsChain) {
    const std::map<std::string, std::string> env{{"HOT", "x"}, {"K", "a-good-key-0123456789"}};
    const Config c = parse(R"(
auth: {clients: [{id: b, key_env: K, senders: ["devnet:0x2C7536E3605D9C16a7a3D7b1898e529396a65c23"]}]}
)" + kManagedChain,
                           env);
    EXPECT_EQ(c.auth.clients[0].senders,
              std::vector<std::string>{std::string("devnet:") + kSender});
    EXPECT_THAT(error_of(R"(
auth: {clients: [{id: b, key_env: K, senders: ["mainnet:0x2C7536E3605D9C16a7a3D7b1898e529396a65c23"]}]}
)" + kManagedChain,
                         env),
                HasSubstr("auth.clients[0].senders[0]: mainnet:" + std::string(kSender) +
                          " is not a managed sender of that chain"));
    EXPECT_THAT(error_of("auth: {clients: [{id: b, key_env: K, senders: ['devnet:0x12']}]}\n" +
                             kManagedChain,
                         env),
                HasSubstr("auth.clients[0].senders[0]: 'devnet:0x12' is not an address or "
                          "<chain>:<address>"));
}

TEST(ConfigAuth, AJwksOverPlainHttpMustBeOnThisHost) {
    const std::string jwt = "auth: {jwt: {issuer: i, audience: a, jwks_url: '";
    EXPECT_THAT(error_of(jwt + "http://auth.internal/jwks'}}\n" + kManagedChain, {{"HOT", "x"}}),
                HasSubstr("auth.jwt.jwks_url: must be https://"));
    EXPECT_NO_THROW(parse(jwt + "http://127.0.0.1:9000/jwks'}}\n" + kManagedChain, {{"HOT", "x"}}));
    EXPECT_NO_THROW(parse(jwt + "http://localhost:9000/jwks'}}\n" + kManagedChain, {{"HOT", "x"}}));
    EXPECT_NO_THROW(parse(jwt + "https://auth.internal/jwks'}}\n" + kManagedChain, {{"HOT", "x"}}));
}

TEST(ConfigAuth, AnExposedListenerWithManagedSendersAndNoAuthDoesNotLoad) {
    const std::string msg =
        error_of("server: {listen: 0.0.0.0:8545}\n" + kManagedChain, {{"HOT", "x"}});
    EXPECT_THAT(msg, HasSubstr("test.yaml:1:18: server.listen: 0.0.0.0:8545 is reachable from "
                               "other hosts and chains have managed senders"));
    EXPECT_THAT(msg, HasSubstr("Configure auth.clients or auth.jwt, or listen on 127.0.0.1"));
    // Loopback (the sidecar): served without credentials.
    EXPECT_NO_THROW(parse("server: {listen: 127.0.0.1:8545}\n" + kManagedChain, {{"HOT", "x"}}));
    EXPECT_NO_THROW(parse("server: {listen: '[::1]:8545'}\n" + kManagedChain, {{"HOT", "x"}}));
    // With clients, or without managed senders, an exposed listener is fine.
    EXPECT_NO_THROW(parse(
        "server: {listen: 0.0.0.0:8545}\nauth: {clients: [{id: b, key_env: K}]}\n" + kManagedChain,
        {{"HOT", "x"}, {"K", "a-good-key-0123456789"}}));
    EXPECT_NO_THROW(parse(R"(
server: {listen: 0.0.0.0:8545}
chains: [{name: a, chain_id: 1, upstreams: [{id: n, url: "http://127.0.0.1:1"}]}]
)"));
}

TEST(ConfigAuth, AnExposedAdminListenerWithoutATokenDoesNotLoad) {
    EXPECT_THAT(error_of(R"(
server: {admin_listen: 0.0.0.0:9545}
chains: [{name: a, chain_id: 1, upstreams: [{id: n, url: "http://127.0.0.1:1"}]}]
)"),
                HasSubstr("server.admin_listen: 0.0.0.0:9545 is reachable from other hosts, but "
                          "auth.admin has no token"));
    EXPECT_NO_THROW(parse(R"(
server: {admin_listen: 0.0.0.0:9545}
auth: {admin: {token_env: T}}
chains: [{name: a, chain_id: 1, upstreams: [{id: n, url: "http://127.0.0.1:1"}]}]
)",
                          {{"T", "admin-token-0123456789"}}));
}

TEST(ConfigAuth, ListenerLimitsBrowsersAndTls) {
    const std::string dir = test::make_temp_dir("config-tls");
    std::ofstream(dir + "/cert.pem") << "x";
    std::ofstream(dir + "/key.pem") << "x";
    const Config c = parse(R"(
server:
  header_timeout_ms: 2500
  max_connections: 100
  max_connections_per_ip: 10
  cors: {allowed_origins: ["https://App.Example.com", "http://localhost:3000"]}
  tls: {cert_file: )" + dir +
                           "/cert.pem, key_file: " + dir + R"(/key.pem}
chains:
  - name: a
    chain_id: 1
    logs: {max_parts: 50}
    upstreams: [{id: n, url: "http://127.0.0.1:1"}]
)");
    EXPECT_EQ(c.server.header_timeout, Millis(2500));
    EXPECT_EQ(c.server.max_connections, 100u);
    EXPECT_EQ(c.server.max_connections_per_ip, 10u);
    EXPECT_EQ(c.server.cors_allowed_origins,
              (std::vector<std::string>{"https://app.example.com", "http://localhost:3000"}));
    EXPECT_TRUE(c.server.tls.enabled());
    EXPECT_EQ(c.chains[0].logs.max_parts, 50u);

    const Config d = parse(R"(
chains: [{name: a, chain_id: 1, upstreams: [{id: n, url: "http://127.0.0.1:1"}]}]
)");
    EXPECT_EQ(d.server.header_timeout, Millis(10'000));
    EXPECT_EQ(d.server.max_connections, 0u) << "0: derived from the descriptor limit at start";
    EXPECT_EQ(d.server.max_connections_per_ip, 0u);
    EXPECT_TRUE(d.server.cors_allowed_origins.empty());
    EXPECT_FALSE(d.server.tls.enabled());
    EXPECT_EQ(d.chains[0].logs.max_parts, 1000u);

    const std::string chain =
        "chains: [{name: a, chain_id: 1, upstreams: [{id: n, url: 'http://127.0.0.1:1'}]}]\n";
    EXPECT_THAT(error_of("server: {cors: {allowed_origins: ['https://a.com/path']}}\n" + chain),
                HasSubstr("server.cors.allowed_origins[0]: 'https://a.com/path' is not an origin"));
    EXPECT_THAT(
        error_of("server: {tls: {cert_file: /nonexistent.pem, key_file: /x.pem}}\n" + chain),
        HasSubstr("server.tls: cannot read '/nonexistent.pem'"));
    EXPECT_THAT(error_of("server: {tls: {cert_file: /x.pem}}\n" + chain),
                HasSubstr("server.tls: needs both cert_file and key_file"));
    // The bodies held at once: at least one body of the largest size.
    EXPECT_EQ(d.server.max_body_bytes_in_flight, 0u) << "0: the larger of 256 MiB and the body";
    EXPECT_EQ(parse("server: {max_body_bytes_in_flight: 100000000}\n" + chain)
                  .server.max_body_bytes_in_flight,
              100'000'000u);
    EXPECT_THAT(
        error_of("server: {max_body_bytes: 1000000, max_body_bytes_in_flight: 999999}\n" + chain),
        HasSubstr("server.max_body_bytes_in_flight: must be at least "
                  "server.max_body_bytes (1000000)"));
    // Any origin, managed senders and no credentials: every web page could spend.
    EXPECT_THAT(
        error_of("server: {cors: {allowed_origins: ['*']}}\n" + kManagedChain, {{"HOT", "x"}}),
        HasSubstr("server.cors.allowed_origins: '*' lets every web page call the gateway"));
}

TEST(ConfigAuth, AnIpv6LiteralOriginIsAnOrigin) {
    const std::string chain =
        "chains: [{name: a, chain_id: 1, upstreams: [{id: n, url: 'http://127.0.0.1:1'}]}]\n";
    const Config c = parse(
        "server: {cors: {allowed_origins: ['http://[::1]:3000', 'https://[2001:DB8::1]', "
        "'http://[0:0:0:0:0:0:0:1]:8080']}}\n" +
        chain);
    EXPECT_EQ(c.server.cors_allowed_origins,
              (std::vector<std::string>{"http://[::1]:3000", "https://[2001:db8::1]",
                                        "http://[0:0:0:0:0:0:0:1]:8080"}));
    // Brackets hold an IPv6 address, without a zone (browsers send none), and nothing else.
    for (const char* bad :
         {"http://[::1", "http://::1:3000", "http://[::1]x", "http://[fe80::1%eth0]",
          "http://[12345::1]", "http://[]:3000", "http://[::1]:3000/path", "http://[127.0.0.1]"})
        EXPECT_THAT(
            error_of(fmt::format("server: {{cors: {{allowed_origins: ['{}']}}}}\n", bad) + chain),
            HasSubstr("is not an origin"))
            << bad;
}

}  // namespace
}  // namespace gateway::config
