#pragma once
// What the write-path integration suites share: transactions signed offline by cast, the gateway
// in front of a real anvil reached through two fault-injecting forwarders, and the checks that
// every transaction was mined exactly once.

#include "integration/devnet.hpp"
#include "support/http_test_client.hpp"
#include "support/json_values.hpp"
#include "support/tcp_forwarder.hpp"

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

namespace gateway::test {

using ::testing::HasSubstr;
namespace json = boost::json;
using Clock = std::chrono::steady_clock;

// anvil's first two dev accounts.
inline const std::string kKeyA =
    "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
inline const std::string kAddrA = "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266";
inline const std::string kKeyB =
    "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";
inline const std::string kAddrB = "0x70997970c51812dc3a010c7d01b50e0d17dc79c8";

struct Tx {
    std::string raw;
    std::string hash;  // as cast computes it, lower case
    std::string from;  // lower case
    std::uint64_t nonce = 0;
};

enum class Kind { eip1559, legacy };

// A transfer of 1 wei, signed offline (every field given, so cast asks no node).
inline Tx sign(const std::string& key, const std::string& from, const std::string& to,
               std::uint64_t nonce, Kind kind = Kind::eip1559,
               const std::string& chain_id = "31337") {
    std::vector<std::string> args{
        "mktx",      "--private-key",       key,           "--chain", chain_id,
        "--nonce",   std::to_string(nonce), "--gas-limit", "21000",   "--gas-price",
        "2000000000"};
    if (kind == Kind::legacy) {
        args.push_back("--legacy");
    } else {
        args.push_back("--priority-gas-price");
        args.push_back("1000000000");
    }
    args.insert(args.end(), {to, "--value", "1"});
    Tx tx;
    tx.raw = cast(args);
    tx.hash = cast({"keccak", tx.raw});
    tx.from = from;
    tx.nonce = nonce;
    return tx;
}

inline std::string quantity(std::uint64_t n) {
    return fmt::format("0x{:x}", n);
}

inline HttpReply send_raw(std::uint16_t port, const std::string& raw, int id = 1) {
    return http_post(port, "/", rpc_body("eth_sendRawTransaction", "[\"" + raw + "\"]", id));
}

// A call's result, from a gateway or from anvil itself; an error answer fails the test.
inline json::value result(std::uint16_t port, const std::string& method,
                          const std::string& params) {
    const json::value v = json::parse(http_post(port, "/", rpc_body(method, params)).body);
    if (!v.as_object().contains("result")) ADD_FAILURE() << method << ": " << json::serialize(v);
    return v.as_object().contains("result") ? v.at("result") : json::value(nullptr);
}

class WritesTest : public DevnetTest {
protected:
    void SetUp() override {
        start_devnet("gateway-writes", anvil_args);
        node_a = std::make_unique<TcpForwarder>(anvil->port());
        node_b = std::make_unique<TcpForwarder>(anvil->port());
    }

    std::string chains() const {
        return fmt::format(
            "  - name: devnet\n"
            "    chain_id: 31337\n"
            "    health: {{interval_ms: 100, timeout_ms: 500}}\n"
            "    tx: {{confirmations: 1, poll_interval_ms: 100, broadcast_fanout: 2}}\n"
            "    upstreams:\n"
            "      - id: node-a\n"
            "        url: {}\n"
            "        timeout_ms: {}\n"
            "      - id: node-b\n"
            "        url: {}\n"
            "        timeout_ms: {}\n",
            node_a->url(), upstream_timeout_ms, node_b->url(), upstream_timeout_ms);
    }
    // A gateway on this test's data directory (or on `store_path`); ready when a node is up.
    void start(const std::string& store_path = "") {
        run_gateway(std::make_unique<GatewayProcess>(dir, chains(), "", store_path));
    }
    // Whether a node answers, as the gateway knows it.
    bool ready() { return http_get(gw->admin_port(), "/readyz?require=upstreams").status == 200; }
    // Every node goes away; returns once the gateway knows it.
    void nodes_down() {
        node_a->stop();
        node_b->stop();
        ASSERT_TRUE(wait_until([&] { return !ready(); }, std::chrono::seconds(5)))
            << "the gateway still says it is ready with every node gone";
    }
    void nodes_up() {
        node_a->start();
        node_b->start();
    }

