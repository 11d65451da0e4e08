// The PostgreSQL journal and the session it stands on (issue 19), against a real server
// (support/postgres_server.hpp): statements with parameters, NULLs, each failure sorted as its
// caller acts on it, a server killed and started again (catalog row E3: a lost connection is
// seen as one, the journal fails closed and comes back by itself, and a new session finds what
// was committed), one gateway owning a journal at a time, and messages that keep a password out.
// What every journal does is journal_contract_test.cpp's, which runs against PostgreSQL too.

#include "gateway/store/journal_service.hpp"
#include "gateway/store/pg_connection.hpp"
#include "gateway/store/store.hpp"

#include "integration/devnet.hpp"
#include "support/journal_records.hpp"
#include "support/postgres_server.hpp"
#include "support/tcp_forwarder.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

namespace gateway::test {
namespace {

using namespace std::chrono_literals;
using store::pg::Connection;
using store::pg::Failure;
using ::testing::HasSubstr;
using ::testing::Not;

using PostgresTest = PostgresSuite;

// The failure `f` throws (a test failure when it throws nothing or something else).
template <class F>
store::pg::Error failure_of(F&& f) {
    try {
        f();
    } catch (const store::pg::Error& e) {
        return e;
    }
    ADD_FAILURE() << "no store::pg::Error";
    return store::pg::Error(Failure::other, "", "");
}

TEST_F(PostgresTest, StatementsTakeParametersAndGiveRowsWithNulls) {
    Connection c(server->url(), 5s);
    ASSERT_TRUE(c.ok());
    c.exec("CREATE TABLE t1 (id bigint PRIMARY KEY, note text)");
    EXPECT_EQ(c.exec("INSERT INTO t1 VALUES ($1, $2), ($3, $4)",
                     {"1", "it's \"quoted\"", "2", std::nullopt})
                  .affected,
              2u);
    const store::pg::Result r = c.exec("SELECT id, note FROM t1 ORDER BY id");
    ASSERT_EQ(r.rows.size(), 2u);
    EXPECT_EQ(r.rows[0][0], "1");
    EXPECT_EQ(r.rows[0][1], "it's \"quoted\"");
    EXPECT_EQ(r.rows[1][1], std::nullopt);
    EXPECT_EQ(c.exec("UPDATE t1 SET note = 'x' WHERE id > $1", {"0"}).affected, 2u);
}

// A value with a NUL byte would reach the server cut short (libpq takes C strings): refused.
TEST_F(PostgresTest, AValueWithANulByteIsRefusedNotCutShort) {
    Connection c(server->url(), 5s);
    const auto refused =
        failure_of([&] { c.exec("SELECT $1::text", {std::string("alice\0x", 7)}); });
    EXPECT_EQ(refused.failure(), Failure::other);
    EXPECT_THAT(refused.what(), HasSubstr("NUL"));
    EXPECT_EQ(c.exec("SELECT $1::text", {std::string("alice")}).rows.at(0).at(0), "alice");
}

TEST_F(PostgresTest, EachFailureIsSortedAsItsCallerActsOnIt) {
    Connection c(server->url(), 5s);
    c.exec("CREATE TABLE t2 (id bigint PRIMARY KEY)");
    c.exec("INSERT INTO t2 VALUES (1)");
    const auto duplicate = failure_of([&] { c.exec("INSERT INTO t2 VALUES ($1)", {"1"}); });
    EXPECT_EQ(duplicate.failure(), Failure::conflict);
    EXPECT_EQ(duplicate.sqlstate(), "23505");
    const auto typo = failure_of([&] { c.exec("SELEKT 1"); });
    EXPECT_EQ(typo.failure(), Failure::other);
    EXPECT_EQ(typo.sqlstate(), "42601");
    EXPECT_TRUE(c.ok());  // a refused statement leaves the session as it was
    EXPECT_EQ(store::pg::classify("40001"), Failure::retry);
    EXPECT_EQ(store::pg::classify("40P01"), Failure::retry);
    EXPECT_EQ(store::pg::classify("57P01"), Failure::connection);
    EXPECT_EQ(store::pg::classify("08006"), Failure::connection);
    EXPECT_EQ(store::pg::classify(""), Failure::other);
}

TEST_F(PostgresTest, E3_AKilledServerIsAConnectionFailureAndANewSessionFindsWhatWasCommitted) {
    Connection c(server->url(), 5s);
    c.exec("CREATE TABLE t3 (id bigint PRIMARY KEY)");
    c.exec("INSERT INTO t3 VALUES (7)");
    server->kill();
    const auto lost = failure_of([&] { c.exec("INSERT INTO t3 VALUES (8)"); });
    EXPECT_EQ(lost.failure(), Failure::connection) << lost.what();
    EXPECT_FALSE(c.ok());
    const auto down = failure_of([&] { c.reconnect(); });
    EXPECT_EQ(down.failure(), Failure::connection);
    EXPECT_THAT(down.what(), HasSubstr("cannot connect"));
    server->start();
    c.reconnect();
    ASSERT_TRUE(c.ok());
    const store::pg::Result r = c.exec("SELECT id FROM t3 ORDER BY id");
    ASSERT_EQ(r.rows.size(), 1u);
    EXPECT_EQ(r.rows[0][0], "7");
}

TEST_F(PostgresTest, AConnectionFailureNeverRepeatsThePassword) {
    // A user that does not exist, with a password in the URL: refused, and the message says
    // who and where, not the password.
    const std::string url =
        "postgresql://nobody:S3CRETPASSWORD@127.0.0.1:" + std::to_string(server->port()) +
        "/postgres";
    const auto refused = failure_of([&] { Connection c(url, 5s); });
    EXPECT_EQ(refused.failure(), Failure::connection);
    EXPECT_THAT(refused.what(), HasSubstr("nobody"));
    EXPECT_THAT(refused.what(), Not(HasSubstr("S3CRETPASSWORD")));

    // A password whose '%', '/' or '@' is not percent-encoded: libpq would quote the part it
    // cannot read, or take it for a port or a database; neither the message nor describe()
    // holds any of it.
    const std::string port = std::to_string(server->port());
    for (const std::string& odd : {"postgresql://gw:ab%zzSECRET@127.0.0.1:" + port + "/postgres",
                                   "postgresql://gw:SE/CRET@127.0.0.1:" + port + "/postgres",
                                   "postgresql://gw:p%00SECRET@127.0.0.1:" + port + "/postgres",
                                   "postgresql://gw:SE@CRET@127.0.0.1:" + port + "/postgres"}) {
        const auto e = failure_of([&] { Connection c(odd, 5s); });
        EXPECT_EQ(e.failure(), Failure::connection) << e.what();
        for (const char* part : {"SECRET", "SE", "CRET"})
            EXPECT_THAT(e.what(), Not(HasSubstr(part))) << odd;
        for (const char* part : {"SECRET", "CRET"})
            EXPECT_THAT(store::pg::describe(odd), Not(HasSubstr(part))) << odd;
    }
}

config::StoreConfig postgres_store(const std::string& url, std::chrono::milliseconds timeout) {
    config::StoreConfig c;
    c.backend = "postgres";
    c.url = url;
    c.timeout = timeout;
    return c;
}

// Version 14 counts the unfinished raw transactions by a trigger (what a standby checks the caps
// against): a version-13 journal with rows starts from the rows it holds.
TEST_F(PostgresTest, Version14CountsTheQueuedTransactionsAVersion13JournalHolds) {
    auto c = postgres_store(server->database("v13"), 2000ms);
    {
        auto v13 = store::open_store_at_version(c, 13);
        ASSERT_EQ(v13->schema_version(), 13);
        store::TxRecord a = record("0xa1", 0);
        a.source = "alice";
        v13->insert(a);
        v13->insert(record("0xa2", 1, store::TxState::broadcasting));
        v13->insert(record("0xa3", 2, store::TxState::completed));
    }
    auto v14 = store::open_store(c);
    EXPECT_EQ(v14->schema_version(), 14);
    const std::string sender = record("0xa1", 0).sender;
    store::QueuedCounts n = v14->queued_counts("devnet", sender, "alice");
    EXPECT_EQ(n.chain, 2u);
    EXPECT_EQ(n.sender, 2u);
    EXPECT_EQ(n.source, 1u);
    v14->update(store::TxUpdate{"0xa1", store::TxState::completed, "mined", 10});
    n = v14->queued_counts("devnet", sender, "alice");
    EXPECT_EQ(n.chain, 1u);
    EXPECT_EQ(n.source, 0u);
}

TEST_F(PostgresTest, ALeaseIsOneGatewaysForAsLongAsItsSessionLives) {
    const std::string url = server->database("leases");
    auto a = store::open_store(postgres_store(url, 1000ms));
    const std::string name = "devnet/0xaa";
    EXPECT_EQ(a->replicas(), 1u);
    EXPECT_EQ(a->leases_held(), 0u);
    EXPECT_THROW(a->require_lease(name), store::LeaseLost);
    ASSERT_TRUE(a->take_lease(name));
    EXPECT_TRUE(a->take_lease(name)) << "held already";
    EXPECT_EQ(a->leases_held(), 1u);
    EXPECT_NO_THROW(a->require_lease(name));
    // Taken inside a transaction that is rolled back: held all the same (a session lock).
    a->begin();
    EXPECT_TRUE(a->take_lease("devnet/0xcc"));
    a->rollback();
    EXPECT_NO_THROW(a->require_lease("devnet/0xcc"));

    {
        auto b = store::open_store(postgres_store(url, 1000ms));
        EXPECT_EQ(b->replicas(), 2u);
        EXPECT_FALSE(b->take_lease(name)) << "two holders";
        EXPECT_THROW(b->require_lease(name), store::LeaseLost);
        EXPECT_TRUE(b->take_lease("devnet/0xbb"));
        EXPECT_EQ(a->replicas(), 2u);
    }
    // b's session ended: its lease is free, and it is one gateway again, once the server has
    // seen the session go (its backend ends after the client closes).
    EXPECT_TRUE(wait_until([&] { return a->take_lease("devnet/0xbb"); }, 5s));
    EXPECT_TRUE(wait_until([&] { return a->replicas() == 1; }, 5s)) << a->replicas();

    // a's session ends (a killed gateway's does too): a new session of the same gateway holds
    // nothing it held before, and another takes its leases.
    a.reset();
    auto c = store::open_store(postgres_store(url, 1000ms));
    EXPECT_THROW(c->require_lease(name), store::LeaseLost);
    EXPECT_TRUE(wait_until([&] { return c->take_lease(name); }, 5s));
    EXPECT_TRUE(wait_until([&] { return c->replicas() == 1; }, 5s)) << c->replicas();
}

TEST_F(PostgresTest, ReplicasAskingForOneLeaseAtOnceGetOneOwner) {
    const std::string url = server->database("race");
    store::open_store(postgres_store(url, 5000ms));  // the schema, once
    constexpr int kReplicas = 8;
    std::atomic<int> owners{0}, ready{0};
    std::atomic<bool> go{false};
    std::vector<std::unique_ptr<store::Store>> stores(kReplicas);
    std::vector<std::thread> replicas;
    for (int i = 0; i < kReplicas; ++i)
        replicas.emplace_back([&, i] {
            stores[i] = store::open_store(postgres_store(url, 5000ms));
            ++ready;
            while (!go) std::this_thread::yield();
            if (stores[i]->take_lease("devnet/0xbb")) ++owners;
        });
    while (ready < kReplicas) std::this_thread::yield();
    go = true;
    for (auto& t : replicas) t.join();
    EXPECT_EQ(owners.load(), 1);
    EXPECT_EQ(stores[0]->replicas(), static_cast<std::size_t>(kReplicas));
}

// Until replicas own senders apart, one gateway owns a journal and dispatches what it holds: a
// second one on the same database opens it as a standby (it journals what it accepts and hands
// it over, through the handoffs), and takes over by itself when the owner's session ends. Its
// messages never hold the password.
TEST_F(PostgresTest, AJournalHasOneOwnerAndASecondGatewayTakesOverWhenItsSessionEnds) {
    // Trust authentication takes any password: this one must not appear anywhere.
    const std::string url =
        "postgresql://postgres:S3CRETPASSWORD@127.0.0.1:" + std::to_string(server->port()) + "/" +
        "owners";
    server->database("owners");
    auto owner = store::open_store(postgres_store(url, 2000ms));
    EXPECT_EQ(owner->schema_version(), 14);
    EXPECT_TRUE(owner->owns());
    EXPECT_THAT(owner->describe(), HasSubstr("postgres@127.0.0.1"));
    EXPECT_THAT(owner->describe(), Not(HasSubstr("S3CRETPASSWORD")));
    owner->insert(record("0xaa", 0));

    const auto started = std::chrono::steady_clock::now();
    {
        auto second = store::open_store(postgres_store(url, 300ms));
        EXPECT_FALSE(second->owns());
        EXPECT_FALSE(second->try_own());
        EXPECT_GE(std::chrono::steady_clock::now() - started, 250ms) << "it waited for the owner";
        // It writes all the same, and hands over what it wrote; the owner takes it, once.
        second->insert(record("0xab", 1));
        second->hand_off({"devnet", false, "0xab", "0xs1"});
        second->hand_off({"devnet", true, "gtx-1", "0xs2"});
    }
    const auto raw = owner->take_handoffs("devnet", false, 10);
    ASSERT_EQ(raw.size(), 1u);
    EXPECT_EQ(raw[0].key, "0xab");
    EXPECT_EQ(raw[0].sender, "0xs1");
    EXPECT_TRUE(owner->find("0xab"));
    EXPECT_TRUE(owner->take_handoffs("devnet", false, 10).empty()) << "taken twice";
    EXPECT_TRUE(owner->take_handoffs("other", true, 10).empty());
    EXPECT_EQ(owner->take_handoffs("devnet", true, 10).at(0).key, "gtx-1");

    // Through a journal service: a standby, told as one, whose operations run, that does not
    // dispatch, and tries to take over every reopen_after (no backoff); the owner once the
    // owner's session ends.
    store::JournalOptions options;
    options.reopen_after = 100ms;
    options.reopen_max = 10s;
    std::atomic<int> standby{0}, over{0};
    options.on_event = [&](store::JournalEvent e) {
        if (e == store::JournalEvent::standby) ++standby;
        if (e == store::JournalEvent::standby_over) ++over;
    };
    std::atomic<int> opened{0};
    store::JournalService service(
        [&] {
            ++opened;
            return std::unique_ptr<store::Journal>(store::open_store(postgres_store(url, 100ms)));
        },
        options);
    service.run_blocking([](store::JournalView& j) { EXPECT_TRUE(j.find("0xaa")); });
    EXPECT_EQ(standby.load(), 1);
    EXPECT_TRUE(service.shared());
    EXPECT_FALSE(service.dispatching());
    EXPECT_EQ(service.failure(), "");
    std::this_thread::sleep_for(1s);
    EXPECT_FALSE(service.dispatching());
    EXPECT_EQ(opened.load(), 1) << "a standby keeps its session";

    // The owner's session ends (here a clean close; a killed process closes its socket too).
    owner.reset();
    const auto freed = std::chrono::steady_clock::now();
    ASSERT_TRUE(wait_until([&] { return service.dispatching(); }, 5s)) << service.failure();
    EXPECT_LT(std::chrono::steady_clock::now() - freed, 1s) << "not every reopen_after";
    EXPECT_EQ(standby.load(), 1) << "told once";
    EXPECT_EQ(over.load(), 1);
    EXPECT_EQ(opened.load(), 1) << "taken over in its own session";
    service.run_blocking([](store::JournalView& j) { EXPECT_TRUE(j.find("0xab")); });
}

// E3 with the journal service: the server dies, writes are refused at once (fail closed, never
// "kept" when they were not), and once the server is back the service opens the journal again
// by itself; what was committed before is there, what was refused is not.
TEST_F(PostgresTest, E3_TheJournalFailsClosedWhileTheServerIsDownAndComesBackByItself) {
    const std::string url = server->database("outage");
    store::JournalOptions options;
    options.timeout = 2000ms;
    options.reopen_after = 50ms;
    options.reopen_max = 200ms;
    std::atomic<int> downs{0}, reopened{0};
    options.on_event = [&](store::JournalEvent e) {
        if (e == store::JournalEvent::down) ++downs;
        if (e == store::JournalEvent::reopened) ++reopened;
    };
    store::JournalService journal(
        [&] {
            return std::unique_ptr<store::Journal>(store::open_store(postgres_store(url, 1000ms)));
        },
        options);
    journal.run_blocking([](store::JournalView& j) { j.insert(record("0x01", 1)); });

    server->kill();
    EXPECT_THROW(journal.run_blocking([](store::JournalView& j) { j.insert(record("0x02", 2)); }),
                 store::StoreError);
    EXPECT_EQ(downs.load(), 1);
    EXPECT_THAT(journal.failure(), HasSubstr("postgres"));
    // While it is down: refused again, at once or after a failed reopen, never kept.
    EXPECT_THROW(journal.run_blocking([](store::JournalView& j) { j.insert(record("0x03", 3)); }),
                 store::StoreError);

    server->start();
    ASSERT_TRUE(insert_once_usable(journal, record("0x04", 4), 1000))
        << "the journal did not come back: " << journal.failure();
    EXPECT_GE(reopened.load(), 1);
    EXPECT_EQ(journal.failure(), "");
    std::vector<std::string> hashes;
    journal.run_blocking([&](store::JournalView& j) {
        for (const auto& r : j.unfinished()) hashes.push_back(r.hash);
    });
    EXPECT_THAT(hashes, ::testing::ElementsAre("0x01", "0x04"));
}

// An owner's journal service whose session reaches the server through a link the test can take
// away: it tries again every 100 ms, pings every 100 ms, counts its downs and supersedes, and has
// written 0xaa.
struct Linked {
    Linked(PostgresServer& server, const std::string& database)
        : direct(server.database(database)), link(server.port()) {
        const std::string through_link =
            "postgresql://postgres@127.0.0.1:" + std::to_string(link.port()) + "/" + database;
        store::JournalOptions options;
        options.reopen_after = 100ms;
        options.reopen_max = 200ms;
        options.ping_every = 100ms;
        options.on_event = [this](store::JournalEvent e) {
            if (e == store::JournalEvent::down) ++down;
            if (e == store::JournalEvent::superseded) ++superseded;
        };
        service = std::make_unique<store::JournalService>(
            [through_link] {
                return std::unique_ptr<store::Journal>(
                    store::open_store(postgres_store(through_link, 500ms)));
            },
            options);
        service->run_blocking([](store::JournalView& j) { j.insert(record("0xaa", 0)); });
    }

