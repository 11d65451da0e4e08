// The admin API's handler in-process, called with requests directly (no listener, no socket):
// what an operator's action answers for each outcome of the transaction manager (done, accepted,
// not found, conflict), bad queries and bodies, cordons, and event streams' actions. The managed
// senders under it run against a fake pool and a fake signer (support/managed_rig.hpp); the
// chain's own pool is a real one that is never started (its upstream is only listed and
// cordoned); a stream that must run follows a fake chain of its own.

#include "gateway/admin/admin_handler.hpp"
#include "gateway/streams/stream_set.hpp"
#include "gateway/upstream/pool.hpp"
#include "support/fake_upstream.hpp"
#include "support/managed_rig.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <atomic>
#include <map>
#include <string>
#include <thread>

namespace gateway {
namespace {

using namespace std::chrono_literals;
using ::testing::_;
using ::testing::HasSubstr;
namespace json = boost::json;

class AdminHandlerTest : public ::testing::Test {
protected:
    explicit AdminHandlerTest(test::RigOptions options = {}) : rig(std::move(options)) {
        config::UpstreamConfig u;
        u.id = "node-a";
        u.url = "http://127.0.0.1:1";
        chain_.name = "devnet";
        chain_.chain_id = 31337;
        chain_.upstreams.push_back(u);
        pool_.emplace(chain_, rig.io.ioc.get_executor(), nullptr);
        handler_.emplace(std::vector<upstream::ChainPool*>{&*pool_}, nullptr, &draining_,
                         &rig.journal());
        handler_->set_managed({&rig.senders()}, {&rig.signer});
    }
    // The pool's probers hold timers on the rig's loop: the loop runs out first (its work is
    // over), then the pool goes (a member after the rig), and the loop last.
    ~AdminHandlerTest() override {
        stop_streams();
        pool_->stop();
        rig.shutdown();
    }

    // The event streams, these of the config and those the journal keeps from the admin API,
    // following `chain` (unset: the chain's pool, which is never started).
    void use_streams(const std::vector<config::StreamConfig>& configured = {},
                     upstream::Forwarder* chain = nullptr) {
        stop_streams();
        streams_ = std::make_unique<streams::StreamSet>(
            configured,
            std::vector<streams::StreamSet::Chain>{
                {"devnet", 31337, chain ? chain : &*pool_, 20ms}},
            rig.journal(), nullptr, rig.io.ioc.get_executor());
        streams_->start();
        handler_->set_streams(streams_.get());
    }
    void stop_streams() {
        if (!streams_) return;
        streams_->stop();
        for (int i = 0; i < 2000 && !streams_->finished(); ++i) std::this_thread::sleep_for(1ms);
        handler_->set_streams(nullptr);
        streams_.reset();
    }

    struct Answer {
        unsigned status = 0;
        json::value body;
    };
    Answer call(std::string method, std::string target, std::string body = {}) {
        http::Request request;
        request.method = std::move(method);
        request.target = std::move(target);
        request.body = std::move(body);
        const http::Response r = rig.io.run(run(request));
        json::error_code ec;
        json::value v = json::parse(r.body, ec);
        return {r.status, ec ? json::value(r.body) : v};
    }
    std::string error_of(const Answer& a) const {
        const auto* o = a.body.if_object();
        const auto* e = o ? o->if_contains("error") : nullptr;
        return e && e->is_string() ? std::string(e->get_string()) : json::serialize(a.body);
    }

    test::ManagedRig rig;

private:
    config::ChainConfig chain_;
    std::optional<upstream::ChainPool> pool_;
    std::atomic<bool> draining_{false};
    std::optional<admin::AdminHandler> handler_;
    std::unique_ptr<streams::StreamSet> streams_;

