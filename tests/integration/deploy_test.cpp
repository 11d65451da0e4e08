// What the container image and Kubernetes' exec probes run: `chain-gateway --probe`, the binary
// asking its own admin listener (the image has no curl), against a running gateway, one with
// nothing behind its port, and a path that is not there.

#include "integration/devnet.hpp"
#include "support/fake_upstream.hpp"
#include "support/http_test_client.hpp"

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <csignal>

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

    // Gone: unhealthy at once (nothing listens).
    gw.process().signal(SIGKILL);
    gw.process().wait(std::chrono::seconds(10));
    CommandResult gone = probe({admin});
    EXPECT_EQ(gone.exit_code, 1);
    EXPECT_THAT(gone.out, HasSubstr("unhealthy"));
    EXPECT_EQ(probe({config}).exit_code, 1);
    EXPECT_EQ(probe({dir + "/no-such.yaml"}).exit_code, 1);
}

}  // namespace
}  // namespace gateway::test
