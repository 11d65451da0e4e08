// The node pool with the real binary in front of real anvil nodes, through fault-injecting
// forwarders: failures under load, black holes, recovery, a node on another chain, a lagging node,
// a node that answers garbage, and a revert that must not be retried.

#include "integration/devnet.hpp"
#include "support/fake_upstream.hpp"
#include "support/http_test_client.hpp"
#include "support/raw_server.hpp"
#include "support/tcp_forwarder.hpp"

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <atomic>
#include <mutex>
#include <thread>

namespace gateway::test {
namespace {

using ::testing::HasSubstr;
namespace json = boost::json;
using Clock = std::chrono::steady_clock;

const std::string kRich = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266";

struct Node {
    std::string id;
    std::string url;
    std::string extra;  // more YAML keys for this upstream
};

std::string chain_yaml(const std::vector<Node>& nodes, const std::string& chain_extra = "") {
    std::string y =
        "  - name: devnet\n"
        "    chain_id: 31337\n"
        "    health: {interval_ms: 200, timeout_ms: 1000, max_lag_blocks: 5}\n"
        // The head watcher's block reads would count among the calls and hedges asserted here,
        // and reads answered by the cache or by an identical call in flight reach no node.
        "    reorgs: {track: false}\n"
        "    cache: {enabled: false, coalesce: false}\n" +
        chain_extra + "    upstreams:\n";
    for (const auto& n : nodes)
        y += fmt::format("      - id: {}\n        url: {}\n        timeout_ms: 1000\n{}", n.id,
                         n.url, n.extra);
    return y;
}

json::value admin_upstream(GatewayProcess& gw, const std::string& id) {
    const json::value all = json::parse(http_get(gw.admin_port(), "/admin/upstreams").body);
    for (const auto& u : all.at("upstreams").as_array())
        if (u.at("id") == id.c_str()) return u;
    return nullptr;
}

bool wait_state(GatewayProcess& gw, const std::string& id, const std::string& state,
                std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    const auto deadline = Clock::now() + timeout;
    while (Clock::now() < deadline) {
        if (admin_upstream(gw, id).at("state") == state.c_str()) return true;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return false;
}

std::string metrics(GatewayProcess& gw) {
    return http_get(gw.admin_port(), "/metrics").body;
}

// The value of one series (name with labels, exactly as exposed); -1 when it is absent.
double metric_value(const std::string& text, const std::string& series) {
    const std::string key = "\n" + series + " ";
    const auto pos = text.find(key);
    if (pos == std::string::npos) return -1;
    return std::stod(text.substr(pos + key.size()));
}

class PoolTest : public ::testing::Test {
protected:
    void SetUp() override {
        dir = make_temp_dir("gateway-pool");
        anvil = std::make_unique<Anvil>(dir);
    }
    void TearDown() override {
        if (HasFailure() && gw)
            std::cerr << "--- gateway log ---\n" << gw->process().output() << "\n";
    }
    void start(const std::string& chains, const std::string& server = "") {
        gw = std::make_unique<GatewayProcess>(dir, chains, server);
        ASSERT_TRUE(gw->wait_ready()) << gw->process().output();
    }

    std::string dir;
    std::unique_ptr<Anvil> anvil;
    std::unique_ptr<GatewayProcess> gw;
};

// Reads from `threads` clients, `per_thread` each; calls `midway` once half are done. Returns
// the failures, and counts answers by upstream.
std::vector<std::string> steady_reads(GatewayProcess& gw, int threads, int per_thread,
                                      const std::function<void()>& midway,
                                      std::map<std::string, int>* by_upstream = nullptr) {
    std::atomic<int> done{0};
    std::mutex mu;
    std::vector<std::string> failures;
    const std::vector<std::string> calls = {
        rpc_body("eth_getBalance", "[\"" + kRich + "\",\"latest\"]"),
        rpc_body("eth_blockNumber"),
        rpc_body("eth_getBlockByNumber", "[\"latest\",false]"),
        rpc_body("eth_getTransactionCount", "[\"" + kRich + "\",\"latest\"]"),
        rpc_body("eth_call", "[{\"to\":\"" + kRich + "\",\"data\":\"0x\"},\"latest\"]"),
    };
    auto client = [&](int t) {
        std::unique_ptr<HttpConnection> c;
        for (int i = 0; i < per_thread; ++i) {
            try {
                if (!c) c = std::make_unique<HttpConnection>(gw.port());
                HttpReply r = c->post("/", calls[static_cast<std::size_t>(t + i) % calls.size()]);
                const json::value v = json::parse(r.body);
                if (r.status != 200 || !v.as_object().contains("result"))
                    throw std::runtime_error(r.body);
                if (by_upstream) {
                    std::lock_guard lock(mu);
                    ++(*by_upstream)[r.header("x-gateway-upstream")];
                }
            } catch (const std::exception& e) {
                c.reset();
                std::lock_guard lock(mu);
                failures.push_back(e.what());
            }
            ++done;
        }
    };
    std::vector<std::thread> clients;
    for (int t = 0; t < threads; ++t) clients.emplace_back(client, t);
    while (done < threads * per_thread / 2)
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    midway();
    for (auto& t : clients) t.join();
    return failures;
}

TEST_F(PoolTest, AThousandReadsSeeNoErrorWhileAnUpstreamFailsInEveryWay) {
    struct Fault {
        const char* name;
        std::function<void(TcpForwarder&)> apply;
    };
    const std::vector<Fault> faults = {
        {"killed", [](TcpForwarder& f) { f.stop(); }},
        {"reset",
         [](TcpForwarder& f) {
             f.set_mode(TcpForwarder::Mode::reset);
             f.break_connections();
         }},
        {"dropped",
         [](TcpForwarder& f) {
             f.set_mode(TcpForwarder::Mode::drop);
             f.break_connections();
         }},
        {"black-holed",
         [](TcpForwarder& f) {
             f.set_mode(TcpForwarder::Mode::blackhole);
             f.break_connections();
         }},
    };
    for (const auto& fault : faults) {
        SCOPED_TRACE(fault.name);
        TcpForwarder a(anvil->port()), b(anvil->port());
        start(chain_yaml({{"node-a", a.url()}, {"node-b", b.url()}}));
        std::map<std::string, int> by;
        const auto failures = steady_reads(
            *gw, 4, 250, [&] { fault.apply(a); }, &by);
        EXPECT_TRUE(failures.empty()) << failures.size() << " failed, first: " << failures.front();
        EXPECT_GT(by["node-b"], 0);
        // The pool says what happened.
        EXPECT_TRUE(wait_state(*gw, "node-a", "down"))
            << json::serialize(admin_upstream(*gw, "node-a"));
        EXPECT_EQ(admin_upstream(*gw, "node-b").at("state"), "up");
        const std::string m = metrics(*gw);
        EXPECT_EQ(
            metric_value(
                m, R"(gateway_upstream_state{chain="devnet",state="down",upstream="node-a"})"),
            1);
        EXPECT_EQ(metric_value(m, R"(gateway_upstream_up{chain="devnet",upstream="node-a"})"), 0);
        EXPECT_THAT(m, HasSubstr(R"(gateway_upstream_score{chain="devnet",upstream="node-b"})"));
        EXPECT_THAT(
            m, HasSubstr(
                   R"(gateway_upstream_breaker{chain="devnet",state="open",upstream="node-a"})"));
        EXPECT_EQ(
            metric_value(m, R"(gateway_upstream_lag_blocks{chain="devnet",upstream="node-b"})"), 0);
        gw->process().signal(SIGTERM);
        gw->process().wait(std::chrono::seconds(10));
        gw.reset();
    }
}

TEST_F(PoolTest, ABlackHoledUpstreamIsSkippedWithinItsTimeoutAndDetected) {
    TcpForwarder a(anvil->port()), b(anvil->port());
    start(chain_yaml({{"node-a", a.url()}, {"node-b", b.url(), "        tier: fallback\n"}}));
    a.set_mode(TcpForwarder::Mode::blackhole);
    a.break_connections();
    // The first reads wait node-a's timeout (1 s) at most, then node-b answers.
    for (int i = 0; i < 3; ++i) {
        const auto t0 = Clock::now();
        HttpReply r = http_post(gw->port(), "/", rpc_body("eth_blockNumber"));
        EXPECT_EQ(r.status, 200u);
        EXPECT_LT(Clock::now() - t0, std::chrono::milliseconds(1500));
    }
    ASSERT_TRUE(wait_state(*gw, "node-a", "down"));
    EXPECT_THAT(std::string(admin_upstream(*gw, "node-a").at("reason").as_string()),
                HasSubstr("timed out"));
    // Detected: reads no longer wait for it.
    for (int i = 0; i < 20; ++i) {
        const auto t0 = Clock::now();
        HttpReply r = http_post(gw->port(), "/", rpc_body("eth_blockNumber"));
        EXPECT_EQ(r.header("x-gateway-upstream"), "node-b");
        EXPECT_LT(Clock::now() - t0, std::chrono::milliseconds(300));
    }
}

TEST_F(PoolTest, ASlowNodeIsHedgedAndTheFastAnswerWins) {
    TcpForwarder a(anvil->port()), b(anvil->port());
    // node-a stays first (node-b is the fallback) but answers 600 ms late; hedging asks node-b
    // after 100 ms.
    start(chain_yaml({{"node-a", a.url()}, {"node-b", b.url(), "        tier: fallback\n"}},
                     "    failover: {hedge_after_ms: 100}\n"));
    // Its first probe answered before it turns slow: on a loaded machine that probe could come
    // after the delay, and the node would still be "unknown" at the end.
    ASSERT_TRUE(wait_state(*gw, "node-a", "up"));
    a.set_delay(std::chrono::milliseconds(600));
    a.break_connections();
    for (int i = 0; i < 10; ++i) {
        const auto t0 = Clock::now();
        HttpReply r = http_post(gw->port(), "/",
                                rpc_body("eth_getBalance", "[\"" + kRich + "\",\"latest\"]", i));
        EXPECT_EQ(r.status, 200u);
        EXPECT_EQ(json::parse(r.body).at("result"), "0x21e19e0c9bab2400000");
        EXPECT_EQ(r.header("x-gateway-upstream"), "node-b");
        EXPECT_LT(Clock::now() - t0, std::chrono::milliseconds(450));
    }
    EXPECT_EQ(metric_value(metrics(*gw), R"(gateway_hedged_requests_total{chain="devnet"})"), 10);
    // The slow node is slow, not broken: it stays in the pool.
    EXPECT_EQ(admin_upstream(*gw, "node-a").at("state"), "up");
}

TEST_F(PoolTest, ANodeRecoversIntoUseByItself) {
    TcpForwarder a(anvil->port()), b(anvil->port());
    start(chain_yaml({{"node-a", a.url()}, {"node-b", b.url(), "        tier: fallback\n"}}));
    EXPECT_EQ(http_post(gw->port(), "/", rpc_body("eth_blockNumber")).header("x-gateway-upstream"),
              "node-a");
    a.stop();
    ASSERT_TRUE(wait_state(*gw, "node-a", "down"));
    EXPECT_EQ(http_post(gw->port(), "/", rpc_body("eth_blockNumber")).header("x-gateway-upstream"),
              "node-b");
    a.start();
    ASSERT_TRUE(wait_state(*gw, "node-a", "up"));
    EXPECT_EQ(http_post(gw->port(), "/", rpc_body("eth_blockNumber")).header("x-gateway-upstream"),
              "node-a");
    EXPECT_THAT(gw->process().output(), HasSubstr("upstream node-a (chain devnet) is up again"));
}

TEST_F(PoolTest, ANodeOnAnotherChainIsNeverUsed) {
    Anvil other(dir, 1337);
    TcpForwarder a(anvil->port()), c(other.port());
    // The wrong node is the primary: it would get everything if it were used at all.
    start(chain_yaml({{"node-c", c.url()}, {"node-a", a.url(), "        tier: fallback\n"}}));
    ASSERT_TRUE(wait_state(*gw, "node-c", "wrong_chain"));
    for (int i = 0; i < 50; ++i)
        EXPECT_EQ(
            http_post(gw->port(), "/", rpc_body("eth_getBalance", "[\"" + kRich + "\",\"latest\"]"))
                .header("x-gateway-upstream"),
            "node-a");
    EXPECT_THAT(std::string(admin_upstream(*gw, "node-c").at("reason").as_string()),
                HasSubstr("reports chain id 1337, the chain is configured with 31337"));
    EXPECT_EQ(
        metric_value(metrics(*gw),
                     R"(gateway_upstream_wrong_chain_total{chain="devnet",upstream="node-c"})"),
        1);
    EXPECT_THAT(gw->process().output(), HasSubstr("upstream node-c (chain devnet) is EXCLUDED"));
    // Through the gateway the chain id is the configured one.
    EXPECT_EQ(cast({"chain-id", "--rpc-url", gw->url()}), "31337");
}

TEST_F(PoolTest, ALaggingNodeGetsNoLatestReadsAndBlockNumbersNeverDecrease) {
    Anvil behind(dir);  // the same chain id, an independent node that has mined nothing
    cast({"rpc", "anvil_mine", "50", "--rpc-url", anvil->url()});
    TcpForwarder main(anvil->port()), lag(behind.port());
    // The lagging node is the primary.
    start(chain_yaml(
        {{"node-lag", lag.url()}, {"node-main", main.url(), "        tier: fallback\n"}}));
    ASSERT_TRUE(wait_state(*gw, "node-lag", "lagging"));
    const json::value v = admin_upstream(*gw, "node-lag");
    EXPECT_EQ(v.at("lag_blocks"), 50);
    EXPECT_THAT(std::string(v.at("reason").as_string()),
                HasSubstr("50 blocks behind the chain head 50"));
    EXPECT_EQ(metric_value(metrics(*gw),
                           R"(gateway_upstream_lag_blocks{chain="devnet",upstream="node-lag"})"),
              50);

    for (int i = 0; i < 30; ++i) {
        HttpReply r = http_post(gw->port(), "/", rpc_body("eth_blockNumber"));
        EXPECT_EQ(json::parse(r.body).at("result"), "0x32");
        EXPECT_EQ(r.header("x-gateway-upstream"), "node-main");
        EXPECT_EQ(
            http_post(gw->port(), "/", rpc_body("eth_getBalance", "[\"" + kRich + "\",\"latest\"]"))
                .header("x-gateway-upstream"),
            "node-main");
    }
    EXPECT_EQ(cast({"block-number", "--rpc-url", gw->url()}), "50");
    // A block the lagging node has is still served by it (it is the primary).
    EXPECT_EQ(http_post(gw->port(), "/", rpc_body("eth_getBlockByNumber", "[\"0x0\",false]"))
                  .header("x-gateway-upstream"),
              "node-lag");

    // The node ahead is taken out: the one left answers 0, clients still see 50.
    ASSERT_EQ(HttpConnection(gw->admin_port())
                  .request("POST", "/admin/upstreams/node-main/cordon", "")
                  .status,
              200u);
    for (int i = 0; i < 10; ++i) {
        HttpReply r = http_post(gw->port(), "/", rpc_body("eth_blockNumber"));
        EXPECT_EQ(r.header("x-gateway-upstream"), "node-lag");
        EXPECT_EQ(json::parse(r.body).at("result"), "0x32")
            << "never lower than a number already given";
    }
}

// An upstream that answers its probes well and every call badly, a different way each time.
class BadUpstream {
public:
    BadUpstream() : server_([this](boost::asio::ip::tcp::socket& s, std::size_t) { serve(s); }) {}
    std::string url() const { return "http://127.0.0.1:" + std::to_string(server_.port()); }
    std::map<std::string, int> served() const {
        std::lock_guard lock(mu_);
        return served_;
    }

private:
    static constexpr const char* kModes[] = {"503",  "malformed", "truncated",
                                             "html", "reset",     "429"};

    void serve(boost::asio::ip::tcp::socket& s) {
        for (;;) {
            const std::string request = RawServer::read_request(s);
            if (request.empty()) return;
            const json::value body = json::parse(request.substr(request.find("\r\n\r\n") + 4));
            const std::string method(body.at("method").as_string());
            const std::string id = json::serialize(body.at("id"));
            auto ok = [&](const std::string& result) {
                RawServer::write(s, RawServer::ok_response(R"({"jsonrpc":"2.0","id":)" + id +
                                                           R"(,"result":)" + result + "}"));
            };
            if (method == "eth_chainId") {
                ok("\"0x7a69\"");
                continue;
            }
            if (method == "eth_syncing") {
                ok("false");
                continue;
            }
            if (method == "eth_blockNumber") {
                ok("\"0x0\"");
                continue;
            }  // like the fresh anvil
            if (method == "eth_getBlockByNumber") {
                // The probes' check of the head it claims: its block 0. Only the client's calls
                // take the faults, in turn, whenever the probes ask.
                ok(R"({"number":"0x0","hash":"0x)" + std::string(64, '1') +
                   R"(","parentHash":"0x)" + std::string(64, '0') + "\"}");
                continue;
            }
            std::string mode;
            {
                std::lock_guard lock(mu_);
                mode = kModes[next_++ % std::size(kModes)];
                ++served_[mode];
            }
            if (mode == "503") {
                RawServer::write(s,
                                 "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n");
            } else if (mode == "malformed") {
                RawServer::write(
                    s, RawServer::ok_response(R"({"jsonrpc":"2.0","id":)" + id + R"(,"result":)"));
            } else if (mode == "truncated") {
                RawServer::write(s,
                                 "HTTP/1.1 200 OK\r\nContent-Type: "
                                 "application/json\r\nContent-Length: 500\r\n\r\n{\"jsonrpc\"");
                return;
            } else if (mode == "html") {
                RawServer::write(s,
                                 "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: "
                                 "15\r\n\r\n<html>ok</html>");
            } else if (mode == "reset") {
                boost::system::error_code ec;
                s.set_option(boost::asio::socket_base::linger(true, 0), ec);
                return;
            } else {
                RawServer::write(s,
                                 "HTTP/1.1 429 Too Many Requests\r\nRetry-After: "
                                 "1\r\nContent-Length: 0\r\n\r\n");
            }
        }
    }

    RawServer server_;
    mutable std::mutex mu_;
    std::size_t next_ = 0;
    std::map<std::string, int> served_;
};

TEST_F(PoolTest, AnUpstreamAnswering429s503sAndGarbageIsRoutedAround) {
    BadUpstream bad;
    TcpForwarder a(anvil->port());
    // The bad one is the primary, and its breaker is patient, so it is asked again and again.
    start(chain_yaml({{"node-bad", bad.url()}, {"node-a", a.url(), "        tier: fallback\n"}},
                     "    failover: {breaker_threshold: 1000}\n"));
    int errors = 0;
    std::string first_error;
    for (int i = 0; i < 100; ++i) {
        const std::string call = rpc_body("eth_getBalance", "[\"" + kRich + "\",\"latest\"]", i);
        HttpReply via = http_post(gw->port(), "/", call);
        HttpReply direct = http_post(anvil->port(), "/", call);
        if (via.status != 200 || json::parse(via.body) != json::parse(direct.body)) {
            ++errors;
            if (first_error.empty()) first_error = via.body;
        }
        if (i % 10 == 0)
            std::this_thread::sleep_for(std::chrono::milliseconds(120));  // let the 429 rest pass
    }
    EXPECT_EQ(errors, 0) << first_error;
    const auto served = bad.served();
    for (const char* mode : {"503", "malformed", "truncated", "html", "reset", "429"})
        EXPECT_GT(served.count(mode) ? served.at(mode) : 0, 0) << mode << " was never tried";
    const std::string m = metrics(*gw);
    EXPECT_THAT(
        m,
        HasSubstr(
            R"(gateway_failovers_total{chain="devnet",reason="http_error",upstream="node-bad"})"));
    EXPECT_THAT(
        m,
        HasSubstr(
            R"(gateway_failovers_total{chain="devnet",reason="bad_response",upstream="node-bad"})"));
    EXPECT_THAT(
        m, HasSubstr(
               R"(gateway_failovers_total{chain="devnet",reason="http_429",upstream="node-bad"})"));
}

TEST_F(PoolTest, ADeterministicRevertIsNotRetried) {
    // A contract whose every call reverts: runtime 60006000fd (REVERT(0, 0)).
    cast({"send", "--unlocked", "--from", kRich, "--rpc-url", anvil->url(), "--create",
          "0x6460006000fd6000526005601bf3"});
    const std::string contract = "0x5FbDB2315678afecb367f032d93F642f64180aa3";
    EXPECT_EQ(cast({"code", contract, "--rpc-url", anvil->url()}), "0x60006000fd");
    TcpForwarder a(anvil->port());
    FakeUpstream spare(31337,
                       [](const std::string& m, const json::value&) -> std::optional<FakeReply> {
                           if (m == "eth_call") return FakeReply::ok("\"0x\"");
                           if (m == "eth_blockNumber") return FakeReply::ok("\"0x1\"");
                           return std::nullopt;
                       });
    start(chain_yaml({{"node-a", a.url()}, {"spare", spare.url(), "        tier: fallback\n"}}));
    HttpReply r = http_post(
        gw->port(), "/",
        rpc_body("eth_call", "[{\"to\":\"" + contract + "\",\"data\":\"0x\"},\"latest\"]"));
    EXPECT_EQ(r.status, 200u);
    EXPECT_THAT(r.body, HasSubstr("execution reverted"));
    EXPECT_EQ(r.header("x-gateway-upstream"), "node-a");
    EXPECT_EQ(spare.calls("eth_call"), 0u)
        << "a revert is the answer, not a reason to ask another node";
    CommandResult c = run_command({tool_path("cast"), "call", contract, "--rpc-url", gw->url()},
                                  std::chrono::seconds(30));
    EXPECT_NE(c.exit_code, 0);
    EXPECT_THAT(c.err, HasSubstr("execution reverted"));
    EXPECT_EQ(spare.calls("eth_call"), 0u);
}

}  // namespace
}  // namespace gateway::test
