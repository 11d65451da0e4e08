// Fuzz target: the bytes of eth_sendRawTransaction through the RLP decoder and the transaction
// decoder. Both accept only canonical encodings, so whatever they accept must encode back to the
// very bytes they were given: the item tree with the RLP encoders, the transaction from its
// decoded fields (a blob transaction's payload; its sidecar must match what it signed). Refusals
// must be DecodeErrors that say what is wrong; anything else escaping is a finding.

#include "check.hpp"

#include "gateway/eth/hex.hpp"
#include "gateway/eth/keccak.hpp"
#include "gateway/eth/rlp.hpp"
#include "gateway/eth/transaction.hpp"

#include <boost/json/serialize.hpp>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace {

namespace json = boost::json;
namespace rlp = gateway::eth::rlp;
using gateway::eth::BlobSidecar;
using gateway::eth::Bytes;
using gateway::eth::DecodeError;
using gateway::eth::Transaction;
using gateway::eth::TxType;
using gateway::fuzz::check;

void append(Bytes& out, const Bytes& more) {
    out.insert(out.end(), more.begin(), more.end());
}

std::size_t depth_of(const rlp::Item& item) {
    std::size_t deepest = 0;
    for (const rlp::Item& child : item.items) deepest = std::max(deepest, depth_of(child));
    return item.is_list ? deepest + 1 : 0;
}

// The item encoded again from its parts, checking on the way that each part's `encoded` is where
// its parent's payload says.
Bytes encode(const rlp::Item& item) {
    if (!item.is_list) {
        check(item.items.empty(), "a string has no items");
        const Bytes out = rlp::encode_bytes(item.payload);
        check(std::equal(out.begin(), out.end(), item.encoded.begin(), item.encoded.end()),
              "a string's encoding is its encoded bytes");
        return out;
    }
    Bytes payload;
    const std::uint8_t* next = item.payload.data();
    for (const rlp::Item& child : item.items) {
        check(child.encoded.data() == next, "a list's items follow each other in its payload");
        next += child.encoded.size();
        append(payload, encode(child));
    }
    check(next == item.payload.data() + item.payload.size(), "a list's items fill its payload");
    return rlp::encode_list(payload);
}

void check_rlp(std::span<const std::uint8_t> input) {
    try {
        const rlp::Item item = rlp::decode(input);
        check(depth_of(item) <= rlp::kMaxDepth, "nesting within the limit");
        check(item.encoded.data() == input.data() && item.encoded.size() == input.size(),
              "the item is the whole input");
        const Bytes again = encode(item);
        check(std::equal(again.begin(), again.end(), input.begin(), input.end()),
              "a decoded item encodes back to its input");
    } catch (const DecodeError& e) {
        check(std::string_view(e.what()).starts_with("RLP: "), "RLP errors say RLP");
    }
}

// A quantity string ("0x0", "0x1f4") as the minimal big-endian bytes RLP encodes it with.
Bytes quantity_bytes(const json::value& v) {
    check(v.is_string(), "a quantity is a string");
    std::string text(v.get_string());
    check(text.starts_with("0x") && text.size() > 2, "a quantity is 0x and digits");
    if (text == "0x0") return {};
    check(text[2] != '0', "a quantity has no leading zeros");
    if (text.size() % 2 != 0) text.insert(2, "0");
    const auto bytes = gateway::eth::from_hex(text);
    check(bytes.has_value(), "a quantity is hex");
    return *bytes;
}

Bytes quantity_field(const json::value& v) {
    return rlp::encode_bytes(quantity_bytes(v));
}

Bytes hex_field(const json::value& v) {
    check(v.is_string(), "hex data is a string");
    const auto bytes = gateway::eth::from_hex(v.get_string());
    check(bytes.has_value(), "hex data is hex");
    return rlp::encode_bytes(*bytes);
}

Bytes access_list(const json::value& v) {
    Bytes entries;
    for (const json::value& entry : v.as_array()) {
        const json::object& o = entry.as_object();
        Bytes keys;
        for (const json::value& key : o.at("storageKeys").as_array()) append(keys, hex_field(key));
        Bytes fields = hex_field(o.at("address"));
        append(fields, rlp::encode_list(keys));
        append(entries, rlp::encode_list(fields));
    }
    return rlp::encode_list(entries);
}

Bytes authorization_list(const json::value& v) {
    Bytes entries;
    for (const json::value& entry : v.as_array()) {
        const json::object& o = entry.as_object();
        Bytes fields = quantity_field(o.at("chainId"));
        append(fields, hex_field(o.at("address")));
        for (const char* key : {"nonce", "yParity", "r", "s"})
            append(fields, quantity_field(o.at(key)));
        append(entries, rlp::encode_list(fields));
    }
    return rlp::encode_list(entries);
}

