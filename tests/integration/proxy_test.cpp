// The chain-gateway binary in front of a real anvil node exposed as two endpoints (two
// fault-injecting forwarders), with cast as the client.

#include "integration/devnet.hpp"
#include "support/http_test_client.hpp"
#include "support/tcp_forwarder.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <boost/asio/ip/tcp.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <atomic>
#include <csignal>
#include <map>
#include <mutex>
#include <thread>

namespace gateway::test {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
namespace json = boost::json;
using Clock = std::chrono::steady_clock;

const std::string kRich =
    "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266";  // anvil's first funded account
// Init code of a contract whose runtime returns 42 for any call.
const std::string kInitCode = "0x69602a60005260206000f3600052600a6016f3";

std::string two_endpoints(std::uint16_t a, std::uint16_t b,
                          const std::string& extra_chain_yaml = "") {
    return "  - name: devnet\n"
           "    chain_id: 31337\n"
           "    health: {interval_ms: 200, timeout_ms: 1000}\n" +
           extra_chain_yaml +
           "    upstreams:\n"
           "      - id: node-a\n"
           "        url: http://127.0.0.1:" +
           std::to_string(a) +
           "\n"
           "        timeout_ms: 2000\n"
           "      - id: node-b\n"
           "        url: http://127.0.0.1:" +
           std::to_string(b) +
           "\n"
           "        timeout_ms: 2000\n"
           "        tier: fallback\n";  // so node-a serves while it lives, whatever the latencies
}

class ProxyTest : public ::testing::Test {
protected:
    void SetUp() override {
        dir = make_temp_dir("gateway-it");
        anvil = std::make_unique<Anvil>(dir);
        a = std::make_unique<TcpForwarder>(anvil->port());
        b = std::make_unique<TcpForwarder>(anvil->port());
    }

    void start_gateway(const std::string& server_yaml = "", const std::string& chain_yaml = "") {
        gw = std::make_unique<GatewayProcess>(dir, two_endpoints(a->port(), b->port(), chain_yaml),
                                              server_yaml);
        ASSERT_TRUE(gw->wait_ready()) << gw->process().output();
    }

    void TearDown() override {
        if (HasFailure() && gw)
            std::cerr << "--- gateway log ---\n" << gw->process().output() << "\n";
    }

