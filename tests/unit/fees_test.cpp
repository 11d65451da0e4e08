// The transaction manager's pure decisions: the fee bump of a replacement (what geth accepts, caps,
// saturation), the fee estimate from eth_feeHistory and the starting fees, the gas limit, how a
// node's write errors are read, and nonce reconciliation.

#include "gateway/txm/fees.hpp"
#include "gateway/txm/nonce.hpp"
#include "gateway/upstream/errors.hpp"

#include <gtest/gtest.h>
#include <boost/json/parse.hpp>

#include <limits>
#include <stdexcept>
#include <string>

namespace gateway {
namespace {

using txm::Bump;
using txm::FeeCaps;
using txm::Fees;

constexpr std::uint64_t kMax = std::numeric_limits<std::uint64_t>::max();
constexpr std::uint64_t kGwei = 1'000'000'000;
constexpr FeeCaps kNoCaps{};

Fees dynamic(std::uint64_t max_fee, std::uint64_t tip) {
    Fees f;
    f.max_fee_per_gas = max_fee;
    f.max_priority_fee_per_gas = tip;
    return f;
}

Fees legacy(std::uint64_t gas_price) {
    Fees f;
    f.gas_price = gas_price;
    f.legacy = true;
    return f;
}

// --- bump ----------------------------------------------------------------------------------

TEST(FeeBump, TheMinimumIsTenPercentPlusOneWeiOnBothFields) {
    // A smaller bump_percent is raised to geth's minimum.
    const Bump b = txm::bump(dynamic(100 * kGwei, 2 * kGwei), 5, kNoCaps);
    EXPECT_FALSE(b.at_cap);
    EXPECT_EQ(b.fees, dynamic(110 * kGwei + 1, 2'200'000'001));
    // A larger one wins.
    EXPECT_EQ(txm::bump(dynamic(100 * kGwei, 2 * kGwei), 25, kNoCaps).fees,
              dynamic(125 * kGwei, 2'500'000'000));
    // Exactly 10 %: the extra wei still counts.
    EXPECT_EQ(txm::bump(legacy(1000), 10, kNoCaps).fees, legacy(1101));
    EXPECT_EQ(txm::bump(legacy(1000), 11, kNoCaps).fees, legacy(1110));
}

TEST(FeeBump, TinyFeesStillRise) {
    // 0 wei: 10 % of nothing plus 1 wei.
    EXPECT_EQ(txm::bump(legacy(0), 0, kNoCaps).fees, legacy(1));
    EXPECT_EQ(txm::bump(dynamic(0, 0), 10, kNoCaps).fees, dynamic(1, 1));
    // 1 wei: 10 % rounds up to 1 wei, plus 1.
    EXPECT_EQ(txm::bump(legacy(1), 10, kNoCaps).fees, legacy(3));
    // 9 wei: 0.9 rounds up to 1, plus 1.
    EXPECT_EQ(txm::bump(legacy(9), 10, kNoCaps).fees, legacy(11));
    EXPECT_EQ(txm::bump(dynamic(9, 1), 10, kNoCaps).fees, dynamic(11, 3));
    // 10 wei: exactly 1, plus 1.
    EXPECT_EQ(txm::bump(legacy(10), 10, kNoCaps).fees, legacy(12));
    // bump_percent rounds up as well: 50 % of 9 is 4.5.
    EXPECT_EQ(txm::bump(legacy(9), 50, kNoCaps).fees, legacy(14));
}

TEST(FeeBump, EveryBumpWouldBeAcceptedAsAReplacementByGeth) {
    // geth: new > old and new >= old * 110 / 100 on each field.
    for (std::uint64_t fee = 0; fee < 2000; ++fee) {
        for (const unsigned percent : {0u, 5u, 10u, 12u}) {
            const Bump b = txm::bump(dynamic(fee * 3, fee), percent, kNoCaps);
            ASSERT_FALSE(b.at_cap);
            EXPECT_GT(b.fees.max_fee_per_gas, fee * 3);
            EXPECT_GE(b.fees.max_fee_per_gas * 100, fee * 3 * 110);
            EXPECT_GT(b.fees.max_priority_fee_per_gas, fee);
            EXPECT_GE(b.fees.max_priority_fee_per_gas * 100, fee * 110);
        }
    }
}

TEST(FeeBump, CapsLimitTheRaise) {
    // Room for more than the minimum but less than asked: the cap.
    FeeCaps caps{120 * kGwei, 3 * kGwei};
    Bump b = txm::bump(dynamic(100 * kGwei, 2 * kGwei), 50, caps);
    EXPECT_FALSE(b.at_cap);
    EXPECT_EQ(b.fees, dynamic(120 * kGwei, 3 * kGwei));
    // A legacy gas price is capped by the max fee cap.
    b = txm::bump(legacy(100 * kGwei), 50, caps);
    EXPECT_FALSE(b.at_cap);
    EXPECT_EQ(b.fees, legacy(120 * kGwei));
    // Exactly the minimum under the cap is enough.
    b = txm::bump(legacy(100), 50, FeeCaps{111, 0});
    EXPECT_FALSE(b.at_cap);
    EXPECT_EQ(b.fees, legacy(111));
}

TEST(FeeBump, WhenTheCapLeavesLessThanTheMinimumTheFeesStayAndAtCapIsSet) {
    const Fees current = dynamic(100 * kGwei, 2 * kGwei);
    // The max fee cap leaves 5 %.
    Bump b = txm::bump(current, 20, FeeCaps{105 * kGwei, 0});
    EXPECT_TRUE(b.at_cap);
    EXPECT_EQ(b.fees, current);
    // The tip cap leaves 5 %; the max fee had room, but a replacement needs both.
    b = txm::bump(current, 20, FeeCaps{0, 2'100'000'000});
    EXPECT_TRUE(b.at_cap);
    EXPECT_EQ(b.fees, current);
    // One wei short of the minimum.
    b = txm::bump(legacy(100), 50, FeeCaps{110, 0});
    EXPECT_TRUE(b.at_cap);
    EXPECT_EQ(b.fees, legacy(100));
    // Already at (or above) the cap.
    b = txm::bump(legacy(100), 10, FeeCaps{100, 0});
    EXPECT_TRUE(b.at_cap);
    b = txm::bump(legacy(200), 10, FeeCaps{100, 0});
    EXPECT_TRUE(b.at_cap);
    EXPECT_EQ(b.fees, legacy(200));
    // The tip is held under the new max fee too: a tip equal to the max fee, max fee capped.
    b = txm::bump(dynamic(100, 100), 10, FeeCaps{111, 0});
    EXPECT_FALSE(b.at_cap);
    EXPECT_EQ(b.fees, dynamic(111, 111));
}

TEST(FeeBump, NearUint64MaxItSaturatesAndSaysAtCap) {
    Bump b = txm::bump(legacy(kMax), 10, kNoCaps);
    EXPECT_TRUE(b.at_cap);
    EXPECT_EQ(b.fees, legacy(kMax));
    b = txm::bump(legacy(kMax - 5), 1000, kNoCaps);
    EXPECT_TRUE(b.at_cap);
    EXPECT_EQ(b.fees, legacy(kMax - 5));
    // A tenth of UINT64_MAX below it still leaves room for 10 % + 1 wei, saturating the rest.
    const std::uint64_t room = kMax / 11 * 10;
    b = txm::bump(legacy(room), 1000, kNoCaps);
    EXPECT_FALSE(b.at_cap);
    EXPECT_EQ(b.fees, legacy(kMax));
    // A huge bump_percent saturates rather than wraps.
    b = txm::bump(dynamic(kMax / 4, kMax / 8), std::numeric_limits<unsigned>::max(), kNoCaps);
    EXPECT_FALSE(b.at_cap);
    EXPECT_EQ(b.fees, dynamic(kMax, kMax));
}

// --- estimates -----------------------------------------------------------------------------

// eth_feeHistory(5, "latest", [50]) as geth answers it on mainnet.
// The estimate from a history that must be read (a failure names what was wrong).
Fees estimate(const boost::json::value& history, std::uint64_t floor, const FeeCaps& caps) {
    auto fees = txm::estimate_from_history(history, floor, caps);
    if (!fees) {
        ADD_FAILURE() << fees.error();
        return Fees{};
    }
    return *fees;
}

constexpr const char* kHistory = R"({
    "oldestBlock": "0x13a4a1b",
    "reward": [["0x5f5e100"], ["0x3b9aca00"], ["0x0"], ["0x77359400"], ["0x4a817c80"]],
    "baseFeePerGas": ["0x1a13b8600", "0x1bf08eb00", "0x1c9c38000", "0x1b48eb57e",
                      "0x1d1a94a20", "0x1dcd65000"],
    "gasUsedRatio": [0.71, 0.62, 0.13, 0.95, 0.58],
    "baseFeePerBlobGas": ["0x1", "0x1", "0x1", "0x1", "0x1", "0x1"],
    "blobGasUsedRatio": [0, 0, 0, 0, 0]
})";

TEST(FeeEstimate, FromHistoryTheMedianTipAndTwiceTheNextBaseFee) {
    // Tips 0.1, 1, 0, 2, 1.25 gwei: median 1 gwei. Next base fee 0x1dcd65000 = 8 gwei.
    const Fees f = estimate(boost::json::parse(kHistory), 0, kNoCaps);
    EXPECT_FALSE(f.legacy);
    EXPECT_EQ(f.max_priority_fee_per_gas, 1 * kGwei);
    EXPECT_EQ(f.max_fee_per_gas, 2 * 8 * kGwei + 1 * kGwei);
    EXPECT_EQ(f.gas_price, 0u);
}

TEST(FeeEstimate, TheFloorRaisesALowTip) {
    const Fees f = estimate(boost::json::parse(kHistory), 1'500'000'000, kNoCaps);
    EXPECT_EQ(f.max_priority_fee_per_gas, 1'500'000'000u);
    EXPECT_EQ(f.max_fee_per_gas, 16 * kGwei + 1'500'000'000);
}

TEST(FeeEstimate, AnEvenNumberOfBlocksTakesTheMiddleRoundedUp) {
    const auto history = boost::json::parse(
        R"({"baseFeePerGas": ["0x1", "0x2", "0x3", "0x64", "0x64"],
            "reward": [["0x1"], ["0x4"], ["0x7"], ["0x64"]]})");
    // Tips 1, 4, 7, 100: between 4 and 7, 5.5 rounds up to 6. Next base fee 100.
    EXPECT_EQ(estimate(history, 0, kNoCaps), dynamic(206, 6));
}

TEST(FeeEstimate, CapsApplyAndTheTipNeverPassesTheMaxFee) {
    const auto history = boost::json::parse(kHistory);
    Fees f = estimate(history, 0, FeeCaps{10 * kGwei, 500'000'000});
    EXPECT_EQ(f, dynamic(10 * kGwei, 500'000'000));
    // A max fee cap below the tip holds the tip down too.
    f = estimate(history, 5 * kGwei, FeeCaps{3 * kGwei, 0});
    EXPECT_EQ(f, dynamic(3 * kGwei, 3 * kGwei));
}

TEST(FeeEstimate, HugeValuesSaturate) {
    const auto history = boost::json::parse(
        R"({"baseFeePerGas": ["0xffffffffffffffffffff"], "reward": [["0xffffffffffffffff"]]})");
    EXPECT_EQ(estimate(history, 0, kNoCaps), dynamic(kMax, kMax));
    const auto half = boost::json::parse(
        R"({"baseFeePerGas": ["0x1", "0x8000000000000000"], "reward": [["0x1"]]})");
    EXPECT_EQ(estimate(half, 0, kNoCaps), dynamic(kMax, 1));
}

TEST(FeeEstimate, AnEmptyRewardLeavesTheFloor) {
    const auto history = boost::json::parse(R"({"baseFeePerGas": ["0x64"], "reward": []})");
    EXPECT_EQ(estimate(history, 7, kNoCaps), dynamic(207, 7));
}

TEST(FeeEstimate, AMalformedHistoryIsAClearError) {
    const auto expect_error = [](const char* json, const std::string& message) {
        SCOPED_TRACE(json);
        const auto fees = txm::estimate_from_history(boost::json::parse(json), 0, kNoCaps);
        ASSERT_FALSE(fees.has_value());
        EXPECT_NE(fees.error().find(message), std::string::npos) << fees.error();
    };
    expect_error("null", "not an object");
    expect_error(R"({"reward": []})", "no baseFeePerGas");
    expect_error(R"({"baseFeePerGas": "0x1", "reward": []})", "baseFeePerGas is not an array");
    expect_error(R"({"baseFeePerGas": [], "reward": []})", "baseFeePerGas is empty");
    expect_error(R"({"baseFeePerGas": ["0x1"]})", "no reward");
    expect_error(R"({"baseFeePerGas": ["12"], "reward": []})", "not a hex quantity: \"12\"");
    expect_error(R"({"baseFeePerGas": ["0x"], "reward": []})", "not a hex quantity");
    expect_error(R"({"baseFeePerGas": ["0x1g"], "reward": []})", "not a hex quantity");
    expect_error(R"({"baseFeePerGas": [null], "reward": []})", "not a hex quantity");
    expect_error(R"({"baseFeePerGas": ["0x1"], "reward": [["0x1"], []]})", "reward[1]");
    expect_error(R"({"baseFeePerGas": ["0x1"], "reward": ["0x1"]})", "reward[0]");
    expect_error(R"({"baseFeePerGas": ["0x1"], "reward": [[-1]]})", "reward[0][0]");
}

TEST(FeeEstimate, LegacyIsTheGasPriceCapped) {
    EXPECT_EQ(txm::estimate_legacy(20 * kGwei, kNoCaps), legacy(20 * kGwei));
    EXPECT_EQ(txm::estimate_legacy(20 * kGwei, FeeCaps{15 * kGwei, 1}), legacy(15 * kGwei));
}

// --- start fees ----------------------------------------------------------------------------

TEST(FeeStart, ClientFeesAboveTheEstimateWinFieldByField) {
    const Fees estimate = dynamic(30 * kGwei, 1 * kGwei);
    EXPECT_EQ(txm::start_fees(estimate, std::nullopt), estimate);
    // Both above.
    EXPECT_EQ(txm::start_fees(estimate, dynamic(50 * kGwei, 3 * kGwei)),
              dynamic(50 * kGwei, 3 * kGwei));
    // Both below.
    EXPECT_EQ(txm::start_fees(estimate, dynamic(20 * kGwei, kGwei / 2)), estimate);
    // One of each.
    EXPECT_EQ(txm::start_fees(estimate, dynamic(50 * kGwei, kGwei / 2)),
              dynamic(50 * kGwei, 1 * kGwei));
    EXPECT_EQ(txm::start_fees(estimate, dynamic(20 * kGwei, 2 * kGwei)),
              dynamic(30 * kGwei, 2 * kGwei));
}

TEST(FeeStart, TypesMixAsNodesPriceThem) {
    // A client's gas price on an EIP-1559 chain is its max fee and its tip.
    EXPECT_EQ(txm::start_fees(dynamic(30 * kGwei, 1 * kGwei), legacy(40 * kGwei)),
              dynamic(40 * kGwei, 40 * kGwei));
    EXPECT_EQ(txm::start_fees(dynamic(30 * kGwei, 1 * kGwei), legacy(20 * kGwei)),
              dynamic(30 * kGwei, 20 * kGwei));
    // On a legacy chain a client's max fee is its gas price.
    EXPECT_EQ(txm::start_fees(legacy(30 * kGwei), dynamic(40 * kGwei, 1)), legacy(40 * kGwei));
    EXPECT_EQ(txm::start_fees(legacy(30 * kGwei), legacy(20 * kGwei)), legacy(30 * kGwei));
    // A client tip above its own max fee is held to the max fee.
    EXPECT_EQ(txm::start_fees(dynamic(30, 1), dynamic(20, 50)), dynamic(30, 30));
}

// --- gas limit -----------------------------------------------------------------------------

TEST(GasLimit, TheEstimatePlusAMarginRoundedUp) {
    EXPECT_EQ(txm::gas_limit(21'000, 0, std::nullopt), 21'000u);
    EXPECT_EQ(txm::gas_limit(21'000, 20, std::nullopt), 25'200u);
    EXPECT_EQ(txm::gas_limit(100'001, 10, std::nullopt), 110'002u);  // 110001.1 rounds up
    EXPECT_EQ(txm::gas_limit(kMax - 10, 20, std::nullopt), kMax);
    EXPECT_EQ(txm::gas_limit(0, 20, std::nullopt), 0u);
}

TEST(GasLimit, AClientsGasIsKeptWhenItCoversTheEstimate) {
    EXPECT_EQ(txm::gas_limit(50'000, 20, 50'000), 50'000u);
    EXPECT_EQ(txm::gas_limit(50'000, 20, 500'000), 500'000u);
    EXPECT_EQ(txm::gas_limit(50'000, 20, 49'999), 60'000u);
}

// --- node refusals of eth_sendRawTransaction, exact strings from node-errors.md ---------------

using upstream::classify_write_refusal;
using upstream::WriteVerdict;

struct Refusal {
    int code;
    const char* message;
    WriteVerdict verdict;
};

void expect_verdicts(std::initializer_list<Refusal> refusals) {
    for (const Refusal& r : refusals) {
        EXPECT_EQ(upstream::to_string(classify_write_refusal(r.code, r.message)),
                  upstream::to_string(r.verdict))
            << r.code << " \"" << r.message << "\"";
    }
}

TEST(WriteErrors, AlreadyKnownIsAccepted) {
    expect_verdicts({
        {-32000, "already known", WriteVerdict::accepted},                 // geth, Erigon
        {-32000, "known transaction: 0x1234", WriteVerdict::accepted},     // older geth
        {-32000, "known transaction", WriteVerdict::accepted},             //
        {-32000, "Known transaction", WriteVerdict::accepted},             // Besu
        {-32010, "AlreadyKnown", WriteVerdict::accepted},                  // older Nethermind
        {-32003, "transaction already imported", WriteVerdict::accepted},  // anvil
        {-32000, "existing txn with same hash", WriteVerdict::accepted},   // Erigon
    });
}

TEST(WriteErrors, NonceTooLowMeansTheNonceIsUsed) {
    expect_verdicts({
        {-32000, "nonce too low", WriteVerdict::nonce_too_low},
        {-32000, "nonce too low: next nonce 5, tx nonce 3", WriteVerdict::nonce_too_low},
        {-32001, "Nonce too low", WriteVerdict::nonce_too_low},  // Besu
        {-32010, "OldNonce", WriteVerdict::nonce_too_low},       // older Nethermind
        {-32010, "OwnNonceAlreadyUsed", WriteVerdict::nonce_too_low},
    });
}

TEST(WriteErrors, ReplacementUnderpricedIsItsOwnVerdict) {
    expect_verdicts({
        {-32000, "replacement transaction underpriced", WriteVerdict::replacement_underpriced},
        {-32000, "Replacement transaction underpriced", WriteVerdict::replacement_underpriced},
        {-32010, "ReplacementNotAllowed", WriteVerdict::replacement_underpriced},
        {-32000, "could not replace existing tx", WriteVerdict::replacement_underpriced},
    });
    EXPECT_EQ(upstream::to_string(WriteVerdict::replacement_underpriced),
              "replacement_underpriced");
}

TEST(WriteErrors, NonceGapsAndFeesBelowTheBaseFeeRetryLater) {
    expect_verdicts({
        {-32000, "nonce too high", WriteVerdict::retry_later},
        {-32006, "Nonce too high", WriteVerdict::retry_later},  // Besu
        {-32010, "NonceGap", WriteVerdict::retry_later},        // older Nethermind
        {-32000, "Transaction nonce is too distant from current sender nonce",
         WriteVerdict::retry_later},  // Besu
        {-32000, "max fee per gas less than block base fee", WriteVerdict::retry_later},
        {-32000,
         "max fee per gas less than block base fee: address "
         "0x2c7536E3605D9C16a7a3D7b1898e529396a65c23, "
         "maxFeePerGas: 1000 baseFee: 7000000",
         WriteVerdict::retry_later},                         // geth with detail
        {-32000, "fee too low", WriteVerdict::retry_later},  // Erigon
        {-32009, "Gas price below current base fee", WriteVerdict::retry_later},  // Besu
        {-32010, "FeeTooLow", WriteVerdict::retry_later},                         // Nethermind
    });
}

TEST(WriteErrors, InsufficientFundsAndNodeMinimumsAreRefused) {
    expect_verdicts({
        {-32000, "insufficient funds for gas * price + value", WriteVerdict::refused},
        {-32000,
         "insufficient funds for gas * price + value: address 0x2c75 have 0 want 21000000000000",
         WriteVerdict::refused},
        {-32004, "Upfront cost exceeds account balance", WriteVerdict::refused},        // Besu
        {-32003, "Insufficient funds for gas * price + value", WriteVerdict::refused},  // anvil
        {-32000, "transaction underpriced", WriteVerdict::refused},  // geth, Nethermind minimum
        {-32000, "Gas price below configured minimum gas price", WriteVerdict::refused},  // Besu
        {-32000, "something no node has said before", WriteVerdict::refused},
    });
}

TEST(NonceReconciliation, AFirstNonceIsTheChainsPendingCount) {
    const txm::NonceStart s = txm::reconcile_nonce(std::nullopt, 7, std::nullopt);
    EXPECT_EQ(s.next, 7u);
    EXPECT_FALSE(s.raised);
    EXPECT_FALSE(s.lowered);
}

TEST(NonceReconciliation, AnotherPartysNoncesRaiseIt) {
    // The journal handed out up to 4; the chain counts 9 (someone sent with the same key).
    const txm::NonceStart s = txm::reconcile_nonce(5, 9, 4);
    EXPECT_EQ(s.next, 9u);
    EXPECT_TRUE(s.raised);
    EXPECT_FALSE(s.lowered);
}

TEST(NonceReconciliation, NoncesTheGatewayStillHoldsAreNotHandedOutAgain) {
    // Nonces 5..7 are signed and on their way (not yet in the node's pool): the chain's lower
    // count proves nothing.
    const txm::NonceStart s = txm::reconcile_nonce(8, 5, 7);
    EXPECT_EQ(s.next, 8u);
    EXPECT_FALSE(s.lowered);
    // Even one held at the chain's count blocks the lowering.
    EXPECT_EQ(txm::reconcile_nonce(8, 5, 5).next, 8u);
}

TEST(NonceReconciliation, AnEmptyRangeIsLoweredToTheChain) {
    // 5..7 were handed out but nothing of the gateway's holds them and the chain has nothing
    // there (a dead letter, a crash before signing): handed out again, so no gap stops the
    // sender.
    const txm::NonceStart s = txm::reconcile_nonce(8, 5, std::nullopt);
    EXPECT_EQ(s.next, 5u);
    EXPECT_TRUE(s.lowered);
    // Held nonces below the chain's count (mined, confirming) do not block it.
    EXPECT_EQ(txm::reconcile_nonce(8, 5, 4).next, 5u);
}

TEST(NonceReconciliation, InStepWithTheChainItStays) {
    const txm::NonceStart s = txm::reconcile_nonce(5, 5, 4);
    EXPECT_EQ(s.next, 5u);
    EXPECT_FALSE(s.raised);
    EXPECT_FALSE(s.lowered);
}

}  // namespace
}  // namespace gateway
