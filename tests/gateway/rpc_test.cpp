// The RPC path of the whole gateway in-process (the same wiring as the binary), over HTTP in
// front of scripted fake nodes: routing, batches, ids, failover decisions, the admin endpoints.

#include "support/gateway_fixture.hpp"

#include "gateway/util/gzip.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <thread>

namespace gateway {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;
using ::testing::Not;
namespace json = boost::json;
using test::FakeReply;
using test::FakeUpstream;
using test::first_is_primary;
using test::GatewayTest;
using test::on;

TEST_F(GatewayTest, ForwardsACallAndKeepsTheId) {
    FakeUpstream node(31337, on("eth_getBalance", FakeReply::ok("\"0xde0b6b3a7640000\"")));
    start({node.url()});
    auto r = post(
        R"({"jsonrpc":"2.0","id":"abc-1","method":"eth_getBalance","params":["0x00000000000000000000000000000000000000aa","latest"]})");
    EXPECT_EQ(r.status, 200u);
    EXPECT_EQ(r.body, R"({"jsonrpc":"2.0","id":"abc-1","result":"0xde0b6b3a7640000"})");
    EXPECT_EQ(r.header("x-gateway-upstream"), "node-0");
    EXPECT_EQ(r.header("content-type"), "application/json");
}

// Not a sidecar: a client that sends and accepts gzip gets a large answer compressed (1 KB and
// up by default), a small one as it is, and the id and every header as without compression.
TEST_F(GatewayTest, AGzipClientSendsAndGetsCompressedBodies) {
    const std::string large = "\"0x" + std::string(8000, 'c') + "\"";
    FakeUpstream node(31337,
                      [&](const std::string& m, const json::value&) -> std::optional<FakeReply> {
                          if (m == "eth_call") return FakeReply::ok(large);
                          return std::nullopt;
                      });
    start({node.url()});
    const std::string call =
        R"({"jsonrpc":"2.0","id":7,"method":"eth_call","params":[{"to":"0x00000000000000000000000000000000000000aa"},"latest"]})";
    test::HttpConnection c(port());
    auto r = c.request("POST", "/", util::gzip(call),
                       {{"Content-Encoding", "gzip"}, {"Accept-Encoding", "gzip"}});
    EXPECT_EQ(r.status, 200u);
    EXPECT_EQ(r.header("content-encoding"), "gzip");
    EXPECT_EQ(r.header("x-gateway-upstream"), "node-0");
    EXPECT_LT(r.body.size(), 1000u);
    EXPECT_EQ(util::gunzip(r.body, 1u << 20, nullptr),
              R"({"jsonrpc":"2.0","id":7,"result":)" + large + "}");
    r = c.request("POST", "/", R"({"jsonrpc":"2.0","id":8,"method":"eth_chainId","params":[]})",
                  {{"Accept-Encoding", "gzip"}});
    EXPECT_EQ(r.header("content-encoding"), "");
    EXPECT_EQ(r.body, R"({"jsonrpc":"2.0","id":8,"result":"0x7a69"})");
}

TEST_F(GatewayTest, ABatchIsAnsweredInOrderWithExactIds) {
    FakeUpstream node(
        31337, [](const std::string& m, const json::value& req) -> std::optional<FakeReply> {
            // Answer with the first param so that each answer can be matched to its call.
            if (m == "echo") {
                auto r = FakeReply::ok(json::serialize(req.at("params").at(0)));
                r.delay = std::chrono::milliseconds(req.at("params").at(1).to_number<int>());
                return r;
            }
            return std::nullopt;
        });
    start({node.url()});
    // Later calls answer faster, so answers arrive out of order; ids of every kind.
    auto r = post(R"([
        {"jsonrpc":"2.0","id":1,"method":"echo","params":["a",120]},
        {"jsonrpc":"2.0","id":"two","method":"echo","params":["b",80]},
        {"jsonrpc":"2.0","id":null,"method":"echo","params":["c",40]},
        {"jsonrpc":"2.0","id":4.50,"method":"echo","params":["d",0]},
        {"jsonrpc":"2.0","method":"echo","params":["notification",0]},
        {"jsonrpc":"2.0","id":12345678901234567890123,"method":"echo","params":["e",0]},
        {"jsonrpc":"2.0","id":7,"method":"nope"},
        {"jsonrpc":"1.0","id":8,"method":"echo","params":["f",0]},
        {"jsonrpc":"2.0","id":9,"method":"eth_chainId"},
        42
    ])");
    EXPECT_EQ(r.status, 200u);
    EXPECT_EQ(r.header("x-gateway-upstream"), "node-0");
    json::value v = json::parse(r.body);
    ASSERT_TRUE(v.is_array());
    const json::array& a = v.as_array();
    ASSERT_EQ(a.size(), 9u) << r.body;  // the notification gets no answer
    EXPECT_EQ(a[0].at("result"), "a");
    EXPECT_EQ(a[1].at("id"), "two");
    EXPECT_EQ(a[1].at("result"), "b");
    EXPECT_TRUE(a[2].at("id").is_null());
    EXPECT_EQ(a[2].at("result"), "c");
    EXPECT_EQ(a[3].at("result"), "d");
    EXPECT_EQ(a[4].at("result"), "e");
    EXPECT_EQ(a[5].at("id"), 7);
    EXPECT_EQ(a[5].at("error").at("code"), -32601);
    EXPECT_EQ(a[6].at("id"), 8);
    EXPECT_EQ(a[6].at("error").at("code"), -32600);
    EXPECT_EQ(a[7].at("result"), "0x7a69");
    EXPECT_TRUE(a[8].at("id").is_null());
    EXPECT_EQ(a[8].at("error").at("code"), -32600);
    // Exact id texts, as the client wrote them.
    EXPECT_THAT(r.body, HasSubstr(R"("id":4.50,)"));
    EXPECT_THAT(r.body, HasSubstr(R"("id":12345678901234567890123,)"));
    EXPECT_EQ(node.calls("echo"), 6u);  // the notification was forwarded too
}

