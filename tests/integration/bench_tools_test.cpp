// The side-by-side benchmark's tools (tests/bench/run) still do their job: the fast fake node
// answers, the load driver counts answers and errors, its signer writes transactions the gateway
// takes, and the gateway configured as in the benchmark serves every scenario without an error.
// The allocation counter it loads into the gateways counts what they allocate. Nothing here
// measures speed; that is the benchmark's business.

#include "devnet.hpp"

#include "support/http_test_client.hpp"
#include "support/process.hpp"

#include <gtest/gtest.h>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <csignal>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <regex>
#include <sstream>
#include <thread>

namespace gateway::test {
namespace {

namespace json = boost::json;

const std::string kRead =
    R"({"jsonrpc":"2.0","id":1,"method":"eth_getBalance","params":["0x70997970c51812dc3a010c7d01b50e0d17dc79c8","latest"]})";

// One bench_load run: its JSON summary.
json::object load(std::uint16_t port, const std::string& path, std::vector<std::string> args) {
    std::vector<std::string> argv{
        BENCH_LOAD,  "--port", std::to_string(port), "--path", path, "--connections", "2",
        "--seconds", "0.3",    "--warmup",           "0"};
    argv.insert(argv.end(), args.begin(), args.end());
    CommandResult r = run_command(argv, 30s);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    json::error_code ec;
    json::value v = json::parse(r.out, ec);
    if (ec || !v.is_object()) {
        ADD_FAILURE() << "not a JSON summary: " << r.out << r.err;
        return {};
    }
    return v.as_object();
}

// The value of the metric line that starts with `series` in the gateway's /metrics, 0 without one.
double metric(std::uint16_t admin_port, const std::string& series) {
    std::istringstream lines(http_get(admin_port, "/metrics").body);
    std::string line;
    while (std::getline(lines, line))
        if (line.starts_with(series + " ")) return std::stod(line.substr(series.size() + 1));
    return 0;
}

std::int64_t number(const json::object& o, const char* key) {
    const json::value* v = o.if_contains(key);
    return v && v->is_int64()
               ? v->as_int64()
               : (v && v->is_uint64() ? static_cast<std::int64_t>(v->as_uint64()) : -1);
}

TEST(BenchTools, TheLoadDriverTheFakeNodeAndTheGatewayAsBenchmarked) {
    const std::string dir = make_temp_dir("bench-tools");
    Process node({BENCH_FAKE_NODE, "--port", "0", "--threads", "1", "--call-bytes", "1024"},
                 dir + "/node.log");
    auto port_text = node.wait_for_output(std::regex("listening on (\\d+)"), 10s);
    ASSERT_TRUE(port_text) << node.output();
    const auto node_port = static_cast<std::uint16_t>(std::stoul(*port_text));

    // Direct: answers are counted, errors are not.
    json::object direct = load(node_port, "/", {"--body", kRead});
    EXPECT_GT(number(direct, "requests"), 0);
    // `answered` counts the warm-up's answers too, `requests` only those measured.
    json::object warmed = load(node_port, "/", {"--body", kRead, "--warmup", "0.2"});
    EXPECT_GT(number(warmed, "answered"), number(warmed, "requests")) << json::serialize(warmed);
    EXPECT_EQ(number(direct, "errors"), 0) << json::serialize(direct);
    // A JSON-RPC error counts as an error, with what it was.
    json::object bad = load(node_port, "/", {"--body", R"({"jsonrpc":"2.0","id":1})"});
    EXPECT_GT(number(bad, "errors"), 0);
    EXPECT_NE(json::serialize(bad).find("-32600"), std::string::npos) << json::serialize(bad);

    // The gateway as the benchmark configures it: a pass-through chain and a cached one.
    const std::string url = "http://127.0.0.1:" + std::to_string(node_port);
    GatewayProcess gw(dir,
                      "  - name: pass\n    chain_id: 31337\n"
                      "    cache: {enabled: false, coalesce: false}\n"
                      "    tx: {max_queued: 1000000, max_queued_per_sender: 100000,"
                      " poll_interval_ms: 2000, rebroadcast_after_ms: 3600000,"
                      " broadcast_fanout: 1}\n"
                      "    upstreams: [{id: node, url: \"" +
                          url +
                          "\"}]\n"
                          "  - name: cached\n    chain_id: 31337\n"
                          "    upstreams: [{id: node-cached, url: \"" +
                          url + "\"}]\n");
    ASSERT_TRUE(gw.wait_ready()) << gw.process().output();
    std::string batch = "[";
    for (int i = 1; i <= 20; ++i)
        batch +=
            (i > 1 ? "," : "") + std::string(R"({"jsonrpc":"2.0","id":)") + std::to_string(i) +
            R"(,"method":"eth_getBalance","params":["0x70997970c51812dc3a010c7d01b50e0d17dc79c8","latest"]})";
    batch += "]";
    for (
        const auto& [path, body] : std::vector<std::pair<std::string, std::string>>{
            {"/pass", kRead},
            {"/cached",
             R"({"jsonrpc":"2.0","id":1,"method":"eth_getBlockByNumber","params":["0x10",false]})"},
            {"/pass", batch},
            {"/pass",
             R"({"jsonrpc":"2.0","id":1,"method":"eth_call","params":[{"to":"0x70997970c51812dc3a010c7d01b50e0d17dc79c8","data":"0x06fdde03"},"latest"]})"}}) {
        json::object through = load(gw.port(), path, {"--body", body});
        EXPECT_GT(number(through, "requests"), 0) << path << " " << body.substr(0, 60);
        EXPECT_EQ(number(through, "errors"), 0) << json::serialize(through);
    }

    // --vary: a new account in each request, so the cached chain has nothing to hit; the same
    // body again and again hits.
    const std::string hits =
        R"(gateway_cache_requests_total{chain="cached",method="eth_getBalance",result="hit"})";
    json::object varied = load(gw.port(), "/cached", {"--vary", "--body", kRead});
    EXPECT_GT(number(varied, "requests"), 10);
    EXPECT_EQ(number(varied, "errors"), 0) << json::serialize(varied);
    EXPECT_EQ(metric(gw.admin_port(), hits), 0) << "a varied request hit the cache";
    json::object same = load(gw.port(), "/cached", {"--body", kRead});
    EXPECT_EQ(number(same, "errors"), 0) << json::serialize(same);
    EXPECT_GT(metric(gw.admin_port(), hits), 0) << "the same request never hit the cache";

    // Durable intake: signed transactions, each sent once, each answered with its hash.
    CommandResult signed_txs = run_command({BENCH_LOAD, "sign", "--count", "5", "--senders", "2"});
    ASSERT_EQ(signed_txs.exit_code, 0) << signed_txs.err;
    std::istringstream lines(signed_txs.out);
    std::string line;
    std::size_t count = 0;
    while (std::getline(lines, line)) {
        json::value v = json::parse(line);
        EXPECT_EQ(v.at("method"), "eth_sendRawTransaction");
        ++count;
    }
    EXPECT_EQ(count, 5u);
    write_file(dir + "/txs.jsonl", signed_txs.out);
    // --once ends the run when the five are used up; --seconds only bounds it (five journaled
    // writes took longer than load()'s 0.3 s under AddressSanitizer on a loaded machine).
    json::object intake =
        load(gw.port(), "/pass", {"--once", "--bodies", dir + "/txs.jsonl", "--seconds", "30"});
    EXPECT_EQ(number(intake, "requests"), 5);
    EXPECT_EQ(number(intake, "errors"), 0) << json::serialize(intake);
}

// The trivial node (the second harness's upstream) answers the gateway's probes and the bench's
// reads, batches included, and the gateway in front of it serves them without an error.
TEST(BenchTools, TheTrivialNodeServesTheGatewayAndTheBenchsReads) {
    const std::string dir = make_temp_dir("bench-trivial");
    Process node({BENCH_TRIVIAL_NODE, "--port", "0", "--call-bytes", "1024"}, dir + "/node.log");
    auto port_text = node.wait_for_output(std::regex("listening on (\\d+)"), 10s);
    ASSERT_TRUE(port_text) << node.output();
    const auto node_port = static_cast<std::uint16_t>(std::stoul(*port_text));
    std::string batch = "[";
    for (int i = 1; i <= 20; ++i)
        batch += (i > 1 ? "," : "") + std::string(R"({"jsonrpc":"2.0","id":)") + std::to_string(i) +
                 R"(,"method":"eth_getBalance","params":["0x)" + std::string(38, '0') +
                 (i < 10 ? "0" : "") + std::to_string(i) + R"(","latest"]})";
    batch += "]";
    const std::string call =
        R"({"jsonrpc":"2.0","id":1,"method":"eth_call","params":[{"to":"0x70997970c51812dc3a010c7d01b50e0d17dc79c8","data":"0x06fdde03"},"latest"]})";
    for (const std::string& body : {kRead, batch, call}) {
        json::object direct = load(node_port, "/", {"--body", body});
        EXPECT_GT(number(direct, "requests"), 0) << body.substr(0, 60);
        EXPECT_EQ(number(direct, "errors"), 0) << json::serialize(direct);
    }
    // Its batch answer keeps each call's id, in order.
    const auto answer = json::parse(http_post(node_port, "/", batch).body).as_array();
    ASSERT_EQ(answer.size(), 20u);
    for (std::size_t i = 0; i < answer.size(); ++i) EXPECT_EQ(answer[i].at("id"), i + 1);

    GatewayProcess gw(dir,
                      "  - name: pass\n    chain_id: 31337\n"
                      "    cache: {enabled: false, coalesce: false}\n"
                      "    upstreams: [{id: node, url: \"http://127.0.0.1:" +
                          *port_text + "\"}]\n");
    ASSERT_TRUE(gw.wait_ready()) << gw.process().output();
    for (const std::string& body : {kRead, batch, call}) {
        json::object through = load(gw.port(), "/pass", {"--body", body});
        EXPECT_GT(number(through, "requests"), 0) << body.substr(0, 60);
        EXPECT_EQ(number(through, "errors"), 0) << json::serialize(through);
    }
    // The head watcher follows its chain: the gateway knows the node's head.
    const auto chains = json::parse(http_get(gw.admin_port(), "/admin/chains").body);
    EXPECT_EQ(chains.at("chains").at(0).at("head").at("number"), 0x1000) << json::serialize(chains);
}

