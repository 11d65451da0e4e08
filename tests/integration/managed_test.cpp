// Managed senders with the real binary in front of a real anvil node: keys the gateway holds and
// anvil does not (funded with anvil_setBalance), sent with `cast send --unlocked` and plain
// eth_sendTransaction / gateway_sendTransaction. Nonces under concurrency, a gas spike met with
// replacements, a nonce used behind the gateway's back, custody down or timing out, kill -9
// between signing and broadcast and between broadcast and receipt, dead letters and the admin API.

#include "integration/devnet.hpp"
#include "support/fake_policy_service.hpp"
#include "support/http_test_client.hpp"
#include "support/json_values.hpp"
#include "support/tcp_forwarder.hpp"
#include "support/tx_signer.hpp"

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <csignal>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <set>
#include <thread>

namespace gateway::test {
namespace {

using ::testing::HasSubstr;
namespace json = boost::json;
using Clock = std::chrono::steady_clock;

// Keys anvil does not hold: a local hot key (key file), one held by the custody stub, and one
// that is never funded.
const std::string kHotKey = "0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318";
const std::string kStubKey = "0x8da4ef21b864d2cc526dbdb2a120bd2874c36c9d0a1fb7f8c63d7f7a8b41de8f";
const std::string kPoorKey = "0x1111111111111111111111111111111111111111111111111111111111111111";
const std::string kStubKeyEnv = "GATEWAY_TEST_STUB_KEY";
const std::string kPoorKeyEnv = "GATEWAY_TEST_POOR_KEY";
const std::string kTo = "0x000000000000000000000000000000000000dead";

class ManagedTest : public DevnetTest {
protected:
    void SetUp() override {
        start_devnet("gateway-managed", anvil_args());
        node = std::make_unique<TcpForwarder>(anvil->port());
        hot = address_of(kHotKey);
        stub = address_of(kStubKey);
        poor = address_of(kPoorKey);
        write_file(dir + "/hot.key", kHotKey + "\n");
        ::setenv(kStubKeyEnv.c_str(), kStubKey.c_str(), 1);
        ::setenv(kPoorKeyEnv.c_str(), kPoorKey.c_str(), 1);
        for (const auto& a : {hot, stub})
            node_call("anvil_setBalance", fmt::format(R"(["{}","0x56bc75e2d63100000"])", a));
    }
    virtual std::vector<std::string> anvil_args() const { return {}; }

    // `tx` is the chain's tx section (flow style, without braces); `policy` its policy (flow
    // style, with braces).
    void start(const std::string& tx = "", const std::string& server = "",
               const std::string& policy = "") {
        const std::string signers = fmt::format(
            "signers:\n"
            "  - {{id: hot, type: local, key_file: \"{}/hot.key\"}}\n"
            "  - {{id: custody, type: custody-stub, stub_keys_env: [{}], timeout_ms: 1000}}\n"
            "  - {{id: poor, type: local, key_env: {}}}\n",
            dir, kStubKeyEnv, kPoorKeyEnv);
        const std::string chains = fmt::format(
            "  - name: devnet\n"
            "    chain_id: 31337\n"
            "    health: {{interval_ms: 100, timeout_ms: 500}}\n"
            "    tx: {{confirmations: 1, poll_interval_ms: 100, rebroadcast_after_ms: 500, "
            "retry: {{max_attempts: 3, backoff_ms: 100}}{}{}}}\n"
            "{}"
            "    accounts:\n"
            "      - {{address: \"{}\", signer: hot}}\n"
            "      - {{address: \"{}\", signer: custody}}\n"
            "      - {{address: \"{}\", signer: poor}}\n"
            "    upstreams:\n"
            "      - {{id: node, url: \"{}\", timeout_ms: 1000}}\n",
            tx.empty() ? "" : ", ", tx, policy.empty() ? "" : "    policy: " + policy + "\n", hot,
            stub, poor, node->url());
        run_gateway(std::make_unique<GatewayProcess>(dir, chains, server, "", signers));
        ASSERT_TRUE(gw->wait_ready()) << gw->process().output();
    }
    void kill_gateway() {
        gw->process().signal(SIGKILL);
        gw->process().wait(std::chrono::seconds(10));
    }

