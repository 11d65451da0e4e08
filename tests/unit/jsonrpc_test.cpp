// JSON-RPC: requests parsed (single calls and batches, ids kept as sent, notifications, every
// malformed or oversized request answered as the spec says), responses written, and node replies
// and batch replies parsed and split.

#include "gateway/jsonrpc/jsonrpc.hpp"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <random>

namespace gateway::jsonrpc {
namespace {

namespace json = boost::json;

const ParseLimits kLimits{};

const Call& call_at(const Request& r, std::size_t i) {
    return std::get<Call>(r.entries.at(i));
}
const InvalidCall& invalid_at(const Request& r, std::size_t i) {
    return std::get<InvalidCall>(r.entries.at(i));
}

TEST(ParseRequest, SingleCall) {
    auto r = parse_request(R"({"jsonrpc":"2.0","id":1,"method":"eth_blockNumber","params":[]})",
                           kLimits);
    ASSERT_TRUE(r);
    EXPECT_FALSE(r->batch);
    ASSERT_EQ(r->entries.size(), 1u);
    const Call& c = call_at(*r, 0);
    EXPECT_EQ(c.id, "1");
    EXPECT_EQ(c.method, "eth_blockNumber");
    EXPECT_FALSE(c.notification);
    EXPECT_TRUE(c.params.is_array());
}

TEST(ParseRequest, IdsKeepTheirExactText) {
    // Numbers keep their spelling, big numbers keep every digit, strings stay strings.
    const char* ids[] = {
        "0",        "-7",     "1.50", "1e3",  "12345678901234567890123", "18446744073709551615",
        R"("abc")", R"("7")", "null", R"("")"};
    for (const char* id : ids) {
        std::string body = std::string(R"({"jsonrpc":"2.0","method":"m","id":)") + id + "}";
        auto r = parse_request(body, kLimits);
        ASSERT_TRUE(r) << body;
        EXPECT_EQ(call_at(*r, 0).id, id) << body;
        EXPECT_FALSE(call_at(*r, 0).notification);
    }
}

TEST(ParseRequest, BatchIdsAreMatchedToTheirEntries) {
    auto r = parse_request(R"([{"jsonrpc":"2.0","id":1.0,"method":"a"},
                               {"jsonrpc":"2.0","method":"notify"},
                               {"jsonrpc":"2.0","id":"x","method":"b","params":{"k":1.25}},
                               {"jsonrpc":"2.0","id":2.50,"method":"c","params":[{"id":9.9}]}])",
                           kLimits);
    ASSERT_TRUE(r);
    EXPECT_TRUE(r->batch);
    ASSERT_EQ(r->entries.size(), 4u);
    EXPECT_EQ(call_at(*r, 0).id, "1.0");
    EXPECT_TRUE(call_at(*r, 1).notification);
    EXPECT_EQ(call_at(*r, 2).id, R"("x")");
    EXPECT_TRUE(call_at(*r, 2).params.is_object());
    // A nested "id" inside params is not the call's id.
    EXPECT_EQ(call_at(*r, 3).id, "2.50");
}

TEST(ParseRequest, NotificationHasNoId) {
    auto r = parse_request(R"({"jsonrpc":"2.0","method":"eth_blockNumber"})", kLimits);
    ASSERT_TRUE(r);
    EXPECT_TRUE(call_at(*r, 0).notification);
}

TEST(ParseRequest, MalformedJsonIsParseError) {
    for (const char* body :
         {"", "{", "{\"jsonrpc\":", "[1,2", "nul", "{\"a\":1}}", "\xff\xfe", "{'a':1}"}) {
        auto r = parse_request(body, kLimits);
        ASSERT_FALSE(r) << body;
        EXPECT_EQ(r.error().code, -32700) << body;
    }
}

