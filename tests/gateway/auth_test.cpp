// Who may call the whole gateway, in-process, over HTTP in front of a fake node: keys in the header
// and in the path, refusals that reach no node, a client's methods, senders and rate, records and
// idempotency keys scoped to their client, the admin token, and methods never forwarded.

#include "support/gateway_fixture.hpp"
#include "support/raw_server.hpp"
#include "support/tx_signer.hpp"

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <boost/json/serialize.hpp>

namespace gateway {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;
using ::testing::Not;
namespace json = boost::json;
using test::FakeReply;
using test::FakeUpstream;
using test::GatewayTest;
using test::HttpConnection;
using test::HttpReply;

const std::string kBackendKey = "backend-key-0123456789abcdef";
const std::string kBackendNewKey = "backend-key-rotated-000000000";
const std::string kOpsKey = "ops-key-0123456789abcdef0000";
const std::string kIndexerKey = "indexer-key-0123456789abcdef";
const std::string kScopedKey = "scoped-key-0123456789abcdef0";
const std::string kAdminToken = "admin-token-0123456789abcdef";
// anvil's accounts 0 and 1, managed by the gateway in these tests.
const std::string kSender0 = "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266";
const std::string kSender1 = "0x70997970c51812dc3a010c7d01b50e0d17dc79c8";

class AuthGatewayTest : public GatewayTest {
protected:
    // Clients: backend (sender 0, two keys), ops (sender 0 too), indexer (reads only, three
    // methods, 2 calls a second); two managed senders; an admin token.
    void start_with_auth(const std::string& node_url,
                         std::function<void(config::Config&)> tweak = {}) {
        const std::string dir = test::make_temp_dir("auth-gateway");
        test::write_file(dir + "/k0", test::kKey0.substr(2));
        test::write_file(dir + "/k1", test::kKey1.substr(2));
        start({node_url}, [&](config::Config& c) {
            c.signers.push_back(
                config::SignerConfig{.id = "k0", .type = "local", .key_file = dir + "/k0"});
            c.signers.push_back(
                config::SignerConfig{.id = "k1", .type = "local", .key_file = dir + "/k1"});
            c.chains[0].accounts.push_back(config::AccountConfig{kSender0, "k0"});
            c.chains[0].accounts.push_back(config::AccountConfig{kSender1, "k1"});
            c.auth.clients.push_back(config::ClientConfig{
                .id = "backend", .keys = {kBackendKey, kBackendNewKey}, .senders = {kSender0}});
            c.auth.clients.push_back(
                config::ClientConfig{.id = "ops", .keys = {kOpsKey}, .senders = {kSender0}});
            c.auth.clients.push_back(
                config::ClientConfig{.id = "indexer",
                                     .keys = {kIndexerKey},
                                     .methods = {"eth_blockNumber", "eth_chainId", "eth_accounts"},
                                     .max_rps = 2});
            c.auth.admin_token = kAdminToken;
            if (tweak) tweak(c);
        });
        wait_ready();
    }

    HttpReply call(const std::string& body, const std::string& key, const std::string& path = "/",
                   std::vector<std::pair<std::string, std::string>> headers = {}) {
        HttpConnection c(port());
        if (!key.empty()) headers.emplace_back("Authorization", "Bearer " + key);
        return c.request("POST", path, body, headers);
    }

