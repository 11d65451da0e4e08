// The listener's connection limits without sockets: who is admitted, who is evicted, and the
// count, with peers from any address (the listener's own tests can only connect from loopback).

#include "gateway/http/connections.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

namespace gateway::http {
namespace {

using namespace std::chrono_literals;
using Verdict = ConnectionTable::Verdict;
namespace asio = boost::asio;

class ConnectionsTest : public ::testing::Test {
protected:
    void make_table(std::size_t max_connections, std::size_t max_per_peer) {
        table = std::make_unique<ConnectionTable>(
            ConnectionTable::Limits{max_connections, max_per_peer},
            [this](std::size_t n) { counts.push_back(n); });
    }

    // A connection from `peer`, idle since `idle_for` before now.
    std::shared_ptr<Connection> connection(const std::string& peer,
                                           std::chrono::milliseconds idle_for = 0ms) {
        auto c = std::make_shared<Connection>(asio::ip::make_address(peer), t0 - idle_for);
        made.push_back(c);
        return c;
    }

    void TearDown() override {
        for (auto& c : made) table->remove(*c);
    }

    const Connection::Clock::time_point t0 = Connection::Clock::now();
    std::unique_ptr<ConnectionTable> table;
    std::vector<std::size_t> counts;  // what the gauge was told, in order
    std::vector<std::shared_ptr<Connection>> made;
};

TEST_F(ConnectionsTest, ConnectionsAreAdmittedBelowTheCapAndCounted) {
    make_table(2, 0);
    EXPECT_EQ(table->admit(connection("10.0.0.1")).verdict, Verdict::admitted);
    auto second = connection("10.0.0.2");
    EXPECT_EQ(table->admit(second).verdict, Verdict::admitted);
    EXPECT_EQ(table->size(), 2u);
    table->remove(*second);
    table->remove(*second);  // once only
    EXPECT_EQ(table->size(), 1u);
    EXPECT_EQ(counts, (std::vector<std::size_t>{1, 2, 1}));
}

TEST_F(ConnectionsTest, AtTheCapTheConnectionIdleLongestIsClaimedToMakeRoom) {
    make_table(3, 0);
    auto a = connection("10.0.0.1", 1s);
    auto oldest = connection("10.0.0.2", 5s);
    auto c = connection("10.0.0.3", 2s);
    for (auto& x : {a, oldest, c}) ASSERT_EQ(table->admit(x).verdict, Verdict::admitted);

    auto admission = table->admit(connection("10.0.0.4"));
    EXPECT_EQ(admission.verdict, Verdict::admitted);
    EXPECT_EQ(admission.evicted, oldest);
    EXPECT_TRUE(oldest->evicted());
    EXPECT_EQ(table->size(), 3u);
    EXPECT_EQ(counts.back(), 3u);
    // Its first byte arrives now: too late, the place has gone.
    EXPECT_FALSE(oldest->begin_request());
    EXPECT_TRUE(a->begin_request());
}

TEST_F(ConnectionsTest, WithEveryConnectionServingARequestANewOneIsRefused) {
    make_table(2, 0);
    auto a = connection("10.0.0.1", 3s);
    auto b = connection("10.0.0.2", 3s);
    table->admit(a);
    table->admit(b);
    ASSERT_TRUE(a->begin_request());
    ASSERT_TRUE(b->begin_request());
    ASSERT_TRUE(a->request_complete());
    ASSERT_TRUE(b->request_complete());

    auto admission = table->admit(connection("10.0.0.3"));
    EXPECT_EQ(admission.verdict, Verdict::full);
    EXPECT_EQ(admission.evicted, nullptr);
    EXPECT_FALSE(a->evicted());
    EXPECT_FALSE(b->evicted());
    EXPECT_EQ(table->size(), 2u);
}

// The race the claim settles: a connection whose request started before the claim keeps it.
TEST_F(ConnectionsTest, AConnectionThatStartedARequestFirstIsNotTheOneEvicted) {
    make_table(2, 0);
    auto oldest = connection("10.0.0.1", 9s);
    auto newer = connection("10.0.0.2", 1s);
    table->admit(oldest);
    table->admit(newer);
    ASSERT_TRUE(oldest->begin_request());

    auto admission = table->admit(connection("10.0.0.3"));
    EXPECT_EQ(admission.evicted, newer);
    EXPECT_FALSE(oldest->evicted());
}

// Slowloris: with nothing idle, the connection whose head has been arriving longest goes.
TEST_F(ConnectionsTest, WithNoneIdleTheOldestUnfinishedHeadIsEvicted) {
    make_table(3, 0);
    auto serving = connection("10.0.0.1");
    auto slow_old = connection("10.0.0.2");
    auto slow_new = connection("10.0.0.3");
    for (auto& x : {serving, slow_old, slow_new}) table->admit(x);
    const auto now = Connection::Clock::now();
    ASSERT_TRUE(serving->begin_request(now - 9s));
    ASSERT_TRUE(serving->request_complete());
    ASSERT_TRUE(slow_old->begin_request(now - 5s));
    ASSERT_TRUE(slow_new->begin_request(now - 1s));

    auto newcomer = connection("10.0.0.4");
    auto admission = table->admit(newcomer);
    EXPECT_EQ(admission.verdict, Verdict::admitted);
    EXPECT_EQ(admission.evicted, slow_old);
    EXPECT_FALSE(serving->evicted()) << "a request being served is never cut";
    // The claimed one's head completes now: too late.
    EXPECT_FALSE(slow_old->request_complete());
    // The other one's completes in time, and it is served.
    EXPECT_TRUE(slow_new->request_complete());
    ASSERT_TRUE(newcomer->begin_request());
    ASSERT_TRUE(newcomer->request_complete());
    EXPECT_EQ(table->admit(connection("10.0.0.5")).verdict, Verdict::full);
}

TEST_F(ConnectionsTest, AKeptAliveConnectionGoesBeforeAnUnfinishedRequest) {
    make_table(2, 0);
    auto slow = connection("10.0.0.1");
    auto kept = connection("10.0.0.2");
    table->admit(slow);
    table->admit(kept);
    ASSERT_TRUE(slow->begin_request(Connection::Clock::now() - 60s));
    // Served once, waiting for its next request: the first to go.
    ASSERT_TRUE(kept->begin_request());
    ASSERT_TRUE(kept->request_complete());
    kept->wait_for_request(Connection::Clock::now());
    EXPECT_EQ(table->admit(connection("10.0.0.3")).evicted, kept);
}

// A client still in its TLS handshake, or about to send its request, is spared while an
// attacker's stale connection can go instead.
TEST_F(ConnectionsTest, AYoungConnectionIsSparedWhileAnOldSlowOneCanGo) {
    make_table(3, 0);
    auto fresh = connection("10.0.0.1");      // accepted just now, no request yet
    auto stale = connection("10.0.0.2", 5s);  // accepted 5 s ago, nothing sent
    auto slowloris = connection("10.0.0.3");  // one byte of a head, 3 s ago
    for (auto& x : {fresh, stale, slowloris}) table->admit(x);
    ASSERT_TRUE(slowloris->begin_request(Connection::Clock::now() - 3s));
    EXPECT_EQ(table->admit(connection("10.0.0.4")).evicted, stale);
    EXPECT_EQ(table->admit(connection("10.0.0.5")).evicted, slowloris);
    EXPECT_FALSE(fresh->evicted());
    // With only young ones left, the oldest of them goes.
    EXPECT_EQ(table->admit(connection("10.0.0.6")).evicted, fresh);
}

// A pipelining client's next request, already in the buffer, can be claimed too while it is read.
TEST_F(ConnectionsTest, ARequestPipelinedBehindAnAnswerIsClaimableUntilItIsRead) {
    make_table(1, 0);
    auto a = connection("10.0.0.1", 5s);
    table->admit(a);
    ASSERT_TRUE(a->begin_request());
    ASSERT_TRUE(a->request_complete());
    a->wait_for_request(Connection::Clock::now() - 5s);
    ASSERT_TRUE(a->begin_request(Connection::Clock::now() - 5s));  // its bytes were there
    EXPECT_EQ(table->admit(connection("10.0.0.2")).evicted, a);
    EXPECT_FALSE(a->request_complete());
}

TEST_F(ConnectionsTest, AnIpv6PeerIsCountedWithItsSlash64) {
    make_table(0, 2);
    EXPECT_EQ(table->admit(connection("2001:db8:1:2::1")).verdict, Verdict::admitted);
    EXPECT_EQ(table->admit(connection("2001:db8:1:2:ffff::9")).verdict, Verdict::admitted);
    EXPECT_EQ(table->admit(connection("2001:db8:1:2:abcd::7")).verdict, Verdict::over_per_ip);
    EXPECT_EQ(table->admit(connection("2001:db8:1:3::1")).verdict, Verdict::admitted)
        << "another /64 is another subscriber";
    EXPECT_EQ(table->count_from(asio::ip::make_address("2001:db8:1:2::42")), 2u);
}

TEST_F(ConnectionsTest, AConnectionWaitingAgainAfterItsAnswerCanBeEvicted) {
    make_table(1, 0);
    auto a = connection("10.0.0.1");
    table->admit(a);
    ASSERT_TRUE(a->begin_request());
    ASSERT_TRUE(a->request_complete());
    EXPECT_EQ(table->admit(connection("10.0.0.2")).verdict, Verdict::full);
    a->wait_for_request(Connection::Clock::now());
    EXPECT_EQ(table->admit(connection("10.0.0.2")).evicted, a);
}

TEST_F(ConnectionsTest, ThePerAddressCapRefusesTheNextConnectionFromThatAddressOnly) {
    make_table(0, 2);
    auto first = connection("10.0.0.1");
    EXPECT_EQ(table->admit(first).verdict, Verdict::admitted);
    EXPECT_EQ(table->admit(connection("10.0.0.1")).verdict, Verdict::admitted);
    EXPECT_EQ(table->admit(connection("10.0.0.1")).verdict, Verdict::over_per_ip);
    EXPECT_EQ(table->admit(connection("10.0.0.2")).verdict, Verdict::admitted);
    EXPECT_EQ(table->admit(connection("2001:db8::1")).verdict, Verdict::admitted);
    EXPECT_EQ(table->count_from(asio::ip::make_address("10.0.0.1")), 2u);

    table->remove(*first);
    EXPECT_EQ(table->count_from(asio::ip::make_address("10.0.0.1")), 1u);
    EXPECT_EQ(table->admit(connection("10.0.0.1")).verdict, Verdict::admitted);
    EXPECT_EQ(table->size(), 4u);
}

TEST_F(ConnectionsTest, LoopbackPeersAreExemptFromThePerAddressCap) {
    make_table(0, 1);
    for (const char* peer :
         {"127.0.0.1", "127.0.0.1", "127.0.0.1", "::1", "::1", "127.0.0.9", "::ffff:127.0.0.1"})
        EXPECT_EQ(table->admit(connection(peer)).verdict, Verdict::admitted) << peer;
    EXPECT_EQ(table->count_from(asio::ip::make_address("127.0.0.1")), 0u);
}

TEST_F(ConnectionsTest, AnIpv4MappedPeerCountsAsItsIpv4Address) {
    make_table(0, 1);
    EXPECT_EQ(table->admit(connection("::ffff:10.0.0.1")).verdict, Verdict::admitted);
    EXPECT_EQ(table->admit(connection("10.0.0.1")).verdict, Verdict::over_per_ip);
}

TEST_F(ConnectionsTest, APeerOverItsCapEvictsNobody) {
    make_table(1, 1);
    auto a = connection("10.0.0.1", 5s);
    table->admit(a);
    EXPECT_EQ(table->admit(connection("10.0.0.1")).verdict, Verdict::over_per_ip);
    EXPECT_FALSE(a->evicted());
}

TEST_F(ConnectionsTest, AnEvictedConnectionFreesItsPlaceInThePerAddressCount) {
    make_table(1, 1);
    auto a = connection("10.0.0.1", 5s);
    table->admit(a);
    EXPECT_EQ(table->admit(connection("10.0.0.2")).evicted, a);
    EXPECT_EQ(table->count_from(asio::ip::make_address("10.0.0.1")), 0u);
    EXPECT_EQ(table->count_from(asio::ip::make_address("10.0.0.2")), 1u);
}

// Admissions on one thread (the acceptor), requests and closes on others, as in the listener:
// the count stays within the cap and comes back to zero.
TEST_F(ConnectionsTest, TheCountNeverDriftsUnderConcurrentAdmissionsAndCloses) {
    constexpr std::size_t kCap = 8;
    std::atomic<std::size_t> highest{0};
    std::atomic<std::size_t> last{99};
    ConnectionTable shared({kCap, 3}, [&](std::size_t n) {
        std::size_t h = highest.load();
        while (n > h && !highest.compare_exchange_weak(h, n)) {
        }
        last = n;
    });
    std::atomic<bool> done{false};
    std::mutex mu;
    std::vector<std::shared_ptr<Connection>> live;

    std::vector<std::thread> closers;
    for (int t = 0; t < 3; ++t)
        closers.emplace_back([&] {
            while (!done) {
                std::shared_ptr<Connection> c;
                {
                    std::lock_guard lock(mu);
                    if (!live.empty()) {
                        c = live.back();
                        live.pop_back();
                    }
                }
                if (!c) continue;
                // A request and its answer (unless evicted first), then the close: an evicted
                // connection is gone from the table already, and leaves it once only.
                if (c->begin_request()) c->wait_for_request(Connection::Clock::now());
                shared.remove(*c);
            }
        });
    for (int i = 0; i < 20'000; ++i) {
        auto c = std::make_shared<Connection>(
            asio::ip::make_address(i % 2 ? "10.0.0." + std::to_string(i % 7) : "127.0.0.1"),
            Connection::Clock::now());
        auto admission = shared.admit(c);
        if (admission.verdict == Verdict::admitted) {
            std::lock_guard lock(mu);
            live.push_back(std::move(c));
        }
    }
    done = true;
    for (auto& t : closers) t.join();
    for (auto& c : live) shared.remove(*c);
    EXPECT_LE(highest.load(), kCap);
    EXPECT_EQ(shared.size(), 0u);
    EXPECT_EQ(last.load(), 0u);
    for (int k = 0; k < 7; ++k)
        EXPECT_EQ(shared.count_from(asio::ip::make_address("10.0.0." + std::to_string(k))), 0u);
}

}  // namespace
}  // namespace gateway::http
