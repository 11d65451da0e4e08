// The upstream HTTP client against local servers (plain and TLS): pooled connections per event
// loop, deadlines, cancels, dead and replaced connections, what is repeated and what is not,
// status, Retry-After and size limits.

#include "gateway/upstream/http_client.hpp"
#include "gateway/util/gzip.hpp"

#include "support/fake_upstream.hpp"
#include "support/http_test_client.hpp"
#include "support/io_thread.hpp"
#include "support/process.hpp"
#include "support/raw_server.hpp"
#include "support/tcp_forwarder.hpp"
#include "support/tls_server.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_future.hpp>

#include <thread>

namespace gateway::upstream {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;
using Clock = std::chrono::steady_clock;

config::UpstreamConfig upstream_config(const std::string& url) {
    config::UpstreamConfig c;
    c.id = "test";
    c.url = url;
    return c;
}

const std::string kCall = R"({"jsonrpc":"2.0","id":1,"method":"eth_blockNumber","params":[]})";

// Where the caller runs: on a strand, as the gateway's connections do without a loop of their own
// (the exchange runs in place, its timer on the same strand); on a loop its thread runs alone, as
// the gateway's connections do (in place too); or on a bare event loop (the exchange is handed to
// the connection's own strand).
enum class Caller { on_strand, on_loop, on_loop_alone };
void PrintTo(Caller c, std::ostream* os) {
    *os << (c == Caller::on_strand ? "on a strand"
            : c == Caller::on_loop ? "on the loop"
                                   : "on a loop run by one thread alone");
}

class HttpClientTest : public ::testing::TestWithParam<Caller> {
protected:
    HttpResult post(HttpClient& client, std::chrono::milliseconds timeout = 5s,
                    bool idempotent = true, std::shared_ptr<CancelSignal> cancel = nullptr) {
        return run(client.post(kCall, PostOptions{Clock::now() + timeout, idempotent, cancel}));
    }
    template <class T>
    T run(boost::asio::awaitable<T> a) {
        if (GetParam() != Caller::on_strand) return io.run(std::move(a));
        return boost::asio::co_spawn(boost::asio::make_strand(io.ioc), std::move(a),
                                     boost::asio::use_future)
            .get();
    }
    test::IoThread io{GetParam() == Caller::on_loop_alone};
};

std::string caller_name(const ::testing::TestParamInfo<Caller>& info) {
    return info.param == Caller::on_strand ? "OnAStrand"
           : info.param == Caller::on_loop ? "OnTheLoop"
                                           : "OnALoopAlone";
}

TEST_P(HttpClientTest, AnswersAndReusesOneConnection) {
    test::FakeUpstream node;
    test::TcpForwarder forwarder(node.port());
    auto client = make_http_client(upstream_config(forwarder.url()));
    for (int i = 0; i < 5; ++i) {
        HttpResult r = post(*client);
        ASSERT_TRUE(r.ok()) << r.detail;
        EXPECT_EQ(r.status, 200u);
        EXPECT_THAT(r.body, HasSubstr(R"("result":"0x10")"));
    }
    EXPECT_EQ(forwarder.accepted(), 1u);
    EXPECT_EQ(client->idle_connections(), 1u);
    EXPECT_EQ(node.calls("eth_blockNumber"), 5u);
}

TEST_P(HttpClientTest, AnswerHeadsLargerAndSmallerThanAConnectionsFieldSpaceAreReadWhole) {
    // A pooled connection keeps 1 KiB for its answers' head fields and takes the heap for the
    // rest: heads over it and under it, in turn on one connection, are read as sent.
    std::atomic<int> n{0};
    test::FakeUpstream node(31337, [&n](const std::string&, const boost::json::value&) {
        const int i = n++;
        auto r = test::FakeReply::http(200, "answer " + std::to_string(i));
        if (i % 2 == 1) {
            for (int k = 0; k < 20; ++k)
                r.headers.emplace_back("X-Pad-" + std::to_string(k), std::string(100, 'p'));
        }
        r.headers.emplace_back("Retry-After", std::to_string(i));
        return std::optional(r);
    });
    test::TcpForwarder forwarder(node.port());
    auto client = make_http_client(upstream_config(forwarder.url()));
    for (int i = 0; i < 6; ++i) {
        HttpResult r = post(*client);
        ASSERT_TRUE(r.ok()) << r.detail;
        EXPECT_EQ(r.status, 200u);
        EXPECT_EQ(r.body, "answer " + std::to_string(i));
        ASSERT_TRUE(r.retry_after) << i;
        EXPECT_EQ(r.retry_after->count(), i);
    }
    EXPECT_EQ(forwarder.accepted(), 1u) << "one connection for all";
}

TEST_P(HttpClientTest, ConcurrentPostsUseSeparateConnectionsThenPoolThem) {
    using namespace boost::asio::experimental::awaitable_operators;
    test::FakeUpstream node(31337, [](const std::string&, const boost::json::value&) {
        auto r = test::FakeReply::ok("\"0x1\"");
        r.delay = 100ms;
        return std::optional(r);
    });
    test::TcpForwarder forwarder(node.port());
    auto client = make_http_client(upstream_config(forwarder.url()));
    auto deadline = Clock::now() + 5s;
    auto [a, b, c] =
        run([&]() -> boost::asio::awaitable<std::tuple<HttpResult, HttpResult, HttpResult>> {
            co_return co_await (client->post(kCall, {deadline}) &&
                                client->post(kCall, {deadline}) && client->post(kCall, {deadline}));
        }());
    EXPECT_TRUE(a.ok() && b.ok() && c.ok());
    EXPECT_EQ(forwarder.accepted(), 3u);
    EXPECT_EQ(client->idle_connections(), 3u);
}

// Connections are pooled per event loop, and each loop keeps up to max_idle_connections: a quiet
// loop's idle connections do not take a busy loop's share.
TEST_P(HttpClientTest, EachEventLoopKeepsItsOwnIdleConnections) {
    test::FakeUpstream node;
    test::TcpForwarder forwarder(node.port());
    auto c = upstream_config(forwarder.url());
    c.max_idle_connections = 1;
    test::IoThread other;  // outlives the client: its pooled connection belongs to this loop
    auto client = make_http_client(c);
    ASSERT_TRUE(post(*client).ok());
    auto on_other = boost::asio::co_spawn(boost::asio::make_strand(other.ioc),
                                          client->post(kCall, PostOptions{Clock::now() + 5s}),
                                          boost::asio::use_future);
    ASSERT_TRUE(on_other.get().ok());
    EXPECT_EQ(client->idle_connections(), 2u) << "one per loop";
    EXPECT_EQ(forwarder.accepted(), 2u) << "a loop does not take another loop's connection";
    ASSERT_TRUE(post(*client).ok());
    EXPECT_EQ(forwarder.accepted(), 2u) << "each loop reuses its own";
}

// A request's answer budget lives where its caller runs: an exchange run in place (on the caller's
// strand, or on a loop its thread runs alone) counts the answer against it and stops at the limit;
// one handed to the connection's strand cannot touch it and reads the answer whole.
TEST_P(HttpClientTest, CountsTheAnswerAgainstTheBudgetWhenItRunsInPlace) {
    test::FakeUpstream node(31337, [](const std::string&, const boost::json::value&) {
        return std::optional(test::FakeReply::ok("\"0x" + std::string(4000, 'a') + "\""));
    });
    auto client = make_http_client(upstream_config(node.url()));
    auto request = std::make_shared<AnswerBudget>();
    request->limit = 1000;
    HttpResult r =
        run(client->post(kCall, PostOptions{Clock::now() + 5s, true, nullptr,
                                            std::make_shared<CallBudget>(CallBudget{request})}));
    if (GetParam() == Caller::on_loop) {
        ASSERT_TRUE(r.ok()) << r.detail;
        EXPECT_GT(r.body.size(), 4000u);
    } else {
        EXPECT_EQ(r.error, TransportError::over_budget) << r.detail;
        EXPECT_TRUE(request->spent);
    }
}

TEST_P(HttpClientTest, ConnectionRefusedIsCertainlyNotDelivered) {
    auto client = make_http_client(
        upstream_config("http://127.0.0.1:" + std::to_string(test::closed_port())));
    HttpResult r = post(*client);
    EXPECT_EQ(r.error, TransportError::connect_failed);
    EXPECT_FALSE(r.maybe_delivered);
    EXPECT_THAT(r.detail, HasSubstr("refused"));
}

TEST_P(HttpClientTest, TheDeadlineBoundsASlowUpstream) {
    test::FakeUpstream node(31337, [](const std::string&, const boost::json::value&) {
        auto r = test::FakeReply::ok("\"0x1\"");
        r.delay = 3s;
        return std::optional(r);
    });
    auto client = make_http_client(upstream_config(node.url()));
    const auto t0 = Clock::now();
    HttpResult r = post(*client, 200ms);
    EXPECT_EQ(r.error, TransportError::timeout);
    EXPECT_TRUE(r.maybe_delivered);
    EXPECT_LT(Clock::now() - t0, 1500ms);
}

TEST_P(HttpClientTest, ACancelEndsTheExchangeAndTheConnectionIsNotPooled) {
    test::FakeUpstream node(31337, [](const std::string&, const boost::json::value&) {
        auto r = test::FakeReply::ok("\"0x1\"");
        r.delay = 3s;
        return std::optional(r);
    });
    auto client = make_http_client(upstream_config(node.url()));
    auto cancel = std::make_shared<CancelSignal>();
    std::thread canceller([cancel] {
        std::this_thread::sleep_for(200ms);
        cancel->cancel();
    });
    const auto t0 = Clock::now();
    HttpResult r = post(*client, 5s, true, cancel);
    canceller.join();
    EXPECT_EQ(r.error, TransportError::cancelled);
    EXPECT_LT(Clock::now() - t0, 1500ms);
    EXPECT_EQ(client->idle_connections(), 0u);
}

TEST_P(HttpClientTest, ABlackHoledUpstreamTimesOut) {
    test::FakeUpstream node;
    test::TcpForwarder forwarder(node.port());
    forwarder.set_mode(test::TcpForwarder::Mode::blackhole);
    auto client = make_http_client(upstream_config(forwarder.url()));
    const auto t0 = Clock::now();
    HttpResult r = post(*client, 300ms);
    EXPECT_EQ(r.error, TransportError::timeout);
    EXPECT_LT(Clock::now() - t0, 2s);
}

TEST_P(HttpClientTest, APooledConnectionTheUpstreamClosedIsReplaced) {
    test::FakeUpstream node;
    test::TcpForwarder forwarder(node.port());
    auto client = make_http_client(upstream_config(forwarder.url()));
    ASSERT_TRUE(post(*client).ok());
    ASSERT_EQ(client->idle_connections(), 1u);
    forwarder.stop();  // closes the pooled connection's far end
    forwarder.start();
    HttpResult r = post(*client);
    EXPECT_TRUE(r.ok()) << r.detail;
    EXPECT_EQ(forwarder.accepted(), 2u);
}

// An upstream is asked for gzip (a hosted provider's answers shrink several times) unless it is on
// this machine, and a gzip answer is decoded within max_response_bytes; a coding not asked for
// is a bad answer, not bytes passed on as JSON.
TEST_P(HttpClientTest, AsksForGzipUnlessTheNodeIsLocalAndDecodesWhatComesBack) {
    const std::string answer =
        R"({"jsonrpc":"2.0","id":1,"result":")" + std::string(8000, 'a') + "\"}";
    std::mutex mu;
    std::vector<std::string> heads;
    std::string coding = "gzip";
    std::string status = "200 OK";
    std::string payload = util::gzip(answer);
    test::RawServer server([&](boost::asio::ip::tcp::socket& s, std::size_t) {
        for (;;) {
            const std::string request = test::RawServer::read_request(s);
            if (request.empty()) return;
            std::string body;
            std::string named;
            std::string line;
            {
                std::lock_guard lock(mu);
                heads.push_back(request.substr(0, request.find("\r\n\r\n")));
                body = payload;
                named = coding;
                line = status;
            }
            test::RawServer::write(
                s, "HTTP/1.1 " + line +
                       "\r\nContent-Type: application/json\r\nContent-Encoding: " + named +
                       "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body);
        }
    });
    const std::string url = "http://127.0.0.1:" + std::to_string(server.port());
    auto asked = [&] {
        std::lock_guard lock(mu);
        return heads.back().find("\r\nAccept-Encoding: gzip") != std::string::npos;
    };

    auto config = upstream_config(url);
    config.accept_gzip = true;
    auto client = make_http_client(config);
    HttpResult r = post(*client);
    ASSERT_TRUE(r.ok()) << r.detail;
    EXPECT_TRUE(asked());
    EXPECT_EQ(r.body, answer);

    // Loopback by default: not asked (the node answers gzip anyway here, and it is decoded).
    auto local = make_http_client(upstream_config(url));
    r = post(*local);
    ASSERT_TRUE(r.ok()) << r.detail;
    EXPECT_FALSE(asked());
    EXPECT_EQ(r.body, answer);

    // Larger than max_response_bytes once decoded.
    config.max_response_bytes = 4096;
    auto bounded = make_http_client(config);
    r = post(*bounded);
    EXPECT_EQ(r.error, TransportError::response_too_large);
    EXPECT_THAT(r.detail, HasSubstr("once decoded"));

    // A request's answer budget counts the answer decoded (where the exchange counts it: see
    // CountsTheAnswerAgainstTheBudgetWhenItRunsInPlace), not the few bytes that came.
    auto request = std::make_shared<AnswerBudget>();
    request->limit = 2000;
    r = run(client->post(kCall, PostOptions{Clock::now() + 5s, true, nullptr,
                                            std::make_shared<CallBudget>(CallBudget{request})}));
    if (GetParam() == Caller::on_loop) {
        ASSERT_TRUE(r.ok()) << r.detail;
    } else {
        EXPECT_EQ(r.error, TransportError::over_budget) << r.detail;
        EXPECT_TRUE(request->spent);
    }

    {
        std::lock_guard lock(mu);
        payload = answer;  // says gzip, is not
    }
    r = post(*client);
    EXPECT_EQ(r.error, TransportError::bad_http);
    EXPECT_THAT(r.detail, HasSubstr("not valid gzip"));
    {
        std::lock_guard lock(mu);
        coding = "br";
    }
    r = post(*client);
    EXPECT_EQ(r.error, TransportError::bad_http);
    EXPECT_THAT(r.detail, HasSubstr("\"br\" was not asked for"));
    // An error status in a coding not asked for (a CDN's page) is that status, as without it.
    {
        std::lock_guard lock(mu);
        status = "503 Service Unavailable";
    }
    r = post(*client);
    EXPECT_EQ(r.status, 503u);
    EXPECT_NE(r.error, TransportError::bad_http) << r.detail;
}

TEST_P(HttpClientTest, AWriteIsNotRepeatedWhenThePooledConnectionDiesAfterSendingIt) {
    std::atomic<int> requests{0};
    test::RawServer server([&](boost::asio::ip::tcp::socket& s, std::size_t) {
        if (!test::RawServer::read_request(s).empty()) ++requests;
        test::RawServer::write(
            s, test::RawServer::ok_response(R"({"jsonrpc":"2.0","id":1,"result":"0x1"})"));
        if (!test::RawServer::read_request(s).empty())
            ++requests;  // then hang up without answering
    });
    auto client =
        make_http_client(upstream_config("http://127.0.0.1:" + std::to_string(server.port())));
    ASSERT_TRUE(post(*client).ok());
    HttpResult r = post(*client, 5s, /*idempotent=*/false);
    EXPECT_EQ(r.error, TransportError::receive_failed);
    EXPECT_TRUE(r.maybe_delivered);
    EXPECT_EQ(server.connections(), 1u)
        << "a write that may have been received must not be sent again";
    client.reset();
    EXPECT_EQ(requests, 2);
}

TEST_P(HttpClientTest, AReadIsRepeatedOnAFreshConnectionWhenThePooledOneDies) {
    test::RawServer server([&](boost::asio::ip::tcp::socket& s, std::size_t) {
        test::RawServer::read_request(s);
        test::RawServer::write(
            s, test::RawServer::ok_response(R"({"jsonrpc":"2.0","id":1,"result":"0x1"})"));
        test::RawServer::read_request(s);
    });
    auto client =
        make_http_client(upstream_config("http://127.0.0.1:" + std::to_string(server.port())));
    ASSERT_TRUE(post(*client).ok());
    HttpResult r = post(*client, 5s, /*idempotent=*/true);
    EXPECT_TRUE(r.ok()) << r.detail;
    EXPECT_EQ(server.connections(), 2u);
}

TEST_P(HttpClientTest, StatusRetryAfterAndBody) {
    test::FakeUpstream node(31337, [](const std::string&, const boost::json::value&) {
        auto r = test::FakeReply::http(429, "slow down");
        r.headers = {{"Retry-After", "7"}};
        return std::optional(r);
    });
    auto client = make_http_client(upstream_config(node.url()));
    HttpResult r = post(*client);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r.status, 429u);
    EXPECT_EQ(r.body, "slow down");
    ASSERT_TRUE(r.retry_after);
    EXPECT_EQ(*r.retry_after, 7s);
}