TEST_F(GatewayTest, ABatchWhoseAnswerGrowsTooLargeIsCutShort) {
    FakeUpstream node(31337,
                      on("eth_getCode", FakeReply::ok("\"0x" + std::string(1000, 'a') + "\"")));
    start({node.url()}, [](config::Config& c) {
        c.server.max_batch_response_bytes = 2500;
        c.server.batch_concurrency = 1;
    });
    std::string batch = "[";
    for (int i = 0; i < 6; ++i)
        batch +=
            std::string(i ? "," : "") + R"({"jsonrpc":"2.0","id":)" + std::to_string(i) +
            R"(,"method":"eth_getCode","params":["0x00000000000000000000000000000000000000aa","latest"]})";
    auto r = post(batch + "]");
    EXPECT_EQ(r.status, 200u);
    json::array a = json::parse(r.body).as_array();
    ASSERT_EQ(a.size(), 6u);
    // Two answers fit; the third passes the limit as it arrives and is not kept.
    for (int i = 0; i < 2; ++i) EXPECT_TRUE(a[i].as_object().contains("result")) << i;
    for (int i = 2; i < 6; ++i) {
        EXPECT_EQ(a[i].at("id"), i);
        EXPECT_EQ(a[i].at("error").at("code"), -32005);
        EXPECT_THAT(std::string(a[i].at("error").at("message").as_string()),
                    HasSubstr("server.max_batch_response_bytes"));
    }
    EXPECT_EQ(node.calls("eth_getCode"), 3u) << "the calls past the limit are not sent";
    EXPECT_LE(r.body.size(), 2500u + 6 * 200) << "the answers stay within the limit";
}