TEST(ParseRequest, NothingOfABodyThatStoppedHalfwayCarriesOverToTheNext) {
    // Each thread keeps its parser: a body that stopped inside a batch's object, in a key, or at a
    // number out of range leaves that parser mid-way, and the next body on the thread is read
    // from the start (its numeric id keeps its text, which depends on where the parser is).
    const char* stopped[] = {
        R"([{"jsonrpc":"2.0","id":1.25,"method":"a","params":[{"k":[1,2)",
        R"({"jsonrpc":"2.0","id":3,"meth)",
        R"([{"jsonrpc":"2.0","id":4,"method":"a"},{"jsonrpc":"2.0","id":1e999,"method":"b"}])",
    };
    for (const char* body : stopped) {
        ASSERT_FALSE(parse_request(body, kLimits)) << body;
        auto r = parse_request(R"({"jsonrpc":"2.0","id":1.50,"method":"m","params":[]})", kLimits);
        ASSERT_TRUE(r) << "after " << body;
        EXPECT_FALSE(r->batch);
        ASSERT_EQ(r->entries.size(), 1u);
        EXPECT_EQ(call_at(*r, 0).id, "1.50") << "after " << body;
        EXPECT_EQ(call_at(*r, 0).method, "m");
    }
    // Past the batch limit, then a batch within it.
    ASSERT_FALSE(parse_request(R"([{"jsonrpc":"2.0","id":1,"method":"a"},
                                   {"jsonrpc":"2.0","id":2,"method":"b"}])",
                               ParseLimits{1}));
    auto r = parse_request(R"([{"jsonrpc":"2.0","id":7.0,"method":"a"}])", ParseLimits{1});
    ASSERT_TRUE(r);
    EXPECT_EQ(call_at(*r, 0).id, "7.0");
}

TEST(ParseRequest, ACallsParamsOutliveTheNextBodysParse) {
    // A thread keeps its parser and reuses it for the next body: the params a call keeps are its
    // own, in the heap, intact after any number of parses since.
    auto first = parse_request(
        R"([{"jsonrpc":"2.0","id":1,"method":"eth_call","params":[{"to":"0x70997970c51812dc3a010c7d01b50e0d17dc79c8","data":"0x06fdde03"},"latest"]}])",
        kLimits);
    ASSERT_TRUE(first);
    for (int i = 0; i < 50; ++i) {
        const std::string filler(2000 + i, static_cast<char>('a' + i % 26));
        ASSERT_TRUE(parse_request(R"({"jsonrpc":"2.0","id":2,"method":"m","params":[")" + filler +
                                      R"(",{"k":")" + filler + R"("}]})",
                                  kLimits));
    }
    const auto& params = call_at(*first, 0).params;
    ASSERT_TRUE(params.is_array());
    EXPECT_EQ(params.at(0).at("to").as_string(), "0x70997970c51812dc3a010c7d01b50e0d17dc79c8");
    EXPECT_EQ(params.at(0).at("data").as_string(), "0x06fdde03");
    EXPECT_EQ(params.at(1).as_string(), "latest");
    // In the default storage, every part of it (nothing in space the parser keeps).
    const boost::json::storage_ptr heap;
    EXPECT_EQ(params.storage(), heap);
    EXPECT_EQ(params.at(0).storage(), heap);
    EXPECT_EQ(params.at(0).at("to").storage(), heap);
    EXPECT_EQ(params.at(1).storage(), heap);
}

TEST(ParseRequest, ManyBodiesLargerThanTheThreadsTreeSpaceInARow) {
    // Body after body of 100 calls on the thread's parser: nothing it keeps grows from one to the
    // next (when the tree was built in 16 KiB the thread kept, Boost.JSON's release() doubled the
    // size of its next block with every such body, and an allocation failed after some fifty).
    std::string body = "[";
    for (int i = 0; i < 100; ++i)
        body += fmt::format(
            R"({}{{"jsonrpc":"2.0","id":{},"method":"eth_getBalance","params":["0x{:040x}","latest"]}})",
            i ? "," : "", i, i);
    body += "]";
    ASSERT_LT(body.size(), 64u * 1024) << "a body the thread's parser reads";
    for (int round = 0; round < 200; ++round) {
        auto r = parse_request(body, kLimits);
        ASSERT_TRUE(r) << round;
        ASSERT_EQ(r->entries.size(), 100u);
        EXPECT_EQ(call_at(*r, 99).params.at(0).as_string(), fmt::format("0x{:040x}", 99));
    }
}

TEST(ParseRequest, ALargeBodyIsReadWholeAndTheNextSmallOneToo) {
    // Over 64 KiB a body gets a parser of its own (the thread's keeps its small stacks).
    const std::string data(200 * 1024, 'a');
    auto big = parse_request(
        R"({"jsonrpc":"2.0","id":1.0,"method":"eth_call","params":[{"data":")" + data + R"("}]})",
        kLimits);
    ASSERT_TRUE(big);
    EXPECT_EQ(call_at(*big, 0).id, "1.0");
    EXPECT_EQ(call_at(*big, 0).params.at(0).at("data").as_string().size(), data.size());
    auto small = parse_request(R"({"jsonrpc":"2.0","id":2.0,"method":"m"})", kLimits);
    ASSERT_TRUE(small);
    EXPECT_EQ(call_at(*small, 0).id, "2.0");
}