    HttpReply admin(const std::string& method, const std::string& target,
                    const std::string& token) {
        HttpConnection c(admin_port());
        std::vector<std::pair<std::string, std::string>> headers;
        if (!token.empty()) headers.emplace_back("Authorization", "Bearer " + token);
        return c.request(method, target, "", headers);
    }
};

json::value result_of(const HttpReply& r) {
    return json::parse(r.body).at("result");
}
json::value error_of(const HttpReply& r) {
    return json::parse(r.body).at("error");
}
std::string message_of(const HttpReply& r) {
    return std::string(error_of(r).at("message").as_string());
}

std::string managed_send(const std::string& from, const std::string& value = "0x1") {
    return fmt::format(
        R"({{"jsonrpc":"2.0","id":1,"method":"gateway_sendTransaction","params":[{{"from":"{}","to":"0x000000000000000000000000000000000000dEaD","value":"{}","gas":"0x5208"}}]}})",
        from, value);
}

TEST_F(AuthGatewayTest, WithoutAValidKeyNothingReachesANode) {
    FakeUpstream node;
    start_with_auth(node.url());
    const std::string body = R"({"jsonrpc":"2.0","id":1,"method":"eth_gasPrice"})";
    const std::size_t before = node.forwarded_calls();

    HttpReply none = call(body, "");
    EXPECT_EQ(none.status, 401u);
    EXPECT_EQ(error_of(none).at("code"), 4100);
    EXPECT_THAT(none.header("www-authenticate"), HasSubstr("Bearer"));
    HttpReply wrong = call(body, "not-a-key-of-anyone-0123456789");
    EXPECT_EQ(wrong.status, 401u);
    EXPECT_THAT(wrong.header("www-authenticate"), HasSubstr("invalid_token"));
    EXPECT_THAT(wrong.body, Not(HasSubstr("not-a-key-of-anyone")));
    // Nothing about the chains is said to a stranger either.
    HttpReply unknown_chain = call(body, "", "/mainnet");
    EXPECT_EQ(unknown_chain.status, 401u);
    EXPECT_EQ(node.forwarded_calls(), before);

    const std::string metrics = http_metrics();
    EXPECT_THAT(metrics,
                HasSubstr(R"(gateway_auth_requests_total{listener="rpc",outcome="missing"} 2)"));
    EXPECT_THAT(metrics,
                HasSubstr(R"(gateway_auth_requests_total{listener="rpc",outcome="invalid"} 1)"));
}

TEST_F(AuthGatewayTest, AKeyWorksInTheHeaderAndInThePathAndBothRotationSlotsWork) {
    FakeUpstream node;
    start_with_auth(node.url());
    const std::string body = R"({"jsonrpc":"2.0","id":1,"method":"eth_chainId"})";
    EXPECT_EQ(call(body, kBackendKey).body, R"({"jsonrpc":"2.0","id":1,"result":"0x7a69"})");
    EXPECT_EQ(call(body, kBackendNewKey).status, 200u);
    EXPECT_EQ(call(body, "", "/devnet/" + kBackendKey).body,
              R"({"jsonrpc":"2.0","id":1,"result":"0x7a69"})");
    EXPECT_EQ(call(body, "", "/devnet/" + kBackendKey + "/").status, 200u);
    // A key in the path only with the chain named; a wrong one is refused.
    EXPECT_EQ(call(body, "", "/" + kBackendKey).status, 401u);
    EXPECT_EQ(call(body, "", "/devnet/wrong-key-0123456789abcdef").status, 401u);
    // An unknown chain with a good key: the path is not quoted back (it could hold a key).
    HttpReply unknown = call(body, kBackendKey, "/" + kOpsKey);
    EXPECT_EQ(unknown.status, 404u);
    EXPECT_THAT(unknown.body, Not(HasSubstr(kOpsKey)));
    EXPECT_THAT(http_metrics(),
                HasSubstr(R"(gateway_client_requests_total{client="backend",outcome="ok"})"));
}

TEST_F(AuthGatewayTest, AReloadRotatesKeysAndTheAdminTokenWithoutARestart) {
    FakeUpstream node;
    start_with_auth(node.url());
    const std::string body = R"({"jsonrpc":"2.0","id":1,"method":"eth_chainId"})";
    const std::string rotated = "backend-key-rotated-0123456789";
    const std::string new_admin = "admin-token-rotated-0123456789";
    config::Config next = started_with;
    next.auth.clients[0].keys = {rotated};  // the old keys retired
    next.auth.clients[2].methods = {"eth_chainId"};
    next.auth.admin_token = new_admin;
    gw->set_config_source([next] { return next; });

    // The reload is an admin call: the token in use now.
    HttpConnection c(admin_port());
    const HttpReply r =
        c.request("POST", "/admin/reload", "", {{"Authorization", "Bearer " + kAdminToken}});
    ASSERT_EQ(r.status, 200u) << r.body;
    const json::value answer = json::parse(r.body);
    EXPECT_EQ(answer.at("reloaded"), true);
    EXPECT_EQ(answer.at("applied"), json::parse(R"(["auth.clients","auth.admin"])"));
    EXPECT_THAT(r.body, Not(HasSubstr(rotated)));
    EXPECT_THAT(r.body, Not(HasSubstr(new_admin)));

    EXPECT_EQ(call(body, kBackendKey).status, 401u);
    EXPECT_EQ(call(body, rotated).status, 200u);
    EXPECT_EQ(call(body, kOpsKey).status, 200u);  // unchanged
    EXPECT_THAT(
        message_of(call(R"({"jsonrpc":"2.0","id":1,"method":"eth_blockNumber"})", kIndexerKey)),
        HasSubstr("eth_blockNumber"));
    EXPECT_EQ(admin("GET", "/admin/upstreams", kAdminToken).status, 401u);
    EXPECT_EQ(admin("GET", "/admin/upstreams", new_admin).status, 200u);
}

TEST_F(AuthGatewayTest, AClientUsesOnlyItsSendersAndItsMethods) {
    FakeUpstream node;
    start_with_auth(node.url());
    // eth_accounts: the managed senders this client may use.
    const std::string accounts = R"({"jsonrpc":"2.0","id":1,"method":"eth_accounts"})";
    EXPECT_EQ(json::serialize(result_of(call(accounts, kBackendKey))),
              R"(["0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"])");
    EXPECT_EQ(json::serialize(result_of(call(accounts, kIndexerKey))), "[]");

    // Sending from a sender the client does not list: refused, nothing journaled.
    HttpReply theft = call(managed_send(kSender1, "0xde0b6b3a7640000"), kBackendKey);
    EXPECT_EQ(error_of(theft).at("code"), 4100);
    EXPECT_THAT(message_of(theft), HasSubstr("client backend may not send from " + kSender1));
    HttpReply theft2 = call(managed_send(kSender0), kIndexerKey);
    EXPECT_EQ(error_of(theft2).at("code"), -32601) << "not in the indexer's methods";
    EXPECT_THAT(message_of(theft2), HasSubstr("client indexer"));
    HttpReply listing = admin("GET", "/admin/transactions", kAdminToken);
    EXPECT_EQ(json::parse(listing.body).at("transactions").as_array().size(), 0u) << listing.body;

    // Its own sender: accepted, recorded as its.
    HttpReply sent = call(managed_send(kSender0), kBackendKey);
    const std::string id(result_of(sent).at("id").as_string());
    const std::string get = fmt::format(
        R"({{"jsonrpc":"2.0","id":1,"method":"gateway_getTransaction","params":["{}"]}})", id);
    EXPECT_EQ(result_of(call(get, kBackendKey)).at("client"), "backend");
    // Another client that may use the same sender does not see it.
    EXPECT_EQ(json::serialize(result_of(call(get, kOpsKey))), "null");
}

TEST_F(AuthGatewayTest, AStrangersBodyIsNeverRead) {
    FakeUpstream node;
    start_with_auth(node.url());
    // A head announcing a megabyte, without a key: refused on the head, the body never awaited.
    HttpConnection c(port());
    c.send_raw(
        "POST /devnet HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        "Content-Length: 1000000\r\n\r\n{");
    const std::string answer = c.read_until_close();
    EXPECT_THAT(answer, ::testing::StartsWith("HTTP/1.1 401"));
    EXPECT_THAT(answer, HasSubstr("WWW-Authenticate: Bearer"));
    EXPECT_THAT(answer, HasSubstr("Connection: close"));
}

// DNS rebinding: the attacker's page, under a name of its own that resolves to 127.0.0.1, tries
// keys in the path. The answer is the same 403 whether the key is valid or not: the Host is
// checked first, so the page learns nothing about the key.
TEST_F(AuthGatewayTest, ARebindingPageLearnsNothingAboutTheKeyItTries) {
    FakeUpstream node;
    start_with_auth(node.url());
    const std::string body = R"({"jsonrpc":"2.0","id":1,"method":"eth_chainId"})";
    const std::size_t before = node.forwarded_calls();
    for (const std::string& key : {kBackendKey, std::string("wrong-key-0123456789abcdef")}) {
        HttpReply path = call(body, "", "/devnet/" + key, {{"Host", "rebind.evil.com:8545"}});
        EXPECT_EQ(path.status, 403u) << path.body;
        EXPECT_THAT(path.body, HasSubstr("does not name this machine"));
        EXPECT_THAT(path.body, Not(HasSubstr(key)));
        HttpReply header = call(body, key, "/", {{"Host", "rebind.evil.com"}});
        EXPECT_EQ(header.status, 403u) << header.body;
        // A page of another origin, the same.
        HttpReply origin = call(body, key, "/", {{"Origin", "https://evil.example"}});
        EXPECT_EQ(origin.status, 403u) << origin.body;
    }
    EXPECT_EQ(node.forwarded_calls(), before);
    // The refusals are not counted as authentication attempts: no key was looked at.
    EXPECT_THAT(http_metrics(), Not(HasSubstr(R"(listener="rpc",outcome="invalid")")));
}

// The admin listener serves pages of its own origin only: an origin the operator allowed for the
// RPC listener does not open it, and the refusal does not send the operator to that setting.
TEST_F(AuthGatewayTest, TheAdminListenerRefusesOriginsAllowedForTheRpcListener) {
    FakeUpstream node;
    start_with_auth(node.url(), [](config::Config& c) {
        c.server.cors_allowed_origins = {"https://app.example.com"};
    });
    const std::string body = R"({"jsonrpc":"2.0","id":1,"method":"eth_chainId"})";
    HttpReply rpc = call(body, kBackendKey, "/", {{"Origin", "https://app.example.com"}});
    EXPECT_EQ(rpc.status, 200u);
    EXPECT_EQ(rpc.header("access-control-allow-origin"), "https://app.example.com");
    HttpConnection c(admin_port());
    HttpReply admin = c.request(
        "GET", "/admin/upstreams", "",
        {{"Authorization", "Bearer " + kAdminToken}, {"Origin", "https://app.example.com"}});
    EXPECT_EQ(admin.status, 403u) << admin.body;
    EXPECT_THAT(admin.body, HasSubstr("its own origin"));
    EXPECT_THAT(admin.body, Not(HasSubstr("add it to server.cors.allowed_origins")));
    EXPECT_EQ(admin.header("access-control-allow-origin"), "");
    HttpConnection own(admin_port());
    const std::string host = "localhost:" + std::to_string(admin_port());
    EXPECT_EQ(own.request("GET", "/admin/upstreams", "",
                          {{"Authorization", "Bearer " + kAdminToken},
                           {"Host", host},
                           {"Origin", "http://" + host}})
                  .status,
              200u);
}

TEST_F(AuthGatewayTest, TheSyncSendFollowsTheSameRulesAsTheOthers) {
    FakeUpstream node(31337,
                      [](const std::string& m, const json::value&) -> std::optional<FakeReply> {
                          if (m == "eth_sendTransactionSync")
                              return FakeReply::ok(R"({"status":"0x1"})");
                          return std::nullopt;
                      });
    start_with_auth(node.url());
    // eth_sendTransactionSync is the gateway's own, with the same sender check: never forwarded.
    HttpReply r = call(
        fmt::format(
            R"({{"jsonrpc":"2.0","id":1,"method":"eth_sendTransactionSync","params":[{{"from":"{}","to":"0x000000000000000000000000000000000000dEaD","value":"0x1"}}]}})",
            kSender1),
        kBackendKey);
    EXPECT_EQ(error_of(r).at("code"), 4100);
    r = call(R"({"jsonrpc":"2.0","id":1,"method":"eth_sendTransactionSync","params":[{}, -5]})",
             kBackendKey);
    EXPECT_EQ(error_of(r).at("code"), -32602);
    EXPECT_EQ(node.calls("eth_sendTransactionSync"), 0u);
}

TEST_F(AuthGatewayTest, ASenderNamedWithItsChainIsUsedOnThatChainOnly) {
    FakeUpstream node;
    start_with_auth(node.url(), [&](config::Config& c) {
        config::ChainConfig second = c.chains[0];
        second.name = "devnet2";
        second.upstreams[0].id = "node-b";
        c.chains.push_back(second);
        c.auth.clients.push_back(config::ClientConfig{
            .id = "scoped", .keys = {kScopedKey}, .senders = {"devnet:" + kSender0}});
    });
    const std::string accounts = R"({"jsonrpc":"2.0","id":1,"method":"eth_accounts"})";
    EXPECT_EQ(json::serialize(result_of(call(accounts, kScopedKey, "/devnet"))),
              R"(["0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"])");
    EXPECT_EQ(json::serialize(result_of(call(accounts, kScopedKey, "/devnet2"))), "[]");
    EXPECT_TRUE(result_of(call(managed_send(kSender0), kScopedKey, "/devnet")).is_object());
    HttpReply other = call(managed_send(kSender0), kScopedKey, "/devnet2");
    EXPECT_EQ(error_of(other).at("code"), 4100);
    // A bare address is every chain's.
    EXPECT_TRUE(result_of(call(managed_send(kSender0), kBackendKey, "/devnet2")).is_object());
}

TEST_F(AuthGatewayTest, AHeldTransactionAndItsRecordAreShownByHashToItsClientOnly) {
    // No node takes it: the gateway holds it, QUEUED, knows it by hash, and keeps its record
    // with its client.
    FakeUpstream node(31337,
                      [](const std::string& m, const json::value&) -> std::optional<FakeReply> {
                          if (m == "eth_sendRawTransaction") return FakeReply::http(503, "");
                          return std::nullopt;
                      });
    start_with_auth(node.url());
    const std::string raw = test::sign_legacy(test::kKey1, {.nonce = 0});
    HttpReply sent = call(
        fmt::format(
            R"({{"jsonrpc":"2.0","id":1,"method":"eth_sendRawTransaction","params":["{}"]}})", raw),
        kBackendKey);
    const std::string hash(result_of(sent).as_string());

    const std::string by_hash = fmt::format(
        R"({{"jsonrpc":"2.0","id":1,"method":"eth_getTransactionByHash","params":["{}"]}})", hash);
    EXPECT_EQ(result_of(call(by_hash, kBackendKey)).at("hash"), hash.c_str());
    HttpReply other = call(by_hash, kOpsKey);
    const json::object answer = json::parse(other.body).as_object();
    EXPECT_TRUE(!answer.contains("result") || answer.at("result").is_null()) << other.body;

    const std::string get = fmt::format(
        R"({{"jsonrpc":"2.0","id":1,"method":"gateway_getTransaction","params":["{}"]}})", hash);
    const json::value mine = result_of(call(get, kBackendKey));
    ASSERT_TRUE(mine.is_object()) << json::serialize(mine);
    EXPECT_EQ(mine.at("hash"), hash.c_str());
    EXPECT_EQ(mine.at("client"), "backend");
    // Another client (one that may even use the same sender) is told nothing: null.
    EXPECT_EQ(json::serialize(result_of(call(get, kOpsKey))), "null");
}

TEST_F(GatewayTest, ABatchsAnswersAreCountedWhileTheyArriveAndStayWithinItsLimit) {
    // Eight calls at once, each answered with about 400 KB: counted only once whole, all eight
    // would start with nothing counted and the answer would be 3.2 MB.
    const std::string big = "\"0x" + std::string(400'000, 'a') + "\"";
    FakeUpstream node(31337, test::on("eth_call", FakeReply::ok(big)));
    start({node.url()}, [](config::Config& c) {
        c.server.max_batch_response_bytes = 1'000'000;
        c.server.batch_concurrency = 8;
        c.chains[0].upstreams[0].max_batch_size = 0;  // one by one, in parallel
    });
    wait_ready();
    std::string batch = "[";
    for (int i = 0; i < 8; ++i)
        batch +=
            std::string(i ? "," : "") +
            fmt::format(
                R"({{"jsonrpc":"2.0","id":{},"method":"eth_call","params":[{{"to":"0x0000000000000000000000000000000000000001","data":"0x{:02x}"}},"latest"]}})",
                i, i);
    batch += "]";
    auto r = post(batch);
    ASSERT_EQ(r.status, 200u) << r.body.substr(0, 300);
    std::size_t answered = 0, refused = 0;
    const json::value answers = json::parse(r.body);
    for (const auto& a : answers.as_array()) {
        if (a.as_object().contains("result")) ++answered;
        if (a.as_object().contains("error")) {
            ++refused;
            EXPECT_EQ(a.at("error").at("code"), -32005);
        }
    }
    EXPECT_EQ(answered + refused, 8u);
    EXPECT_GE(refused, 5u);
    EXPECT_LT(r.body.size(), 1'500'000u);
}

TEST_F(GatewayTest, CachedAnswersInABatchStayWithinItsLimit) {
    const std::string big = "\"0x" + std::string(400'000, 'a') + "\"";
    FakeUpstream node(31337, test::on("eth_call", FakeReply::ok(big)));
    start({node.url()}, [](config::Config& c) {
        c.server.max_batch_response_bytes = 1'000'000;
        c.chains[0].cache.enabled = true;
    });
    wait_ready();
    const std::string call =
        R"({"jsonrpc":"2.0","id":1,"method":"eth_call","params":[{"to":"0x0000000000000000000000000000000000000001"},"latest"]})";
    ASSERT_TRUE(json::parse(post(call).body).as_object().contains("result"));  // now cached
    std::string batch = "[";
    for (int i = 0; i < 8; ++i) batch += std::string(i ? "," : "") + call;
    auto r = post(batch + "]");
    const json::value answers = json::parse(r.body);
    std::size_t answered = 0;
    for (const auto& a : answers.as_array()) {
        if (a.as_object().contains("result"))
            ++answered;
        else
            EXPECT_EQ(a.at("error").at("code"), -32005);
    }
    EXPECT_EQ(answered, 2u);
    EXPECT_LT(r.body.size(), 1'000'000u + 8 * 300);
}

TEST_F(GatewayTest, OneBatchsLimitIsNotHandedToAnotherCallerOfTheSameRead) {
    // X is slow and big; a batch that has room for it only until Y's answer is in gives up on
    // it. A single caller who joined the same read in flight gets X all the same.
    const std::string big = "\"0x" + std::string(600'000, 'a') + "\"";
    FakeReply slow = FakeReply::ok(big);
    slow.delay = std::chrono::milliseconds(400);
    FakeUpstream node(
        31337, [&](const std::string& m, const json::value& req) -> std::optional<FakeReply> {
            if (m != "eth_call") return std::nullopt;
            if (json::serialize(req.at("params").at(0).at("to")).find("ff") != std::string::npos)
                return slow;
            return FakeReply::ok(big);
        });
    start({node.url()}, [](config::Config& c) {
        c.server.max_batch_response_bytes = 1'000'000;
        c.chains[0].cache.enabled = true;
        c.chains[0].cache.coalesce = true;
        c.chains[0].upstreams[0].max_batch_size = 0;
    });
    wait_ready();
    const auto call = [](const char* to) {
        return fmt::format(
            R"({{"jsonrpc":"2.0","id":1,"method":"eth_call","params":[{{"to":"{}"}},"latest"]}})",
            to);
    };
    const std::string x = call("0x00000000000000000000000000000000000000ff");
    const std::string y = call("0x0000000000000000000000000000000000000001");
    test::HttpReply batch_answer;
    std::thread batch([&] { batch_answer = post("[" + y + "," + x + "]"); });
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    auto single = post(x);
    batch.join();
    EXPECT_TRUE(json::parse(single.body).as_object().contains("result"))
        << single.body.substr(0, 200);
    const json::value answers = json::parse(batch_answer.body);
    std::size_t refused = 0;
    for (const auto& a : answers.as_array())
        if (a.as_object().contains("error")) ++refused;
    EXPECT_EQ(refused, 1u) << "the batch itself cannot hold both";
}

TEST_F(GatewayTest, AHedgeThatLostStillReadingAfterItsBatchEndedHarmsNothing) {
    // node-0 sends eth_call's head and a little of its body at once, the rest later: it is still
    // reading when node-1's hedge has won and the batch is over. (That reader counted its bytes
    // against the batch's budget after the batch was gone: a use after free under
    // AddressSanitizer; and a loser cancelled as its read completed looked like a cut-off answer,
    // a failure of node-0.)
    test::RawServer slow([](boost::asio::ip::tcp::socket& s, std::size_t) {
        for (;;) {
            const std::string request = test::RawServer::read_request(s);
            if (request.empty()) return;
            const json::value v = json::parse(request.substr(request.find("\r\n\r\n") + 4));
            const std::string method(v.at("method").as_string());
            const std::string id = json::serialize(v.at("id"));
            std::string result = "\"0x10\"";
            if (method == "eth_chainId") result = "\"0x7a69\"";
            if (method == "eth_syncing") result = "false";
            if (method == "eth_getBlockByNumber")  // the probe's check of the head it claims
                result = R"({"number":"0x10","hash":"0x)" + std::string(64, '1') +
                         R"(","parentHash":"0x)" + std::string(64, '0') + "\"}";
            if (method != "eth_call") {
                test::RawServer::write(
                    s, test::RawServer::ok_response(R"({"jsonrpc":"2.0","id":)" + id +
                                                    R"(,"result":)" + result + "}"));
                continue;
            }
            const std::string body = R"({"jsonrpc":"2.0","id":)" + id + R"(,"result":"0x)" +
                                     std::string(200'000, 'c') + "\"}";
            const std::string whole = test::RawServer::ok_response(body);
            const std::size_t head = whole.find("\r\n\r\n") + 4;
            test::RawServer::write(s, whole.substr(0, head + 1000));
            std::this_thread::sleep_for(std::chrono::milliseconds(300));
            test::RawServer::write(s, whole.substr(head + 1000));
        }
    });
    FakeUpstream quick(31337, test::on("eth_call", FakeReply::ok("\"0x01\"")));
    start({"http://127.0.0.1:" + std::to_string(slow.port()), quick.url()}, [](config::Config& c) {
        test::first_is_primary(c);
        c.chains[0].failover.hedge_after = std::chrono::milliseconds(30);
        for (auto& u : c.chains[0].upstreams) u.max_batch_size = 0;
        c.server.max_batch_response_bytes = 1'000'000;
    });
    wait_ready();
    auto r = post(
        R"([{"jsonrpc":"2.0","id":1,"method":"eth_call","params":[{"to":"0x0000000000000000000000000000000000000001"},"latest"]},{"jsonrpc":"2.0","id":2,"method":"eth_chainId"}])");
    EXPECT_THAT(r.body, HasSubstr(R"("result":"0x01")"));
    EXPECT_THAT(http_metrics(), HasSubstr(R"(gateway_hedged_requests_total{chain="devnet"} 1)"));
    std::this_thread::sleep_for(std::chrono::milliseconds(500));  // the loser's answer is in
    EXPECT_EQ(post(R"({"jsonrpc":"2.0","id":1,"method":"eth_chainId"})").status, 200u);
    EXPECT_THAT(http_metrics(), Not(HasSubstr(R"(kind="bad_response",upstream="node-0")")));
    EXPECT_EQ(upstream("node-0").at("consecutive_failures"), 0);
}

TEST_F(AuthGatewayTest, IdempotencyKeysBelongToTheirClient) {
    FakeUpstream node;
    start_with_auth(node.url());
    const std::vector<std::pair<std::string, std::string>> key{{"Idempotency-Key", "order-7"}};
    const auto id_of = [&](const std::string& client_key) {
        return std::string(
            result_of(call(managed_send(kSender0), client_key, "/", key)).at("id").as_string());
    };
    const std::string backend = id_of(kBackendKey);
    EXPECT_EQ(id_of(kBackendKey), backend) << "the same client and key: the same transaction";
    const std::string ops = id_of(kOpsKey);
    EXPECT_NE(ops, backend) << "another client's key of the same name is another transaction";
}

// A key is printable ASCII: a tab (the one control character HTTP lets through in a header's
// value) or a byte past ASCII (which a PostgreSQL journal's text would refuse) is the client's
// error, said as one.
TEST_F(AuthGatewayTest, AnIdempotencyKeyThatIsNotPrintableAsciiIsRefused) {
    FakeUpstream node;
    start_with_auth(node.url());
    for (const std::string& bad : {std::string("order-\xff"), std::string("order\t7")}) {
        const HttpReply r =
            call(managed_send(kSender0), kBackendKey, "/", {{"Idempotency-Key", bad}});
        EXPECT_EQ(error_of(r).at("code"), -32602) << r.body;
        EXPECT_THAT(message_of(r), HasSubstr("not printable ASCII"));
    }
    EXPECT_TRUE(result_of(call(managed_send(kSender0), kBackendKey, "/",
                               {{"Idempotency-Key", "order-8 (retry)"}}))
                    .is_object());
}

TEST_F(AuthGatewayTest, OverItsRateAClientGets429WithRetryAfterAndABatchCountsEachCall) {
    FakeUpstream node;
    start_with_auth(node.url());
    const std::string one = R"({"jsonrpc":"2.0","id":1,"method":"eth_chainId"})";
    const std::string two = "[" + one + "," + one + "]";
    const std::string three = "[" + one + "," + one + "," + one + "]";
    // The indexer may make 2 calls a second: a batch of three is more than it may ever send at
    // once. Refused whole, saying how many calls a batch may have; nothing taken, no debt.
    HttpReply big = call(three, kIndexerKey);
    EXPECT_EQ(big.status, 429u);
    EXPECT_EQ(error_of(big).at("code"), -32005);
    EXPECT_THAT(message_of(big), HasSubstr("client indexer"));
    EXPECT_THAT(message_of(big), HasSubstr("at most 2 calls per batch"));
    EXPECT_EQ(big.header("retry-after"), "") << "waiting would not help";
    // Its whole burst still goes, and then the next call waits.
    EXPECT_EQ(call(two, kIndexerKey).status, 200u);
    HttpReply r = call(one, kIndexerKey);
    EXPECT_EQ(r.status, 429u);
    EXPECT_EQ(error_of(r).at("code"), -32005);
    EXPECT_THAT(message_of(r), HasSubstr("client indexer is over its calls per second"));
    EXPECT_EQ(r.header("retry-after"), "1");
    // A client without a limit is not held back.
    for (int i = 0; i < 20; ++i) ASSERT_EQ(call(three, kBackendKey).status, 200u);
}

TEST_F(AuthGatewayTest, AThrottledRequestIsCountedOnceAsAuthenticatedAndItsCallsAsRateLimited) {
    FakeUpstream node;
    start_with_auth(node.url());
    const std::string one = R"({"jsonrpc":"2.0","id":1,"method":"eth_chainId"})";
    const std::string three = "[" + one + "," + one + "," + one + "]";
    EXPECT_EQ(call(three, kIndexerKey).status, 429u);  // over the burst: 3 calls refused
    EXPECT_EQ(call(one, kIndexerKey).status, 200u);
    EXPECT_EQ(call(one, kIndexerKey).status, 200u);
    EXPECT_EQ(call(one, kIndexerKey).status, 429u);  // over the rate: 1 call refused
    const std::string metrics = http_metrics();
    // Four requests, four credential checks, each counted once.
    EXPECT_THAT(metrics,
                HasSubstr(R"(gateway_auth_requests_total{listener="rpc",outcome="ok"} 4)"));
    EXPECT_THAT(
        metrics,
        Not(HasSubstr(R"(gateway_auth_requests_total{listener="rpc",outcome="rate_limited"})")));
    EXPECT_THAT(
        metrics,
        HasSubstr(R"(gateway_client_requests_total{client="indexer",outcome="rate_limited"} 4)"));
    EXPECT_THAT(metrics,
                HasSubstr(R"(gateway_client_requests_total{client="indexer",outcome="ok"} 2)"));
}

TEST_F(AuthGatewayTest, ATokenInTheUrlPathIsRefusedWithAWordAboutTheHeader) {
    FakeUpstream node;
    start_with_auth(node.url());
    const std::string body = R"({"jsonrpc":"2.0","id":1,"method":"eth_chainId"})";
    // The shape of a JWT (header.payload.signature, base64url): tokens go in the header only.
    const std::string token =
        "eyJhbGciOiJSUzI1NiIsImtpZCI6InJzYS0xIn0.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl";
    HttpReply r = call(body, "", "/devnet/" + token);
    EXPECT_EQ(r.status, 401u);
    EXPECT_EQ(error_of(r).at("code"), 4100);
    EXPECT_THAT(message_of(r), HasSubstr("not accepted in the URL path"));
    EXPECT_THAT(message_of(r), HasSubstr("Authorization: Bearer"));
    EXPECT_THAT(r.body, Not(HasSubstr(token)));
    // An API key in the path still works.
    EXPECT_EQ(call(body, "", "/devnet/" + kBackendKey).status, 200u);
}

TEST_F(AuthGatewayTest, ARefusedFromIsShownAsTheClientSentItNeverCutToAnAddress) {
    FakeUpstream node;
    start_with_auth(node.url());
    // The backend's own sender with junk after it: refused, and not named as the sender itself
    // (which the backend may use).
    HttpReply junk = call(managed_send(kSender0 + "zzzz"), kBackendKey);
    EXPECT_EQ(error_of(junk).at("code"), 4100);
    EXPECT_THAT(message_of(junk), HasSubstr(kSender0 + "zzzz"));
    EXPECT_THAT(message_of(junk), HasSubstr("not an address"));
    // Padded to 32 bytes: shown whole, not as its first 20 bytes.
    const std::string padded = "0x000000000000000000000000" + kSender0.substr(2);
    HttpReply wide = call(managed_send(padded), kBackendKey);
    EXPECT_EQ(error_of(wide).at("code"), 4100);
    EXPECT_THAT(message_of(wide), HasSubstr(padded));
    EXPECT_THAT(message_of(wide), HasSubstr("not an address"));
    // Anything longer is cut at 80 characters, and says so.
    const std::string long_from = "0x" + std::string(200, 'a');
    HttpReply long_one = call(managed_send(long_from), kBackendKey);
    EXPECT_THAT(message_of(long_one), HasSubstr(long_from.substr(0, 80) + "\u2026"));
    EXPECT_THAT(message_of(long_one), Not(HasSubstr(long_from.substr(0, 81))));
    // Another's address is named as it is.
    EXPECT_THAT(message_of(call(managed_send(kSender1), kBackendKey)),
                HasSubstr("client backend may not send from " + kSender1 + " (not in its senders"));
}

TEST_F(AuthGatewayTest, TheAdminApiNeedsItsTokenAndProbesDoNot) {
    FakeUpstream node;
    start_with_auth(node.url());
    EXPECT_EQ(admin("GET", "/admin/upstreams", "").status, 401u);
    EXPECT_EQ(admin("GET", "/admin/upstreams", kBackendKey).status, 401u);
    EXPECT_EQ(admin("POST", "/admin/upstreams/node-0/cordon", "").status, 401u);
    EXPECT_EQ(admin("GET", "/admin/upstreams", kAdminToken).status, 200u);
    EXPECT_EQ(admin("GET", "/healthz", "").status, 200u);
    EXPECT_EQ(admin("GET", "/readyz", "").status, 200u);
    EXPECT_EQ(admin("GET", "/metrics", "").status, 200u);
    const std::string metrics = http_metrics();
    EXPECT_THAT(metrics,
                HasSubstr(R"(gateway_auth_requests_total{listener="admin",outcome="missing"} 2)"));
    EXPECT_THAT(metrics,
                HasSubstr(R"(gateway_auth_requests_total{listener="admin",outcome="invalid"} 1)"));
}

TEST_F(AuthGatewayTest, AStrangersBodyIsNeverReadByTheAdminListenerEither) {
    FakeUpstream node;
    start_with_auth(node.url());
    // A head announcing a body within the admin listener's 64 KB, without the token: refused on
    // the head at once; the body it announces is never awaited.
    HttpConnection c(admin_port(), 3s);
    c.send_raw(
        "POST /admin/upstreams/node-0/cordon HTTP/1.1\r\nHost: localhost\r\n"
        "Content-Type: application/json\r\nContent-Length: 60000\r\n\r\n{");
    const std::string answer = c.read_until_close();
    EXPECT_THAT(answer, ::testing::StartsWith("HTTP/1.1 401"));
    EXPECT_THAT(answer, HasSubstr("WWW-Authenticate: Bearer"));
    EXPECT_THAT(answer, HasSubstr("Connection: close"));
    const std::string refusal =
        R"x({"error":"the admin API needs Authorization: Bearer <token> (auth.admin)"})x";
    EXPECT_THAT(answer, HasSubstr(refusal));
    // The operator, with a body, is served; each request counted once.
    HttpConnection op(admin_port());
    EXPECT_EQ(op.request("POST", "/admin/upstreams/node-0/uncordon", "{}",
                         {{"Authorization", "Bearer " + kAdminToken}})
                  .status,
              200u);
    const std::string metrics = http_metrics();
    EXPECT_THAT(metrics,
                HasSubstr(R"(gateway_auth_requests_total{listener="admin",outcome="missing"} 1)"));
    EXPECT_THAT(metrics,
                HasSubstr(R"(gateway_auth_requests_total{listener="admin",outcome="ok"} 1)"));
}

TEST_F(GatewayTest, NodeSigningAndSendsAroundTheJournalAreNeverForwarded) {
    FakeUpstream node(31337,
                      [](const std::string& m, const json::value&) -> std::optional<FakeReply> {
                          if (m.rfind("eth_sign", 0) == 0 || m == "personal_sign")
                              return FakeReply::ok("\"0xsig\"");
                          return std::nullopt;
                      });
    // Even with the deny list emptied by the operator.
    start({node.url()}, [](config::Config& c) { c.chains[0].methods.deny.clear(); });
    wait_ready();
    for (const char* m : {"eth_sign",
                          "eth_signTransaction",
                          "eth_signTypedData_v4",
                          "personal_sign",
                          "eth_sendRawTransactionConditional",
                          "eth_sendPrivateTransaction",
                          "eth_sendBundle",
                          "eth_sendUnsignedTransaction",
                          "personal_sendTransaction",
                          "personal_unlockAccount",
                          "wallet_sendCalls",
                          "anvil_impersonateAccount",
                          "hardhat_impersonateAccount",
                          "anvil_autoImpersonateAccount",
                          "eth_sendPrivateRawTransaction",
                          "eth_cancelPrivateTransaction",
                          "mev_sendBundle",
                          "eth_signTypedData",
                          "eth_signTypedData_v1",
                          "eth_signTypedData_v3",
                          "eth_sendMegabundle",
                          "eth_cancelBundle",
                          "eth_sendUserOperation",
                          "flashbots_submitBundle",
                          "eth_callBundle"}) {
        auto r = post(fmt::format(R"({{"jsonrpc":"2.0","id":1,"method":"{}","params":[]}})", m));
        EXPECT_EQ(error_of(r).at("code"), -32601) << m;
        EXPECT_THAT(message_of(r), HasSubstr("is not served")) << m;
    }
    EXPECT_EQ(node.forwarded_calls(), 0u);
}

TEST_F(GatewayTest, ADevNodesStateChangesAreDeniedByDefaultAndAnOperatorMayAllowThem) {
    FakeUpstream node(31337, test::on("anvil_setBalance", FakeReply::ok("null")));
    const std::string body = R"({"jsonrpc":"2.0","id":1,"method":"anvil_setBalance","params":[")" +
                             kSender0 + R"(","0x56bc75e2d63100000"]})";
    start({node.url()});
    wait_ready();
    for (const char* m : {"anvil_setBalance", "anvil_setNonce", "anvil_setCode",
                          "hardhat_setBalance", "evm_increaseTime", "evm_mine"}) {
        auto r = post(fmt::format(R"({{"jsonrpc":"2.0","id":1,"method":"{}","params":[]}})", m));
        EXPECT_EQ(error_of(r).at("code"), -32601) << m;
        EXPECT_THAT(message_of(r), HasSubstr("methods.deny")) << m;
    }
    EXPECT_EQ(node.calls("anvil_setBalance"), 0u);
    TearDown();
    gw.reset();
    // Setting methods.deny replaces the default: a dev chain may let them through.
    start({node.url()}, [](config::Config& c) { c.chains[0].methods.deny = {"admin_*"}; });
    wait_ready();
    auto r = post(body);
    EXPECT_TRUE(result_of(r).is_null()) << r.body;
    EXPECT_EQ(node.calls("anvil_setBalance"), 1u);
}

TEST_F(GatewayTest, SendRawTransactionSyncIsJournaledAndAnswersTheReceipt) {
    std::atomic<int> receipt_asks{0};
    FakeUpstream node(
        31337, [&](const std::string& m, const json::value& req) -> std::optional<FakeReply> {
            if (m == "eth_sendRawTransaction")
                return FakeReply::ok("\"0x00\"");  // the hash is ours
            if (m == "eth_getTransactionReceipt") {
                if (++receipt_asks < 3) return FakeReply::ok("null");
                return FakeReply::ok(fmt::format(R"({{"transactionHash":{},"status":"0x1"}})",
                                                 json::serialize(req.at("params").at(0))));
            }
            return std::nullopt;
        });
    start({node.url()});
    wait_ready();
    const std::string raw = test::sign_legacy(test::kKey0, {.nonce = 0});
    auto r = post(fmt::format(
        R"({{"jsonrpc":"2.0","id":1,"method":"eth_sendRawTransactionSync","params":["{}"]}})",
        raw));
    const json::value receipt = result_of(r);
    EXPECT_EQ(receipt.at("status"), "0x1") << r.body;
    const std::string hash(receipt.at("transactionHash").as_string());
    // It went through the journal.
    auto rec = post(fmt::format(
        R"({{"jsonrpc":"2.0","id":1,"method":"gateway_getTransaction","params":["{}"]}})", hash));
    EXPECT_EQ(result_of(rec).at("hash"), hash.c_str());
    // Another chain's transaction is refused as by eth_sendRawTransaction; nothing is sent.
    const std::size_t sent = node.calls("eth_sendRawTransaction");
    r = post(fmt::format(
        R"({{"jsonrpc":"2.0","id":2,"method":"eth_sendRawTransactionSync","params":["{}"]}})",
        test::sign_legacy(test::kKey1, {.chain_id = 1})));
    EXPECT_EQ(error_of(r).at("code"), -32602);
    EXPECT_EQ(node.calls("eth_sendRawTransaction"), sent);
    // Not mined within the client's timeout: error 4 with the hash.
    receipt_asks = -1000;
    r = post(fmt::format(
        R"({{"jsonrpc":"2.0","id":3,"method":"eth_sendRawTransactionSync","params":["{}", 300]}})",
        test::sign_legacy(test::kKey0, {.nonce = 1})));
    EXPECT_EQ(error_of(r).at("code"), 4) << r.body;
    EXPECT_TRUE(error_of(r).at("data").is_string());
}

}  // namespace
}  // namespace gateway