TEST_F(GatewayTest, OnlyNotificationsGetNoContent) {
    FakeUpstream node;
    start({node.url()});
    auto r = post(
        R"([{"jsonrpc":"2.0","method":"eth_blockNumber"},{"jsonrpc":"2.0","method":"eth_blockNumber"}])");
    EXPECT_EQ(r.status, 204u);
    EXPECT_EQ(r.body, "");
    EXPECT_EQ(post(R"({"jsonrpc":"2.0","method":"eth_blockNumber"})").status, 204u);
}

TEST_F(GatewayTest, RequestErrorsAreJsonRpcErrors) {
    FakeUpstream node;
    start({node.url()}, [](config::Config& c) { c.server.max_batch_size = 3; });
    auto code_of = [&](const std::string& body) {
        auto r = post(body);
        EXPECT_EQ(r.status, 200u) << body;
        json::value v = json::parse(r.body);
        EXPECT_TRUE(v.at("id").is_null()) << body;
        return v.at("error").at("code").to_number<int>();
    };
    EXPECT_EQ(code_of("{not json"), -32700);
    EXPECT_EQ(code_of(""), -32700);
    EXPECT_EQ(code_of("[]"), -32600);
    EXPECT_EQ(code_of("\"eth_blockNumber\""), -32600);
    EXPECT_EQ(code_of(R"({"jsonrpc":"2.0","id":null})"), -32600);
    EXPECT_EQ(code_of(R"([1,2,3,4])"), -32005);
    EXPECT_EQ(node.forwarded_calls(), 0u);
}

TEST_F(GatewayTest, ABodyOverTheLimitIs413WithAJsonRpcError) {
    FakeUpstream node;
    start({node.url()}, [](config::Config& c) { c.server.max_body_bytes = 1000; });
    auto r = post(R"({"jsonrpc":"2.0","id":1,"method":"eth_call","params":[")" +
                  std::string(2000, 'a') + "\"]}");
    EXPECT_EQ(r.status, 413u);
    json::value v = json::parse(r.body);
    EXPECT_EQ(v.at("error").at("code"), -32005);
    EXPECT_THAT(std::string(v.at("error").at("message").as_string()),
                HasSubstr("server.max_body_bytes"));
}

TEST_F(GatewayTest, ChainsAreRoutedByPath) {
    FakeUpstream devnet(31337, on("eth_blockNumber", FakeReply::ok("\"0x1\"")));
    FakeUpstream other(5, on("eth_blockNumber", FakeReply::ok("\"0x2\"")));
    start({devnet.url()}, [&](config::Config& c) {
        config::ChainConfig second = c.chains[0];
        second.name = "goerli";
        second.chain_id = 5;
        second.upstreams[0].id = "goerli-node";
        second.upstreams[0].url = other.url();
        c.chains.push_back(second);
    });
    const std::string call = R"({"jsonrpc":"2.0","id":1,"method":"eth_blockNumber"})";
    EXPECT_THAT(post(call, "/").body, HasSubstr("\"0x1\""));
    EXPECT_THAT(post(call, "/devnet").body, HasSubstr("\"0x1\""));
    EXPECT_THAT(post(call, "/goerli").body, HasSubstr("\"0x2\""));
    EXPECT_THAT(post(call, "/goerli/").body, HasSubstr("\"0x2\""));
    EXPECT_THAT(post(R"({"jsonrpc":"2.0","id":1,"method":"eth_chainId"})", "/goerli").body,
                HasSubstr("\"0x5\""));
    auto unknown = post(call, "/mainnet");
    EXPECT_EQ(unknown.status, 404u);
    json::value v = json::parse(unknown.body);
    EXPECT_EQ(v.at("error").at("code"), -32001);
    EXPECT_THAT(std::string(v.at("error").at("message").as_string()),
                HasSubstr("unknown chain path 'mainnet'"));
    EXPECT_THAT(std::string(v.at("error").at("message").as_string()), HasSubstr("devnet, goerli"));
    EXPECT_EQ(test::HttpConnection(port()).get("/").status, 405u);
}