TEST(ParseRequest, DeepNestingIsRefusedNotACrash) {
    std::string body(100000, '[');
    auto r = parse_request(body, kLimits);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, -32700);
}

// Found by fuzzing (tests/fuzz/request): Boost.JSON reads 1e999 as infinity and 0e999999 as NaN
// and writes them as Infinity and NaN, which are not JSON: the call went on to the node as a body
// that is not JSON. Such numbers are refused.
TEST(ParseRequest, NumbersJsonCannotWriteBackAreRefused) {
    for (const char* number : {"1e999", "-1e999", "0e999999"}) {
        auto r =
            parse_request(std::string(R"({"jsonrpc":"2.0","id":1,"method":"eth_call","params":[)") +
                              number + "]}",
                          kLimits);
        ASSERT_FALSE(r) << number;
        EXPECT_EQ(r.error().code, -32700);
        EXPECT_NE(r.error().message.find("out of range"), std::string::npos) << r.error().message;
        EXPECT_FALSE(parse_request(
            std::string(R"({"jsonrpc":"2.0","method":"m","id":)") + number + "}", kLimits))
            << number;
    }
    auto fine =
        parse_request(R"({"jsonrpc":"2.0","id":1,"method":"m","params":[1e300,1e-999]})", kLimits);
    ASSERT_TRUE(fine);
    EXPECT_EQ(upstream_request(1, "m", call_at(*fine, 0).params),
              R"({"jsonrpc":"2.0","id":1,"method":"m","params":[1E300,0E0]})");
}

TEST(ParseRequest, NeitherObjectNorArrayIsInvalidRequest) {
    for (const char* body : {"1", "\"eth_blockNumber\"", "null", "true"}) {
        auto r = parse_request(body, kLimits);
        ASSERT_FALSE(r) << body;
        EXPECT_EQ(r.error().code, -32600) << body;
    }
}

TEST(ParseRequest, EmptyBatchIsInvalidRequest) {
    auto r = parse_request("[]", kLimits);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, -32600);
    EXPECT_NE(r.error().message.find("empty batch"), std::string::npos);
}

TEST(ParseRequest, BatchOverTheLimitIsRefusedWithTheLimitNamed) {
    std::string body = "[";
    for (int i = 0; i < 4; ++i)
        body += std::string(i ? "," : "") + R"({"jsonrpc":"2.0","id":1,"method":"m"})";
    body += "]";
    auto r = parse_request(body, ParseLimits{3});
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, -32005);
    EXPECT_NE(r.error().message.find("batch too large: more than 3 calls"), std::string::npos);
    EXPECT_NE(r.error().message.find("server.max_batch_size"), std::string::npos);
    EXPECT_TRUE(parse_request(body, ParseLimits{4}));
}

TEST(ParseRequest, ABatchOverTheLimitIsRefusedBeforeTheRestOfItIsRead) {
    // The calls past the limit are not even JSON: the parser stopped before them, so the
    // answer is the batch limit, not a parse error.
    std::string body = "[";
    for (int i = 0; i < 3; ++i) body += R"({"jsonrpc":"2.0","id":1,"method":"m"},)";
    body += "1, {broken";
    auto r = parse_request(body, ParseLimits{3});
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, -32005);
    EXPECT_NE(r.error().message.find("more than 3 calls"), std::string::npos);
    // A single object with many members is not a batch.
    std::string object = R"({"jsonrpc":"2.0","id":1,"method":"m","params":[)";
    for (int i = 0; i < 10; ++i) object += std::string(i ? "," : "") + "1";
    object += "]}";
    EXPECT_TRUE(parse_request(object, ParseLimits{3}));
}