    std::string dir;
    std::unique_ptr<Anvil> anvil;
    std::unique_ptr<TcpForwarder> a;
    std::unique_ptr<TcpForwarder> b;
    std::unique_ptr<GatewayProcess> gw;
};

TEST_F(ProxyTest, CastReadsThroughTheGatewayEqualTheDirectAnswers) {
    start_gateway();
    const std::string direct = anvil->url();
    const std::string via = gw->url();

    // A contract to call, deployed directly on the node.
    cast({"send", "--unlocked", "--from", kRich, "--rpc-url", direct, "--create", kInitCode});
    const std::string contract = cast({"compute-address", kRich, "--nonce", "0"})
                                     .substr(std::string("Computed Address: ").size());
    // And a block or two more through the gateway, so that the numbers are not trivially 0.
    cast({"rpc", "anvil_mine", "2", "--rpc-url", direct});

    EXPECT_EQ(cast({"block-number", "--rpc-url", via}),
              cast({"block-number", "--rpc-url", direct}));
    EXPECT_EQ(cast({"block-number", "--rpc-url", via}), "3");
    EXPECT_EQ(cast({"chain-id", "--rpc-url", via}), "31337");
    EXPECT_EQ(cast({"balance", kRich, "--rpc-url", via}),
              cast({"balance", kRich, "--rpc-url", direct}));
    EXPECT_EQ(cast({"call", contract, "f()(uint256)", "--rpc-url", via}), "42");
    EXPECT_EQ(cast({"call", contract, "f()(uint256)", "--rpc-url", via}),
              cast({"call", contract, "f()(uint256)", "--rpc-url", direct}));
    EXPECT_EQ(cast({"block", "latest", "--json", "--rpc-url", via}),
              cast({"block", "latest", "--json", "--rpc-url", direct}));
    EXPECT_EQ(cast({"code", contract, "--rpc-url", via}), "0x602a60005260206000f3");

    // A signed write goes through the gateway's write path to the node.
    const std::string receipt =
        cast({"send", "--private-key",
              "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
              "0x00000000000000000000000000000000000000aa", "--value", "1000", "--json",
              "--rpc-url", via});
    EXPECT_EQ(json::parse(receipt).at("status"), "0x1");
    EXPECT_EQ(cast({"balance", "0x00000000000000000000000000000000000000aa", "--rpc-url", direct}),
              "1000");
}

TEST_F(ProxyTest, ABatchOfTenMixedCallsEqualsTheDirectAnswers) {
    start_gateway();
    cast({"rpc", "anvil_mine", "3", "--rpc-url", anvil->url()});
    const std::string batch = R"([
        {"jsonrpc":"2.0","id":1,"method":"eth_blockNumber","params":[]},
        {"jsonrpc":"2.0","id":"two","method":"eth_chainId","params":[]},
        {"jsonrpc":"2.0","id":3,"method":"eth_getBalance","params":[")" +
                              kRich + R"(","latest"]},
        {"jsonrpc":"2.0","id":4,"method":"eth_getBlockByNumber","params":["0x2",false]},
        {"jsonrpc":"2.0","id":5,"method":"eth_gasPrice","params":[]},
        {"jsonrpc":"2.0","id":6,"method":"eth_getTransactionCount","params":[")" +
                              kRich + R"(","latest"]},
        {"jsonrpc":"2.0","id":7,"method":"eth_getCode","params":[")" +
                              kRich + R"(","latest"]},
        {"jsonrpc":"2.0","id":8,"method":"net_version","params":[]},
        {"jsonrpc":"2.0","id":9,"method":"eth_call","params":[{"to":")" +
                              kRich + R"(","data":"0x"},"latest"]},
        {"jsonrpc":"2.0","id":10,"method":"eth_getStorageAt","params":[")" +
                              kRich + R"(","0x0","latest"]}
    ])";
    HttpReply via = http_post(gw->port(), "/", batch);
    HttpReply direct = http_post(anvil->port(), "/", batch);
    ASSERT_EQ(via.status, 200u);
    EXPECT_THAT(via.header("x-gateway-upstream"), HasSubstr("node-"));
    json::array got = json::parse(via.body).as_array();
    json::array want = json::parse(direct.body).as_array();
    ASSERT_EQ(got.size(), 10u);
    ASSERT_EQ(want.size(), 10u);
    std::map<std::string, json::value> want_by_id;
    for (auto& w : want) want_by_id[json::serialize(w.at("id"))] = w;
    for (std::size_t i = 0; i < got.size(); ++i) {
        const std::string id = json::serialize(got[i].at("id"));
        SCOPED_TRACE(id);
        // In the request's order, with the request's ids.
        EXPECT_EQ(id, json::serialize(json::parse(batch).as_array()[i].at("id")));
        EXPECT_EQ(got[i], want_by_id.at(id));
    }
    // The plain reads went to anvil as one batch (eth_blockNumber and the gateway's own
    // eth_chainId aside).
    const std::string metrics = http_get(gw->admin_port(), "/metrics").body;
    const std::string line = R"(gateway_upstream_requests_total{chain="devnet",method="batch",)";
    EXPECT_TRUE(metrics.find(line + R"(upstream="node-a"} 1)") != std::string::npos ||
                metrics.find(line + R"(upstream="node-b"} 1)") != std::string::npos)
        << metrics;
    EXPECT_THAT(
        metrics,
        ::testing::Not(HasSubstr(
            R"(gateway_upstream_requests_total{chain="devnet",method="eth_getStorageAt")")));
}

