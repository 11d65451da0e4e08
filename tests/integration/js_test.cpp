// A JavaScript wallet (ethers v6, pinned in tools/package.json) against the real binary in front
// of anvil: what applications actually run, end to end through the write path.

#include "integration/devnet.hpp"
#include "support/http_test_client.hpp"
#include "support/tcp_forwarder.hpp"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <thread>

namespace gateway::test {
namespace {

namespace json = boost::json;

TEST(JsClient, AnEthersWalletSendsAndReadsThroughTheGateway) {
    const std::string dir = make_temp_dir("gateway-js");
    Anvil anvil(dir);
    TcpForwarder a(anvil.port()), b(anvil.port());
    GatewayProcess gw(dir, fmt::format("  - name: devnet\n"
                                       "    chain_id: 31337\n"
                                       "    health: {{interval_ms: 200}}\n"
                                       "    tx: {{poll_interval_ms: 100}}\n"
                                       "    upstreams:\n"
                                       "      - {{id: node-a, url: \"{}\"}}\n"
                                       "      - {{id: node-b, url: \"{}\"}}\n",
                                       a.url(), b.url()));
    ASSERT_TRUE(gw.wait_ready()) << gw.process().output();

    const std::string modules = std::string(GATEWAY_TOOLS_BIN) + "/..";
    const std::string script = std::string(GATEWAY_SOURCE_DIR) + "/tests/js/ethers_wallet.cjs";
    const std::string to = "0x000000000000000000000000000000000000dEaD";
    CommandResult r =
        run_command({"/usr/bin/env", "NODE_PATH=" + modules, "node", script, gw.url(),
                     "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80", to},
                    std::chrono::seconds(90));
    ASSERT_EQ(r.exit_code, 0) << r.err << "\n--- gateway log ---\n" << gw.process().output();
    const json::value v = json::parse(r.out);
    EXPECT_EQ(v.at("chainId"), "31337");
    EXPECT_EQ(v.at("balanceBefore"), "0");
    EXPECT_EQ(v.at("balanceAfter"), "12345");
    EXPECT_EQ(v.at("status"), 1);
    EXPECT_EQ(v.at("pendingNonce").to_number<std::int64_t>(),
              v.at("nonce").to_number<std::int64_t>() + 1);

    // The gateway journaled what the wallet sent and followed it to the end.
    const std::string hash(v.at("hash").as_string());
    std::string state;
    for (int i = 0; i < 100 && state != "COMPLETED"; ++i) {
        const json::value t = json::parse(
            http_post(gw.port(), "/",
                      R"({"jsonrpc":"2.0","id":1,"method":"gateway_getTransaction","params":[")" +
                          hash + R"("]})")
                .body);
        state = t.at("result").is_null() ? "" : std::string(t.at("result").at("state").as_string());
        if (state != "COMPLETED") std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    EXPECT_EQ(state, "COMPLETED");
    // And the node has the same transaction under the same hash.
    EXPECT_EQ(cast({"tx", hash, "hash", "--rpc-url", anvil.url()}), hash);
}

TEST(JsClient, AnEthersJsonRpcSignerSendsThroughAManagedSender) {
    const std::string dir = make_temp_dir("gateway-js-managed");
    Anvil anvil(dir);
    TcpForwarder a(anvil.port());
    // A key anvil does not hold; the gateway signs with it.
    const std::string key = "0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318";
    const std::string from = "0x2c7536e3605d9c16a7a3d7b1898e529396a65c23";
    write_file(dir + "/hot.key", key + "\n");
    http_post(anvil.port(), "/",
              rpc_body("anvil_setBalance", "[\"" + from + "\",\"0x56bc75e2d63100000\"]"));
    GatewayProcess gw(
        dir,
        fmt::format("  - name: devnet\n"
                    "    chain_id: 31337\n"
                    "    health: {{interval_ms: 200}}\n"
                    "    tx: {{poll_interval_ms: 100}}\n"
                    "    accounts: [{{address: \"{}\", signer: hot}}]\n"
                    "    upstreams:\n"
                    "      - {{id: node-a, url: \"{}\"}}\n",
                    from, a.url()),
        "", "",
        fmt::format("signers:\n  - {{id: hot, type: local, key_file: \"{}/hot.key\"}}\n", dir));
    ASSERT_TRUE(gw.wait_ready()) << gw.process().output();

    const std::string modules = std::string(GATEWAY_TOOLS_BIN) + "/..";
    const std::string script = std::string(GATEWAY_SOURCE_DIR) + "/tests/js/ethers_managed.cjs";
    const std::string to = "0x000000000000000000000000000000000000dEaD";
    CommandResult r =
        run_command({"/usr/bin/env", "NODE_PATH=" + modules, "node", script, gw.url(), from, to},
                    std::chrono::seconds(90));
    ASSERT_EQ(r.exit_code, 0) << r.err << "\n--- gateway log ---\n" << gw.process().output();
    const json::value v = json::parse(r.out);
    EXPECT_EQ(v.at("accounts"), json::array({json::string(from)}));
    EXPECT_EQ(v.at("statuses"), json::array({1, 1, 1}));
    EXPECT_EQ(v.at("nonces"), json::array({0, 1, 2}));
    EXPECT_EQ(v.at("received"), "3003");
    // The node has them under the hashes the client got.
    for (const auto& h : v.at("hashes").as_array())
        EXPECT_EQ(cast({"tx", std::string(h.as_string()), "from", "--rpc-url", anvil.url()}),
                  "0x2c7536E3605D9C16a7a3D7b1898e529396a65c23");
}

}  // namespace
}  // namespace gateway::test