    std::string direct;  ///< the database's URL, not through the link
    TcpForwarder link;
    std::atomic<int> down{0}, superseded{0};
    std::unique_ptr<store::JournalService> service;
};

// A gateway whose session was lost (here: the link to the server taken away) learns it by its
// ping, without a write; when it reaches the server again and finds that another gateway owned
// the journal meanwhile (the owner number moved by more than its own reopening), it is
// superseded: told once, and every operation refused from then on.
TEST_F(PostgresTest, AnOwnerThatFindsAnotherOwnedTheJournalMeanwhileIsSuperseded) {
    Linked owner(*server, "superseded");
    const std::string& direct = owner.direct;

    owner.link.stop();
    ASSERT_TRUE(wait_until([&] { return owner.down.load() == 1; }, 3s))
        << "the ping did not notice";
    // Another gateway (another process) owns it meanwhile, and writes.
    const pid_t other = ::fork();
    ASSERT_GE(other, 0);
    if (other == 0) {
        try {
            store::open_store(postgres_store(direct, 500ms))->insert(record("0xbb", 1));
        } catch (...) {
            ::_exit(1);
        }
        ::_exit(0);
    }
    int status = 0;
    ASSERT_EQ(::waitpid(other, &status, 0), other);
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    owner.link.start();
    ASSERT_TRUE(wait_until([&] { return owner.superseded.load() == 1; }, 3s))
        << owner.service->failure();
    EXPECT_THAT(owner.service->failure(), HasSubstr("must restart"));
    EXPECT_THROW(
        owner.service->run_blocking([](store::JournalView& j) { j.insert(record("0xcc", 2)); }),
        store::StoreError);
    std::this_thread::sleep_for(300ms);
    EXPECT_EQ(owner.superseded.load(), 1) << "told once, and never opened again";
    auto now_owner = store::open_store(postgres_store(direct, 500ms));
    EXPECT_TRUE(now_owner->find("0xbb"));
    EXPECT_FALSE(now_owner->find("0xcc"));
}

// The one case where the owner number moves by two with nobody else owning the journal: this
// gateway's own opening whose answer it never heard (its connection lost right after the number
// was written). The number is kept with the process's name, so that one is known for its own:
// the gateway carries on, not superseded.
TEST_F(PostgresTest, AnOpeningOfItsOwnWhoseAnswerWasLostIsNoSupersede) {
    Linked owner(*server, "own_opening");
    const std::string& direct = owner.direct;
    owner.link.stop();
    ASSERT_TRUE(wait_until([&] { return owner.down.load() == 1; }, 3s));
    {
        // What this process's lost opening left: the next number, with its name.
        Connection admin(direct, 5s);
        const std::string value =
            *admin.exec("SELECT value FROM gateway_meta WHERE key = 'owner_epoch'")
                 .rows.at(0)
                 .at(0);
        const auto colon = value.find(':');
        ASSERT_NE(colon, std::string::npos) << value;
        admin.exec("UPDATE gateway_meta SET value = $1 WHERE key = 'owner_epoch'",
                   {std::to_string(std::stoull(value.substr(0, colon)) + 1) + value.substr(colon)});
    }
    owner.link.start();
    ASSERT_TRUE(insert_once_usable(*owner.service, record("0xbb", 1), 1000))
        << owner.service->failure();
    EXPECT_EQ(owner.superseded.load(), 0);
}

// A server that takes the connection but never answers (a frozen process, a proxy that hangs:
// TCP stays up, so neither its timeouts nor the server's statement_timeout notice): a statement
// gives up at the deadline and closes the session, and the journal fails closed in time and says
// why, rather than hang its thread; once the server answers again it comes back.
TEST_F(PostgresTest, AServerThatNeverAnswersClosesTheSessionAtTheDeadline) {
    const std::string direct = server->database("silent");
    TcpForwarder link(server->port());
    const std::string url =
        "postgresql://postgres@127.0.0.1:" + std::to_string(link.port()) + "/silent";
    Connection c(url, 1000ms);
    c.exec("SELECT 1");
    link.set_mode(TcpForwarder::Mode::blackhole);
    const auto started = std::chrono::steady_clock::now();
    const auto silent = failure_of([&] { c.exec("SELECT 1"); });
    EXPECT_EQ(silent.failure(), Failure::connection) << silent.what();
    EXPECT_THAT(silent.what(), HasSubstr("did not answer within 2000 ms"));
    EXPECT_LT(std::chrono::steady_clock::now() - started, 6s);
    EXPECT_FALSE(c.ok());

    // The journal on it: refused in time, with the reason for /readyz, and back afterwards.
    link.set_mode(TcpForwarder::Mode::forward);
    {
        store::JournalOptions options;
        options.timeout = 3000ms;
        options.reopen_after = 100ms;
        options.reopen_max = 200ms;
        store::JournalService service(
            [&] {
                return std::unique_ptr<store::Journal>(
                    store::open_store(postgres_store(url, 1000ms)));
            },
            options);
        service.run_blocking([](store::JournalView& j) { j.insert(record("0xaa", 0)); });
        link.set_mode(TcpForwarder::Mode::blackhole);
        EXPECT_THROW(
            service.run_blocking([](store::JournalView& j) { j.insert(record("0xbb", 1)); }),
            store::StoreError);
        ASSERT_TRUE(wait_until([&] { return !service.failure().empty(); }, 5s));
        link.set_mode(TcpForwarder::Mode::forward);
        ASSERT_TRUE(insert_once_usable(service, record("0xcc", 2), 2000)) << service.failure();
    }
    auto check = store::open_store(postgres_store(direct, 1000ms));
    EXPECT_TRUE(check->find("0xaa"));
    EXPECT_FALSE(check->find("0xbb")) << "a statement cut off at its deadline was rolled back";
}

}  // namespace
}  // namespace gateway::test
