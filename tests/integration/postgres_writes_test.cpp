// The write path on a PostgreSQL journal (issue 19) with the real binary, a real anvil and a real
// PostgreSQL server (support/postgres_server.hpp): the database stopped with `pg_ctl stop -m
// immediate` under load (catalog rows E3, A3: writes refused with 503 while it is down, reads go
// on, /readyz and the metrics say so, nothing accepted is lost, and the gateway comes back by
// itself), three gateways sharing one database (one dispatches, the others journal what they
// accept and hand it over) while the one that dispatches is killed with SIGKILL, every
// transaction mined exactly once, and an owner whose session was lost while a standby took over,
// which stops rather than carry on from memory.

#include "integration/writes_fixture.hpp"
#include "support/postgres_server.hpp"
#include "support/process.hpp"
#include "support/tcp_forwarder.hpp"
#include "support/tx_signer.hpp"

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

// One replica's answer to a managed send: the id (gateway_sendTransaction) or the first
// attempt's hash (eth_sendTransaction); empty when the replica did not keep it (gone, 503).
struct ManagedSent {
    std::string id;
    std::string hash;
};

// A refusal by the caps (tx.max_queued_per_sender): the client sends faster than the chain mines,
// and sends it again later.
bool full(const json::value& answer) {
    const json::value* error = answer.as_object().if_contains("error");
    return error && error->at("code") == -32005;
}

ManagedSent send_managed(std::uint16_t port, const std::string& from, bool wait,
                         const std::string& key) {
    std::vector<std::pair<std::string, std::string>> headers;
    if (!key.empty()) headers.emplace_back("Idempotency-Key", key);
    try {
        HttpConnection c(port, 60s);
        const HttpReply r =
            c.request("POST", "/",
                      rpc_body(wait ? "eth_sendTransaction" : "gateway_sendTransaction",
                               fmt::format(R"([{{"from":"{}","to":"{}","value":"0x1"}}])", from,
                                           "0x000000000000000000000000000000000000dead")),
                      headers);
        if (r.status != 200) {
            EXPECT_EQ(r.status, 503u) << r.body;
            return {};
        }
        const json::value v = json::parse(r.body);
        if (full(v)) return {};  // sent again once some are mined
        if (!v.as_object().contains("result")) {
            ADD_FAILURE() << r.body;
            return {};
        }
        if (wait) return {"", str(v.at("result"))};
        return {str(v.at("result").at("id")), ""};
    } catch (const std::exception&) {
        return {};  // the replica is gone
    }
}

