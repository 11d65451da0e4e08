#include "gateway/rpc/methods.hpp"

#include <gtest/gtest.h>

namespace gateway::rpc {
namespace {

TEST(Methods, WritesAreKnownAsWrites) {
    EXPECT_EQ(method_kind("eth_sendRawTransaction"), MethodKind::write);
    EXPECT_EQ(method_kind("eth_sendTransaction"), MethodKind::write);
    EXPECT_EQ(method_kind("eth_sendBundle"), MethodKind::write);
}

TEST(Methods, ReadsLocalsAndUnknowns) {
    EXPECT_EQ(method_kind("eth_call"), MethodKind::read);
    EXPECT_EQ(method_kind("eth_getLogs"), MethodKind::read);
    EXPECT_EQ(method_kind("eth_chainId"), MethodKind::local);
    // What the gateway does not know may change state: never sent twice.
    EXPECT_EQ(method_kind("anvil_mine"), MethodKind::write);
    EXPECT_EQ(method_kind("some_vendorMethod"), MethodKind::write);
}

TEST(Methods, LabelsAreBounded) {
    EXPECT_EQ(method_label("eth_blockNumber"), "eth_blockNumber");
    EXPECT_EQ(method_label("web3_clientVersion"), "web3_clientVersion");
    EXPECT_EQ(method_label("eth_blockNumberX"), "other");
    EXPECT_EQ(method_label(""), "other");
    EXPECT_EQ(method_label(std::string(10000, 'a')), "other");
}

}  // namespace
}  // namespace gateway::rpc