    boost::asio::awaitable<http::Response> run(http::Request& request) {
        co_return co_await (*handler_)(request);
    }
};

TEST_F(AdminHandlerTest, TheTransactionListTakesALimitThatIsANumberOnly) {
    rig.start();
    for (const char* limit : {"abc", "-1", "", "5x", "99999999999999999999999"}) {
        const Answer a = call("GET", std::string("/admin/transactions?limit=") + limit);
        EXPECT_EQ(a.status, 400u) << limit;
        EXPECT_THAT(error_of(a), HasSubstr("limit must be a number")) << limit;
    }
    EXPECT_EQ(call("GET", "/admin/transactions?limit=5").status, 200u);
    EXPECT_EQ(call("GET", "/admin/transactions?state=SIDEWAYS").status, 400u);
}

TEST_F(AdminHandlerTest, RetryAndCancelAnswerWhatTheTransactionManagerSays) {
    // Refused by the signer once: FAILED, and then signed when an operator retries.
    EXPECT_CALL(rig.signer, sign(_, _, _))
        .WillOnce([](auto&&...) {
            return test::ready_awaitable(
                test::answer_of(custody::Signed::Outcome::refused, "policy: not now"));
        })
        .WillRepeatedly([this](const eth::UnsignedTx& tx, const eth::Address& from, auto deadline) {
            return rig.keys_.sign(tx, from, deadline);
        });
    rig.start();
    const std::string id = rig.send_queued();
    ASSERT_TRUE(test::ManagedRig::wait_for(
        [&] { return rig.describe(id).at("state").as_string() == "FAILED"; }));

    // Not known here.
    EXPECT_EQ(call("POST", "/admin/transactions/gtx-000000000000000000000000/retry").status, 404u);
    // Cancelling a transaction that has finished: a conflict, saying why.
    const Answer cancelled = call("POST", "/admin/transactions/" + id + "/cancel");
    EXPECT_EQ(cancelled.status, 409u) << json::serialize(cancelled.body);
    // Retried: taken up again, and signed this time.
    const Answer retried = call("POST", "/admin/transactions/" + id + "/retry");
    EXPECT_THAT(retried.status, ::testing::AnyOf(200u, 202u)) << json::serialize(retried.body);
    ASSERT_TRUE(test::ManagedRig::wait_for([&] {
        const auto state = rig.describe(id).at("state").as_string();
        return state == "CONFIRMING" || state == "COMPLETED";
    })) << json::serialize(rig.describe(id));
    EXPECT_EQ(rig.sent().size(), 1u);
    // An action that is neither: not found, and the answer says what there is.
    EXPECT_EQ(call("POST", "/admin/transactions/" + id + "/rewind").status, 404u);
}

TEST_F(AdminHandlerTest, ResyncAnswersForManagedSendersOnly) {
    rig.start();
    const Answer unknown =
        call("POST", "/admin/senders/0x000000000000000000000000000000000000dead/resync");
    EXPECT_EQ(unknown.status, 404u);
    EXPECT_THAT(error_of(unknown), HasSubstr("is not a managed sender"));

    const Answer done = call("POST", "/admin/senders/" + test::kManagedSender + "/resync");
    ASSERT_EQ(done.status, 200u) << json::serialize(done.body);
    // The next nonce is the chain's pending count: nothing is held.
    EXPECT_THAT(json::serialize(done.body), HasSubstr(std::to_string(test::kPendingNonce)));
}

TEST_F(AdminHandlerTest, CordonsNameAKnownUpstreamAndTakeAnOptionalReason) {
    rig.start();
    EXPECT_EQ(call("POST", "/admin/upstreams/node-z/cordon").status, 404u);
    EXPECT_EQ(call("GET", "/admin/upstreams/node-a/cordon").status, 405u);
    EXPECT_EQ(call("POST", "/admin/upstreams/node-a/cordon", "[1]").status, 400u);

    const Answer cordoned =
        call("POST", "/admin/upstreams/node-a/cordon", R"({"reason":"disk full"})");
    ASSERT_EQ(cordoned.status, 200u) << json::serialize(cordoned.body);
    EXPECT_EQ(cordoned.body.at("cordoned"), true);
    EXPECT_EQ(cordoned.body.at("reason"), "disk full");
    const Answer back = call("POST", "/admin/upstreams/node-a/uncordon");
    ASSERT_EQ(back.status, 200u);
    EXPECT_EQ(back.body.at("cordoned"), false);
}

TEST_F(AdminHandlerTest, AnUnknownPathListsTheEndpointsAndOtherMethodsAre405) {
    rig.start();
    const Answer unknown = call("GET", "/admin/nothing");
    EXPECT_EQ(unknown.status, 404u);
    EXPECT_THAT(json::serialize(unknown.body), HasSubstr("/admin/transactions/<hash|id>"));
    EXPECT_THAT(json::serialize(unknown.body), HasSubstr("POST /admin/approvals/<id>/approve"));
    EXPECT_EQ(call("DELETE", "/admin/upstreams").status, 405u);
}

// Catalog row C2 through the admin API: held transactions listed, decided by someone named.
class AdminApprovalsTest : public AdminHandlerTest {
protected:
    AdminApprovalsTest() : AdminHandlerTest(options()) {}
    static test::RigOptions options() {
        config::PolicyConfig policy;
        policy.max_value_wei = "0";
        return test::RigOptions{policy};
    }
};

TEST_F(AdminApprovalsTest, C2_HeldTransactionsAreListedAndApprovedOrRejectedBySomeoneNamed) {
    rig.start();
    const std::string first = rig.send_queued("0x1");
    const std::string second = rig.send_queued("0x2");
    const Answer listed = call("GET", "/admin/approvals");
    ASSERT_EQ(listed.status, 200u);
    const json::array& approvals = listed.body.at("approvals").as_array();
    ASSERT_EQ(approvals.size(), 2u);
    EXPECT_EQ(approvals[0].at("id").as_string(), first);
    EXPECT_EQ(approvals[0].at("state").as_string(), "PENDING_APPROVAL");
    EXPECT_THAT(std::string(approvals[0].at("reason").as_string()), HasSubstr("max_value_wei"));
    EXPECT_EQ(approvals[1].at("request").at("value").as_string(), "0x2");

    // Who decides is required, and the body is checked before anything changes.
    const std::string approve = "/admin/approvals/" + first + "/approve";
    for (const char* body :
         {"", "{}", "[]", "{\"by\": \"\"}", "{\"by\": 7}", "{\"by\": \"al\\nice\"}",
          "{\"by\": \"al\\u007fice\"}", "{\"by\": \"alice\", \"reason\": 3}"}) {
        const Answer refused = call("POST", approve, body);
        EXPECT_EQ(refused.status, 400u) << body;
        EXPECT_THAT(error_of(refused), HasSubstr("\"by\"")) << body;
    }
    EXPECT_EQ(call("POST", "/admin/approvals/" + first + "/approve",
                   "{\"by\": \"" + std::string(129, 'a') + "\"}")
                  .status,
              400u);
    EXPECT_EQ(rig.describe(first).at("state").as_string(), "PENDING_APPROVAL");
    EXPECT_EQ(call("POST", "/admin/approvals/" + first + "/maybe", "{\"by\": \"alice\"}").status,
              404u);
    EXPECT_EQ(
        call("POST", "/admin/approvals/gtx-000000000000000000000000/approve", "{\"by\": \"alice\"}")
            .status,
        404u);

    const Answer approved = call("POST", approve, R"({"by": "alice", "reason": "ticket 42"})");
    ASSERT_EQ(approved.status, 200u) << json::serialize(approved.body);
    EXPECT_EQ(approved.body.at("state").as_string(), "QUEUED");
    const Answer rejected =
        call("POST", "/admin/approvals/" + second + "/reject", R"({"by": "bob"})");
    ASSERT_EQ(rejected.status, 200u) << json::serialize(rejected.body);
    EXPECT_EQ(rejected.body.at("state").as_string(), "CANCELLED");
    // Decided: a second decision is a conflict, and nothing is listed any more.
    EXPECT_EQ(call("POST", approve, R"({"by": "carol"})").status, 409u);
    EXPECT_TRUE(call("GET", "/admin/approvals").body.at("approvals").as_array().empty());
    ASSERT_TRUE(test::ManagedRig::wait_for([&] {
        const auto state = rig.describe(first).at("state").as_string();
        return state == "CONFIRMING" || state == "COMPLETED";
    })) << json::serialize(rig.describe(first));
    EXPECT_THAT(json::serialize(rig.describe(first).at("history")),
                HasSubstr("approved by alice: ticket 42"));
    EXPECT_THAT(json::serialize(rig.describe(second).at("history")), HasSubstr("rejected by bob"));
}

// The operator page's search and lists: managed transactions by state, and by idempotency key
// (any text a client sent, percent-encoded in the query).
TEST_F(AdminApprovalsTest, ManagedTransactionsAreListedByStateAndFoundByIdempotencyKey) {
    rig.start();
    const std::string plain = rig.send_queued("0x1");
    const std::string keyed = rig.send_queued("0x2", "<img src=x onerror=alert(1)>");
    const Answer held = call("GET", "/admin/transactions?kind=managed&state=pending_approval");
    ASSERT_EQ(held.status, 200u) << json::serialize(held.body);
    const json::array& list = held.body.at("transactions").as_array();
    ASSERT_EQ(list.size(), 2u);
    EXPECT_EQ(list[1].at("id").as_string(), plain) << "the last changed first";
    EXPECT_EQ(list[0].at("id").as_string(), keyed);
    EXPECT_EQ(list[0].at("idempotencyKey").as_string(), "<img src=x onerror=alert(1)>");
    EXPECT_TRUE(call("GET", "/admin/transactions?kind=managed&state=DEAD_LETTER")
                    .body.at("transactions")
                    .as_array()
                    .empty());

    const Answer found =
        call("GET", "/admin/transactions?idempotency_key=%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E");
    ASSERT_EQ(found.status, 200u) << json::serialize(found.body);
    ASSERT_EQ(found.body.at("transactions").as_array().size(), 1u);
    EXPECT_EQ(found.body.at("transactions").at(0).at("id").as_string(), keyed);
    EXPECT_TRUE(call("GET", "/admin/transactions?idempotency_key=other")
                    .body.at("transactions")
                    .as_array()
                    .empty());
    EXPECT_EQ(call("GET", "/admin/transactions?idempotency_key=").status, 400u);
    // Only managed transactions have keys, whatever the order the query asks in.
    EXPECT_EQ(call("GET", "/admin/transactions?idempotency_key=k&kind=signed").status, 400u);
    EXPECT_EQ(call("GET", "/admin/transactions?kind=signed&idempotency_key=k").status, 400u);
    EXPECT_EQ(call("GET", "/admin/transactions?idempotency_key=" + std::string(257, 'k')).status,
              400u);
    EXPECT_EQ(call("GET", "/admin/transactions?kind=sideways").status, 400u);
    // Signed transactions, as before: none of these has an attempt yet.
    EXPECT_TRUE(
        call("GET", "/admin/transactions?kind=signed").body.at("transactions").as_array().empty());
}

// The operator page (/ui/): its files are served without the token, with their types and a strict
// Content-Security-Policy; everything else on the admin listener still needs the token.
class OperatorPageTest : public ::testing::Test {
protected:
    OperatorPageTest() : handler_({}, nullptr, &draining_) { handler_.require_token(kToken); }

