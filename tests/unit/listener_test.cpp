#include "gateway/http/listener.hpp"

#include "support/http_test_client.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <thread>

namespace gateway::http {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;
using ::testing::StartsWith;
namespace asio = boost::asio;

// A listener whose handler echoes the body, and waits first when the path is /slow.
class ListenerTest : public ::testing::Test {
protected:
    void start(ListenerOptions options) {
        options.name = "test";
        options.endpoint = config::Endpoint{"127.0.0.1", 0};
        options.error_body = [](unsigned status, std::string_view message) {
            return "{\"status\":" + std::to_string(status) + ",\"message\":\"" +
                   std::string(message) + "\"}";
        };
        listener = make_listener(
            ioc, options, [this](Request& r) { return handle(r); }, nullptr);
        listener->start();
        for (int i = 0; i < 2; ++i) threads.emplace_back([this] { ioc.run(); });
    }

    void TearDown() override {
        ioc.stop();
        for (auto& t : threads) t.join();
    }

    asio::awaitable<Response> handle(Request& r) {
        ++handled;
        if (r.path() == "/throw") throw std::runtime_error("handler bug");
        if (r.path() == "/slow") {
            asio::steady_timer t(co_await asio::this_coro::executor, 400ms);
            co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
        }
        Response out;
        out.body = r.path() == "/hello" ? "hello" : r.body;
        out.headers.emplace_back("X-Method", r.method);
        out.headers.emplace_back("X-Test", std::string(r.header("x-test")));
        co_return out;
    }

    std::uint16_t port() const { return listener->local_endpoint().port; }

    asio::io_context ioc;
    std::unique_ptr<Listener> listener;
    std::vector<std::thread> threads;
    std::atomic<int> handled{0};
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

TEST_F(ListenerTest, PipelinedRequestsAreAnsweredInOrder) {
    start({});
    test::HttpConnection c(port());
    c.send_raw(
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\none"
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nConnection: close\r\n\r\ntwo");
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
        "HEAD /hello HTTP/1.1\r\nHost: x\r\n\r\n"
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nConnection: close\r\n\r\ntwo");
    const std::string replies = c.read_until_close();
    const auto end_of_first = replies.find("\r\n\r\n");
    ASSERT_NE(end_of_first, std::string::npos) << replies;
    EXPECT_NE(replies.substr(0, end_of_first).find("Content-Length: 5"), std::string::npos)
        << replies;
    EXPECT_EQ(replies.compare(end_of_first + 4, 9, "HTTP/1.1 "), 0) << replies;
    EXPECT_NE(replies.find("\r\n\r\ntwo"), std::string::npos) << replies;
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
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\nExpect: "
            "100-continue\r\n\r\n");
        EXPECT_THAT(c.read_until_close(), StartsWith("HTTP/1.1 413"));
    }
    test::HttpConnection c(port());
    c.send_raw(
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\nConnection: "
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
    c.send_raw("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc");
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

}  // namespace
}  // namespace gateway::http