TEST_F(GatewayTest, ReadsMoveOnFromFailingUpstreams) {
    struct Case {
        const char* name;
        FakeReply failure;
    };
    auto slow = FakeReply::ok("\"0xbad\"");
    slow.delay = 2s;  // the upstream timeout is 1 s
    const std::vector<Case> cases = {
        {"HTTP 503", FakeReply::http(503, "<html>unavailable</html>")},
        {"HTTP 500", FakeReply::http(500, "")},
        {"HTTP 429",
         FakeReply::http(
             429, R"({"jsonrpc":"2.0","id":1,"error":{"code":-32005,"message":"rate limited"}})")},
        {"HTTP 200 garbage", FakeReply::http(200, "<html>oops</html>")},
        {"timeout", slow},
    };
    for (const auto& c : cases) {
        SCOPED_TRACE(c.name);
        FakeUpstream bad(31337, on("eth_getBalance", c.failure));
        FakeUpstream good(31337, on("eth_getBalance", FakeReply::ok("\"0x2a\"")));
        start({bad.url(), good.url()}, first_is_primary);
        auto r = post(
            R"({"jsonrpc":"2.0","id":1,"method":"eth_getBalance","params":["0x00000000000000000000000000000000000000aa","latest"]})");
        EXPECT_EQ(r.status, 200u);
        EXPECT_EQ(r.body, R"({"jsonrpc":"2.0","id":1,"result":"0x2a"})");
        EXPECT_EQ(r.header("x-gateway-upstream"), "node-1");
        EXPECT_EQ(bad.calls("eth_getBalance"), 1u);
        TearDown();
        gw.reset();
    }
}

TEST_F(GatewayTest, AnUnreachableUpstreamIsSkippedAndMarkedDown) {
    FakeUpstream good(31337, on("eth_gasPrice", FakeReply::ok("\"0x1\"")));
    start({"http://127.0.0.1:" + std::to_string(test::closed_port()), good.url()},
          [](config::Config& c) { c.chains[0].upstreams[1].tier = config::Tier::fallback; });
    for (int i = 0; i < 20; ++i) {
        auto r = post(R"({"jsonrpc":"2.0","id":1,"method":"eth_gasPrice"})");
        ASSERT_EQ(r.status, 200u);
        EXPECT_EQ(r.header("x-gateway-upstream"), "node-1");
    }
    // Failed probes take it down. (Whether failed calls opened its breaker first depends on
    // how many calls it got before: GatewayTest.TheBreakerOpens... tests the breaker.)
    EXPECT_TRUE(wait_state("node-0", "down"));
    const json::value s = upstreams();
    EXPECT_EQ(s.at("upstreams").at(0).at("state"), "down");
    EXPECT_THAT(std::string(s.at("upstreams").at(0).at("reason").as_string()),
                HasSubstr("refused"));
    EXPECT_EQ(s.at("upstreams").at(1).at("state"), "up");
}

TEST_F(GatewayTest, DeterministicErrorsAreReturnedAsTheyCame) {
    FakeUpstream first(
        31337,
        on("eth_call", FakeReply{.error = std::make_pair(3, "execution reverted: not owner")}));
    FakeUpstream second(31337, on("eth_call", FakeReply::ok("\"0x\"")));
    start({first.url(), second.url()}, first_is_primary);
    auto r = post(
        R"({"jsonrpc":"2.0","id":5,"method":"eth_call","params":[{"to":"0x00000000000000000000000000000000000000aa"},"latest"]})");
    EXPECT_EQ(r.status, 200u);
    EXPECT_EQ(
        r.body,
        R"({"jsonrpc":"2.0","id":5,"error":{"code":3,"message":"execution reverted: not owner"}})");
    EXPECT_EQ(second.calls("eth_call"), 0u);
    // Counted by its code; the gateway's own refusals too.
    post(R"({"jsonrpc":"2.0","id":6,"method":"debug_traceCall","params":[]})");
    const std::string metrics = http_metrics();
    EXPECT_THAT(metrics, HasSubstr(R"(gateway_rpc_errors_total{chain="devnet",code="3"} 1)"));
    EXPECT_THAT(metrics, HasSubstr(R"(gateway_rpc_errors_total{chain="devnet",code="-32601"} 1)"));
    EXPECT_THAT(metrics, HasSubstr(R"(gateway_http_response_size_bytes_count{listener="rpc"} 2)"));
}

