// The browser checks a listener makes before its handler (Host, Origin and CORS, Content-Type),
// as pure functions of a request.

#include "gateway/http/browser.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace gateway::http {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

Request request(std::string method, Headers headers, std::string body = "") {
    Request r;
    r.method = std::move(method);
    r.target = "/devnet";
    r.headers = std::move(headers);
    r.body = std::move(body);
    return r;
}

Request post(Headers headers, std::string body = "{}") {
    headers.emplace_back("content-type", "application/json");
    return request("POST", std::move(headers), std::move(body));
}

std::string header(const Response& r, std::string_view name) {
    for (const auto& [k, v] : r.headers)
        if (k == name) return v;
    return "<none>";
}

BrowserPolicy policy(std::vector<std::string> allowed = {}, std::string host = "127.0.0.1",
                     bool tls = false) {
    ListenerOptions o;
    o.endpoint = config::Endpoint{std::move(host), 8545};
    o.allowed_origins = std::move(allowed);
    o.cors_expose_headers = {"X-Gateway-Upstream", "X-Gateway-Cache"};
    if (tls) o.tls.cert_file = "cert.pem";
    o.error_body = [](unsigned status, std::string_view message) {
        return "{\"status\":" + std::to_string(status) + ",\"message\":\"" + std::string(message) +
               "\"}";
    };
    return BrowserPolicy::from(o);
}

// --- Host ---------------------------------------------------------------------------------

TEST(Browser, LoopbackNamesAndAddressesPassTheHostCheck) {
    const auto p = policy();
    for (const char* host :
         {"localhost:8545", "localhost", "LocalHost:8545", "localhost.:8545", "127.0.0.1",
          "127.0.0.1:8545", "127.1.2.3:9", "[::1]:8545", "[::1]", "[::ffff:127.0.0.1]:8545"}) {
        EXPECT_FALSE(browser_check(post({{"host", host}}), p).has_value()) << host;
        EXPECT_TRUE(is_loopback_host(host)) << host;
    }
}

TEST(Browser, AHostNamingAnotherMachineIs403OnALoopbackListener) {
    const auto p = policy();
    for (const char* host :
         {"evil.com", "evil.com:8545", "127.0.0.1.evil.com", "127.0.0.1.evil.com:8545",
          "localhost.evil.com", "evillocalhost", "10.0.0.5:8545", "192.168.1.20", "[::2]:8545",
          "2130706433", "0x7f.0.0.1", "127.0.0.256", "127.0.0", "127.0.0.1:80:80", "[::1]x", "::1",
          ".localhost", "[::1",
          // Names under .localhost: a browser that asks DNS for them can be given another address.
          "app.localhost", "app.localhost:3000"}) {
        auto answer = browser_check(post({{"host", host}}), p);
        ASSERT_TRUE(answer.has_value()) << host;
        EXPECT_EQ(answer->status, 403u) << host;
        EXPECT_EQ(answer->content_type, "application/json");
        EXPECT_THAT(answer->body, HasSubstr("call it as http://localhost:<port>")) << host;
        EXPECT_FALSE(is_loopback_host(host)) << host;
    }
}

TEST(Browser, AnHttp10RequestWithoutHostPasses) {
    Request r = post({});
    r.version = 10;
    EXPECT_FALSE(browser_check(r, policy()).has_value());
    EXPECT_FALSE(browser_check(r, policy({}, "0.0.0.0")).has_value());
}

// RFC 9112 section 3.2: HTTP/1.1 has exactly one Host.
TEST(Browser, AnHttp11RequestWithoutHostIs400OnEveryListener) {
    for (const auto& p : {policy(), policy({}, "0.0.0.0")}) {
        auto answer = browser_check(post({}), p);
        ASSERT_TRUE(answer.has_value());
        EXPECT_EQ(answer->status, 400u);
        EXPECT_THAT(answer->body, HasSubstr("needs a Host header"));
    }
}

