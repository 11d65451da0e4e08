// The HTTP listener with a test handler, over real sockets: keep-alive and pipelining, limits
// and timeouts, handler errors, TLS, and shutdown with requests in flight.

#include "gateway/http/listener.hpp"

#include "gateway/metrics/metrics.hpp"
#include "gateway/util/gzip.hpp"
#include "support/http_test_client.hpp"
#include "support/tls_server.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <malloc.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <latch>
#include <sstream>
#include <thread>

namespace gateway::http {
namespace {

using namespace std::chrono_literals;
using ::testing::EndsWith;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;
namespace asio = boost::asio;
namespace bhttp = boost::beast::http;
namespace ssl = boost::asio::ssl;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

// Polls `done` every few milliseconds for up to `limit`; whether it came true.
template <class F>
bool wait_until(F done, std::chrono::milliseconds limit = 3s) {
    const auto deadline = Clock::now() + limit;
    while (!done()) {
        if (Clock::now() > deadline) return false;
        std::this_thread::sleep_for(2ms);
    }
    return true;
}

// A listener whose handler echoes the body; it waits first when the path is /slow, and until
// `release` when it is /wait. Connections are served on two event loops of their own, each on
// its thread, besides the acceptor's (as in the gateway).
class ListenerTest : public ::testing::Test {
protected:
    void start(ListenerOptions options) {
        options.name = "test";
        options.endpoint = config::Endpoint{"127.0.0.1", 0};
        options.error_body = [](unsigned status, std::string_view message) {
            return "{\"status\":" + std::to_string(status) + ",\"message\":\"" +
                   std::string(message) + "\"}";
        };
        std::vector<asio::io_context*> contexts{&ioc};
        for (auto& w : workers) contexts.push_back(&w);
        listener = make_listener(
            ioc, options, [this](Request& r) { return handle(r); }, &metrics, contexts);
        listener->start();
        for (int i = 0; i < 2; ++i) threads.emplace_back([this] { ioc.run(); });
        for (auto& w : workers) threads.emplace_back([&w] { w.run(); });
    }

    void TearDown() override {
        release = true;
        ioc.stop();
        for (auto& w : workers) w.stop();
        for (auto& t : threads) t.join();
    }

    asio::awaitable<Response> handle(Request& r) {
        ++handled;
        if (r.path().starts_with("/throw")) throw std::runtime_error("handler bug");
        if (r.path() == "/slow") {
            asio::steady_timer t(co_await asio::this_coro::executor, 400ms);
            co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
        }
        if (r.path() == "/wait") {
            asio::steady_timer t(co_await asio::this_coro::executor);
            for (int i = 0; i < 2000 && !release; ++i) {
                t.expires_after(5ms);
                co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
            }
        }
        Response out;
        out.body = r.path() == "/hello" ? "hello" : r.body;
        if (r.path() == "/fields") {
            // What the handler was given: the fields' names, then the body.
            out.body.clear();
            for (const auto& [name, value] : r.headers) out.body += name + "=" + value + ";";
            out.body += "|" + r.body;
        }
        if (r.path() == "/big") out.body.assign(8 << 20, 'b');
        out.headers.emplace_back("X-Method", r.method);
        out.headers.emplace_back("X-Test", std::string(r.header("x-test")));
        co_return out;
    }

    std::uint16_t port() const { return listener->local_endpoint().port; }

    // A series of the metrics, e.g. gateway_open_connections{listener="test"}; 0 when absent.
    double metric(const std::string& series) const {
        const std::string text = metrics.render();
        const auto at = text.find("\n" + series + " ");
        if (at == std::string::npos) return 0;
        return std::stod(text.substr(at + series.size() + 2));
    }
    double closed(const std::string& reason) const {
        return metric("gateway_connections_closed_total{listener=\"test\",reason=\"" + reason +
                      "\"}");
    }
    double open_gauge() const { return metric("gateway_open_connections{listener=\"test\"}"); }

    // Watches the open connection count, as the listener and the gauge tell it, while it lives.
    class CountWatch {
    public:
        explicit CountWatch(const ListenerTest& t)
            : thread_([this, &t] {
                  while (!stop_) {
                      highest_ = std::max(highest_.load(), t.listener->open_connections());
                      highest_gauge_ = std::max(highest_gauge_.load(), t.open_gauge());
                      std::this_thread::sleep_for(1ms);
                  }
              }) {}
        ~CountWatch() { finish(); }
        void finish() {
            stop_ = true;
            if (thread_.joinable()) thread_.join();
        }
        std::size_t highest() const { return highest_; }
        double highest_gauge() const { return highest_gauge_; }

    private:
        std::atomic<bool> stop_{false};
        std::atomic<std::size_t> highest_{0};
        std::atomic<double> highest_gauge_{0};
        std::thread thread_;
    };