TEST(ParseRequest, InvalidEntriesAreAnsweredInPlace) {
    auto r = parse_request(R"([1,
        {"jsonrpc":"2.0","id":2},
        {"jsonrpc":"1.0","id":3,"method":"m"},
        {"id":4,"method":"m"},
        {"jsonrpc":"2.0","id":5,"method":7},
        {"jsonrpc":"2.0","id":6,"method":"m","params":"x"},
        {"jsonrpc":"2.0","id":[7],"method":"m"},
        {"jsonrpc":"2.0","id":{"a":1},"method":"m"},
        {"jsonrpc":"2.0","id":9,"method":""},
        {"jsonrpc":"2.0","id":10,"method":"ok"}])",
                           kLimits);
    ASSERT_TRUE(r);
    ASSERT_EQ(r->entries.size(), 10u);
    EXPECT_EQ(invalid_at(*r, 0).id, "null");
    EXPECT_EQ(invalid_at(*r, 1).id, "2");     // missing method
    EXPECT_EQ(invalid_at(*r, 2).id, "3");     // wrong jsonrpc
    EXPECT_EQ(invalid_at(*r, 3).id, "4");     // missing jsonrpc
    EXPECT_EQ(invalid_at(*r, 4).id, "5");     // method not a string
    EXPECT_EQ(invalid_at(*r, 5).id, "6");     // params not structured
    EXPECT_EQ(invalid_at(*r, 6).id, "null");  // id an array
    EXPECT_EQ(invalid_at(*r, 7).id, "null");  // id an object
    EXPECT_EQ(invalid_at(*r, 8).id, "9");     // empty method
    EXPECT_EQ(call_at(*r, 9).method, "ok");
    for (std::size_t i = 0; i < 9; ++i) EXPECT_EQ(invalid_at(*r, i).error.code, -32600) << i;
    EXPECT_NE(invalid_at(*r, 2).error.message.find("\"jsonrpc\" must be \"2.0\""),
              std::string::npos);
    EXPECT_NE(invalid_at(*r, 1).error.message.find("\"method\""), std::string::npos);
}

TEST(ParseRequest, AMemberGivenTwiceCountsAsItsLastAndOtherMembersAreReadPast) {
    // As a JSON object has them: the last of each name. What other members hold (calls and ids
    // of their own included) is not the call's.
    auto r = parse_request(
        R"([{"jsonrpc":"1.0","jsonrpc":"2.0","id":[1],"id":5,"method":7,"method":"b",
             "params":5,"params":[1,{"x":[2]}],
             "extra":{"id":9,"method":"evil","params":[[{}]]},"more":[1,{"a":"b"}],"n":1.5},
            {"jsonrpc":"2.0","id":6,"method":"c","method":8},
            {"jsonrpc":"2.0","id":7,"method":"c","params":[1],"params":null},
            {"jsonrpc":"2.0","id":8,"method":"c","params":[1],"params":"x"},
            {"jsonrpc":"2.0","i\u0064":"\u0041","me\u0074hod":"d\u0065"},
            {"jsonrpc":"2.0","id":10,"id":"z","method":"e"},
            {"jsonrpc":"2.0","id":11,"id":true,"method":"e"}])",
        kLimits);
    ASSERT_TRUE(r);
    ASSERT_EQ(r->entries.size(), 7u);
    EXPECT_EQ(call_at(*r, 0).id, "5");
    EXPECT_EQ(call_at(*r, 0).method, "b");
    EXPECT_EQ(json::serialize(call_at(*r, 0).params), R"([1,{"x":[2]}])");
    EXPECT_EQ(invalid_at(*r, 1).id, "6");
    EXPECT_NE(invalid_at(*r, 1).error.message.find("\"method\""), std::string::npos);
    EXPECT_TRUE(call_at(*r, 2).params.is_null());
    EXPECT_EQ(invalid_at(*r, 3).id, "8");
    EXPECT_NE(invalid_at(*r, 3).error.message.find("\"params\""), std::string::npos);
    EXPECT_EQ(call_at(*r, 4).id, R"("A")");
    EXPECT_EQ(call_at(*r, 4).method, "de");
    EXPECT_EQ(call_at(*r, 5).id, R"("z")");
    EXPECT_EQ(invalid_at(*r, 6).id, "null");
    // Each the same as Boost.JSON's own object would have it.
    const json::value tree = json::parse(R"({"a":1,"id":2,"params":[3],"id":4,"params":{"k":5}})");
    auto one = parse_request(
        R"({"jsonrpc":"2.0","method":"m","a":1,"id":2,"params":[3],"id":4,"params":{"k":5}})",
        kLimits);
    ASSERT_TRUE(one);
    EXPECT_EQ(call_at(*one, 0).id, json::serialize(tree.at("id")));
    EXPECT_EQ(call_at(*one, 0).params, tree.at("params"));
}

TEST(ParseRequest, SingleInvalidObjectIsAnInvalidEntry) {
    auto r = parse_request(R"({"jsonrpc":"2.0","id":"q"})", kLimits);
    ASSERT_TRUE(r);
    EXPECT_FALSE(r->batch);
    EXPECT_EQ(invalid_at(*r, 0).id, R"("q")");
    EXPECT_EQ(invalid_at(*r, 0).error.code, -32600);
}