// Two Hosts: the rebinding check could read the first and something behind the gateway the
// second (or the other way round).
TEST(Browser, ARequestWithTwoHostsIs400WhateverTheyName) {
    for (const auto& p : {policy(), policy({}, "0.0.0.0")}) {
        for (const auto& hosts :
             std::vector<Headers>{{{"host", "localhost"}, {"host", "evil.com"}},
                                  {{"host", "evil.com"}, {"host", "localhost"}},
                                  {{"host", "localhost"}, {"host", "localhost"}}}) {
            auto answer = browser_check(post(hosts), p);
            ASSERT_TRUE(answer.has_value());
            EXPECT_EQ(answer->status, 400u);
            EXPECT_THAT(answer->body, HasSubstr("one Host header; this one has 2"));
        }
    }
}

TEST(Browser, AListenerOnAnotherAddressTakesAnyHost) {
    EXPECT_FALSE(browser_check(post({{"host", "gateway.internal:8545"}}), policy({}, "0.0.0.0")));
    EXPECT_FALSE(browser_check(post({{"host", "gateway.internal:8545"}}), policy({}, "10.1.2.3")));
}

// --- Origin and CORS ----------------------------------------------------------------------------

TEST(Browser, TheListenersOwnOriginPassesWithoutCorsHeaders) {
    const auto p = policy();
    for (auto [host, origin] : std::vector<std::pair<std::string, std::string>>{
             {"localhost:8545", "http://localhost:8545"},
             {"LOCALHOST:8545", "http://localhost:8545"},
             {"127.0.0.1:8545", "http://127.0.0.1:8545/"},
             {"localhost:80", "http://localhost"},
             {"localhost", "http://localhost:80"}}) {
        auto r = post({{"host", host}, {"origin", origin}});
        EXPECT_FALSE(browser_check(r, p).has_value()) << host << " " << origin;
        Response answer;
        add_cors_headers(r, p, answer);
        EXPECT_TRUE(answer.headers.empty()) << host << " " << origin;
    }
}

TEST(Browser, UnderTlsTheOwnOriginIsHttps) {
    const auto p = policy({}, "127.0.0.1", true);
    EXPECT_FALSE(
        browser_check(post({{"host", "localhost:8545"}, {"origin", "https://localhost:8545"}}), p));
    EXPECT_FALSE(
        browser_check(post({{"host", "localhost:443"}, {"origin", "https://localhost"}}), p));
    auto answer =
        browser_check(post({{"host", "localhost:8545"}, {"origin", "http://localhost:8545"}}), p);
    ASSERT_TRUE(answer);
    EXPECT_EQ(answer->status, 403u);
}

TEST(Browser, AnAllowedOriginPassesAndItsAnswerCarriesTheCorsHeaders) {
    const auto p = policy({"https://App.Example.com/"});
    auto r = post({{"host", "localhost:8545"}, {"origin", "https://app.example.com"}});
    EXPECT_FALSE(browser_check(r, p).has_value());
    Response answer;
    add_cors_headers(r, p, answer);
    EXPECT_EQ(header(answer, "Access-Control-Allow-Origin"), "https://app.example.com");
    EXPECT_EQ(header(answer, "Vary"), "Origin");
    EXPECT_EQ(header(answer, "Access-Control-Expose-Headers"),
              "X-Gateway-Upstream, X-Gateway-Cache");
}

TEST(Browser, AnotherOriginIs403AndTheMessageNamesItAndTheSetting) {
    const auto p = policy({"https://app.example.com"});
    for (const char* origin : {"https://evil.example", "http://app.example.com",
                               "https://app.example.com:8443", "http://localhost:3000"}) {
        auto r = post({{"host", "localhost:8545"}, {"origin", origin}});
        auto answer = browser_check(r, p);
        ASSERT_TRUE(answer) << origin;
        EXPECT_EQ(answer->status, 403u);
        EXPECT_THAT(answer->body, HasSubstr(origin));
        EXPECT_THAT(answer->body, HasSubstr("server.cors.allowed_origins"));
        Response handled;
        add_cors_headers(r, p, handled);
        EXPECT_TRUE(handled.headers.empty()) << "never CORS headers for a refused origin";
    }
}