    // Destroyed last: sessions report their end to the metrics until their event loop goes.
    metrics::Metrics metrics;
    std::array<asio::io_context, 2> workers;
    std::vector<asio::executor_work_guard<asio::io_context::executor_type>> guards{
        asio::make_work_guard(workers[0]), asio::make_work_guard(workers[1])};
    asio::io_context ioc;
    std::unique_ptr<Listener> listener;
    std::vector<std::thread> threads;
    std::atomic<int> handled{0};
    std::atomic<bool> release{false};
};

TEST_F(ListenerTest, KeepAliveServesManyRequestsOnOneConnection) {
    start({});
    test::HttpConnection c(port());
    for (int i = 0; i < 3; ++i) {
        auto r = c.request("POST", "/", "body" + std::to_string(i), {{"X-Test", "v"}});
        EXPECT_EQ(r.status, 200u);
        EXPECT_EQ(r.body, "body" + std::to_string(i));
        EXPECT_EQ(r.header("x-test"), "v");
        EXPECT_TRUE(r.keep_alive);
    }
    EXPECT_EQ(listener->open_connections(), 1u);
}

// A connection keeps its request's strings from one request to the next (their room): nothing of
// one request reaches the handler with the next, whether its fields were few (kept and written
// over) or many (their room given back after the answer).
TEST_F(ListenerTest, NothingOfOneRequestReachesTheHandlerWithTheNextOnItsConnection) {
    start({});
    test::HttpConnection c(port());
    std::vector<std::pair<std::string, std::string>> many{{"X-One", "1"},
                                                          {"Authorization", "Bearer secret-one"}};
    for (int k = 0; k < 20; ++k)
        many.emplace_back("X-Pad-" + std::to_string(k), std::string(100, 'p'));
    auto r = c.request("POST", "/fields", "the first body, a long one", many);
    ASSERT_EQ(r.status, 200u);
    EXPECT_THAT(r.body, HasSubstr("authorization=Bearer secret-one;"));
    EXPECT_THAT(r.body, EndsWith("|the first body, a long one"));

    r = c.request("POST", "/fields", "b2", {{"X-Two", "2"}, {"X-Extra", "e"}});
    ASSERT_EQ(r.status, 200u);
    EXPECT_THAT(r.body, HasSubstr("x-two=2;"));
    EXPECT_THAT(r.body, HasSubstr("x-extra=e;"));
    EXPECT_THAT(r.body, Not(HasSubstr("x-one")));
    EXPECT_THAT(r.body, Not(HasSubstr("authorization")));
    EXPECT_THAT(r.body, Not(HasSubstr("x-pad")));
    EXPECT_THAT(r.body, EndsWith("|b2"));

    r = c.request("POST", "/fields", "", {{"X-Three", "3"}});
    ASSERT_EQ(r.status, 200u);
    EXPECT_THAT(r.body, HasSubstr("x-three=3;"));
    EXPECT_THAT(r.body, Not(HasSubstr("x-two")));
    EXPECT_THAT(r.body, Not(HasSubstr("x-extra")));
    EXPECT_THAT(r.body, EndsWith("|"));
}

TEST_F(ListenerTest, HeadsLargerAndSmallerThanAConnectionsFieldSpaceAreReadWhole) {
    // A connection keeps 1 KiB for its request heads' fields and takes the heap for the rest:
    // heads over it and under it, in turn on one connection, each reach the handler as sent.
    start({});
    test::HttpConnection c(port());
    for (int i = 0; i < 6; ++i) {
        const bool large = i % 2 == 1;
        const std::string value(large ? 3000 : 12, static_cast<char>('a' + i));
        std::vector<std::pair<std::string, std::string>> headers{{"X-Test", value}};
        if (large)
            for (int k = 0; k < 20; ++k)
                headers.emplace_back("X-Pad-" + std::to_string(k), std::string(100, 'p'));
        auto r = c.request("POST", "/", "body" + std::to_string(i), headers);
        EXPECT_EQ(r.status, 200u) << i;
        EXPECT_EQ(r.body, "body" + std::to_string(i));
        EXPECT_EQ(r.header("x-test"), value) << i;
        EXPECT_EQ(r.header("x-method"), "POST");
    }
}

// The connection's field space starts again from its 1 KiB for each request: many heads over
// it in a row (the heap each time) neither wear it out nor grow what the next one asks for
// (Boost.JSON's monotonic resource doubled its next block on every release until an allocation
// failed, after about fifty).
TEST_F(ListenerTest, ManyLargeHeadsInARowOnOneConnectionAreEachReadWhole) {
    start({});
    test::HttpConnection c(port());
    std::vector<std::pair<std::string, std::string>> headers;
    for (int k = 0; k < 30; ++k)
        headers.emplace_back("X-Pad-" + std::to_string(k), std::string(200, 'p'));
    for (int i = 0; i < 200; ++i) {
        headers.emplace_back("X-Test", "large-" + std::to_string(i));
        auto r = c.request("POST", "/", "b" + std::to_string(i), headers);
        headers.pop_back();
        ASSERT_EQ(r.status, 200u) << i;
        ASSERT_EQ(r.body, "b" + std::to_string(i));
        ASSERT_EQ(r.header("x-test"), "large-" + std::to_string(i));
    }
    auto small = c.request("POST", "/", "last", {{"X-Test", "small"}});
    EXPECT_EQ(small.status, 200u);
    EXPECT_EQ(small.header("x-test"), "small");
}

TEST_F(ListenerTest, PipelinedRequestsAreAnsweredInOrder) {
    start({});
    test::HttpConnection c(port());
    c.send_raw(
        "POST / HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: "
        "3\r\n\r\none"
        "POST / HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: "
        "3\r\nConnection: close\r\n\r\ntwo");
    const std::string replies = c.read_until_close();
    const auto first = replies.find("\r\n\r\none");
    const auto second = replies.find("\r\n\r\ntwo");
    ASSERT_NE(first, std::string::npos) << replies;
    ASSERT_NE(second, std::string::npos) << replies;
    EXPECT_LT(first, second);
}

// A HEAD request's answer has the head alone (with the length the body would have), so the next
// answer on the connection is not taken for its body.
TEST_F(ListenerTest, TheAnswerToHeadHasNoBody) {
    start({});
    test::HttpConnection c(port());
    c.send_raw(
        "HEAD /hello HTTP/1.1\r\nHost: localhost\r\n\r\n"
        "POST / HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: "
        "3\r\nConnection: close\r\n\r\ntwo");
    const std::string replies = c.read_until_close();
    const auto end_of_first = replies.find("\r\n\r\n");
    ASSERT_NE(end_of_first, std::string::npos) << replies;
    EXPECT_NE(replies.substr(0, end_of_first).find("Content-Length: 5"), std::string::npos)
        << replies;
    EXPECT_EQ(replies.compare(end_of_first + 4, 9, "HTTP/1.1 "), 0) << replies;
    EXPECT_NE(replies.find("\r\n\r\ntwo"), std::string::npos) << replies;
}

// Answers of server.compression.min_bytes or more go gzip-compressed to a client that accepts it,
// with Vary for caches; smaller ones, and answers to clients that do not, go as they are.
TEST_F(ListenerTest, LargeAnswersAreGzipCompressedForClientsThatAcceptIt) {
    ListenerOptions o;
    o.compress_min_bytes = 1024;
    start(o);
    test::HttpConnection c(port());
    std::string large = "[";
    for (int i = 0; i < 100; ++i) large += R"({"jsonrpc":"2.0","id":)" + std::to_string(i) + "},";
    large.back() = ']';
    ASSERT_GT(large.size(), 1024u);

    auto r = c.request("POST", "/", large, {{"Accept-Encoding", "br, gzip"}});
    EXPECT_EQ(r.status, 200u);
    EXPECT_EQ(r.header("content-encoding"), "gzip");
    EXPECT_EQ(r.header("vary"), "Accept-Encoding");
    EXPECT_LT(r.body.size(), large.size() / 4);
    EXPECT_EQ(util::gunzip(r.body, 1u << 20, nullptr), large);
    EXPECT_EQ(r.header("content-length"), std::to_string(r.body.size()));

    r = c.request("POST", "/", large, {{"Accept-Encoding", "gzip;q=0, br"}});
    EXPECT_EQ(r.header("content-encoding"), "");
    EXPECT_EQ(r.header("vary"), "Accept-Encoding");
    EXPECT_EQ(r.body, large);
    r = c.post("/", large);
    EXPECT_EQ(r.header("content-encoding"), "");
    EXPECT_EQ(r.body, large);

    const std::string small = large.substr(0, 1000) + "]";
    r = c.request("POST", "/", small, {{"Accept-Encoding", "gzip"}});
    EXPECT_EQ(r.header("content-encoding"), "");
    EXPECT_EQ(r.header("vary"), "");
    EXPECT_EQ(r.body, small);
    EXPECT_TRUE(r.keep_alive);
}

TEST_F(ListenerTest, NoAnswerIsCompressedWhenCompressionIsOff) {
    start({});  // compress_min_bytes 0
    test::HttpConnection c(port());
    const std::string large(64 * 1024, 'a');
    auto r = c.request("POST", "/", large, {{"Accept-Encoding", "gzip"}});
    EXPECT_EQ(r.header("content-encoding"), "");
    EXPECT_EQ(r.header("vary"), "");
    EXPECT_EQ(r.body, large);
}

// A gzip request body is decoded before the handler sees it, and bounded by max_body_bytes once
// decoded: a small bomb is refused (413) without being inflated whole; a body that is not gzip
// is a 400, and a coding the listener does not read a 415 before the body is read.
TEST_F(ListenerTest, AGzipRequestBodyIsDecodedWithinTheBodyLimit) {
    ListenerOptions o;
    o.max_body_bytes = 64 * 1024;
    start(o);
    test::HttpConnection c(port());
    const std::string body = R"({"jsonrpc":"2.0","id":1,"method":"eth_blockNumber","params":[]})";
    auto r = c.request("POST", "/", util::gzip(body), {{"Content-Encoding", "gzip"}});
    EXPECT_EQ(r.status, 200u);
    EXPECT_EQ(r.body, body) << "the handler saw the decoded body";
    EXPECT_EQ(handled, 1);

    const std::string bomb = util::gzip(std::string(16u << 20, ' '), 9);
    ASSERT_LT(bomb.size(), o.max_body_bytes);
    r = c.request("POST", "/", bomb, {{"Content-Encoding", "GZIP"}});
    EXPECT_EQ(r.status, 413u);
    EXPECT_THAT(r.body, HasSubstr("too large once decoded: the limit is 65536 bytes"));
    r = c.request("POST", "/", body, {{"Content-Encoding", "gzip"}});
    EXPECT_EQ(r.status, 400u);
    EXPECT_THAT(r.body, HasSubstr("not valid gzip"));
    EXPECT_EQ(handled, 1) << "neither reached the handler";
    // The body was read whole each time: the connection carries on.
    EXPECT_EQ(c.post("/", "ok").body, "ok");

    test::HttpConnection d(port());
    r = d.request("POST", "/", body, {{"Content-Encoding", "br"}});
    EXPECT_EQ(r.status, 415u);
    EXPECT_THAT(r.body, HasSubstr("Content-Encoding \"br\" is not read"));
    EXPECT_FALSE(r.keep_alive);
    EXPECT_EQ(handled, 2);
    // identity is no coding at all.
    EXPECT_EQ(test::HttpConnection(port())
                  .request("POST", "/", body, {{"Content-Encoding", "identity"}})
                  .body,
              body);
}

TEST_F(ListenerTest, ABodyOverTheLimitIs413AndTheConnectionCloses) {
    ListenerOptions o;
    o.max_body_bytes = 1024;
    start(o);
    test::HttpConnection c(port());
    auto r = c.post("/", std::string(4096, 'x'));
    EXPECT_EQ(r.status, 413u);
    EXPECT_THAT(r.body, HasSubstr("request body too large: the limit is 1024 bytes"));
    EXPECT_FALSE(r.keep_alive);
    EXPECT_TRUE(c.closed_by_server());
    EXPECT_EQ(handled, 0);
    EXPECT_EQ(test::http_post(port(), "/", std::string(1024, 'x')).status, 200u);
}

TEST_F(ListenerTest, ExpectContinueIsAnsweredAndAnOversizedBodyRefusedBeforeItIsSent) {
    ListenerOptions o;
    o.max_body_bytes = 1024;
    start(o);
    {
        test::HttpConnection c(port());
        c.send_raw(
            "POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100000000\r\nExpect: "
            "100-continue\r\n\r\n");
        EXPECT_THAT(c.read_until_close(), StartsWith("HTTP/1.1 413"));
    }
    test::HttpConnection c(port());
    c.send_raw(
        "POST / HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: "
        "5\r\nExpect: 100-continue\r\nConnection: "
        "close\r\n\r\n");
    std::this_thread::sleep_for(100ms);
    c.send_raw("hello");
    const std::string reply = c.read_until_close();
    EXPECT_THAT(reply, StartsWith("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK"));
    EXPECT_THAT(reply, HasSubstr("\r\n\r\nhello"));
}

TEST_F(ListenerTest, HeadersOverTheLimitAre431) {
    ListenerOptions o;
    o.max_header_bytes = 1024;
    start(o);
    test::HttpConnection c(port());
    auto r = c.request("POST", "/", "{}", {{"X-Big", std::string(4096, 'h')}});
    EXPECT_EQ(r.status, 431u);
    EXPECT_THAT(r.body, HasSubstr("request headers too large"));
    EXPECT_EQ(handled, 0);
}

TEST_F(ListenerTest, AMalformedRequestIs400) {
    start({});
    test::HttpConnection c(port());
    c.send_raw("THIS IS NOT HTTP\r\n\r\n");
    const std::string reply = c.read_until_close();
    EXPECT_THAT(reply, StartsWith("HTTP/1.1 400"));
    EXPECT_THAT(reply, HasSubstr("malformed HTTP request"));
    EXPECT_EQ(handled, 0);
}

TEST_F(ListenerTest, AnIdleConnectionIsClosedAfterTheIdleTimeout) {
    ListenerOptions o;
    o.idle_timeout = 200ms;
    start(o);
    test::HttpConnection c(port());
    EXPECT_EQ(c.post("/", "x").status, 200u);
    const auto t0 = std::chrono::steady_clock::now();
    EXPECT_TRUE(c.closed_by_server());
    const auto waited = std::chrono::steady_clock::now() - t0;
    EXPECT_GE(waited, 150ms);
    EXPECT_LT(waited, 2s);
}

TEST_F(ListenerTest, ASlowSenderIsCutOffAtTheReadTimeout) {
    ListenerOptions o;
    o.read_timeout = 300ms;
    start(o);
    test::HttpConnection c(port());
    const auto t0 = std::chrono::steady_clock::now();
    c.send_raw(
        "POST / HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        "Content-Length: 10\r\n\r\nabc");
    EXPECT_EQ(c.read_until_close(), "");
    const auto waited = std::chrono::steady_clock::now() - t0;
    EXPECT_GE(waited, 250ms);
    EXPECT_LT(waited, 3s);
    EXPECT_EQ(handled, 0);
}

TEST_F(ListenerTest, AHandlerExceptionIs500AndTheListenerKeepsServing) {
    start({});
    EXPECT_EQ(test::http_post(port(), "/throw", "x").status, 500u);
    EXPECT_EQ(test::http_post(port(), "/", "x").status, 200u);
}

TEST_F(ListenerTest, ShutdownFinishesInFlightRequestsAndClosesIdleConnections) {
    start({});
    test::HttpConnection idle(port());
    EXPECT_EQ(idle.post("/", "x").status, 200u);

    test::HttpReply slow_reply;
    std::thread slow([&] { slow_reply = test::HttpConnection(port()).post("/slow", "in flight"); });
    while (handled < 2) std::this_thread::sleep_for(5ms);

    listener->shutdown();
    slow.join();
    EXPECT_EQ(slow_reply.status, 200u);
    EXPECT_EQ(slow_reply.body, "in flight");
    EXPECT_FALSE(slow_reply.keep_alive) << "answered with Connection: close";
    EXPECT_TRUE(idle.closed_by_server());
    EXPECT_THROW(test::HttpConnection c(port()), boost::system::system_error)
        << "no new connections";
    for (int i = 0; i < 200 && listener->open_connections() > 0; ++i)
        std::this_thread::sleep_for(10ms);
    EXPECT_EQ(listener->open_connections(), 0u);
}

TEST_F(ListenerTest, ARequestSentJustBeforeShutdownIsStillAnswered) {
    start({});
    test::HttpConnection c(port());
    EXPECT_EQ(c.post("/", "first").status, 200u);
    listener->shutdown();
    // The connection was idle when the shutdown began; the client had no way to know.
    auto r = c.post("/", "second");
    EXPECT_EQ(r.status, 200u);
    EXPECT_EQ(r.body, "second");
    EXPECT_FALSE(r.keep_alive);
}

// Shutdown's last wait is for an idle connection only: a request that begins within it and is
// refused still has what the client goes on sending drained for the usual 2 s after the refusal
// (the last wait's timer once cut the drain short at 500 ms, and the close became a reset).
TEST_F(ListenerTest, ARequestBegunInShutdownsLastWaitIsDrainedInFullAfterItsRefusal) {
    ListenerOptions o;
    o.max_body_bytes = 1024;
    start(o);
    asio::io_context client;
    tcp::socket s(client);
    s.connect({asio::ip::make_address("127.0.0.1"), port()});
    asio::write(s,
                asio::buffer(std::string_view("GET /hello HTTP/1.1\r\nHost: localhost\r\n\r\n")));
    std::string got;
    std::array<char, 1024> buf{};
    while (got.find("hello") == std::string::npos)
        got.append(buf.data(), s.read_some(asio::buffer(buf)));

    listener->shutdown();
    const auto t0 = Clock::now();
    std::this_thread::sleep_for(50ms);  // the connection's last wait (500 ms) has begun
    asio::write(
        s, asio::buffer(std::string_view("POST / HTTP/1.1\r\nHost: localhost\r\nContent-Type: "
                                         "application/json\r\nContent-Length: 100000\r\n\r\n")));
    got.clear();
    while (got.find("\r\n\r\n") == std::string::npos)
        got.append(buf.data(), s.read_some(asio::buffer(buf)));
    EXPECT_THAT(got, StartsWith("HTTP/1.1 413"));
    // The client sends its body on, past the end of the last wait.
    const std::string chunk(512, 'x');
    boost::system::error_code ec;
    while (!ec && Clock::now() - t0 < 1200ms) {
        asio::write(s, asio::buffer(chunk), ec);
        std::this_thread::sleep_for(20ms);
    }
    EXPECT_FALSE(ec)
        << "the connection was reset "
        << std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count()
        << " ms after the shutdown began: " << ec.message();
}

// --- header timeout
// -------------------------------------------------------------------------------

TEST_F(ListenerTest, ASilentConnectionIsClosedAtTheHeaderTimeout) {
    ListenerOptions o;
    o.header_timeout = 200ms;  // the idle timeout stays at a minute
    start(o);
    test::HttpConnection c(port());
    const auto t0 = Clock::now();
    EXPECT_TRUE(c.closed_by_server());
    const auto waited = Clock::now() - t0;
    EXPECT_GE(waited, 150ms);
    EXPECT_LT(waited, 2s);
    EXPECT_TRUE(wait_until([&] { return listener->open_connections() == 0; }));
}

TEST_F(ListenerTest, AHeadArrivingTooSlowlyIsCutOffAtTheHeaderTimeout) {
    ListenerOptions o;
    o.header_timeout = 300ms;
    start(o);
    test::HttpConnection c(port());
    const auto t0 = Clock::now();
    c.send_raw("POST / HTTP/1.1\r\nHost: localhost\r\n");
    std::this_thread::sleep_for(100ms);
    c.send_raw("X-Test: still typing\r\n");
    EXPECT_EQ(c.read_until_close(), "") << "disconnected, not answered";
    const auto waited = Clock::now() - t0;
    EXPECT_GE(waited, 250ms);
    EXPECT_LT(waited, 3s);
    EXPECT_EQ(handled, 0);
}

// Between requests a keep-alive connection waits under the idle timeout; the next request's head
// is then due within the header timeout of its first byte.
TEST_F(ListenerTest, OnAKeepAliveConnectionTheHeaderTimeoutStartsAtTheRequestsFirstByte) {
    ListenerOptions o;
    o.header_timeout = 300ms;
    o.idle_timeout = 5s;
    start(o);
    test::HttpConnection c(port());
    EXPECT_EQ(c.post("/", "first").status, 200u);
    std::this_thread::sleep_for(500ms);  // idle for longer than the header timeout
    EXPECT_EQ(c.post("/", "second").status, 200u);

    std::this_thread::sleep_for(500ms);
    const auto t0 = Clock::now();
    c.send_raw("POST / HTTP/1.1\r\nHost: localhost\r\n");
    EXPECT_EQ(c.read_until_close(), "");
    const auto waited = Clock::now() - t0;
    EXPECT_GE(waited, 250ms);
    EXPECT_LT(waited, 3s);
    EXPECT_EQ(handled, 2);
}

TEST_F(ListenerTest, ABodyIsReadUnderTheReadTimeoutNotTheHeaderTimeout) {
    ListenerOptions o;
    o.header_timeout = 200ms;
    o.read_timeout = 3s;
    start(o);
    test::HttpConnection c(port());
    c.send_raw(
        "POST / HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        "Content-Length: 6\r\n\r\nabc");
    std::this_thread::sleep_for(500ms);
    c.send_raw("def");
    auto r = c.receive();
    EXPECT_EQ(r.status, 200u);
    EXPECT_EQ(r.body, "abcdef");
}

// --- connection limits --------------------------------------------------------------------------

TEST_F(ListenerTest, AtTheCapIdleConnectionsAreEvictedOldestFirstAndANewClientIsServed) {
    ListenerOptions o;
    o.max_connections = 4;
    start(o);
    CountWatch watch(*this);
    std::vector<std::unique_ptr<test::HttpConnection>> idle;
    for (int i = 0; i < 12; ++i) idle.push_back(std::make_unique<test::HttpConnection>(port()));
    ASSERT_TRUE(wait_until([&] { return closed("evicted") >= 8; }));
    for (int i = 0; i < 8; ++i) EXPECT_TRUE(idle[i]->closed_by_server()) << i;

    test::HttpConnection client(port());
    EXPECT_EQ(client.post("/", "served").body, "served");
    EXPECT_TRUE(idle[8]->closed_by_server()) << "the one idle longest made room";
    for (int i = 9; i < 12; ++i) EXPECT_EQ(idle[i]->post("/", "x").status, 200u) << i;

    watch.finish();
    EXPECT_EQ(closed("evicted"), 9);
    EXPECT_EQ(closed("max_connections"), 0);
    EXPECT_EQ(listener->open_connections(), 4u);
    EXPECT_EQ(open_gauge(), 4);
    EXPECT_LE(watch.highest(), 4u);
    EXPECT_LE(watch.highest_gauge(), 4);
}

TEST_F(ListenerTest, WithEveryConnectionServingARequestANewOneIsClosedAtAcceptAndCounted) {
    ListenerOptions o;
    o.max_connections = 2;
    start(o);
    std::array<test::HttpReply, 2> replies;
    std::vector<std::thread> busy;
    for (int i = 0; i < 2; ++i)
        busy.emplace_back([&, i] {
            try {
                replies[i] = test::HttpConnection(port()).post("/wait", "b");
            } catch (const std::exception& e) {
                ADD_FAILURE() << "a request in progress was cut: " << e.what();
            }
        });
    ASSERT_TRUE(wait_until([&] { return handled == 2; }));

    test::HttpConnection refused(port());
    const auto t0 = Clock::now();
    EXPECT_TRUE(refused.closed_by_server());
    EXPECT_LT(Clock::now() - t0, 1s) << "closed at once, not at a timeout";
    EXPECT_EQ(closed("max_connections"), 1);
    EXPECT_EQ(listener->open_connections(), 2u);

    release = true;
    for (auto& t : busy) t.join();
    EXPECT_EQ(replies[0].status, 200u);
    EXPECT_EQ(replies[1].status, 200u);
    EXPECT_EQ(test::http_post(port(), "/", "x").status, 200u);
    EXPECT_EQ(handled, 3);
}

TEST_F(ListenerTest, AtTheCapSlowHeadsAreEvictedAfterTheIdleOnesAndANewClientIsServed) {
    // Slowloris: every place taken by a connection that sent a byte of its head and no more.
    ListenerOptions o;
    o.max_connections = 4;
    o.header_timeout = 60s;
    start(o);
    std::vector<std::unique_ptr<test::HttpConnection>> slow;
    for (int i = 0; i < 4; ++i) {
        slow.push_back(std::make_unique<test::HttpConnection>(port()));
        slow.back()->send_raw("P");
        std::this_thread::sleep_for(20ms);  // an order between their heads' starts
    }
    ASSERT_TRUE(wait_until([&] { return listener->open_connections() == 4; }));
    test::HttpConnection client(port());
    EXPECT_EQ(client.post("/", "served").body, "served");
    EXPECT_TRUE(slow[0]->closed_by_server()) << "the head that started first made room";
    EXPECT_EQ(closed("evicted"), 1);
    EXPECT_EQ(closed("max_connections"), 0);
    // A head that completes wins over a claim: the three left are still served.
    for (int i = 1; i < 4; ++i) {
        slow[i]->send_raw(
            "OST / HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            "Content-Length: 1\r\n\r\nx");
        EXPECT_EQ(slow[i]->receive().body, "x") << i;
    }
}

TEST_F(ListenerTest, ARequestPipelinedBehindAnAnswerAndNeverFinishedCanBeEvicted) {
    ListenerOptions o;
    o.max_connections = 1;
    o.header_timeout = 60s;
    start(o);
    // A whole request, then the first byte of the next one, and nothing more.
    test::HttpConnection piper(port());
    piper.send_raw(
        "POST / HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        "Content-Length: 1\r\n\r\nxP");
    EXPECT_EQ(piper.receive().body, "x");
    // (Its session goes back to waiting once the answer's write has completed on its side; a
    // loaded machine under the sanitizers can take a while to get there.)
    std::this_thread::sleep_for(300ms);
    test::HttpConnection client(port());
    EXPECT_EQ(client.post("/", "served").body, "served");
    EXPECT_TRUE(piper.closed_by_server());
    EXPECT_EQ(closed("evicted"), 1);
}

TEST_F(ListenerTest, APreflightIsAnsweredWithoutTheCredentialsItNeverCarries) {
    ListenerOptions o;
    o.allowed_origins = {"https://dapp.example"};
    o.head_check = [](Request&) -> asio::awaitable<std::optional<Response>> {
        Response no;
        no.status = 401;
        co_return no;
    };
    start(o);
    test::HttpConnection c(port());
    auto r = c.request("OPTIONS", "/", "",
                       {{"Host", "localhost"},
                        {"Origin", "https://dapp.example"},
                        {"Access-Control-Request-Method", "POST"},
                        {"Access-Control-Request-Headers", "authorization, content-type"}});
    EXPECT_EQ(r.status, 204u);
    EXPECT_EQ(r.header("access-control-allow-origin"), "https://dapp.example");
    // The call itself, without its credential, is refused, with the CORS headers to read it.
    auto call =
        c.request("POST", "/", "{}", {{"Host", "localhost"}, {"Origin", "https://dapp.example"}});
    EXPECT_EQ(call.status, 401u);
    EXPECT_EQ(call.header("access-control-allow-origin"), "https://dapp.example");
}

TEST_F(ListenerTest, APreflightsBodyIsNeverRead) {
    ListenerOptions o;
    o.allowed_origins = {"https://dapp.example"};
    o.head_check = [](Request&) -> asio::awaitable<std::optional<Response>> {
        Response no;
        no.status = 401;
        co_return no;
    };
    start(o);
    // Browsers send none; a "preflight" announcing a megabyte is answered on its head.
    test::HttpConnection c(port());
    c.send_raw(
        "OPTIONS / HTTP/1.1\r\nHost: localhost\r\nOrigin: https://evil.example\r\n"
        "Access-Control-Request-Method: POST\r\nContent-Length: 1000000\r\n\r\n");
    const std::string answer = c.read_until_close();
    EXPECT_THAT(answer, StartsWith("HTTP/1.1 403"));
    EXPECT_THAT(answer, HasSubstr("Connection: close"));
    EXPECT_EQ(handled, 0);
}

TEST_F(ListenerTest, AChunkExtensionOrTrailerWithoutEndIsRefusedWithinABoundedBuffer) {
    ListenerOptions o;
    start(o);
    for (const std::string& framing : {std::string("10;a="), std::string("1\r\nx\r\n0\r\nX-T: ")}) {
        test::HttpConnection c(port());
        c.send_raw(
            "POST / HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\n\r\n" +
            framing);
        // Far more than the buffer may hold, with no end of line: refused, not buffered.
        const std::string junk(64 * 1024, 'x');
        std::string answer;
        try {
            for (int i = 0; i < 64; ++i) c.send_raw(junk);
        } catch (const std::exception&) {
            // The listener stopped reading and closed: what it answered is still to be read.
        }
        answer = c.read_until_close();
        EXPECT_THAT(answer, StartsWith("HTTP/1.1 431")) << framing;
        EXPECT_THAT(answer, HasSubstr("request framing too large")) << framing;
    }
    EXPECT_EQ(handled, 0);
}

TEST_F(ListenerTest, AHeadCheckRefusesARequestBeforeItsBodyIsRead) {
    ListenerOptions o;
    std::atomic<int> checked{0};
    o.head_check = [&](Request& r) -> asio::awaitable<std::optional<Response>> {
        ++checked;
        EXPECT_TRUE(r.body.empty()) << "the body is not read yet";
        if (r.header("authorization") != "Bearer yes") {
            Response no;
            no.status = 401;
            no.body = "no";
            co_return no;
        }
        r.principal = std::make_shared<const std::string>("alice");
        co_return std::nullopt;
    };
    start(o);
    // Refused with the head: the megabyte it announces is never awaited.
    test::HttpConnection stranger(port());
    stranger.send_raw(
        "POST / HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        "Content-Length: 1000000\r\n\r\n");
    const std::string refused = stranger.read_until_close();
    EXPECT_THAT(refused, StartsWith("HTTP/1.1 401"));
    EXPECT_THAT(refused, HasSubstr("Connection: close"));
    EXPECT_EQ(handled, 0);
    // Admitted: the handler gets the body.
    test::HttpConnection friend_(port());
    EXPECT_EQ(friend_.request("POST", "/", "body", {{"Authorization", "Bearer yes"}}).body, "body");
    EXPECT_EQ(handled, 1);
    EXPECT_EQ(checked, 2);
}

TEST_F(ListenerTest, ManyConnectionsOpenedAndClosedLeaveTheCountAtZero) {
    ListenerOptions o;
    o.max_connections = 16;
    start(o);
    CountWatch watch(*this);
    std::atomic<int> answered{0};
    std::vector<std::thread> clients;
    for (int t = 0; t < 6; ++t)
        clients.emplace_back([&, t] {
            for (int i = 0; i < 60; ++i) {
                try {
                    test::HttpConnection c(port());
                    if ((i + t) % 3 != 0 && c.post("/", "x").status == 200) ++answered;
                } catch (const std::exception&) {
                    // evicted or closed at the cap: another client took the place
                }
            }
        });
    for (auto& t : clients) t.join();
    EXPECT_TRUE(wait_until([&] { return listener->open_connections() == 0; }));
    watch.finish();
    EXPECT_EQ(listener->open_connections(), 0u);
    EXPECT_EQ(open_gauge(), 0);
    EXPECT_LE(watch.highest(), 16u);
    EXPECT_LE(watch.highest_gauge(), 16);
    EXPECT_EQ(answered, handled);
}

// Keep-alive clients and newcomers racing for three places: connections get evicted while idle,
// but a request the handler has seen is always answered. The four clients each hold a connection
// before any goes on (a fast machine once let each finish before the next began: no race).
TEST_F(ListenerTest, AnEvictionNeverCutsARequestThatHasStarted) {
    ListenerOptions o;
    o.max_connections = 3;
    start(o);
    std::atomic<int> answered{0};
    std::atomic<int> evictions_seen{0};
    std::latch all_connected(4);
    std::vector<std::thread> clients;
    for (int t = 0; t < 4; ++t)
        clients.emplace_back([&] {
            std::unique_ptr<test::HttpConnection> c;
            for (int i = 0; i < 80; ++i) {
                try {
                    if (!c) c = std::make_unique<test::HttpConnection>(port());
                    if (c->post("/", "x").status == 200) ++answered;
                } catch (const std::exception&) {
                    ++evictions_seen;
                    c.reset();
                }
                if (i == 0) all_connected.arrive_and_wait();
            }
        });
    for (auto& t : clients) t.join();
    EXPECT_GT(closed("evicted") + closed("max_connections"), 0) << "the cap was reached";
    EXPECT_EQ(answered, handled);
    EXPECT_TRUE(wait_until([&] { return listener->open_connections() == 0; }));
}

TEST_F(ListenerTest, LoopbackClientsAreExemptFromThePerAddressCap) {
    ListenerOptions o;
    o.max_connections_per_ip = 1;  // a sidecar: every client is 127.0.0.1
    start(o);
    std::vector<std::unique_ptr<test::HttpConnection>> conns;
    for (int i = 0; i < 3; ++i) conns.push_back(std::make_unique<test::HttpConnection>(port()));
    for (auto& c : conns) EXPECT_EQ(c->post("/", "x").status, 200u);
    EXPECT_EQ(closed("max_per_ip"), 0);
    EXPECT_EQ(listener->open_connections(), 3u);
}

// Idle keep-alive connections by the thousand must cost little: one waiting for its next request
// holds a 512-byte read buffer (it held 16 KiB or more before), and of its last request, however
// large its head was, only what it keeps for the next one's fields (at most about 2 KiB).
TEST_F(ListenerTest, AnIdleKeepAliveConnectionHoldsLittleOfItsLastRequest) {
#if defined(GATEWAY_SANITIZED) || defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
    GTEST_SKIP() << "the sanitizers keep their own books of memory";
#endif
    start({});
    asio::io_context client;
    constexpr int kWarmUp = 10;
    constexpr int kConnections = 200;
    std::vector<tcp::socket> sockets;
    sockets.reserve(kWarmUp + kConnections);
    // Raw sockets and a buffer on the stack: what the client side allocates is next to nothing.
    // Each connection's one request has a head near max_header_bytes (8 KiB): a long target
    // (where a key may be) and a long field. What a connection keeps of it for its next request
    // stays small once it waits.
    const std::string request =
        "GET /hello/" + std::string(4000, 'k') +
        " HTTP/1.1\r\nHost: localhost\r\nX-Test: " + std::string(3000, 'v') + "\r\n\r\n";
    auto open_and_serve = [&] {
        tcp::socket& s = sockets.emplace_back(client);
        s.connect({asio::ip::make_address("127.0.0.1"), port()});
        asio::write(s, asio::buffer(request));
        std::array<char, 8192> answer{};  // the answer's head echoes X-Test
        std::size_t got = 0;
        while (std::string_view(answer.data(), got).find("\r\n\r\n") == std::string_view::npos &&
               got < answer.size())
            got += s.read_some(asio::buffer(answer.data() + got, answer.size() - got));
    };
    // What is allocated once (the table, the metrics' series, the threads' arenas) comes first.
    for (int i = 0; i < kWarmUp; ++i) open_and_serve();
    std::this_thread::sleep_for(200ms);  // the sessions are back waiting
    const std::size_t before = mallinfo2().uordblks;
    for (int i = 0; i < kConnections; ++i) open_and_serve();
    std::this_thread::sleep_for(200ms);
    const std::size_t after = mallinfo2().uordblks;
    ASSERT_EQ(listener->open_connections(), std::size_t{kWarmUp + kConnections});
    const double per_connection =
        (static_cast<double>(after) - static_cast<double>(before)) / kConnections;
    EXPECT_LT(per_connection, 10 * 1024) << "bytes allocated per idle connection";
}

// The hard limit may be unlimited or above the kernel's ceiling (fs.nr_open), and setrlimit
// refuses both: the soft limit then goes to the ceiling rather than staying where it was.
TEST(Listener, TheDescriptorLimitAskedForIsTheHardLimitCappedAtTheKernelsCeiling) {
    constexpr std::uint64_t kInfinity = RLIM_INFINITY;
    EXPECT_EQ(descriptor_limit_target(1024, 524288, 1048576), 524288u);
    EXPECT_EQ(descriptor_limit_target(1024, kInfinity, 1048576), 1048576u);
    EXPECT_EQ(descriptor_limit_target(1024, 4194304, 1048576), 1048576u);
    EXPECT_EQ(descriptor_limit_target(1024, 524288, std::nullopt), 524288u);
    EXPECT_EQ(descriptor_limit_target(1024, 524288, 0), 524288u) << "0: not a ceiling";
    // Never lower than it is.
    EXPECT_EQ(descriptor_limit_target(65536, 65536, 1024), 65536u);
    EXPECT_EQ(descriptor_limit_target(1024, 1024, 1048576), 1024u);
}

TEST(Listener, TheDefaultConnectionCapIsAQuarterOfTheDescriptorsAndAtMost65536) {
    EXPECT_EQ(default_max_connections(1024), 256u);
    EXPECT_EQ(default_max_connections(65536), 16384u);
    EXPECT_EQ(default_max_connections(262144), 65536u);
    EXPECT_EQ(default_max_connections(1048576), 65536u);
    EXPECT_EQ(default_max_connections(std::size_t{1} << 40), 65536u);
    EXPECT_EQ(default_max_connections(0), 1u);
    EXPECT_EQ(default_max_connections(3), 1u);
}

TEST(Listener, RaisingTheDescriptorLimitNeverLowersIt) {
    rlimit before{};
    ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &before), 0);
    const std::size_t limit = raise_descriptor_limit();
    EXPECT_GE(limit, before.rlim_cur);
    rlimit after{};
    ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &after), 0);
    EXPECT_EQ(after.rlim_cur, limit);
    std::uint64_t nr_open = 0;
    std::ifstream("/proc/sys/fs/nr_open") >> nr_open;
    if (after.rlim_max != RLIM_INFINITY && (nr_open == 0 || after.rlim_max <= nr_open))
        EXPECT_EQ(after.rlim_cur, after.rlim_max) << "the soft limit is raised to the hard one";
    else
        EXPECT_EQ(after.rlim_cur, nr_open) << "the hard limit is above the kernel's ceiling";
}

// --- browser checks ------------------------------------------------------------------------------

TEST_F(ListenerTest, ARequestForAnotherHostIsRefusedBeforeTheHandler) {
    start({});
    test::HttpConnection c(port());
    auto r = c.request("POST", "/", "{}", {{"Host", "rebind.evil.com:8545"}});
    EXPECT_EQ(r.status, 403u);
    EXPECT_THAT(r.body, HasSubstr("localhost"));
    EXPECT_FALSE(r.keep_alive) << "refused on its head, its body unread: the connection ends";
    EXPECT_EQ(handled, 0);
    EXPECT_EQ(metric("gateway_http_responses_total{code=\"403\",listener=\"test\"}"), 1);
    // Without a body there is nothing unread: the connection stays.
    test::HttpConnection d(port());
    auto get = d.request("GET", "/", "", {{"Host", "rebind.evil.com:8545"}});
    EXPECT_EQ(get.status, 403u);
    EXPECT_TRUE(get.keep_alive);
    EXPECT_EQ(d.request("POST", "/", "{}", {{"Host", "localhost:8545"}}).status, 200u);
}

// RFC 9112 section 3.2. The first Host passed the rebinding check; the second named the
// attacker's host.
TEST_F(ListenerTest, TwoHostHeadersOrNoneInHttp11Are400) {
    start({});
    test::HttpConnection two(port());
    two.send_raw(
        "POST / HTTP/1.1\r\nHost: localhost\r\nHost: evil.com\r\n"
        "Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}");
    const std::string refused = two.read_until_close();
    EXPECT_THAT(refused, StartsWith("HTTP/1.1 400"));
    EXPECT_THAT(refused, HasSubstr("one Host header; this one has 2"));
    test::HttpConnection none(port());
    none.send_raw("GET / HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
    EXPECT_THAT(none.read_until_close(), StartsWith("HTTP/1.1 400"));
    EXPECT_EQ(handled, 0);
    // HTTP/1.0 has no Host requirement.
    test::HttpConnection old(port());
    old.send_raw("GET /hello HTTP/1.0\r\n\r\n");
    EXPECT_THAT(old.read_until_close(), StartsWith("HTTP/1.0 200"));
    EXPECT_EQ(handled, 1);
}

// A Transfer-Encoding other than chunked alone would be read as no body (Beast's reading), and
// the body as the next request (smuggling): 400, and the connection ends unread.
TEST_F(ListenerTest, ATransferEncodingOtherThanChunkedAloneIs400AndItsBodyIsNeverARequest) {
    start({});
    const std::string inner = "GET /hello HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    for (const std::string te :
         {"Transfer-Encoding: gzip\r\n", "Transfer-Encoding: chunked, gzip\r\n",
          "Transfer-Encoding: gzip, chunked\r\n", "Transfer-Encoding: \r\n",
          "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n"}) {
        test::HttpConnection c(port());
        c.send_raw("POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n" + te +
                   "\r\n" + inner);
        const std::string answer = c.read_until_close();
        EXPECT_THAT(answer, StartsWith("HTTP/1.1 400")) << te;
        EXPECT_THAT(answer, Not(HasSubstr("hello"))) << te;
    }
    EXPECT_EQ(handled, 0);
    // Chunked alone (any case) is read.
    test::HttpConnection ok(port());
    ok.send_raw(
        "POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: Chunked\r\nConnection: close\r\n\r\n2\r\n{}\r\n0\r\n\r\n");
    const std::string answer = ok.read_until_close();
    EXPECT_THAT(answer, StartsWith("HTTP/1.1 200"));
    EXPECT_THAT(answer, EndsWith("{}"));
}

// Bodies being read count against the listener's budget: one that would pass it is refused with
// 503 and Retry-After before it is read, and the budget comes back when a body's answer is out.
TEST_F(ListenerTest, ABodyOverTheListenersBudgetIs503BeforeItIsReadAndTheBudgetComesBack) {
    ListenerOptions o;
    o.max_body_bytes = 1000;
    o.max_body_bytes_in_flight = 1500;
    start(o);
    const std::string head =
        "POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        "Content-Length: 1000\r\nConnection: close\r\n\r\n";
    const std::string body = "\"" + std::string(998, 'a') + "\"";
    // A client that sends its head and holds its body back: 1000 of the 1500 taken.
    test::HttpConnection holder(port());
    holder.send_raw(head + "\"");
    for (int i = 0; i < 500 && listener->body_bytes_held() < 1000; ++i)
        std::this_thread::sleep_for(2ms);
    ASSERT_EQ(listener->body_bytes_held(), 1000u);
    test::HttpConnection other(port());
    other.send_raw(head + body);
    const std::string refused = other.read_until_close();
    EXPECT_THAT(refused, StartsWith("HTTP/1.1 503"));
    EXPECT_THAT(refused, HasSubstr("Retry-After: 1"));
    EXPECT_THAT(refused, HasSubstr("server.max_body_bytes_in_flight"));
    // The holder's body arrives: answered, and its share given back.
    holder.send_raw(body.substr(1));
    EXPECT_THAT(holder.read_until_close(), StartsWith("HTTP/1.1 200"));
    for (int i = 0; i < 500 && listener->body_bytes_held() > 0; ++i)
        std::this_thread::sleep_for(2ms);
    EXPECT_EQ(listener->body_bytes_held(), 0u);
    test::HttpConnection after(port());
    after.send_raw(head + body);
    EXPECT_THAT(after.read_until_close(), StartsWith("HTTP/1.1 200"));
}

// A rebinding page must not learn from the answer whether a key it tries is valid: the browser
// checks come before the credential check.
TEST_F(ListenerTest, TheBrowserChecksComeBeforeTheHeadCheck) {
    ListenerOptions o;
    std::atomic<int> checked{0};
    o.head_check = [&](Request& r) -> asio::awaitable<std::optional<Response>> {
        ++checked;
        if (r.header("authorization") == "Bearer good") co_return std::nullopt;
        Response no;
        no.status = 401;
        co_return no;
    };
    start(o);
    for (const char* key : {"Bearer good", "Bearer bad"}) {
        test::HttpConnection c(port());
        auto r = c.request("POST", "/", "{}",
                           {{"Host", "rebind.evil.com:8545"}, {"Authorization", key}});
        EXPECT_EQ(r.status, 403u) << key;
        test::HttpConnection d(port());
        auto x = d.request("POST", "/", "{}",
                           {{"Origin", "https://evil.example"}, {"Authorization", key}});
        EXPECT_EQ(x.status, 403u) << key;
    }
    EXPECT_EQ(checked, 0);
    EXPECT_EQ(handled, 0);
}

// Refused by its head's Content-Type: the megabyte it announces is never awaited.
TEST_F(ListenerTest, ABodyOfTheWrongContentTypeIsRefusedBeforeItIsRead) {
    start({});
    test::HttpConnection c(port(), 3s);
    const auto t0 = Clock::now();
    c.send_raw(
        "POST / HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/plain\r\n"
        "Content-Length: 1000000\r\n\r\n");
    const std::string refused = c.read_until_close();
    EXPECT_THAT(refused, StartsWith("HTTP/1.1 415"));
    EXPECT_THAT(refused, HasSubstr("Connection: close"));
    EXPECT_LT(Clock::now() - t0, 2s);
    EXPECT_EQ(handled, 0);
}

// The attack: a page elsewhere posts text/plain JSON-RPC (no preflight needed) to the loopback.
TEST_F(ListenerTest, ACrossSiteSimplePostNeverReachesTheHandler) {
    start({});
    test::HttpConnection c(port());
    auto r = c.request("POST", "/", R"({"method":"eth_sendTransaction"})",
                       {{"Origin", "https://evil.example"}, {"Content-Type", "text/plain"}});
    EXPECT_EQ(r.status, 403u);
    EXPECT_THAT(r.body, HasSubstr("server.cors.allowed_origins"));
    EXPECT_EQ(r.header("access-control-allow-origin"), "");
    test::HttpConnection d(port());  // the first ended: its body was not read
    auto plain = d.request("POST", "/", "{}", {{"Content-Type", "text/plain"}});
    EXPECT_EQ(plain.status, 415u);
    EXPECT_THAT(plain.body, HasSubstr("Content-Type: application/json"));
    EXPECT_EQ(handled, 0);
}

TEST_F(ListenerTest, APreflightIsAnsweredByTheListenerAndTheCallGetsCorsHeaders) {
    ListenerOptions o;
    o.allowed_origins = {"https://app.example.com"};
    o.cors_expose_headers = {"X-Gateway-Upstream"};
    start(o);
    test::HttpConnection c(port());
    auto pre = c.request("OPTIONS", "/devnet", "",
                         {{"Origin", "https://app.example.com"},
                          {"Access-Control-Request-Method", "POST"},
                          {"Access-Control-Request-Headers", "content-type"}});
    EXPECT_EQ(pre.status, 204u);
    EXPECT_EQ(pre.header("access-control-allow-origin"), "https://app.example.com");
    EXPECT_EQ(pre.header("access-control-allow-methods"), "POST, OPTIONS");
    EXPECT_EQ(pre.header("access-control-max-age"), "600");
    EXPECT_EQ(handled, 0);

    auto call = c.request("POST", "/devnet", "{}", {{"Origin", "https://app.example.com"}});
    EXPECT_EQ(call.status, 200u);
    EXPECT_EQ(call.header("access-control-allow-origin"), "https://app.example.com");
    EXPECT_EQ(call.header("vary"), "Origin");
    EXPECT_EQ(call.header("access-control-expose-headers"), "X-Gateway-Upstream");
    EXPECT_EQ(handled, 1);

    auto other =
        c.request("OPTIONS", "/devnet", "",
                  {{"Origin", "https://evil.example"}, {"Access-Control-Request-Method", "POST"}});
    EXPECT_EQ(other.status, 403u);
}

TEST_F(ListenerTest, ThePagesOfTheListenersOwnOriginMayCall) {
    start({});
    test::HttpConnection c(port());
    const std::string host = "localhost:" + std::to_string(port());
    auto r = c.request("POST", "/", "{}", {{"Host", host}, {"Origin", "http://" + host}});
    EXPECT_EQ(r.status, 200u);
    EXPECT_EQ(r.header("access-control-allow-origin"), "");
}

// The admin listener's retry, cancel and cordon take no body.
TEST_F(ListenerTest, APostWithoutABodyNeedsNoContentType) {
    start({});
    test::HttpConnection c(port());
    c.send_raw("POST /cordon HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n");
    EXPECT_EQ(c.receive().status, 200u);
    EXPECT_EQ(handled, 1);
}

// --- logs ---------------------------------------------------------------------------------------

TEST(Listener, AMaskedPathKeepsItsFirstSegmentOnly) {
    EXPECT_EQ(masked_path("/devnet/abcdef"), "/devnet/\u2026");
    EXPECT_EQ(masked_path("/devnet/abcdef/more"), "/devnet/\u2026");
    EXPECT_EQ(masked_path("/devnet"), "/devnet");
    EXPECT_EQ(masked_path("/devnet/"), "/devnet/");
    EXPECT_EQ(masked_path("/"), "/");
    EXPECT_EQ(masked_path(""), "");
    // A first segment as long as a key may be one, sent where the chain's name goes.
    EXPECT_EQ(masked_path("/backend-key-0123456789"), "/\u2026");
    EXPECT_EQ(masked_path("/backend-key-0123456789/devnet"), "/\u2026");
    EXPECT_EQ(masked_path("/sixteen-chars-xx"), "/\u2026");
    EXPECT_EQ(masked_path("/fifteen-chars-x"), "/fifteen-chars-x");
}

TEST_F(ListenerTest, TheLogOfAHandlerFailureShowsNoMoreThanThePathsFirstSegment) {
    std::ostringstream captured;
    auto capture = std::make_shared<spdlog::logger>(
        "capture", std::make_shared<spdlog::sinks::ostream_sink_mt>(captured));
    auto previous = spdlog::default_logger();
    spdlog::set_default_logger(capture);
    start({});
    EXPECT_EQ(test::http_post(port(), "/throw/key-0123456789", "x").status, 500u);
    spdlog::set_default_logger(previous);
    EXPECT_THAT(captured.str(), HasSubstr("handler failed for POST /throw/\u2026"));
    EXPECT_THAT(captured.str(), Not(HasSubstr("key-0123456789")));
}

TEST_F(ListenerTest, TheLogOfABrowserCheckRefusalShowsNoMoreThanThePathsFirstSegment) {
    std::ostringstream captured;
    auto capture = std::make_shared<spdlog::logger>(
        "capture", std::make_shared<spdlog::sinks::ostream_sink_mt>(captured));
    capture->set_level(spdlog::level::debug);  // the refusal is logged at debug
    auto previous = spdlog::default_logger();
    spdlog::set_default_logger(capture);
    start({});
    test::HttpConnection c(port());
    auto r =
        c.request("POST", "/devnet/key-0123456789abcdef", "{}", {{"Content-Type", "text/plain"}});
    spdlog::set_default_logger(previous);
    EXPECT_EQ(r.status, 415u);
    EXPECT_EQ(handled, 0);
    EXPECT_THAT(captured.str(), HasSubstr("answered POST /devnet/\u2026 from"));
    EXPECT_THAT(captured.str(), Not(HasSubstr("key-0123456789")));
}

// --- TLS -----------------------------------------------------------------------------------------

// A certificate and its key in files, as the configuration names them.
class TlsFiles {
public:
    TlsFiles() {
        const auto pki = test::make_test_pki({"localhost"}, {"127.0.0.1"});
        static std::atomic<int> counter{0};
        dir_ = std::filesystem::temp_directory_path() /
               ("listener-tls-" + std::to_string(::getpid()) + "-" + std::to_string(++counter));
        std::filesystem::create_directories(dir_);
        std::ofstream(cert()) << pki.server_cert_pem << pki.ca_cert_pem;
        std::ofstream(key()) << pki.server_key_pem;
        other_key_ = test::make_test_pki({"localhost"}, {}).server_key_pem;
        std::ofstream(wrong_key()) << other_key_;
    }
    ~TlsFiles() { std::filesystem::remove_all(dir_); }
    std::string cert() const { return (dir_ / "cert.pem").string(); }
    std::string key() const { return (dir_ / "key.pem").string(); }
    std::string wrong_key() const { return (dir_ / "other-key.pem").string(); }

private:
    std::filesystem::path dir_;
    std::string other_key_;
};

// A blocking HTTPS client that trusts any certificate.
class TlsClient {
public:
    explicit TlsClient(std::uint16_t port) {
        ctx_.set_verify_mode(ssl::verify_none);
        stream_.next_layer().connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
        stream_.handshake(ssl::stream_base::client);
    }

    test::HttpReply post(const std::string& target, const std::string& body, bool close = false,
                         const Headers& extra = {}) {
        send(target, body, close, extra);
        return read();
    }

    void send(const std::string& target, const std::string& body, bool close = false,
              const Headers& extra = {}) {
        bhttp::request<bhttp::string_body> req{bhttp::verb::post, target, 11};
        req.set(bhttp::field::host, "localhost");
        req.set(bhttp::field::content_type, "application/json");
        for (const auto& [k, v] : extra) req.set(k, v);
        req.keep_alive(!close);
        req.body() = body;
        req.prepare_payload();
        bhttp::write(stream_, req);
    }

    test::HttpReply read() {
        bhttp::response_parser<bhttp::string_body> parser;
        parser.body_limit(64 << 20);
        bhttp::read(stream_, buffer_, parser);
        auto res = parser.release();
        test::HttpReply reply;
        reply.status = res.result_int();
        reply.body = res.body();
        reply.keep_alive = res.keep_alive();
        return reply;
    }

    // How the server ended the connection: eof after its close_notify.
    boost::system::error_code end() {
        char c;
        boost::system::error_code ec;
        stream_.read_some(asio::buffer(&c, 1), ec);
        return ec;
    }

private:
    asio::io_context ioc_;
    ssl::context ctx_{ssl::context::tls_client};
    ssl::stream<tcp::socket> stream_{ioc_, ctx_};
    boost::beast::flat_buffer buffer_;
};

TEST_F(ListenerTest, ATlsClientIsAnsweredOverKeepAliveAndTheCloseIsATlsOne) {
    TlsFiles files;
    ListenerOptions o;
    o.tls = config::TlsConfig{files.cert(), files.key()};
    start(o);
    TlsClient c(port());
    for (int i = 0; i < 3; ++i) {
        auto r = c.post("/", "tls" + std::to_string(i));
        EXPECT_EQ(r.status, 200u);
        EXPECT_EQ(r.body, "tls" + std::to_string(i));
        EXPECT_TRUE(r.keep_alive);
    }
    EXPECT_EQ(listener->open_connections(), 1u);
    // The own origin of a TLS listener is https://.
    auto own = c.post("/", "{}", false, {{"Origin", "https://localhost"}});
    EXPECT_EQ(own.status, 200u);
    auto last = c.post("/", "bye", true);
    EXPECT_EQ(last.status, 200u);
    EXPECT_FALSE(last.keep_alive);
    EXPECT_EQ(c.end(), asio::error::eof) << "a close_notify, not a cut connection";
}

TEST_F(ListenerTest, APlainHttpClientOnTheTlsPortIsNotServed) {
    TlsFiles files;
    ListenerOptions o;
    o.tls = config::TlsConfig{files.cert(), files.key()};
    start(o);
    test::HttpConnection c(port());
    c.send_raw("POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\n\r\n{}");
    EXPECT_THAT(c.read_until_close(), Not(HasSubstr("HTTP/1.1")));
    EXPECT_EQ(handled, 0);
}

TEST_F(ListenerTest, AHandshakeThatNeverComesIsClosedAtTheHeaderTimeout) {
    TlsFiles files;
    ListenerOptions o;
    o.tls = config::TlsConfig{files.cert(), files.key()};
    o.header_timeout = 200ms;
    start(o);
    test::HttpConnection c(port());
    const auto t0 = Clock::now();
    EXPECT_TRUE(c.closed_by_server());
    const auto waited = Clock::now() - t0;
    EXPECT_GE(waited, 150ms);
    EXPECT_LT(waited, 2s);
}

TEST_F(ListenerTest, ShutdownEndsAnIdleTlsConnectionWithACloseNotify) {
    TlsFiles files;
    ListenerOptions o;
    o.tls = config::TlsConfig{files.cert(), files.key()};
    start(o);
    TlsClient c(port());
    EXPECT_EQ(c.post("/", "x").status, 200u);
    listener->shutdown();
    const auto t0 = Clock::now();
    EXPECT_EQ(c.end(), asio::error::eof);
    EXPECT_LT(Clock::now() - t0, 3s);
    EXPECT_TRUE(wait_until([&] { return listener->open_connections() == 0; }));
}

// An answer larger than a TLS record goes out whole (it used to end after its head).
TEST_F(ListenerTest, ATlsAnswerOfMegabytesIsWrittenWhole) {
    TlsFiles files;
    ListenerOptions o;
    o.tls = config::TlsConfig{files.cert(), files.key()};
    start(o);
    TlsClient c(port());
    for (int i = 0; i < 2; ++i) {
        auto r = c.post("/big", "x");
        EXPECT_EQ(r.status, 200u);
        EXPECT_EQ(r.body, std::string(8 << 20, 'b'));
    }
    EXPECT_EQ(c.post("/", std::string(100'000, 'y')).body, std::string(100'000, 'y'));
}

// The answer of a keep-alive connection was decided before the shutdown but written after it
// began: the connection's next idle wait is its last, and it too ends with a close_notify (the
// stream's own timeout used to close the socket under it: a cut connection to the client).
TEST_F(ListenerTest, AConnectionWhoseAnswerWasStillBeingWrittenAtShutdownEndsWithACloseNotify) {
    TlsFiles files;
    ListenerOptions o;
    o.tls = config::TlsConfig{files.cert(), files.key()};
    start(o);
    TlsClient c(port());
    c.send("/big", "x");
    ASSERT_TRUE(wait_until([&] { return handled == 1; }));
    std::this_thread::sleep_for(100ms);  // the 8 MiB answer fills the socket buffers
    listener->shutdown();
    auto r = c.read();
    EXPECT_EQ(r.status, 200u);
    EXPECT_EQ(r.body.size(), 8u << 20);
    // (Keep-alive unless the machine was so slow that the answer was decided after the shutdown
    // began: then it says close, and ends with a close_notify too.)
    EXPECT_EQ(c.end(), asio::error::eof) << "a close_notify, not a cut connection";
    EXPECT_TRUE(wait_until([&] { return listener->open_connections() == 0; }));
}

// A connection that has not even begun its handshake waits for a request too: at the cap it
// makes room like any idle one.
TEST_F(ListenerTest, AtTheCapAConnectionSilentBeforeItsHandshakeIsEvicted) {
    TlsFiles files;
    ListenerOptions o;
    o.tls = config::TlsConfig{files.cert(), files.key()};
    o.max_connections = 1;
    start(o);
    test::HttpConnection silent(port());
    ASSERT_TRUE(wait_until([&] { return listener->open_connections() == 1; }));
    TlsClient c(port());
    EXPECT_EQ(c.post("/", "x").status, 200u);
    EXPECT_TRUE(silent.closed_by_server());
    EXPECT_EQ(closed("evicted"), 1);
}

TEST_F(ListenerTest, ACertificateOrKeyThatCannotBeUsedStopsTheStart) {
    TlsFiles files;
    ListenerOptions o;
    o.name = "rpc";
    o.endpoint = config::Endpoint{"127.0.0.1", 0};
    auto make = [&] {
        return make_listener(
            ioc, o, [this](Request& r) { return handle(r); }, nullptr);
    };
    o.tls = config::TlsConfig{"/nonexistent/cert.pem", files.key()};
    try {
        make();
        ADD_FAILURE() << "a missing certificate file was accepted";
    } catch (const std::invalid_argument& e) {
        EXPECT_THAT(e.what(), HasSubstr("/nonexistent/cert.pem"));
        EXPECT_THAT(e.what(), HasSubstr("server.tls.cert_file"));
    }
    o.tls = config::TlsConfig{files.cert(), files.wrong_key()};
    EXPECT_THROW(make(), std::invalid_argument) << "a key of another certificate";
    o.tls = config::TlsConfig{files.cert(), files.cert()};
    EXPECT_THROW(make(), std::invalid_argument) << "no key in the key file";
}

}  // namespace
}  // namespace gateway::http
