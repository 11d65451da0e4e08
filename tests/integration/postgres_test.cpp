// The PostgreSQL session the PostgreSQL journal will stand on (issue 19), against a real server
// (support/postgres_server.hpp): statements with parameters, NULLs, each failure sorted as its
// caller acts on it, a server killed and started again (catalog row E3: a lost connection is
// seen as one, and a new one finds what was committed), and messages that keep a password out.

#include "gateway/store/pg_connection.hpp"
#include "gateway/store/pg_leases.hpp"

#include "support/postgres_server.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
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

class PostgresTest : public ::testing::Test {
protected:
    static void SetUpTestSuite() { server = std::make_unique<PostgresServer>(); }
    static void TearDownTestSuite() { server.reset(); }
    static std::unique_ptr<PostgresServer> server;
};
std::unique_ptr<PostgresServer> PostgresTest::server;

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
}

TEST_F(PostgresTest, ALeaseHasOneOwnerUntilItExpiresAndEachNewOwnerALargerToken) {
    Connection c(server->url(), 5s);
    store::pg::Leases leases(c);
    leases.create_schema();
    leases.create_schema();  // idempotent
    const std::string name = "devnet/0xaa";
    const auto a = leases.acquire(name, "replica-a", 1s);
    ASSERT_EQ(a, 1u);
    EXPECT_EQ(leases.acquire(name, "replica-b", 1s), std::nullopt);
    EXPECT_EQ(leases.acquire(name, "replica-a", 1s), std::nullopt);  // renew, not acquire
    EXPECT_TRUE(leases.renew(name, "replica-a", *a, 1s));
    EXPECT_TRUE(leases.holds(name, *a));

    // replica-a stalls past its expiry: replica-b takes over with a larger token, and
    // replica-a's token no longer holds, nor can it renew.
    std::this_thread::sleep_for(1200ms);  // past the second's lease, on the database's clock
    EXPECT_FALSE(leases.holds(name, *a));
    const auto b = leases.acquire(name, "replica-b", 10s);
    ASSERT_EQ(b, 2u);
    EXPECT_FALSE(leases.renew(name, "replica-a", *a, 10s));
    EXPECT_FALSE(leases.holds(name, *a));
    EXPECT_TRUE(leases.holds(name, *b));

    // Released: free at once, and the next token is still larger.
    leases.release(name, "replica-a", *a);  // not the owner: nothing
    EXPECT_TRUE(leases.holds(name, *b));
    leases.release(name, "replica-b", *b);
    EXPECT_FALSE(leases.holds(name, *b));
    EXPECT_EQ(leases.acquire(name, "replica-a", 10s), 3u);
}

TEST_F(PostgresTest, ReplicasAskingForOneLeaseAtOnceGetOneOwner) {
    {
        Connection c(server->url(), 5s);
        store::pg::Leases(c).create_schema();
    }
    constexpr int kReplicas = 8;
    std::atomic<int> owners{0};
    std::vector<std::thread> replicas;
    for (int i = 0; i < kReplicas; ++i)
        replicas.emplace_back([&, i] {
            Connection c(server->url(), 5s);
            store::pg::Leases leases(c);
            if (leases.acquire("devnet/0xbb", "replica-" + std::to_string(i), 10s)) ++owners;
        });
    for (auto& t : replicas) t.join();
    EXPECT_EQ(owners.load(), 1);
}

}  // namespace
}  // namespace gateway::test
