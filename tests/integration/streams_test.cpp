// Catalog rows I1 and I2 end to end: the real binary follows the logs of a contract on anvil (a
// hand-assembled one that logs its call data) and delivers them to a reference consumer: an HTTP
// server in this test that checks each batch's signature and keeps the ids it processed in an
// SQLite table, so that processing is exactly once over at-least-once delivery. Its handler fails
// now and then (before processing, and after processing but before answering, as a crash there
// would), and the gateway is killed with SIGKILL half-way: every event is processed once, none
// missing.

#include "devnet.hpp"

#include "gateway/streams/event_stream.hpp"
#include "support/fake_upstream.hpp"
#include "support/http_test_client.hpp"
#include "support/json_values.hpp"

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <atomic>
#include <csignal>
#include <cstdlib>
#include <mutex>
#include <set>

namespace gateway::test {
namespace {

namespace json = boost::json;

const std::string kSecret = "stream-secret-0123456789abcdef";
const std::string kTopic = "0x" + std::string(62, '0') + "aa";

// Runtime: mem[0..32] = calldata[0..32]; LOG1(mem[0..32], kTopic); STOP. Init: copy it, return it.
std::string logger_bytecode() {
    const std::string runtime =
        "600035600052"
        "7f" +
        kTopic.substr(2) + "60206000a100";
    const std::string init = fmt::format("60{:02x}80600b6000396000f3", runtime.size() / 2);
    return "0x" + init + runtime;
}

// The reference consumer: processes each event id once (a table keyed by id), whatever the
// number of deliveries.
class Consumer {
public:
    explicit Consumer(const std::string& path) {
        if (sqlite3_open(path.c_str(), &db_) != SQLITE_OK) throw std::runtime_error("sqlite open");
        exec("CREATE TABLE IF NOT EXISTS processed (id TEXT PRIMARY KEY, data TEXT NOT NULL);");
    }
    ~Consumer() { sqlite3_close(db_); }

    // One delivery: -1 fails before processing, 1 fails after processing (a crash before the
    // answer), 0 acknowledges.
    unsigned handle(const json::value& body, int failure) {
        std::lock_guard lock(mu_);
        ++deliveries_;
        if (failure < 0) return 500;
        exec("BEGIN;");
        for (const auto& e : body.at("events").as_array()) {
            const std::string id(e.at("id").as_string());
            const std::string data(e.at("log").at("data").as_string());
            sqlite3_stmt* st = nullptr;
            sqlite3_prepare_v2(db_, "INSERT OR IGNORE INTO processed (id, data) VALUES (?1, ?2);",
                               -1, &st, nullptr);
            sqlite3_bind_text(st, 1, id.c_str(), -1, SQLITE_TRANSIENT);
            sqlite3_bind_text(st, 2, data.c_str(), -1, SQLITE_TRANSIENT);
            sqlite3_step(st);
            if (sqlite3_changes(db_) == 0) ++repeats_;
            sqlite3_finalize(st);
        }
        exec("COMMIT;");
        return failure > 0 ? 500 : 200;
    }
    std::vector<std::string> data() {
        std::lock_guard lock(mu_);
        std::vector<std::string> out;
        sqlite3_stmt* st = nullptr;
        sqlite3_prepare_v2(db_, "SELECT data FROM processed;", -1, &st, nullptr);
        while (sqlite3_step(st) == SQLITE_ROW)
            out.emplace_back(reinterpret_cast<const char*>(sqlite3_column_text(st, 0)));
        sqlite3_finalize(st);
        return out;
    }
    std::size_t repeats() {
        std::lock_guard lock(mu_);
        return repeats_;
    }
    std::size_t deliveries() {
        std::lock_guard lock(mu_);
        return deliveries_;
    }

private:
    void exec(const char* sql) { sqlite3_exec(db_, sql, nullptr, nullptr, nullptr); }
    sqlite3* db_ = nullptr;
    std::mutex mu_;
    std::size_t repeats_ = 0;
    std::size_t deliveries_ = 0;
};

class StreamsTest : public DevnetTest {
protected:
    void SetUp() override { start_devnet("gateway-streams"); }