TEST_F(GatewayTest, AWriteIsNotResentOnceANodeMayHaveReceivedIt) {
    struct Case {
        const char* name;
        std::string method;
        FakeReply failure;
    };
    auto slow = FakeReply::ok("\"0xabc\"");
    slow.delay = 2s;  // the upstream timeout is 1 s: the node got it and may still execute it
    const std::vector<Case> cases = {
        {"HTTP 502", "eth_submitWork", FakeReply::http(502, "bad gateway")},
        {"HTTP 503 from a proxy", "eth_submitWork", FakeReply::http(503, "upstream reset")},
        {"HTTP 200 garbage", "eth_submitWork", FakeReply::http(200, "<html>")},
        {"timeout", "eth_submitWork", slow},
        {"an unknown method", "vendor_mine", FakeReply::http(500, "")},
    };
    for (const auto& c : cases) {
        SCOPED_TRACE(c.name);
        FakeUpstream first(31337, on(c.method, c.failure));
        FakeUpstream second(31337, on(c.method, FakeReply::ok("\"0xabc\"")));
        start({first.url(), second.url()}, first_is_primary);
        auto r =
            post(R"({"jsonrpc":"2.0","id":1,"method":")" + c.method + R"(","params":["0x02f8"]})");
        // Not a 503: a client or proxy that retries 503s elsewhere would send it twice.
        EXPECT_EQ(r.status, 200u);
        json::value v = json::parse(r.body);
        EXPECT_EQ(v.at("id"), 1);
        EXPECT_EQ(v.at("error").at("code"), -32603);
        EXPECT_THAT(std::string(v.at("error").at("message").as_string()), HasSubstr("node-0"));
        EXPECT_THAT(std::string(v.at("error").at("message").as_string()), HasSubstr("by its hash"));
        EXPECT_EQ(first.calls(c.method), 1u);
        EXPECT_EQ(second.calls(c.method), 0u);
        TearDown();
        gw.reset();
    }
}

TEST_F(GatewayTest, AWriteMovesOnWhenNoNodeCanHaveReceivedIt) {
    FakeUpstream limited(31337, on("eth_submitWork", FakeReply::http(429, "")));
    FakeUpstream second(31337, on("eth_submitWork", FakeReply::ok("\"0xabc\"")));
    start({"http://127.0.0.1:" + std::to_string(test::closed_port()), limited.url(), second.url()},
          [](config::Config& c) { c.chains[0].health.unhealthy_threshold = 100; });
    auto r = post(R"({"jsonrpc":"2.0","id":1,"method":"eth_submitWork","params":["0x02f8"]})");
    EXPECT_EQ(r.body, R"({"jsonrpc":"2.0","id":1,"result":"0xabc"})");
    EXPECT_EQ(r.header("x-gateway-upstream"), "node-2");
}

