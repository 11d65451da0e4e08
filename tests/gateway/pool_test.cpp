// The node pool in the whole gateway, in-process, over HTTP in front of scripted fake nodes: heads
// and lag, monotonic block numbers, scoring, breakers, rate limits, hedging, attempts, errors, log
// splitting, method lists, cordons.

#include "gateway/jsonrpc/methods.hpp"
#include "support/gateway_fixture.hpp"

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <boost/json/serialize.hpp>

#include <atomic>
#include <thread>

namespace gateway {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;
namespace json = boost::json;
using test::FakeReply;
using test::FakeUpstream;
using test::first_is_primary;
using test::GatewayTest;
using test::on;
using Clock = std::chrono::steady_clock;

// Block `number` as eth_getBlockByNumber answers it (number, hash and parent only).
std::string block_json(std::uint64_t number) {
    return fmt::format(R"({{"number":"0x{:x}","hash":"0x{:064x}","parentHash":"0x{:064x}"}})",
                       number, number + 1, number);
}

// A node at block `head` that answers eth_gasPrice with `price` and eth_getBlockByNumber with
// the block (null past its head); anything else is left to the default.
FakeUpstream::Script node_at(std::uint64_t head, std::string price = "\"0x1\"") {
    return [=](const std::string& m, const json::value& req) -> std::optional<FakeReply> {
        if (m == "eth_blockNumber") return FakeReply::ok(fmt::format("\"0x{:x}\"", head));
        if (m == "eth_gasPrice") return FakeReply::ok(price);
        if (m == "eth_getBlockByNumber") {
            const json::value& tag = req.at("params").at(0);
            const auto n =
                tag.is_string() ? jsonrpc::parse_quantity(tag.get_string()) : std::nullopt;
            if (!n) return FakeReply::ok(block_json(head));
            return FakeReply::ok(*n <= head ? block_json(*n) : "null");
        }
        return std::nullopt;
    };
}

const std::string kGasPrice = R"({"jsonrpc":"2.0","id":1,"method":"eth_gasPrice"})";
const std::string kBlockNumber = R"({"jsonrpc":"2.0","id":1,"method":"eth_blockNumber"})";

std::string message_of(const test::HttpReply& r) {
    return std::string(json::parse(r.body).at("error").at("message").as_string());
}

TEST_F(GatewayTest, ALaggingNodeGetsNoLatestReadsButServesOldBlocks) {
    FakeUpstream ahead(31337, node_at(100));
    FakeUpstream behind(31337, node_at(40));
    // The node behind is the primary: it would get every call if lag did not count.
    start({behind.url(), ahead.url()}, [](config::Config& c) {
        first_is_primary(c);
        c.chains[0].health.max_lag_blocks = 5;
    });
    ASSERT_TRUE(wait_state("node-0", "lagging"));
    const json::value v = upstream("node-0");
    EXPECT_EQ(v.at("lag_blocks"), 60);
    EXPECT_THAT(std::string(v.at("reason").as_string()),
                HasSubstr("60 blocks behind the chain head 100"));
    EXPECT_EQ(upstreams().at("chains").at("devnet").at("head"), 100);

    for (int i = 0; i < 10; ++i) EXPECT_EQ(post(kGasPrice).header("x-gateway-upstream"), "node-1");
    EXPECT_EQ(behind.calls("eth_gasPrice"), 0u);
    // A block it has: the primary serves it; one it has not reached: only the node ahead.
    auto old =
        post(R"({"jsonrpc":"2.0","id":1,"method":"eth_getBlockByNumber","params":["0x10",false]})");
    EXPECT_EQ(old.header("x-gateway-upstream"), "node-0");
    auto recent =
        post(R"({"jsonrpc":"2.0","id":1,"method":"eth_getBlockByNumber","params":["0x50",false]})");
    EXPECT_EQ(recent.header("x-gateway-upstream"), "node-1");
    EXPECT_THAT(
        http_metrics(),
        HasSubstr(R"(gateway_upstream_state{chain="devnet",state="lagging",upstream="node-0"} 1)"));
}

TEST_F(GatewayTest, WithoutSafeAndFinalizedTagsTheConfiguredDepthStandsIn) {
    // A node that answers `latest` (block 0x20) and knows no "safe" or "finalized" tag.
    FakeUpstream node(
        31337, [](const std::string& m, const json::value& req) -> std::optional<FakeReply> {
            if (m != "eth_getBlockByNumber") return std::nullopt;
            const auto tag = req.at("params").at(0);
            if (tag != "latest") return FakeReply::rpc_error(-32602, "invalid block tag");
            return FakeReply::ok(
                R"({"number":"0x20","hash":"0x0000000000000000000000000000000000000000000000000000000000000020","parentHash":"0x000000000000000000000000000000000000000000000000000000000000001f"})");
        });
    start({node.url()}, [](config::Config& c) {
        c.chains[0].reorgs.track = true;
        c.chains[0].reorgs.finality_depth = 10;
    });
    wait_ready();
    json::value chain;
    for (int i = 0; i < 500; ++i) {  // up to 10 s: a sanitizer build on a busy machine
        chain = json::parse(test::HttpConnection(admin_port()).get("/admin/chains").body)
                    .at("chains")
                    .at(0);
        if (chain.at("finalized").is_object()) break;
        std::this_thread::sleep_for(20ms);
    }
    ASSERT_TRUE(chain.at("finalized").is_object()) << json::serialize(chain);
    EXPECT_EQ(chain.at("head").at("number"), 32);
    EXPECT_EQ(chain.at("finalized").at("number"), 22);
    EXPECT_EQ(chain.at("finalized").at("source"), "depth");
    EXPECT_EQ(chain.at("safe").at("number"), 22);
    EXPECT_EQ(chain.at("reorgs"), 0);
}

TEST_F(GatewayTest, BlockNumbersNeverGoBackwards) {
    FakeUpstream ahead(31337, node_at(100));
    FakeUpstream behind(31337, node_at(98));
    start({ahead.url(), behind.url()}, first_is_primary);
    wait_ready();
    EXPECT_THAT(post(kBlockNumber).body, HasSubstr("\"0x64\""));
    // The node ahead goes away; the one left is two blocks behind what clients have seen.
    ASSERT_EQ(test::HttpConnection(admin_port())
                  .request("POST", "/admin/upstreams/node-0/cordon", "")
                  .status,
              200u);
    for (int i = 0; i < 5; ++i) {
        auto r = post(kBlockNumber);
        EXPECT_EQ(r.header("x-gateway-upstream"), "node-1");
        EXPECT_THAT(r.body, HasSubstr("\"0x64\"")) << "never lower than 100 once 100 was given";
    }
}

// One lying node does not pin the chain's head: a head above the chain's is believed when the
// node can serve that block or most upstreams claim as much; the liar gets no latest reads, says
// why at /admin/upstreams, and its eth_blockNumber answer is not given out.
TEST_F(GatewayTest, ANodeClaimingAHeadItCannotServeIsNotBelieved) {
    FakeUpstream liar(31337,
                      [](const std::string& m, const json::value&) -> std::optional<FakeReply> {
                          if (m == "eth_blockNumber") return FakeReply::ok("\"0xffffffff\"");
                          if (m == "eth_getBlockByNumber") return FakeReply::ok("null");
                          if (m == "eth_gasPrice") return FakeReply::ok("\"0x99\"");
                          return std::nullopt;
                      });
    FakeUpstream honest(31337, node_at(0x10));
    start({liar.url(), honest.url()}, first_is_primary);  // the liar is the primary
    ASSERT_TRUE(wait_state("node-0", "bad_head"));
    const json::value v = upstream("node-0");
    EXPECT_EQ(v.at("claimed_head"), 0xffffffffu);
    EXPECT_THAT(std::string(v.at("reason").as_string()),
                HasSubstr("claims head 4294967295 but answered null for that block"));
    EXPECT_EQ(upstreams().at("chains").at("devnet").at("head"), 0x10);
    EXPECT_EQ(upstream("node-1").at("state"), "up") << "the honest node does not look lagging";
    EXPECT_THAT(
        http_metrics(),
        HasSubstr(
            R"(gateway_upstream_state{chain="devnet",state="bad_head",upstream="node-0"} 1)"));

    for (int i = 0; i < 5; ++i) {
        EXPECT_EQ(post(kGasPrice).header("x-gateway-upstream"), "node-1") << "no latest reads";
        EXPECT_EQ(json::parse(post(kBlockNumber).body).at("result"), "0x10");
    }
    EXPECT_EQ(liar.calls("eth_gasPrice"), 0u);
    TearDown();
    gw.reset();

    // A node that lies in an answer to a client, between probes: what it says is not given out,
    // so it cannot become what clients are never told less than.
    auto says = std::make_shared<std::atomic<std::uint64_t>>(0x10);
    FakeUpstream node(31337,
                      [says](const std::string& m, const json::value&) -> std::optional<FakeReply> {
                          if (m == "eth_blockNumber")
                              return FakeReply::ok(fmt::format("\"0x{:x}\"", says->load()));
                          return std::nullopt;
                      });
    start({node.url()}, [](config::Config& c) { c.chains[0].health.interval = 60s; });
    wait_ready();
    *says = 0xffffffff;
    auto r = post(kBlockNumber);
    EXPECT_EQ(r.header("x-gateway-upstream"), "node-0");
    EXPECT_EQ(json::parse(r.body).at("result"), "0x10") << "the believed head, not the claim";
    *says = 0x16;  // 6 blocks ahead of the last probe: more than max_lag_blocks (5)
    EXPECT_EQ(json::parse(post(kBlockNumber).body).at("result"), "0x10");
    *says = 0x15;  // blocks may come faster than probes: up to max_lag_blocks ahead is believable
    EXPECT_EQ(json::parse(post(kBlockNumber).body).at("result"), "0x15");
    *says = 0x10;
    EXPECT_EQ(json::parse(post(kBlockNumber).body).at("result"), "0x15") << "never back";
}

TEST_F(GatewayTest, AHeadMostUpstreamsClaimIsBelievedAndAHeadMayGoBack) {
    // Two of three nodes claim 0x30 without serving it yet (say, a load balancer between them
    // and the node that has it): most agree.
    auto claims = [](std::shared_ptr<std::atomic<std::uint64_t>> head) {
        return [head](const std::string& m, const json::value&) -> std::optional<FakeReply> {
            if (m == "eth_blockNumber")
                return FakeReply::ok(fmt::format("\"0x{:x}\"", head->load()));
            if (m == "eth_getBlockByNumber") return FakeReply::ok("null");
            return std::nullopt;
        };
    };
    auto head_a = std::make_shared<std::atomic<std::uint64_t>>(0x30);
    auto head_b = std::make_shared<std::atomic<std::uint64_t>>(0x30);
    FakeUpstream a(31337, claims(head_a)), b(31337, claims(head_b)), c(31337, node_at(0x10));
    start({a.url(), b.url(), c.url()});
    ASSERT_TRUE(wait_state("node-0", "up"));
    ASSERT_TRUE(wait_state("node-1", "up"));
    for (int i = 0; i < 100 && upstreams().at("chains").at("devnet").at("head") != 0x30; ++i)
        std::this_thread::sleep_for(20ms);
    EXPECT_EQ(upstreams().at("chains").at("devnet").at("head"), 0x30);
    EXPECT_EQ(json::parse(post(kBlockNumber).body).at("result"), "0x30");

    // Their heads go back (a reorg to a shorter chain, a node resynced): the chain's head
    // follows, what clients were given does not.
    *head_a = 0x20;
    *head_b = 0x20;
    for (int i = 0; i < 100 && upstreams().at("chains").at("devnet").at("head") != 0x20; ++i)
        std::this_thread::sleep_for(20ms);
    EXPECT_EQ(upstreams().at("chains").at("devnet").at("head"), 0x20);
    EXPECT_EQ(upstream("node-0").at("head"), 0x20);
    EXPECT_EQ(json::parse(post(kBlockNumber).body).at("result"), "0x30");
}

TEST_F(GatewayTest, TheFasterNodeOfATierGetsTheCallsAndTheScoreSaysWhy) {
    FakeUpstream slow(31337,
                      [](const std::string& m, const json::value&) -> std::optional<FakeReply> {
                          if (m == "eth_blockNumber") {
                              auto r = FakeReply::ok("\"0x10\"");
                              r.delay = 40ms;
                              return r;
                          }
                          if (m == "eth_gasPrice") return FakeReply::ok("\"0x1\"");
                          return std::nullopt;
                      });
    FakeUpstream fast(31337, node_at(0x10));
    start({slow.url(), fast.url()});
    wait_ready();
    // A few probes of each: until the slow one's latency shows.
    for (int i = 0;
         i < 300 && upstream("node-0").at("latency_ms").at("ewma").to_number<double>() <= 30.0; ++i)
        std::this_thread::sleep_for(10ms);
    const json::value s = upstream("node-0");
    const json::value f = upstream("node-1");
    EXPECT_GT(s.at("score").to_number<double>(), f.at("score").to_number<double>());
    EXPECT_GT(s.at("latency_ms").at("ewma").to_number<double>(), 30.0);
    EXPECT_THAT(std::string(s.at("score_explained").as_string()), HasSubstr("latency"));
    for (int i = 0; i < 5; ++i) EXPECT_EQ(post(kGasPrice).header("x-gateway-upstream"), "node-1");
}

TEST_F(GatewayTest, TheBreakerOpensAfterFailedCallsAndTriesAgainAfterTheCooldown) {
    FakeUpstream failing(31337, on("eth_gasPrice", FakeReply::http(500, "")));
    FakeUpstream good(31337, node_at(0x10));
    manual_time = true;  // the cooldown passes when the test says
    start({failing.url(), good.url()}, [](config::Config& c) {
        first_is_primary(c);
        c.chains[0].failover.breaker_threshold = 2;
        c.chains[0].failover.breaker_cooldown = 400ms;
    });
    wait_ready();
    for (int i = 0; i < 5; ++i) EXPECT_EQ(post(kGasPrice).header("x-gateway-upstream"), "node-1");
    EXPECT_EQ(failing.calls("eth_gasPrice"), 2u) << "skipped once the breaker opened";
    EXPECT_EQ(upstream("node-0").at("breaker"), "open");
    EXPECT_EQ(upstream("node-0").at("state"), "breaker_open");
    EXPECT_EQ(upstream("node-0").at("health"), "up") << "its probes still answer";
    clock.advance(399ms);
    EXPECT_EQ(post(kGasPrice).header("x-gateway-upstream"), "node-1");
    EXPECT_EQ(failing.calls("eth_gasPrice"), 2u) << "still cooling down";
    clock.advance(2ms);
    EXPECT_EQ(post(kGasPrice).header("x-gateway-upstream"), "node-1");
    EXPECT_EQ(failing.calls("eth_gasPrice"), 3u) << "one trial after the cooldown";
    failing.set_script(node_at(0x10));
    clock.advance(401ms);
    EXPECT_EQ(post(kGasPrice).header("x-gateway-upstream"), "node-0")
        << "the trial succeeded: closed again";
    EXPECT_EQ(upstream("node-0").at("breaker"), "closed");
}

TEST_F(GatewayTest, I3_A429WithRetryAfterRestsTheNode) {
    auto limited = FakeReply::http(429, "slow down");
    limited.headers = {{"Retry-After", "1"}};
    FakeUpstream busy(31337, on("eth_gasPrice", limited));
    FakeUpstream other(31337, node_at(0x10));
    manual_time = true;  // its rest ends when the test says
    start({busy.url(), other.url()}, first_is_primary);
    wait_ready();
    for (int i = 0; i < 5; ++i) EXPECT_EQ(post(kGasPrice).header("x-gateway-upstream"), "node-1");
    EXPECT_EQ(busy.calls("eth_gasPrice"), 1u) << "Retry-After is honoured";
    EXPECT_EQ(upstream("node-0").at("state"), "throttled");
    clock.advance(999ms);
    post(kGasPrice);
    EXPECT_EQ(busy.calls("eth_gasPrice"), 1u) << "resting for the second it asked for";
    clock.advance(2ms);
    post(kGasPrice);
    EXPECT_EQ(busy.calls("eth_gasPrice"), 2u) << "and then it is asked again";
}

TEST_F(GatewayTest, JsonRpcRateLimitsAndTransientErrorsMoveOn) {
    for (const auto& [name, reply] : std::vector<std::pair<std::string, FakeReply>>{
             {"rate limit", FakeReply::rpc_error(-32005, "request rate exceeded")},
             {"header not found", FakeReply::rpc_error(-32000, "header not found")},
             {"missing trie node", FakeReply::rpc_error(-32000, "missing trie node 0xabc")},
             {"method not found",
              FakeReply::rpc_error(-32601,
                                   "the method eth_gasPrice does not exist/is not available")},
         }) {
        SCOPED_TRACE(name);
        FakeUpstream first(31337, on("eth_gasPrice", reply));
        FakeUpstream second(31337, node_at(0x10, "\"0x2a\""));
        start({first.url(), second.url()}, first_is_primary);
        auto r = post(kGasPrice);
        EXPECT_EQ(r.body, R"({"jsonrpc":"2.0","id":1,"result":"0x2a"})");
        EXPECT_EQ(first.calls("eth_gasPrice"), 1u);
        TearDown();
        gw.reset();
    }
}

// What a node says about a call (a block it does not have, an internal error for this call, a
// request it will not read) is the call's answer: no client can open every breaker with calls for
// blocks that do not exist, and the others' reads go on meanwhile.
TEST_F(GatewayTest, AnswersAboutACallNeverTakeANodeOut) {
    const std::string unknown_block = R"({"code":-32000,"message":"unknown block"})";
    auto script = [&](const std::string& m, const json::value&) -> std::optional<FakeReply> {
        if (m == "eth_getLogs") return FakeReply::rpc_error(-32000, "unknown block");
        if (m == "eth_call")
            return FakeReply::rpc_error(-32603, "execution aborted (timeout = 5s)");
        if (m == "eth_estimateGas") return FakeReply::http(413, "request entity too large");
        if (m == "eth_getBalance") return FakeReply::ok("\"0x7\"");
        return std::nullopt;
    };
    FakeUpstream a(31337, script), b(31337, script);
    start({a.url(), b.url()}, [](config::Config& c) {
        c.chains[0].failover.breaker_threshold = 3;
        c.chains[0].failover.breaker_cooldown = 60s;
    });
    wait_ready();

    std::atomic<bool> done{false};
    std::atomic<int> reads{0};
    std::vector<std::string> read_failures;
    std::thread reader([&] {
        while (!done) {
            auto r = post(
                R"({"jsonrpc":"2.0","id":1,"method":"eth_getBalance","params":["0x00000000000000000000000000000000000000aa","latest"]})");
            if (r.body != R"({"jsonrpc":"2.0","id":1,"result":"0x7"})")
                read_failures.push_back(fmt::format("HTTP {}: {}", r.status, r.body));
            ++reads;
        }
    });
    std::vector<std::thread> attackers;
    std::atomic<int> as_the_node_said{0};
    for (int t = 0; t < 4; ++t)
        attackers.emplace_back([&, t] {
            for (int i = 0; i < 25; ++i) {
                const std::string hash = fmt::format("0x{:064x}", t * 100 + i + 1);
                auto r = post(fmt::format(
                    R"({{"jsonrpc":"2.0","id":1,"method":"eth_getLogs","params":[{{"blockHash":"{}"}}]}})",
                    hash));
                if (r.status == 200 &&
                    r.body == R"({"jsonrpc":"2.0","id":1,"error":)" + unknown_block + "}")
                    ++as_the_node_said;
                post(
                    R"({"jsonrpc":"2.0","id":2,"method":"eth_call","params":[{"to":"0x00000000000000000000000000000000000000aa"},"latest"]})");
                post(
                    R"({"jsonrpc":"2.0","id":3,"method":"eth_estimateGas","params":[{"to":"0x00000000000000000000000000000000000000aa"}]})");
            }
        });
    for (auto& t : attackers) t.join();
    done = true;
    reader.join();

    EXPECT_EQ(as_the_node_said, 100) << "each call got the node's own answer, as it came";
    EXPECT_GT(reads, 0);
    EXPECT_THAT(read_failures, ::testing::IsEmpty());
    for (const char* id : {"node-0", "node-1"}) {
        SCOPED_TRACE(id);
        EXPECT_EQ(upstream(id).at("breaker"), "closed");
        EXPECT_EQ(upstream(id).at("state"), "up");
    }
    EXPECT_EQ(
        post(
            R"({"jsonrpc":"2.0","id":1,"method":"eth_getBalance","params":["0x00000000000000000000000000000000000000aa","latest"]})")
            .body,
        R"({"jsonrpc":"2.0","id":1,"result":"0x7"})");
}

// A node that does not have the block asked for may merely lag: a node at or above its head is
// asked; one behind it is not (it will not have it either); if none has it, the answer as it came.
TEST_F(GatewayTest, ABlockANodeDoesNotHaveIsAskedOfNodesAtOrAboveItsHeadOnly) {
    const std::string call =
        R"({"jsonrpc":"2.0","id":1,"method":"eth_getBalance","params":["0x00000000000000000000000000000000000000aa","0x10"]})";
    auto behind_on = [](std::uint64_t head) {
        return [head](const std::string& m, const json::value&) -> std::optional<FakeReply> {
            if (m == "eth_blockNumber") return FakeReply::ok(fmt::format("\"0x{:x}\"", head));
            if (m == "eth_getBalance") return FakeReply::rpc_error(-32000, "header not found");
            return std::nullopt;
        };
    };
    {
        FakeUpstream primary(31337, behind_on(0x10));
        FakeUpstream lower(31337, behind_on(0x0f));
        FakeUpstream level(31337, on("eth_getBalance", FakeReply::ok("\"0x5\"")));  // at 0x10
        // Without the rule, `lower` (primary, one block behind) would be asked second.
        start({primary.url(), lower.url(), level.url()},
              [](config::Config& c) { c.chains[0].upstreams[2].tier = config::Tier::fallback; });
        wait_ready();
        auto r = post(call);
        EXPECT_EQ(r.body, R"({"jsonrpc":"2.0","id":1,"result":"0x5"})");
        EXPECT_EQ(primary.calls("eth_getBalance"), 1u);
        EXPECT_EQ(lower.calls("eth_getBalance"), 0u) << "behind the node that did not have it";
        TearDown();
        gw.reset();
    }
    FakeUpstream primary(31337, behind_on(0x10));
    FakeUpstream lower(31337, behind_on(0x0f));
    start({primary.url(), lower.url()}, first_is_primary);
    wait_ready();
    auto r = post(call);
    EXPECT_EQ(r.status, 200u);
    EXPECT_EQ(r.body,
              R"({"jsonrpc":"2.0","id":1,"error":{"code":-32000,"message":"header not found"}})");
    EXPECT_EQ(primary.calls("eth_getBalance"), 1u) << "asked once: it would say the same again";
    EXPECT_EQ(lower.calls("eth_getBalance"), 0u);
    EXPECT_EQ(upstream("node-0").at("breaker"), "closed");
}

TEST_F(GatewayTest, WhenEveryNodeFailsTheMostInformativeErrorWins) {
    // A node's own answer says more than a refused connection, whichever came last.
    FakeUpstream behind(31337,
                        on("eth_getBalance", FakeReply::rpc_error(-32000, "header not found")));
    start({behind.url(), "http://127.0.0.1:" + std::to_string(test::closed_port())},
          first_is_primary);
    auto r =
        post(R"({"jsonrpc":"2.0","id":1,"method":"eth_getBalance","params":["0xaa","0x99999"]})");
    EXPECT_EQ(r.status, 200u);
    EXPECT_EQ(r.body,
              R"({"jsonrpc":"2.0","id":1,"error":{"code":-32000,"message":"header not found"}})");
    TearDown();
    gw.reset();

    // A method no node serves: the nodes' own answer.
    FakeUpstream a(31337), b(31337);
    start({a.url(), b.url()});
    r = post(R"({"jsonrpc":"2.0","id":1,"method":"eth_gasPrice"})");
    EXPECT_EQ(r.status, 200u);
    EXPECT_EQ(json::parse(r.body).at("error").at("code"), -32601);
    EXPECT_EQ(a.calls("eth_gasPrice") + b.calls("eth_gasPrice"), 2u);
}

TEST_F(GatewayTest, AttemptsAreBoundedAndRetriesBackOff) {
    FakeUpstream x(31337, on("eth_gasPrice", FakeReply::http(502, ""))),
        y(31337, on("eth_gasPrice", FakeReply::http(502, ""))),
        z(31337, on("eth_gasPrice", FakeReply::http(502, "")));
    start({x.url(), y.url(), z.url()},
          [](config::Config& c) { c.chains[0].failover.max_attempts = 2; });
    auto r = post(kGasPrice);
    EXPECT_EQ(r.status, 503u);
    EXPECT_EQ(x.calls("eth_gasPrice") + y.calls("eth_gasPrice") + z.calls("eth_gasPrice"), 2u);
    TearDown();
    gw.reset();

    // One node that fails once, then answers: the retry waits failover.backoff_ms.
    auto failed = std::make_shared<std::atomic<bool>>(false);
    FakeUpstream flaky(
        31337, [failed](const std::string& m, const json::value&) -> std::optional<FakeReply> {
            if (m != "eth_gasPrice") return std::nullopt;
            if (!failed->exchange(true)) return FakeReply::http(503, "");
            return FakeReply::ok("\"0x7\"");
        });
    start({flaky.url()}, [](config::Config& c) { c.chains[0].failover.backoff = 200ms; });
    const auto t0 = Clock::now();
    r = post(kGasPrice);
    EXPECT_EQ(r.body, R"({"jsonrpc":"2.0","id":1,"result":"0x7"})");
    EXPECT_GE(Clock::now() - t0, 190ms);
}

TEST_F(GatewayTest, ASlowReadIsHedgedAndTheFirstAnswerWins) {
    auto slow = FakeReply::ok("\"0xbad\"");
    slow.delay = 2s;
    FakeUpstream sluggish(
        31337, [slow](const std::string& m, const json::value&) -> std::optional<FakeReply> {
            if (m == "eth_gasPrice" || m == "eth_submitWork") return slow;
            return std::nullopt;
        });
    FakeUpstream quick(31337,
                       [](const std::string& m, const json::value&) -> std::optional<FakeReply> {
                           if (m == "eth_gasPrice") return FakeReply::ok("\"0x1\"");
                           if (m == "eth_submitWork") return FakeReply::ok("\"0xfeed\"");
                           return std::nullopt;
                       });
    start({sluggish.url(), quick.url()}, [](config::Config& c) {
        first_is_primary(c);
        c.chains[0].failover.hedge_after = 100ms;
        c.chains[0].upstreams[0].timeout = 3s;
    });
    wait_ready();
    const auto t0 = Clock::now();
    auto r = post(kGasPrice);
    EXPECT_LT(Clock::now() - t0, 1s) << "not waiting for the slow node";
    EXPECT_EQ(r.body, R"({"jsonrpc":"2.0","id":1,"result":"0x1"})");
    EXPECT_EQ(r.header("x-gateway-upstream"), "node-1");
    EXPECT_EQ(sluggish.calls("eth_gasPrice"), 1u);
    EXPECT_THAT(http_metrics(), HasSubstr(R"(gateway_hedged_requests_total{chain="devnet"} 1)"));
    // The slow node's request was given up, not counted against it.
    EXPECT_EQ(upstream("node-0").at("consecutive_failures"), 0);

    // A write is never hedged.
    r = post(R"({"jsonrpc":"2.0","id":1,"method":"eth_submitWork","params":["0x02"]})");
    EXPECT_EQ(r.body, R"({"jsonrpc":"2.0","id":1,"result":"0xbad"})");
    EXPECT_EQ(quick.calls("eth_submitWork"), 0u);
}

TEST_F(GatewayTest, ConcurrencyAndRateLimitsHoldCallsBack) {
    auto slow = FakeReply::ok("\"0x1\"");
    slow.delay = 100ms;
    FakeUpstream node(31337, on("eth_gasPrice", slow));
    start({node.url()}, [](config::Config& c) { c.chains[0].upstreams[0].max_concurrency = 1; });
    wait_ready();
    std::vector<std::thread> clients;
    std::atomic<int> ok{0};
    for (int i = 0; i < 4; ++i)
        clients.emplace_back([&] {
            if (post(kGasPrice).status == 200) ++ok;
        });
    for (auto& t : clients) t.join();
    EXPECT_EQ(ok, 4) << "calls wait for the upstream's slot";
    EXPECT_EQ(node.max_in_flight(), 1u);
    TearDown();
    gw.reset();

    FakeUpstream limited(31337, node_at(0x10));
    start({limited.url()}, [](config::Config& c) { c.chains[0].upstreams[0].max_rps = 10; });
    wait_ready();
    const auto t0 = Clock::now();
    for (int i = 0; i < 20; ++i) EXPECT_EQ(post(kGasPrice).status, 200u);
    // A burst of 10, then 10 a second: the last 10 take about a second.
    EXPECT_GE(Clock::now() - t0, 800ms);
}

TEST_F(GatewayTest, LongLogRangesAreSplitAndMergedInOrder) {
    FakeUpstream node(
        31337, [](const std::string& m, const json::value& req) -> std::optional<FakeReply> {
            if (m == "eth_blockNumber") return FakeReply::ok("\"0x64\"");
            if (m != "eth_getLogs") return std::nullopt;
            const json::value& f = req.at("params").at(0);
            // One "log" per request, naming its range.
            const json::object& o = f.as_object();
            const std::string to =
                o.contains("toBlock") ? json::serialize(o.at("toBlock")) : "\"latest\"";
            return FakeReply::ok(
                fmt::format(R"([{{"from":{},"to":{}}}])", json::serialize(o.at("fromBlock")), to));
        });
    start({node.url()}, [](config::Config& c) { c.chains[0].upstreams[0].max_logs_range = 10; });
    wait_ready();
    auto r = post(
        R"({"jsonrpc":"2.0","id":1,"method":"eth_getLogs","params":[{"fromBlock":"0x1","toBlock":"0x20","address":"0xaa"}]})");
    EXPECT_EQ(
        r.body,
        R"({"jsonrpc":"2.0","id":1,"result":[{"from":"0x1","to":"0xa"},{"from":"0xb","to":"0x14"},)"
        R"({"from":"0x15","to":"0x1e"},{"from":"0x1f","to":"0x20"}]})");
    const auto parts = node.received("eth_getLogs");
    ASSERT_EQ(parts.size(), 4u);
    for (const auto& p : parts) EXPECT_EQ(p.at("params").at(0).at("address"), "0xaa");
    // "latest" is the chain's head (0x64): 0x5b..0x64 is 10 blocks, no split.
    post(R"({"jsonrpc":"2.0","id":2,"method":"eth_getLogs","params":[{"fromBlock":"0x5b"}]})");
    EXPECT_EQ(node.received("eth_getLogs").size(), 5u);
    TearDown();
    gw.reset();

    FakeUpstream strict(31337, node_at(0x64));
    start({strict.url()}, [](config::Config& c) {
        c.chains[0].upstreams[0].max_logs_range = 10;
        c.chains[0].logs.split = false;
    });
    wait_ready();
    r = post(
        R"({"jsonrpc":"2.0","id":1,"method":"eth_getLogs","params":[{"fromBlock":"0x1","toBlock":"0x20"}]})");
    EXPECT_EQ(json::parse(r.body).at("error").at("code"), -32005);
    EXPECT_THAT(message_of(r), HasSubstr("max_logs_range 10"));
    EXPECT_THAT(message_of(r), HasSubstr("logs.split"));
    EXPECT_EQ(strict.calls("eth_getLogs"), 0u);
}

TEST_F(GatewayTest, DeniedMethodsGetAClearErrorAndAreNotForwarded) {
    FakeUpstream node(31337, on("debug_traceTransaction", FakeReply::ok("{}")));
    start({node.url()});
    for (const char* m : {"debug_traceTransaction", "admin_peers", "txpool_content", "miner_stop",
                          "engine_getPayloadV3"}) {
        auto r = post(fmt::format(R"({{"jsonrpc":"2.0","id":1,"method":"{}","params":[]}})", m));
        EXPECT_EQ(r.status, 200u);
        EXPECT_EQ(json::parse(r.body).at("error").at("code"), -32601) << m;
        EXPECT_THAT(message_of(r), HasSubstr("methods.deny")) << m;
    }
    EXPECT_EQ(node.forwarded_calls(), 0u);
    TearDown();
    gw.reset();

    start({node.url()},
          [](config::Config& c) { c.chains[0].methods.allow = {"debug_traceTransaction"}; });
    EXPECT_EQ(
        post(R"({"jsonrpc":"2.0","id":1,"method":"debug_traceTransaction","params":["0x1"]})").body,
        R"({"jsonrpc":"2.0","id":1,"result":{}})");
}

TEST_F(GatewayTest, CordonTakesANodeOutByHandAndUncordonBringsItBack) {
    FakeUpstream a(31337, node_at(0x10)), b(31337, node_at(0x10));
    start({a.url(), b.url()}, first_is_primary);
    wait_ready();
    EXPECT_EQ(post(kGasPrice).header("x-gateway-upstream"), "node-0");
    test::HttpConnection admin(admin_port());
    auto cordoned =
        admin.request("POST", "/admin/upstreams/node-0/cordon", R"({"reason":"kernel upgrade"})");
    EXPECT_EQ(cordoned.status, 200u);
    EXPECT_EQ(json::parse(cordoned.body).at("state"), "cordoned");
    EXPECT_EQ(json::parse(cordoned.body).at("reason"), "kernel upgrade");
    for (int i = 0; i < 3; ++i) EXPECT_EQ(post(kGasPrice).header("x-gateway-upstream"), "node-1");
    EXPECT_EQ(admin.request("POST", "/admin/upstreams/node-0/uncordon", "").status, 200u);
    EXPECT_EQ(post(kGasPrice).header("x-gateway-upstream"), "node-0");

    EXPECT_EQ(admin.request("POST", "/admin/upstreams/nope/cordon", "").status, 404u);
    EXPECT_EQ(admin.request("POST", "/admin/upstreams/node-0/explode", "").status, 404u);
    EXPECT_EQ(admin.request("GET", "/admin/upstreams/node-0/cordon", "").status, 405u);
    EXPECT_EQ(admin.request("POST", "/admin/upstreams/node-0/cordon", "{not json").status, 400u);
}

// A node that makes filters named `prefix`1, 2, ... and knows only its own.
FakeUpstream::Script filter_node(std::string prefix) {
    auto made = std::make_shared<std::atomic<int>>(0);
    return [=](const std::string& m, const json::value& req) -> std::optional<FakeReply> {
        if (m == "eth_newFilter" || m == "eth_newBlockFilter")
            return FakeReply::ok(fmt::format("\"{}{}\"", prefix, ++*made));
        if (m == "eth_getFilterChanges" || m == "eth_uninstallFilter") {
            const std::string id(req.at("params").at(0).as_string());
            if (id.rfind(prefix, 0) == 0)
                return FakeReply::ok(m == "eth_getFilterChanges" ? "[]" : "true");
            return FakeReply::rpc_error(-32000, "filter not found");
        }
        return std::nullopt;
    };
}

TEST_F(GatewayTest, FilterCallsGoToTheNodeThatMadeTheFilter) {
    FakeUpstream a(31337, filter_node("0xa")), b(31337, filter_node("0xb"));
    start({a.url(), b.url()}, first_is_primary);
    wait_ready();
    auto call = [&](const std::string& method, const std::string& params) {
        return post(R"({"jsonrpc":"2.0","id":1,"method":")" + method + R"(","params":)" + params +
                    "}");
    };
    EXPECT_EQ(json::parse(call("eth_newBlockFilter", "[]").body).at("result"), "0xa1");
    test::HttpConnection admin(admin_port());
    ASSERT_EQ(admin.request("POST", "/admin/upstreams/node-0/cordon", "").status, 200u);
    EXPECT_EQ(json::parse(call("eth_newFilter", "[{}]").body).at("result"), "0xb1");
    ASSERT_EQ(admin.request("POST", "/admin/upstreams/node-0/uncordon", "").status, 200u);

    // node-0 is preferred again, but the filter made on node-1 is polled on node-1.
    for (int i = 0; i < 3; ++i) {
        auto r = call("eth_getFilterChanges", R"(["0xb1"])");
        EXPECT_EQ(r.header("x-gateway-upstream"), "node-1");
        EXPECT_EQ(json::parse(r.body).at("result"), json::array());
    }
    EXPECT_EQ(call("eth_getFilterChanges", R"(["0xa1"])").header("x-gateway-upstream"), "node-0");
    EXPECT_EQ(json::parse(call("eth_uninstallFilter", R"(["0xb1"])").body).at("result"), true);
    // A filter the gateway did not see made goes where any read would.
    EXPECT_EQ(call("eth_getFilterChanges", R"(["0xb9"])").header("x-gateway-upstream"), "node-0");

    // The filter's node is cordoned: it is not used, and nobody else knows the filter.
    ASSERT_EQ(admin.request("POST", "/admin/upstreams/node-0/cordon", "").status, 200u);
    auto r = call("eth_getFilterChanges", R"(["0xa1"])");
    EXPECT_EQ(r.status, 503u);
    EXPECT_THAT(message_of(r), HasSubstr("made on upstream node-0, which is cordoned"));
    EXPECT_EQ(b.calls("eth_getFilterChanges"), 3u);
}

}  // namespace
}  // namespace gateway
