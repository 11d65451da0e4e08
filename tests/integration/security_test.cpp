// The attacks of issue 13, each reproduced against the real binary in front of real anvil with
// curl and cast, and refused: spending from a managed sender without the right key, a browser
// page posting text/plain or from another origin or through a rebound host name, admin actions
// without the token, a node's own signing, a 2^64-block eth_getLogs, idle connections by the
// thousand. Then the same client keys and tokens working as they should.

#include "integration/devnet.hpp"
#include "support/http_test_client.hpp"
#include "support/jwks_server.hpp"
#include "support/jwt_issuer.hpp"
#include "support/tls_server.hpp"

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <dirent.h>
#include <atomic>
#include <ctime>
#include <fstream>
#include <string_view>
#include <thread>

namespace gateway::test {
namespace {

namespace json = boost::json;
using ::testing::HasSubstr;
using ::testing::Not;

// A key anvil does not hold: the gateway signs with it.
const std::string kHotKey = "0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318";
const std::string kManaged = "0x2c7536e3605d9c16a7a3d7b1898e529396a65c23";
const std::string kDead = "0x000000000000000000000000000000000000dEaD";
const std::string kBackendKey = "backend-0123456789abcdef0123";
const std::string kReaderKey = "reader-0123456789abcdef01234";
const std::string kAdminToken = "admin-0123456789abcdef012345";

// curl's answer: the status code on the last line, the body before it.
struct Curl {
    int status = 0;
    std::string body;
};

Curl curl(std::vector<std::string> args) {
    std::vector<std::string> argv{"/usr/bin/curl", "-s", "-m", "20", "-w", "\n%{http_code}"};
    argv.insert(argv.end(), args.begin(), args.end());
    CommandResult r = run_command(argv, std::chrono::seconds(30));
    Curl out;
    const auto nl = r.out.rfind('\n');
    if (nl == std::string::npos) return out;
    out.body = r.out.substr(0, nl);
    out.status = std::atoi(r.out.c_str() + nl + 1);
    return out;
}

std::string send_body(const std::string& from) {
    return fmt::format(
        R"({{"jsonrpc":"2.0","id":1,"method":"eth_sendTransaction","params":[{{"from":"{}","to":"{}","value":"0xde0b6b3a7640000"}}]}})",
        from, kDead);
}

// A devnet: anvil, the managed sender funded on it.
struct Devnet {
    std::string dir = make_temp_dir("gateway-security");
    Anvil anvil{dir};
    Devnet() {
        write_file(dir + "/hot.key", kHotKey + "\n");
        write_file(dir + "/backend.keys", kBackendKey + "\n");
        write_file(dir + "/reader.keys", kReaderKey + "\n");
        write_file(dir + "/admin.token", kAdminToken + "\n");
        http_post(anvil.port(), "/",
                  rpc_body("anvil_setBalance", "[\"" + kManaged + "\",\"0x56bc75e2d63100000\"]"));
    }
    std::string chain(const std::string& extra = "") const {
        return fmt::format(
            "  - name: devnet\n"
            "    chain_id: 31337\n"
            "    health: {{interval_ms: 200}}\n"
            "    tx: {{poll_interval_ms: 100}}\n"
            "    accounts: [{{address: \"{}\", signer: hot}}]\n"
            "{}"
            "    upstreams:\n"
            "      - {{id: node-a, url: \"{}\"}}\n",
            kManaged, extra, anvil.url());
    }
    std::string signers() const {
        return fmt::format("signers:\n  - {{id: hot, type: local, key_file: \"{}/hot.key\"}}\n",
                           dir);
    }
    std::string auth() const {
        return fmt::format(
            "auth:\n"
            "  clients:\n"
            "    - {{id: backend, key_file: \"{0}/backend.keys\", senders: [\"{1}\"]}}\n"
            "    - {{id: reader, key_file: \"{0}/reader.keys\"}}\n"
            "  admin: {{token_file: \"{0}/admin.token\"}}\n",
            dir, kManaged);
    }
    // The sender's nonce and balance, straight from the node.
    std::string nonce() const { return cast({"nonce", kManaged, "--rpc-url", anvil.url()}); }
    std::string balance() const { return cast({"balance", kManaged, "--rpc-url", anvil.url()}); }
};

TEST(Security, NobodySpendsFromAManagedSenderWithoutAKeyThatListsIt) {
    Devnet net;
    // At debug level: the lines that quote a request's path are written, so that "no key in the
    // log" below is a check that could fail.
    GatewayProcess gw(net.dir, net.chain(), "", "", net.signers() + net.auth(), "debug");
    ASSERT_TRUE(gw.wait_ready()) << gw.process().output();
    const std::string nonce = net.nonce(), balance = net.balance();
    const auto cast_send = [&](const std::string& url) {
        return run_command({tool_path("cast"), "send", "--async", "--unlocked", "--from", kManaged,
                            kDead, "--value", "1ether", "--rpc-url", url},
                           std::chrono::seconds(60));
    };
    // No key: 401 before anything else.
    CommandResult none = cast_send(gw.url() + "/devnet");
    EXPECT_NE(none.exit_code, 0);
    EXPECT_THAT(none.err + none.out, HasSubstr("401"));
    Curl raw = curl({"-H", "Content-Type: application/json", "--data", send_body(kManaged),
                     gw.url() + "/devnet"});
    EXPECT_EQ(raw.status, 401);
    EXPECT_EQ(json::parse(raw.body).at("error").at("code"), 4100);
    // A key whose client does not list the sender: refused by the gateway, nothing signed.
    CommandResult reader = cast_send(gw.url() + "/devnet/" + kReaderKey);
    EXPECT_NE(reader.exit_code, 0);
    EXPECT_THAT(reader.err + reader.out, HasSubstr("may not send from"));
    Curl reader_raw =
        curl({"-H", "Content-Type: application/json", "-H", "Authorization: Bearer " + kReaderKey,
              "--data", send_body(kManaged), gw.url()});
    EXPECT_EQ(json::parse(reader_raw.body).at("error").at("code"), 4100);
    EXPECT_EQ(net.nonce(), nonce);
    EXPECT_EQ(net.balance(), balance);
    // eth_accounts offers nothing to that client.
    Curl accounts =
        curl({"-H", "Content-Type: application/json", "-H", "Authorization: Bearer " + kReaderKey,
              "--data", R"({"jsonrpc":"2.0","id":1,"method":"eth_accounts"})", gw.url()});
    EXPECT_EQ(json::serialize(json::parse(accounts.body).at("result")), "[]");

    // The client that lists it sends, with its key in the URL as wallets do.
    CommandResult backend = cast_send(gw.url() + "/devnet/" + kBackendKey);
    ASSERT_EQ(backend.exit_code, 0) << backend.err << gw.process().output();
    EXPECT_TRUE(wait_until([&] { return net.nonce() == "1"; })) << gw.process().output();
    // A good key in the path, with a body of another type: refused by the browser checks, a
    // refusal the listener logs (at debug) with the request's path.
    EXPECT_EQ(curl({"-H", "Content-Type: text/plain", "--data", send_body(kManaged),
                    gw.url() + "/devnet/" + kBackendKey})
                  .status,
              415);
    EXPECT_TRUE(wait_until([&] {
        return gw.process().output().find("answered POST /devnet/\u2026") != std::string::npos;
    })) << gw.process().output();
    // No key is ever written to the log.
    EXPECT_THAT(gw.process().output(), Not(HasSubstr(kReaderKey)));
    EXPECT_THAT(gw.process().output(), Not(HasSubstr(kBackendKey)));
}

TEST(Security, ABrowserPageCannotPostTextPlainFromAnotherOriginOrThroughARebindingHost) {
    // The sidecar case: no auth, a loopback listener, a managed sender. A web page open in a
    // browser on this machine is the attacker.
    Devnet net;
    GatewayProcess gw(net.dir, net.chain(),
                      "  cors: {allowed_origins: [\"https://dapp.example\"]}\n", "", net.signers());
    ASSERT_TRUE(gw.wait_ready()) << gw.process().output();
    // Allowed (a loopback listener), but said at start.
    EXPECT_THAT(gw.process().output(),
                HasSubstr("no auth configured: anyone who can reach 127.0.0.1:"));
    EXPECT_THAT(gw.process().output(),
                HasSubstr("may send from the managed senders (a loopback address: the processes "
                          "of this host or pod only)"));
    const std::string nonce = net.nonce();
    const std::string body = send_body(kManaged);
    // A simple request needs no preflight: text/plain, or curl's default form type.
    EXPECT_EQ(curl({"-H", "Content-Type: text/plain", "--data", body, gw.url()}).status, 415);
    EXPECT_EQ(curl({"--data", body, gw.url()}).status, 415);
    // application/json from another origin.
    Curl cross = curl({"-H", "Content-Type: application/json", "-H", "Origin: https://evil.example",
                       "--data", body, gw.url()});
    EXPECT_EQ(cross.status, 403);
    EXPECT_THAT(cross.body, HasSubstr("server.cors.allowed_origins"));
    // DNS rebinding: evil.example resolved to 127.0.0.1, so the page is "same origin".
    EXPECT_EQ(curl({"-H", "Content-Type: application/json", "-H", "Host: evil.example:8545", "-H",
                    "Origin: http://evil.example:8545", "--data", body, gw.url()})
                  .status,
              403);
    EXPECT_EQ(curl({"-H", "Content-Type: application/json", "-H", "Host: evil.example", "--data",
                    body, gw.url()})
                  .status,
              403);
    // The admin listener refuses the same.
    const std::string admin = fmt::format("http://127.0.0.1:{}", gw.admin_port());
    EXPECT_EQ(curl({"-X", "POST", "-H", "Origin: https://evil.example",
                    admin + "/admin/upstreams/node-a/cordon"})
                  .status,
              403);
    EXPECT_EQ(curl({"-H", "Host: evil.example", admin + "/admin/upstreams"}).status, 403);
    EXPECT_EQ(curl({"-X", "POST", "-H", "Content-Type: text/plain", "--data", "{}",
                    admin + "/admin/upstreams/node-a/cordon"})
                  .status,
              415);
    EXPECT_EQ(net.nonce(), nonce) << "nothing was sent";

    // The dapp the operator allowed: a preflight, then its call, with CORS headers.
    CommandResult pre =
        run_command({"/usr/bin/curl", "-s", "-i", "-X", "OPTIONS", "-H",
                     "Origin: https://dapp.example", "-H", "Access-Control-Request-Method: POST",
                     "-H", "Access-Control-Request-Headers: content-type", gw.url()});
    EXPECT_THAT(pre.out, HasSubstr("204"));
    EXPECT_THAT(pre.out, HasSubstr("Access-Control-Allow-Origin: https://dapp.example"));
    CommandResult call =
        run_command({"/usr/bin/curl", "-s", "-i", "-H", "Content-Type: application/json", "-H",
                     "Origin: https://dapp.example", "--data",
                     R"({"jsonrpc":"2.0","id":1,"method":"eth_chainId"})", gw.url()});
    EXPECT_THAT(call.out, HasSubstr("Access-Control-Allow-Origin: https://dapp.example"));
    EXPECT_THAT(call.out, HasSubstr(R"("result":"0x7a69")"));
}

TEST(Security, AdminActionsNeedTheToken) {
    Devnet net;
    GatewayProcess gw(net.dir, net.chain(), "", "", net.signers() + net.auth());
    ASSERT_TRUE(gw.wait_ready()) << gw.process().output();
    const std::string admin = fmt::format("http://127.0.0.1:{}", gw.admin_port());
    EXPECT_EQ(curl({"-X", "POST", admin + "/admin/upstreams/node-a/cordon"}).status, 401);
    EXPECT_EQ(curl({"-X", "POST", "-H", "Authorization: Bearer " + kBackendKey,
                    admin + "/admin/upstreams/node-a/cordon"})
                  .status,
              401);
    EXPECT_EQ(curl({admin + "/admin/transactions"}).status, 401);
    EXPECT_EQ(curl({"-X", "POST", admin + "/admin/senders/" + kManaged + "/resync"}).status, 401);
    // Still up: nothing was cordoned.
    Curl view = curl({"-H", "Authorization: Bearer " + kAdminToken, admin + "/admin/upstreams"});
    ASSERT_EQ(view.status, 200);
    EXPECT_EQ(json::parse(view.body).at("upstreams").at(0).at("cordoned"), false);
    // Probes and scrapers need nothing.
    EXPECT_EQ(curl({admin + "/healthz"}).status, 200);
    EXPECT_EQ(curl({admin + "/readyz"}).status, 200);
    EXPECT_EQ(curl({admin + "/metrics"}).status, 200);
    EXPECT_EQ(curl({"-X", "POST", "-H", "Authorization: Bearer " + kAdminToken,
                    admin + "/admin/upstreams/node-a/cordon"})
                  .status,
              200);
}

TEST(Security, ANodesUnlockedAccountsCannotBeMadeToSign) {
    Devnet net;
    GatewayProcess gw(net.dir, net.chain("    methods: {deny: []}\n"), "", "", net.signers());
    ASSERT_TRUE(gw.wait_ready()) << gw.process().output();
    const std::string anvil0 = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266";
    // anvil signs for anyone who asks it directly...
    EXPECT_EQ(cast({"rpc", "eth_sign", anvil0, "0xdeadbeef", "--rpc-url", net.anvil.url()}).size(),
              134u);
    // ...and never through the gateway, even with the deny list emptied.
    for (const char* method : {"eth_sign", "eth_signTransaction", "eth_signTypedData_v4"}) {
        CommandResult r = run_command(
            {tool_path("cast"), "rpc", method, anvil0, "0xdeadbeef", "--rpc-url", gw.url()});
        EXPECT_NE(r.exit_code, 0) << method;
        EXPECT_THAT(r.err + r.out, HasSubstr("is not served")) << method;
    }
}

long status_kb(pid_t pid, const std::string& field) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(in, line))
        if (line.rfind(field + ":", 0) == 0) return std::atol(line.c_str() + field.size() + 1);
    return -1;
}