// The second harness's driver: wrk with tests/bench/wrk.lua prints bench_load's summary, and
// BENCH_VARY=1 gives every request an account of its own (the cached chain never hits).
TEST(BenchTools, TheWrkScriptDrivesReadsAndVariesTheirAccounts) {
    const std::string dir = make_temp_dir("bench-wrk");
    Process node({BENCH_TRIVIAL_NODE, "--port", "0"}, dir + "/node.log");
    auto port_text = node.wait_for_output(std::regex("listening on (\\d+)"), 10s);
    ASSERT_TRUE(port_text) << node.output();
    GatewayProcess gw(dir,
                      "  - name: cached\n    chain_id: 31337\n"
                      "    upstreams: [{id: node, url: \"http://127.0.0.1:" +
                          *port_text + "\"}]\n");
    ASSERT_TRUE(gw.wait_ready()) << gw.process().output();
    write_file(dir + "/body.json", kRead + "\n");
    const auto wrk = [&](const char* vary) {
        CommandResult r =
            run_command({"/usr/bin/env", "BENCH_BODY_FILE=" + dir + "/body.json",
                         std::string("BENCH_VARY=") + vary, "wrk", "-t1", "-c2", "-d1s", "-s",
                         std::string(GATEWAY_SOURCE_DIR) + "/tests/bench/wrk.lua",
                         "http://127.0.0.1:" + std::to_string(gw.port()) + "/cached"},
                        30s);
        EXPECT_EQ(r.exit_code, 0) << "wrk (scripts/install-deps.sh installs it): " << r.err;
        // Its own report first, then the summary line.
        const auto at = r.out.rfind("{\"requests\"");
        if (at == std::string::npos) {
            ADD_FAILURE() << "no summary line: " << r.out << r.err;
            return json::object();
        }
        return json::parse(r.out.substr(at)).as_object();
    };
    const std::string hits =
        R"(gateway_cache_requests_total{chain="cached",method="eth_getBalance",result="hit"})";
    json::object varied = wrk("1");
    EXPECT_GT(number(varied, "requests"), 10) << json::serialize(varied);
    EXPECT_EQ(number(varied, "errors"), 0) << json::serialize(varied);
    EXPECT_EQ(number(varied, "answered"), number(varied, "requests"));
    EXPECT_GT(number(varied, "p50_us"), 0);
    EXPECT_EQ(metric(gw.admin_port(), hits), 0) << "a varied request hit the cache";
    json::object same = wrk("0");
    EXPECT_GT(number(same, "requests"), 10) << json::serialize(same);
    EXPECT_GT(metric(gw.admin_port(), hits), 0) << "the same request never hit the cache";
}

