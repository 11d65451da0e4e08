// Catalog row C2 (policy blocks a transaction → pending approval): the managed senders' policy
// in-process, against the fakes of support/managed_rig.hpp and the real journal. A transaction
// that breaks a rule is held in PENDING_APPROVAL before it takes a nonce, so the sender's later
// ones go on; an operator approves it (on to the next nonce, and mined) or rejects it
// (CANCELLED); one nobody decides on expires (on an injected clock); the daily sum is read from
// the journal in the operation that records the transaction, so concurrent sends cannot both fit
// under it; held transactions outlive a restart; a sender's own policy replaces the chain's. A
// signer's own hold keeps the nonce, later transactions wait behind it, and an approval that
// never comes gives the nonce up. What became of each hold is counted, by who held it.

#include "gateway/eth/hex.hpp"
#include "gateway/eth/transaction.hpp"
#include "gateway/metrics/metrics.hpp"
#include "gateway/util/clock.hpp"
#include "gateway/util/text.hpp"
#include "support/fake_policy_service.hpp"
#include "support/managed_rig.hpp"

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <atomic>
#include <future>
#include <string>
#include <vector>

namespace gateway {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;
namespace json = boost::json;
using test::kPendingNonce;
using test::ManagedRig;
using test::RigOptions;

config::PolicyConfig max_value(std::string wei) {
    config::PolicyConfig p;
    p.max_value_wei = std::move(wei);
    return p;
}

std::string state_of(ManagedRig& rig, const std::string& id) {
    const json::value v = rig.describe(id);
    return v.is_object() ? std::string(v.at("state").as_string()) : "";
}

// The nonce of each raw transaction the nodes were sent, in order.
std::vector<std::uint64_t> sent_nonces(const ManagedRig& rig) {
    std::vector<std::uint64_t> out;
    for (const auto& raw : rig.sent())
        if (auto tx = eth::parse_transaction(*eth::from_hex(raw))) out.push_back(tx->nonce);
    return out;
}

// The state gateway_sendTransaction of `value` wei answers with: what the policy made of it.
std::string state_on_send(ManagedRig& rig, const char* value) {
    const auto r = rig.io.run(rig.senders().send(ManagedRig::request(value), "", false,
                                                 std::chrono::steady_clock::now() + 10s));
    EXPECT_FALSE(r.reply.is_error()) << r.reply.error.message;
    if (r.reply.is_error()) return "";
    return std::string(json::parse(*r.reply.result).at("state").as_string());
}

txm::ActionResult decide(ManagedRig& rig, const std::string& id, bool approve, std::string by,
                         std::string reason) {
    return rig.io.run(rig.senders().decide(id, approve, std::move(by), std::move(reason)));
}

bool history_has(ManagedRig& rig, const std::string& id, std::string_view text) {
    const json::value v = rig.describe(id);
    return json::serialize(v.at("history")).find(text) != std::string::npos;
}

TEST(ManagedPolicy, C2_ATransactionAboveTheValueLimitIsHeldWithoutANonceAndLaterOnesGoOn) {
    ManagedRig rig(RigOptions{max_value("0")});
    rig.start();

    // eth_sendTransaction answers at once: there is no hash until somebody decides.
    const auto held = rig.io.run(rig.senders().send(ManagedRig::request("0x1"), "", true,
                                                    std::chrono::steady_clock::now() + 10s));
    ASSERT_TRUE(held.reply.is_error());
    EXPECT_THAT(held.reply.error.message, HasSubstr("held for an operator's approval"));
    EXPECT_THAT(held.reply.error.message, HasSubstr("max_value_wei"));
    EXPECT_THAT(held.reply.error.message, HasSubstr("it moves 1 wei, above max_value_wei 0"));
    ASSERT_TRUE(held.reply.error.data && held.reply.error.data->is_object());
    const std::string id(held.reply.error.data->at("id").as_string());
    EXPECT_EQ(held.reply.error.data->at("state").as_string(), "PENDING_APPROVAL");

    // A later transaction within the rules takes the chain's pending nonce and is sent.
    const auto later = rig.io.run(rig.senders().send(ManagedRig::request("0x0"), "", true,
                                                     std::chrono::steady_clock::now() + 10s));
    ASSERT_FALSE(later.reply.is_error()) << later.reply.error.message;
    ASSERT_TRUE(ManagedRig::wait_for([&] { return rig.sent().size() == 1; }));
    EXPECT_EQ(sent_nonces(rig), (std::vector<std::uint64_t>{kPendingNonce}));

    // The held one has no nonce, is listed for approval, and stays held.
    const json::value view = rig.describe(id);
    EXPECT_EQ(view.at("state").as_string(), "PENDING_APPROVAL");
    EXPECT_TRUE(view.at("nonce").is_null());
    const json::array approvals = rig.senders().approvals();
    ASSERT_EQ(approvals.size(), 1u);
    EXPECT_EQ(approvals[0].at("id").as_string(), id);
    EXPECT_THAT(std::string(approvals[0].at("reason").as_string()), HasSubstr("max_value_wei"));
    EXPECT_TRUE(approvals[0].as_object().contains("expiresAt"));
}

TEST(ManagedPolicy, AReloadedPolicyJudgesTheNextTransactionsAndHeldOnesStayHeld) {
    ManagedRig rig(RigOptions{max_value("0")});
    rig.start();
    const auto send = [&](const char* value) {
        return rig.io.run(rig.senders().send(ManagedRig::request(value), "", true,
                                             std::chrono::steady_clock::now() + 10s));
    };
    const auto first = send("0x5");
    ASSERT_TRUE(first.reply.is_error());
    const std::string held(first.reply.error.data->at("id").as_string());

    // A limit of 10 wei: 5 goes through now, 11 is held by the new rule.
    config::ChainConfig reloaded = rig.pool.chain_config;
    reloaded.policy = max_value("10");
    rig.senders().reconfigure_policies(rig.senders().stage_policies(reloaded));
    const auto within = send("0x5");
    EXPECT_FALSE(within.reply.is_error()) << within.reply.error.message;
    const auto above = send("0xb");
    ASSERT_TRUE(above.reply.is_error());
    EXPECT_THAT(above.reply.error.message, HasSubstr("above max_value_wei 10"));
    // Judged under the old rule, the first stays held for a person.
    EXPECT_EQ(state_of(rig, held), "PENDING_APPROVAL");

    // No policy at all: anything goes.
    reloaded.policy.reset();
    rig.senders().reconfigure_policies(rig.senders().stage_policies(reloaded));
    EXPECT_FALSE(send("0xffff").reply.is_error());
    ASSERT_TRUE(ManagedRig::wait_for([&] { return rig.sent().size() == 2; }));
}

// A sender's own policy replaces the chain's whole (not merged with it), at start and on reload.
TEST(ManagedPolicy, C2_ASendersOwnPolicyLetsThroughWhatTheChainsWouldHold) {
    config::PolicyConfig chain = max_value("0");
    chain.daily_value_wei = "1";
    RigOptions options{chain};
    options.account_policy = max_value("10");
    ManagedRig rig(options);
    rig.start();
    // Above the chain's limits (value and day's sum), within the sender's: queued and sent.
    EXPECT_EQ(state_on_send(rig, "0x5"), "QUEUED");
    EXPECT_EQ(state_on_send(rig, "0x5"), "QUEUED");
    ASSERT_TRUE(ManagedRig::wait_for([&] { return rig.sent().size() == 2; }));
    // Above the sender's own limit: held by its rule, not the chain's.
    const std::string held = rig.send_queued("0xb");
    EXPECT_EQ(state_of(rig, held), "PENDING_APPROVAL");
    EXPECT_THAT(std::string(rig.describe(held).at("reason").as_string()),
                HasSubstr("it moves 11 wei, above max_value_wei 10"));

    // A reload keeps the sender's own policy in place of the chain's.
    config::ChainConfig reloaded = rig.pool.chain_config;
    reloaded.accounts[0].policy = max_value("20");
    rig.senders().reconfigure_policies(rig.senders().stage_policies(reloaded));
    EXPECT_EQ(state_on_send(rig, "0xf"), "QUEUED");
    ASSERT_TRUE(ManagedRig::wait_for([&] { return rig.sent().size() == 3; }));
    EXPECT_EQ(state_of(rig, held), "PENDING_APPROVAL");
}

TEST(ManagedPolicy, C2_ASendersOwnPolicyHoldsWhatTheChainsWouldLetThrough) {
    RigOptions options{max_value("1000")};
    options.account_policy = max_value("0");
    ManagedRig rig(options);
    rig.start();
    const std::string held = rig.send_queued("0x1");
    EXPECT_EQ(state_of(rig, held), "PENDING_APPROVAL");
    EXPECT_THAT(std::string(rig.describe(held).at("reason").as_string()),
                HasSubstr("it moves 1 wei, above max_value_wei 0"));
    EXPECT_EQ(state_on_send(rig, "0x0"), "QUEUED");
    ASSERT_TRUE(ManagedRig::wait_for([&] { return rig.sent().size() == 1; }));
    EXPECT_EQ(state_of(rig, held), "PENDING_APPROVAL");
}

TEST(ManagedPolicy, C2_AnApprovedTransactionTakesTheNextNonceAndIsMinedWithWhoApprovedIt) {
    ManagedRig rig(RigOptions{max_value("0")});
    rig.start();
    const std::string id = rig.send_queued("0x1");
    EXPECT_EQ(state_of(rig, id), "PENDING_APPROVAL");
    rig.send_queued("0x0");
    ASSERT_TRUE(ManagedRig::wait_for([&] { return rig.sent().size() == 1; }));

    const auto approved = decide(rig, id, true, "alice", "payroll, ticket 42");
    ASSERT_EQ(approved.outcome, txm::ActionResult::Outcome::done) << json::serialize(approved.body);
    EXPECT_EQ(approved.body.at("state").as_string(), "QUEUED");
    ASSERT_TRUE(ManagedRig::wait_for([&] {
        const auto st = state_of(rig, id);
        return st == "CONFIRMING" || st == "COMPLETED";
    })) << json::serialize(rig.describe(id));
    EXPECT_EQ(sent_nonces(rig), (std::vector<std::uint64_t>{kPendingNonce, kPendingNonce + 1}));
    EXPECT_TRUE(history_has(rig, id, "approved by alice: payroll, ticket 42"));
    EXPECT_TRUE(rig.senders().approvals().empty());

    // Decided once: a second decision is a conflict that says why.
    const auto again = decide(rig, id, false, "bob", "");
    EXPECT_EQ(again.outcome, txm::ActionResult::Outcome::conflict);
    EXPECT_THAT(json::serialize(again.body), HasSubstr("only PENDING_APPROVAL"));
}

TEST(ManagedPolicy, C2_ARejectedTransactionIsCancelledNeverSignedAndCannotBeApprovedAfter) {
    metrics::Metrics metrics;
    RigOptions options{max_value("0")};
    options.metrics = &metrics;
    ManagedRig rig(options);
    EXPECT_CALL(rig.signer, sign(::testing::_, ::testing::_, ::testing::_)).Times(0);
    rig.start();
    const std::string id = rig.send_queued("0x1");

    const auto rejected = decide(rig, id, false, "bob", "not in the budget");
    ASSERT_EQ(rejected.outcome, txm::ActionResult::Outcome::done) << json::serialize(rejected.body);
    EXPECT_EQ(state_of(rig, id), "CANCELLED");
    EXPECT_TRUE(history_has(rig, id, "rejected by bob: not in the budget"));
    EXPECT_EQ(decide(rig, id, true, "alice", "").outcome, txm::ActionResult::Outcome::conflict);
    EXPECT_EQ(decide(rig, "gtx-000000000000000000000000", true, "alice", "").outcome,
              txm::ActionResult::Outcome::not_found);
    EXPECT_TRUE(rig.sent().empty());
    const std::string text = metrics.render();
    EXPECT_THAT(text,
                HasSubstr("gateway_managed_approvals_total{chain=\"devnet\",held_by=\"policy\","
                          "outcome=\"held\"} 1"));
    EXPECT_THAT(text,
                HasSubstr("gateway_managed_approvals_total{chain=\"devnet\",held_by=\"policy\","
                          "outcome=\"rejected\"} 1"));
    EXPECT_THAT(text, ::testing::Not(HasSubstr("outcome=\"approved\"")));
}

TEST(ManagedPolicy, C2_ATransactionNobodyDecidesOnIsCancelledOnceApprovalTtlPasses) {
    util::ManualClock clock;
    config::PolicyConfig policy = max_value("0");
    policy.approval_ttl = 60'000ms;
    RigOptions options{policy};
    options.clock = &clock;
    metrics::Metrics metrics;
    options.metrics = &metrics;
    ManagedRig rig(options);
    rig.start();
    const std::string id = rig.send_queued("0x1");
    // Rounds go by (every 10 ms of real time) and it stays held until the clock passes the ttl.
    std::this_thread::sleep_for(50ms);
    EXPECT_EQ(state_of(rig, id), "PENDING_APPROVAL");
    clock.advance(59'000ms);
    std::this_thread::sleep_for(50ms);
    EXPECT_EQ(state_of(rig, id), "PENDING_APPROVAL");
    clock.advance(1'001ms);
    ASSERT_TRUE(ManagedRig::wait_for([&] { return state_of(rig, id) == "CANCELLED"; }));
    EXPECT_TRUE(history_has(rig, id, "not approved within approval_ttl_ms (60000 ms)"));
    EXPECT_TRUE(rig.senders().approvals().empty());
    EXPECT_TRUE(rig.sent().empty());
    EXPECT_THAT(metrics.render(),
                HasSubstr("gateway_managed_approvals_total{chain=\"devnet\",held_by=\"policy\","
                          "outcome=\"expired\"} 1"));
}

// The daily sum is read in the journal operation that records each transaction: five sends at
// once under a limit of two transactions' worth let exactly two through.
TEST(ManagedPolicy, C2_TheDailySumLetsThroughWhatFitsEvenWhenSendsComeAtOnce) {
    config::PolicyConfig policy;
    policy.daily_value_wei = "2000";
    ManagedRig rig(RigOptions{policy});
    rig.start();
    // send() takes its params by reference: they outlive the coroutines.
    const json::value params = ManagedRig::request("0x3e8");
    std::vector<std::future<txm::ManagedReply>> replies;
    for (int i = 0; i < 5; ++i)
        replies.push_back(boost::asio::co_spawn(
            rig.io.ioc,
            rig.senders().send(params, "", false, std::chrono::steady_clock::now() + 10s),
            boost::asio::use_future));
    int queued = 0;
    int held = 0;
    for (auto& f : replies) {
        const auto r = f.get();
        ASSERT_FALSE(r.reply.is_error()) << r.reply.error.message;
        const std::string state(json::parse(*r.reply.result).at("state").as_string());
        if (state == "PENDING_APPROVAL") ++held;
        if (state == "QUEUED") ++queued;
    }
    EXPECT_EQ(queued, 2);
    EXPECT_EQ(held, 3);
    const json::array approvals = rig.senders().approvals();
    ASSERT_EQ(approvals.size(), 3u);
    EXPECT_THAT(std::string(approvals[0].at("reason").as_string()),
                HasSubstr("it moves 1000 wei after 2000 wei in the last 24 hours, above "
                          "daily_value_wei 2000"));
    // A transaction that moves nothing is not held by the day's sum.
    EXPECT_EQ(state_of(rig, rig.send_queued("0x0")), "QUEUED");

    // Rejected ones do not count; an approved one counts from its approval: the next is held.
    ASSERT_EQ(decide(rig, std::string(approvals[0].at("id").as_string()), false, "bob", "").outcome,
              txm::ActionResult::Outcome::done);
    ASSERT_EQ(
        decide(rig, std::string(approvals[1].at("id").as_string()), true, "alice", "").outcome,
        txm::ActionResult::Outcome::done);
    const std::string next = rig.send_queued("0x1");
    EXPECT_EQ(state_of(rig, next), "PENDING_APPROVAL");
    EXPECT_THAT(std::string(rig.describe(next).at("reason").as_string()),
                HasSubstr("after 3000 wei in the last 24 hours"));
}

TEST(ManagedPolicy, C2_AHeldTransactionOutlivesARestartAndIsApprovedAfterIt) {
    std::string dir;
    std::string id;
    std::string held_since;
    {
        ManagedRig first(RigOptions{max_value("0")});
        dir = first.dir;
        first.start();
        id = first.send_queued("0x1");
        const json::array approvals = first.senders().approvals();
        ASSERT_EQ(approvals.size(), 1u);
        held_since = std::string(approvals[0].at("heldSince").as_string());
        first.shutdown();
    }
    RigOptions options{max_value("0")};
    options.dir = dir;
    ManagedRig second(options);
    second.start();
    const json::array approvals = second.senders().approvals();
    ASSERT_EQ(approvals.size(), 1u);
    EXPECT_EQ(approvals[0].at("id").as_string(), id);
    EXPECT_EQ(approvals[0].at("heldSince").as_string(), held_since);  // not restarted
    ASSERT_EQ(decide(second, id, true, "alice", "").outcome, txm::ActionResult::Outcome::done);
    ASSERT_TRUE(ManagedRig::wait_for([&] {
        const auto st = state_of(second, id);
        return st == "CONFIRMING" || st == "COMPLETED";
    })) << json::serialize(second.describe(id));
    EXPECT_EQ(sent_nonces(second), (std::vector<std::uint64_t>{kPendingNonce}));
}

// An operator's retry of a failed transaction runs the policy again: what broke no rule then may
// break one now.
TEST(ManagedPolicy, C2_ARetryIsJudgedAgainByThePolicy) {
    config::PolicyConfig policy;
    policy.daily_value_wei = "1";
    ManagedRig rig(RigOptions{policy});
    EXPECT_CALL(rig.signer, sign(::testing::_, ::testing::_, ::testing::_))
        .WillOnce([](auto&&...) {
            return test::ready_awaitable(
                test::answer_of(custody::Signed::Outcome::refused, "not now"));
        })
        .WillRepeatedly([&](const eth::UnsignedTx& tx, const eth::Address& from, auto deadline) {
            return rig.keys_.sign(tx, from, deadline);
        });
    rig.start();
    const std::string first = rig.send_queued("0x1");
    ASSERT_TRUE(ManagedRig::wait_for([&] { return state_of(rig, first) == "FAILED"; }));
    // Failed before any attempt was signed: it does not count, so the next 1 wei fits.
    const std::string second = rig.send_queued("0x1");
    ASSERT_TRUE(ManagedRig::wait_for([&] {
        const auto st = state_of(rig, second);
        return st == "CONFIRMING" || st == "COMPLETED";
    }));
    // The day's 1 wei is spent: the retry of the first is held.
    const auto retried = rig.io.run(rig.senders().retry(first));
    ASSERT_EQ(retried.outcome, txm::ActionResult::Outcome::done) << json::serialize(retried.body);
    EXPECT_EQ(retried.body.at("state").as_string(), "PENDING_APPROVAL");
    EXPECT_EQ(state_of(rig, first), "PENDING_APPROVAL");
    EXPECT_THAT(std::string(rig.describe(first).at("reason").as_string()),
                HasSubstr("retried by an operator, and held for approval"));
    EXPECT_EQ(rig.senders().approvals().size(), 1u);
}

// Held transactions are counted apart from the rest, against the same cap: a flood of ones that
// break the policy is refused, and the sender's other traffic is not.
TEST(ManagedPolicy, C2_AFloodOfHeldTransactionsIsCappedWithoutBlockingTheSendersOthers) {
    RigOptions options{max_value("0")};
    options.max_queued_per_sender = 2;
    ManagedRig rig(options);
    rig.start();
    rig.send_queued("0x1");
    rig.send_queued("0x2");
    const auto third = rig.io.run(rig.senders().send(ManagedRig::request("0x3"), "", false,
                                                     std::chrono::steady_clock::now() + 10s));
    ASSERT_TRUE(third.reply.is_error());
    EXPECT_EQ(third.reply.error.code, -32005);
    EXPECT_THAT(third.reply.error.message, HasSubstr("2 transactions held for approval"));
    EXPECT_EQ(rig.senders().approvals().size(), 2u);
    // Within the rules: taken, signed and sent.
    const std::string allowed = rig.send_queued("0x0");
    ASSERT_FALSE(allowed.empty());
    ASSERT_TRUE(ManagedRig::wait_for([&] { return rig.sent().size() == 1; }));
}

// The signer answers "pending approval" for 1-wei transfers (its own policy) until `approved`,
// and signs everything else.
void hold_one_wei_at_the_signer(ManagedRig& rig, std::atomic<bool>& approved,
                                std::atomic<int>& asked_for_others) {
    EXPECT_CALL(rig.signer, sign(::testing::_, ::testing::_, ::testing::_))
        .WillRepeatedly([&](const eth::UnsignedTx& tx, const eth::Address& from, auto deadline) {
            if (tx.value == eth::Bytes{1} && !approved)
                return test::ready_awaitable(test::answer_of(
                    custody::Signed::Outcome::pending_approval, "awaiting approval (1 of 2)"));
            if (tx.value != eth::Bytes{1}) ++asked_for_others;
            return rig.keys_.sign(tx, from, deadline);
        });
}

TEST(ManagedPolicy, C2_ASignersHoldKeepsTheNonceAndLaterOnesWaitBehindItUntilItSigns) {
    metrics::Metrics metrics;
    RigOptions options;
    options.metrics = &metrics;
    ManagedRig rig(options);
    std::atomic<bool> approved{false};
    std::atomic<int> others{0};
    hold_one_wei_at_the_signer(rig, approved, others);
    rig.start();
    const std::string held = rig.send_queued("0x1");
    ASSERT_TRUE(ManagedRig::wait_for([&] { return !rig.senders().approvals().empty(); }));
    const json::array approvals = rig.senders().approvals();
    EXPECT_EQ(approvals[0].at("id").as_string(), held);
    EXPECT_EQ(approvals[0].at("heldBy").as_string(), "signer");
    EXPECT_EQ(approvals[0].at("nonce").to_number<std::uint64_t>(), kPendingNonce);
    EXPECT_EQ(state_of(rig, held), "SIGNING");
    EXPECT_THAT(std::string(rig.describe(held).at("reason").as_string()),
                HasSubstr("awaiting approval (1 of 2)"));
    EXPECT_TRUE(history_has(rig, held, "held for approval by its signer"));
    // Decided at the signer, not here.
    const auto decided = decide(rig, held, true, "alice", "");
    EXPECT_EQ(decided.outcome, txm::ActionResult::Outcome::conflict);
    EXPECT_THAT(json::serialize(decided.body), HasSubstr("held by its signer"));

    // A later transaction takes the next nonce but is not signed while the earlier one waits.
    const std::string later = rig.send_queued("0x0");
    ASSERT_TRUE(ManagedRig::wait_for([&] { return state_of(rig, later) == "SIGNING"; }));
    std::this_thread::sleep_for(100ms);  // rounds go by (every 10 ms)
    EXPECT_EQ(others.load(), 0);
    EXPECT_TRUE(rig.sent().empty());

    approved = true;
    ASSERT_TRUE(ManagedRig::wait_for([&] { return rig.sent().size() == 2; }));
    EXPECT_EQ(sent_nonces(rig), (std::vector<std::uint64_t>{kPendingNonce, kPendingNonce + 1}));
    EXPECT_TRUE(rig.senders().approvals().empty());
    const std::string text = metrics.render();
    EXPECT_THAT(text,
                HasSubstr("gateway_managed_approvals_total{chain=\"devnet\",held_by=\"signer\","
                          "outcome=\"held\"} 1"));
    EXPECT_THAT(text,
                HasSubstr("gateway_managed_approvals_total{chain=\"devnet\",held_by=\"signer\","
                          "outcome=\"approved\"} 1"));
}

TEST(ManagedPolicy, C2_ASignersApprovalThatNeverComesCancelsItAndItsNonceIsFilled) {
    util::ManualClock clock;
    config::PolicyConfig policy;  // no rules: only the time a signer's hold may take
    policy.approval_ttl = 60'000ms;
    RigOptions options{policy};
    options.clock = &clock;
    metrics::Metrics metrics;
    options.metrics = &metrics;
    ManagedRig rig(options);
    std::atomic<bool> approved{false};
    std::atomic<int> others{0};
    hold_one_wei_at_the_signer(rig, approved, others);
    rig.start();
    const std::string held = rig.send_queued("0x1");
    ASSERT_TRUE(ManagedRig::wait_for([&] { return !rig.senders().approvals().empty(); }));
    const std::string later = rig.send_queued("0x0");
    ASSERT_TRUE(ManagedRig::wait_for([&] { return state_of(rig, later) == "SIGNING"; }));
    clock.advance(59'000ms);
    std::this_thread::sleep_for(50ms);
    EXPECT_EQ(state_of(rig, held), "SIGNING");

    clock.advance(1'001ms);
    ASSERT_TRUE(ManagedRig::wait_for([&] { return state_of(rig, held) == "CANCELLED"; }));
    EXPECT_THAT(std::string(rig.describe(held).at("reason").as_string()),
                HasSubstr("approval did not come within approval_ttl_ms (60000 ms)"));
    // Its nonce went to a zero-value self-send (the later one had the next), and both are sent.
    ASSERT_TRUE(ManagedRig::wait_for([&] { return rig.sent().size() == 2; }));
    std::vector<std::uint64_t> nonces = sent_nonces(rig);
    std::sort(nonces.begin(), nonces.end());
    EXPECT_EQ(nonces, (std::vector<std::uint64_t>{kPendingNonce, kPendingNonce + 1}));
    for (const auto& raw : rig.sent()) {
        const auto tx = eth::parse_transaction(*eth::from_hex(raw));
        ASSERT_TRUE(tx);
        if (tx->nonce == kPendingNonce) {
            EXPECT_EQ(tx->to, tx->sender);  // the filler
            EXPECT_TRUE(tx->value.empty() || tx->value == "0x0");
        }
    }
    const std::string text = metrics.render();
    EXPECT_THAT(text,
                HasSubstr("gateway_managed_approvals_total{chain=\"devnet\",held_by=\"signer\","
                          "outcome=\"expired\"} 1"));
    EXPECT_THAT(text, ::testing::Not(HasSubstr("outcome=\"approved\"")));
}

TEST(ManagedPolicy, C2_ASignersHoldOutlivesARestart) {
    std::string dir;
    std::string held_since;
    std::string id;
    std::atomic<bool> approved{false};
    std::atomic<int> others{0};
    {
        ManagedRig first;
        dir = first.dir;
        hold_one_wei_at_the_signer(first, approved, others);
        first.start();
        id = first.send_queued("0x1");
        ASSERT_TRUE(ManagedRig::wait_for([&] { return !first.senders().approvals().empty(); }));
        held_since = std::string(first.senders().approvals()[0].at("heldSince").as_string());
        first.shutdown();
    }
    std::this_thread::sleep_for(1100ms);  // heldSince has a resolution of seconds
    RigOptions options;
    options.dir = dir;
    ManagedRig second(options);
    hold_one_wei_at_the_signer(second, approved, others);
    second.start();
    ASSERT_TRUE(ManagedRig::wait_for([&] { return !second.senders().approvals().empty(); }));
    const json::array approvals = second.senders().approvals();
    EXPECT_EQ(approvals[0].at("id").as_string(), id);
    EXPECT_EQ(approvals[0].at("heldBy").as_string(), "signer");
    EXPECT_EQ(approvals[0].at("heldSince").as_string(), held_since);  // not restarted
    approved = true;
    ASSERT_TRUE(ManagedRig::wait_for([&] { return second.sent().size() == 1; }));
    EXPECT_EQ(sent_nonces(second), (std::vector<std::uint64_t>{kPendingNonce}));
}

// ---------------------------------------------------------------------------------------------
// The outside policy service (its fault-injectable stand-in: support/fake_policy_service.hpp).

config::PolicyConfig with_service(const test::FakePolicyService& service,
                                  std::chrono::milliseconds timeout = 2'000ms) {
    config::PolicyConfig p;
    p.service = config::PolicyConfig::Service{service.url(), timeout};
    return p;
}

TEST(ManagedPolicy, C2_ThePolicyServicesAnswerDecidesWhatTheRulesLetThrough) {
    test::FakePolicyService service;
    service.set_rule([](const json::object& request) {
        const auto& value = request.at("transaction").at("value").as_string();
        if (value == "0x2")
            return test::FakePolicyService::Decision{"hold", "a second pair of eyes"};
        if (value == "0x3")
            return test::FakePolicyService::Decision{"deny", "sanctioned recipient"};
        return test::FakePolicyService::Decision{"allow", ""};
    });
    config::PolicyConfig policy = with_service(service);
    policy.max_value_wei = "5";
    metrics::Metrics metrics;
    RigOptions options{policy};
    options.metrics = &metrics;
    ManagedRig rig(options);
    rig.start();

    // Allowed: eth_sendTransaction waits through the service's answer and gets the hash.
    const jsonrpc::Reply allowed = rig.send_and_wait();
    ASSERT_FALSE(allowed.is_error()) << allowed.error.message;
    const std::string held = rig.send_queued("0x2");
    const std::string denied = rig.send_queued("0x3");
    ASSERT_TRUE(ManagedRig::wait_for([&] {
        return state_of(rig, denied) == "FAILED" &&
               std::string(rig.describe(held).at("reason").as_string()).find("eyes") !=
                   std::string::npos;
    })) << json::serialize(rig.describe(held));
    EXPECT_EQ(state_of(rig, held), "PENDING_APPROVAL");
    EXPECT_THAT(std::string(rig.describe(held).at("reason").as_string()),
                HasSubstr("held for approval: the policy service: a second pair of eyes"));
    EXPECT_THAT(std::string(rig.describe(denied).at("reason").as_string()),
                HasSubstr("denied by the policy service: sanctioned recipient"));
    const json::array approvals = rig.senders().approvals();
    ASSERT_EQ(approvals.size(), 1u);
    EXPECT_EQ(approvals[0].at("heldBy").as_string(), "policy");
    // The rules come first: what they hold is not sent to the service.
    const std::size_t asked = service.asked();
    EXPECT_EQ(state_of(rig, rig.send_queued("0x6")), "PENDING_APPROVAL");
    EXPECT_EQ(service.asked(), asked);
    // What the service was sent.
    const json::value first = service.requests().front();
    EXPECT_EQ(first.at("chain").as_string(), "devnet");
    EXPECT_EQ(first.at("chainId").to_number<std::uint64_t>(), 31337u);
    EXPECT_EQ(first.at("from").as_string(), util::lower(test::kManagedSender));
    EXPECT_EQ(first.at("transaction").at("value").as_string(), "0x1");
    EXPECT_THAT(std::string(first.at("id").as_string()), HasSubstr("gtx-"));
    // The service's hold is decided by a person like any other; only the allowed one was sent.
    ASSERT_EQ(decide(rig, held, true, "alice", "checked").outcome,
              txm::ActionResult::Outcome::done);
    ASSERT_TRUE(ManagedRig::wait_for([&] { return rig.sent().size() == 2; }));
    // Counted by who held each: the service's deny and hold, the rules' hold.
    const std::string text = metrics.render();
    EXPECT_THAT(text,
                HasSubstr("gateway_managed_approvals_total{chain=\"devnet\",held_by=\"service\","
                          "outcome=\"denied\"} 1"));
    EXPECT_THAT(text,
                HasSubstr("gateway_managed_approvals_total{chain=\"devnet\",held_by=\"service\","
                          "outcome=\"held\"} 1"));
    EXPECT_THAT(text,
                HasSubstr("gateway_managed_approvals_total{chain=\"devnet\",held_by=\"policy\","
                          "outcome=\"held\"} 1"));
}

TEST(ManagedPolicy, C2_APolicyServiceThatCannotAnswerHoldsTheTransactionAndIsAskedAgain) {
    test::FakePolicyService service;
    service.set_down(true);
    std::string dir;
    std::string id;
    {
        ManagedRig first(RigOptions{with_service(service, 200ms)});
        dir = first.dir;
        first.start();
        // eth_sendTransaction waits for the answer until its deadline: accepted, not signed.
        const auto waited = first.io.run(first.senders().send(
            ManagedRig::request("0x1"), "", true, std::chrono::steady_clock::now() + 300ms));
        ASSERT_TRUE(waited.reply.is_error());
        EXPECT_THAT(waited.reply.error.message, HasSubstr("accepted but not signed in time"));
        id = std::string(waited.reply.error.data->at("id").as_string());
        const auto reason = [&] {
            return std::string(first.describe(id).at("reason").as_string());
        };
        ASSERT_TRUE(ManagedRig::wait_for([&] {
            return reason().find("answered HTTP 503") != std::string::npos;
        })) << reason();
        const std::size_t before = service.asked();
        ASSERT_TRUE(ManagedRig::wait_for([&] { return service.asked() >= before + 2; }));
        EXPECT_EQ(first.senders().approvals()[0].at("heldBy").as_string(), "service");

        service.set_down(false);
        service.set_nonsense(true);
        ASSERT_TRUE(ManagedRig::wait_for([&] {
            return reason().find("without a decision") != std::string::npos;
        })) << reason();
        service.set_nonsense(false);
        service.set_delay(1'000ms);
        ASSERT_TRUE(ManagedRig::wait_for([&] {
            return reason().find("did not answer in time") != std::string::npos;
        })) << reason();
        EXPECT_EQ(state_of(first, id), "PENDING_APPROVAL");
        EXPECT_TRUE(first.sent().empty());
        first.shutdown();
    }
    // After a restart it is asked again, and its answer lets the transaction go.
    service.set_delay(0ms);
    RigOptions options{with_service(service, 200ms)};
    options.dir = dir;
    ManagedRig second(options);
    second.start();
    ASSERT_TRUE(ManagedRig::wait_for([&] { return second.sent().size() == 1; }))
        << json::serialize(second.describe(id));
    EXPECT_THAT(json::serialize(second.describe(id).at("history")),
                HasSubstr("allowed by the policy service"));
}

}  // namespace
}  // namespace gateway