// The signed transaction encoded again from what the decoder read, by way of the JSON a client
// sees (eth_getTransactionByHash of a pending transaction), so that both are checked.
Bytes encode(const Transaction& tx) {
    const json::object rpc = gateway::eth::to_rpc_json(tx);
    const auto field = [&](const char* key) -> const json::value& {
        const json::value* v = rpc.if_contains(key);
        check(v != nullptr, "the JSON has every field of the type");
        return *v;
    };
    const Bytes to = tx.to ? rlp::encode_bytes(*tx.to) : rlp::encode_bytes(Bytes{});
    check(field("to").is_null() == !tx.to, "to is null for a contract creation only");

    Bytes fields;
    if (tx.type == TxType::legacy) {
        append(fields, quantity_field(field("nonce")));
        append(fields, quantity_field(field("gasPrice")));
        append(fields, quantity_field(field("gas")));
        append(fields, to);
        append(fields, quantity_field(field("value")));
        append(fields, hex_field(field("input")));
        append(fields, quantity_field(field("v")));
        append(fields, quantity_field(field("r")));
        append(fields, quantity_field(field("s")));
        return rlp::encode_list(fields);
    }
    append(fields, quantity_field(field("chainId")));
    append(fields, quantity_field(field("nonce")));
    if (tx.type == TxType::access_list) {
        append(fields, quantity_field(field("gasPrice")));
    } else {
        append(fields, quantity_field(field("maxPriorityFeePerGas")));
        append(fields, quantity_field(field("maxFeePerGas")));
        check(field("gasPrice") == field("maxFeePerGas"), "a pending tx's gasPrice is its fee cap");
    }
    append(fields, quantity_field(field("gas")));
    append(fields, to);
    append(fields, quantity_field(field("value")));
    append(fields, hex_field(field("input")));
    append(fields, access_list(field("accessList")));
    if (tx.type == TxType::set_code) append(fields, authorization_list(field("authorizationList")));
    if (tx.type == TxType::blob) {
        append(fields, quantity_field(field("maxFeePerBlobGas")));
        Bytes hashes;
        for (const json::value& h : field("blobVersionedHashes").as_array())
            append(hashes, hex_field(h));
        append(fields, rlp::encode_list(hashes));
    }
    append(fields, quantity_field(field("yParity")));
    append(fields, quantity_field(field("r")));
    append(fields, quantity_field(field("s")));
    Bytes out{static_cast<std::uint8_t>(tx.type)};
    append(out, rlp::encode_list(fields));
    return out;
}

// A blob transaction: its hash is over its payload, which is the input or the first item of the
// input's list, and whatever sidecar came with it matches what it signed.
void check_blob(const Transaction& tx) {
    check(tx.hash == gateway::eth::keccak256(tx.payload), "the hash is keccak256 of the payload");
    check(!tx.blob_versioned_hashes.empty() &&
              tx.blob_versioned_hashes.size() <= gateway::eth::kMaxBlobsPerTransaction,
          "1 to 6 blobs");
    check(tx.to.has_value(), "a blob transaction does not create a contract");
    check(tx.payload.size() <= gateway::eth::kMaxBlobPayloadBytes, "payload within its limit");
    if (tx.sidecar == BlobSidecar::none) {
        check(tx.payload == tx.raw, "without a sidecar, the payload is the input");
        return;
    }
    const rlp::Item outer = rlp::decode(std::span(tx.raw).subspan(1));
    check(outer.is_list && !outer.items.empty(), "a network form is a list");
    const rlp::Item& body = outer.items[0];
    check(std::equal(body.encoded.begin(), body.encoded.end(), tx.payload.begin() + 1,
                     tx.payload.end()),
          "the payload is the network form's first item");
    const bool v7594 = tx.sidecar == BlobSidecar::eip7594;
    check(outer.items.size() == (v7594 ? 5u : 4u), "a network form's item count");
    const std::size_t first = v7594 ? 2 : 1;
    const rlp::Item& blobs = outer.items[first];
    const rlp::Item& commitments = outer.items[first + 1];
    const rlp::Item& proofs = outer.items[first + 2];
    const std::size_t count = tx.blob_versioned_hashes.size();
    check(blobs.items.size() == count && commitments.items.size() == count,
          "a blob and a commitment per versioned hash");
    check(proofs.items.size() == count * (v7594 ? gateway::eth::kCellProofsPerBlob : 1),
          "proofs per blob");
    for (std::size_t i = 0; i < count; ++i) {
        check(blobs.items[i].payload.size() == gateway::eth::kBlobBytes, "blob size");
        check(gateway::eth::versioned_hash(commitments.items[i].payload) ==
                  tx.blob_versioned_hashes[i],
              "each commitment hashes to its versioned hash");
    }
}

void check_transaction(std::span<const std::uint8_t> raw) {
    Transaction tx;
    try {
        tx = gateway::eth::decode_transaction(raw);
    } catch (const DecodeError& e) {
        check(std::string_view(e.what()).starts_with("invalid transaction: "),
              "transaction errors say so");
        return;
    }
    check(std::equal(tx.raw.begin(), tx.raw.end(), raw.begin(), raw.end()), "raw is the input");
    if (tx.type == TxType::blob) {
        check_blob(tx);
    } else {
        check(tx.payload.empty() && tx.sidecar == BlobSidecar::none,
              "no payload apart, no sidecar");
        check(tx.hash == gateway::eth::keccak256(raw), "the hash is keccak256 of the input");
    }
    check(tx.y_parity <= 1, "y parity is 0 or 1");
    if (tx.type == TxType::legacy) {
        check(tx.chain_id ? tx.v == *tx.chain_id * 2 + 35 + tx.y_parity : tx.v == 27u + tx.y_parity,
              "legacy v is EIP-155's or 27/28");
    } else {
        check(tx.chain_id.has_value() && tx.v == tx.y_parity, "typed: chain id, v is y parity");
    }
    // A blob transaction's payload is checked to be in its input by check_blob.
    const Bytes again = encode(tx);
    const std::span<const std::uint8_t> encoded = tx.type == TxType::blob ? tx.payload : raw;
    check(std::equal(again.begin(), again.end(), encoded.begin(), encoded.end()),
          "a decoded transaction encodes back to its input");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::span<const std::uint8_t> input(data, size);
    // The bare RLP decoder on the whole input, and on it without a type byte, as typed
    // transactions are read.
    check_rlp(input);
    if (!input.empty() && input[0] < 0x80) check_rlp(input.subspan(1));
    check_transaction(input);
    return 0;
}