TEST_F(ProxyTest, B1_TwoHundredReadsSeeNoErrorWhenAnEndpointDiesMidRun) {
    // Every read goes to a node: the cache would answer these identical reads itself.
    start_gateway("", "    cache: {enabled: false, coalesce: false}\n");
    std::atomic<int> done{0};
    std::atomic<int> errors{0};
    std::mutex mu;
    std::vector<std::string> failures;
    std::map<std::string, int> by_upstream;
    auto reader = [&](int n) {
        std::unique_ptr<HttpConnection> c;
        for (int i = 0; i < n; ++i) {
            try {
                if (!c) c = std::make_unique<HttpConnection>(gw->port());
                HttpReply r =
                    c->post("/", rpc_body("eth_getBalance", "[\"" + kRich + "\",\"latest\"]", i));
                json::value v = json::parse(r.body);
                if (r.status != 200 || !v.as_object().contains("result"))
                    throw std::runtime_error(r.body);
                {
                    std::lock_guard lock(mu);
                    ++by_upstream[r.header("x-gateway-upstream")];
                }
                std::this_thread::sleep_for(5ms);  // spread the run over the cast calls
            } catch (const std::exception& e) {
                ++errors;
                c.reset();
                std::lock_guard lock(mu);
                failures.push_back(e.what());
            }
            ++done;
        }
    };
    // And cast, as a wallet would use it, the whole time.
    std::atomic<bool> readers_done{false};
    std::atomic<int> cast_calls{0};
    std::thread wallet([&] {
        while (!readers_done) {
            CommandResult r =
                run_command({tool_path("cast"), "balance", kRich, "--rpc-url", gw->url()}, 30s);
            ++cast_calls;
            if (r.exit_code != 0) {
                ++errors;
                std::lock_guard lock(mu);
                failures.push_back("cast: " + r.err);
            }
        }
    });
    std::vector<std::thread> readers;
    for (int t = 0; t < 4; ++t) readers.emplace_back(reader, 50);
    while (done < 50) std::this_thread::sleep_for(1ms);
    a->stop();  // node-a's endpoint dies with requests in flight
    for (auto& t : readers) t.join();
    readers_done = true;
    wallet.join();

    EXPECT_EQ(done, 200);
    EXPECT_GT(cast_calls, 0);
    EXPECT_EQ(errors, 0) << (failures.empty() ? "" : failures.front());
    EXPECT_GT(by_upstream["node-a"], 0) << "node-a served before it died";
    EXPECT_GT(by_upstream["node-b"], 0) << "node-b took over";
    // And afterwards every read goes to node-b.
    for (int i = 0; i < 5; ++i)
        EXPECT_EQ(
            http_post(gw->port(), "/", rpc_body("eth_blockNumber")).header("x-gateway-upstream"),
            "node-b");
}

TEST_F(ProxyTest, EveryUpstreamDownIsAClear503WithinTheTimeoutAndServiceResumesByItself) {
    start_gateway("  request_timeout_ms: 3000\n");
    a->stop();
    b->stop();
    const auto t0 = Clock::now();
    HttpReply r = http_post(gw->port(), "/", rpc_body("eth_blockNumber", "[]", 77));
    EXPECT_LT(Clock::now() - t0, 3500ms);
    EXPECT_EQ(r.status, 503u);
    json::value v = json::parse(r.body);
    EXPECT_EQ(v.at("id"), 77);
    EXPECT_EQ(v.at("error").at("code"), -32002);
    const std::string message(v.at("error").at("message").as_string());
    EXPECT_THAT(message, HasSubstr("node-a"));
    EXPECT_THAT(message, HasSubstr("node-b"));
    // cast shows the same error to its user.
    CommandResult c = run_command({tool_path("cast"), "block-number", "--rpc-url", gw->url()}, 30s);
    EXPECT_NE(c.exit_code, 0);
    EXPECT_THAT(c.err, HasSubstr("upstream"));
    // The gateway can still take work (writes queue, reads are served stale: row B2), so it
    // stays ready; the body says no node answers, and a caller who needs one can ask for it.
    for (int i = 0;
         i < 100 && http_get(gw->admin_port(), "/readyz?require=upstreams").status != 503; ++i)
        std::this_thread::sleep_for(20ms);
    EXPECT_EQ(http_get(gw->admin_port(), "/readyz?require=upstreams").status, 503u);
    const HttpReply readyz = http_get(gw->admin_port(), "/readyz");
    EXPECT_EQ(readyz.status, 200u) << readyz.body;
    EXPECT_THAT(readyz.body, HasSubstr(R"("devnet":{"upstream_answers":false)"));

    b->start();  // a node comes back; nobody touches the gateway
    const auto back = Clock::now();
    HttpReply ok;
    while (Clock::now() - back < 10s) {
        ok = http_post(gw->port(), "/", rpc_body("eth_blockNumber"));
        if (ok.status == 200) break;
        std::this_thread::sleep_for(50ms);
    }
    EXPECT_EQ(ok.status, 200u);
    EXPECT_EQ(ok.header("x-gateway-upstream"), "node-b");
    EXPECT_EQ(cast({"block-number", "--rpc-url", gw->url()}), "0");
    EXPECT_TRUE(gw->wait_ready());
}

