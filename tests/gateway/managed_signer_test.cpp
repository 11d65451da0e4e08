// Managed senders in the whole gateway, in-process, in front of a fake node, signed by a remote
// signer (a fake Web3Signer) or the custody stub: what each kind of signer answer does to a
// transaction. Custody that cannot sign now is waited for however long it takes (catalog row C1); a
// policy's no fails the transaction with the signer's reason; an answer that cannot be used is a
// failed try, and a dead letter once they run out. Retries are a few ms apart: the tests wait for
// what the signer was asked, never for a time.

#include "gateway/eth/transaction.hpp"
#include "support/fake_web3signer.hpp"
#include "support/gateway_fixture.hpp"
#include "support/tx_signer.hpp"

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <boost/json/serialize.hpp>

#include <cstdlib>
#include <mutex>
#include <set>
#include <thread>

namespace gateway {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;
namespace json = boost::json;
using test::FakeReply;
using test::FakeUpstream;
using test::GatewayTest;

const std::string kSender = test::address_of(test::kKey0);
constexpr unsigned kMaxAttempts = 2;

/// A node that estimates, prices (legacy: no eth_feeHistory), counts nonces from 0, takes
/// transactions and mines each at once.
class Node {
public:
    Node()
        : fake_(31337,
                [this](const std::string& m, const json::value& req) { return answer(m, req); }) {}
    std::string url() const { return fake_.url(); }
    std::size_t accepted() const {
        std::lock_guard lock(mu_);
        return mined_.size();
    }

private:
    std::optional<FakeReply> answer(const std::string& m, const json::value& req) {
        std::lock_guard lock(mu_);
        if (m == "eth_estimateGas") return FakeReply::ok("\"0x5208\"");
        if (m == "eth_gasPrice") return FakeReply::ok("\"0x3b9aca00\"");
        if (m == "eth_getTransactionCount") return FakeReply::ok("\"0x0\"");
        if (m == "eth_getTransactionByHash") return FakeReply::ok("null");
        if (m == "eth_sendRawTransaction") {
            const auto tx =
                eth::decode_transaction(*eth::from_hex(req.at("params").at(0).as_string()));
            mined_.insert(eth::to_hex(tx.hash));
            return FakeReply::ok("\"" + eth::to_hex(tx.hash) + "\"");
        }
        if (m == "eth_getTransactionReceipt") {
            const std::string h(req.at("params").at(0).as_string());
            if (!mined_.count(h)) return FakeReply::ok("null");
            return FakeReply::ok(fmt::format(
                R"({{"transactionHash":"{}","blockNumber":"0x10","blockHash":"0x{:064x}","status":"0x1"}})",
                h, 16));
        }
        return std::nullopt;
    }

    mutable std::mutex mu_;
    std::set<std::string> mined_;
    FakeUpstream fake_;
};

/// A signing service whose answer the test sets: a fixed reply, or (nullopt) signing.
class Service {
public:
    Service()
        : keys_(std::make_shared<custody::CustodyStub>(
              "keys", std::vector<eth::Bytes>{*eth::from_hex(test::kKey0)})),
          fake_(31337, [this](const std::string& m, const json::value& req) {
              std::optional<FakeReply> reply;
              {
                  std::lock_guard lock(mu_);
                  if (m == "eth_signTransaction") ++asked_;
                  reply = reply_;
              }
              if (m == "eth_signTransaction" && reply) return reply;
              return signs_(m, req);
          }) {}
    std::string url() const { return fake_.url(); }
    void answer(std::optional<FakeReply> reply) {
        std::lock_guard lock(mu_);
        reply_ = std::move(reply);
    }
    std::size_t asked() const {
        std::lock_guard lock(mu_);
        return asked_;
    }

private:
    std::shared_ptr<custody::CustodyStub> keys_;
    FakeUpstream::Script signs_ = test::web3signer(keys_);
    mutable std::mutex mu_;
    std::optional<FakeReply> reply_;
    std::size_t asked_ = 0;
    FakeUpstream fake_;
};

class ManagedSignerTest : public GatewayTest {
protected:
    /// The sender's key is held by `signer` ("vault": the remote service; "stub": the custody
    /// stub).
    void start_with(const std::string& signer) {
        ::setenv("MANAGED_SIGNER_TEST_KEY", test::kKey0.c_str(), 1);
        start({node.url()}, [&](config::Config& c) {
            c.signers.push_back(config::SignerConfig{
                .id = "vault", .type = "remote", .url = service.url(), .addresses = {kSender}});
            c.signers.back().timeout = 2s;
            c.signers.push_back(config::SignerConfig{.id = "stub",
                                                     .type = "custody-stub",
                                                     .stub_keys_env = {"MANAGED_SIGNER_TEST_KEY"}});
            auto& chain = c.chains[0];
            chain.accounts.push_back(config::AccountConfig{kSender, signer});
            chain.tx.poll_interval = 10ms;
            chain.tx.retry.max_attempts = kMaxAttempts;
            chain.tx.retry.backoff = 2ms;
        });
        wait_ready();
    }

    /// gateway_sendTransaction: the new transaction's id.
    std::string send() {
        const auto r = post(fmt::format(
            R"({{"jsonrpc":"2.0","id":1,"method":"gateway_sendTransaction","params":[{{"from":"{}","to":"0x000000000000000000000000000000000000dEaD","value":"0x1"}}]}})",
            kSender));
        const json::value v = json::parse(r.body);
        EXPECT_TRUE(v.as_object().contains("result")) << r.body;
        return v.as_object().contains("result") ? std::string(v.at("result").at("id").as_string())
                                                : "";
    }
    json::value managed(const std::string& id) {
        return json::parse(post(R"({"jsonrpc":"2.0","id":1,"method":"gateway_getTransaction",)"
                                R"("params":[")" +
                                id + R"("]})")
                               .body)
            .at("result");
    }
    std::string state_of(const std::string& id) {
        return std::string(managed(id).at("state").as_string());
    }
    std::string reason_of(const std::string& id) {
        return std::string(managed(id).at("reason").as_string());
    }
    /// Waits until `done`, or 10 s; false then.
    bool wait_for(const std::function<bool()>& done) {
        const auto deadline = std::chrono::steady_clock::now() + 10s;
        while (std::chrono::steady_clock::now() < deadline) {
            if (done()) return true;
            std::this_thread::sleep_for(5ms);
        }
        return done();
    }

    Node node;
    Service service;
};

