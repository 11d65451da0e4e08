#pragma once
// Amounts of wei, up to 2^256 - 1, kept as big-endian bytes without leading zeros (as a
// transaction's value is): read from decimal (the config's limits), written in decimal (messages),
// added and compared (the policy's daily sums).

#include "gateway/eth/hex.hpp"

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace gateway::eth {

/// A decimal amount of wei ("1000000000000000000"): nullopt for anything but decimal digits (at
/// most 78 of them) or past 2^256 - 1.
std::optional<Bytes> parse_wei(std::string_view decimal);

/// A big-endian quantity in decimal ("0" for none).
std::string to_decimal(std::span<const std::uint8_t> big_endian);

/// a + b, big-endian, without leading zeros; nullopt past 2^256 - 1.
std::optional<Bytes> add_wei(std::span<const std::uint8_t> a, std::span<const std::uint8_t> b);

/// -1, 0 or 1 as a is below, equal to or above b (leading zeros ignored).
int compare_wei(std::span<const std::uint8_t> a, std::span<const std::uint8_t> b);

}  // namespace gateway::eth
