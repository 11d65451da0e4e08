// The metrics registry: every family rendered with its labels, the journal's gauges and counters.

#include "gateway/metrics/metrics.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <ctime>
#include <sstream>

namespace gateway::metrics {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(Metrics, RendersEveryFamilyWithItsLabels) {
    Metrics m;
    m.observe_call("devnet", "eth_call", "ok", 0.002);
    m.observe_call("devnet", "eth_call", "ok", 0.004);
    m.observe_call("devnet", "other", "rpc_error", 0.001);
    m.observe_http("rpc", 200, 300);
    m.count_rpc_error("devnet", 3);
    m.count_rpc_error("devnet", -32000);
    m.count_rpc_error("devnet", 123456);  // a node's own: "other"
    m.count_rpc_error("devnet", -99999);
    m.observe_probe("devnet", "node-a", 0.003);
    m.add_in_flight(3);
    m.add_in_flight(-1);
    m.observe_upstream("devnet", "node-a", "eth_call", "", 0.001);
    m.observe_upstream("devnet", "node-a", "eth_call", "timeout", 1.5);
    UpstreamGauges g;
    g.up = true;
    g.state = "lagging";
    g.lag = 7;
    g.score = 1.5;
    g.breaker = 1;
    g.head = 120;
    m.set_upstream("devnet", "node-a", g);
    m.set_chain_head("devnet", 127);
    m.count_failover("devnet", "node-a", "timeout");
    m.count_hedge("devnet");
    m.count_wrong_chain("devnet", "node-b");
    m.count_logs_split("devnet", 4);
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
    // The breaker as a state set too: its state 1, the others 0.
    EXPECT_THAT(
        text,
        HasSubstr(R"(gateway_upstream_breaker{chain="devnet",state="open",upstream="node-a"} 1)"));
    EXPECT_THAT(
        text,
        HasSubstr(
            R"(gateway_upstream_breaker{chain="devnet",state="closed",upstream="node-a"} 0)"));
    EXPECT_THAT(
        text,
        HasSubstr(
            R"(gateway_upstream_breaker{chain="devnet",state="half_open",upstream="node-a"} 0)"));
    EXPECT_THAT(
        text,
        HasSubstr(
            R"(gateway_upstream_requests_total{chain="devnet",method="eth_call",upstream="node-a"} 2)"));
    EXPECT_THAT(
        text,
        HasSubstr(
            R"(gateway_upstream_errors_total{chain="devnet",kind="timeout",upstream="node-a"} 1)"));
    EXPECT_THAT(
        text,
        HasSubstr(
            R"(gateway_upstream_request_duration_seconds_count{chain="devnet",upstream="node-a"} 2)"));
    EXPECT_THAT(text, HasSubstr(R"(gateway_upstream_up{chain="devnet",upstream="node-a"} 1)"));
    EXPECT_THAT(
        text,
        HasSubstr(R"(gateway_upstream_state{chain="devnet",state="lagging",upstream="node-a"} 1)"));
    EXPECT_THAT(
        text,
        HasSubstr(R"(gateway_upstream_state{chain="devnet",state="up",upstream="node-a"} 0)"));
    EXPECT_THAT(text,
                HasSubstr(R"(gateway_upstream_lag_blocks{chain="devnet",upstream="node-a"} 7)"));
    EXPECT_THAT(text, HasSubstr(R"(gateway_upstream_score{chain="devnet",upstream="node-a"} 1.5)"));
    EXPECT_THAT(text,
                HasSubstr(R"(gateway_upstream_head_block{chain="devnet",upstream="node-a"} 120)"));
    // Computed inside the gateway, these became the histograms and counters Prometheus computes
    // from (README, "Renamed and removed series").
    EXPECT_THAT(text, Not(HasSubstr("gateway_upstream_breaker_state")));
    EXPECT_THAT(text, Not(HasSubstr("gateway_upstream_latency_seconds")));
    EXPECT_THAT(text, Not(HasSubstr("gateway_upstream_error_rate")));
    EXPECT_THAT(
        text,
        HasSubstr(
            R"(gateway_upstream_probe_duration_seconds_count{chain="devnet",upstream="node-a"} 1)"));
    EXPECT_THAT(text,
                HasSubstr(R"(gateway_http_response_size_bytes_bucket{listener="rpc",le="256"} 0)"));
    EXPECT_THAT(
        text, HasSubstr(R"(gateway_http_response_size_bytes_bucket{listener="rpc",le="1024"} 1)"));
    EXPECT_THAT(text, HasSubstr(R"(gateway_rpc_errors_total{chain="devnet",code="3"} 1)"));
    EXPECT_THAT(text, HasSubstr(R"(gateway_rpc_errors_total{chain="devnet",code="-32000"} 1)"));
    EXPECT_THAT(text, HasSubstr(R"(gateway_rpc_errors_total{chain="devnet",code="other"} 2)"));
    EXPECT_THAT(text, HasSubstr(R"(gateway_chain_head_block{chain="devnet"} 127)"));
    EXPECT_THAT(
        text,
        HasSubstr(
            R"(gateway_failovers_total{chain="devnet",reason="timeout",upstream="node-a"} 1)"));
    EXPECT_THAT(text, HasSubstr(R"(gateway_hedged_requests_total{chain="devnet"} 1)"));
    EXPECT_THAT(
        text,
        HasSubstr(R"(gateway_upstream_wrong_chain_total{chain="devnet",upstream="node-b"} 1)"));
    EXPECT_THAT(text, HasSubstr(R"(gateway_logs_split_parts_total{chain="devnet"} 4)"));
    EXPECT_THAT(text, HasSubstr("gateway_build_info{allocator=\"system\",version=\"" GATEWAY_VERSION
                                "\"} 1"));
}

// The per-call counters are looked up through each thread's copy of a lookup per Metrics: two
// instances on one thread (and one made after another is gone) each count their own.
TEST(Metrics, CallsAnsweredTogetherAreObservedOnceWithTheirCount) {
    // A batch's calls answered together: as many calls as one at a time would have been, in the
    // same buckets, the sum their times together; at a bucket's bound, in that bucket (le).
    Metrics together, one_by_one;
    together.observe_call("devnet", "eth_getBalance", "ok", 0.003, 5);
    together.observe_call("devnet", "eth_getBalance", "ok", 0.01, 2);
    together.observe_call("devnet", "eth_getBalance", "ok", 99, 3);
    together.observe_call("devnet", "eth_getBalance", "rpc_error", 0.003, 0);  // nothing
    for (int i = 0; i < 5; ++i) one_by_one.observe_call("devnet", "eth_getBalance", "ok", 0.003);
    for (int i = 0; i < 2; ++i) one_by_one.observe_call("devnet", "eth_getBalance", "ok", 0.01);
    for (int i = 0; i < 3; ++i) one_by_one.observe_call("devnet", "eth_getBalance", "ok", 99);
    // (Less the process's own, read from /proc at each scrape.)
    const auto without_process = [](const std::string& text) {
        std::string out;
        std::istringstream lines(text);
        for (std::string line; std::getline(lines, line);)
            if (line.find("process_") == std::string::npos &&
                line.find("_timestamp_seconds") == std::string::npos)
                out += line + "\n";
        return out;
    };
    const std::string text = together.render();
    EXPECT_EQ(without_process(text), without_process(one_by_one.render()));
    EXPECT_THAT(
        text,
        HasSubstr(
            R"(gateway_requests_total{chain="devnet",method="eth_getBalance",outcome="ok"} 10)"));
    EXPECT_THAT(text, Not(HasSubstr("rpc_error")));
    EXPECT_THAT(
        text,
        HasSubstr(
            R"(gateway_request_duration_seconds_bucket{chain="devnet",method="eth_getBalance",le="0.005"} 5)"));
    EXPECT_THAT(
        text,
        HasSubstr(
            R"(gateway_request_duration_seconds_bucket{chain="devnet",method="eth_getBalance",le="0.01"} 7)"));
    EXPECT_THAT(
        text,
        HasSubstr(
            R"(gateway_request_duration_seconds_bucket{chain="devnet",method="eth_getBalance",le="30"} 7)"));
    EXPECT_THAT(
        text,
        HasSubstr(
            R"(gateway_request_duration_seconds_count{chain="devnet",method="eth_getBalance"} 10)"));
}

TEST(Metrics, EachInstanceCountsItsOwnPerCallCounters) {
    const auto count = [](Metrics& m, int times) {
        for (int i = 0; i < times; ++i) {
            m.count_cache("devnet", "eth_getBalance", true);
            m.count_cache("devnet", "eth_getBalance", false);
            m.count_auth("rpc", "ok");
            m.count_stale_answer("devnet");
            m.count_coalesced("devnet", "eth_call");
            m.count_cache_eviction("devnet", "eth_call");
        }
    };
    const auto expect = [](Metrics& m, int times) {
        const std::string text = m.render();
        const std::string n = std::to_string(times);
        EXPECT_THAT(
            text,
            HasSubstr(
                R"(gateway_cache_requests_total{chain="devnet",method="eth_getBalance",result="hit"} )" +
                n));
        EXPECT_THAT(
            text,
            HasSubstr(
                R"(gateway_cache_requests_total{chain="devnet",method="eth_getBalance",result="miss"} )" +
                n));
        EXPECT_THAT(text,
                    HasSubstr(R"(gateway_auth_requests_total{listener="rpc",outcome="ok"} )" + n));
        EXPECT_THAT(text, HasSubstr(R"(gateway_stale_answers_total{chain="devnet"} )" + n));
        EXPECT_THAT(
            text,
            HasSubstr(R"(gateway_coalesced_requests_total{chain="devnet",method="eth_call"} )" +
                      n));
        EXPECT_THAT(
            text,
            HasSubstr(R"(gateway_cache_evictions_total{chain="devnet",method="eth_call"} )" + n));
    };
    {
        Metrics gone;
        count(gone, 5);
    }
    Metrics a;
    Metrics b;
    count(a, 2);
    count(b, 3);
    expect(a, 2);
    expect(b, 3);
}

TEST(Metrics, TheJournalsHealthRefusalsAndReopens) {
    Metrics m;
    EXPECT_THAT(m.render(), HasSubstr("gateway_journal_up 0"));
    m.set_journal_up(true);
    m.count_journal_refusal("timeout");
    m.count_journal_refusal("timeout");
    m.count_journal_refusal("queue_full");
    m.count_journal_reopen("ok");
    const std::string text = m.render();
    EXPECT_THAT(text, HasSubstr("gateway_journal_up 1"));
    EXPECT_THAT(text, HasSubstr(R"(gateway_journal_refusals_total{reason="timeout"} 2)"));
    EXPECT_THAT(text, HasSubstr(R"(gateway_journal_refusals_total{reason="queue_full"} 1)"));
    EXPECT_THAT(text, HasSubstr(R"(gateway_journal_reopens_total{outcome="ok"} 1)"));
}

// The process as every exporter shows it, read at each scrape; the chain's safe and finalized
// blocks; the journal's commits; and the series declared at zero before anything happens.
TEST(Metrics, TheProcessTheChainsTagsTheJournalsCommitsAndSeriesAtZero) {
    Metrics m;
    m.set_chain_tags("devnet", 90, 64);
    m.observe_journal_commit(0.003);
    m.declare_chain("devnet", {"QUEUED", "DEAD_LETTER"}, {"QUEUED"}, {"0xabc"});
    m.declare_journal({"timeout"});
    volatile double spin = 0;  // some CPU time to see
    for (int i = 0; i < 20'000'000; ++i) spin = spin + i;
    const std::string text = m.render();
    EXPECT_THAT(text, HasSubstr(R"(gateway_chain_safe_block{chain="devnet"} 90)"));
    EXPECT_THAT(text, HasSubstr(R"(gateway_chain_finalized_block{chain="devnet"} 64)"));
    EXPECT_THAT(text, HasSubstr("gateway_journal_commit_duration_seconds_count 1"));
    EXPECT_THAT(text, HasSubstr(R"(gateway_journal_commit_duration_seconds_bucket{le="0.005"} 1)"));
    EXPECT_THAT(text,
                HasSubstr(R"(gateway_transactions_total{chain="devnet",state="DEAD_LETTER"} 0)"));
    EXPECT_THAT(
        text, HasSubstr(R"(gateway_managed_transactions_total{chain="devnet",state="QUEUED"} 0)"));
    EXPECT_THAT(text, HasSubstr(R"(gateway_stuck_at_fee_cap{chain="devnet",sender="0xabc"} 0)"));
    EXPECT_THAT(text, HasSubstr(R"(gateway_reorg_depth_blocks_count{chain="devnet"} 0)"));
    EXPECT_THAT(text, HasSubstr(R"(gateway_journal_refusals_total{reason="timeout"} 0)"));
    auto value = [&](const std::string& name) {
        const auto at = text.find("\n" + name + " ");
        EXPECT_NE(at, std::string::npos) << name;
        return at == std::string::npos ? -1.0 : std::stod(text.substr(at + name.size() + 2));
    };
    EXPECT_GT(value("process_cpu_seconds_total"), 0.0);
    EXPECT_GT(value("process_resident_memory_bytes"), 1024.0 * 1024);
    EXPECT_GE(value("process_virtual_memory_bytes"), value("process_resident_memory_bytes"));
    EXPECT_GE(value("process_open_fds"), 3.0);
    EXPECT_GE(value("process_max_fds"), value("process_open_fds"));
    const double now = static_cast<double>(std::time(nullptr));
    EXPECT_GT(value("process_start_time_seconds"), now - 3600);
    EXPECT_LE(value("process_start_time_seconds"), now + 1);
    // A counter: a second scrape never goes back.
    const double cpu = value("process_cpu_seconds_total");
    const std::string again = m.render();
    const std::string key = "\nprocess_cpu_seconds_total ";
    const auto at = again.find(key);
    ASSERT_NE(at, std::string::npos);
    EXPECT_GE(std::stod(again.substr(at + key.size())), cpu);
}

}  // namespace
}  // namespace gateway::metrics