std::size_t open_fds(pid_t pid) {
    std::size_t n = 0;
    if (DIR* d = opendir(("/proc/" + std::to_string(pid) + "/fd").c_str())) {
        while (readdir(d)) ++n;
        closedir(d);
    }
    return n;
}

TEST(Security, AHugeLogRangeIsRefusedAtOnceAndALongOneDoesNotHoldOthersUp) {
    Devnet net;
    cast({"rpc", "anvil_mine", "600", "--rpc-url", net.anvil.url()});
    GatewayProcess gw(net.dir,
                      "  - name: devnet\n"
                      "    chain_id: 31337\n"
                      "    health: {interval_ms: 200}\n"
                      "    upstreams:\n"
                      "      - {id: node-a, url: \"" +
                          net.anvil.url() + "\", max_logs_range: 1}\n");
    ASSERT_TRUE(gw.wait_ready()) << gw.process().output();
    const auto logs = [&](const std::string& from, const std::string& to) {
        return curl(
            {"-H", "Content-Type: application/json", "--data",
             fmt::format(
                 R"({{"jsonrpc":"2.0","id":1,"method":"eth_getLogs","params":[{{"fromBlock":"{}","toBlock":"{}"}}]}})",
                 from, to),
             gw.url()});
    };
    Curl huge = logs("0x0", "0xfffffffffffffffe");
    EXPECT_EQ(json::parse(huge.body).at("error").at("code"), -32005) << huge.body;
    EXPECT_THAT(huge.body, HasSubstr("ask for at most 1000 blocks at once"));

    // 600 parts of one block, four at a time: other clients are answered meanwhile.
    std::atomic<bool> long_done{false};
    Curl long_answer;
    std::thread slow([&] {
        long_answer = logs("0x1", "0x258");
        long_done = true;
    });
    std::size_t answered_meanwhile = 0;
    while (!long_done) {
        Curl n = curl({"-H", "Content-Type: application/json", "--data",
                       R"({"jsonrpc":"2.0","id":1,"method":"eth_blockNumber"})", gw.url()});
        if (n.status == 200 && !long_done) ++answered_meanwhile;
    }
    slow.join();
    EXPECT_EQ(json::serialize(json::parse(long_answer.body).at("result")), "[]")
        << long_answer.body;
    EXPECT_GE(answered_meanwhile, 1u);
    EXPECT_THAT(curl({fmt::format("http://127.0.0.1:{}/metrics", gw.admin_port())}).body,
                HasSubstr(R"(gateway_logs_split_parts_total{chain="devnet"} 600)"));
#if !defined(GATEWAY_SANITIZED) && !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
    // Sanitizers hold memory on purpose (ASan and TSan both, and whatever GATEWAY_SANITIZE
    // names): measured in the plain build only.
    const long peak = status_kb(gw.process().pid(), "VmHWM");
    EXPECT_GT(peak, 0);
    EXPECT_LT(peak, 100 * 1024) << "peak RSS in kB";
#endif
}

