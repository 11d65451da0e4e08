#include "gateway/eth/hex.hpp"

#include "gateway/eth/keccak.hpp"

#include <algorithm>
#include <cctype>

namespace gateway::eth {
namespace {

constexpr std::string_view kDigits = "0123456789abcdef";

int digit_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

}  // namespace

std::optional<Bytes> from_hex(std::string_view text) {
    if (text.size() < 2 || text[0] != '0' || (text[1] != 'x' && text[1] != 'X')) {
        return std::nullopt;
    }
    text.remove_prefix(2);
    if (text.size() % 2 != 0) return std::nullopt;
    Bytes out;
    out.reserve(text.size() / 2);
    for (std::size_t i = 0; i < text.size(); i += 2) {
        const int high = digit_value(text[i]);
        const int low = digit_value(text[i + 1]);
        if (high < 0 || low < 0) return std::nullopt;
        out.push_back(static_cast<std::uint8_t>(high << 4 | low));
    }
    return out;
}

std::string to_hex(std::span<const std::uint8_t> bytes) {
    std::string out = "0x";
    out.reserve(2 + bytes.size() * 2);
    for (const std::uint8_t b : bytes) {
        out.push_back(kDigits[b >> 4]);
        out.push_back(kDigits[b & 0x0f]);
    }
    return out;
}

std::string to_quantity(std::span<const std::uint8_t> big_endian) {
    const auto first =
        std::find_if(big_endian.begin(), big_endian.end(), [](std::uint8_t b) { return b != 0; });
    if (first == big_endian.end()) return "0x0";
    std::string out = to_hex(std::span(first, big_endian.end()));
    // At most one leading zero digit, in the first byte.
    if (out[2] == '0') out.erase(2, 1);
    return out;
}

std::string to_quantity(std::uint64_t value) {
    std::array<std::uint8_t, 8> bytes{};
    for (std::size_t i = 0; i < bytes.size(); ++i) {
        bytes[bytes.size() - 1 - i] = static_cast<std::uint8_t>(value >> (8 * i));
    }
    return to_quantity(bytes);
}

std::string to_checksum_address(const Address& address) {
    std::string out = to_hex(address);
    // EIP-55: a letter is upper case where the matching nibble of the hash of the lowercase hex
    // (without "0x") is 8 or more.
    const Hash hash = keccak256(std::string_view(out).substr(2));
    for (std::size_t i = 0; i < 40; ++i) {
        const std::uint8_t nibble = (i % 2 == 0) ? hash[i / 2] >> 4 : hash[i / 2] & 0x0f;
        char& c = out[2 + i];
        if (nibble >= 8) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    }
    return out;
}

}  // namespace gateway::eth
