// The write path on a PostgreSQL journal (issue 19) with the real binary, a real anvil and a real
// PostgreSQL server (support/postgres_server.hpp): the database stopped with `pg_ctl stop -m
// immediate` under load (catalog rows E3, A3: writes refused with 503 while it is down, reads go
// on, /readyz and the metrics say so, nothing accepted is lost, and the gateway comes back by
// itself), a second gateway on the same database that waits as a standby and takes over when the
// first is killed with SIGKILL, every transaction mined exactly once, and an owner whose session
// was lost while the standby took over, which stops rather than carry on from memory.

#include "integration/writes_fixture.hpp"
#include "support/postgres_server.hpp"
#include "support/tcp_forwarder.hpp"

#include <atomic>
#include <csignal>
#include <thread>

namespace gateway::test {
namespace {

using namespace std::chrono_literals;

class PostgresWritesTest : public WritesTest {
protected:
    void SetUp() override {
        WritesTest::SetUp();
        db = std::make_unique<PostgresServer>();
        url = db->database("gateway");
    }
    void TearDown() override {
        WritesTest::TearDown();
        db.reset();
    }

    // Transfers of A and B, interleaved, nonces 0 to count-1 each.
    std::vector<Tx> transfers(std::uint64_t count) {
        std::vector<Tx> txs;
        for (std::uint64_t n = 0; n < count; ++n) {
            txs.push_back(sign(kKeyA, kAddrA, kAddrB, n));
            txs.push_back(sign(kKeyB, kAddrB, kAddrA, n));
        }
        return txs;
    }

