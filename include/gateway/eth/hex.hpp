#pragma once
// Hex as Ethereum's JSON-RPC writes it: "0x"-prefixed data, quantities without leading zeros,
// and EIP-55 checksummed addresses.

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace gateway::eth {

using Bytes = std::vector<std::uint8_t>;
using Address = std::array<std::uint8_t, 20>;
using Hash = std::array<std::uint8_t, 32>;

/// Parses "0x"- or "0X"-prefixed hex data of even length ("0x" is empty data). nullopt for
/// anything else: no prefix, an odd number of digits, a character that is not a hex digit.
std::optional<Bytes> from_hex(std::string_view text);

/// "0x" followed by two lowercase digits per byte.
std::string to_hex(std::span<const std::uint8_t> bytes);

/// A JSON-RPC quantity from a big-endian unsigned integer of any length: "0x0" for zero,
/// otherwise lowercase digits without leading zeros ("0x400" for {0x00, 0x04, 0x00}).
std::string to_quantity(std::span<const std::uint8_t> big_endian);
std::string to_quantity(std::uint64_t value);

/// The address with EIP-55 mixed-case checksum ("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed").
std::string to_checksum_address(const Address& address);

}  // namespace gateway::eth