TEST_F(GatewayTest, ASlowCallMovesOnButDoesNotTakeTheNodeDown) {
    auto slow = FakeReply::ok("[]");
    slow.delay = 1500ms;  // over the upstream timeout of 1 s
    FakeUpstream heavy(31337, on("eth_getLogs", slow));
    FakeUpstream other(31337, on("eth_getLogs", FakeReply::ok("[]")));
    start({heavy.url(), other.url()},
          [](config::Config& c) { c.chains[0].upstreams[1].tier = config::Tier::fallback; });
    wait_ready();
    for (int i = 0; i < 3; ++i) {
        auto r = post(R"({"jsonrpc":"2.0","id":1,"method":"eth_getLogs","params":[{}]})");
        EXPECT_EQ(r.header("x-gateway-upstream"), "node-1");
    }
    auto s = json::parse(test::http_get(admin_port(), "/admin/upstreams").body);
    EXPECT_EQ(s.at("upstreams").at(0).at("state"), "up")
        << "timeouts of calls are the probes' business";
    EXPECT_EQ(
        post(R"({"jsonrpc":"2.0","id":1,"method":"eth_blockNumber"})").header("x-gateway-upstream"),
        "node-0");
}

TEST_F(GatewayTest, ABatchAnsweredByTwoUpstreamsNamesBoth) {
    FakeUpstream first(31337, on("eth_getBalance", FakeReply::http(503, "")));
    FakeUpstream second(31337, on("eth_getBalance", FakeReply::ok("\"0x0\"")));
    start({first.url(), second.url()},
          [](config::Config& cfg) { cfg.chains[0].upstreams[1].tier = config::Tier::fallback; });
    auto r = post(R"([{"jsonrpc":"2.0","id":1,"method":"eth_gasPrice"},
                      {"jsonrpc":"2.0","id":2,"method":"eth_getBalance","params":["0x00000000000000000000000000000000000000aa","latest"]}])");
    EXPECT_EQ(r.status, 200u);
    EXPECT_EQ(r.header("x-gateway-upstream"), "node-0,node-1");
}

TEST_F(GatewayTest, EveryUpstreamDownIs503WithEveryReasonThenRecovers) {
    auto failing = std::make_shared<std::atomic<bool>>(true);
    FakeUpstream node(
        31337, [failing](const std::string&, const json::value&) -> std::optional<FakeReply> {
            if (*failing) return FakeReply::http(503, "maintenance");
            return std::nullopt;
        });
    start({node.url(), "http://127.0.0.1:" + std::to_string(test::closed_port())});
    const std::string call = R"({"jsonrpc":"2.0","id":1,"method":"eth_blockNumber"})";
    auto r = post(call);
    EXPECT_EQ(r.status, 503u);
    json::value v = json::parse(r.body);
    EXPECT_EQ(v.at("id"), 1);
    EXPECT_EQ(v.at("error").at("code"), -32002);
    const std::string message(v.at("error").at("message").as_string());
    EXPECT_THAT(message, HasSubstr("node-0"));
    EXPECT_THAT(message, HasSubstr("503"));
    EXPECT_THAT(message, HasSubstr("node-1"));
    EXPECT_EQ(test::http_get(admin_port(), "/readyz?require=upstreams").status, 503u);

    *failing = false;
    wait_ready();
    r = post(call);
    EXPECT_EQ(r.status, 200u);
    EXPECT_EQ(r.body, R"({"jsonrpc":"2.0","id":1,"result":"0x10"})");
}

TEST_F(GatewayTest, FallbacksServeOnlyWhenNoPrimaryIsUsable) {
    FakeUpstream primary(31337, on("eth_gasPrice", FakeReply::ok("\"0x1\"")));
    FakeUpstream fallback(31337, on("eth_gasPrice", FakeReply::ok("\"0x2\"")));
    start({fallback.url(), primary.url()},
          [](config::Config& c) { c.chains[0].upstreams[0].tier = config::Tier::fallback; });
    wait_ready();
    const std::string call = R"({"jsonrpc":"2.0","id":1,"method":"eth_gasPrice"})";
    for (int i = 0; i < 5; ++i) EXPECT_EQ(post(call).header("x-gateway-upstream"), "node-1");
    primary.set_script(on("eth_gasPrice", FakeReply::http(503, "")));
    EXPECT_EQ(post(call).header("x-gateway-upstream"), "node-0");
    EXPECT_EQ(fallback.calls("eth_gasPrice"), 1u);
}