    // The whole JSON-RPC response object.
    json::value call(const std::string& method, const std::string& params,
                     const std::vector<std::pair<std::string, std::string>>& headers = {}) {
        HttpConnection c(gw->port(), std::chrono::seconds(60));
        last = c.request("POST", "/", rpc_body(method, params), headers);
        return json::parse(last.body);
    }
    json::value result(const std::string& method, const std::string& params) {
        const json::value v = call(method, params);
        if (!v.as_object().contains("result")) ADD_FAILURE() << method << ": " << str(v);
        return v.as_object().contains("result") ? v.at("result") : json::value(nullptr);
    }
    json::value node_call(const std::string& method, const std::string& params) {
        const json::value v =
            json::parse(http_post(anvil->port(), "/", rpc_body(method, params)).body);
        if (!v.as_object().contains("result")) ADD_FAILURE() << method << ": " << str(v);
        return v.as_object().contains("result") ? v.at("result") : json::value(nullptr);
    }
    std::uint64_t chain_nonce(const std::string& address) {
        return quantity_of(
            node_call("eth_getTransactionCount", "[\"" + address + "\",\"latest\"]"));
    }
    std::string tx_object(const std::string& from, const std::string& value = "0x1") {
        return fmt::format(R"([{{"from":"{}","to":"{}","value":"{}"}}])", from, kTo, value);
    }
    // gateway_sendTransaction: the new transaction's id.
    std::string send_async(const std::string& from, const std::string& value = "0x1") {
        const json::value r = result("gateway_sendTransaction", tx_object(from, value));
        return r.is_object() ? str(r.at("id")) : "";
    }
    json::value managed(const std::string& id) {
        return result("gateway_getTransaction", "[\"" + id + "\"]");
    }
    std::string state_of(const std::string& id) {
        const json::value m = managed(id);
        return m.is_object() ? str(m.at("state")) : "";
    }
    bool wait_state(const std::string& id, const std::string& state,
                    std::chrono::milliseconds timeout = std::chrono::seconds(30)) {
        return wait_until([&] { return state_of(id) == state; }, timeout);
    }
    json::value admin_get(const std::string& path) {
        HttpReply r = http_get(gw->admin_port(), path);
        EXPECT_EQ(r.status, 200u) << path << ": " << r.body;
        return json::parse(r.body);
    }
    HttpReply admin_post(const std::string& path, const std::string& body = "") {
        return http_post(gw->admin_port(), path, body);
    }
    json::object stub_signer() {
        const json::value signers = admin_get("/admin/signers");
        for (const auto& s : signers.at("signers").as_array())
            if (s.at("id") == "custody") return s.as_object();
        ADD_FAILURE() << "no custody signer in /admin/signers";
        return {};
    }
    // A gas spike: while `on`, a block every `every` with a base fee of 100 gwei (automine off).
    std::thread spike_fees(std::atomic<bool>& on, std::chrono::milliseconds every) {
        return std::thread([this, &on, every] {
            while (on) {
                http_post(anvil->port(), "/",
                          rpc_body("anvil_setNextBlockBaseFeePerGas", "[\"0x174876e800\"]"));
                http_post(anvil->port(), "/", rpc_body("evm_mine", "[]"));
                std::this_thread::sleep_for(every);
            }
        });
    }
    // Two blocks on top, then a reorg that drops the block of `attempt` (its hash: `hash`).
    void drop_block_of(const json::value& attempt, const std::string& hash) {
        node_call("anvil_mine", "[\"0x2\"]");
        const std::uint64_t depth = quantity_of(node_call("eth_blockNumber", "[]")) -
                                    quantity_of(attempt.at("blockNumber")) + 1;
        node_call("anvil_reorg", fmt::format("[{}, []]", depth));
        ASSERT_EQ(node_call("eth_getTransactionReceipt", "[\"" + hash + "\"]"),
                  json::value(nullptr));
    }
    // Whether the managed transaction `id` and its first attempt become COMPLETED again, in
    // another block than `first` (the attempt as it was before a reorg dropped its block).
    bool mined_again(const std::string& id, const json::value& first) {
        return wait_until([&] {
            const json::value m = managed(id);
            const json::value& attempt = m.at("signedAttempts").at(0);
            return str(m.at("state")) == "COMPLETED" && str(attempt.at("state")) == "COMPLETED" &&
                   attempt.at("blockHash").is_string() &&
                   attempt.at("blockHash") != first.at("blockHash");
        });
    }

    // The nonce the mined attempt of a managed transaction used.
    std::uint64_t mined_nonce(const std::string& id) {
        const json::value m = managed(id);
        const json::value tx =
            node_call("eth_getTransactionByHash", "[\"" + str(m.at("minedHash")) + "\"]");
        return quantity_of(tx.at("nonce"));
    }