// A1 (API server crash) with replicas that share one journal (PostgreSQL): three gateways on one
// database; the first owns the journal and dispatches, the other two journal what they accept
// and hand it over. 300 writes spread over all three (raw transactions of two senders, managed
// ones of a third by gateway_sendTransaction and eth_sendTransaction, a third of them with an
// Idempotency-Key, each of those sent again to another replica) while the owner is killed with
// SIGKILL a third of the way in. A standby takes over and carries on what the dead one held:
// every transaction is mined exactly once, each sender's nonces contiguous, and any replica's
// admin API shows every one. (A managed send without a key whose answer the kill took could not
// be sent again without risking a second transaction: those go to the replicas that live, as a
// client without keys should send to one that answers.)
TEST_F(PostgresWritesTest, A1_ThreeReplicasShareTheWritesWhileOneIsKilledAndEachIsMinedOnce) {
    const std::string hot_key =
        "0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318";
    const std::string hot = address_of(hot_key);
    write_file(dir + "/hot.key", hot_key + "\n");
    result(anvil->port(), "anvil_setBalance", "[\"" + hot + "\",\"0x56bc75e2d63100000\"]");
    const std::string chains_yaml =
        chains() + fmt::format("    accounts:\n      - {{address: \"{}\", signer: hot}}\n", hot);
    const std::string signers =
        fmt::format("signers:\n  - {{id: hot, type: local, key_file: \"{}/hot.key\"}}\n", dir);
    std::vector<std::unique_ptr<GatewayProcess>> replicas;
    for (int i = 0; i < 3; ++i) {
        replicas.push_back(std::make_unique<GatewayProcess>(dir, chains_yaml, "", url, signers));
        ASSERT_TRUE(replicas.back()->wait_ready()) << replicas.back()->process().output();
    }
    const auto metrics = [&](int i) {
        return http_get(replicas[i]->admin_port(), "/metrics").body;
    };
    EXPECT_THAT(metrics(0), HasSubstr("gateway_journal_standby 0"));
    for (int i : {1, 2}) {
        EXPECT_THAT(metrics(i), HasSubstr("gateway_journal_standby 1"));
        EXPECT_THAT(metrics(i), HasSubstr("gateway_journal_up 1"));
        EXPECT_EQ(http_get(replicas[i]->admin_port(), "/readyz?require=journal").status, 200u)
            << "a standby takes writes: ready";
    }

    const std::vector<Tx> raw = transfers(100);
    constexpr int kManaged = 100;
    std::atomic<bool> killed{false};
    std::atomic<int> sent{0};
    const auto live = [&](int turn) { return killed ? 1 + turn % 2 : turn % 3; };

    std::thread raw_client([&] {
        int turn = 0;
        for (const auto& tx : raw) {
            for (;;) {
                const int i = live(turn++);
                HttpReply r;
                try {
                    r = send_raw(replicas[i]->port(), tx.raw);
                } catch (const std::exception&) {
                    continue;  // the replica is gone: another one
                }
                if (r.status == 200) {
                    const json::value v = json::parse(r.body);
                    if (full(v)) {
                        std::this_thread::sleep_for(50ms);
                        continue;
                    }
                    const json::value* hash = v.as_object().if_contains("result");
                    EXPECT_TRUE(hash && *hash == tx.hash.c_str()) << r.body;
                    break;
                }
                EXPECT_EQ(r.status, 503u) << r.body;
                std::this_thread::sleep_for(20ms);
            }
            ++sent;
        }
    });
    std::vector<ManagedSent> managed(kManaged);
    std::vector<std::string> same_key_ids(kManaged);
    std::thread managed_client([&] {
        int turn = 0;
        for (int n = 0; n < kManaged; ++n) {
            const bool keyed = n % 3 == 0;
            const bool wait = n % 10 == 5;
            const std::string key = keyed ? fmt::format("a1-{}", n) : "";
            for (int tries = 0; tries < 200 && managed[n].id.empty() && managed[n].hash.empty();
                 ++tries) {
                const int i = keyed ? live(turn++) : 1 + turn++ % 2;
                managed[n] = send_managed(replicas[i]->port(), hot, wait, key);
                if (managed[n].id.empty() && managed[n].hash.empty())
                    std::this_thread::sleep_for(20ms);
            }
            // The same key again, to another replica: the same transaction.
            for (int tries = 0; keyed && !wait && tries < 200 && same_key_ids[n].empty(); ++tries)
                same_key_ids[n] = send_managed(replicas[live(turn++)]->port(), hot, false, key).id;
            ++sent;
        }
    });
    ASSERT_TRUE(wait_until([&] { return sent >= 100; }, 60s));
    replicas[0]->process().signal(SIGKILL);
    ASSERT_EQ(replicas[0]->process().wait(5s), 128 + SIGKILL);
    killed = true;
    raw_client.join();
    managed_client.join();

    // One of the two took over.
    ASSERT_TRUE(wait_until(
        [&] {
            return metrics(1).find("gateway_journal_standby 0") != std::string::npos ||
                   metrics(2).find("gateway_journal_standby 0") != std::string::npos;
        },
        10s))
        << "no standby took over";
    const int owner = metrics(1).find("gateway_journal_standby 0") != std::string::npos ? 1 : 2;
    EXPECT_THAT(metrics(3 - owner), HasSubstr("gateway_journal_standby 1")) << "one owner";

    for (int n = 0; n < kManaged; ++n) {
        ASSERT_TRUE(!managed[n].id.empty() || !managed[n].hash.empty()) << "write " << n;
        if (n % 3 == 0 && n % 10 != 5) {
            EXPECT_EQ(same_key_ids[n], managed[n].id) << "key a1-" << n << " made two";
        }
    }
    run_gateway(std::move(replicas[owner]));  // the fixture's checks ask the new owner
    ASSERT_TRUE(wait_completed(raw)) << json::serialize(admin_transactions());
    // Every managed one COMPLETED, as any replica reads the journal.
    const std::uint16_t other = replicas[3 - owner]->port();
    std::set<std::string> managed_mined;
    for (int n = 0; n < kManaged; ++n) {
        const std::string which = managed[n].id.empty() ? managed[n].hash : managed[n].id;
        json::value m;
        ASSERT_TRUE(wait_until(
            [&] {
                m = result(other, "gateway_getTransaction", "[\"" + which + "\"]");
                return m.is_object() && str(m.at("state")) == "COMPLETED";
            },
            60s))
            << which << ": " << json::serialize(m);
        managed_mined.insert(managed[n].id.empty() ? str(m.at("hash")) : str(m.at("minedHash")));
    }
    EXPECT_EQ(managed_mined.size(), static_cast<std::size_t>(kManaged));

    // The chain holds each once and nothing else; each sender's nonces contiguous from 0.
    const std::vector<std::string> mined = chain_transactions();
    const std::set<std::string> distinct(mined.begin(), mined.end());
    EXPECT_EQ(distinct.size(), mined.size()) << "a transaction mined twice";
    std::set<std::string> expected = managed_mined;
    for (const auto& tx : raw) expected.insert(tx.hash);
    EXPECT_EQ(distinct, expected);
    EXPECT_EQ(chain_nonce(kAddrA), 100u);
    EXPECT_EQ(chain_nonce(kAddrB), 100u);
    EXPECT_EQ(chain_nonce(hot), static_cast<std::uint64_t>(kManaged));

    // The standby's admin API shows every one.
    const HttpReply listed =
        http_get(replicas[3 - owner]->admin_port(), "/admin/transactions?limit=10000");
    ASSERT_EQ(listed.status, 200u);
    const json::value listing = json::parse(listed.body);
    std::set<std::string> shown;
    for (const auto& t : listing.at("transactions").as_array()) shown.insert(str(t.at("hash")));
    for (const auto& h : expected) EXPECT_TRUE(shown.contains(h)) << h;
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
        [&] {
            return http_get(standby->admin_port(), "/metrics")
                       .body.find("gateway_journal_standby 0") != std::string::npos;
        },
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
