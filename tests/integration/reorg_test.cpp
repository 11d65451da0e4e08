// Reorgs seen through the gateway with anvil's anvil_reorg: the head tracker tells a reorg from
// new blocks, with the right depth, and says so at /admin/chains and in the metrics.

#include "integration/devnet.hpp"
#include "support/http_test_client.hpp"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <functional>
#include <thread>

namespace gateway::test {
namespace {

namespace json = boost::json;
using Clock = std::chrono::steady_clock;

bool wait_until(const std::function<bool()>& done,
                std::chrono::milliseconds timeout = std::chrono::seconds(20)) {
    const auto deadline = Clock::now() + timeout;
    while (Clock::now() < deadline) {
        if (done()) return true;
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return done();
}

TEST(ReorgTest, ReorgsOfDepthOneAndFiveAreSeenWithTheirDepth) {
    const std::string dir = make_temp_dir("gateway-reorg");
    Anvil anvil(dir);
    GatewayProcess gw(dir, fmt::format("  - name: devnet\n"
                                       "    chain_id: 31337\n"
                                       "    health: {{interval_ms: 100}}\n"
                                       "    reorgs: {{depth: 64}}\n"
                                       "    upstreams:\n"
                                       "      - {{id: node, url: \"{}\"}}\n",
                                       anvil.url()));
    ASSERT_TRUE(gw.wait_ready()) << gw.process().output();
    const auto node = [&](const std::string& method, const std::string& params) {
        return http_post(anvil.port(), "/", rpc_body(method, params));
    };
    const auto chain = [&] {
        const json::value v = json::parse(http_get(gw.admin_port(), "/admin/chains").body);
        return v.at("chains").at(0);
    };
    const auto head_is = [&](std::uint64_t n) {
        const json::value c = chain();
        return c.at("head").is_object() &&
               c.at("head").at("number").to_number<std::uint64_t>() == n;
    };

    // New blocks, one by one and ten at once, are not reorgs.
    node("anvil_mine", "[\"0x1\"]");
    ASSERT_TRUE(wait_until([&] { return head_is(1); })) << json::serialize(chain());
    node("anvil_mine", "[\"0xa\"]");
    ASSERT_TRUE(wait_until([&] { return head_is(11); })) << json::serialize(chain());
    EXPECT_EQ(chain().at("reorgs"), 0);

    // The last block replaced: depth 1.
    node("anvil_reorg", "[1, []]");
    ASSERT_TRUE(wait_until([&] { return chain().at("reorgs") == 1; }))
        << json::serialize(chain()) << gw.process().output();
    json::value last = chain().at("recentReorgs").at(0);
    EXPECT_EQ(last.at("depth"), 1);
    EXPECT_EQ(last.at("ancestor"), 10);

    // The last five replaced: depth 5, blocks 7..11 dropped.
    node("anvil_reorg", "[5, []]");
    ASSERT_TRUE(wait_until([&] { return chain().at("reorgs") == 2; })) << json::serialize(chain());
    last = chain().at("recentReorgs").at(0);
    EXPECT_EQ(last.at("depth"), 5);
    EXPECT_EQ(last.at("ancestor"), 6);
    EXPECT_EQ(last.at("dropped").as_array().size(), 5u);
    EXPECT_EQ(last.at("dropped").at(0).at("number"), 7);
    // Head tracking goes on: the next block extends the new chain.
    node("anvil_mine", "[\"0x1\"]");
    ASSERT_TRUE(wait_until([&] { return head_is(12); }));
    EXPECT_EQ(chain().at("reorgs"), 2);

    const std::string metrics = http_get(gw.admin_port(), "/metrics").body;
    EXPECT_NE(metrics.find("gateway_reorgs_total{chain=\"devnet\"} 2"), std::string::npos);
    EXPECT_NE(metrics.find("gateway_reorg_depth_blocks_count{chain=\"devnet\"} 2"),
              std::string::npos);
    EXPECT_NE(gw.process().output().find("reorg of depth 5"), std::string::npos);
}

}  // namespace
}  // namespace gateway::test
