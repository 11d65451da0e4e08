#pragma once
// Recursive Length Prefix, the serialisation of Ethereum transactions: a strict decoder that
// accepts only the one canonical encoding of a value, and the few encoders the gateway needs.

#include "gateway/eth/hex.hpp"

#include <cstddef>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <string_view>
#include <vector>

namespace gateway::eth {

/// Input from a client that is not a valid encoding (RLP, a transaction). The message says what
/// is wrong in words a client can act on. Decoding is pure and synchronous; a caller on the
/// request path catches this at its boundary and answers a JSON-RPC error.
class DecodeError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

namespace rlp {

/// Lists nested deeper than this are refused (a transaction needs 4 levels).
inline constexpr std::size_t kMaxDepth = 16;

/// One decoded item. The spans point into the decoded input, which must outlive the item.
struct Item {
    bool is_list = false;
    std::span<const std::uint8_t> payload;  ///< a string's bytes, or a list's encoded items
    std::span<const std::uint8_t> encoded;  ///< the whole item, its header included
    std::vector<Item> items;                ///< a list's items, in order; empty for a string
};

/// Decodes exactly one item that spans all of `input`. Throws DecodeError ("RLP: ...") on
/// empty input, trailing bytes, a length past the end (of the input or of the enclosing list),
/// a non-canonical encoding (a single byte below 0x80 behind a header, the long form for fewer
/// than 56 bytes, a length with leading zeros) or nesting deeper than kMaxDepth.
Item decode(std::span<const std::uint8_t> input);

/// The encoding of a byte string.
Bytes encode_bytes(std::span<const std::uint8_t> bytes);

/// The encoding of an unsigned integer: its minimal big-endian bytes (0 is the empty string).
Bytes encode_uint(std::uint64_t value);

/// The same for a big-endian integer of any length; leading zero bytes are dropped.
Bytes encode_uint(std::span<const std::uint8_t> big_endian);

/// The encoding of a list whose items, already encoded, are concatenated in `payload`.
Bytes encode_list(std::span<const std::uint8_t> payload);

/// An integer field: a string of at most 8 bytes without leading zero bytes. `field` names it
/// in the error ("RLP: nonce has leading zero bytes").
std::uint64_t to_uint64(const Item& item, std::string_view field);

/// An integer field of at most 256 bits: its minimal big-endian bytes (empty for zero), a view
/// into the input. Rejects lists, leading zero bytes and more than 32 bytes.
std::span<const std::uint8_t> to_uint256(const Item& item, std::string_view field);

}  // namespace rlp
}  // namespace gateway::eth