    std::unique_ptr<PostgresServer> db;
    std::string url;
};

// What a client that retries does: sends until the gateway keeps it (200 with its hash), counting
// the refusals in `refused` as they come, each of which must be the journal's 503 (-32002), never
// anything else. Gives up when `stop` is set.
void send_until_kept(const std::function<std::uint16_t()>& port, const Tx& tx,
                     std::atomic<std::size_t>* refused = nullptr,
                     const std::atomic<bool>* stop = nullptr,
                     std::chrono::milliseconds give_up = 60s) {
    const auto deadline = Clock::now() + give_up;
    for (;;) {
        if (stop && *stop) return;
        const HttpReply r = send_raw(port(), tx.raw);
        if (r.status == 200) {
            EXPECT_EQ(json::parse(r.body).at("result"), tx.hash.c_str()) << r.body;
            return;
        }
        if (refused) ++*refused;
        EXPECT_EQ(r.status, 503u) << r.body;
        if (r.status == 503) {
            const json::value v = json::parse(r.body);
            EXPECT_EQ(v.at("error").at("code"), -32002) << r.body;
        }
        if (Clock::now() > deadline) {
            ADD_FAILURE() << "never kept: " << tx.hash << ": " << r.body;
            return;
        }
        std::this_thread::sleep_for(50ms);
    }
}

TEST_F(PostgresWritesTest, E3_TheDatabaseStoppedUnderLoadRefusesWritesLosesNoneAndMinesAllAfter) {
    start(url);
    ASSERT_TRUE(gw->wait_ready());
    const std::vector<Tx> txs = transfers(15);

    // A client sends them in order, ten a second, retrying what is refused, while the database
    // goes away.
    std::atomic<std::size_t> kept{0}, refused{0};
    std::atomic<bool> stop{false};
    std::thread client([&] {
        for (const auto& tx : txs) {
            send_until_kept([&] { return gw->port(); }, tx, &refused, &stop);
            if (stop) return;
            ++kept;
            std::this_thread::sleep_for(100ms);
        }
    });
    struct Join {
        std::atomic<bool>& stop;
        std::thread& t;
        ~Join() {
            stop = true;
            if (t.joinable()) t.join();
        }
    } join{stop, client};
    ASSERT_TRUE(wait_until([&] { return kept >= 6; }, 30s));
    db->kill();  // pg_ctl stop -m immediate

    // While it is down: writes refused (the client's retries count them), reads served, and the
    // gateway says why.
    ASSERT_TRUE(wait_until([&] { return refused > 0; }, 20s)) << "no write was refused";
    const HttpReply read =
        http_post(gw->port(), "/", rpc_body("eth_getBalance", "[\"" + kAddrA + "\",\"latest\"]"));
    EXPECT_EQ(read.status, 200u) << read.body;
    EXPECT_TRUE(json::parse(read.body).as_object().contains("result")) << read.body;
    const HttpReply ready = http_get(gw->admin_port(), "/readyz?require=journal");
    EXPECT_EQ(ready.status, 503u) << ready.body;
    EXPECT_THAT(ready.body, HasSubstr("postgres")) << "the reason names the database";
    EXPECT_THAT(http_get(gw->admin_port(), "/metrics").body, HasSubstr("gateway_journal_up 0"));
    const std::size_t during = kept;
    std::this_thread::sleep_for(1s);
    EXPECT_EQ(kept.load(), during) << "a write was kept while the database was down";

    db->start();
    client.join();
    EXPECT_EQ(kept.load(), txs.size());
    EXPECT_GT(refused.load(), 0u);
    ASSERT_TRUE(wait_completed(txs)) << json::serialize(admin_transactions());
    expect_mined_exactly_once(txs);
    EXPECT_EQ(http_get(gw->admin_port(), "/readyz?require=journal").status, 200u);
    EXPECT_THAT(http_get(gw->admin_port(), "/metrics").body, HasSubstr("gateway_journal_up 1"));
}

// Two gateways on one database: the first owns the journal, the second waits as a standby
// (writes refused, not ready with require=journal); the first is killed with SIGKILL while
// transactions come in, and the second takes over by itself, carrying on what the first had
// accepted: every transaction mined exactly once, nonces contiguous.
TEST_F(PostgresWritesTest, AStandbyTakesOverFromAKilledGatewayAndEveryTransactionIsMinedOnce) {
    start(url);
    ASSERT_TRUE(gw->wait_ready());
    auto standby = std::make_unique<GatewayProcess>(dir, chains(), "", url);
    ASSERT_TRUE(standby->wait_ready());
    const HttpReply waiting = http_get(standby->admin_port(), "/readyz?require=journal");
    EXPECT_EQ(waiting.status, 503u) << waiting.body;
    EXPECT_THAT(waiting.body, HasSubstr("another gateway owns this journal")) << waiting.body;
    // A standby, not a failure: the journal-down alert leaves it alone.
    const std::string standby_metrics = http_get(standby->admin_port(), "/metrics").body;
    EXPECT_THAT(standby_metrics, HasSubstr("gateway_journal_standby 1"));
    EXPECT_THAT(standby_metrics, HasSubstr("gateway_journal_up 0"));
    EXPECT_THAT(http_get(gw->admin_port(), "/metrics").body,
                HasSubstr("gateway_journal_standby 0"));

    const std::vector<Tx> txs = transfers(10);
    // While the owner lives, the standby keeps nothing.
    const HttpReply early = send_raw(standby->port(), txs[0].raw);
    EXPECT_EQ(early.status, 503u) << early.body;
    // The owner takes the first half; then it dies, and the rest go to the standby.
    for (std::size_t i = 0; i < txs.size() / 2; ++i)
        send_until_kept([&] { return gw->port(); }, txs[i]);
    nodes_down();  // what the owner accepted is still queued when it dies
    for (std::size_t i = txs.size() / 2; i < txs.size() / 2 + 2; ++i)
        send_until_kept([&] { return gw->port(); }, txs[i]);
    gw->process().signal(SIGKILL);
    ASSERT_EQ(gw->process().wait(5s), 128 + SIGKILL);
    nodes_up();

    for (std::size_t i = txs.size() / 2 + 2; i < txs.size(); ++i)
        send_until_kept([&] { return standby->port(); }, txs[i]);
    run_gateway(std::move(standby));  // the fixture's checks now ask the new owner
    ASSERT_TRUE(wait_completed(txs)) << json::serialize(admin_transactions());
    expect_mined_exactly_once(txs);
    const std::string owner_metrics = http_get(gw->admin_port(), "/metrics").body;
    EXPECT_THAT(owner_metrics, HasSubstr("gateway_journal_standby 0"));
    EXPECT_THAT(owner_metrics, HasSubstr("gateway_journal_up 1"));
    EXPECT_EQ(http_get(gw->admin_port(), "/readyz?require=journal").status, 200u);
}

// The owner reaches the database through a forwarder that the test takes away: its session ends
// (the server sees the connection close), the standby takes the journal over, and when the old
// owner reaches the database again it finds another gateway owned the journal meanwhile: what it
// holds in memory may be out of date, so it stops with exit code 1 (the orchestrator restarts
// it, and it starts as a standby) rather than carry on. Nothing is sent twice or lost.
TEST_F(PostgresWritesTest, AnOwnerWhoseSessionWasLostWhileAStandbyTookOverStops) {
    TcpForwarder link(db->port());
    const std::string owner_url =
        "postgresql://postgres@127.0.0.1:" + std::to_string(link.port()) + "/gateway";
    start(owner_url);
    ASSERT_TRUE(gw->wait_ready());
    auto standby = std::make_unique<GatewayProcess>(dir, chains(), "", url);
    ASSERT_TRUE(standby->wait_ready());
    const std::vector<Tx> txs = transfers(3);
    for (std::size_t i = 0; i < 2; ++i) send_until_kept([&] { return gw->port(); }, txs[i]);

    link.stop();  // the owner's session is gone; it cannot reach the database
    ASSERT_TRUE(wait_until(
        [&] { return http_get(standby->admin_port(), "/readyz?require=journal").status == 200; },
        15s))
        << "the standby did not take over";
    EXPECT_EQ(gw->process().wait(100ms), std::nullopt) << "it stops only once it knows";
    link.start();
    EXPECT_EQ(gw->process().wait(15s), 1) << "the superseded owner did not stop";
    EXPECT_THAT(gw->process().output(),
                HasSubstr("another gateway took the journal over from this one"));

    run_gateway(std::move(standby));
    for (std::size_t i = 2; i < txs.size(); ++i)
        send_until_kept([&] { return gw->port(); }, txs[i]);
    ASSERT_TRUE(wait_completed(txs)) << json::serialize(admin_transactions());
    expect_mined_exactly_once(txs);
}

}  // namespace
}  // namespace gateway::test