TEST(Browser, ALongOriginIsTruncatedInTheMessage) {
    const std::string origin = "https://" + std::string(500, 'a') + ".example";
    auto answer = browser_check(post({{"host", "localhost"}, {"origin", origin}}), policy());
    ASSERT_TRUE(answer);
    EXPECT_THAT(answer->body, Not(HasSubstr(origin)));
    EXPECT_LT(answer->body.size(), 400u);
}

TEST(Browser, TheNullOriginIs403UnlessAnyOriginIsAllowed) {
    auto r = post({{"host", "localhost:8545"}, {"origin", "null"}});
    auto answer = browser_check(r, policy({"https://app.example.com"}));
    ASSERT_TRUE(answer);
    EXPECT_EQ(answer->status, 403u);
    EXPECT_THAT(answer->body, HasSubstr("\"*\""));
    EXPECT_FALSE(browser_check(r, policy({"*"})).has_value());
}

TEST(Browser, AStarAllowsAnyOriginAndTheAnswerNamesThatOriginNotAStar) {
    const auto p = policy({"*"});
    auto r = post({{"host", "localhost:8545"}, {"origin", "https://whatever.example"}});
    EXPECT_FALSE(browser_check(r, p).has_value());
    Response answer;
    add_cors_headers(r, p, answer);
    EXPECT_EQ(header(answer, "Access-Control-Allow-Origin"), "https://whatever.example");
}

TEST(Browser, APreflightFromAnAllowedOriginIs204WithTheCorsHeaders) {
    const auto p = policy({"https://app.example.com"});
    auto answer = browser_check(
        request("OPTIONS", {{"host", "localhost:8545"},
                            {"origin", "https://app.example.com"},
                            {"access-control-request-method", "POST"},
                            {"access-control-request-headers", "content-type,authorization"}}),
        p);
    ASSERT_TRUE(answer);
    EXPECT_EQ(answer->status, 204u);
    EXPECT_EQ(header(*answer, "Access-Control-Allow-Origin"), "https://app.example.com");
    EXPECT_EQ(header(*answer, "Access-Control-Allow-Methods"), "POST, OPTIONS");
    EXPECT_EQ(header(*answer, "Access-Control-Allow-Headers"),
              "authorization, content-type, idempotency-key");
    EXPECT_EQ(header(*answer, "Access-Control-Max-Age"), "600");
    EXPECT_EQ(header(*answer, "Vary"), "Origin");

    auto get = browser_check(request("OPTIONS", {{"host", "localhost:8545"},
                                                 {"origin", "https://app.example.com"},
                                                 {"access-control-request-method", "GET"}}),
                             p);
    ASSERT_TRUE(get);
    EXPECT_EQ(header(*get, "Access-Control-Allow-Methods"), "GET, POST, OPTIONS");
}

TEST(Browser, APreflightFromAnotherOriginIs403) {
    auto answer = browser_check(request("OPTIONS", {{"host", "localhost:8545"},
                                                    {"origin", "https://evil.example"},
                                                    {"access-control-request-method", "POST"}}),
                                policy({"https://app.example.com"}));
    ASSERT_TRUE(answer);
    EXPECT_EQ(answer->status, 403u);
    EXPECT_EQ(header(*answer, "Access-Control-Allow-Origin"), "<none>");
}

TEST(Browser, AnOptionsRequestWithoutOriginGoesToTheHandler) {
    EXPECT_FALSE(browser_check(request("OPTIONS", {{"host", "localhost:8545"}}), policy()));
    EXPECT_FALSE(browser_check(
        request("OPTIONS", {{"host", "localhost:8545"}, {"access-control-request-method", "POST"}}),
        policy()));
}