    json::value gateway_tx(const std::string& hash) {
        return result(gw->port(), "gateway_getTransaction", "[\"" + hash + "\"]");
    }
    json::array admin_transactions(const std::string& query = "?limit=10000") {
        HttpReply r = http_get(gw->admin_port(), "/admin/transactions" + query);
        EXPECT_EQ(r.status, 200u) << r.body;
        return json::parse(r.body).at("transactions").as_array();
    }
    // Waits until the journal says COMPLETED for every one of `txs`.
    bool wait_completed(const std::vector<Tx>& txs) {
        return wait_until([&] {
            std::set<std::string> done;
            for (const auto& t : admin_transactions("?state=COMPLETED&limit=10000"))
                done.insert(str(t.at("hash")));
            for (const auto& tx : txs)
                if (!done.contains(tx.hash)) return false;
            return true;
        });
    }
    // Transactions in every block of the chain, asked of anvil itself.
    std::vector<std::string> chain_transactions() {
        std::vector<std::string> out;
        const std::uint64_t head = quantity_of(result(anvil->port(), "eth_blockNumber", "[]"));
        for (std::uint64_t n = 0; n <= head; ++n) {
            const json::value block =
                result(anvil->port(), "eth_getBlockByNumber", "[\"" + quantity(n) + "\",false]");
            for (const auto& h : block.at("transactions").as_array()) out.push_back(str(h));
        }
        return out;
    }
    std::uint64_t chain_nonce(const std::string& address) {
        return std::stoull(cast({"nonce", address, "--rpc-url", anvil->url()}));
    }
    // Every one of `txs` mined exactly once on the chain, with nothing else there, each with a
    // successful receipt and its sender's nonce used; the journal holds each once, COMPLETED at
    // the block of its receipt. Returns the receipts by hash.
    std::map<std::string, json::value> expect_mined_exactly_once(const std::vector<Tx>& txs) {
        std::map<std::string, json::value> receipts;
        std::map<std::string, std::uint64_t> per_sender;
        for (const auto& tx : txs) {
            per_sender[tx.from] = std::max(per_sender[tx.from], tx.nonce + 1);
            const json::value r =
                result(anvil->port(), "eth_getTransactionReceipt", "[\"" + tx.hash + "\"]");
            if (!r.is_object()) {
                ADD_FAILURE() << "no receipt for " << tx.hash << " (nonce " << tx.nonce << ")";
                continue;
            }
            EXPECT_EQ(str(r.at("transactionHash")), tx.hash);
            EXPECT_EQ(str(r.at("status")), "0x1");
            EXPECT_EQ(str(r.at("from")), tx.from);
            const json::value g = gateway_tx(tx.hash);
            EXPECT_EQ(str(g.at("state")), "COMPLETED") << json::serialize(g);
            EXPECT_EQ(g.at("blockNumber"), r.at("blockNumber")) << json::serialize(g);
            EXPECT_EQ(g.at("blockHash"), r.at("blockHash")) << json::serialize(g);
            receipts[tx.hash] = r;
        }
        for (const auto& [sender, count] : per_sender)
            EXPECT_EQ(chain_nonce(sender), count) << sender;

        std::vector<std::string> mined = chain_transactions();
        std::multiset<std::string> expected;
        for (const auto& tx : txs) expected.insert(tx.hash);
        EXPECT_EQ(std::multiset<std::string>(mined.begin(), mined.end()), expected)
            << "the chain holds other transactions, or some twice";

        std::multiset<std::string> journaled;
        for (const auto& t : admin_transactions()) journaled.insert(str(t.at("hash")));
        EXPECT_EQ(journaled, expected) << "the journal holds other transactions, or some twice";
        return receipts;
    }

    std::vector<std::string> anvil_args;  // set before SetUp
    int upstream_timeout_ms = 1000;
    std::unique_ptr<TcpForwarder> node_a, node_b;
};

// Sends each while no node is up: each is journaled and answered with its hash, marked queued.
inline void expect_queued(std::uint16_t port, const std::vector<Tx>& txs) {
    for (const auto& tx : txs) {
        HttpReply r = send_raw(port, tx.raw);
        EXPECT_EQ(r.status, 200u) << r.body;
        EXPECT_EQ(r.header("x-gateway-queued"), "true") << tx.hash;
        EXPECT_EQ(json::parse(r.body).at("result"), tx.hash.c_str()) << r.body;
    }
}

}  // namespace gateway::test
