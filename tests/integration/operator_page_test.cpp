// The operator page (/ui/) in headless Chromium against the real binary and anvil (catalog row
// C2, "pending approval in the operator interface"): tests/js/operator_page.cjs, driven by
// playwright-core with Debian's Chromium, approves a held transaction from the page and follows it
// until it is mined, and retries a dead letter. Its screenshots of each view are left in
// <build>/ui-screenshots/.

#include "integration/devnet.hpp"
#include "support/fake_upstream.hpp"
#include "support/http_test_client.hpp"
#include "support/json_values.hpp"
#include "support/tcp_forwarder.hpp"
#include "support/tx_signer.hpp"

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <cstdlib>
#include <filesystem>
#include <iostream>

namespace gateway::test {
namespace {

using ::testing::HasSubstr;
namespace json = boost::json;

const std::string kHotKey = "0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318";
// Never funded until the test says so: its transaction becomes a dead letter.
const std::string kPoorKey = "0x1111111111111111111111111111111111111111111111111111111111111111";
const std::string kPoorKeyEnv = "GATEWAY_TEST_POOR_KEY";
const std::string kAdminToken = "operator-page-admin-token-0123456789";
// An idempotency key that is markup: the page must show it as text.
const std::string kEvilKey = "<img src=x onerror=alert(1)>";

class OperatorPage : public DevnetTest {};

TEST_F(OperatorPage, C2_AHeldTransactionIsApprovedFromThePageAndMined) {
    if (!std::filesystem::exists("/usr/bin/chromium"))
        GTEST_SKIP() << "no /usr/bin/chromium (scripts/install-deps.sh installs it)";
    start_devnet("gateway-operator-page");
    TcpForwarder node(anvil->port());
    const std::string hot = address_of(kHotKey);
    const std::string poor = address_of(kPoorKey);
    ::setenv(kPoorKeyEnv.c_str(), kPoorKey.c_str(), 1);
    write_file(dir + "/hot.key", kHotKey + "\n");
    write_file(dir + "/admin.token", kAdminToken + "\n");
    http_post(anvil->port(), "/",
              rpc_body("anvil_setBalance", "[\"" + hot + "\",\"0x56bc75e2d63100000\"]"));
    run_gateway(std::make_unique<GatewayProcess>(
        dir,
        fmt::format("  - name: devnet\n"
                    "    chain_id: 31337\n"
                    "    health: {{interval_ms: 200}}\n"
                    "    tx: {{confirmations: 1, poll_interval_ms: 100, retry: {{max_attempts: "
                    "3, backoff_ms: 100}}}}\n"
                    "    policy: {{max_value_wei: \"1\", approval_ttl_ms: 600000}}\n"
                    "    accounts:\n"
                    "      - {{address: \"{}\", signer: hot}}\n"
                    "      - {{address: \"{}\", signer: poor}}\n"
                    "    upstreams:\n"
                    "      - {{id: node, url: \"{}\"}}\n",
                    hot, poor, node.url()),
        "", "",
        fmt::format("signers:\n  - {{id: hot, type: local, key_file: \"{}/hot.key\"}}\n"
                    "  - {{id: poor, type: local, key_env: {}}}\n"
                    "auth:\n  admin: {{token_file: \"{}/admin.token\"}}\n",
                    dir, kPoorKeyEnv, dir)));
    ASSERT_TRUE(gw->wait_ready()) << gw->process().output();

    // Two wei, over the policy's one: held for an operator, with a key that is markup.
    HttpConnection rpc(gw->port());
    const HttpReply sent = rpc.request(
        "POST", "/",
        rpc_body("gateway_sendTransaction",
                 fmt::format(R"([{{"from":"{}","to":"0x000000000000000000000000000000000000dEaD",)"
                             R"("value":"0x2"}}])",
                             hot)),
        {{"Idempotency-Key", kEvilKey}});
    const json::value v = json::parse(sent.body);
    ASSERT_TRUE(v.as_object().contains("result")) << sent.body;
    const std::string id = str(v.at("result").at("id"));
    EXPECT_EQ(str(v.at("result").at("state")), "PENDING_APPROVAL") << sent.body;
    // One wei from a sender without funds: three refusals make a dead letter. Funded then, so
    // that the page's retry gets it mined.
    const json::value dead = json::parse(
        rpc.request("POST", "/",
                    rpc_body("gateway_sendTransaction",
                             fmt::format(R"([{{"from":"{}","to":"0x000000000000000000000000000000)"
                                         R"(000000dEaD","value":"0x1"}}])",
                                         poor)))
            .body);
    ASSERT_TRUE(dead.as_object().contains("result")) << str(dead);
    const std::string dead_id = str(dead.at("result").at("id"));
    const auto state_of = [&](const std::string& id) {
        const json::value d = json::parse(
            rpc.request("POST", "/", rpc_body("gateway_getTransaction", "[\"" + id + "\"]")).body);
        return d.at("result").is_object() ? str(d.at("result").at("state")) : "";
    };
    ASSERT_TRUE(
        wait_until([&] { return state_of(dead_id) == "DEAD_LETTER"; }, std::chrono::seconds(30)))
        << state_of(dead_id);
    http_post(anvil->port(), "/",
              rpc_body("anvil_setBalance", "[\"" + poor + "\",\"0x56bc75e2d63100000\"]"));
    // A stream made through the admin API follows these transactions' changes to a webhook.
    FakeUpstream hook;
    hook.set_script([](const std::string&, const json::value&) -> std::optional<FakeReply> {
        return FakeReply::http(200, "{}");
    });
    HttpConnection admin(gw->admin_port());
    const HttpReply made = admin.request(
        "POST", "/admin/streams",
        fmt::format(R"({{"id":"page-transactions","chain":"devnet","kind":"transactions",)"
                    R"("from_block":0,"webhook":{{"url":"{}/hook"}}}})",
                    hook.url()),
        {{"Authorization", std::string("Bearer ") + kAdminToken}});
    ASSERT_EQ(made.status, 201u) << made.body;
    // The page's files need no token; the data does.
    EXPECT_EQ(http_get(gw->admin_port(), "/ui/").status, 200u);
    EXPECT_EQ(http_get(gw->admin_port(), "/admin/approvals").status, 401u);

    const std::string shots = std::string(GATEWAY_BUILD_DIR) + "/ui-screenshots";
    std::filesystem::remove_all(shots);
    const auto started = std::chrono::steady_clock::now();
    CommandResult r =
        run_command({"/usr/bin/env", "NODE_PATH=" + std::string(GATEWAY_TOOLS_BIN) + "/..", "node",
                     std::string(GATEWAY_SOURCE_DIR) + "/tests/js/operator_page.cjs",
                     fmt::format("http://127.0.0.1:{}", gw->admin_port()), kAdminToken, id,
                     kEvilKey, dead_id, shots},
                    std::chrono::seconds(150));
    const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::steady_clock::now() - started);
    ASSERT_EQ(r.exit_code, 0) << r.err << "\n" << r.out;
    std::cout << "operator page in Chromium: " << took.count() << " ms\n";
    const json::value page = json::parse(r.out);
    EXPECT_THAT(str(page.at("heldRow")), HasSubstr("max_value_wei"));
    EXPECT_THAT(str(page.at("heldRow")), HasSubstr(kEvilKey));
    EXPECT_EQ(page.at("imagesAfterApprovals"), 0);
    EXPECT_EQ(page.at("imagesAfterSearch"), 0);
    EXPECT_THAT(str(page.at("approvalMessage")),
                HasSubstr(id + " approved by playwright-operator"));
    EXPECT_THAT(str(page.at("minedRow")), HasSubstr("COMPLETED"));
    EXPECT_THAT(str(page.at("found")), HasSubstr("approved by playwright-operator"));
    EXPECT_THAT(str(page.at("deadRow")), HasSubstr("retries exhausted"));
    EXPECT_THAT(str(page.at("cancelMessage")), HasSubstr("is DEAD_LETTER already"));
    EXPECT_THAT(str(page.at("retryMessage")), HasSubstr(dead_id + " retry: now QUEUED"));
    EXPECT_THAT(str(page.at("banner")), HasSubstr("Stale: the last refresh failed"));
    EXPECT_TRUE(page.at("dialogs").as_array().empty());
    EXPECT_TRUE(page.at("policyViolations").as_array().empty());
    EXPECT_THAT(str(page.at("contentSecurityPolicy")), HasSubstr("default-src 'self'"));
    EXPECT_THAT(str(page.at("streams")), HasSubstr("page-transactions"));
    // What the stream delivered: the held transaction's changes among them.
    bool held_seen = false;
    for (const auto& [body, header] : hook.raw_requests())
        held_seen = held_seen || body.find("PENDING_APPROVAL") != std::string::npos;
    EXPECT_TRUE(held_seen);
    // One screenshot per view, where people can look at them.
    const json::array& files = page.at("screenshots").as_array();
    EXPECT_EQ(files.size(), 9u);
    for (const auto& f : files)
        EXPECT_GT(std::filesystem::file_size(std::string(f.as_string())), 1000u) << f;

    // What the page showed is what happened: mined, approved by the name typed in.
    const HttpReply described =
        rpc.request("POST", "/", rpc_body("gateway_getTransaction", "[\"" + id + "\"]"));
    const json::value tx = json::parse(described.body).at("result");
    EXPECT_EQ(str(tx.at("state")), "COMPLETED") << described.body;
    EXPECT_THAT(json::serialize(tx.at("history")),
                HasSubstr("approved by playwright-operator: approved from the operator page"));
    EXPECT_TRUE(
        wait_until([&] { return state_of(dead_id) == "COMPLETED"; }, std::chrono::seconds(30)))
        << "the dead letter retried from the page: " << state_of(dead_id);
}

}  // namespace
}  // namespace gateway::test