// --- Content-Type -----------------------------------------------------------------------------

TEST(Browser, APostWithABodyThatIsNotJsonIs415) {
    for (const char* type :
         {"text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded",
          "multipart/form-data; boundary=x", "application/jsonx", "json"}) {
        auto answer = browser_check(
            request("POST", {{"host", "localhost:8545"}, {"content-type", type}}, "{}"), policy());
        ASSERT_TRUE(answer) << type;
        EXPECT_EQ(answer->status, 415u) << type;
        EXPECT_THAT(answer->body, HasSubstr("send Content-Type: application/json"));
    }
}

TEST(Browser, APostWithABodyAndNoContentTypeIs415) {
    auto answer = browser_check(request("POST", {{"host", "localhost:8545"}}, "{}"), policy());
    ASSERT_TRUE(answer);
    EXPECT_EQ(answer->status, 415u);
    EXPECT_THAT(answer->body, HasSubstr("Content-Type: application/json"));
}

TEST(Browser, JsonMediaTypesPassWithParametersInAnyCase) {
    for (const char* type :
         {"application/json", "application/json; charset=utf-8", "Application/JSON;charset=UTF-8",
          " application/json ", "application/json-rpc", "application/jsonrequest"}) {
        EXPECT_FALSE(browser_check(
            request("POST", {{"host", "localhost:8545"}, {"content-type", type}}, "{}"), policy()))
            << type;
        EXPECT_TRUE(is_json_content_type(type)) << type;
    }
}

TEST(Browser, APostWithAnEmptyBodyPassesWithoutContentType) {
    EXPECT_FALSE(browser_check(request("POST", {{"host", "localhost:9545"}}), policy()));
}

TEST(Browser, AnAllowedOriginsRefusalCarriesTheCorsHeadersSoThePageCanReadIt) {
    const auto p = policy({"https://app.example.com"});
    auto answer = browser_check(request("POST",
                                        {{"host", "localhost:8545"},
                                         {"origin", "https://app.example.com"},
                                         {"content-type", "text/plain"}},
                                        "{}"),
                                p);
    ASSERT_TRUE(answer);
    EXPECT_EQ(answer->status, 415u);
    EXPECT_EQ(header(*answer, "Access-Control-Allow-Origin"), "https://app.example.com");
}

// The admin listener: its own origin only, whatever server.cors.allowed_origins lists (that is
// the RPC listener's setting), and the refusal does not point there.
TEST(Browser, AnOwnOriginOnlyListenerRefusesEveryOtherOriginAndSaysSo) {
    ListenerOptions o;
    o.endpoint = config::Endpoint{"127.0.0.1", 9545};
    o.allowed_origins = {"https://app.example.com", "*"};
    o.own_origin_only = true;
    o.error_body = [](unsigned, std::string_view message) { return std::string(message); };
    const auto p = BrowserPolicy::from(o);
    for (const char* origin : {"https://app.example.com", "https://evil.example", "null"}) {
        auto answer = browser_check(post({{"host", "localhost:9545"}, {"origin", origin}}), p);
        ASSERT_TRUE(answer) << origin;
        EXPECT_EQ(answer->status, 403u);
        EXPECT_THAT(answer->body, HasSubstr("its own origin (scheme://Host) only"));
        EXPECT_THAT(answer->body, Not(HasSubstr("add it to")));
    }
    EXPECT_FALSE(
        browser_check(post({{"host", "localhost:9545"}, {"origin", "http://localhost:9545"}}), p));
    // The RPC listener's message still names the setting.
    auto rpc =
        browser_check(post({{"host", "localhost"}, {"origin", "https://evil.example"}}), policy());
    ASSERT_TRUE(rpc);
    EXPECT_THAT(rpc->body, HasSubstr("add it to server.cors.allowed_origins"));
}

// --- IPv6 origins -------------------------------------------------------------------------------

