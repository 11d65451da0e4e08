// What a reload applies while serving and what waits for a restart (config::plan_reload).

#include "gateway/config/reload.hpp"

#include "support/config_parse.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace gateway::config {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAre;

const std::string kBase = R"(
server:
  listen: 127.0.0.1:8545
auth:
  admin: {token_env: ADMIN}
  clients:
    - {id: app, key_env: APP_KEY, senders: ["0x00000000000000000000000000000000000000aa"]}
signers:
  - {id: hot, type: remote, url: "http://127.0.0.1:9000", addresses: ["0x00000000000000000000000000000000000000aa"]}
chains:
  - name: devnet
    chain_id: 31337
    accounts:
      - {address: "0x00000000000000000000000000000000000000aa", signer: hot}
    policy: {max_value_wei: "1000"}
    upstreams:
      - {id: node-a, url: "http://127.0.0.1:18545"}
  - name: other
    chain_id: 5
    upstreams:
      - {id: node-b, url: "http://127.0.0.1:18546"}
)";

const std::map<std::string, std::string> kEnv = {{"ADMIN", "admin-token-0123456789"},
                                                 {"APP_KEY", "app-key-0123456789abcdef"}};

Config parsed(const std::string& yaml, std::map<std::string, std::string> env = kEnv) {
    return test::parse(yaml, std::move(env));
}

std::string replaced(std::string text, const std::string& from, const std::string& to) {
    const auto at = text.find(from);
    EXPECT_NE(at, std::string::npos) << from;
    if (at != std::string::npos) text.replace(at, from.size(), to);
    return text;
}

TEST(ConfigReload, TheSameConfigChangesNothing) {
    const ReloadPlan plan = plan_reload(parsed(kBase), parsed(kBase));
    EXPECT_THAT(plan.applied, IsEmpty());
    EXPECT_THAT(plan.restart, IsEmpty());
    EXPECT_TRUE(plan.result == parsed(kBase));
}

TEST(ConfigReload, UpstreamsMethodsPoliciesKeysAndTheAdminTokenAreApplied) {
    std::string next = replaced(kBase, "{id: node-a, url: \"http://127.0.0.1:18545\"}",
                                "{id: node-c, url: \"http://127.0.0.1:18547\", max_rps: 5}");
    next = replaced(next, "    policy: {max_value_wei: \"1000\"}\n",
                    "    policy: {max_value_wei: \"2000\"}\n    methods: {deny: [debug_*]}\n");
    next = replaced(next, "senders: [", "max_rps: 3, senders: [");
    auto env = kEnv;
    env["ADMIN"] = "rotated-admin-token-0123456789";
    const Config running = parsed(kBase);
    const ReloadPlan plan = plan_reload(running, parsed(next + "log: {level: debug}\n", env));
    EXPECT_THAT(
        plan.applied,
        UnorderedElementsAre("chains[devnet].upstreams", "chains[devnet].methods",
                             "chains[devnet].policy", "auth.clients", "auth.admin", "log.level"));
    EXPECT_THAT(plan.restart, IsEmpty());
    ASSERT_EQ(plan.result.chains[0].upstreams.size(), 1u);
    EXPECT_EQ(plan.result.chains[0].upstreams[0].id, "node-c");
    EXPECT_EQ(plan.result.chains[0].policy->max_value_wei, "2000");
    EXPECT_EQ(plan.result.auth.clients[0].max_rps, 3);
    EXPECT_EQ(plan.result.auth.admin_token, "rotated-admin-token-0123456789");
    EXPECT_EQ(plan.result.log.level, "debug");
    EXPECT_TRUE(plan.result.chains[1] == running.chains[1]);
    // The same, as the gateway acts on it.
    ASSERT_EQ(plan.chains.size(), 2u);
    EXPECT_TRUE(plan.chains[0].upstreams && plan.chains[0].methods && plan.chains[0].policies);
    EXPECT_FALSE(plan.chains[1].upstreams || plan.chains[1].methods || plan.chains[1].policies);
    EXPECT_TRUE(plan.clients && plan.admin_token && plan.log_level);
}

