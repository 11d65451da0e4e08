// A configuration reload while serving (Gateway::reload, POST /admin/reload): what changes at
// once, what is refused, what waits for a restart, and what it says.

#include "support/fake_upstream.hpp"
#include "support/gateway_fixture.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <chrono>
#include <string>

namespace gateway {
namespace {

using namespace std::chrono_literals;
using test::FakeReply;
using test::FakeUpstream;
using test::first_is_primary;
using test::GatewayTest;
using test::on;
using ::testing::HasSubstr;
using ::testing::Not;
namespace json = boost::json;

const std::string kGasPrice = R"({"jsonrpc":"2.0","id":1,"method":"eth_gasPrice"})";

class ReloadTest : public GatewayTest {
protected:
    // POST /admin/reload: the status and the parsed answer.
    std::pair<unsigned, json::value> reload() {
        const test::HttpReply r =
            test::HttpConnection(admin_port()).request("POST", "/admin/reload", "");
        return {r.status, json::parse(r.body)};
    }
    // POST /admin/reload of `next`.
    std::pair<unsigned, json::value> reload_to(const config::Config& next) {
        gw->set_config_source([next] { return next; });
        return reload();
    }
    static config::UpstreamConfig node(const std::string& id, const std::string& url) {
        config::UpstreamConfig u;
        u.id = id;
        u.url = url;
        u.timeout = 1s;
        return u;
    }
    std::vector<std::string> ids() {
        std::vector<std::string> out;
        const json::value all = upstreams();
        for (const auto& u : all.at("upstreams").as_array())
            out.emplace_back(u.at("id").as_string());
        return out;
    }
};

TEST_F(ReloadTest, UpstreamsAreSwappedAndAnUnchangedOneKeepsItsState) {
    FakeUpstream a(31337, on("eth_gasPrice", FakeReply::ok("\"0xa\"")));
    FakeUpstream b(31337, on("eth_gasPrice", FakeReply::ok("\"0xb\"")));
    FakeUpstream c(31337, on("eth_gasPrice", FakeReply::ok("\"0xc\"")));
    start({a.url(), b.url()}, first_is_primary);
    wait_ready();
    EXPECT_EQ(post(kGasPrice).header("x-gateway-upstream"), "node-0");
    // node-1 cordoned by an operator: a reload that leaves it as it is keeps it so.
    EXPECT_EQ(test::HttpConnection(admin_port())
                  .request("POST", "/admin/upstreams/node-1/cordon", "")
                  .status,
              200u);

    // Published at each scrape: node-0's gauges are there before the reload.
    EXPECT_THAT(http_metrics(),
                HasSubstr(R"(gateway_upstream_up{chain="devnet",upstream="node-0"})"));
    config::Config next = started_with;
    next.chains[0].upstreams.erase(next.chains[0].upstreams.begin());  // node-0 goes
    next.chains[0].upstreams.push_back(node("node-2", c.url()));
    const auto [status, answer] = reload_to(next);
    ASSERT_EQ(status, 200u) << json::serialize(answer);
    EXPECT_EQ(answer.at("applied"), json::parse(R"(["chains[devnet].upstreams"])"));
    EXPECT_EQ(answer.at("restart_required"), json::array());

    EXPECT_EQ(ids(), (std::vector<std::string>{"node-1", "node-2"}));
    EXPECT_EQ(upstream("node-1").at("state"), "cordoned");
    ASSERT_TRUE(wait_state("node-2", "up"));
    const std::size_t a_calls = a.calls("eth_gasPrice");
    for (int i = 0; i < 5; ++i) {
        const test::HttpReply r = post(kGasPrice);
        EXPECT_EQ(r.body, R"({"jsonrpc":"2.0","id":1,"result":"0xc"})");
        EXPECT_EQ(r.header("x-gateway-upstream"), "node-2");
    }
    EXPECT_EQ(a.calls("eth_gasPrice"), a_calls);
    // The removed upstream's gauges are gone; the new one's are there.
    const std::string metrics = http_metrics();
    EXPECT_THAT(metrics,
                Not(HasSubstr(R"(gateway_upstream_up{chain="devnet",upstream="node-0"})")));
    EXPECT_THAT(metrics, HasSubstr(R"(gateway_upstream_up{chain="devnet",upstream="node-2"})"));
    EXPECT_THAT(metrics, HasSubstr(R"(gateway_config_reloads_total{outcome="applied"} 1)"));
    EXPECT_THAT(metrics, HasSubstr("gateway_config_last_reload_successful 1"));
    EXPECT_THAT(metrics, HasSubstr("gateway_config_restart_required 0"));

    // node-1 changed (a new timeout, as a rotated URL would be): probed afresh, still cordoned.
    next.chains[0].upstreams[0].timeout = 2s;
    EXPECT_EQ(reload_to(next).second.at("applied"), json::parse(R"(["chains[devnet].upstreams"])"));
    EXPECT_EQ(upstream("node-1").at("state"), "cordoned");
}

TEST_F(ReloadTest, AnAddedUpstreamGetsNoCallBeforeAProbeVerifiedItsChain) {
    FakeUpstream a(31337, on("eth_gasPrice", FakeReply::ok("\"0xa\"")));
    // Another chain's node, slow to answer its probes: unverified for a while.
    FakeUpstream other(1, [](const std::string& m, const json::value&) -> std::optional<FakeReply> {
        if (m != "eth_chainId") return FakeReply::ok("\"0xbad\"");
        FakeReply r = FakeReply::ok("\"0x1\"");
        r.delay = 300ms;
        return r;
    });
    start({a.url()});
    wait_ready();
    post(kGasPrice);  // node-0 has a latency, the new one none: it would rank first
    config::Config next = started_with;
    next.chains[0].upstreams.push_back(node("node-other", other.url()));
    ASSERT_EQ(reload_to(next).first, 200u);
    EXPECT_THAT(std::string(upstream("node-other").at("reason").as_string()),
                HasSubstr("a last resort until a probe verifies its chain id"));
    for (int i = 0; i < 10; ++i)
        EXPECT_EQ(post(kGasPrice).body, R"({"jsonrpc":"2.0","id":1,"result":"0xa"})");
    EXPECT_EQ(other.calls("eth_gasPrice"), 0u);
    EXPECT_TRUE(wait_state("node-other", "wrong_chain"));
}

TEST_F(ReloadTest, AConfigThatLoadsButCannotBeAppliedIsRefusedBeforeAnythingChanges) {
    FakeUpstream a(31337, on("eth_gasPrice", FakeReply::ok("\"0xa\"")));
    start({a.url()});
    wait_ready();
    // A ca_file that can be read but holds no certificate: the config reader takes it, the
    // HTTP client cannot.
    const std::string dir = test::make_temp_dir("reload-ca");
    test::write_file(dir + "/ca.pem", "not a certificate\n");
    config::Config next = started_with;
    next.chains[0].methods.deny.push_back("eth_gasPrice");
    config::UpstreamConfig tls;
    tls.id = "node-tls";
    tls.url = "https://127.0.0.1:1";
    tls.ca_file = dir + "/ca.pem";
    next.chains[0].upstreams.push_back(tls);
    const auto [status, answer] = reload_to(next);
    EXPECT_EQ(status, 400u);
    EXPECT_THAT(std::string(answer.at("error").as_string()),
                HasSubstr("cannot be applied: upstream node-tls: cannot load ca_file"));
    // Neither the upstreams nor the methods changed.
    EXPECT_EQ(ids(), (std::vector<std::string>{"node-0"}));
    EXPECT_EQ(post(kGasPrice).body, R"({"jsonrpc":"2.0","id":1,"result":"0xa"})");
}

TEST_F(ReloadTest, AFilterWhoseNodeAReloadRemovedIsRefusedNotSentElsewhere) {
    FakeUpstream a(31337, on("eth_newBlockFilter", FakeReply::ok("\"0xa1\"")));
    FakeUpstream b(31337, on("eth_getFilterChanges", FakeReply::ok("[]")));
    start({a.url(), b.url()}, first_is_primary);
    wait_ready();
    const test::HttpReply made =
        post(R"({"jsonrpc":"2.0","id":1,"method":"eth_newBlockFilter","params":[]})");
    ASSERT_EQ(json::parse(made.body).at("result"), "0xa1");
    config::Config next = started_with;
    next.chains[0].upstreams.erase(next.chains[0].upstreams.begin());
    ASSERT_EQ(reload_to(next).first, 200u);
    const test::HttpReply r =
        post(R"({"jsonrpc":"2.0","id":1,"method":"eth_getFilterChanges","params":["0xa1"]})");
    EXPECT_THAT(r.body, HasSubstr("made on upstream node-0, which is no longer configured"));
    EXPECT_EQ(b.calls("eth_getFilterChanges"), 0u);
}

TEST_F(ReloadTest, ABadConfigIsRefusedWithItsMessageAndChangesNothing) {
    FakeUpstream a(31337, on("eth_gasPrice", FakeReply::ok("\"0xa\"")));
    start({a.url()});
    wait_ready();
    gw->set_config_source([]() -> config::Config {
        return config::parse_config(
            "chains:\n  - name: devnet\n    chain_id: 31337\n    upstreams: [{id: x, url: "
            "'ws://nowhere/SECRET'}]\n",
            "gateway.yaml", config::process_env());
    });
    const auto [status, answer] = reload();
    EXPECT_EQ(status, 400u);
    EXPECT_EQ(answer.at("reloaded"), false);
    EXPECT_EQ(answer.at("error"),
              "gateway.yaml:4:30: chains[0].upstreams[0].url: must start with http:// or https://");
    EXPECT_THAT(json::serialize(answer), Not(HasSubstr("SECRET")));
    EXPECT_EQ(ids(), (std::vector<std::string>{"node-0"}));
    EXPECT_EQ(post(kGasPrice).body, R"({"jsonrpc":"2.0","id":1,"result":"0xa"})");
    const std::string metrics = http_metrics();
    EXPECT_THAT(metrics, HasSubstr(R"(gateway_config_reloads_total{outcome="refused"} 1)"));
    EXPECT_THAT(metrics, HasSubstr("gateway_config_last_reload_successful 0"));
}

TEST_F(ReloadTest, MethodsChangeAtOnceAndWhatNeedsARestartIsNamed) {
    FakeUpstream a(31337, on("eth_gasPrice", FakeReply::ok("\"0xa\"")));
    start({a.url()});
    wait_ready();
    config::Config next = started_with;
    next.chains[0].methods.deny.push_back("eth_gasPrice");
    next.server.listen.port = 1;           // a listener is not moved while serving
    next.chains[0].tx.confirmations = 12;  // nor is the write path re-made
    const auto [status, answer] = reload_to(next);
    ASSERT_EQ(status, 200u);
    EXPECT_EQ(answer.at("applied"), json::parse(R"(["chains[devnet].methods"])"));
    EXPECT_EQ(answer.at("restart_required"),
              json::parse(R"(["server.listen","chains[devnet].tx"])"));
    EXPECT_THAT(std::string(answer.at("note").as_string()), HasSubstr("environment variables"));
    const test::HttpReply refused = post(kGasPrice);
    EXPECT_THAT(refused.body, HasSubstr("not allowed here (methods.deny"));
    EXPECT_EQ(gw->rpc_endpoint().port, port());
    EXPECT_NE(port(), 1);
    EXPECT_THAT(http_metrics(), HasSubstr("gateway_config_restart_required 1"));
    // Reloading the same again: nothing more applied, the same still waiting.
    const auto [again_status, again] = reload();
    EXPECT_EQ(again.at("applied"), json::array());
    EXPECT_EQ(again.at("restart_required"),
              json::parse(R"(["server.listen","chains[devnet].tx"])"));
}

TEST_F(ReloadTest, WithoutAConfigFileTheReloadSaysSo) {
    FakeUpstream a;
    start({a.url()});
    const test::HttpReply r =
        test::HttpConnection(admin_port()).request("POST", "/admin/reload", "");
    EXPECT_EQ(r.status, 501u);
    EXPECT_THAT(r.body, HasSubstr("not started from a config file"));
}

}  // namespace
}  // namespace gateway
