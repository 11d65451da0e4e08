// The cache in the whole gateway, in-process, in front of a fake node over HTTP: identical reads
// at once coalesced into one upstream call, hits marked in headers and a write through the
// gateway ending head answers, the byte budget kept, and their metrics.

#include "support/gateway_fixture.hpp"

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <boost/json/parse.hpp>

#include <atomic>
#include <mutex>
#include <thread>
#include <vector>

namespace gateway::cache {
namespace {

namespace json = boost::json;
using ::testing::HasSubstr;

constexpr const char* kAddr = "0x70997970c51812dc3a010c7d01b50e0d17dc79c8";

// In the gateway, in front of a fake node.
class CacheGatewayTest : public test::GatewayTest {
protected:
    void start_cached(const std::vector<std::string>& urls, bool enabled = true) {
        start(urls, [enabled](config::Config& c) {
            c.chains[0].cache.enabled = enabled;
            c.chains[0].cache.coalesce = true;
            // A dev node's anvil_mine goes through (HitsAreMarkedAndAWriteEndsHeadAnswers).
            c.chains[0].methods.deny = {"admin_*", "debug_*"};
        });
        wait_ready();
    }
};

TEST_F(CacheGatewayTest, OneHundredIdenticalReadsAtOnceGoUpstreamOnce) {
    test::FakeUpstream node(
        31337,
        test::on("eth_getBlockByNumber", test::FakeReply{.result = R"({"number":"0x5"})",
                                                         .delay = std::chrono::milliseconds(600)}));
    // The cache off: only coalescing can keep these 100 calls from reaching the node.
    start_cached({node.url()}, false);
    const std::string body =
        R"({"jsonrpc":"2.0","id":1,"method":"eth_getBlockByNumber","params":["0x5",false]})";
    std::vector<std::thread> clients;
    std::atomic<int> ok{0};
    std::mutex mu;
    std::vector<std::string> failures;
    for (int i = 0; i < 100; ++i)
        clients.emplace_back([&] {
            auto r = post(body);
            json::error_code ec;
            json::value v = json::parse(r.body, ec);
            if (r.status == 200 && !ec && v.at("result").at("number") == "0x5") {
                ++ok;
            } else {
                std::lock_guard lock(mu);
                failures.push_back(std::to_string(r.status) + " " + r.body);
            }
        });
    for (auto& t : clients) t.join();
    EXPECT_EQ(ok, 100) << (failures.empty() ? "" : failures.front());
    EXPECT_EQ(node.calls("eth_getBlockByNumber"), 1u);
    const std::string text = http_metrics();
    EXPECT_THAT(
        text,
        HasSubstr(
            R"(gateway_upstream_requests_total{chain="devnet",method="eth_getBlockByNumber",upstream="node-0"} 1)"));
    EXPECT_THAT(
        text,
        HasSubstr(
            R"(gateway_coalesced_requests_total{chain="devnet",method="eth_getBlockByNumber"} 99)"));

    // Once answered, the next one goes upstream again (the cache is off).
    EXPECT_EQ(post(body).status, 200u);
    EXPECT_EQ(node.calls("eth_getBlockByNumber"), 2u);
}

TEST_F(CacheGatewayTest, HitsAreMarkedAndAWriteEndsHeadAnswers) {
    std::atomic<int> balance{100};
    test::FakeUpstream node(
        31337, [&](const std::string& m, const json::value&) -> std::optional<test::FakeReply> {
            if (m == "eth_getBalance")
                return test::FakeReply::ok(fmt::format("\"0x{:x}\"", balance.load()));
            if (m == "eth_sendRawTransaction")
                return test::FakeReply::ok("\"0x" + std::string(64, '1') + "\"");
            if (m == "anvil_mine") return test::FakeReply::ok("null");
            return std::nullopt;
        });
    start_cached({node.url()});
    const std::string body =
        std::string(R"({"jsonrpc":"2.0","id":1,"method":"eth_getBalance","params":[")") + kAddr +
        R"(","latest"]})";
    auto first = post(body);
    EXPECT_EQ(first.header("x-gateway-cache"), "");
    EXPECT_EQ(first.header("x-gateway-upstream"), "node-0");
    auto second = post(body);
    EXPECT_EQ(second.header("x-gateway-cache"), "hit");
    EXPECT_EQ(second.header("x-gateway-upstream"), "");
    EXPECT_EQ(json::parse(second.body).at("result"), "0x64");
    EXPECT_EQ(node.calls("eth_getBalance"), 1u);

    // A batch with a hit and a miss.
    auto batch = post(
        "[" + body +
        R"(,{"jsonrpc":"2.0","id":2,"method":"eth_getBalance","params":["0x0000000000000000000000000000000000000001","latest"]}])");
    EXPECT_EQ(batch.header("x-gateway-cache"), "partial");

    // A state-changing call through the gateway: the balance is asked again.
    balance = 50;
    EXPECT_EQ(post(R"({"jsonrpc":"2.0","id":3,"method":"anvil_mine","params":[]})").status, 200u);
    auto after = post(body);
    EXPECT_EQ(json::parse(after.body).at("result"), "0x32");
    EXPECT_EQ(after.header("x-gateway-cache"), "");
    EXPECT_THAT(
        http_metrics(),
        HasSubstr(
            R"(gateway_cache_requests_total{chain="devnet",method="eth_getBalance",result="hit"} 2)"));
}

TEST_F(CacheGatewayTest, FilledPastItsBudgetTheCacheStaysWithinIt) {
    const std::string big = "{\"extraData\":\"0x" + std::string(4000, 'a') + "\"}";
    test::FakeUpstream node(31337, test::on("eth_getBlockByHash", test::FakeReply::ok(big)));
    start(std::vector<std::string>{node.url()}, [](config::Config& c) {
        c.chains[0].cache.enabled = true;
        c.chains[0].cache.max_bytes = 64 * 1024;
    });
    wait_ready();
    for (int i = 0; i < 300; ++i) {
        const std::string hash = fmt::format("0x{:064x}", i);
        auto r = post(R"({"jsonrpc":"2.0","id":1,"method":"eth_getBlockByHash","params":[")" +
                      hash + R"(",false]})");
        ASSERT_EQ(r.status, 200u) << r.body;
    }
    const json::value chains = json::parse(test::http_get(admin_port(), "/admin/chains").body);
    const json::value& cache = chains.at("chains").at(0).at("cache");
    const auto bytes = cache.at("bytes").to_number<std::uint64_t>();
    const auto entries = cache.at("entries").to_number<std::uint64_t>();
    EXPECT_LE(bytes, 64u * 1024);
    EXPECT_GT(entries, 10u);
    EXPECT_LT(entries, 300u);
    const std::string text = http_metrics();
    EXPECT_THAT(text, HasSubstr(fmt::format(R"(gateway_cache_bytes{{chain="devnet"}} {})", bytes)));
    EXPECT_THAT(
        text,
        HasSubstr(fmt::format(
            R"(gateway_cache_evictions_total{{chain="devnet",method="eth_getBlockByHash"}} {})",
            300 - entries)));
    // The newest are kept: read again, they come from the cache.
    auto again = post(R"({"jsonrpc":"2.0","id":1,"method":"eth_getBlockByHash","params":[")" +
                      fmt::format("0x{:064x}", 299) + R"(",false]})");
    EXPECT_EQ(again.header("x-gateway-cache"), "hit");
    EXPECT_EQ(node.calls("eth_getBlockByHash"), 300u);
}

}  // namespace
}  // namespace gateway::cache
