// The whole gateway, in-process, while its journal's fsync hangs (a VFS below SQLite stalls it):
// writes are refused with 503 within store.timeout_ms and never sent, reads go on, and a managed
// send refused in time is taken back and its Idempotency-Key freed.

#include "gateway/eth/transaction.hpp"
#include "support/faulty_vfs.hpp"
#include "support/gateway_fixture.hpp"
#include "support/tx_signer.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <boost/json/parse.hpp>

#include <cstdlib>
#include <future>
#include <thread>

namespace gateway {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;
using Clock = std::chrono::steady_clock;
using test::answered_in_time;

// The whole gateway while the journal's fsync hangs: a raw transaction is refused with 503 within
// store.timeout_ms and never sent, reads go on, gateway_getTransaction answers an error in time;
// when the disk comes back, the transaction (committed late) is not left to be sent at the next
// start.
class StalledJournalTest : public test::GatewayTest {
protected:
    // The gateway closes its journal before the VFS under it goes.
    void TearDown() override {
        GatewayTest::TearDown();
        gw.reset();
    }
    test::FaultyVfs vfs;
};

TEST_F(StalledJournalTest, WritesAre503InTimeReadsGoOnAndTheLateRowIsNeverSent) {
    std::atomic<int> sent{0};
    test::FakeUpstream node(
        31337,
        [&](const std::string& m, const boost::json::value&) -> std::optional<test::FakeReply> {
            if (m == "eth_getBalance") return test::FakeReply::ok("\"0x64\"");
            if (m != "eth_sendRawTransaction") return std::nullopt;
            ++sent;
            return test::FakeReply::rpc_error(-32000, "not expected");
        });
    start({node.url()}, [](config::Config& c) { c.store.timeout = 500ms; });
    wait_ready();
    const std::string raw = test::sign_legacy(test::kKey0, {});
    const std::string hash = eth::to_hex(eth::decode_transaction(*eth::from_hex(raw)).hash);
    const auto call = [&](const std::string& method, const std::string& params) {
        return std::async(std::launch::async, [this, method, params] {
            return post(R"({"jsonrpc":"2.0","id":1,"method":")" + method + R"(","params":)" +
                        params + "}");
        });
    };
    struct Release {
        test::FaultyVfs& v;
        ~Release() { v.stall_syncs(false); }  // a failed assertion must not leave it hanging
    } release{vfs};

    vfs.stall_syncs(true);
    auto t0 = Clock::now();
    auto write = call("eth_sendRawTransaction", R"([")" + raw + R"("])");
    ASSERT_TRUE(answered_in_time(write, vfs)) << "the write waits on the journal";
    EXPECT_LT(Clock::now() - t0, 1500ms);
    const auto r = write.get();
    EXPECT_EQ(r.status, 503u);
    auto v = boost::json::parse(r.body);
    EXPECT_EQ(v.at("error").at("code"), -32002);
    EXPECT_THAT(std::string(v.at("error").at("message").as_string()),
                HasSubstr("did not answer within 500 ms"));
    ASSERT_TRUE(vfs.stalled()) << "the journal is still stuck in the fsync";

    // Meanwhile reads are served, and a read of the journal answers a clear error in time.
    const auto balance =
        call("eth_getBalance", R"([")" + test::address_of(test::kKey0) + R"(","latest"])").get();
    EXPECT_EQ(balance.status, 200u);
    EXPECT_EQ(boost::json::parse(balance.body).at("result"), "0x64");
    t0 = Clock::now();
    auto lookup = call("gateway_getTransaction", R"([")" + hash + R"("])");
    ASSERT_TRUE(answered_in_time(lookup, vfs)) << "the read waits on the journal";
    EXPECT_LT(Clock::now() - t0, 1500ms);
    v = boost::json::parse(lookup.get().body);
    EXPECT_EQ(v.at("error").at("code"), -32002);
    EXPECT_THAT(std::string(v.at("error").at("message").as_string()),
                HasSubstr("journal cannot be read"));

    // The disk comes back: the late commit is taken back, so no start-up replays it.
    vfs.stall_syncs(false);
    std::string state;
    for (int i = 0; i < 100 && state != "FAILED"; ++i) {
        std::this_thread::sleep_for(10ms);
        v = boost::json::parse(post(R"({"jsonrpc":"2.0","id":1,"method":"gateway_getTransaction",)"
                                    R"("params":[")" +
                                    hash + R"("]})")
                                   .body);
        if (v.at("result").is_object()) state = v.at("result").at("state").as_string();
    }
    EXPECT_EQ(state, "FAILED");
    EXPECT_EQ(sent, 0) << "a transaction the client was told was refused was sent";
    const std::string metrics = http_metrics();
    // (The series is there at zero from the start: its value says it counted.)
    EXPECT_THAT(metrics, ::testing::ContainsRegex(
                             R"(gateway_journal_refusals_total\{reason="timeout"\} [1-9])"));
    EXPECT_THAT(metrics, HasSubstr("gateway_journal_up 1"));
}

