// A client's batch sent to the whole gateway, in-process, in front of fake nodes: its plain reads
// go to one node as one batch (ids kept, answers in the client's order); a node that refuses
// batches gets the calls one by one, and no more batches; a node error another node may not give
// sends that call alone.
#include "support/gateway_fixture.hpp"

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

namespace gateway::test {
namespace {

namespace json = boost::json;
using ::testing::HasSubstr;

std::string balance_call(const std::string& id, int address) {
    return fmt::format(
        R"({{"jsonrpc":"2.0","id":{},"method":"eth_getBalance","params":["0x{:040x}","latest"]}})",
        id, address);
}

// A batch of `n` eth_getBalance calls, ids and addresses 1 to n.
std::string balance_batch(int n) {
    std::string body = "[";
    for (int i = 1; i <= n; ++i) body += (i > 1 ? "," : "") + balance_call(std::to_string(i), i);
    return body + "]";
}

// Answers eth_getBalance with the address's last byte, so that each answer says whose it is.
FakeUpstream::Script balances() {
    return [](const std::string& m, const json::value& request) -> std::optional<FakeReply> {
        if (m != "eth_getBalance") return std::nullopt;
        const std::string address(request.at("params").at(0).as_string());
        return FakeReply::ok("\"0x" + address.substr(address.size() - 2) + "\"");
    };
}

// balances(), but a request holding a call for an address ending in ff is refused whole with HTTP
// 413 (a batch too large for the node, as a provider says it).
FakeUpstream::Script balances_refusing_ff() {
    return [](const std::string& m, const json::value& request) -> std::optional<FakeReply> {
        if (m != "eth_getBalance") return std::nullopt;
        const std::string address(request.at("params").at(0).as_string());
        if (address.ends_with("ff")) return FakeReply::http(413, "request entity too large");
        return FakeReply::ok("\"0x" + address.substr(address.size() - 2) + "\"");
    };
}

class BatchTest : public GatewayTest {};

TEST_F(BatchTest, ReadsOfABatchGoUpstreamAsOneBatchAndKeepTheirIdsAndOrder) {
    FakeUpstream node(31337, balances());
    node.set_batches(true);
    start({node.url()});
    wait_ready();
    const std::string body = "[" + balance_call("\"a\"", 1) + "," + balance_call("7", 2) +
                             R"(,{"jsonrpc":"2.0","id":3,"method":"eth_chainId"},)" +
                             balance_call("1.50", 3) +
                             R"(,{"jsonrpc":"2.0","id":5,"method":"eth_blockNumber"},{"bad":1},)" +
                             balance_call("null", 4) + "]";
    auto r = post(body);
    ASSERT_EQ(r.status, 200u) << r.body;
    const json::array answers = json::parse(r.body).as_array();
    ASSERT_EQ(answers.size(), 7u) << r.body;
    EXPECT_EQ(answers[0].at("id"), "a");
    EXPECT_EQ(answers[0].at("result"), "0x01");
    EXPECT_EQ(answers[1].at("id"), 7);
    EXPECT_EQ(answers[1].at("result"), "0x02");
    EXPECT_EQ(answers[2].at("result"), "0x7a69");  // the gateway's own
    EXPECT_THAT(r.body, HasSubstr(R"("id":1.50,"result":"0x03")")) << "the id as sent";
    EXPECT_EQ(answers[4].at("result"), "0x10");  // eth_blockNumber: alone, never decreasing
    EXPECT_EQ(answers[5].at("error").at("code"), -32600);
    EXPECT_EQ(answers[6].at("id"), nullptr);
    EXPECT_EQ(answers[6].at("result"), "0x04");
    EXPECT_EQ(node.calls("(batch)"), 1u);
    EXPECT_EQ(node.calls("eth_getBalance"), 4u);
    // Counted once for the four, as four.
    EXPECT_THAT(
        http_metrics(),
        HasSubstr(
            R"(gateway_requests_total{chain="devnet",method="eth_getBalance",outcome="ok"} 4)"));
    EXPECT_THAT(
        http_metrics(),
        HasSubstr(
            R"(gateway_request_duration_seconds_count{chain="devnet",method="eth_getBalance"} 4)"));
    EXPECT_THAT(
        http_metrics(),
        HasSubstr(
            R"(gateway_upstream_requests_total{chain="devnet",method="batch",upstream="node-0"} 1)"));
}

// A client batch larger than the node's max_batch_size goes as several upstream batches, at once:
// none of its calls is left to go alone.
TEST_F(BatchTest, ABatchLargerThanTheNodesBatchSizeGoesAsSeveralUpstreamBatches) {
    FakeUpstream node(31337, balances());
    node.set_batches(true);
    start({node.url()}, [](config::Config& c) { c.chains[0].upstreams[0].max_batch_size = 3; });
    wait_ready();
    auto r = post(balance_batch(8));
    ASSERT_EQ(r.status, 200u) << r.body;
    const json::array answers = json::parse(r.body).as_array();
    ASSERT_EQ(answers.size(), 8u) << r.body;
    for (int i = 1; i <= 8; ++i) {
        EXPECT_EQ(answers[i - 1].at("id"), i) << r.body;
        EXPECT_EQ(answers[i - 1].at("result").as_string(), fmt::format("0x{:02x}", i)) << r.body;
    }
    EXPECT_EQ(node.calls("(batch)"), 3u) << "3 + 3 + 2 calls";
    EXPECT_EQ(node.calls("eth_getBalance"), 8u) << "none of them alone";
    EXPECT_THAT(
        http_metrics(),
        HasSubstr(
            R"(gateway_upstream_requests_total{chain="devnet",method="batch",upstream="node-0"} 3)"));
}

// A client batch of many parts does not take a node's connections for itself: at most four of its
// parts are at the node at once.
TEST_F(BatchTest, AtMostFourPartsOfAClientBatchAreAtTheNodeAtOnce) {
    FakeUpstream node(
        31337, [](const std::string& m, const json::value& request) -> std::optional<FakeReply> {
            if (m != "eth_getBalance") return std::nullopt;
            const std::string address(request.at("params").at(0).as_string());
            FakeReply reply = FakeReply::ok("\"0x" + address.substr(address.size() - 2) + "\"");
            reply.delay = std::chrono::milliseconds(30);
            return reply;
        });
    node.set_batches(true);  // a batch's calls one after the other: one in flight per batch
    start({node.url()}, [](config::Config& c) { c.chains[0].upstreams[0].max_batch_size = 2; });
    wait_ready();
    auto r = post(balance_batch(24));
    ASSERT_EQ(r.status, 200u) << r.body;
    const json::array answers = json::parse(r.body).as_array();
    ASSERT_EQ(answers.size(), 24u);
    for (int i = 1; i <= 24; ++i)
        EXPECT_EQ(answers[i - 1].at("result").as_string(), fmt::format("0x{:02x}", i));
    EXPECT_EQ(node.calls("(batch)"), 12u);
    EXPECT_EQ(node.calls("eth_getBalance"), 24u);
    EXPECT_LE(node.max_in_flight(), 4u);
    EXPECT_GE(node.max_in_flight(), 2u) << "the parts go at once, not one after the other";
}

// The answers of a batch's parts are held until all are in: once they pass the batch's answer
// limit, the parts left are not sent (the calls left are refused, as for any batch over it).
TEST_F(BatchTest, PartsOfABatchAreNotSentOnceTheAnswersHeldPassTheLimit) {
    FakeUpstream node(
        31337, [](const std::string& m, const json::value&) -> std::optional<FakeReply> {
            if (m != "eth_getBalance") return std::nullopt;
            return FakeReply::ok("\"0x" + std::string(200, 'a') + "\"");  // about 250 bytes
        });
    node.set_batches(true);
    start({node.url()}, [](config::Config& c) {
        c.chains[0].upstreams[0].max_batch_size = 2;
        c.server.max_batch_response_bytes = 1200;  // about 2 parts' answers
    });
    wait_ready();
    auto r = post(balance_batch(24));
    ASSERT_EQ(r.status, 200u) << r.body;
    const json::array answers = json::parse(r.body).as_array();
    ASSERT_EQ(answers.size(), 24u);
    EXPECT_EQ(answers.back().at("error").at("code"), -32005) << r.body;
    // Four at once, and one more for each of the first two answers held: then the limit.
    EXPECT_GE(node.calls("(batch)"), 4u);
    EXPECT_LE(node.calls("(batch)"), 6u) << "not every part of the batch";
}

// One part of a client batch the node refuses (HTTP 413): the other parts' answers stand, and only
// that part's calls go alone.
TEST_F(BatchTest, APartOfABatchTheNodeRefusesGoesCallByCallAndTheOtherPartsStand) {
    FakeUpstream node(31337, balances_refusing_ff());
    node.set_batches(true);
    start({node.url()}, [](config::Config& c) { c.chains[0].upstreams[0].max_batch_size = 2; });
    wait_ready();
    // How many times the refused call is tried when it goes alone (the failover's attempts).
    post(balance_call("0", 0xff));  // not answered (503): no node takes it
    const std::size_t alone = node.calls("eth_getBalance");
    ASSERT_GE(alone, 1u);
    auto r = post("[" + balance_call("1", 1) + "," + balance_call("2", 2) + "," +
                  balance_call("3", 3) + "," + balance_call("4", 0xff) + "]");
    ASSERT_EQ(r.status, 200u) << r.body;
    const json::array answers = json::parse(r.body).as_array();
    ASSERT_EQ(answers.size(), 4u) << r.body;
    EXPECT_EQ(answers[0].at("result"), "0x01") << r.body;
    EXPECT_EQ(answers[1].at("result"), "0x02") << r.body;
    EXPECT_EQ(answers[2].at("result"), "0x03") << r.body;
    EXPECT_TRUE(answers[3].as_object().contains("error")) << r.body;
    EXPECT_EQ(node.calls("(batch)"), 2u);
    // 4 in the batches; then the refused part's two calls alone: 3 once, 0xff as before.
    EXPECT_EQ(node.calls("eth_getBalance"), alone + 4 + 1 + alone);
    EXPECT_EQ(upstream("node-0").at("breaker"), "closed");
}

// Every call of a batch answered by one upstream batch, then every call from the cache: nothing
// is left for the batch's workers, and nothing else reaches the node. A notification gets no
// answer either way.
TEST_F(BatchTest, ABatchAnsweredWhollyByOneUpstreamBatchThenWhollyFromTheCache) {
    FakeUpstream node(31337, balances());
    node.set_batches(true);
    start({node.url()}, [](config::Config& c) { c.chains[0].cache.enabled = true; });
    wait_ready();
    const std::string body =
        "[" + balance_call("1", 1) + "," + balance_call("\"b\"", 2) + "," +
        fmt::format(
            R"({{"jsonrpc":"2.0","method":"eth_getBalance","params":["0x{:040x}","latest"]}})", 3) +
        "]";
    for (int round = 0; round < 2; ++round) {
        auto r = post(body);
        ASSERT_EQ(r.status, 200u) << r.body;
        const json::array answers = json::parse(r.body).as_array();
        ASSERT_EQ(answers.size(), 2u) << r.body;
        EXPECT_EQ(answers[0].at("id"), 1);
        EXPECT_EQ(answers[0].at("result"), "0x01");
        EXPECT_EQ(answers[1].at("id"), "b");
        EXPECT_EQ(answers[1].at("result"), "0x02");
        EXPECT_EQ(r.header("x-gateway-cache"), round == 0 ? "" : "hit") << round;
        EXPECT_EQ(node.calls("(batch)"), 1u) << round;
        EXPECT_EQ(node.calls("eth_getBalance"), 3u) << round;
    }
    // Three calls a round, the notification too, from the node and then from the cache.
    EXPECT_THAT(
        http_metrics(),
        HasSubstr(
            R"(gateway_requests_total{chain="devnet",method="eth_getBalance",outcome="ok"} 6)"));
}

TEST_F(BatchTest, ANodeThatRefusesBatchesGetsTheCallsOneByOneAndNoMoreBatches) {
    FakeUpstream node(31337, balances());  // answers a batch with HTTP 400
    start({node.url()});
    wait_ready();
    const std::string body = "[" + balance_call("1", 1) + "," + balance_call("2", 2) + "]";
    for (int round = 0; round < 2; ++round) {
        auto r = post(body);
        ASSERT_EQ(r.status, 200u) << r.body;
        const json::array answers = json::parse(r.body).as_array();
        EXPECT_EQ(answers.at(0).at("result"), "0x01") << r.body;
        EXPECT_EQ(answers.at(1).at("result"), "0x02") << r.body;
    }
    EXPECT_EQ(node.calls("(batch)"), 1u) << "asked once";
    EXPECT_EQ(node.calls("eth_getBalance"), 4u);
    EXPECT_EQ(upstream("node-0").at("state"), "up") << "refusing batches is no fault";
}

// HTTP 413 says this batch was too large for the node, not that it takes no batches: a client
// cannot turn batching off for everyone with one oversized batch.
TEST_F(BatchTest, ABatchTooLargeForTheNodeDoesNotStopBatchingForEveryone) {
    FakeUpstream node(31337, balances_refusing_ff());
    node.set_batches(true);
    start({node.url()});
    wait_ready();
    auto r = post("[" + balance_call("1", 1) + "," + balance_call("2", 0xff) + "]");
    ASSERT_EQ(r.status, 200u) << r.body;
    EXPECT_EQ(json::parse(r.body).as_array().at(0).at("result"), "0x01") << r.body;
    r = post("[" + balance_call("1", 1) + "," + balance_call("2", 2) + "]");
    ASSERT_EQ(r.status, 200u) << r.body;
    EXPECT_EQ(json::parse(r.body).as_array().at(1).at("result"), "0x02") << r.body;
    EXPECT_EQ(node.calls("(batch)"), 2u) << "the next batch went as a batch";
    EXPECT_EQ(upstream("node-0").at("breaker"), "closed");
}

TEST_F(BatchTest, ACallTheNodeCannotAnswerNowIsSentAloneToAnotherNode) {
    // node-0 is behind for address 2 (a transient error); node-1 answers it.
    FakeUpstream behind(
        31337, [](const std::string& m, const json::value& request) -> std::optional<FakeReply> {
            if (m != "eth_getBalance") return std::nullopt;
            const std::string address(request.at("params").at(0).as_string());
            if (address.ends_with("02")) return FakeReply::rpc_error(-32000, "header not found");
            return FakeReply::ok("\"0x" + address.substr(address.size() - 2) + "\"");
        });
    behind.set_batches(true);
    FakeUpstream other(31337, balances());
    start({behind.url(), other.url()}, first_is_primary);
    wait_ready();
    auto r = post("[" + balance_call("1", 1) + "," + balance_call("2", 2) + "," +
                  balance_call("3", 3) + "]");
    const json::array answers = json::parse(r.body).as_array();
    EXPECT_EQ(answers.at(0).at("result"), "0x01") << r.body;
    EXPECT_EQ(answers.at(1).at("result"), "0x02") << r.body;
    EXPECT_EQ(answers.at(2).at("result"), "0x03") << r.body;
    EXPECT_EQ(behind.calls("(batch)"), 1u);
    EXPECT_EQ(other.calls("eth_getBalance"), 1u) << "only the call node-0 could not answer";
}

}  // namespace
}  // namespace gateway::test