TEST(Security, WhatAFloodOfLargeBodiesTookIsGivenBackWhenItEnds) {
    Devnet net;
    GatewayProcess gw(net.dir,
                      "  - name: devnet\n"
                      "    chain_id: 31337\n"
                      "    upstreams:\n"
                      "      - {id: node-a, url: \"" +
                          net.anvil.url() + "\"}\n");
    ASSERT_TRUE(gw.wait_ready()) << gw.process().output();
    // The build says which allocator the binary runs on.
    EXPECT_THAT(
        curl({fmt::format("http://127.0.0.1:{}/metrics", gw.admin_port())}).body,
        HasSubstr(fmt::format(
            "gateway_build_info{{allocator=\"{}\"",
            std::string_view(GATEWAY_BINARY_MALLOC) == "jemalloc" ? "jemalloc" : "system")));
#if !defined(GATEWAY_SANITIZED) && !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
    const pid_t pid = gw.process().pid();
    const long before = status_kb(pid, "VmRSS");
    // 24 clients at once, 3 bodies of 4 MiB each (not JSON: each is read whole, then refused).
    const std::string body(4u << 20, 'x');
    std::atomic<int> answered{0};
    std::vector<std::thread> clients;
    for (int c = 0; c < 24; ++c)
        clients.emplace_back([&] {
            HttpConnection conn(gw.port());
            for (int r = 0; r < 3; ++r)
                if (conn.post("/", body).status == 200) ++answered;
        });
    for (auto& c : clients) c.join();
    EXPECT_EQ(answered.load(), 72);
    const long peak = status_kb(pid, "VmHWM");
    EXPECT_GT(peak - before, 48 * 1024) << "the flood took less than 48 MB: it tests nothing";
    // Handed back within seconds, not after jemalloc's default decay time (10 s, and only when
    // an allocation comes) or never (glibc, until asked).
    long after = 0;
    for (int i = 0; i < 40; ++i) {
        after = status_kb(pid, "VmRSS");
        if (after < before + 24 * 1024) break;
        std::this_thread::sleep_for(100ms);
    }
    EXPECT_LT(after, before + 24 * 1024)
        << "RSS in kB: " << before << " before, " << peak << " at the peak, " << after << " after";
#endif
}

