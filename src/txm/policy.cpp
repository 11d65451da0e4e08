#include "gateway/txm/policy.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <stdexcept>

namespace gateway::txm {

using eth::add_wei;
using eth::compare_wei;
using eth::to_decimal;

namespace {

bool trimmed_empty(std::span<const std::uint8_t> v) {
    return std::all_of(v.begin(), v.end(), [](std::uint8_t b) { return b == 0; });
}

}  // namespace

PolicyRules PolicyRules::from(const config::PolicyConfig& config) {
    // Validated when the config was read: what does not parse here cannot come.
    const auto wei = [](const std::string& text) {
        auto v = eth::parse_wei(text);
        if (!v) throw std::invalid_argument("policy: not an amount of wei: " + text);
        return *v;
    };
    PolicyRules rules;
    if (config.max_value_wei) rules.max_value = wei(*config.max_value_wei);
    if (config.daily_value_wei) rules.daily_value = wei(*config.daily_value_wei);
    if (config.allowed_to) {
        rules.allowed_to.emplace();
        for (const auto& text : *config.allowed_to) {
            const auto bytes = eth::from_hex(text);
            if (!bytes || bytes->size() != 20)
                throw std::invalid_argument("policy: not an address: " + text);
            eth::Address a;
            std::copy(bytes->begin(), bytes->end(), a.begin());
            rules.allowed_to->push_back(a);
        }
    }
    if (config.allowed_selectors) {
        rules.allowed_selectors.emplace();
        for (const auto& text : *config.allowed_selectors) {
            const auto bytes = eth::from_hex(text);
            if (!bytes || bytes->size() != 4)
                throw std::invalid_argument("policy: not a selector: " + text);
            Selector sel{};
            std::copy(bytes->begin(), bytes->end(), sel.begin());
            rules.allowed_selectors->push_back(sel);
        }
    }
    return rules;
}

std::optional<PolicyHold> check_policy(const PolicyRules& rules, const Request& request,
                                       std::span<const std::uint8_t> spent_today) {
    if (rules.max_value && compare_wei(request.value, *rules.max_value) > 0)
        return PolicyHold{"max_value_wei",
                          fmt::format("it moves {} wei, above max_value_wei {}",
                                      to_decimal(request.value), to_decimal(*rules.max_value))};
    // A transaction that moves nothing cannot take the day's sum over.
    if (rules.daily_value && !trimmed_empty(request.value)) {
        const auto total = add_wei(spent_today, request.value);
        if (!total || compare_wei(*total, *rules.daily_value) > 0)
            return PolicyHold{
                "daily_value_wei",
                fmt::format("it moves {} wei after {} wei in the last 24 hours, above "
                            "daily_value_wei {}",
                            to_decimal(request.value), to_decimal(spent_today),
                            to_decimal(*rules.daily_value))};
    }
    if (rules.allowed_to) {
        if (!request.to)
            return PolicyHold{"allowed_to",
                              "it creates a contract, and allowed_to names the only recipients"};
        if (std::find(rules.allowed_to->begin(), rules.allowed_to->end(), *request.to) ==
            rules.allowed_to->end())
            return PolicyHold{"allowed_to", fmt::format("its recipient {} is not in allowed_to",
                                                        eth::to_hex(*request.to))};
    }
    if (rules.allowed_selectors && !request.to)
        return PolicyHold{"allowed_selectors",
                          "it creates a contract, and allowed_selectors names the only calls"};
    if (rules.allowed_selectors && !request.input.empty()) {
        // A plain transfer (no input) calls nothing; anything else is a call, and names its
        // function by its first four bytes.
        if (request.input.size() < 4)
            return PolicyHold{"allowed_selectors",
                              fmt::format("its input ({} bytes) names no function, and "
                                          "allowed_selectors names the only calls",
                                          request.input.size())};
        Selector s{};
        std::copy_n(request.input.begin(), 4, s.begin());
        if (std::find(rules.allowed_selectors->begin(), rules.allowed_selectors->end(), s) ==
            rules.allowed_selectors->end())
            return PolicyHold{
                "allowed_selectors",
                fmt::format("it calls {}, which is not in allowed_selectors", eth::to_hex(s))};
    }
    return std::nullopt;
}

}  // namespace gateway::txm
