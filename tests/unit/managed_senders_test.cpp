// Managed senders in-process against their neighbours' fakes: the nodes (a gmock Forwarder) and
// custody (a gmock Signer that signs with the custody stub's keys unless told otherwise). What a
// sender asks the signer for, what it sends, and what each kind of signer answer does to the
// transaction, without a node, a socket or an HTTP request. The journal is the real one, in a
// temporary folder. Tests wait for what the fakes were asked, never for a time.

#include "gateway/eth/hex.hpp"
#include "gateway/eth/transaction.hpp"
#include "gateway/util/text.hpp"
#include "support/managed_rig.hpp"

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <atomic>
#include <mutex>
#include <vector>

namespace gateway {
namespace {

using namespace std::chrono_literals;
using ::testing::_;
using ::testing::HasSubstr;
namespace json = boost::json;
using test::answer_of;
using test::kManagedSender;
using test::kMaxAttempts;
using test::kPendingNonce;
using test::ManagedRig;
using test::sign_owned;

TEST(ManagedSenders, ASendIsSignedOnTheChainsPendingNonceAndItsAttemptIsWhatTheNodesAreSent) {
    ManagedRig rig;
    std::vector<eth::UnsignedTx> asked;
    EXPECT_CALL(rig.signer, sign(_, _, _))
        .WillOnce([&](const eth::UnsignedTx& tx, const eth::Address& from, auto deadline) {
            asked.push_back(tx);
            return rig.keys_.sign(tx, from, deadline);
        });
    rig.start();

    const jsonrpc::Reply reply = rig.send_and_wait();
    ASSERT_FALSE(reply.is_error()) << reply.error.message;

    ASSERT_EQ(asked.size(), 1u);
    EXPECT_EQ(asked[0].nonce, kPendingNonce);
    EXPECT_EQ(asked[0].chain_id, 31337u);
    EXPECT_EQ(eth::to_hex(*asked[0].to), "0x000000000000000000000000000000000000dead");
    EXPECT_EQ(asked[0].value, eth::Bytes{1});
    EXPECT_GE(asked[0].gas, 0x5208u);  // the estimate, with the margin
    // The hash answered is the one the nodes were sent, signed by the sender.
    ASSERT_TRUE(ManagedRig::wait_for([&] { return !rig.sent().empty(); }));
    const auto sent = eth::parse_transaction(*eth::from_hex(rig.sent().front()));
    ASSERT_TRUE(sent);
    EXPECT_EQ(*reply.result, "\"" + eth::to_hex(sent->hash) + "\"");
    EXPECT_EQ(eth::to_hex(sent->sender), util::lower(kManagedSender));
    EXPECT_EQ(sent->nonce, kPendingNonce);
}

// A gas limit below what any transaction costs is refused at once: nothing is estimated, signed
// or sent (a client's gas of 0 once made a reverting estimate read an error as a result).
TEST(ManagedSenders, AGasLimitBelowWhatAnyTransactionCostsIsRefusedAtOnce) {
    ManagedRig rig;
    EXPECT_CALL(rig.signer, sign(_, _, _)).Times(0);
    rig.start();
    for (const char* gas : {"0x0", "0x5207"}) {
        json::array params = ManagedRig::request();
        params[0].as_object()["gas"] = gas;
        const auto r = rig.io.run(
            rig.senders().send(params, "", true, std::chrono::steady_clock::now() + 10s));
        ASSERT_TRUE(r.reply.is_error()) << gas;
        EXPECT_EQ(r.reply.error.code, -32602) << gas;
        EXPECT_THAT(r.reply.error.message, HasSubstr("'gas' must be at least 0x5208")) << gas;
    }
    EXPECT_TRUE(rig.sent().empty());
}

TEST(ManagedSenders, ASignerThatCannotSignNowIsAskedAgainOnTheSameNonceUntilItCan) {
    ManagedRig rig;
    std::vector<std::uint64_t> nonces;
    std::mutex mu;
    EXPECT_CALL(rig.signer, sign(_, _, _))
        .Times(3)
        .WillRepeatedly([&](const eth::UnsignedTx& tx, const eth::Address& from, auto deadline) {
            std::lock_guard lock(mu);
            nonces.push_back(tx.nonce);
            if (nonces.size() < 3)
                return test::ready_awaitable(
                    answer_of(custody::Signed::Outcome::unavailable, "the key is locked"));
            return rig.keys_.sign(tx, from, deadline);
        });
    rig.start();

    const jsonrpc::Reply reply = rig.send_and_wait();
    ASSERT_FALSE(reply.is_error()) << reply.error.message;
    std::lock_guard lock(mu);
    EXPECT_EQ(nonces, (std::vector<std::uint64_t>{kPendingNonce, kPendingNonce, kPendingNonce}));
}

TEST(ManagedSenders, ASignersRefusalFailsTheTransactionWithItsReasonAndNothingIsSent) {
    ManagedRig rig;
    EXPECT_CALL(rig.signer, sign(_, _, _)).WillOnce([](auto&&...) {
        return test::ready_awaitable(
            answer_of(custody::Signed::Outcome::refused, "policy: 0xdead is not on the list"));
    });
    EXPECT_CALL(rig.pool, broadcast(_, _, _, _)).Times(0);
    rig.start();

    const std::string id = rig.send_queued();
    ASSERT_TRUE(
        ManagedRig::wait_for([&] { return rig.describe(id).at("state").as_string() == "FAILED"; }));
    EXPECT_THAT(std::string(rig.describe(id).at("reason").as_string()),
                HasSubstr("policy: 0xdead is not on the list"));
}

TEST(ManagedSenders, AnAnswerForAnotherTransactionIsNeverSentAndADeadLetterOnceTriesRunOut) {
    ManagedRig rig;
    std::atomic<int> asked{0};
    // Signed, but for another nonce than the one asked for.
    EXPECT_CALL(rig.signer, sign(_, _, _))
        .Times(static_cast<int>(kMaxAttempts))
        .WillRepeatedly([&](const eth::UnsignedTx& tx, const eth::Address& from, auto deadline) {
            ++asked;
            eth::UnsignedTx other = tx;
            other.nonce = tx.nonce + 7;
            return sign_owned(rig.keys_, other, from, deadline);
        });
    EXPECT_CALL(rig.pool, broadcast(_, _, _, _)).Times(0);
    rig.start();

    const std::string id = rig.send_queued();
    ASSERT_TRUE(ManagedRig::wait_for([&] {
        return rig.describe(id).at("state").as_string() == "DEAD_LETTER";
    })) << json::serialize(rig.describe(id));
    EXPECT_EQ(asked.load(), static_cast<int>(kMaxAttempts));
    EXPECT_THAT(std::string(rig.describe(id).at("reason").as_string()),
                HasSubstr("other than the one asked for"));
}

}  // namespace
}  // namespace gateway
