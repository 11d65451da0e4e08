// How node answers are classified: transport failures, HTTP answers and JSON-RPC errors, and the
// rules for which error another node may answer differently.

#include "gateway/upstream/errors.hpp"

#include <gtest/gtest.h>

namespace gateway::upstream {
namespace {

using namespace std::chrono_literals;

TEST(ErrorRules, NodeAnswersFromTheSpec) {
    // Deterministic: the call's own answer, whatever the code wraps it in.
    EXPECT_EQ(classify_rpc_error(3, "execution reverted: not owner"), ErrorClass::deterministic);
    EXPECT_EQ(classify_rpc_error(-32000, "execution reverted"), ErrorClass::deterministic);
    EXPECT_EQ(classify_rpc_error(-32603, "nonce too low: next nonce 5, tx nonce 4"),
              ErrorClass::deterministic);
    EXPECT_EQ(classify_rpc_error(-32001, "Nonce too low"), ErrorClass::deterministic);
    EXPECT_EQ(classify_rpc_error(-32000, "replacement transaction underpriced"),
              ErrorClass::deterministic);
    EXPECT_EQ(classify_rpc_error(-32000, "insufficient funds for gas * price + value"),
              ErrorClass::deterministic);
    EXPECT_EQ(classify_rpc_error(-32000, "transaction already imported"),
              ErrorClass::deterministic);
    EXPECT_EQ(classify_rpc_error(-32602, "invalid argument 0: hex string without 0x prefix"),
              ErrorClass::deterministic);
    EXPECT_EQ(classify_rpc_error(-32000, "something nobody has seen"), ErrorClass::deterministic);
    // Rate limits.
    EXPECT_EQ(classify_rpc_error(-32005, "limit exceeded"), ErrorClass::rate_limited);
    EXPECT_EQ(classify_rpc_error(
                  -32000, "Your app has exceeded its compute units per second capacity exceeded"),
              ErrorClass::rate_limited);
    EXPECT_EQ(classify_rpc_error(429, "Too Many Requests"), ErrorClass::rate_limited);
    // What the call asks for is not on this node (behind, pruned, or nobody has it).
    EXPECT_EQ(classify_rpc_error(-32000, "header not found"), ErrorClass::missing);
    EXPECT_EQ(classify_rpc_error(-32000, "unknown block"), ErrorClass::missing);
    EXPECT_EQ(classify_rpc_error(-32000, "missing trie node 1a2b (path )"), ErrorClass::missing);
    EXPECT_EQ(classify_rpc_error(-32000, "required historical state unavailable"),
              ErrorClass::missing);
    EXPECT_EQ(classify_rpc_error(-32000, "transaction not found"), ErrorClass::missing);
    // A node syncing or briefly broken.
    EXPECT_EQ(classify_rpc_error(-32000, "node is syncing"), ErrorClass::transient);
    EXPECT_EQ(classify_rpc_error(-32603, "internal error"), ErrorClass::transient);
    // Methods a node does not serve.
    EXPECT_EQ(
        classify_rpc_error(-32601, "the method debug_traceCall does not exist/is not available"),
        ErrorClass::unsupported);
    EXPECT_EQ(classify_rpc_error(-32000, "Method not found"), ErrorClass::unsupported);
    // A method name in a message is not a state.
    EXPECT_EQ(classify_rpc_error(-32601, "the method eth_syncing does not exist/is not available"),
              ErrorClass::unsupported);
}

HttpResult http(unsigned status, std::string body) {
    HttpResult r;
    r.status = status;
    r.body = std::move(body);
    r.maybe_delivered = true;
    return r;
}

TEST(Classify, TransportFailures) {
    HttpResult refused;
    refused.error = TransportError::connect_failed;
    refused.detail = "Connection refused";
    Attempt a = classify(refused, 1);
    EXPECT_EQ(a.kind, Attempt::Kind::transport);
    EXPECT_EQ(a.label, "connect_failed");
    EXPECT_FALSE(a.maybe_delivered);
    EXPECT_TRUE(a.node_fault);

    HttpResult slow;
    slow.error = TransportError::timeout;
    slow.maybe_delivered = true;
    a = classify(slow, 1);
    EXPECT_TRUE(a.maybe_delivered);
    EXPECT_FALSE(a.node_fault) << "slowness is the probes' business";
}

TEST(Classify, HttpAnswers) {
    HttpResult limited = http(429, "");
    limited.retry_after = 7s;
    Attempt a = classify(limited, 1);
    EXPECT_EQ(a.kind, Attempt::Kind::http_error);
    EXPECT_TRUE(a.throttled);
    EXPECT_FALSE(a.node_fault);
    EXPECT_FALSE(a.maybe_delivered);
    EXPECT_EQ(a.retry_after, 7s);
    EXPECT_EQ(a.detail, "HTTP 429 (retry after 7s)");

    a = classify(http(503, "<html>"), 1);
    EXPECT_EQ(a.kind, Attempt::Kind::http_error);
    EXPECT_TRUE(a.node_fault);
    EXPECT_TRUE(a.maybe_delivered) << "a proxy's 503 does not prove the node did nothing";

    a = classify(http(200, R"({"jsonrpc":"2.0","id":1,"result":"0x)"), 1);
    EXPECT_EQ(a.kind, Attempt::Kind::http_error);
    EXPECT_EQ(a.label, "bad_response");

    // A 4xx about the request (too large, unreadable) is not held against the node.
    a = classify(http(413, "Payload Too Large"), 1);
    EXPECT_EQ(a.kind, Attempt::Kind::http_error);
    EXPECT_FALSE(a.node_fault);
    EXPECT_FALSE(a.maybe_delivered);
    a = classify(http(401, "unauthorized"), 1);
    EXPECT_TRUE(a.node_fault) << "a gateway in front of the node refusing us is about the node";

    // A node that answers HTTP 400 with a JSON-RPC error has answered.
    a = classify(
        http(400, R"({"jsonrpc":"2.0","id":1,"error":{"code":-32602,"message":"invalid params"}})"),
        1);
    EXPECT_EQ(a.kind, Attempt::Kind::answered);
}

TEST(Classify, JsonRpcErrors) {
    Attempt a = classify(http(200, R"({"jsonrpc":"2.0","id":1,"result":"0x1"})"), 1);
    EXPECT_EQ(a.kind, Attempt::Kind::answered);

    a = classify(
        http(200, R"({"jsonrpc":"2.0","id":1,"error":{"code":3,"message":"execution reverted"}})"),
        1);
    EXPECT_EQ(a.kind, Attempt::Kind::answered);
    ASSERT_TRUE(a.reply && a.reply->is_error());

    a = classify(
        http(200,
             R"({"jsonrpc":"2.0","id":1,"error":{"code":-32000,"message":"header not found"}})"),
        1);
    EXPECT_EQ(a.kind, Attempt::Kind::rpc_error);
    EXPECT_EQ(a.error_class, ErrorClass::missing);
    EXPECT_FALSE(a.node_fault) << "a node that answers works; the answer is about the call";
    EXPECT_FALSE(a.maybe_delivered);

    a = classify(
        http(200, R"({"jsonrpc":"2.0","id":1,"error":{"code":-32603,"message":"internal error"}})"),
        1);
    EXPECT_EQ(a.error_class, ErrorClass::transient);
    EXPECT_FALSE(a.node_fault) << "an answer about one call is no verdict on the node";
    EXPECT_TRUE(a.maybe_delivered);

    a = classify(
        http(200, R"({"jsonrpc":"2.0","id":1,"error":{"code":-32005,"message":"rate limited"}})"),
        1);
    EXPECT_EQ(a.error_class, ErrorClass::rate_limited);
    EXPECT_TRUE(a.throttled);
    EXPECT_FALSE(a.maybe_delivered);
    EXPECT_FALSE(a.node_fault);

    a = classify(
        http(200,
             R"({"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"method not found"}})"),
        1);
    EXPECT_EQ(a.error_class, ErrorClass::unsupported);
    EXPECT_FALSE(a.maybe_delivered);
}

// Found by the fuzzer (tests/fuzz/classify): the detail quotes a node's message shortened to 200
// bytes, and it reaches clients in JSON ("every upstream of chain ... failed: ..."). A cut inside
// a character made it invalid UTF-8.
TEST(Classify, AShortenedNodeMessageKeepsWholeCharacters) {
    std::string message = "header not found ";  // 17 bytes, then 2-byte characters
    for (int i = 0; i < 100; ++i) message += "\u00e9";
    const Attempt a =
        classify(http(200, R"({"jsonrpc":"2.0","id":1,"error":{"code":-32000,"message":")" +
                               message + "\"}}"),
                 1);
    ASSERT_EQ(a.kind, Attempt::Kind::rpc_error);
    std::string expected = "header not found ";
    for (int i = 0; i < 91; ++i) expected += "\xc3\xa9";  // 199 bytes: the 92nd is left out whole
    EXPECT_EQ(a.detail, expected + " (-32000)");
}

}  // namespace
}  // namespace gateway::upstream