// The counter's report in `path` ("<count> <report number>"), once one after report `after` is
// there (it writes one at start and one on each SIGUSR2).
std::optional<std::pair<std::uint64_t, std::uint64_t>> report_in(const std::string& path,
                                                                 std::uint64_t after) {
    for (int i = 0; i < 200; ++i) {
        std::ifstream in(path);
        std::uint64_t count = 0, number = 0;
        if (in >> count >> number && number > after) return std::pair{count, number};
        std::this_thread::sleep_for(10ms);
    }
    return std::nullopt;
}

// tests/bench/run loads the counter into the gateways (LD_PRELOAD) for allocations per request:
// the count it writes on SIGUSR2 grows by more than one allocation per request served.
TEST(BenchTools, TheAllocationCounterCountsWhatTheGatewayAllocates) {
#if defined(GATEWAY_SANITIZED)
    GTEST_SKIP() << "a sanitizer's runtime must be the first library loaded; the counter would be";
#endif
    const std::string dir = make_temp_dir("bench-allocs");
    Process node({BENCH_FAKE_NODE, "--port", "0", "--threads", "1"}, dir + "/node.log");
    auto port_text = node.wait_for_output(std::regex("listening on (\\d+)"), 10s);
    ASSERT_TRUE(port_text) << node.output();
    const std::string counts = dir + "/allocs";
    // The gateway inherits them; nothing else started meanwhile.
    ::setenv("LD_PRELOAD", BENCH_COUNT_ALLOCS, 1);
    ::setenv("BENCH_ALLOC_FILE", counts.c_str(), 1);
    std::optional<GatewayProcess> gw;
    try {
        gw.emplace(dir,
                   "  - name: pass\n    chain_id: 31337\n"
                   "    cache: {enabled: false, coalesce: false}\n"
                   "    upstreams: [{id: node, url: \"http://127.0.0.1:" +
                       *port_text + "\"}]\n");
    } catch (const std::exception& e) {
        ADD_FAILURE() << e.what();
    }
    ::unsetenv("LD_PRELOAD");
    ::unsetenv("BENCH_ALLOC_FILE");
    ASSERT_TRUE(gw);
    ASSERT_TRUE(gw->wait_ready()) << gw->process().output();

    const auto started = report_in(counts, 0);
    ASSERT_TRUE(started) << "the counter wrote no report at start";
    gw->process().signal(SIGUSR2);
    const auto before = report_in(counts, started->second);
    ASSERT_TRUE(before) << "no report on SIGUSR2";
    EXPECT_GT(before->first, 0u) << "a gateway that started allocated nothing?";
    json::object served = load(gw->port(), "/pass", {"--body", kRead});
    EXPECT_EQ(number(served, "errors"), 0) << json::serialize(served);
    const std::int64_t answered = number(served, "answered");
    ASSERT_GT(answered, 0);
    gw->process().signal(SIGUSR2);
    const auto after = report_in(counts, before->second);
    ASSERT_TRUE(after) << "no report on the second SIGUSR2";
    EXPECT_GT(after->first - before->first, static_cast<std::uint64_t>(answered))
        << "allocations counted while " << answered << " requests were served";
}

}  // namespace
}  // namespace gateway::test
