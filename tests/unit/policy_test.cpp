// The managed senders' policy rules (catalog row C2) and their wei arithmetic.

#include "gateway/txm/policy.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace gateway::txm {
namespace {

using eth::add_wei;
using eth::compare_wei;
using eth::parse_wei;
using eth::to_decimal;
using ::testing::HasSubstr;

const std::string kMax256 =
    "115792089237316195423570985008687907853269984665640564039457584007913129639935";

eth::Bytes wei(std::string_view decimal) {
    auto v = parse_wei(decimal);
    EXPECT_TRUE(v) << decimal;
    return v.value_or(eth::Bytes{});
}

eth::Address address(std::uint8_t last) {
    eth::Address a{};
    a[19] = last;
    return a;
}

Request transfer(std::string_view value, std::optional<eth::Address> to = address(1)) {
    Request r;
    r.from = address(0xaa);
    r.to = to;
    r.value = wei(value);
    return r;
}

TEST(PolicyWei, DecimalAmountsRoundTripUpTo2To256Minus1) {
    EXPECT_EQ(parse_wei("0"), eth::Bytes{});
    EXPECT_EQ(parse_wei("255"), (eth::Bytes{0xff}));
    EXPECT_EQ(parse_wei("256"), (eth::Bytes{0x01, 0x00}));
    EXPECT_EQ(parse_wei("1000000000000000000"),
              (eth::Bytes{0x0d, 0xe0, 0xb6, 0xb3, 0xa7, 0x64, 0x00, 0x00}));
    EXPECT_EQ(parse_wei(kMax256), eth::Bytes(32, 0xff));
    EXPECT_EQ(to_decimal(eth::Bytes(32, 0xff)), kMax256);
    EXPECT_EQ(to_decimal(eth::Bytes{0x00, 0x00, 0x01, 0x00}), "256");
    EXPECT_EQ(to_decimal(eth::Bytes{}), "0");
    for (std::string_view d :
         {"1", "10", "65535", "18446744073709551616", "123456789012345678901234567890"})
        EXPECT_EQ(to_decimal(wei(d)), d);
    EXPECT_EQ(parse_wei("0007"), (eth::Bytes{0x07}));
}

TEST(PolicyWei, AnythingButDecimalDigitsWithinRangeIsRefused) {
    EXPECT_FALSE(parse_wei(""));
    EXPECT_FALSE(parse_wei("-1"));
    EXPECT_FALSE(parse_wei("1e18"));
    EXPECT_FALSE(parse_wei("0x10"));
    EXPECT_FALSE(parse_wei(" 1"));
    // 2^256 exactly, and 79 digits.
    EXPECT_FALSE(parse_wei(
        "115792089237316195423570985008687907853269984665640564039457584007913129639936"));
    EXPECT_FALSE(parse_wei(std::string(79, '1')));
}

TEST(PolicyWei, SumsAndComparisonsIgnoreLeadingZerosAndStopAt2To256) {
    EXPECT_EQ(add_wei(wei("255"), wei("1")), wei("256"));
    EXPECT_EQ(add_wei(eth::Bytes{0x00, 0x01}, eth::Bytes{}), (eth::Bytes{0x01}));
    EXPECT_EQ(add_wei(wei("999999999999999999"), wei("1")), wei("1000000000000000000"));
    EXPECT_FALSE(add_wei(eth::Bytes(32, 0xff), wei("1")));
    EXPECT_EQ(compare_wei(eth::Bytes{0x00, 0x05}, eth::Bytes{0x05}), 0);
    EXPECT_EQ(compare_wei(wei("256"), wei("255")), 1);
    EXPECT_EQ(compare_wei(wei("255"), wei("256")), -1);
    EXPECT_EQ(compare_wei(wei("512"), wei("513")), -1);
    EXPECT_EQ(compare_wei(eth::Bytes{}, wei("0")), 0);
}

TEST(Policy, NoRulesAllowEverything) {
    EXPECT_FALSE(
        check_policy(PolicyRules{}, transfer(kMax256, std::nullopt), eth::Bytes(32, 0xff)));
}

TEST(Policy, AValueAboveTheMaximumIsHeldWithBothFigures) {
    PolicyRules rules;
    rules.max_value = wei("1000000000000000000");
    EXPECT_FALSE(check_policy(rules, transfer("1000000000000000000"), {}));
    auto hold = check_policy(rules, transfer("1000000000000000001"), {});
    ASSERT_TRUE(hold);
    EXPECT_EQ(hold->rule, "max_value_wei");
    EXPECT_THAT(hold->reason, HasSubstr("1000000000000000001 wei"));
    EXPECT_THAT(hold->reason, HasSubstr("max_value_wei 1000000000000000000"));
    rules.max_value = wei("0");  // a sender that may move nothing
    EXPECT_FALSE(check_policy(rules, transfer("0"), {}));
    EXPECT_TRUE(check_policy(rules, transfer("1"), {}));
}

TEST(Policy, TheDailySumCountsWhatWasMovedBefore) {
    PolicyRules rules;
    rules.daily_value = wei("5000000000000000000");
    EXPECT_FALSE(check_policy(rules, transfer("1000000000000000000"), wei("4000000000000000000")));
    auto hold = check_policy(rules, transfer("1000000000000000001"), wei("4000000000000000000"));
    ASSERT_TRUE(hold);
    EXPECT_EQ(hold->rule, "daily_value_wei");
    EXPECT_THAT(hold->reason, HasSubstr("after 4000000000000000000 wei in the last 24 hours"));
    // A sum past 2^256 is held, not wrapped around.
    rules.daily_value = eth::Bytes(32, 0xff);
    EXPECT_TRUE(check_policy(rules, transfer("2"), eth::Bytes(32, 0xff)));
    // A transaction that moves nothing is not held by a day whose sum is over the limit already
    // (approvals can take it there): it cannot add to it.
    rules.daily_value = wei("1");
    EXPECT_FALSE(check_policy(rules, transfer("0"), wei("5")));
    EXPECT_TRUE(check_policy(rules, transfer("1"), wei("5")));
}

TEST(Policy, TheConfigsRulesAreReadIntoBytes) {
    config::PolicyConfig config;
    config.max_value_wei = "256";
    config.allowed_to = std::vector<std::string>{"0x000000000000000000000000000000000000dead"};
    config.allowed_selectors = std::vector<std::string>{"0xa9059cbb"};
    const PolicyRules rules = PolicyRules::from(config);
    EXPECT_EQ(rules.max_value, (eth::Bytes{0x01, 0x00}));
    EXPECT_FALSE(rules.daily_value);
    ASSERT_TRUE(rules.allowed_to);
    EXPECT_EQ(eth::to_hex(rules.allowed_to->at(0)), "0x000000000000000000000000000000000000dead");
    ASSERT_TRUE(rules.allowed_selectors);
    EXPECT_EQ(rules.allowed_selectors->at(0), (Selector{0xa9, 0x05, 0x9c, 0xbb}));
    EXPECT_FALSE(PolicyRules::from(config::PolicyConfig{}).allowed_to);
}

TEST(Policy, OnlyListedRecipientsAndNoContractCreation) {
    PolicyRules rules;
    rules.allowed_to = std::vector<eth::Address>{address(1), address(2)};
    EXPECT_FALSE(check_policy(rules, transfer("1", address(2)), {}));
    auto other = check_policy(rules, transfer("1", address(3)), {});
    ASSERT_TRUE(other);
    EXPECT_EQ(other->rule, "allowed_to");
    EXPECT_THAT(other->reason, HasSubstr("0x0000000000000000000000000000000000000003"));
    auto create = check_policy(rules, transfer("0", std::nullopt), {});
    ASSERT_TRUE(create);
    EXPECT_THAT(create->reason, HasSubstr("creates a contract"));
}

TEST(Policy, OnlyListedFunctionsMayBeCalled) {
    PolicyRules rules;
    rules.allowed_selectors =
        std::vector<Selector>{{0xa9, 0x05, 0x9c, 0xbb}};  // transfer(address,uint256)
    Request call = transfer("0");
    call.input = {0xa9, 0x05, 0x9c, 0xbb, 0x00, 0x01};
    EXPECT_FALSE(check_policy(rules, call, {}));
    call.input = {0x09, 0x5e, 0xa7, 0xb3, 0x00};  // approve(address,uint256)
    auto hold = check_policy(rules, call, {});
    ASSERT_TRUE(hold);
    EXPECT_EQ(hold->rule, "allowed_selectors");
    EXPECT_THAT(hold->reason, HasSubstr("0x095ea7b3"));
    call.input = {0xa9, 0x05};  // too short to name a function
    EXPECT_TRUE(check_policy(rules, call, {}));
    call.input.clear();  // a plain transfer calls nothing
    EXPECT_FALSE(check_policy(rules, call, {}));
    // A contract creation's initcode is no call, whatever its first bytes: held.
    Request create = transfer("0", std::nullopt);
    create.input = {0xa9, 0x05, 0x9c, 0xbb, 0x60, 0x80};
    auto creation = check_policy(rules, create, {});
    ASSERT_TRUE(creation);
    EXPECT_THAT(creation->reason, HasSubstr("creates a contract"));
}

}  // namespace
}  // namespace gateway::txm