TEST_F(GatewayTest, AnUpstreamOnAnotherChainIsExcluded) {
    FakeUpstream wrong(1, on("eth_gasPrice", FakeReply::ok("\"0x999\"")));
    FakeUpstream right(31337, on("eth_gasPrice", FakeReply::ok("\"0x1\"")));
    start({wrong.url(), right.url()});
    EXPECT_TRUE(wait_state("node-0", "wrong_chain"));
    auto s = json::parse(test::http_get(admin_port(), "/admin/upstreams").body);
    EXPECT_EQ(s.at("upstreams").at(0).at("state"), "wrong_chain");
    EXPECT_THAT(std::string(s.at("upstreams").at(0).at("reason").as_string()),
                HasSubstr("reports chain id 1"));
    for (int i = 0; i < 5; ++i) {
        auto r = post(R"({"jsonrpc":"2.0","id":1,"method":"eth_gasPrice"})");
        EXPECT_EQ(r.header("x-gateway-upstream"), "node-1");
    }
    EXPECT_EQ(wrong.forwarded_calls(), 0u);
}

TEST_F(GatewayTest, AdminEndpoints) {
    FakeUpstream node;
    start({node.url()});
    wait_ready();
    EXPECT_EQ(test::http_get(admin_port(), "/healthz").body, "{\"status\":\"ok\"}\n");
    auto ready = json::parse(test::http_get(admin_port(), "/readyz").body);
    EXPECT_EQ(ready.at("ready"), true);
    EXPECT_EQ(ready.at("chains").at("devnet").at("upstream_answers"), true);
    post(R"({"jsonrpc":"2.0","id":1,"method":"eth_blockNumber"})");
    post(R"({"jsonrpc":"2.0","id":1,"method":"made_upMethod"})");
    auto metrics = test::http_get(admin_port(), "/metrics");
    EXPECT_EQ(metrics.status, 200u);
    EXPECT_THAT(metrics.header("content-type"), HasSubstr("text/plain"));
    EXPECT_THAT(
        metrics.body,
        HasSubstr(
            R"(gateway_requests_total{chain="devnet",method="eth_blockNumber",outcome="ok"} 1)"));
    EXPECT_THAT(
        metrics.body,
        HasSubstr(
            R"(gateway_requests_total{chain="devnet",method="other",outcome="rpc_error"} 1)"));
    EXPECT_THAT(metrics.body, Not(HasSubstr("made_upMethod")));
    EXPECT_THAT(metrics.body,
                HasSubstr(R"(gateway_upstream_up{chain="devnet",upstream="node-0"} 1)"));
    EXPECT_THAT(metrics.body, HasSubstr("gateway_in_flight_requests 0"));
    EXPECT_EQ(test::http_get(admin_port(), "/nope").status, 404u);
}

TEST_F(GatewayTest, ReadinessTurnsOffWhileDraining) {
    auto slow = FakeReply::ok("\"0x1\"");
    slow.delay = 800ms;
    FakeUpstream node(31337, on("eth_gasPrice", slow));
    start({node.url()});
    wait_ready();
    test::HttpConnection admin(admin_port());
    test::HttpReply in_flight;
    std::thread client(
        [&] { in_flight = post(R"({"jsonrpc":"2.0","id":1,"method":"eth_gasPrice"})"); });
    while (node.calls("eth_gasPrice") == 0) std::this_thread::sleep_for(5ms);
    gw->shutdown();
    std::this_thread::sleep_for(100ms);
    auto ready = admin.get("/readyz");
    EXPECT_EQ(ready.status, 503u);
    EXPECT_EQ(json::parse(ready.body).at("draining"), true);
    client.join();
    EXPECT_EQ(in_flight.status, 200u)
        << "the request in flight when the shutdown began is answered";
}

}  // namespace
}  // namespace gateway