    json::value node_call(const std::string& method, const std::string& params) {
        const json::value v =
            json::parse(http_post(anvil->port(), "/", rpc_body(method, params)).body);
        if (!v.as_object().contains("result")) ADD_FAILURE() << method << ": " << str(v);
        return v.as_object().contains("result") ? v.at("result") : json::value(nullptr);
    }
    void start_gateway(const std::string& contract, const std::string& webhook) {
        ::setenv("STREAM_SECRET", kSecret.c_str(), 1);
        const std::string chains = fmt::format(
            "  - name: devnet\n"
            "    chain_id: 31337\n"
            "    health: {{interval_ms: 100, timeout_ms: 500}}\n"
            "    tx: {{poll_interval_ms: 50}}\n"
            "    upstreams:\n"
            "      - {{id: node, url: \"{}\", timeout_ms: 1000}}\n",
            anvil->url());
        const std::string streams = fmt::format(
            "streams:\n"
            "  - id: logger\n"
            "    chain: devnet\n"
            "    addresses: [\"{}\"]\n"
            "    topics: [\"{}\"]\n"
            "    from_block: 0\n"
            "    confirmations: 0\n"
            "    batch_size: 7\n"
            "    webhook: {{url: \"{}/events\", timeout_ms: 2000, secret_env: STREAM_SECRET}}\n",
            contract, kTopic, webhook);
        run_gateway(std::make_unique<GatewayProcess>(dir, chains, "", "", streams));
        ASSERT_TRUE(gw->wait_ready()) << gw->process().output();
    }
    std::string deploy() {
        const std::string from = str(node_call("eth_accounts", "[]").at(0));
        const std::string hash = str(node_call(
            "eth_sendTransaction", fmt::format(R"([{{"from":"{}","data":"{}","gas":"0x30000"}}])",
                                               from, logger_bytecode())));
        json::value receipt;
        // Mined at once (automine), its receipt a moment later.
        EXPECT_TRUE(wait_until([&] {
            receipt = node_call("eth_getTransactionReceipt", "[\"" + hash + "\"]");
            return receipt.is_object();
        }));
        return receipt.is_object() ? str(receipt.at("contractAddress")) : "";
    }
    void emit(const std::string& contract, int from, int to) {
        const std::string sender = str(node_call("eth_accounts", "[]").at(0));
        for (int i = from; i < to; ++i)
            node_call(
                "eth_sendTransaction",
                fmt::format(R"([{{"from":"{}","to":"{}","data":"0x{:064x}","gas":"0x10000"}}])",
                            sender, contract, i));
    }
};

TEST_F(StreamsTest, I1_I2_EveryEventIsProcessedOnceThroughHandlerFailuresAndAKill) {
    Consumer consumer(dir + "/consumer.db");
    std::atomic<int> request{0};
    FakeUpstream server;
    server.watch_header("x-gateway-signature");
    // Every fifth delivery fails before processing; every seventh after it (its answer lost).
    server.set_script([&](const std::string&, const json::value& body) -> std::optional<FakeReply> {
        const int n = ++request;
        const int failure = n % 5 == 0 ? -1 : n % 7 == 0 ? 1 : 0;
        const unsigned status = consumer.handle(body, failure);
        return FakeReply::http(status, "{}");
    });
    const std::string contract = deploy();
    ASSERT_THAT(contract, ::testing::StartsWith("0x"));
    start_gateway(contract, server.url());

    emit(contract, 0, 60);
    ASSERT_TRUE(wait_until([&] { return consumer.data().size() >= 30; }))
        << consumer.data().size() << " processed; "
        << http_get(gw->admin_port(), "/admin/streams").body;
    // Killed mid-way; more events while it is down; back.
    gw->process().signal(SIGKILL);
    gw->process().wait(std::chrono::seconds(10));
    emit(contract, 60, 100);
    start_gateway(contract, server.url());
    ASSERT_TRUE(wait_until([&] { return consumer.data().size() == 100; }, std::chrono::seconds(60)))
        << consumer.data().size() << " processed; "
        << http_get(gw->admin_port(), "/admin/streams").body;

    // Each event once, none missing: the call data 0..99.
    std::set<std::string> seen;
    for (const auto& d : consumer.data()) seen.insert(d);
    ASSERT_EQ(seen.size(), 100u);
    for (int i = 0; i < 100; ++i) EXPECT_TRUE(seen.count(fmt::format("0x{:064x}", i))) << i;
    // At least once underneath: deliveries came again (failures, the kill), and were dropped.
    EXPECT_GT(consumer.repeats(), 0u);
    // Every delivery was signed with the stream's secret.
    for (const auto& [body, header] : server.raw_requests()) {
        const auto comma = header.find(',');
        ASSERT_NE(comma, std::string::npos) << header;
        const std::int64_t t = std::stoll(header.substr(2, comma - 2));
        EXPECT_EQ(header, streams::signature(kSecret, t, body));
    }
    const json::value view = json::parse(http_get(gw->admin_port(), "/admin/streams").body);
    EXPECT_EQ(str(view.at("streams").at(0).at("id")), "logger");
}

}  // namespace
}  // namespace gateway::test