TEST_P(HttpClientTest, AResponseOverTheLimitIsRefused) {
    test::FakeUpstream node(31337, [](const std::string&, const boost::json::value&) {
        return std::optional(test::FakeReply::ok("\"" + std::string(5000, 'a') + "\""));
    });
    auto c = upstream_config(node.url());
    c.max_response_bytes = 1024;
    auto client = make_http_client(c);
    HttpResult r = post(*client);
    EXPECT_EQ(r.error, TransportError::response_too_large);
}

TEST_P(HttpClientTest, GarbageInsteadOfHttpIsBadHttp) {
    test::RawServer server([&](boost::asio::ip::tcp::socket& s, std::size_t) {
        test::RawServer::read_request(s);
        test::RawServer::write(s, "SSH-2.0-OpenSSH_9.2\r\n\r\n");
    });
    auto client =
        make_http_client(upstream_config("http://127.0.0.1:" + std::to_string(server.port())));
    HttpResult r = post(*client);
    EXPECT_EQ(r.error, TransportError::bad_http);
}

TEST_P(HttpClientTest, SendsPathQueryHostAndBasicAuthFromTheUrl) {
    std::string seen;
    std::mutex mu;
    test::RawServer server([&](boost::asio::ip::tcp::socket& s, std::size_t) {
        std::string req = test::RawServer::read_request(s);
        {
            std::lock_guard lock(mu);
            seen = req;
        }
        test::RawServer::write(
            s, test::RawServer::ok_response(R"({"jsonrpc":"2.0","id":1,"result":"0x1"})"));
    });
    const std::string port = std::to_string(server.port());
    auto client =
        make_http_client(upstream_config("http://user:pw@127.0.0.1:" + port + "/v3/key?x=1"));
    ASSERT_TRUE(post(*client).ok());
    client.reset();
    std::lock_guard lock(mu);
    EXPECT_THAT(seen, HasSubstr("POST /v3/key?x=1 HTTP/1.1\r\n"));
    EXPECT_THAT(seen, HasSubstr("Host: 127.0.0.1:" + port + "\r\n"));
    EXPECT_THAT(seen, HasSubstr("Authorization: Basic dXNlcjpwdw==\r\n"));
    EXPECT_THAT(seen, HasSubstr("Content-Type: application/json\r\n"));
    EXPECT_THAT(seen, HasSubstr(kCall));
}