TEST(Security, IdleConnectionsByTheHundredAreBoundedAndANewClientIsServed) {
    Devnet net;
    GatewayProcess gw(net.dir, net.chain(), "  max_connections: 20\n  header_timeout_ms: 60000\n",
                      "", net.signers());
    ASSERT_TRUE(gw.wait_ready()) << gw.process().output();
    const std::size_t before = open_fds(gw.process().pid());
    std::vector<std::unique_ptr<HttpConnection>> idle;
    for (int i = 0; i < 60; ++i) idle.push_back(std::make_unique<HttpConnection>(gw.port()));
    // 60 sockets tried, 20 held: the few more are the gateway's own (upstream connections made
    // since, an evicted connection's descriptor going a moment after its place is taken).
    EXPECT_TRUE(wait_until([&] { return open_fds(gw.process().pid()) <= before + 20 + 8; }, 5s))
        << open_fds(gw.process().pid()) << " descriptors, " << before << " before";
    Curl served = curl({"-H", "Content-Type: application/json", "--data",
                        R"({"jsonrpc":"2.0","id":1,"method":"eth_chainId"})", gw.url()});
    EXPECT_EQ(served.status, 200);
    EXPECT_THAT(curl({fmt::format("http://127.0.0.1:{}/metrics", gw.admin_port())}).body,
                HasSubstr(R"(gateway_connections_closed_total{listener="rpc",reason="evicted"})"));
}