TEST_F(ManagedSignerTest, C1_ASignerThatCannotSignNowKeepsTheTransactionQueuedUntilItCan) {
    // Down, then locked out, then without the key: each for more tries than retry.max_attempts
    // allows failures. (Awaiting an approval is a hold with a time limit: catalog row C2,
    // ManagedPolicy.C2_*.)
    service.answer(FakeReply::http(503, "down"));
    start_with("vault");
    const std::string id = send();
    const std::vector<std::pair<FakeReply, std::string>> outages = {
        {FakeReply::http(503, "down"), "HTTP 503"},
        {FakeReply::http(401, "unauthorized"), "HTTP 401"},
        {FakeReply::http(403, "forbidden"), "HTTP 403"},
        {FakeReply::http(404, "no such key"), "HTTP 404"},
        {FakeReply::rpc_error(-32000, "key not loaded"), "not ready: key not loaded"},
    };
    for (const auto& [reply, why] : outages) {
        service.answer(reply);
        const std::size_t before = service.asked();
        ASSERT_TRUE(wait_for([&] {
            return service.asked() >= before + kMaxAttempts + 1 &&
                   reason_of(id).find(why) != std::string::npos;
        })) << why
            << ": " << json::serialize(managed(id));
        EXPECT_EQ(state_of(id), "SIGNING") << why << ": " << json::serialize(managed(id));
        EXPECT_THAT(reason_of(id), HasSubstr("unavailable")) << why;
        EXPECT_THAT(reason_of(id), HasSubstr("nonce 0 kept")) << why;
    }
    EXPECT_EQ(node.accepted(), 0u);
    const std::string waiting = http_metrics();
    EXPECT_THAT(waiting, HasSubstr(R"(gateway_signer_ready{signer="vault"} 0)"));
    EXPECT_THAT(waiting, HasSubstr(R"(gateway_signing_requests_total{outcome="unavailable",)"
                                   R"(signer="vault"})"));

    // The signer is back: signed with the nonce it kept, sent and mined.
    service.answer(std::nullopt);
    ASSERT_TRUE(wait_for([&] { return state_of(id) == "COMPLETED"; }))
        << json::serialize(managed(id));
    EXPECT_EQ(node.accepted(), 1u);
    EXPECT_EQ(managed(id).at("nonce"), "0x0");
    EXPECT_THAT(http_metrics(), HasSubstr(R"(gateway_signer_ready{signer="vault"} 1)"));
}

TEST_F(ManagedSignerTest, APolicyRefusalFailsTheTransactionWithTheSignersReasonAtOnce) {
    service.answer(FakeReply::rpc_error(-32000, "Signing not permitted by policy: daily limit"));
    start_with("vault");
    const std::string id = send();
    ASSERT_TRUE(wait_for([&] { return state_of(id) == "FAILED"; })) << json::serialize(managed(id));
    EXPECT_THAT(reason_of(id), HasSubstr("Signing not permitted by policy: daily limit"));
    EXPECT_EQ(service.asked(), 1u) << "a no is not asked again";
    EXPECT_EQ(node.accepted(), 0u);
    EXPECT_THAT(http_metrics(), HasSubstr(R"(gateway_signing_requests_total{outcome="refused",)"
                                          R"(signer="vault"} 1)"));

    // Its nonce is handed out again: the next transaction, signed, takes nonce 0.
    service.answer(std::nullopt);
    const std::string next = send();
    ASSERT_TRUE(wait_for([&] { return state_of(next) == "COMPLETED"; }))
        << json::serialize(managed(next));
    EXPECT_EQ(managed(next).at("nonce"), "0x0");
}

TEST_F(ManagedSignerTest, ACustodyStubRefusalFailsTheTransactionWithItsReason) {
    start_with("stub");
    const auto faults =
        test::http_post(admin_port(), "/admin/signers/stub/faults", R"({"refuse_next": 1})");
    ASSERT_EQ(faults.status, 200u) << faults.body;
    const std::string id = send();
    ASSERT_TRUE(wait_for([&] { return state_of(id) == "FAILED"; })) << json::serialize(managed(id));
    EXPECT_THAT(reason_of(id), HasSubstr("refused to sign"));
}

TEST_F(ManagedSignerTest, AnAnswerThatIsNotJsonRpcIsAFailedTryAndADeadLetterWhenTheyRunOut) {
    service.answer(FakeReply::http(200, "<html>a portal</html>"));
    start_with("vault");
    const std::string id = send();
    ASSERT_TRUE(wait_for([&] { return state_of(id) == "DEAD_LETTER"; }))
        << json::serialize(managed(id));
    EXPECT_THAT(reason_of(id), HasSubstr("not JSON-RPC"));
    EXPECT_THAT(reason_of(id), HasSubstr("retries exhausted"));
    EXPECT_EQ(service.asked(), kMaxAttempts);
    EXPECT_THAT(http_metrics(), HasSubstr(R"(gateway_signing_requests_total{outcome="malformed",)"
                                          R"(signer="vault"} 2)"));
}

}  // namespace
}  // namespace gateway