class HttpsTest : public HttpClientTest {
protected:
    // A CA file for the test CA, and an upstream configuration trusting it.
    config::UpstreamConfig trusting(const test::TestPki& pki, const std::string& url) {
        const std::string dir = test::make_temp_dir("tls-test");
        test::write_file(dir + "/ca.pem", pki.ca_cert_pem);
        auto c = upstream_config(url);
        c.ca_file = dir + "/ca.pem";
        return c;
    }
};

TEST_P(HttpsTest, VerifiesTheCertificateAndSendsSni) {
    auto pki = test::make_test_pki({"localhost"}, {"127.0.0.1"});
    test::TlsServer server(pki);
    {
        auto client = make_http_client(
            trusting(pki, "https://localhost:" + std::to_string(server.port()) + "/rpc"));
        for (int i = 0; i < 3; ++i) {
            HttpResult r = post(*client);
            ASSERT_TRUE(r.ok()) << r.detail;
            EXPECT_EQ(r.status, 200u);
            EXPECT_THAT(r.body, HasSubstr("0x1"));
        }
        EXPECT_EQ(server.last_sni(), "localhost");
        EXPECT_EQ(client->idle_connections(), 1u) << "one TLS connection, kept alive";
    }
    EXPECT_EQ(server.answered(), 3u);
}

