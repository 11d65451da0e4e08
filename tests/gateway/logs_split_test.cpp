// eth_getLogs split by the whole gateway, in-process in front of fake nodes, does bounded work: its
// parts are made as they are fetched and capped in number, and its answer is capped in bytes, alone
// and inside a batch.

#include "support/gateway_fixture.hpp"

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <boost/json/serialize.hpp>

namespace gateway {
namespace {

using ::testing::HasSubstr;
namespace json = boost::json;
using test::FakeReply;
using test::FakeUpstream;
using test::GatewayTest;

// A node at block 0x64 answering each eth_getLogs with one log of `size` bytes or so.
FakeUpstream::Script logs_of_size(std::size_t size) {
    return [=](const std::string& m, const json::value&) -> std::optional<FakeReply> {
        if (m == "eth_blockNumber") return FakeReply::ok("\"0x64\"");
        if (m != "eth_getLogs") return std::nullopt;
        return FakeReply::ok(fmt::format(R"([{{"data":"0x{}"}}])", std::string(size, 'a')));
    };
}

json::value error_of(const test::HttpReply& r) {
    return json::parse(r.body).at("error");
}

TEST_F(GatewayTest, ALogRangeNeedingMorePartsThanTheCapIsRefusedAtOnceNamingTheLargestRange) {
    FakeUpstream node(31337, logs_of_size(10));
    start({node.url()}, [](config::Config& c) {
        c.chains[0].upstreams[0].max_logs_range = 10;
        c.chains[0].logs.max_parts = 3;
    });
    wait_ready();
    // 32 blocks are 4 parts of 10: one more than the cap.
    auto r = post(
        R"({"jsonrpc":"2.0","id":1,"method":"eth_getLogs","params":[{"fromBlock":"0x1","toBlock":"0x20"}]})");
    EXPECT_EQ(error_of(r).at("code"), -32005);
    EXPECT_THAT(std::string(error_of(r).at("message").as_string()),
                HasSubstr("would take 4 requests of 10 blocks (max_logs_range), more than "
                          "logs.max_parts 3: ask for at most 30 blocks at once"));
    // The whole 64-bit range: refused as fast, nothing built, nothing sent.
    const auto t0 = std::chrono::steady_clock::now();
    r = post(
        R"({"jsonrpc":"2.0","id":2,"method":"eth_getLogs","params":[{"fromBlock":"0x0","toBlock":"0xffffffffffffffff"}]})");
    EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(2));
    EXPECT_EQ(error_of(r).at("code"), -32005);
    EXPECT_THAT(std::string(error_of(r).at("message").as_string()),
                HasSubstr("0..18446744073709551615"));
    EXPECT_EQ(node.calls("eth_getLogs"), 0u);
    // 30 blocks are served: 3 parts.
    r = post(
        R"({"jsonrpc":"2.0","id":3,"method":"eth_getLogs","params":[{"fromBlock":"0x1","toBlock":"0x1e"}]})");
    EXPECT_TRUE(json::parse(r.body).as_object().contains("result")) << r.body;
    EXPECT_EQ(node.calls("eth_getLogs"), 3u);
}

TEST_F(GatewayTest, AMergedLogAnswerStopsAtTheSmallestMaxResponseBytesOfItsUpstreams) {
    FakeUpstream node(31337, logs_of_size(600));
    start({node.url()}, [](config::Config& c) {
        c.chains[0].upstreams[0].max_logs_range = 10;
        c.chains[0].upstreams[0].max_response_bytes = 1024;
        c.chains[0].logs.concurrency = 1;
    });
    wait_ready();
    auto r = post(
        R"({"jsonrpc":"2.0","id":1,"method":"eth_getLogs","params":[{"fromBlock":"0x1","toBlock":"0x60"}]})");
    EXPECT_EQ(error_of(r).at("code"), -32005);
    EXPECT_THAT(std::string(error_of(r).at("message").as_string()),
                HasSubstr("the logs pass 1024 bytes"));
    // The second part passed the bound: no third was asked for.
    EXPECT_EQ(node.calls("eth_getLogs"), 2u);
}

TEST_F(GatewayTest, ASplitLogAnswerInABatchCountsAgainstTheBatchAsItsPartsArrive) {
    FakeUpstream node(31337, logs_of_size(400));
    start({node.url()}, [](config::Config& c) {
        c.chains[0].upstreams[0].max_logs_range = 10;
        c.chains[0].logs.concurrency = 1;
        c.server.max_batch_response_bytes = 1024;
    });
    wait_ready();
    auto r = post(
        R"([{"jsonrpc":"2.0","id":1,"method":"eth_getLogs","params":[{"fromBlock":"0x1","toBlock":"0x60"}]},)"
        R"({"jsonrpc":"2.0","id":2,"method":"eth_chainId"}])");
    const json::array answers = json::parse(r.body).as_array();
    ASSERT_EQ(answers.size(), 2u) << r.body;
    const json::value& logs = answers[0].at("id") == 1 ? answers[0] : answers[1];
    EXPECT_EQ(logs.at("error").at("code"), -32005) << r.body;
    EXPECT_THAT(std::string(logs.at("error").at("message").as_string()),
                HasSubstr("batch answer too large: over 1024 bytes"));
    EXPECT_EQ(node.calls("eth_getLogs"), 3u) << "three parts of ~400 bytes pass 1024";
    EXPECT_LT(r.body.size(), 2048u);
    // Alone, the same range is answered whole (no batch limit applies).
    r = post(
        R"({"jsonrpc":"2.0","id":1,"method":"eth_getLogs","params":[{"fromBlock":"0x1","toBlock":"0x60"}]})");
    EXPECT_EQ(json::parse(r.body).at("result").as_array().size(), 10u);
}

}  // namespace
}  // namespace gateway