TEST(Responses, ResultAndErrorShapes) {
    EXPECT_EQ(result_response("1", "\"0x10\""), R"({"jsonrpc":"2.0","id":1,"result":"0x10"})");
    json::value e =
        json::parse(error_response(R"("a")", Error(ErrorCode::invalid_request, "bad \"thing\"")));
    EXPECT_EQ(e.at("id"), "a");
    EXPECT_EQ(e.at("error").at("code"), -32600);
    EXPECT_EQ(e.at("error").at("message"), "bad \"thing\"");
    EXPECT_FALSE(e.at("error").as_object().contains("data"));
    json::value d = json::parse(
        error_response("null", Error(3, "execution reverted", json::value("0x08c379a0"))));
    EXPECT_EQ(d.at("error").at("data"), "0x08c379a0");
    EXPECT_TRUE(d.at("id").is_null());
    EXPECT_EQ(batch_response({"{\"a\":1}", "{\"b\":2}"}), "[{\"a\":1},{\"b\":2}]");
}

TEST(Responses, UpstreamRequestEscapesTheMethodAndDefaultsParams) {
    json::value v = json::parse(upstream_request(42, "eth_\"x", json::value()));
    EXPECT_EQ(v.at("id"), 42);
    EXPECT_EQ(v.at("method"), "eth_\"x");
    EXPECT_TRUE(v.at("params").as_array().empty());
    EXPECT_EQ(v.at("jsonrpc"), "2.0");
    json::value p = json::parse(upstream_request(1, "m", json::parse(R"({"a":[1,"b"]})")));
    EXPECT_EQ(p.at("params").at("a").at(1), "b");
}

TEST(ParseReply, DeepResultsSuchAsCallTracesPassThrough) {
    std::string deep;
    for (int i = 0; i < 5000; ++i) deep += "{\"calls\":[";
    for (int i = 0; i < 5000; ++i) deep += "]}";
    auto r = parse_reply(R"({"jsonrpc":"2.0","id":9,"result":)" + deep + "}", 9);
    ASSERT_TRUE(r) << r.error();
    EXPECT_EQ(*r->result, deep);
    EXPECT_FALSE(parse_reply(R"({"jsonrpc":"2.0","id":9,"result":)" + deep.substr(1) + "}", 9));
}

// Strings are skipped quote to quote: escaped quotes and runs of backslashes before a quote
// must not end them early or late.
TEST(ParseReply, StringsWithEscapedQuotesAndBackslashesKeepTheirExactText) {
    const std::string tricky = R"("a\"b\\\\\"c\\")";  // a"b\\"c\ : an escaped quote, then \\"
    auto r =
        parse_reply(R"({"id":3,"result":{"s":)" + tricky + R"(,"t":"}\\"},"jsonrpc":"2.0"})", 3);
    ASSERT_TRUE(r) << r.error();
    EXPECT_EQ(*r->result, R"({"s":)" + tricky + R"(,"t":"}\\"})");
    auto quoted = parse_reply(R"({"id":4,"result":"x\",}\"y","jsonrpc":"2.0"})", 4);
    ASSERT_TRUE(quoted) << quoted.error();
    EXPECT_EQ(*quoted->result, R"("x\",}\"y")");
    auto brace = parse_reply(R"({"id":4,"result":{"a":"\"}"},"jsonrpc":"2.0"})", 4);
    ASSERT_TRUE(brace) << brace.error();
    EXPECT_EQ(*brace->result, R"({"a":"\"}"})");
    auto plain = parse_reply(R"({"id":4,"result":"\\","jsonrpc":"2.0"})", 4);
    ASSERT_TRUE(plain) << plain.error();
    EXPECT_EQ(*plain->result, R"("\\")");
    const std::string big = "\"0x" + std::string(20000, 'a') + "\"";
    auto large = parse_reply(R"({"jsonrpc":"2.0","id":5,"result":)" + big + "}", 5);
    ASSERT_TRUE(large) << large.error();
    EXPECT_EQ(*large->result, big);
}