TEST(ConfigReload, WhatNeedsARestartIsNamedAndKeepsItsRunningValue) {
    std::string next = replaced(kBase, "listen: 127.0.0.1:8545", "listen: 127.0.0.1:8546");
    next = replaced(next,
                    "  - name: other\n    chain_id: 5\n    upstreams:\n      - {id: node-b, "
                    "url: \"http://127.0.0.1:18546\"}\n",
                    "  - name: third\n    chain_id: 7\n    upstreams:\n      - {id: node-b, url: "
                    "\"http://127.0.0.1:18546\"}\n");
    next = replaced(next, "    chain_id: 31337\n",
                    "    chain_id: 31337\n    tx: {confirmations: 3}\n");
    const Config running = parsed(kBase);
    const ReloadPlan plan =
        plan_reload(running, parsed(next + "store: {path: /tmp/elsewhere.db}\n"));
    EXPECT_THAT(plan.applied, IsEmpty());
    EXPECT_THAT(plan.restart,
                UnorderedElementsAre("server.listen", "store", "chains[devnet].tx",
                                     "chains[other] (removed)", "chains[third] (added)"));
    EXPECT_TRUE(plan.result == running);
}

TEST(ConfigReload, APolicyOfChangedAccountsWaitsWithThem) {
    std::string next = replaced(kBase,
                                "{address: \"0x00000000000000000000000000000000000000aa\", "
                                "signer: hot}",
                                "{address: \"0x00000000000000000000000000000000000000aa\", "
                                "signer: hot, max_fee_per_gas_gwei: 7}");
    next = replaced(next, "max_value_wei: \"1000\"", "max_value_wei: \"5\"");
    const ReloadPlan plan = plan_reload(parsed(kBase), parsed(next));
    EXPECT_THAT(plan.applied, IsEmpty());
    EXPECT_THAT(plan.restart, ElementsAre("chains[devnet].accounts", "chains[devnet].policy"));
}

TEST(ConfigReload, TurningAuthenticationOnOrOffWaits) {
    std::string next = replaced(kBase,
                                "  clients:\n    - {id: app, key_env: APP_KEY, senders: "
                                "[\"0x00000000000000000000000000000000000000aa\"]}\n",
                                "");
    const ReloadPlan plan = plan_reload(parsed(kBase), parsed(next));
    EXPECT_THAT(plan.applied, IsEmpty());
    EXPECT_THAT(plan.restart, ElementsAre("auth.clients (authentication turned off)"));
}

TEST(ConfigReload, TheAdminTokenIsRotatedAtOnceButRemovedOnlyByARestart) {
    const std::string without = replaced(kBase, "  admin: {token_env: ADMIN}\n", "");
    const ReloadPlan removed = plan_reload(parsed(kBase), parsed(without));
    EXPECT_THAT(removed.applied, IsEmpty());
    EXPECT_THAT(removed.restart, ElementsAre("auth.admin (the token removed)"));
    EXPECT_EQ(removed.result.auth.admin_token, "admin-token-0123456789");
    // Given where there was none: at once.
    const ReloadPlan added = plan_reload(parsed(without), parsed(kBase));
    EXPECT_THAT(added.applied, ElementsAre("auth.admin"));
}

TEST(ConfigReload, AnAddedAccountWithThePoliciesUnchangedNamesOnlyTheAccounts) {
    std::string next = replaced(
        kBase, "      - {address: \"0x00000000000000000000000000000000000000aa\", signer: hot}\n",
        "      - {address: \"0x00000000000000000000000000000000000000aa\", signer: hot}\n"
        "      - {address: \"0x00000000000000000000000000000000000000bb\", signer: hot}\n");
    next = replaced(next, "addresses: [\"0x00000000000000000000000000000000000000aa\"]}",
                    "addresses: [\"0x00000000000000000000000000000000000000aa\", "
                    "\"0x00000000000000000000000000000000000000bb\"]}");
    const ReloadPlan plan = plan_reload(parsed(kBase), parsed(next));
    EXPECT_THAT(plan.restart, UnorderedElementsAre("signers", "chains[devnet].accounts"));
}

}  // namespace
}  // namespace gateway::config