TEST(Browser, AnIpv6OriginIsComparedAsAnAddress) {
    EXPECT_EQ(normalize_origin("http://[0:0:0:0:0:0:0:1]:3000"), "http://[::1]:3000");
    EXPECT_EQ(normalize_origin("HTTP://[2001:DB8:0:0::1]:80/"), "http://[2001:db8::1]");
    EXPECT_EQ(normalize_origin("http://[::1]:3000"), "http://[::1]:3000");
    EXPECT_EQ(normalize_origin("http://[not-an-address]"), "http://[not-an-address]");
    // Configured in any spelling, allowed as browsers send it.
    const auto p = policy({"http://[0:0::1]:3000", "https://[2001:DB8::1]"});
    EXPECT_FALSE(
        browser_check(post({{"host", "localhost:8545"}, {"origin", "http://[::1]:3000"}}), p));
    EXPECT_FALSE(browser_check(
        post({{"host", "localhost:8545"}, {"origin", "https://[2001:db8::1]:443"}}), p));
    auto other =
        browser_check(post({{"host", "localhost:8545"}, {"origin", "http://[::2]:3000"}}), p);
    ASSERT_TRUE(other);
    EXPECT_EQ(other->status, 403u);
    // A page served from the listener's own IPv6 address.
    EXPECT_FALSE(browser_check(
        post({{"host", "[::1]:8545"}, {"origin", "http://[0:0:0:0:0:0:0:1]:8545"}}), policy()));
}

// --- On the head ----------------------------------------------------------------------------

// The listener checks the head, before the body is read: a body announced is a body.
TEST(Browser, OnTheHeadABodyAnnouncedButNotReadIsCheckedForItsContentType) {
    Request head = request("POST", {{"host", "localhost:8545"}, {"content-type", "text/plain"}});
    auto answer = browser_check(head, policy(), true);
    ASSERT_TRUE(answer);
    EXPECT_EQ(answer->status, 415u);
    EXPECT_FALSE(browser_check(head, policy(), false));
}

// --- Order ------------------------------------------------------------------------------------

TEST(Browser, HostIsCheckedFirstThenOriginThenContentType) {
    const auto p = policy();
    auto host_first = browser_check(
        request(
            "POST",
            {{"host", "evil.com"}, {"origin", "http://evil.com"}, {"content-type", "text/plain"}},
            "{}"),
        p);
    ASSERT_TRUE(host_first);
    EXPECT_THAT(host_first->body, HasSubstr("Host 'evil.com'"));
    auto origin_next = browser_check(
        request(
            "POST",
            {{"host", "localhost"}, {"origin", "http://evil.com"}, {"content-type", "text/plain"}},
            "{}"),
        p);
    ASSERT_TRUE(origin_next);
    EXPECT_EQ(origin_next->status, 403u);
    EXPECT_THAT(origin_next->body, HasSubstr("Origin 'http://evil.com'"));
}

// DNS rebinding: the attacker's page and the request share the attacker's name, so the Origin is
// the request's "own"; the Host check is what stops it.
TEST(Browser, ADnsRebindingRequestIsRefusedThoughItsOriginMatchesItsHost) {
    auto answer = browser_check(
        post({{"host", "rebind.evil.com:8545"}, {"origin", "http://rebind.evil.com:8545"}}),
        policy());
    ASSERT_TRUE(answer);
    EXPECT_EQ(answer->status, 403u);
}

TEST(Browser, OriginsAreComparedNormalised) {
    EXPECT_EQ(normalize_origin("HTTP://Example.COM:80"), "http://example.com");
    EXPECT_EQ(normalize_origin("https://example.com:443/"), "https://example.com");
    EXPECT_EQ(normalize_origin("https://example.com:8443"), "https://example.com:8443");
    EXPECT_EQ(normalize_origin("http://example.com:8080"), "http://example.com:8080");
    EXPECT_EQ(normalize_origin("https://example.com:80"), "https://example.com:80");
}

}  // namespace
}  // namespace gateway::http