TEST(SplitBatchReply, EachAnswerByteForByteWithItsId) {
    const std::string body =
        " [ {\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{\"b\":1.50,\"a\":\"]}\"}} ,"
        "{\"id\":8,\"error\":{\"code\":-32000,\"message\":\"x\"}},"
        "{\"id\":\"s\",\"result\":1}, 5 ]\n";
    auto parts = split_batch_reply(body);
    ASSERT_TRUE(parts);
    ASSERT_EQ(parts->size(), 4u);
    EXPECT_EQ(parts->at(0).id, 7u);
    EXPECT_EQ(parts->at(0).text, R"({"jsonrpc":"2.0","id":7,"result":{"b":1.50,"a":"]}"}})");
    auto first = parse_reply(parts->at(0).text, 7);
    ASSERT_TRUE(first);
    EXPECT_EQ(*first->result, R"({"b":1.50,"a":"]}"})");
    EXPECT_EQ(parts->at(1).id, 8u);
    EXPECT_FALSE(parts->at(2).id) << "not one of our integer ids";
    EXPECT_FALSE(parts->at(3).id);
    EXPECT_EQ(split_batch_reply("[]")->size(), 0u);
    EXPECT_FALSE(split_batch_reply(R"({"id":1,"result":1})")) << "not a batch";
    EXPECT_FALSE(split_batch_reply(R"([{"id":1,"result":1})")) << "not JSON";
    EXPECT_FALSE(split_batch_reply("<html>busy</html>"));
}

// The fuzzer's check against a parsed document (tests/fuzz/batch_reply) showed that the raw reading
// must mean what a JSON parser means: a name may be written with escapes, and of repeated names
// the last one counts.
TEST(SplitBatchReply, MemberNamesMeanWhatJsonSaysEscapedOrRepeated) {
    auto parts = split_batch_reply(R"([{"jsonrpc":"2.0","\u0069d":1,"result":"0x1"},)"
                                   R"({"jsonrpc":"2.0","id":2,"id":"x","result":"0x2"},)"
                                   R"({"jsonrpc":"2.0","id":"x","id":3,"result":"0x3"}])");
    ASSERT_TRUE(parts);
    ASSERT_EQ(parts->size(), 3u);
    EXPECT_EQ(parts->at(0).id, 1u) << "\\u0069d is id";
    EXPECT_FALSE(parts->at(1).id) << "the last id is a string: no integer id";
    EXPECT_EQ(parts->at(2).id, 3u);
}

// An answer's id is ours only when JSON reads it as that non-negative integer: a number with a
// fraction or an exponent is not an integer, and 2^64 does not fit.
TEST(ParseReply, OnlyAnIntegerIdAsJsonReadsItMatches) {
    const auto matches = [](std::string_view id, std::uint64_t ours) {
        return static_cast<bool>(
            parse_reply(R"({"jsonrpc":"2.0","id":)" + std::string(id) + R"(,"result":1})", ours));
    };
    EXPECT_TRUE(matches("5", 5));
    EXPECT_TRUE(matches("0", 0));
    EXPECT_TRUE(matches("-0", 0)) << "JSON's -0 is the integer 0";
    EXPECT_TRUE(matches("18446744073709551615", 18446744073709551615u));
    EXPECT_FALSE(matches("18446744073709551616", 0));
    EXPECT_FALSE(matches("5e0", 5));
    EXPECT_FALSE(matches("5.0", 5));
    EXPECT_FALSE(matches("-5", 5));
    EXPECT_FALSE(matches("\"5\"", 5));
    EXPECT_FALSE(matches("null", 0));
    EXPECT_FALSE(matches("6", 5));
    auto parts = split_batch_reply(R"([{"id":-0,"result":1},{"id":5e0,"result":1},)"
                                   R"({"id":18446744073709551616,"result":1}])");
    ASSERT_TRUE(parts);
    EXPECT_EQ(parts->at(0).id, 0u);
    EXPECT_FALSE(parts->at(1).id);
    EXPECT_FALSE(parts->at(2).id);
}