TEST(Security, TheRpcListenerServesTlsWhenConfigured) {
    Devnet net;
    const TestPki pki = make_test_pki({"localhost"}, {"127.0.0.1"});
    write_file(net.dir + "/ca.pem", pki.ca_cert_pem);
    write_file(net.dir + "/cert.pem", pki.server_cert_pem);
    write_file(net.dir + "/key.pem", pki.server_key_pem);
    GatewayProcess gw(
        net.dir, net.chain(),
        fmt::format("  tls: {{cert_file: \"{0}/cert.pem\", key_file: \"{0}/key.pem\"}}\n", net.dir),
        "", net.signers());
    ASSERT_TRUE(gw.wait_ready()) << gw.process().output();
    const std::string https = fmt::format("https://127.0.0.1:{}/devnet", gw.port());
    Curl ok = curl({"--cacert", net.dir + "/ca.pem", "-H", "Content-Type: application/json",
                    "--data", R"({"jsonrpc":"2.0","id":1,"method":"eth_chainId"})", https});
    EXPECT_EQ(ok.status, 200);
    EXPECT_THAT(ok.body, HasSubstr("0x7a69"));
    // Plain HTTP to the TLS port gets no JSON-RPC answer.
    Curl plain = curl({"-H", "Content-Type: application/json", "--data",
                       R"({"jsonrpc":"2.0","id":1,"method":"eth_chainId"})", gw.url()});
    EXPECT_NE(plain.status, 200);
}