TEST_F(ProxyTest, BlackHoledUpstreamsGiveA503WithinTheRequestTimeout) {
    start_gateway("  request_timeout_ms: 1500\n");
    a->set_mode(TcpForwarder::Mode::blackhole);
    b->set_mode(TcpForwarder::Mode::blackhole);
    a->stop();  // drop the pooled connections; new ones go into the black hole
    a->start();
    b->stop();
    b->start();
    const auto t0 = Clock::now();
    HttpReply r =
        http_post(gw->port(), "/", rpc_body("eth_getBalance", "[\"" + kRich + "\",\"latest\"]"));
    const auto took = Clock::now() - t0;
    EXPECT_EQ(r.status, 503u);
    EXPECT_LT(took, 2500ms);
    EXPECT_THAT(r.body, HasSubstr("-32002"));
}

TEST_F(ProxyTest, SigtermDuringLoadAnswersEveryRequestSentBeforeIt) {
    // Each request spends 150 ms in the forwarder, so that many are in flight at the signal.
    a->set_delay(std::chrono::milliseconds(150));
    b->set_delay(std::chrono::milliseconds(150));
    start_gateway("  shutdown_grace_ms: 5000\n");

    std::atomic<bool> stop{false};
    std::atomic<Clock::rep> signal_at{Clock::time_point::max().time_since_epoch().count()};
    std::atomic<int> answered{0};
    std::atomic<int> answered_after_signal{0};
    std::mutex mu;
    std::vector<std::string> violations;
    auto client = [&](int id) {
        while (!stop) {
            std::unique_ptr<HttpConnection> c;
            try {
                c = std::make_unique<HttpConnection>(gw->port());
            } catch (const std::exception&) {
                return;  // refused: the gateway stopped accepting, as it should
            }
            for (int i = 0; !stop; ++i) {
                Clock::time_point sent;
                try {
                    c->send("POST", "/", rpc_body("eth_blockNumber", "[]", id * 100000 + i));
                    sent = Clock::now();
                } catch (const std::exception&) {
                    break;  // the server closed this keep-alive connection first: nothing was
                            // accepted
                }
                try {
                    HttpReply r = c->receive();
                    if (r.status != 200)
                        throw std::runtime_error("HTTP " + std::to_string(r.status) + " " + r.body);
                    ++answered;
                    if (Clock::time_point(Clock::duration(signal_at.load())) < Clock::now())
                        ++answered_after_signal;
                    if (!r.keep_alive) break;  // the gateway said Connection: close
                } catch (const std::exception& e) {
                    if (sent < Clock::time_point(Clock::duration(signal_at.load()))) {
                        std::lock_guard lock(mu);
                        violations.push_back(e.what());
                    }
                    break;
                }
            }
        }
    };
    std::vector<std::thread> clients;
    for (int i = 0; i < 8; ++i) clients.emplace_back(client, i);
    // Under load: every client has been answered a few times, and goes on sending.
    ASSERT_TRUE(wait_until([&] { return answered >= 40; }, 30s));
    signal_at = Clock::now().time_since_epoch().count();
    gw->process().signal(SIGTERM);
    auto code = gw->process().wait(10s);
    stop = true;
    for (auto& t : clients) t.join();

    ASSERT_TRUE(code.has_value()) << "the gateway did not exit";
    EXPECT_EQ(*code, 0);
    EXPECT_TRUE(violations.empty())
        << violations.size()
        << " request(s) sent before SIGTERM failed, first: " << violations.front();
    EXPECT_GT(answered_after_signal, 0) << "requests in flight at the signal were answered";
    EXPECT_THAT(gw->process().output(), HasSubstr("shutdown complete"));
}