// parse_valid_reply skips the validation split_batch_reply did; text cut short still gets an
// answer, never a read past its end.
TEST(ParseReply, AValidatedElementReadsAsParseReplyAndCutTextIsRefused) {
    const std::string element = R"({"jsonrpc":"2.0","id":4,"result":{"a":[1,"x"]}})";
    auto valid = parse_valid_reply(element, 4);
    ASSERT_TRUE(valid);
    EXPECT_EQ(*valid->result, *parse_reply(element, 4)->result);
    // Cut anywhere: refused, or (text that is not JSON, which callers never pass) a result taken
    // from inside it; never a read past its end (the sanitizer pass would see one).
    for (std::size_t cut = 0; cut < element.size(); ++cut) {
        const std::string text = element.substr(0, cut);
        auto r = parse_valid_reply(text, 4);
        if (r && r->result) {
            EXPECT_NE(text.find(*r->result), std::string::npos) << cut;
        }
    }
    EXPECT_FALSE(parse_valid_reply(R"({"a)", 1));
    EXPECT_FALSE(parse_valid_reply(R"({"id")", 1));
}

// A batch's body: each call appended to the one before, whatever the size of its params (more
// than the serializer's buffer here), and the thread's serializer good for the next call.
TEST(Responses, CallsAppendedIntoOneBatchBody) {
    json::array big;
    for (int i = 0; i < 100; ++i) big.emplace_back("0x" + std::string(40, 'a'));
    std::string body = "[";
    append_upstream_request(body, 1, "eth_a", json::value(big));
    body.push_back(',');
    append_upstream_request(body, 2, "eth_b", json::parse(R"([[[[{"k":[1,2,{"z":null}]}]]]])"));
    body.push_back(']');
    const json::array calls = json::parse(body).as_array();
    ASSERT_EQ(calls.size(), 2u);
    EXPECT_EQ(calls[0].at("params"), json::value(big));
    EXPECT_EQ(calls[1].at("id"), 2);
    EXPECT_EQ(calls[1].at("params").at(0).at(0).at(0).at(0).at("k").at(2).at("z"), nullptr);
    EXPECT_EQ(upstream_request(3, "m", json::value()),
              R"({"jsonrpc":"2.0","id":3,"method":"m","params":[]})");
}

TEST(ParseReply, AnErrorWhoseDataJsonCannotHoldIsRefused) {
    auto r = parse_reply(
        R"({"jsonrpc":"2.0","id":5,"error":{"code":3,"message":"m","data":{"x":[1e999]}}})", 5);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error(), "the error's data holds a number out of range");
    EXPECT_TRUE(parse_reply(
        R"({"jsonrpc":"2.0","id":5,"error":{"code":3,"message":"m","data":{"x":[1e300]}}})", 5));
}

TEST(ParseReply, MemberNamesMayBeWrittenWithEscapes) {
    auto ok = parse_reply(R"({"jsonrpc":"2.0","\u0069d":5,"r\u0065sult":"0x1"})", 5);
    ASSERT_TRUE(ok) << ok.error();
    EXPECT_EQ(*ok->result, R"("0x1")");
    auto err = parse_reply(R"({"jsonrpc":"2.0","id":5,"\u0065rror":{"code":3,"message":"m"}})", 5);
    ASSERT_TRUE(err) << err.error();
    EXPECT_EQ(err->error.code, 3);
    EXPECT_FALSE(parse_reply(R"({"jsonrpc":"2.0","id":5,"resul\t":"0x1"})", 5))
        << "another name is not result";
}

// The fault the fuzzer found in classify()'s detail (errors_test), here in the message that quotes
// a wrong id shortened to 64 bytes: a cut inside a character made it invalid UTF-8.
TEST(ParseReply, AWrongIdIsQuotedWithWholeCharacters) {
    std::string id = "\"";  // the quote is the id text's first byte, then 2-byte characters
    for (int i = 0; i < 40; ++i) id += "\xc3\xa9";
    id += "\"";
    auto r = parse_reply(R"({"jsonrpc":"2.0","id":)" + id + R"(,"result":1})", 5);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error(), "response id " + id.substr(0, 63) + " does not match request id 5");
}