// Tokens of an authentication service (its JWKS served by JwksServer), through the real binary.
struct TokenService {
    JwtKey rsa{JwtKey::Type::rsa, "rsa-1"};
    JwtKey ec{JwtKey::Type::ec, "ec-1"};
    JwksServer jwks{test::jwks({&rsa})};

    std::string auth_yaml() const {
        return fmt::format(
            "auth:\n"
            "  jwt:\n"
            "    jwks_url: \"{}\"\n"
            "    issuer: https://auth.test/\n"
            "    audience: chain-gateway\n"
            "    refresh_ms: 300\n",
            jwks.url());
    }
    static std::string token(const JwtKey& key, const std::string& sub,
                             const std::vector<std::string>& senders,
                             std::int64_t expires_in = 600) {
        json::array list;
        for (const auto& s : senders) list.emplace_back(s);
        json::object claims{{"iss", "https://auth.test/"},
                            {"aud", "chain-gateway"},
                            {"sub", sub},
                            {"exp", static_cast<std::int64_t>(std::time(nullptr)) + expires_in},
                            {"senders", std::move(list)}};
        return key.sign(json::serialize(claims));
    }
};

Curl with_token(const GatewayProcess& gw, const std::string& token, const std::string& body) {
    return curl({"-H", "Content-Type: application/json", "-H", "Authorization: Bearer " + token,
                 "--data", body, gw.url()});
}

const std::string kChainId = R"({"jsonrpc":"2.0","id":1,"method":"eth_chainId"})";