TEST_F(ProxyTest, SigtermTurnsReadinessOffAtOnceAndServesNewRequestsForTheDrainDelay) {
    // In Kubernetes the pod leaves its Service's endpoints a few seconds after SIGTERM: until
    // then clients still open connections to it, and they must be served.
    start_gateway("  drain_delay_ms: 2000\n  shutdown_grace_ms: 2000\n");
    ASSERT_EQ(http_get(gw->admin_port(), "/readyz").status, 200u);
    const auto signalled = Clock::now();
    gw->process().signal(SIGTERM);
    HttpReply readyz;
    for (int i = 0; i < 100; ++i) {
        readyz = http_get(gw->admin_port(), "/readyz");
        if (readyz.status == 503) break;
        std::this_thread::sleep_for(10ms);
    }
    EXPECT_EQ(readyz.status, 503u) << readyz.body;
    EXPECT_THAT(readyz.body, HasSubstr(R"("draining":true)"));

    // A client that has not heard yet, halfway through the delay: a new connection, a request,
    // an answer.
    std::this_thread::sleep_until(signalled + 1000ms);
    HttpReply r;
    try {
        r = http_post(gw->port(), "/", rpc_body("eth_blockNumber"));
    } catch (const std::exception& e) {
        ADD_FAILURE() << "a request 1 s into the 2 s drain delay was not served: " << e.what();
    }
    EXPECT_LT(Clock::now() - signalled, 2000ms) << "the request was answered during the delay";
    EXPECT_EQ(r.status, 200u) << r.body;
    EXPECT_THAT(r.body, HasSubstr(R"("result":"0x)"));

    // Then the drain as before, and the exit.
    const auto code = gw->process().wait(10s);
    ASSERT_TRUE(code.has_value()) << "the gateway did not exit";
    EXPECT_EQ(*code, 0);
    EXPECT_GE(Clock::now() - signalled, 2000ms) << "it stopped before the drain delay was over";
    EXPECT_THAT(gw->process().output(), HasSubstr("still serving for 2000 ms"));
    EXPECT_THAT(gw->process().output(), HasSubstr("shutdown complete"));
}

TEST(Cli, CheckConfigVersionAndBadArguments) {
    const std::string dir = make_temp_dir("gateway-cli");
    write_file(dir + "/good.yaml",
               "chains:\n  - name: devnet\n    chain_id: 31337\n    upstreams:\n      - id: a\n    "
               "    url: http://127.0.0.1:1\n");
    write_file(dir + "/bad.yaml",
               "chains:\n  - name: devnet\n    chain_id: 31337\n    upstreams:\n      - id: a\n    "
               "    url: http://127.0.0.1:1\n        wieght: 2\n");

    CommandResult good = run_command({gateway_binary(), "--check-config", dir + "/good.yaml"});
    EXPECT_EQ(good.exit_code, 0) << good.err;
    EXPECT_THAT(good.out, HasSubstr("valid"));

    CommandResult bad = run_command({gateway_binary(), "--check-config", dir + "/bad.yaml"});
    EXPECT_EQ(bad.exit_code, 1);
    EXPECT_THAT(bad.err, HasSubstr("bad.yaml:7:9: chains[0].upstreams[0].wieght: unknown key"));

    CommandResult start_bad = run_command({gateway_binary(), "--config", dir + "/bad.yaml"});
    EXPECT_EQ(start_bad.exit_code, 1);
    EXPECT_THAT(start_bad.err, HasSubstr("chains[0].upstreams[0].wieght"));

    CommandResult version = run_command({gateway_binary(), "--version"});
    EXPECT_EQ(version.exit_code, 0);
    EXPECT_EQ(version.out, "chain-gateway " GATEWAY_VERSION "\n");

    EXPECT_EQ(run_command({gateway_binary(), "--bogus"}).exit_code, 2);
    EXPECT_EQ(run_command({gateway_binary()}).exit_code, 2);

    // The two exposures the configuration refuses, each named with its fix, and never a secret.
    const std::string hot_key = "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318";
    const std::string client_key = "cli-client-key-0123456789abcdef";
    const std::string admin_token = "cli-admin-token-0123456789abcdef";
    write_file(dir + "/hot.key", hot_key + "\n");
    write_file(dir + "/client.keys", client_key + "\n");
    write_file(dir + "/admin.token", admin_token + "\n");
    const std::string chain =
        "chains:\n  - name: devnet\n    chain_id: 31337\n"
        "    accounts: [{address: \"0x2c7536e3605d9c16a7a3d7b1898e529396a65c23\", signer: hot}]\n"
        "    upstreams:\n      - {id: a, url: \"http://127.0.0.1:1\"}\n"
        "signers:\n  - {id: hot, type: local, key_file: \"" +
        dir + "/hot.key\"}\n";
    // Managed senders on a port other hosts reach, and no client auth.
    write_file(dir + "/open_rpc.yaml",
               "server:\n  listen: 0.0.0.0:8545\n  admin_listen: 127.0.0.1:9545\n" + chain +
                   "auth:\n  admin: {token_file: \"" + dir + "/admin.token\"}\n");
    CommandResult open_rpc =
        run_command({gateway_binary(), "--check-config", dir + "/open_rpc.yaml"});
    EXPECT_EQ(open_rpc.exit_code, 1);
    EXPECT_THAT(open_rpc.err,
                HasSubstr("server.listen: 0.0.0.0:8545 is reachable from other hosts and chains "
                          "have managed senders (accounts), but auth has no clients and no jwt"));
    EXPECT_THAT(open_rpc.err, HasSubstr("Configure auth.clients or auth.jwt, or listen on "
                                        "127.0.0.1"));
    // An admin listener other hosts reach, and no admin token.
    write_file(dir + "/open_admin.yaml",
               "server:\n  listen: 127.0.0.1:8545\n  admin_listen: 0.0.0.0:9545\n" + chain +
                   "auth:\n  clients:\n    - {id: backend, key_file: \"" + dir +
                   "/client.keys\"}\n");
    CommandResult open_admin =
        run_command({gateway_binary(), "--check-config", dir + "/open_admin.yaml"});
    EXPECT_EQ(open_admin.exit_code, 1);
    EXPECT_THAT(open_admin.err, HasSubstr("server.admin_listen: 0.0.0.0:9545 is reachable from "
                                          "other hosts, but auth.admin has no token"));
    EXPECT_THAT(open_admin.err, HasSubstr("Set auth.admin.token_env (or token_file), or listen "
                                          "on 127.0.0.1"));
    for (const CommandResult* r : {&open_rpc, &open_admin})
        for (const std::string& secret : {hot_key, client_key, admin_token}) {
            EXPECT_THAT(r->out, Not(HasSubstr(secret)));
            EXPECT_THAT(r->err, Not(HasSubstr(secret)));
        }
}

TEST(Cli, APortInUseIsAClearStartupError) {
    const std::string dir = make_temp_dir("gateway-cli");
    boost::asio::io_context ioc;
    boost::asio::ip::tcp::acceptor taken(ioc, {boost::asio::ip::make_address("127.0.0.1"), 0});
    write_file(dir + "/gw.yaml",
               "server:\n  listen: 127.0.0.1:" + std::to_string(taken.local_endpoint().port()) +
                   "\n  admin_listen: 127.0.0.1:0\nstore:\n  path: " + dir +
                   "/gw.db\nchains:\n  - name: devnet\n    chain_id: 31337\n    upstreams:\n      "
                   "- id: a\n        url: http://127.0.0.1:1\n");
    CommandResult r = run_command({gateway_binary(), "--config", dir + "/gw.yaml"}, 20s);
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_THAT(r.out, HasSubstr("cannot start"));
    EXPECT_THAT(r.out, HasSubstr("in use"));
}

TEST(Secrets, UpstreamCredentialsNeverReachTheLog) {
    const std::string dir = make_temp_dir("gateway-secrets");
    const std::uint16_t closed = closed_port();
    GatewayProcess gw(
        dir,
        "  - name: devnet\n    chain_id: 31337\n    health: {interval_ms: 50}\n    upstreams:\n"
        "      - id: hosted\n        url: http://apiuser:PASSWORD123@127.0.0.1:" +
            std::to_string(closed) + "/v3/APIKEY456\n");
    // Make it fail in every way it can be logged: probes, a call, the admin view.
    std::this_thread::sleep_for(300ms);
    HttpReply r = http_post(gw.port(), "/", rpc_body("eth_blockNumber"));
    EXPECT_EQ(r.status, 503u);
    std::string admin = http_get(gw.admin_port(), "/admin/upstreams").body;
    std::string metrics = http_get(gw.admin_port(), "/metrics").body;
    gw.process().signal(SIGTERM);
    gw.process().wait(10s);
    for (const std::string& text : {gw.process().output(), r.body, admin, metrics}) {
        EXPECT_THAT(text, ::testing::Not(HasSubstr("PASSWORD123")));
        EXPECT_THAT(text, ::testing::Not(HasSubstr("APIKEY456")));
    }
    EXPECT_THAT(gw.process().output(), HasSubstr("hosted"));
}

}  // namespace
}  // namespace gateway::test
