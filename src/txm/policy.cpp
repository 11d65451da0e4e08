#include "gateway/txm/policy.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cstdint>

namespace gateway::txm {
namespace {

std::span<const std::uint8_t> trimmed(std::span<const std::uint8_t> v) {
    std::size_t skip = 0;
    while (skip < v.size() && v[skip] == 0) ++skip;
    return v.subspan(skip);
}

}  // namespace

std::optional<eth::Bytes> parse_wei(std::string_view decimal) {
    if (decimal.empty() || decimal.size() > 78) return std::nullopt;
    // Little-endian base-256 digits while reading: each decimal digit multiplies by 10 and adds.
    std::vector<std::uint8_t> le;
    for (char c : decimal) {
        if (c < '0' || c > '9') return std::nullopt;
        unsigned carry = static_cast<unsigned>(c - '0');
        for (auto& byte : le) {
            const unsigned v = byte * 10u + carry;
            byte = static_cast<std::uint8_t>(v & 0xff);
            carry = v >> 8;
        }
        while (carry) {
            le.push_back(static_cast<std::uint8_t>(carry & 0xff));
            carry >>= 8;
        }
        if (le.size() > 32) return std::nullopt;
    }
    while (!le.empty() && le.back() == 0) le.pop_back();
    return eth::Bytes(le.rbegin(), le.rend());
}

std::string to_decimal(std::span<const std::uint8_t> big_endian) {
    const auto value = trimmed(big_endian);
    std::vector<std::uint8_t> n(value.begin(), value.end());
    std::string digits;
    // Divides by 10 again and again, keeping the remainders.
    while (!n.empty()) {
        unsigned rem = 0;
        std::vector<std::uint8_t> q;
        for (std::uint8_t byte : n) {
            const unsigned cur = (rem << 8) | byte;
            const auto d = static_cast<std::uint8_t>(cur / 10);
            rem = cur % 10;
            if (!q.empty() || d) q.push_back(d);
        }
        digits.push_back(static_cast<char>('0' + rem));
        n = std::move(q);
    }
    if (digits.empty()) return "0";
    std::reverse(digits.begin(), digits.end());
    return digits;
}

std::optional<eth::Bytes> add_wei(std::span<const std::uint8_t> a,
                                  std::span<const std::uint8_t> b) {
    a = trimmed(a);
    b = trimmed(b);
    eth::Bytes out(std::max(a.size(), b.size()) + 1, 0);
    unsigned carry = 0;
    for (std::size_t i = 0; i < out.size(); ++i) {
        unsigned v = carry;
        if (i < a.size()) v += a[a.size() - 1 - i];
        if (i < b.size()) v += b[b.size() - 1 - i];
        out[out.size() - 1 - i] = static_cast<std::uint8_t>(v & 0xff);
        carry = v >> 8;
    }
    const auto t = trimmed(out);
    if (t.size() > 32) return std::nullopt;
    return eth::Bytes(t.begin(), t.end());
}

int compare_wei(std::span<const std::uint8_t> a, std::span<const std::uint8_t> b) {
    a = trimmed(a);
    b = trimmed(b);
    if (a.size() != b.size()) return a.size() < b.size() ? -1 : 1;
    for (std::size_t i = 0; i < a.size(); ++i)
        if (a[i] != b[i]) return a[i] < b[i] ? -1 : 1;
    return 0;
}

std::optional<PolicyHold> check_policy(const PolicyRules& rules, const Request& request,
                                       std::span<const std::uint8_t> spent_today) {
    if (rules.max_value && compare_wei(request.value, *rules.max_value) > 0)
        return PolicyHold{"max_value_wei",
                          fmt::format("it moves {} wei, above max_value_wei {}",
                                      to_decimal(request.value), to_decimal(*rules.max_value))};
    if (rules.daily_value) {
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