    static constexpr const char* kToken = "operator-page-test-token";

    http::Response call(std::string method, std::string target, std::string token = "") {
        http::Request request;
        request.method = std::move(method);
        request.target = std::move(target);
        if (!token.empty()) request.headers.emplace_back("authorization", "Bearer " + token);
        return io_.run(run(request));
    }
    /// What the listener's head check answers (nothing: the request goes on), for a request with
    /// these headers.
    std::optional<http::Response> head_check(
        std::string target, std::vector<std::pair<std::string, std::string>> headers = {}) {
        http::Request request;
        request.method = "GET";
        request.target = std::move(target);
        for (auto& h : headers) request.headers.push_back(std::move(h));
        return io_.run(check(request));
    }
    static std::string header(const http::Response& r, std::string_view name) {
        for (const auto& h : r.headers)
            if (h.first == name) return h.second;
        return "<none>";
    }
    static void expect_security_headers(const http::Response& r, const std::string& what) {
        const std::string csp = header(r, "Content-Security-Policy");
        EXPECT_THAT(csp, HasSubstr("default-src 'self'")) << what;
        EXPECT_THAT(csp, HasSubstr("frame-ancestors 'none'")) << what;
        EXPECT_THAT(csp, HasSubstr("base-uri 'none'")) << what;
        EXPECT_THAT(csp, ::testing::Not(HasSubstr("unsafe"))) << what;
        EXPECT_EQ(header(r, "X-Content-Type-Options"), "nosniff") << what;
        EXPECT_EQ(header(r, "Referrer-Policy"), "no-referrer") << what;
        EXPECT_EQ(header(r, "Cache-Control"), "no-store") << what;
    }

private:
    test::IoThread io_;
    std::atomic<bool> draining_{false};
    admin::AdminHandler handler_;

