#pragma once
// A managed sender's policy rules (catalog row C2), evaluated on a transaction's request before
// its nonce is taken: the value a transaction may move, what it may move in a rolling day, whom it
// may pay and which contract functions it may call. A transaction that breaks one is held for an
// operator's approval, with the rule and the figures in its reason.
//
// Amounts are wei (eth/wei.hpp).

#include "gateway/config/config.hpp"
#include "gateway/eth/hex.hpp"
#include "gateway/eth/wei.hpp"
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
    /// The config's rules (config::PolicyConfig, validated when it was read).
    static PolicyRules from(const config::PolicyConfig& config);

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

/// The first rule `request` breaks, given what its sender moved in the last 24 hours
/// (`spent_today`, other transactions not cancelled or failed before any node took them); nullopt:
/// allowed. A request that moves no wei keeps to daily_value_wei whatever the day's sum.
std::optional<PolicyHold> check_policy(const PolicyRules& rules, const Request& request,
                                       std::span<const std::uint8_t> spent_today);

}  // namespace gateway::txm