// The same for a managed send: refused in time, taken back once its commit goes through late
// (never signed), and its Idempotency-Key freed, so the client's retry is a new transaction.
TEST_F(StalledJournalTest, AManagedSendRefusedInTimeIsTakenBackAndItsKeyFreed) {
    ::setenv("GATEWAY_TEST_KEY0", test::kKey0.c_str(), 1);
    test::FakeUpstream node;
    std::string path;
    start({node.url()}, [&](config::Config& c) {
        c.store.timeout = 500ms;
        config::SignerConfig signer;
        signer.id = "hot";
        signer.type = "local";
        signer.key_env = "GATEWAY_TEST_KEY0";
        c.signers = {signer};
        c.chains[0].accounts = {config::AccountConfig{test::address_of(test::kKey0), "hot"}};
        path = c.store.path;
    });
    wait_ready();
    const auto send = [&](const std::string& key) {
        test::HttpConnection connection(port(), 3s);
        return connection.request(
            "POST", "/",
            R"({"jsonrpc":"2.0","id":1,"method":"gateway_sendTransaction","params":[{"from":")" +
                test::address_of(test::kKey0) +
                R"(","to":"0x000000000000000000000000000000000000dEaD","value":"0x1"}]})",
            {{"Idempotency-Key", key}});
    };
    ASSERT_EQ(send("first").status, 200u) << "managed senders are loaded";
    struct Release {
        test::FaultyVfs& v;
        ~Release() { v.stall_syncs(false); }
    } release{vfs};

    vfs.stall_syncs(true);
    const auto t0 = Clock::now();
    auto refused = std::async(std::launch::async, [&] { return send("order-7"); });
    ASSERT_TRUE(answered_in_time(refused, vfs)) << "the send waits on the journal";
    EXPECT_LT(Clock::now() - t0, 1500ms);
    EXPECT_EQ(refused.get().status, 503u);
    vfs.stall_syncs(false);
    const auto again = send("order-7");
    ASSERT_EQ(again.status, 200u) << again.body;
    const std::string id(boost::json::parse(again.body).at("result").at("id").as_string());
    gw->shutdown();
    runner.join();
    gw.reset();
    ::unsetenv("GATEWAY_TEST_KEY0");

    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
    std::vector<std::vector<std::string>> rows;
    sqlite3_exec(
        db,
        "SELECT id, state, IFNULL(idempotency_key, '-') FROM managed_transactions ORDER BY "
        "created_ms, rowid;",
        [](void* out, int n, char** values, char**) {
            auto& r = static_cast<std::vector<std::vector<std::string>>*>(out)->emplace_back();
            for (int i = 0; i < n; ++i) r.emplace_back(values[i] ? values[i] : "");
            return 0;
        },
        &rows, nullptr);
    sqlite3_close(db);
    ASSERT_EQ(rows.size(), 3u) << "first, the refused one (committed late), the retry";
    EXPECT_EQ(rows[1][1], "FAILED") << "the refused one is never signed";
    EXPECT_EQ(rows[1][2], "-") << "its key is free";
    EXPECT_EQ(rows[2][0], id);
    EXPECT_EQ(rows[2][2], "order-7");
}

}  // namespace
}  // namespace gateway