    boost::asio::awaitable<http::Response> run(http::Request& request) {
        co_return co_await handler_(request);
    }
    boost::asio::awaitable<std::optional<http::Response>> check(http::Request& request) {
        co_return co_await handler_.check_head(request);
    }
};

TEST_F(OperatorPageTest, ThePagesFilesAreServedWithoutTheTokenWithTheirTypesAndAStrictPolicy) {
    struct File {
        const char* target;
        std::string_view type;
        const char* holds;
    };
    for (const File& f : {File{"/ui/", "text/html; charset=utf-8", "<script src=\"app.js\""},
                          File{"/ui/index.html", "text/html; charset=utf-8", "<!doctype html>"},
                          File{"/ui/app.js", "text/javascript; charset=utf-8", "sessionStorage"},
                          File{"/ui/app.css", "text/css; charset=utf-8", ".banner"}}) {
        EXPECT_FALSE(head_check(f.target)) << f.target << ": the head check lets it through";
        const http::Response r = call("GET", f.target);
        ASSERT_EQ(r.status, 200u) << f.target << ": " << r.body;
        EXPECT_EQ(r.content_type, f.type) << f.target;
        EXPECT_THAT(r.body, HasSubstr(f.holds)) << f.target;
        expect_security_headers(r, f.target);
    }
    // Nothing inline that the policy would block: every script has a src, no style attribute.
    const std::string page = call("GET", "/ui/").body;
    EXPECT_THAT(page, ::testing::Not(HasSubstr("<script>")));
    EXPECT_THAT(page, ::testing::Not(HasSubstr(" style=")));
    EXPECT_THAT(page, ::testing::Not(::testing::ContainsRegex(" on[a-z]+=")));  // onclick=...
    EXPECT_THAT(page, ::testing::Not(HasSubstr("http")));  // nothing from other hosts
    // The script builds its elements from text, never from markup.
    EXPECT_THAT(call("GET", "/ui/app.js").body, ::testing::Not(HasSubstr("innerHTML")));
}

TEST_F(OperatorPageTest, TheDataStillNeedsTheToken) {
    for (const char* target :
         {"/admin/upstreams", "/admin/approvals", "/admin/transactions", "/uix", "/admin/ui/"}) {
        EXPECT_EQ(call("GET", target).status, 401u) << target;
        EXPECT_EQ(call("GET", target, "not-the-token").status, 401u) << target;
        ASSERT_TRUE(head_check(target)) << target;
        EXPECT_EQ(head_check(target)->status, 401u) << target;
    }
    EXPECT_EQ(call("GET", "/admin/upstreams", kToken).status, 200u);
    // A path under /ui/ is only ever the page's files, whatever it spells.
    for (const char* target : {"/ui/../admin/upstreams", "/ui/%2e%2e/admin/upstreams"}) {
        const http::Response r = call("GET", target);
        EXPECT_EQ(r.status, 404u) << target;
        EXPECT_THAT(r.body, ::testing::Not(HasSubstr("upstreams\""))) << target;
    }
}

TEST_F(OperatorPageTest, AnUnknownFileIs404UiRedirectsAndOtherMethodsAre405) {
    const http::Response unknown = call("GET", "/ui/secrets.json");
    EXPECT_EQ(unknown.status, 404u);
    expect_security_headers(unknown, "404");
    const http::Response bare = call("GET", "/ui");
    EXPECT_EQ(bare.status, 308u);
    EXPECT_EQ(header(bare, "Location"), "/ui/");
    EXPECT_EQ(call("GET", "/ui/?x=1").status, 200u) << "the query is not the path";
    // Another method needs the token (its body is not read without it), and is refused then.
    EXPECT_EQ(call("POST", "/ui/").status, 401u);
    EXPECT_EQ(call("POST", "/ui/", kToken).status, 405u);
    EXPECT_EQ(call("DELETE", "/ui/app.js", kToken).status, 405u);
    // The refusal carries the page's headers too.
    expect_security_headers(call("POST", "/ui/"), "401");
}

// What answers without the token takes no body: one announced is refused on the head, never read.
TEST_F(OperatorPageTest, WhatAnswersWithoutTheTokenRefusesABodyOnItsHead) {
    for (const char* target : {"/ui/", "/healthz", "/metrics"}) {
        const auto sized = head_check(target, {{"content-length", "65536"}});
        ASSERT_TRUE(sized) << target;
        EXPECT_EQ(sized->status, 400u) << target;
        const auto chunked = head_check(target, {{"transfer-encoding", "chunked"}});
        ASSERT_TRUE(chunked) << target;
        EXPECT_EQ(chunked->status, 400u) << target;
        EXPECT_FALSE(head_check(target, {{"content-length", "0"}})) << target;
    }
    expect_security_headers(*head_check("/ui/", {{"content-length", "10"}}), "400");
}

// A stream the config no longer names keeps its checkpoint in the journal, and is shown paused.
TEST_F(AdminHandlerTest, AStreamRemovedFromTheConfigIsShownPausedWithItsCheckpoint) {
    use_streams();
    rig.start();
    rig.journal().run_blocking([](store::JournalView& j) {
        j.put_stream(store::StreamRecord{"old-transfers", "devnet", 1234, false, 1});
    });
    const Answer a = call("GET", "/admin/streams");
    ASSERT_EQ(a.status, 200u);
    const json::array& streams = a.body.at("streams").as_array();
    ASSERT_EQ(streams.size(), 1u);
    EXPECT_EQ(streams[0].at("id").as_string(), "old-transfers");
    EXPECT_EQ(streams[0].at("state").as_string(), "removed");
    EXPECT_TRUE(streams[0].at("paused").as_bool());
    EXPECT_EQ(streams[0].at("nextBlock").to_number<std::uint64_t>(), 1234u);
    EXPECT_THAT(std::string(streams[0].at("reason").as_string()), HasSubstr("its checkpoint kept"));
    // Actions name the configured streams only.
    EXPECT_EQ(call("POST", "/admin/streams/old-transfers/resume").status, 404u);
}

// Streams made through the admin API: checked like the config's, kept in the journal with their
// definition (and the secret the gateway made, shown once), back after a restart; deleted
// through the API. A config stream cannot be deleted, nor its id (or the id of a checkpoint the
// journal keeps) taken.
TEST_F(AdminHandlerTest, StreamsAreMadeAndDeletedThroughTheApiAndSurviveARestart) {
    rig.journal().run_blocking([](store::JournalView& j) {
        j.put_stream(store::StreamRecord{"old-transfers", "devnet", 1234, false, 1});
    });
    config::StreamConfig configured;
    configured.id = "from-config";
    configured.chain = "devnet";
    configured.webhook.url = "http://127.0.0.1:1/events";
    configured.webhook.secret = "a-secret-of-the-config-xxxxxxxx";
    use_streams({configured});
    const std::string definition =
        R"({"id":"approvals","chain":"devnet","kind":"transactions","batch_size":10,)"
        R"("webhook":{"url":"http://127.0.0.1:1/hook"}})";

    Answer made;
    for (int i = 0; i < 200; ++i) {  // 503 while the API's streams are being loaded
        made = call("POST", "/admin/streams", definition);
        if (made.status != 503) break;
        std::this_thread::sleep_for(5ms);
    }
    ASSERT_EQ(made.status, 201u) << error_of(made);
    EXPECT_EQ(made.body.at("stream").at("source"), "api");
    EXPECT_EQ(made.body.at("stream").at("kind"), "transactions");
    const std::string secret(made.body.at("secret").as_string());
    EXPECT_EQ(secret.size(), 64u);
    EXPECT_THAT(json::serialize(call("GET", "/admin/streams").body),
                ::testing::Not(HasSubstr(secret)))
        << "the secret is shown once";

    // Refused: a taken id, a config stream's id, a kept checkpoint's id, a bad definition, a
    // variable of the gateway's environment, an unknown chain; a config stream is not deleted.
    EXPECT_EQ(call("POST", "/admin/streams", definition).status, 409u);
    std::string taken = definition;
    taken.replace(taken.find("approvals"), 9, "from-config");
    EXPECT_THAT(error_of(call("POST", "/admin/streams", taken)),
                HasSubstr("defined in the config"));
    std::string kept = definition;
    kept.replace(kept.find("approvals"), 9, "old-transfers");
    const Answer kept_answer = call("POST", "/admin/streams", kept);
    EXPECT_EQ(kept_answer.status, 409u);
    EXPECT_THAT(error_of(kept_answer), HasSubstr("DELETE /admin/streams/old-transfers"));
    EXPECT_EQ(call("POST", "/admin/streams", "{").status, 400u);
    EXPECT_THAT(error_of(call("POST", "/admin/streams",
                              R"({"id":"x","chain":"devnet","topics":["0x1"],)"
                              R"("webhook":{"url":"http://127.0.0.1:1/"}})")),
                HasSubstr("is not a topic"));
    EXPECT_EQ(call("POST", "/admin/streams",
                   R"({"id":"x","chain":"devnet","webhook":{"url":"http://${HOME}/"}})")
                  .status,
              400u);
    EXPECT_THAT(error_of(call("POST", "/admin/streams",
                              R"({"id":"x","chain":"mainnet","webhook":{"url":"http://a/"}})")),
                HasSubstr("no chain 'mainnet'"));
    EXPECT_EQ(call("POST", "/admin/streams",
                   R"({"id":"x","chain":"devnet","webhook":{"url":"http://a/","secret":"short"}})")
                  .status,
              400u);
    EXPECT_THAT(error_of(call("DELETE", "/admin/streams/from-config")),
                HasSubstr("defined in the config"));
    EXPECT_EQ(call("DELETE", "/admin/streams/nothing").status, 404u);

    // A restart: the API's stream is back, with its secret.
    use_streams({configured});
    auto listed = [&] {
        std::map<std::string, std::string> out;  // id -> source/state
        const Answer a = call("GET", "/admin/streams");
        for (const auto& s : a.body.at("streams").as_array())
            out[std::string(s.at("id").as_string())] = std::string(s.at("source").as_string()) +
                                                       "/" + std::string(s.at("state").as_string());
        return out;
    };
    for (int i = 0; i < 200 && listed()["approvals"] == "api/starting"; ++i)
        std::this_thread::sleep_for(5ms);
    EXPECT_EQ(listed()["approvals"].substr(0, 4), "api/");
    EXPECT_NE(listed()["approvals"], "api/starting");
    EXPECT_NE(listed()["approvals"], "api/unavailable");
    std::optional<store::StreamRecord> record;
    auto read = [&] {
        rig.journal().run_blocking(
            [&](store::JournalView& j) { record = j.find_stream("approvals"); });
        return record;
    };
    ASSERT_TRUE(read() && record->definition);
    EXPECT_THAT(*record->definition, HasSubstr(secret));

    // Deleted: gone from the list and the journal; a removed config stream's checkpoint too, and
    // then its id is free.
    const Answer deleted = call("DELETE", "/admin/streams/approvals");
    EXPECT_EQ(deleted.status, 200u) << error_of(deleted);
    EXPECT_EQ(listed().count("approvals"), 0u);
    EXPECT_FALSE(read());
    EXPECT_EQ(call("DELETE", "/admin/streams/old-transfers").status, 200u);
    EXPECT_EQ(call("POST", "/admin/streams", kept).status, 201u);
}

// A log stream that runs: its chain a gmock Forwarder with one log in each of blocks 5, 6, 7 and
// 30 (head 20 at first), its webhook a FakeUpstream on loopback that acknowledges everything.
class AdminStreamActionsTest : public AdminHandlerTest {
protected:
    AdminStreamActionsTest() {
        ON_CALL(chain, head()).WillByDefault([this] {
            return std::optional<std::uint64_t>(head.load());
        });
        ON_CALL(chain, forward_at_least(_, _, _, _))
            .WillByDefault([](std::string method, json::value params, auto&&...) {
                return test::ready_awaitable(answer(method, params));
            });
        webhook.set_script(
            [](const std::string&, const json::value&) -> std::optional<test::FakeReply> {
                return test::FakeReply::http(200, "ok");
            });
        config::StreamConfig s;
        s.id = "transfers";
        s.chain = "devnet";
        s.from_block = 5;
        s.confirmations = 2;
        s.batch_size = 10;
        s.webhook.url = webhook.url() + "/events";
        s.webhook.timeout = 2s;
        s.webhook.secret = "a-webhook-secret-of-32-bytes-xx";
        use_streams({s}, &chain);
    }
    // The streams stop before the chain and the webhook they use go.
    ~AdminStreamActionsTest() override { stop_streams(); }

    static upstream::Forwarded answer(const std::string& method, const json::value& params) {
        if (method == "eth_getBlockByNumber") {
            const auto n = std::stoull(std::string(params.at(0).as_string()), nullptr, 16);
            return test::answered(fmt::format(R"({{"number":"0x{:x}","hash":"0x{:064x}"}})", n, n));
        }
        if (method != "eth_getLogs") return test::unavailable("not scripted: " + method);
        const auto& filter = params.at(0).as_object();
        const auto from = std::stoull(std::string(filter.at("fromBlock").as_string()), nullptr, 16);
        const auto to = std::stoull(std::string(filter.at("toBlock").as_string()), nullptr, 16);
        std::string out = "[";
        for (std::uint64_t b : {5, 6, 7, 30})
            if (b >= from && b <= to)
                out +=
                    (out.size() > 1 ? "," : "") +
                    fmt::format(
                        R"({{"address":"0x5fbdb2315678afecb367f032d93f642f64180aa3","topics":[],"data":"0x","blockNumber":"0x{:x}","blockHash":"0x{:064x}","transactionHash":"0x{:064x}","logIndex":"0x0","removed":false}})",
                        b, b, b);
        return test::answered(out + "]");
    }

    // The stream as GET /admin/streams shows it.
    json::object shown() {
        const Answer a = call("GET", "/admin/streams");
        EXPECT_EQ(a.status, 200u);
        for (const auto& s : a.body.at("streams").as_array())
            if (s.at("id") == "transfers") return s.as_object();
        ADD_FAILURE() << json::serialize(a.body);
        return {};
    }
    static std::uint64_t number(const json::object& view, std::string_view key) {
        const json::value* v = view.if_contains(key);
        return v && !v->is_null() ? v->to_number<std::uint64_t>() : 0;
    }
    // How many times block `block`'s event was delivered.
    std::size_t deliveries_of(std::uint64_t block) const {
        const std::string id = fmt::format("31337:0x{:064x}:0", block);
        std::size_t n = 0;
        for (const auto& [body, signature] : webhook.raw_requests()) {
            const json::value batch = json::parse(body);  // kept: the loop reads into it
            for (const auto& e : batch.at("events").as_array())
                if (e.at("id").as_string() == id) ++n;
        }
        return n;
    }

    ::testing::NiceMock<test::MockForwarder> chain;
    test::FakeUpstream webhook;
    std::atomic<std::uint64_t> head{20};
};

// POST /admin/streams/<id>/pause, /resume and /reset through the handler, against a stream that
// runs: what each answers, and what GET /admin/streams shows after it.
TEST_F(AdminStreamActionsTest, PauseResumeAndResetAnswerAndShowTheStreamsNewState) {
    // Blocks 5-18 confirmed (head 20, 2 confirmations): delivered.
    ASSERT_TRUE(test::ManagedRig::wait_for([&] { return number(shown(), "nextBlock") == 19; }))
        << json::serialize(shown());
    EXPECT_EQ(deliveries_of(6), 1u);

    const Answer paused = call("POST", "/admin/streams/transfers/pause");
    ASSERT_EQ(paused.status, 200u) << error_of(paused);
    EXPECT_TRUE(paused.body.at("paused").as_bool());
    EXPECT_TRUE(shown().at("paused").as_bool());
    // Block 30's event is confirmed now, but nothing is delivered: the lag grows instead.
    const std::size_t before = webhook.raw_requests().size();
    head = 40;
    ASSERT_TRUE(test::ManagedRig::wait_for([&] {
        const json::object v = shown();
        return v.at("state") == "paused" && number(v, "lagBlocks") == 20;  // blocks 19-38
    })) << json::serialize(shown());
    EXPECT_EQ(number(shown(), "nextBlock"), 19u);
    EXPECT_EQ(webhook.raw_requests().size(), before);

    const Answer resumed = call("POST", "/admin/streams/transfers/resume");
    ASSERT_EQ(resumed.status, 200u) << error_of(resumed);
    EXPECT_FALSE(resumed.body.at("paused").as_bool());
    ASSERT_TRUE(test::ManagedRig::wait_for([&] {
        const json::object v = shown();
        return number(v, "nextBlock") == 39 && number(v, "lagBlocks") == 0;
    })) << json::serialize(shown());
    EXPECT_FALSE(shown().at("paused").as_bool());
    EXPECT_EQ(shown().at("state"), "following");
    EXPECT_EQ(deliveries_of(30), 1u);

    // Reset: a body without from_block is refused, one past the checkpoint would skip blocks.
    EXPECT_EQ(call("POST", "/admin/streams/transfers/reset").status, 400u);
    EXPECT_EQ(call("POST", "/admin/streams/transfers/reset", R"({"from_block":"6"})").status, 400u);
    const Answer skip = call("POST", "/admin/streams/transfers/reset", R"({"from_block":1000})");
    EXPECT_EQ(skip.status, 409u);
    EXPECT_THAT(error_of(skip), HasSubstr("would skip blocks"));
    EXPECT_EQ(number(shown(), "nextBlock"), 39u);
    // To block 6: shown from there, then its events (and those after it) delivered again.
    const Answer reset = call("POST", "/admin/streams/transfers/reset", R"({"from_block":6})");
    ASSERT_EQ(reset.status, 200u) << error_of(reset);
    EXPECT_EQ(number(reset.body.as_object(), "nextBlock"), 6u);
    ASSERT_TRUE(test::ManagedRig::wait_for([&] {
        return deliveries_of(6) == 2 && deliveries_of(30) == 2 &&
               number(shown(), "nextBlock") == 39;
    })) << json::serialize(shown());
    EXPECT_EQ(deliveries_of(5), 1u) << "before the reset's block: not again";

    // An unknown stream or action.
    EXPECT_EQ(call("POST", "/admin/streams/nothing/pause").status, 404u);
    EXPECT_EQ(call("POST", "/admin/streams/transfers/rewind").status, 404u);
}

}  // namespace
}  // namespace gateway
