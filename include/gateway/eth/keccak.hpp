#pragma once
// Keccak-256 as Ethereum uses it: the original Keccak submission's padding (0x01), which is not
// the padding of the standardised SHA3-256 (0x06), so OpenSSL's SHA3 gives different digests.

#include "gateway/eth/hex.hpp"

#include <cstdint>
#include <span>
#include <string_view>

namespace gateway::eth {

/// Keccak-256 of `data`. Pure; safe from any thread.
Hash keccak256(std::span<const std::uint8_t> data);

/// Keccak-256 of the bytes of `text` (no hex decoding: "abc" is three bytes).
Hash keccak256(std::string_view text);

}  // namespace gateway::eth
