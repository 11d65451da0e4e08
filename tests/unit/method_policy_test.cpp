// The method allow and deny lists: the default denials and which rule wins.

#include "gateway/rpc/method_policy.hpp"

#include <gtest/gtest.h>

namespace gateway::rpc {
namespace {

TEST(MethodPolicy, DefaultsDenyTheDangerousNamespaces) {
    MethodPolicy p{config::MethodsConfig{}};
    EXPECT_FALSE(p.refusal("eth_call"));
    EXPECT_FALSE(p.refusal("trace_block"));
    // A dev node's state changes too: any client could mint itself money.
    for (const char* m :
         {"admin_addPeer", "debug_traceTransaction", "personal_unlockAccount", "miner_start",
          "engine_newPayloadV3", "txpool_content", "anvil_setBalance", "anvil_mine",
          "hardhat_setCode", "evm_increaseTime"}) {
        auto r = p.refusal(m);
        ASSERT_TRUE(r) << m;
        EXPECT_NE(r->find("methods.deny"), std::string::npos) << *r;
    }
    EXPECT_NE(p.refusal("debug_traceCall")->find("debug_*"), std::string::npos);
}

TEST(MethodPolicy, ExactBeatsPrefixLongerBeatsShorterDenyBeatsAllow) {
    config::MethodsConfig c;
    c.allow = {"debug_traceTransaction", "trace_*"};
    c.deny = {"debug_*", "trace_replay*", "eth_*", "eth_getLogs"};
    MethodPolicy p{c};
    EXPECT_FALSE(p.refusal("debug_traceTransaction"));  // exact allow beats the deny prefix
    EXPECT_TRUE(p.refusal("debug_traceCall"));
    EXPECT_FALSE(p.refusal("trace_block"));
    EXPECT_TRUE(p.refusal("trace_replayTransaction"));  // the longer prefix denies
    EXPECT_TRUE(p.refusal("eth_call"));
    EXPECT_TRUE(p.refusal("net_version")) << "with an allow list, the rest is refused";
    EXPECT_NE(p.refusal("net_version")->find("not in methods.allow"), std::string::npos);

    config::MethodsConfig open;
    open.deny = {};
    EXPECT_FALSE(MethodPolicy{open}.refusal("debug_traceCall"));
    config::MethodsConfig same;
    same.allow = {"x_*"};
    same.deny = {"x_*"};
    EXPECT_TRUE(MethodPolicy{same}.refusal("x_y")) << "deny wins a tie";
}

}  // namespace
}  // namespace gateway::rpc