TEST_P(HttpsTest, AnIpAddressIsVerifiedAgainstTheCertificateWithoutSni) {
    auto pki = test::make_test_pki({"localhost"}, {"127.0.0.1"});
    test::TlsServer server(pki);
    auto client =
        make_http_client(trusting(pki, "https://127.0.0.1:" + std::to_string(server.port())));
    HttpResult r = post(*client);
    ASSERT_TRUE(r.ok()) << r.detail;
    EXPECT_EQ(server.last_sni(), "");
}

TEST_P(HttpsTest, AnUnknownCaIsRefused) {
    auto pki = test::make_test_pki({"localhost"}, {"127.0.0.1"});
    test::TlsServer server(pki);
    auto client =
        make_http_client(upstream_config("https://localhost:" + std::to_string(server.port())));
    HttpResult r = post(*client);
    EXPECT_EQ(r.error, TransportError::tls_failed);
    EXPECT_FALSE(r.maybe_delivered);
    EXPECT_THAT(r.detail, HasSubstr("certificate verify failed"));
    EXPECT_EQ(server.answered(), 0u);
}

TEST_P(HttpsTest, ACertificateForAnotherNameIsRefused) {
    auto pki = test::make_test_pki({"rpc.example.com"}, {});
    test::TlsServer server(pki);
    auto client =
        make_http_client(trusting(pki, "https://localhost:" + std::to_string(server.port())));
    HttpResult r = post(*client);
    EXPECT_EQ(r.error, TransportError::tls_failed);
    EXPECT_EQ(server.answered(), 0u);
}

INSTANTIATE_TEST_SUITE_P(Callers, HttpClientTest,
                         ::testing::Values(Caller::on_strand, Caller::on_loop,
                                           Caller::on_loop_alone),
                         caller_name);
INSTANTIATE_TEST_SUITE_P(Callers, HttpsTest,
                         ::testing::Values(Caller::on_strand, Caller::on_loop,
                                           Caller::on_loop_alone),
                         caller_name);

}  // namespace
}  // namespace gateway::upstream