    std::string hot, stub, poor;
    std::unique_ptr<TcpForwarder> node;
    HttpReply last;
};

TEST_F(ManagedTest, FiftyConcurrentCastSendsGetFiftyContiguousNonces) {
    start();
    // cast fills `nonce` from the latest count, so all 50 carry the same one: the gateway's nonce
    // manager decides.
    constexpr int kSends = 50;
    std::vector<std::string> hashes(kSends);
    std::vector<std::string> errors(kSends);
    std::vector<std::thread> threads;
    for (int i = 0; i < kSends; ++i)
        threads.emplace_back([&, i] {
            CommandResult r = run_command({tool_path("cast"), "send", "--unlocked", "--from", hot,
                                           "--rpc-url", gw->url(), "--async", kTo, "--value", "1"},
                                          std::chrono::seconds(120));
            std::string out = r.out;
            while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
            if (r.exit_code != 0) errors[i] = r.err;
            hashes[i] = out;
        });
    for (auto& t : threads) t.join();
    for (int i = 0; i < kSends; ++i) ASSERT_EQ(errors[i], "") << "send " << i;

    std::set<std::uint64_t> nonces;
    for (const auto& h : hashes) {
        ASSERT_TRUE(wait_until([&] {
            return result("eth_getTransactionReceipt", "[\"" + h + "\"]").is_object();
        })) << h;
        const json::value receipt = result("eth_getTransactionReceipt", "[\"" + h + "\"]");
        EXPECT_EQ(receipt.at("status"), "0x1");
        nonces.insert(
            quantity_of(node_call("eth_getTransactionByHash", "[\"" + h + "\"]").at("nonce")));
    }
    EXPECT_EQ(nonces.size(), static_cast<std::size_t>(kSends)) << "a nonce was used twice";
    EXPECT_EQ(*nonces.begin(), 0u);
    EXPECT_EQ(*nonces.rbegin(), static_cast<std::uint64_t>(kSends - 1));
    EXPECT_EQ(chain_nonce(hot), static_cast<std::uint64_t>(kSends));
}

TEST_F(ManagedTest, B4_AGasSpikeIsMetWithReplacementsAndTheFirstHashFindsTheReceipt) {
    start("fee: {bump_after_blocks: 1, bump_percent: 20}");
    node_call("evm_setAutomine", "[false]");
    const std::string id = send_async(hot);
    ASSERT_FALSE(id.empty());
    std::string first;
    ASSERT_TRUE(wait_until([&] {
        const json::value m = managed(id);
        if (m.is_object() && m.at("hash").is_string()) first = str(m.at("hash"));
        return !first.empty();
    }));
    // The first attempt is out, with fees estimated from cheap blocks. From now on every block's
    // base fee is 100 gwei, far above what it offers; a block every 250 ms.
    std::atomic<bool> spiking{true};
    std::thread spike = spike_fees(spiking, std::chrono::milliseconds(250));
    const bool completed = wait_state(id, "COMPLETED", std::chrono::seconds(60));
    spiking = false;
    spike.join();
    node_call("evm_setAutomine", "[true]");
    ASSERT_TRUE(completed) << str(managed(id));

    const json::value m = managed(id);
    EXPECT_GE(m.at("attempts").to_number<int>(), 2) << str(m);
    const std::string mined = str(m.at("minedHash"));
    EXPECT_NE(mined, first);
    const auto& attempts = m.at("signedAttempts").as_array();
    EXPECT_GT(quantity_of(attempts.back().at("maxFeePerGas")),
              quantity_of(attempts.front().at("maxFeePerGas")));
    EXPECT_GE(quantity_of(attempts.back().at("maxFeePerGas")), 100'000'000'000u);
    // The hash the client got first finds the receipt of the one that was mined.
    const json::value receipt = result("eth_getTransactionReceipt", "[\"" + first + "\"]");
    ASSERT_TRUE(receipt.is_object()) << str(receipt);
    EXPECT_EQ(str(receipt.at("transactionHash")), mined);
    EXPECT_EQ(last.header("x-gateway-replaced-by"), mined);
    // And so does gateway_getTransaction, with the managed transaction it was an attempt of.
    const json::value described = result("gateway_getTransaction", "[\"" + first + "\"]");
    EXPECT_EQ(str(described.at("replacedBy")), mined);
    EXPECT_EQ(str(described.at("managed").at("id")), id);
    EXPECT_EQ(described.at("managed").at("state"), "COMPLETED");
    EXPECT_EQ(last.header("x-gateway-replaced-by"), mined);
    // The first attempt's own record ends REPLACED, pointing to the one mined.
    EXPECT_EQ(described.at("state"), "REPLACED") << str(described);
    EXPECT_EQ(str(described.at("reason")), "replaced by " + mined);
    EXPECT_EQ(chain_nonce(hot), 1u);
    HttpReply metrics = http_get(gw->admin_port(), "/metrics");
    EXPECT_NE(metrics.body.find("gateway_replacements_total{chain=\"devnet\"}"), std::string::npos);
}

TEST_F(ManagedTest, B5_ANonceUsedBehindTheGatewaysBackIsRecoveredWithoutAGap) {
    start();
    // Another party sends first with the same key: the gateway starts above it.
    cast({"send", "--private-key", kHotKey, "--rpc-url", anvil->url(), kTo, "--value", "1"});
    const std::string a = send_async(hot);
    ASSERT_TRUE(wait_state(a, "COMPLETED")) << str(managed(a));
    EXPECT_EQ(mined_nonce(a), 1u);

    // Then it replaces the gateway's pending transaction with its own at the same nonce.
    node_call("evm_setAutomine", "[false]");
    const std::string b = send_async(hot);
    ASSERT_TRUE(wait_until([&] { return managed(b).at("hash").is_string(); })) << str(managed(b));
    cast({"send", "--private-key", kHotKey, "--rpc-url", anvil->url(), "--nonce", "2", "--async",
          "--gas-price", "200000000000", "--priority-gas-price", "20000000000", kTo, "--value",
          "2"});
    node_call("evm_mine", "[]");
    node_call("evm_setAutomine", "[true]");
    ASSERT_TRUE(wait_state(b, "COMPLETED")) << str(managed(b));
    EXPECT_EQ(mined_nonce(b), 3u) << "signed again with the next nonce";

    // Later transactions are not stuck behind a gap.
    const std::string c = send_async(hot);
    const std::string d = send_async(hot);
    ASSERT_TRUE(wait_state(c, "COMPLETED")) << str(managed(c));
    ASSERT_TRUE(wait_state(d, "COMPLETED")) << str(managed(d));
    EXPECT_EQ(std::set<std::uint64_t>({mined_nonce(c), mined_nonce(d)}),
              std::set<std::uint64_t>({4, 5}));
    EXPECT_EQ(chain_nonce(hot), 6u);
}

TEST_F(ManagedTest, C3_CustodyDownQueuesTransactionsAndATimeoutIsRetriedOnTheSameNonce) {
    start("", "  request_timeout_ms: 1500\n");
    ASSERT_EQ(admin_post("/admin/signers/custody/faults", R"({"unreachable": true})").status, 200u);
    std::vector<std::string> ids;
    for (int i = 0; i < 3; ++i) ids.push_back(send_async(stub));
    // eth_sendTransaction cannot be answered with a hash: an error that names the transaction.
    const json::value waited = call("eth_sendTransaction", tx_object(stub));
    ASSERT_TRUE(waited.as_object().contains("error")) << str(waited);
    EXPECT_THAT(str(waited.at("error").at("message")), HasSubstr("not signed in time"));
    const std::string waited_id = str(waited.at("error").at("data").at("id"));
    EXPECT_EQ(waited.at("error").at("data").at("state"), "SIGNING");
    EXPECT_EQ(last.header("x-gateway-queued"), "true");
    ids.push_back(waited_id);

    for (const auto& id : ids) EXPECT_EQ(state_of(id), "SIGNING") << str(managed(id));
    json::object s = stub_signer();
    EXPECT_GE(s.at("signRequests").to_number<int>(), 4);
    EXPECT_EQ(s.at("signatures").to_number<int>(), 0);

    ASSERT_EQ(admin_post("/admin/signers/custody/faults", R"({"unreachable": false})").status,
              200u);
    for (const auto& id : ids) ASSERT_TRUE(wait_state(id, "COMPLETED")) << str(managed(id));
    EXPECT_EQ(chain_nonce(stub), 4u);
    // Every signature was for one of the four nonces (a replacement of one already mined is
    // harmless; a second nonce for one transaction is not).
    s = stub_signer();
    std::set<std::uint64_t> signed_nonces;
    for (const auto& n : s.at("signed").as_array())
        signed_nonces.insert(n.at("nonce").to_number<std::uint64_t>());
    EXPECT_EQ(signed_nonces, std::set<std::uint64_t>({0, 1, 2, 3})) << str(s.at("signed"));
    std::set<std::uint64_t> mined;
    for (const auto& id : ids) mined.insert(mined_nonce(id));
    EXPECT_EQ(mined, std::set<std::uint64_t>({0, 1, 2, 3}));

    // A signer that times out (after the signer's timeout_ms, 1 s) is asked again, with the same
    // nonce.
    ASSERT_EQ(admin_post("/admin/signers/custody/faults", R"({"timeout": true})").status, 200u);
    const std::string slow = send_async(stub);
    const int requests = s.at("signRequests").to_number<int>();
    ASSERT_TRUE(wait_until(
        [&] { return stub_signer().at("signRequests").to_number<int>() >= requests + 3; }));
    EXPECT_EQ(state_of(slow), "SIGNING");
    ASSERT_EQ(admin_post("/admin/signers/custody/faults", R"({"timeout": false})").status, 200u);
    ASSERT_TRUE(wait_state(slow, "COMPLETED")) << str(managed(slow));
    EXPECT_EQ(mined_nonce(slow), 4u);
    signed_nonces.clear();
    const json::object after = stub_signer();
    for (const auto& n : after.at("signed").as_array())
        signed_nonces.insert(n.at("nonce").to_number<std::uint64_t>());
    EXPECT_EQ(signed_nonces, std::set<std::uint64_t>({0, 1, 2, 3, 4}));
    EXPECT_EQ(chain_nonce(stub), 5u);
    EXPECT_EQ(managed(slow).at("attempts").to_number<int>(), 1);
}

TEST_F(ManagedTest, E1_KillNineBetweenSigningAndBroadcastMinesItOnce) {
    start();
    // Custody is down while the transaction takes its nonce; then the nodes go away, and custody
    // comes back: the transaction is signed and journaled, and no node can take it.
    ASSERT_EQ(admin_post("/admin/signers/custody/faults", R"({"unreachable": true})").status, 200u);
    const std::string id = send_async(stub);
    ASSERT_TRUE(wait_state(id, "SIGNING", std::chrono::seconds(10))) << str(managed(id));
    node->stop();
    ASSERT_TRUE(wait_until(
        [&] { return http_get(gw->admin_port(), "/readyz?require=upstreams").status == 503; }));
    ASSERT_EQ(admin_post("/admin/signers/custody/faults", R"({"unreachable": false})").status,
              200u);
    ASSERT_TRUE(wait_until([&] { return managed(id).at("hash").is_string(); }));
    const json::value m = managed(id);
    ASSERT_EQ(m.at("signedAttempts").as_array().size(), 1u);
    EXPECT_EQ(m.at("signedAttempts").at(0).at("state"), "QUEUED") << str(m);
    kill_gateway();

    node->start();
    start();
    ASSERT_TRUE(wait_state(id, "COMPLETED")) << str(managed(id));
    EXPECT_EQ(chain_nonce(stub), 1u);
    EXPECT_EQ(managed(id).at("attempts").to_number<int>(), 1);
    EXPECT_EQ(str(managed(id).at("minedHash")), str(m.at("hash")));
}

// Catalog row C2 end to end: the gateway's policy holds a transaction before it takes a nonce; a
// later one is mined meanwhile; the held one outlives a kill -9, and an operator's approval
// through the admin API gets it mined on the next nonce.
TEST_F(ManagedTest, C2_AHeldTransactionOutlivesAKillAndIsMinedOnceApproved) {
    start("", "", "{max_value_wei: \"1\", approval_ttl_ms: 600000}");
    const json::value held = call("eth_sendTransaction", tx_object(hot, "0x2"));
    ASSERT_TRUE(held.as_object().contains("error")) << str(held);
    EXPECT_THAT(str(held.at("error").at("message")), HasSubstr("held for an operator's approval"));
    EXPECT_EQ(last.header("x-gateway-queued"), "true");
    const std::string id = str(held.at("error").at("data").at("id"));
    EXPECT_EQ(state_of(id), "PENDING_APPROVAL");

    const std::string later = send_async(hot, "0x1");
    ASSERT_TRUE(wait_state(later, "COMPLETED")) << str(managed(later));
    EXPECT_EQ(mined_nonce(later), 0u);
    EXPECT_THAT(http_get(gw->admin_port(), "/metrics").body,
                HasSubstr("gateway_managed_approvals_total{chain=\"devnet\",held_by=\"policy\","
                          "outcome=\"held\"} 1"));

    kill_gateway();
    start("", "", "{max_value_wei: \"1\", approval_ttl_ms: 600000}");
    const json::value approvals = admin_get("/admin/approvals");
    ASSERT_EQ(approvals.at("approvals").as_array().size(), 1u) << str(approvals);
    EXPECT_EQ(str(approvals.at("approvals").at(0).at("id")), id);
    EXPECT_EQ(admin_post("/admin/approvals/" + id + "/approve", "{}").status, 400u);
    const HttpReply approved =
        admin_post("/admin/approvals/" + id + "/approve", R"({"by": "alice", "reason": "ok"})");
    ASSERT_EQ(approved.status, 200u) << approved.body;
    ASSERT_TRUE(wait_state(id, "COMPLETED")) << str(managed(id));
    EXPECT_EQ(mined_nonce(id), 1u);
    EXPECT_EQ(chain_nonce(hot), 2u);
    EXPECT_THAT(str(managed(id).at("history")), HasSubstr("approved by alice: ok"));
    EXPECT_EQ(admin_post("/admin/approvals/" + id + "/reject", R"({"by": "bob"})").status, 409u);
}

// Catalog row C2 with an outside policy service (its stand-in, in the test): its answers allow,
// hold for a person, or deny, through the real binary's config.
TEST_F(ManagedTest, C2_AnOutsidePolicyServiceAllowsHoldsAndDenies) {
    FakePolicyService service;
    service.set_rule([](const json::object& request) {
        const auto& value = request.at("transaction").at("value").as_string();
        if (value == "0x2") return FakePolicyService::Decision{"hold", "a second pair of eyes"};
        if (value == "0x3") return FakePolicyService::Decision{"deny", "sanctioned recipient"};
        return FakePolicyService::Decision{"allow", ""};
    });
    start("", "", fmt::format("{{service: {{url: \"{}\", timeout_ms: 1000}}}}", service.url()));
    const json::value allowed = call("eth_sendTransaction", tx_object(hot, "0x1"));
    ASSERT_TRUE(allowed.as_object().contains("result")) << str(allowed);
    const std::string held = send_async(hot, "0x2");
    const std::string denied = send_async(hot, "0x3");
    ASSERT_TRUE(wait_state(denied, "FAILED")) << str(managed(denied));
    EXPECT_THAT(str(managed(denied).at("reason")), HasSubstr("sanctioned recipient"));
    ASSERT_TRUE(wait_until([&] {
        return str(managed(held).at("reason")).find("a second pair of eyes") != std::string::npos;
    })) << str(managed(held));
    ASSERT_EQ(admin_post("/admin/approvals/" + held + "/approve", R"({"by": "alice"})").status,
              200u);
    ASSERT_TRUE(wait_state(held, "COMPLETED")) << str(managed(held));
    EXPECT_EQ(chain_nonce(hot), 2u);
    EXPECT_GE(service.asked(), 3u);
}

// Catalog row C2 at the signer: custody's own policy holds the transaction. It keeps its nonce
// in SIGNING, /admin/approvals shows it (decided at custody, not here), and once custody signs it
// is mined. (A restart keeps when it was held: ManagedPolicy.C2_ASignersHoldOutlivesARestart.)
TEST_F(ManagedTest, C2_ACustodyHoldKeepsItsNonceAndIsMinedOnceItSigns) {
    start();
    ASSERT_EQ(admin_post("/admin/signers/custody/faults", R"({"approval_pending": true})").status,
              200u);
    const std::string id = send_async(stub);
    json::value approvals;
    ASSERT_TRUE(wait_until([&] {
        approvals = admin_get("/admin/approvals");
        return !approvals.at("approvals").as_array().empty();
    })) << str(managed(id));
    const json::value held = approvals.at("approvals").at(0);
    EXPECT_EQ(str(held.at("id")), id);
    EXPECT_EQ(str(held.at("heldBy")), "signer");
    EXPECT_EQ(str(held.at("signer")), "custody");
    EXPECT_EQ(state_of(id), "SIGNING");
    EXPECT_EQ(admin_post("/admin/approvals/" + id + "/approve", R"({"by": "alice"})").status, 409u);
    EXPECT_EQ(chain_nonce(stub), 0u);

    ASSERT_EQ(admin_post("/admin/signers/custody/faults", R"({"approval_pending": false})").status,
              200u);
    ASSERT_TRUE(wait_state(id, "COMPLETED")) << str(managed(id));
    EXPECT_EQ(mined_nonce(id), 0u);
    EXPECT_TRUE(admin_get("/admin/approvals").at("approvals").as_array().empty());
    EXPECT_THAT(http_get(gw->admin_port(), "/metrics").body,
                HasSubstr("gateway_managed_approvals_total{chain=\"devnet\",held_by=\"signer\","
                          "outcome=\"approved\"} 1"));
}

TEST_F(ManagedTest, KillNineBetweenBroadcastAndReceiptMinesItOnce) {
    start();
    node_call("evm_setAutomine", "[false]");
    const std::string id = send_async(hot);
    ASSERT_TRUE(wait_until([&] {
        const json::value m = managed(id);
        return m.at("signedAttempts").as_array().size() == 1 &&
               m.at("signedAttempts").at(0).at("state") == "BROADCASTING";
    })) << str(managed(id));
    const std::string hash = str(managed(id).at("hash"));
    kill_gateway();
    node_call("evm_mine", "[]");
    node_call("evm_setAutomine", "[true]");
    start();
    ASSERT_TRUE(wait_state(id, "COMPLETED")) << str(managed(id));
    EXPECT_EQ(str(managed(id).at("minedHash")), hash);
    EXPECT_EQ(chain_nonce(hot), 1u);
    // The next one takes the next nonce.
    const std::string next = send_async(hot);
    ASSERT_TRUE(wait_state(next, "COMPLETED")) << str(managed(next));
    EXPECT_EQ(mined_nonce(next), 1u);
}

// Catalog: a reorg after COMPLETED, for a managed transaction: until its attempt's block is
// final (anvil: 64 under the head), a reorg that drops it reopens the transaction and its
// attempt, which is mined again on the same nonce; `final` tells whether it can still change.
TEST_F(ManagedTest, AReorgAfterCompletedReopensItUntilItsBlockIsFinal) {
    start();
    const std::string id = send_async(hot);
    ASSERT_TRUE(wait_state(id, "COMPLETED")) << str(managed(id));
    EXPECT_EQ(managed(id).at("final"), false);
    const json::value first = managed(id).at("signedAttempts").at(0);
    const std::string hash = str(managed(id).at("minedHash"));
    drop_block_of(first, hash);

    // Reopened, and COMPLETED again in a block of the new chain.
    ASSERT_TRUE(mined_again(id, first)) << str(managed(id));
    const std::string history = str(managed(id).at("history"));
    EXPECT_NE(history.find("a reorg before its block was final dropped it"), std::string::npos)
        << history;
    const json::value receipt = node_call("eth_getTransactionReceipt", "[\"" + hash + "\"]");
    ASSERT_TRUE(receipt.is_object());
    EXPECT_EQ(receipt.at("blockHash"), managed(id).at("signedAttempts").at(0).at("blockHash"));
    EXPECT_EQ(chain_nonce(hot), 1u) << "the same nonce, once";
    EXPECT_EQ(managed(id).at("signedAttempts").as_array().size(), 1u);
    const auto unfinalized = [&](const char* count) {
        return wait_until([&] {
            return http_get(gw->admin_port(), "/metrics")
                       .body.find(fmt::format(
                           "gateway_transactions_unfinalized{{chain=\"devnet\"}} {}\n", count)) !=
                   std::string::npos;
        });
    };
    EXPECT_TRUE(unfinalized("1")) << "its mined attempt is held until its block is final";

    node_call("anvil_mine", "[\"0x50\"]");
    ASSERT_TRUE(wait_until([&] { return managed(id).at("final") == true; })) << str(managed(id));
    EXPECT_TRUE(unfinalized("0"));
    // The next one takes the next nonce.
    const std::string next = send_async(hot);
    ASSERT_TRUE(wait_state(next, "COMPLETED")) << str(managed(next));
    EXPECT_EQ(mined_nonce(next), 1u);
}

// The same reorg while the gateway is down: at its next start the mined attempt's block is
// asked again, the attempt and its managed transaction are reopened, and it is mined again on
// the same nonce.
TEST_F(ManagedTest, AReorgWhileTheGatewayIsDownReopensItAtTheNextStart) {
    start();
    const std::string id = send_async(hot);
    ASSERT_TRUE(wait_state(id, "COMPLETED")) << str(managed(id));
    const json::value first = managed(id).at("signedAttempts").at(0);
    const std::string hash = str(managed(id).at("minedHash"));
    kill_gateway();
    drop_block_of(first, hash);

    start();
    ASSERT_TRUE(mined_again(id, first)) << str(managed(id));
    const std::string history = str(managed(id).at("history"));
    EXPECT_NE(history.find("a reorg before its block was final dropped it"), std::string::npos)
        << history;
    EXPECT_EQ(chain_nonce(hot), 1u) << "the same nonce, once";
    EXPECT_EQ(managed(id).at("signedAttempts").as_array().size(), 1u);
}

TEST_F(ManagedTest, E2_ExhaustedRetriesMakeADeadLetterThatTheAdminRetryGetsMined) {
    start();
    // The poor sender has no funds: every try fails, three tries make a dead letter. A client
    // waiting on eth_sendTransaction hears of the refusal at once.
    const json::value waited = call("eth_sendTransaction", tx_object(poor, "0xde0b6b3a7640000"));
    ASSERT_TRUE(waited.as_object().contains("error")) << str(waited);
    const std::string id = str(waited.at("error").at("data").at("id"));
    ASSERT_TRUE(wait_state(id, "DEAD_LETTER")) << str(managed(id));
    EXPECT_THAT(str(managed(id).at("reason")), HasSubstr("retries exhausted"));

    HttpReply early = admin_post("/admin/transactions/gtx-unknown/retry");
    EXPECT_EQ(early.status, 404u) << early.body;
    node_call("anvil_setBalance", fmt::format(R"(["{}","0x56bc75e2d63100000"])", poor));
    HttpReply retried = admin_post("/admin/transactions/" + id + "/retry");
    ASSERT_EQ(retried.status, 200u) << retried.body;
    ASSERT_TRUE(wait_state(id, "COMPLETED")) << str(managed(id));
    EXPECT_EQ(chain_nonce(poor), 1u);
    HttpReply again = admin_post("/admin/transactions/" + id + "/retry");
    EXPECT_EQ(again.status, 409u) << again.body;
}

TEST_F(ManagedTest, ADeadNonceIsFilledWithASelfSendSoLaterOnesAreMined) {
    start();
    // The poor sender can pay for gas, not for 1,000 ether: its first transaction (nonce 0) is
    // refused until it is a dead letter; its second (nonce 1) waits behind it in the node.
    node_call("anvil_setBalance", fmt::format(R"(["{}","0x2386f26fc10000"])", poor));
    const std::string dead = send_async(poor, "0x3635c9adc5dea00000");
    ASSERT_TRUE(wait_state(dead, "SIGNING")) << str(managed(dead));
    const std::string later = send_async(poor, "0x7");
    ASSERT_TRUE(wait_state(dead, "DEAD_LETTER")) << str(managed(dead));
    // Nonce 0 is filled with a zero-value self-send, so nonce 1 is mined.
    ASSERT_TRUE(wait_state(later, "COMPLETED")) << str(managed(later));
    EXPECT_EQ(mined_nonce(later), 1u);
    EXPECT_EQ(chain_nonce(poor), 2u);
    EXPECT_THAT(gw->process().output(), HasSubstr("fills nonce 0 of " + dead));
    const json::value block0 = node_call("eth_getBlockByNumber", "[\"0x1\",true]");
    const json::value filler = block0.at("transactions").at(0);
    EXPECT_EQ(str(filler.at("from")), poor);
    EXPECT_EQ(str(filler.at("to")), poor);
    EXPECT_EQ(filler.at("value"), "0x0");
    EXPECT_EQ(filler.at("nonce"), "0x0");
}

TEST_F(ManagedTest, AtTheFeeCapATransactionStaysAndTheMetricSaysSo) {
    // The hot sender may pay at most 5 gwei per gas; blocks now cost 100 gwei.
    start("fee: {bump_after_blocks: 1, max_fee_per_gas_gwei: 5, bump_percent: 50}");
    node_call("evm_setAutomine", "[false]");
    const std::string id = send_async(hot);
    ASSERT_TRUE(wait_until([&] { return managed(id).at("hash").is_string(); }));
    std::atomic<bool> spiking{true};
    std::thread spike = spike_fees(spiking, std::chrono::milliseconds(150));
    const bool stuck = wait_until([&] {
        return http_get(gw->admin_port(), "/metrics")
                   .body.find("gateway_stuck_at_fee_cap{chain=\"devnet\",sender=\"" + hot +
                              "\"} 1") != std::string::npos;
    });
    spiking = false;
    spike.join();
    ASSERT_TRUE(stuck) << str(managed(id));
    const json::value m = managed(id);
    EXPECT_EQ(m.at("state"), "BROADCASTING");
    EXPECT_THAT(str(m.at("reason")), HasSubstr("cap"));
    for (const auto& a : m.at("signedAttempts").as_array())
        EXPECT_LE(quantity_of(a.at("maxFeePerGas")), 5'000'000'000u);
    EXPECT_THAT(gw->process().output(), HasSubstr("fees are at the cap"));
    EXPECT_EQ(chain_nonce(hot), 0u);
}

TEST_F(ManagedTest, AnOperatorCancelsAPendingTransactionWithASelfSend) {
    start();
    node_call("evm_setAutomine", "[false]");
    const std::string id = send_async(hot, "0x1234");
    ASSERT_TRUE(wait_until([&] { return managed(id).at("hash").is_string(); }));
    HttpReply r = admin_post("/admin/transactions/" + id + "/cancel");
    ASSERT_EQ(r.status, 202u) << r.body;
    ASSERT_TRUE(wait_until([&] { return managed(id).at("attempts").to_number<int>() == 2; }))
        << str(managed(id));
    node_call("evm_mine", "[]");
    node_call("evm_setAutomine", "[true]");
    ASSERT_TRUE(wait_state(id, "CANCELLED")) << str(managed(id));
    const json::value tx =
        node_call("eth_getTransactionByHash", "[\"" + str(managed(id).at("minedHash")) + "\"]");
    EXPECT_EQ(str(tx.at("to")), hot);
    EXPECT_EQ(tx.at("value"), "0x0");
    EXPECT_EQ(chain_nonce(hot), 1u);
}

TEST_F(ManagedTest, ACancelSurvivesARestart) {
    start();
    node_call("evm_setAutomine", "[false]");
    const std::string id = send_async(stub, "0x1234");
    ASSERT_TRUE(wait_until([&] { return managed(id).at("hash").is_string(); }));
    // Custody goes down, so the self-send cannot be signed; the gateway dies after the 202. The
    // cancel was journaled: after the restart the self-send replaces the transaction.
    ASSERT_EQ(admin_post("/admin/signers/custody/faults", R"({"unreachable": true})").status, 200u);
    HttpReply r = admin_post("/admin/transactions/" + id + "/cancel");
    ASSERT_EQ(r.status, 202u) << r.body;
    kill_gateway();
    start();
    // The cancelling self-send is signed and taken by the node (not just journaled) before the
    // block is mined.
    ASSERT_TRUE(wait_until([&] {
        const json::value m = managed(id);
        const auto& attempts = m.at("signedAttempts").as_array();
        return attempts.size() >= 2 && attempts.back().at("state") == "BROADCASTING";
    })) << str(managed(id));
    node_call("evm_mine", "[]");
    node_call("evm_setAutomine", "[true]");
    ASSERT_TRUE(wait_state(id, "CANCELLED")) << str(managed(id));
    EXPECT_EQ(chain_nonce(stub), 1u);
    EXPECT_EQ(quantity_of(node_call("eth_getBalance", "[\"" + kTo + "\",\"latest\"]")), 0u);
}

// A chain without a base fee (before London): legacy transactions priced from eth_gasPrice.
class ManagedLegacyTest : public ManagedTest {
protected:
    std::vector<std::string> anvil_args() const override { return {"--hardfork", "berlin"}; }
};

TEST_F(ManagedLegacyTest, AChainWithoutABaseFeeGetsLegacyTransactions) {
    start();
    const json::value sent = call("eth_sendTransaction", tx_object(hot));
    ASSERT_TRUE(sent.as_object().contains("result")) << str(sent);
    const std::string hash = str(sent.at("result"));
    ASSERT_TRUE(wait_until(
        [&] { return result("eth_getTransactionReceipt", "[\"" + hash + "\"]").is_object(); }));
    const json::value tx = node_call("eth_getTransactionByHash", "[\"" + hash + "\"]");
    EXPECT_EQ(tx.at("type"), "0x0");
    EXPECT_TRUE(tx.at("gasPrice").is_string());
    EXPECT_FALSE(tx.as_object().contains("maxFeePerGas")) << str(tx);
    EXPECT_EQ(chain_nonce(hot), 1u);

    // A client's gas is kept when it is at least the estimate, its gas price when above the
    // gateway's; its nonce is not used.
    const json::value own = call(
        "eth_sendTransaction",
        fmt::format(
            R"([{{"from":"{}","to":"{}","value":"0x1","gas":"0x9c40","gasPrice":"0x12a05f200","nonce":"0x0"}}])",
            hot, kTo));
    ASSERT_TRUE(own.as_object().contains("result")) << str(own);
    const std::string own_hash = str(own.at("result"));
    ASSERT_TRUE(wait_until(
        [&] { return result("eth_getTransactionReceipt", "[\"" + own_hash + "\"]").is_object(); }));
    const json::value own_tx = node_call("eth_getTransactionByHash", "[\"" + own_hash + "\"]");
    EXPECT_EQ(own_tx.at("gas"), "0x9c40");
    EXPECT_EQ(own_tx.at("gasPrice"), "0x12a05f200");
    EXPECT_EQ(own_tx.at("nonce"), "0x1");
}

TEST_F(ManagedTest, RequestsAreCheckedAndAnIdempotencyKeyReturnsTheSameTransaction) {
    start();
    // eth_accounts lists the managed senders.
    const json::value accounts = result("eth_accounts", "[]");
    ASSERT_EQ(accounts.as_array().size(), 3u);
    // Another address is refused, never forwarded (anvil would sign for its own dev account).
    const json::value unknown = call(
        "eth_sendTransaction",
        R"([{"from":"0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266","to":"0x000000000000000000000000000000000000dead","value":"0x1"}])");
    EXPECT_THAT(str(unknown.at("error").at("message")), HasSubstr("unknown account"));
    EXPECT_EQ(chain_nonce("0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266"), 0u);
    for (const std::string& bad :
         {fmt::format(R"([{{"from":"{}","to":"0x12","value":"0x1"}}])", hot),
          fmt::format(R"([{{"from":"{}","to":"{}","value":"zz"}}])", hot, kTo),
          fmt::format(R"([{{"from":"{}","to":"{}","chainId":"0x1"}}])", hot, kTo),
          fmt::format(R"([{{"from":"{}","data":"0xabc"}}])", hot), std::string("[]"),
          std::string(R"(["0x00"])")}) {
        const json::value v = call("eth_sendTransaction", bad);
        ASSERT_TRUE(v.as_object().contains("error")) << bad;
        EXPECT_EQ(v.at("error").at("code"), -32602) << bad << " " << str(v);
    }

    const std::vector<std::pair<std::string, std::string>> key{{"Idempotency-Key", "order-17"}};
    const json::value first = call("eth_sendTransaction", tx_object(hot), key);
    ASSERT_TRUE(first.as_object().contains("result")) << str(first);
    const json::value second = call("eth_sendTransaction", tx_object(hot), key);
    EXPECT_EQ(second.at("result"), first.at("result"));
    const json::value other = call("eth_sendTransaction", tx_object(hot, "0x2"), key);
    EXPECT_THAT(str(other.at("error").at("message")), HasSubstr("Idempotency-Key"));
    ASSERT_TRUE(wait_until([&] {
        return result("eth_getTransactionReceipt", "[" + json::serialize(first.at("result")) + "]")
            .is_object();
    }));
    EXPECT_EQ(chain_nonce(hot), 1u);

    // The raw attempt names its managed transaction; a resync reads the chain.
    const json::value raw =
        result("gateway_getTransaction", "[" + json::serialize(first.at("result")) + "]");
    EXPECT_THAT(str(raw.at("transaction")), HasSubstr("gtx-"));
    HttpReply resync = admin_post("/admin/senders/" + hot + "/resync");
    ASSERT_EQ(resync.status, 200u) << resync.body;
    EXPECT_EQ(json::parse(resync.body).at("resynced").at(0).at("next"), 1);
}

}  // namespace
}  // namespace gateway::test
