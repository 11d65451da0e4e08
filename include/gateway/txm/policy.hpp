#pragma once
// A managed sender's policy rules (catalog row C2), evaluated on a transaction's request before
// its nonce is taken: the value a transaction may move, what it may move in a rolling day, whom it
// may pay and which contract functions it may call. A transaction that breaks one is held for an
// operator's approval, with the rule and the figures in its reason.
//
// Amounts are wei, up to 2^256 - 1, kept as big-endian bytes without leading zeros (as a request's
// value is). Not wired into the managed flow yet (issue 17): the rules and their arithmetic first.

#include "gateway/eth/hex.hpp"
#include "gateway/txm/managed_request.hpp"

#include <array>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace gateway::txm {

using Selector = std::array<std::uint8_t, 4>;

struct PolicyRules {
    std::optional<eth::Bytes> max_value;    ///< wei a transaction may move
    std::optional<eth::Bytes> daily_value;  ///< wei a sender may move in a rolling 24 hours
    std::optional<std::vector<eth::Address>> allowed_to;     ///< unset: any recipient
    std::optional<std::vector<Selector>> allowed_selectors;  ///< unset: any call
};

/// Why a transaction is held: the rule (as the config names it) and, in words, the figures.
struct PolicyHold {
    std::string rule;
    std::string reason;
};

/// A decimal amount of wei ("1000000000000000000"): nullopt for anything but decimal digits (at
/// most 78 of them) or past 2^256 - 1.
std::optional<eth::Bytes> parse_wei(std::string_view decimal);

/// A big-endian quantity in decimal ("0" for none).
std::string to_decimal(std::span<const std::uint8_t> big_endian);

/// a + b, big-endian, without leading zeros; nullopt past 2^256 - 1.
std::optional<eth::Bytes> add_wei(std::span<const std::uint8_t> a, std::span<const std::uint8_t> b);

/// -1, 0 or 1 as a is below, equal to or above b (leading zeros ignored).
int compare_wei(std::span<const std::uint8_t> a, std::span<const std::uint8_t> b);

/// The first rule `request` breaks, given what its sender moved in the last 24 hours
/// (`spent_today`, other transactions not cancelled or failed before any node took them); nullopt:
/// allowed.
std::optional<PolicyHold> check_policy(const PolicyRules& rules, const Request& request,
                                       std::span<const std::uint8_t> spent_today);

}  // namespace gateway::txm