TEST(ParseReply, ResultErrorAndGarbage) {
    auto ok = parse_reply(R"({"jsonrpc":"2.0","id":5,"result":{"x":"0x1"}})", 5);
    ASSERT_TRUE(ok);
    EXPECT_FALSE(ok->is_error());
    EXPECT_EQ(*ok->result, R"({"x":"0x1"})");

    // Results pass through as the node wrote them: spelling of numbers, order of keys, spacing.
    auto exact = parse_reply(
        " {\"jsonrpc\": \"2.0\", \"result\" : {\"b\":1.50, \"a\":123456789012345678901234567890} "
        ",\"id\":5}\n",
        5);
    ASSERT_TRUE(exact);
    EXPECT_EQ(*exact->result, R"({"b":1.50, "a":123456789012345678901234567890})");

    auto tricky = parse_reply(R"({"id":5,"result":"a\"}{[,","jsonrpc":"2.0"})", 5);
    ASSERT_TRUE(tricky);
    EXPECT_EQ(*tricky->result, R"("a\"}{[,")");

    auto last = parse_reply(R"({"jsonrpc":"2.0","id":5,"result":[1,[2,{"x":[]}]]})", 5);
    ASSERT_TRUE(last);
    EXPECT_EQ(*last->result, R"([1,[2,{"x":[]}]])");

    auto null_result = parse_reply(R"({"jsonrpc":"2.0","id":5,"result":null})", 5);
    ASSERT_TRUE(null_result);
    EXPECT_EQ(*null_result->result, "null");

    auto err = parse_reply(
        R"({"jsonrpc":"2.0","id":5,"error":{"code":3,"message":"execution reverted","data":"0x01"}})",
        5);
    ASSERT_TRUE(err);
    EXPECT_TRUE(err->is_error());
    EXPECT_EQ(err->error.code, 3);
    EXPECT_EQ(err->error.message, "execution reverted");
    EXPECT_EQ(*err->error.data, "0x01");

    EXPECT_FALSE(parse_reply("<html>502 Bad Gateway</html>", 5));
    EXPECT_FALSE(parse_reply(R"({"jsonrpc":"2.0","id":6,"result":1})", 5));
    EXPECT_FALSE(parse_reply(R"({"jsonrpc":"2.0","result":1})", 5));
    EXPECT_FALSE(parse_reply(R"({"jsonrpc":"2.0","id":5})", 5));
    EXPECT_FALSE(parse_reply(R"([{"jsonrpc":"2.0","id":5,"result":1}])", 5));
    EXPECT_FALSE(parse_reply(R"({"jsonrpc":"2.0","id":5,"error":{"message":"no code"}})", 5));
    EXPECT_FALSE(parse_reply(
        R"({"jsonrpc":"2.0","id":5,"result":1,"error":{"code":1,"message":"both"}})", 5));
    EXPECT_FALSE(parse_reply(R"({"jsonrpc":"2.0","id":5,"result":)", 5));
}

}  // namespace
}  // namespace gateway::jsonrpc

namespace gateway::jsonrpc {
namespace {

// Mutations of valid bodies: whatever comes in, the parser answers and never throws.
TEST(ParseRobustness, MutatedInputsNeverThrow) {
    const std::vector<std::string> seeds = {
        R"({"jsonrpc":"2.0","id":1,"method":"eth_call","params":[{"to":"0x00","data":"0x"},"latest"]})",
        R"([{"jsonrpc":"2.0","id":"a","method":"m"},{"jsonrpc":"2.0","method":"n","params":{"k":[1,2.5e3,null,true]}}])",
        R"({"jsonrpc":"2.0","id":123456789012345678901234567890,"method":"x","params":["\u00e9\n"]})",
    };
    std::mt19937 rng(12345);
    std::string alphabet = "{}[]\",:0123456789.eE-+ \\nulltrue";
    alphabet += '\0';
    alphabet += '\xff';
    for (int round = 0; round < 20000; ++round) {
        std::string body = seeds[rng() % seeds.size()];
        const int edits = 1 + static_cast<int>(rng() % 4);
        for (int e = 0; e < edits && !body.empty(); ++e) {
            const std::size_t at = rng() % body.size();
            switch (rng() % 4) {
                case 0: body[at] = alphabet[rng() % alphabet.size()]; break;
                case 1: body.erase(at, 1 + rng() % 8); break;
                case 2: body.insert(at, 1, alphabet[rng() % alphabet.size()]); break;
                case 3: body.resize(at); break;
            }
        }
        ASSERT_NO_THROW({
            auto r = parse_request(body, ParseLimits{});
            if (!r) {
                const int code = r.error().code;
                EXPECT_TRUE(code == -32700 || code == -32600 || code == -32005) << body;
            }
            auto reply = parse_reply(body, 1);
            (void)reply;
        }) << body;
    }
}

}  // namespace
TEST(JsonRpc, TheErrorCodeOfAnAnswerIsFoundOutsideItsStrings) {
    EXPECT_EQ(error_code_of(R"({"jsonrpc":"2.0","id":1,"error":{"code":-32005,"message":"x"}})"),
              -32005);
    EXPECT_EQ(error_code_of(R"({"jsonrpc":"2.0","id":1,"error":{"code":3,"message":"reverted"}})"),
              3);
    EXPECT_EQ(error_code_of(R"({"jsonrpc":"2.0","id":1,"result":"0x1"})"), std::nullopt);
    // Inside a string the quotes are escaped: an id (or a message) cannot fake a code.
    EXPECT_EQ(error_code_of(R"({"jsonrpc":"2.0","id":"\"error\":{\"code\":7","result":"0x"})"),
              std::nullopt);
    EXPECT_EQ(error_code_of(R"({"jsonrpc":"2.0","id":1,"error":{"code":"x"}})"), std::nullopt);
}

}  // namespace gateway::jsonrpc
