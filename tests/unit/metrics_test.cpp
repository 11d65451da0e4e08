#include "gateway/metrics/metrics.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace gateway::metrics {
namespace {

using ::testing::HasSubstr;

TEST(Metrics, RendersEveryFamilyWithItsLabels) {
    Metrics m;
    m.observe_call("devnet", "eth_call", "ok", 0.002);
    m.observe_call("devnet", "eth_call", "ok", 0.004);
    m.observe_call("devnet", "other", "rpc_error", 0.001);
    m.observe_http("rpc", 200);
    m.add_in_flight(3);
    m.add_in_flight(-1);
    m.observe_upstream("devnet", "node-a", "", 0.001);
    m.observe_upstream("devnet", "node-a", "timeout", 1.5);
    m.set_upstream_up("devnet", "node-a", true);
    const std::string text = m.render();
    EXPECT_THAT(
        text,
        HasSubstr(R"(gateway_requests_total{chain="devnet",method="eth_call",outcome="ok"} 2)"));
    EXPECT_THAT(
        text,
        HasSubstr(
            R"(gateway_requests_total{chain="devnet",method="other",outcome="rpc_error"} 1)"));
    EXPECT_THAT(
        text,
        HasSubstr(R"(gateway_request_duration_seconds_count{chain="devnet",method="eth_call"} 2)"));
    EXPECT_THAT(text, HasSubstr(R"(gateway_http_responses_total{code="200",listener="rpc"} 1)"));
    EXPECT_THAT(text, HasSubstr("gateway_in_flight_requests 2"));
    EXPECT_THAT(
        text, HasSubstr(R"(gateway_upstream_requests_total{chain="devnet",upstream="node-a"} 2)"));
    EXPECT_THAT(
        text,
        HasSubstr(
            R"(gateway_upstream_errors_total{chain="devnet",kind="timeout",upstream="node-a"} 1)"));
    EXPECT_THAT(
        text,
        HasSubstr(
            R"(gateway_upstream_request_duration_seconds_count{chain="devnet",upstream="node-a"} 2)"));
    EXPECT_THAT(text, HasSubstr(R"(gateway_upstream_up{chain="devnet",upstream="node-a"} 1)"));
    EXPECT_THAT(text, HasSubstr("gateway_build_info{version=\"" GATEWAY_VERSION "\"} 1"));
}

}  // namespace
}  // namespace gateway::metrics