TEST(Security, A2_TokensWorkFromCachedKeysWhileTheAuthServiceIsDownAndNewKeysAfterItReturns) {
    Devnet net;
    TokenService auth;
    GatewayProcess gw(net.dir, net.chain(), "", "", net.signers() + auth.auth_yaml());
    ASSERT_TRUE(gw.wait_ready()) << gw.process().output();

    // A token's senders are its own: alice lists the managed sender, bob does not.
    const std::string alice = TokenService::token(auth.rsa, "alice", {kManaged});
    const std::string bob = TokenService::token(auth.rsa, "bob", {});
    ASSERT_TRUE(wait_until([&] { return with_token(gw, alice, kChainId).status == 200; }, 10s))
        << gw.process().output();
    const std::string nonce = net.nonce();
    Curl stolen = with_token(gw, bob, send_body(kManaged));
    EXPECT_EQ(json::parse(stolen.body).at("error").at("code"), 4100) << stolen.body;
    EXPECT_EQ(net.nonce(), nonce);
    Curl sent = with_token(gw, alice, send_body(kManaged));
    EXPECT_TRUE(json::parse(sent.body).as_object().contains("result")) << sent.body;
    EXPECT_TRUE(wait_until([&] { return net.nonce() != nonce; })) << gw.process().output();
    // Refused: expired, unsigned, another algorithm, a broken signature.
    EXPECT_EQ(with_token(gw, TokenService::token(auth.rsa, "alice", {}, -120), kChainId).status,
              401);
    EXPECT_EQ(with_token(gw, unsigned_token(R"({"sub":"alice"})", "rsa-1"), kChainId).status, 401);
    EXPECT_EQ(with_token(gw, hs256_token(R"({"sub":"alice"})", "secret", "rsa-1"), kChainId).status,
              401);
    EXPECT_EQ(with_token(gw, with_broken_signature(alice), kChainId).status, 401);

    // The authentication service goes down: tokens signed with the key already fetched go on,
    // new ones included; a key it never fetched is refused.
    auth.jwks.down();
    const std::string metrics_url = fmt::format("http://127.0.0.1:{}/metrics", gw.admin_port());
    ASSERT_TRUE(wait_until(
        [&] {
            return curl({metrics_url})
                       .body.find(R"(gateway_auth_jwks_fetches_total{outcome="failed"})") !=
                   std::string::npos;
        },
        10s))
        << "the gateway tried the service while it was down";
    EXPECT_EQ(with_token(gw, TokenService::token(auth.rsa, "carol", {}), kChainId).status, 200);
    EXPECT_EQ(with_token(gw, alice, kChainId).status, 200);
    EXPECT_EQ(with_token(gw, TokenService::token(auth.ec, "dave", {}), kChainId).status, 401);

    // It comes back having rotated its keys: the new key's tokens are taken, the old key's no
    // longer, even the ones verified before.
    auth.jwks.set_body(test::jwks({&auth.ec}));
    auth.jwks.up();
    const std::string dave = TokenService::token(auth.ec, "dave", {});
    EXPECT_TRUE(wait_until([&] { return with_token(gw, dave, kChainId).status == 200; }, 10s))
        << gw.process().output();
    EXPECT_EQ(with_token(gw, alice, kChainId).status, 401);
    const std::string metrics = curl({metrics_url}).body;
    EXPECT_THAT(metrics, HasSubstr("gateway_auth_jwks_age_seconds"));
    EXPECT_THAT(metrics, HasSubstr(R"(gateway_client_requests_total{client="jwt")"));
    EXPECT_THAT(metrics, Not(HasSubstr("alice"))) << "a sub is never a label";
    EXPECT_THAT(gw.process().output(), Not(HasSubstr(alice.substr(alice.rfind('.') + 1))));
}

TEST(Security, A2_AGatewayStartedWhileTheAuthServiceIsDownRefusesTokensUntilItCanFetchTheKeys) {
    Devnet net;
    TokenService auth;
    auth.jwks.down();
    GatewayProcess gw(net.dir, net.chain(), "", "", net.signers() + auth.auth_yaml());
    ASSERT_TRUE(gw.wait_ready()) << gw.process().output();
    const std::string alice = TokenService::token(auth.rsa, "alice", {});
    EXPECT_EQ(with_token(gw, alice, kChainId).status, 401);
    auth.jwks.up();
    EXPECT_TRUE(wait_until([&] { return with_token(gw, alice, kChainId).status == 200; }, 10s))
        << gw.process().output();
}

}  // namespace
}  // namespace gateway::test
