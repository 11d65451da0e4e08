#include "gateway/eth/wei.hpp"

#include <algorithm>
#include <cstdint>

namespace gateway::eth {
namespace {

std::span<const std::uint8_t> trimmed(std::span<const std::uint8_t> v) {
    std::size_t skip = 0;
    while (skip < v.size() && v[skip] == 0) ++skip;
    return v.subspan(skip);
}

}  // namespace

std::optional<Bytes> parse_wei(std::string_view decimal) {
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
    return Bytes(le.rbegin(), le.rend());
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

std::optional<Bytes> add_wei(std::span<const std::uint8_t> a, std::span<const std::uint8_t> b) {
    a = trimmed(a);
    b = trimmed(b);
    Bytes out(std::max(a.size(), b.size()) + 1, 0);
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
    return Bytes(t.begin(), t.end());
}

int compare_wei(std::span<const std::uint8_t> a, std::span<const std::uint8_t> b) {
    a = trimmed(a);
    b = trimmed(b);
    if (a.size() != b.size()) return a.size() < b.size() ? -1 : 1;
    for (std::size_t i = 0; i < a.size(); ++i)
        if (a[i] != b[i]) return a[i] < b[i] ? -1 : 1;
    return 0;
}

}  // namespace gateway::eth
