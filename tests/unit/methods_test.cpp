// What the gateway knows of each method: writes, reads and local methods, the refused send and
// sign names, bounded labels, and the block a call needs.

#include "gateway/jsonrpc/methods.hpp"

#include <gtest/gtest.h>
#include <boost/json/parse.hpp>

namespace gateway::jsonrpc {
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

TEST(Methods, SendAndSignStyleNamesAreRefusedByDefault) {
    // Named nowhere in the gateway, yet sends or signs: refused, not forwarded as a write.
    for (const char* m :
         {"eth_sendMegabundle", "eth_cancelBundle", "eth_sendUserOperation",
          "flashbots_submitBundle", "eth_callBundle", "mev_simBundle", "eth_SendRawTransaction",
          "eth_signTypedData_v5", "eth_sendPrivateRawTransaction", "eth_cancelPrivateTransaction",
          "mev_sendBundle", "eth_signTypedData", "eth_signTypedData_v1", "eth_signTypedData_v3",
          "sendBundle", "vendor_signMessage", "debug_bundler_dumpMempool"}) {
        auto reason = unserved_reason(m);
        ASSERT_TRUE(reason) << m;
        EXPECT_NE(reason->find(std::string(m) + " is not served"), std::string::npos) << *reason;
    }
    EXPECT_NE(unserved_reason("eth_sendUserOperation")->find("eth_sendRawTransaction"),
              std::string::npos);
    EXPECT_NE(unserved_reason("eth_signTypedData_v3")->find("own accounts"), std::string::npos);
    // A client's long name is quoted shortened.
    EXPECT_LT(unserved_reason("eth_send" + std::string(10000, 'x'))->size(), 400u);
}

TEST(Methods, TheSendsTheGatewayRoutesItselfAreNotRefused) {
    for (const char* m :
         {"eth_sendRawTransaction", "eth_sendRawTransactionSync", "eth_sendTransaction",
          "eth_sendTransactionSync", "gateway_sendTransaction", "gateway_getTransaction"})
        EXPECT_FALSE(unserved_reason(m)) << m;
    // Nor reads whose names only look alike.
    for (const char* m : {"eth_call", "eth_getTransactionByHash", "net_version", "eth_syncing",
                          "txpool_content", "anvil_mine", "eth_estimateGas", "eth_subscribe"})
        EXPECT_FALSE(unserved_reason(m)) << m;
}

TEST(Methods, LabelsAreBounded) {
    EXPECT_EQ(method_label("eth_blockNumber"), "eth_blockNumber");
    EXPECT_EQ(method_label("web3_clientVersion"), "web3_clientVersion");
    EXPECT_EQ(method_label("eth_blockNumberX"), "other");
    EXPECT_EQ(method_label(""), "other");
    EXPECT_EQ(method_label(std::string(10000, 'a')), "other");
}

}  // namespace
}  // namespace gateway::jsonrpc

namespace gateway::jsonrpc {
namespace {

using Kind = BlockNeed::Kind;

BlockNeed need(std::string_view method, const char* params) {
    return block_need(method, boost::json::parse(params));
}

TEST(BlockNeeds, FromTheBlockParameter) {
    EXPECT_EQ(need("eth_blockNumber", "[]").kind, Kind::latest);
    EXPECT_EQ(need("eth_getBalance", R"(["0xaa","latest"])").kind, Kind::latest);
    EXPECT_EQ(need("eth_getBalance", R"(["0xaa"])").kind, Kind::latest);  // nodes default to latest
    EXPECT_EQ(need("eth_getBalance", R"(["0xaa","pending"])").kind, Kind::latest);
    auto n = need("eth_getBalance", R"(["0xaa","0x1b4"])");
    EXPECT_EQ(n.kind, Kind::number);
    EXPECT_EQ(n.number, 436u);
    EXPECT_EQ(need("eth_getBalance", R"(["0xaa","earliest"])").number, 0u);
    EXPECT_EQ(need("eth_call", R"([{},{"blockHash":"0xab"}])").kind, Kind::hash);
    EXPECT_EQ(need("eth_call", R"([{},{"blockNumber":"0x10"}])").number, 16u);
    EXPECT_EQ(need("eth_getStorageAt", R"(["0xaa","0x0","0x5"])").number, 5u);
    EXPECT_EQ(need("eth_getBlockByNumber", R"(["0x20",false])").number, 32u);
    EXPECT_EQ(need("eth_getTransactionReceipt", R"(["0xabc"])").kind, Kind::latest);
    EXPECT_EQ(need("net_version", "[]").kind, Kind::none);
    EXPECT_EQ(need("web3_clientVersion", "[]").kind, Kind::none);
    EXPECT_EQ(need("some_vendorMethod", "[]").kind, Kind::latest);
    EXPECT_EQ(need("eth_getBalance", R"(["0xaa",{"nonsense":1}])").kind, Kind::latest);
    EXPECT_EQ(need("eth_getBalance", R"({"named":"params"})").kind, Kind::latest);
}

TEST(BlockNeeds, LogFilters) {
    EXPECT_EQ(need("eth_getLogs", R"([{"fromBlock":"0x1","toBlock":"0x20"}])").number, 32u);
    EXPECT_EQ(need("eth_getLogs", R"([{"fromBlock":"0x1"}])").kind, Kind::latest);
    EXPECT_EQ(need("eth_getLogs", R"([{"fromBlock":"0x1","toBlock":"latest"}])").kind,
              Kind::latest);
    EXPECT_EQ(need("eth_getLogs", R"([{"blockHash":"0xab"}])").kind, Kind::hash);
    EXPECT_EQ(need("eth_getLogs", R"([])").kind, Kind::latest);
}

TEST(BlockNeeds, Quantities) {
    EXPECT_EQ(parse_quantity("0x0"), 0u);
    EXPECT_EQ(parse_quantity("0xffffffffffffffff"), 0xffffffffffffffffull);
    EXPECT_FALSE(parse_quantity("0x"));
    EXPECT_FALSE(parse_quantity("12"));
    EXPECT_FALSE(parse_quantity("0xzz"));
    EXPECT_FALSE(parse_quantity("0x10000000000000000"));
}

}  // namespace
}  // namespace gateway::jsonrpc
