#include "gateway/eth/rlp.hpp"

#include <fmt/format.h>

#include <string>

namespace gateway::eth::rlp {
namespace {

[[noreturn]] void fail(const std::string& what) {
    throw DecodeError("RLP: " + what);
}

// Decodes the item that starts at input[pos] and ends at or before `end` (the end of the input
// or of the enclosing list), and moves pos past it.
Item decode_item(std::span<const std::uint8_t> input, std::size_t& pos, std::size_t end,
                 std::size_t depth) {
    if (pos >= end) fail("unexpected end of input");
    const std::size_t start = pos;
    const std::uint8_t prefix = input[pos++];

    Item item;
    std::size_t length = 0;
    if (prefix < 0x80) {
        item.payload = input.subspan(start, 1);
        item.encoded = item.payload;
        return item;
    }
    if (prefix <= 0xb7 || (prefix >= 0xc0 && prefix <= 0xf7)) {
        item.is_list = prefix >= 0xc0;
        length = prefix - (item.is_list ? 0xc0 : 0x80);
    } else {
        // Long form: the next 1 to 8 bytes hold the length, big-endian.
        item.is_list = prefix >= 0xf8;
        const std::size_t length_size = prefix - (item.is_list ? 0xf7 : 0xb7);
        static_assert(sizeof(std::size_t) >= 8, "a length of 8 bytes must fit in size_t");
        if (end - pos < length_size) {
            fail(fmt::format("length of {} bytes at offset {} runs past the end", length_size,
                             start));
        }
        if (input[pos] == 0) {
            fail(fmt::format("length with leading zero bytes at offset {} (not canonical)", start));
        }
        for (std::size_t i = 0; i < length_size; ++i) length = length << 8 | input[pos++];
        if (length < 56) {
            fail(fmt::format("long form used for {} bytes at offset {} (not canonical)", length,
                             start));
        }
    }
    if (end - pos < length) {
        fail(fmt::format("{} of {} bytes at offset {} runs past the end{}",
                         item.is_list ? "list" : "string", length, start,
                         end == input.size() ? " of the input" : " of its enclosing list"));
    }
    item.payload = input.subspan(pos, length);
    item.encoded = input.subspan(start, pos + length - start);

    if (!item.is_list) {
        if (length == 1 && item.payload[0] < 0x80) {
            fail(
                fmt::format("single byte 0x{:02x} at offset {} encoded as a string (not canonical)",
                            item.payload[0], start));
        }
        pos += length;
        return item;
    }
    if (depth >= kMaxDepth) fail(fmt::format("lists nested deeper than {} levels", kMaxDepth));
    const std::size_t list_end = pos + length;
    while (pos < list_end) item.items.push_back(decode_item(input, pos, list_end, depth + 1));
    return item;
}

Bytes encode_header(std::size_t length, std::uint8_t short_base) {
    if (length < 56) return {static_cast<std::uint8_t>(short_base + length)};
    Bytes length_bytes;
    for (std::size_t n = length; n != 0; n >>= 8) {
        length_bytes.insert(length_bytes.begin(), static_cast<std::uint8_t>(n));
    }
    // 0xb7 + size for strings, 0xf7 + size for lists.
    Bytes header{static_cast<std::uint8_t>(short_base + 55 + length_bytes.size())};
    header.insert(header.end(), length_bytes.begin(), length_bytes.end());
    return header;
}

Bytes with_header(std::span<const std::uint8_t> payload, std::uint8_t short_base) {
    Bytes out = encode_header(payload.size(), short_base);
    out.insert(out.end(), payload.begin(), payload.end());
    return out;
}

std::span<const std::uint8_t> canonical_integer(const Item& item, std::string_view field,
                                                std::size_t max_bytes) {
    if (item.is_list) fail(fmt::format("{} is a list, expected an integer", field));
    if (!item.payload.empty() && item.payload[0] == 0) {
        fail(fmt::format("{} has leading zero bytes (not canonical)", field));
    }
    if (item.payload.size() > max_bytes) {
        fail(fmt::format("{} is {} bytes long, more than {} bits", field, item.payload.size(),
                         max_bytes * 8));
    }
    return item.payload;
}

}  // namespace

Item decode(std::span<const std::uint8_t> input) {
    if (input.empty()) fail("empty input");
    std::size_t pos = 0;
    Item item = decode_item(input, pos, input.size(), 0);
    if (pos != input.size()) {
        fail(fmt::format("{} trailing bytes after the item at offset {}", input.size() - pos, pos));
    }
    return item;
}

Bytes encode_bytes(std::span<const std::uint8_t> bytes) {
    if (bytes.size() == 1 && bytes[0] < 0x80) return {bytes[0]};
    return with_header(bytes, 0x80);
}

Bytes encode_uint(std::uint64_t value) {
    Bytes big_endian;
    for (; value != 0; value >>= 8) {
        big_endian.insert(big_endian.begin(), static_cast<std::uint8_t>(value));
    }
    return encode_bytes(big_endian);
}

Bytes encode_uint(std::span<const std::uint8_t> big_endian) {
    while (!big_endian.empty() && big_endian.front() == 0) big_endian = big_endian.subspan(1);
    return encode_bytes(big_endian);
}

Bytes encode_list(std::span<const std::uint8_t> payload) {
    return with_header(payload, 0xc0);
}

std::span<const std::uint8_t> to_uint256(const Item& item, std::string_view field) {
    return canonical_integer(item, field, 32);
}

std::uint64_t to_uint64(const Item& item, std::string_view field) {
    std::uint64_t value = 0;
    for (const std::uint8_t b : canonical_integer(item, field, 8)) value = value << 8 | b;
    return value;
}

}  // namespace gateway::eth::rlp
