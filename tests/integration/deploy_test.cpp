// What deployments rely on: `chain-gateway --probe`, the binary asking its own admin listener
// (the image has no curl), against a running gateway, one with nothing behind its port, and a
// path that is not there; and that every metric the shipped alerts and dashboard name is served
// by a running gateway (its series at zero, or after one read of each kind), so that an
// expression never silently matches nothing for a misspelled or missing name.

#include "integration/devnet.hpp"
#include "support/fake_upstream.hpp"
#include "support/http_test_client.hpp"

#include <cstring>

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <csignal>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>

namespace gateway::test {
namespace {

using ::testing::HasSubstr;

CommandResult probe(std::vector<std::string> args) {
    args.insert(args.begin(), {gateway_binary(), "--probe"});
    return run_command(args, std::chrono::seconds(10));
}

TEST(Deploy, TheBinaryProbesItsOwnAdminListener) {
    const std::string dir = make_temp_dir("gateway-probe");
    FakeUpstream node;
    GatewayProcess gw(dir, fmt::format("  - name: devnet\n"
                                       "    chain_id: 31337\n"
                                       "    upstreams:\n"
                                       "      - {{id: node, url: \"{}\"}}\n",
                                       node.url()));
    ASSERT_TRUE(gw.wait_ready()) << gw.process().output();
    const std::string admin = fmt::format("127.0.0.1:{}", gw.admin_port());

    CommandResult healthy = probe({admin});
    EXPECT_EQ(healthy.exit_code, 0) << healthy.out << healthy.err;
    EXPECT_THAT(healthy.out, HasSubstr("healthy: HTTP 200 from " + admin + "/healthz"));
    EXPECT_EQ(probe({admin, "--path", "/readyz"}).exit_code, 0);
    CommandResult missing = probe({admin, "--path", "/nowhere"});
    EXPECT_EQ(missing.exit_code, 1);
    EXPECT_THAT(missing.out, HasSubstr("unhealthy: HTTP 404"));

    // From a configuration file, as the image's HEALTHCHECK does: its admin_listen.
    const std::string config = dir + "/probe.yaml";
    write_file(config, fmt::format("server:\n  listen: 127.0.0.1:0\n  admin_listen: {}\n"
                                   "store:\n  path: {}/probe.db\n"
                                   "chains:\n  - name: devnet\n    chain_id: 31337\n"
                                   "    upstreams:\n      - {{id: node, url: \"{}\"}}\n",
                                   admin, dir, node.url()));
    EXPECT_EQ(probe({config}).exit_code, 0) << probe({config}).out;
    // Or the file GATEWAY_CONFIG names, as the image's HEALTHCHECK (`--probe` alone).
    CommandResult from_env =
        run_command({"/usr/bin/env", "GATEWAY_CONFIG=" + config, gateway_binary(), "--probe"},
                    std::chrono::seconds(10));
    EXPECT_EQ(from_env.exit_code, 0) << from_env.out << from_env.err;

    // Gone: unhealthy at once (nothing listens).
    gw.process().signal(SIGKILL);
    gw.process().wait(std::chrono::seconds(10));
    CommandResult gone = probe({admin});
    EXPECT_EQ(gone.exit_code, 1);
    EXPECT_THAT(gone.out, HasSubstr("unhealthy"));
    EXPECT_EQ(probe({config}).exit_code, 1);
    EXPECT_EQ(probe({dir + "/no-such.yaml"}).exit_code, 1);
}

// The metric names an alert (or dashboard) file uses: gateway_*, a histogram's _bucket, _count and
// _sum read as the histogram.
std::set<std::string> metrics_named_in(const std::string& path) {
    std::ifstream in(path);
    std::stringstream text;
    text << in.rdbuf();
    const std::string all = text.str();
    std::set<std::string> names;
    static const std::regex kName("(gateway|process)_[a-z_]+");
    for (auto it = std::sregex_iterator(all.begin(), all.end(), kName);
         it != std::sregex_iterator(); ++it) {
        std::string name = it->str();
        for (const char* suffix : {"_bucket", "_count", "_sum"})
            if (name.size() > std::strlen(suffix) &&
                name.compare(name.size() - std::strlen(suffix), std::string::npos, suffix) == 0)
                name.resize(name.size() - std::strlen(suffix));
        names.insert(name);
    }
    return names;
}

TEST(Deploy, EveryMetricTheAlertsAndTheDashboardNameIsServed) {
    const std::string dir = make_temp_dir("gateway-metrics");
    // Two nodes that refuse eth_call (HTTP 500): a call fails over from one to the other.
    auto refuse_calls = [](const std::string& method,
                           const boost::json::value&) -> std::optional<FakeReply> {
        if (method == "eth_call") return FakeReply::http(500, "overloaded");
        return std::nullopt;
    };
    FakeUpstream a(31337, refuse_calls), b(31337, refuse_calls);
    ::setenv("GATEWAY_DEPLOY_TEST_KEY",
             "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80", 1);
    GatewayProcess gw(
        dir,
        fmt::format(
            "  - name: devnet\n"
            "    chain_id: 31337\n"
            "    tx: {{poll_interval_ms: 50}}\n"
            "    upstreams:\n"
            "      - {{id: node-a, url: \"{}\"}}\n"
            "      - {{id: node-b, url: \"{}\"}}\n"
            "    accounts:\n"
            "      - {{address: \"0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266\", signer: hot}}\n",
            a.url(), b.url()),
        "", "", "signers:\n  - {id: hot, type: local, key_env: GATEWAY_DEPLOY_TEST_KEY}\n");
    ASSERT_TRUE(gw.wait_ready()) << gw.process().output();
    // What a dashboard reads only once there is traffic: a read, a cacheable read, a failing call.
    http_post(gw.port(), "/", rpc_body("eth_blockNumber", "[]"));
    http_post(gw.port(), "/", rpc_body("eth_getBlockByNumber", "[\"0x1\", false]"));
    http_post(gw.port(), "/",
              rpc_body("eth_call",
                       "[{\"to\":\"0x00000000000000000000000000000000000000aa\"}, \"latest\"]"));

    std::set<std::string> names =
        metrics_named_in(std::string(GATEWAY_SOURCE_DIR) + "/deploy/prometheus/alerts.yaml");
    ASSERT_GE(names.size(), 8u);
    const auto dashboard =
        metrics_named_in(std::string(GATEWAY_SOURCE_DIR) + "/deploy/grafana/chain-gateway.json");
    ASSERT_GE(dashboard.size(), 20u);
    names.insert(dashboard.begin(), dashboard.end());
    std::string missing;
    // A series of each (HELP and TYPE lines alone would not do: an expression matches series).
    ASSERT_TRUE(wait_until(
        [&] {
            const std::string metrics = http_get(gw.admin_port(), "/metrics").body;
            missing.clear();
            for (const auto& name : names) {
                const std::regex series("(^|\\n)" + name + "(_bucket|_count|_sum)?[{ ]");
                if (!std::regex_search(metrics, series)) missing += name + " ";
            }
            return missing.empty();
        },
        std::chrono::seconds(5)))
        << "not served: " << missing;
}

}  // namespace
}  // namespace gateway::test
