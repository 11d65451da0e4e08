#include "gateway/eth/transaction.hpp"

#include "gateway/eth/keccak.hpp"

#include <fmt/format.h>
#include <secp256k1.h>
#include <secp256k1_recovery.h>

#include <algorithm>
#include <string>
#include <string_view>

namespace gateway::eth {
namespace {

namespace json = boost::json;

[[noreturn]] void fail(const std::string& what) {
    throw DecodeError(what);
}

// The order n of the secp256k1 group, and n / 2: EIP-2 (Homestead) refuses s above it, so that
// each transaction has one valid signature and therefore one hash.
constexpr Scalar kOrder = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                           0xff, 0xff, 0xff, 0xff, 0xfe, 0xba, 0xae, 0xdc, 0xe6, 0xaf, 0x48,
                           0xa0, 0x3b, 0xbf, 0xd2, 0x5e, 0x8c, 0xd0, 0x36, 0x41, 0x41};
constexpr Scalar kHalfOrder = {0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                               0xff, 0xff, 0xff, 0xff, 0xff, 0x5d, 0x57, 0x6e, 0x73, 0x57, 0xa4,
                               0x50, 0x1d, 0xdf, 0xe9, 0x2f, 0x46, 0x68, 0x1b, 0x20, 0xa0};

std::string_view type_name(TxType type) {
    switch (type) {
        case TxType::legacy: return "legacy";
        case TxType::access_list: return "EIP-2930";
        case TxType::dynamic_fee: return "EIP-1559";
        case TxType::blob: return "EIP-4844";
        case TxType::set_code: return "EIP-7702";
    }
    return "unknown";
}

std::string quantity(const rlp::Item& item, std::string_view field) {
    return to_quantity(rlp::to_uint256(item, field));
}

Bytes string_field(const rlp::Item& item, std::string_view field) {
    if (item.is_list) fail(fmt::format("{} is a list, expected a byte string", field));
    return {item.payload.begin(), item.payload.end()};
}

Address address_field(const rlp::Item& item, std::string_view field) {
    if (item.is_list) fail(fmt::format("{} is a list, expected an address", field));
    if (item.payload.size() != 20) {
        fail(fmt::format("{} must be 20 bytes, got {}", field, item.payload.size()));
    }
    Address out{};
    std::copy(item.payload.begin(), item.payload.end(), out.begin());
    return out;
}

std::optional<Address> to_field(const rlp::Item& item) {
    if (!item.is_list && item.payload.empty()) return std::nullopt;  // a contract creation
    if (!item.is_list && item.payload.size() != 20) {
        fail(fmt::format("to must be a 20-byte address or empty (contract creation), got {} bytes",
                         item.payload.size()));
    }
    return address_field(item, "to");
}

json::value access_list_field(const rlp::Item& item) {
    if (!item.is_list) fail("accessList is not a list");
    json::array out;
    for (std::size_t i = 0; i < item.items.size(); ++i) {
        const rlp::Item& entry = item.items[i];
        if (!entry.is_list || entry.items.size() != 2) {
            fail(fmt::format("accessList entry {} must be a list [address, storageKeys]", i));
        }
        const Address address =
            address_field(entry.items[0], fmt::format("accessList entry {} address", i));
        const rlp::Item& keys = entry.items[1];
        if (!keys.is_list) fail(fmt::format("accessList entry {} storageKeys is not a list", i));
        json::array storage_keys;
        for (std::size_t k = 0; k < keys.items.size(); ++k) {
            const rlp::Item& key = keys.items[k];
            if (key.is_list || key.payload.size() != 32) {
                fail(fmt::format("accessList entry {} storage key {} must be 32 bytes", i, k));
            }
            storage_keys.emplace_back(to_hex(key.payload));
        }
        out.emplace_back(
            json::object{{"address", to_hex(address)}, {"storageKeys", std::move(storage_keys)}});
    }
    return out;
}

json::value authorization_list_field(const rlp::Item& item) {
    if (!item.is_list) fail("authorizationList is not a list");
    // EIP-7702: "The transaction is also considered invalid when the length of
    // authorization_list is zero."
    if (item.items.empty()) fail("authorizationList is empty; an EIP-7702 transaction needs one");
    json::array out;
    for (std::size_t i = 0; i < item.items.size(); ++i) {
        const rlp::Item& auth = item.items[i];
        if (!auth.is_list || auth.items.size() != 6) {
            fail(fmt::format(
                "authorizationList entry {} must be a list [chainId, address, nonce, yParity, r, "
                "s]",
                i));
        }
        const auto field = [i](std::string_view name) {
            return fmt::format("authorizationList entry {} {}", i, name);
        };
        // Only the shape is checked: an authorization with a bad signature or chain id does not
        // make the transaction invalid, the EVM skips it.
        json::object entry;
        entry["chainId"] = quantity(auth.items[0], field("chainId"));
        entry["address"] = to_hex(address_field(auth.items[1], field("address")));
        entry["nonce"] = to_quantity(rlp::to_uint64(auth.items[2], field("nonce")));
        const std::uint64_t y_parity = rlp::to_uint64(auth.items[3], field("yParity"));
        if (y_parity > 0xff) fail(field("yParity") + " does not fit in one byte");
        entry["yParity"] = to_quantity(y_parity);
        entry["r"] = quantity(auth.items[4], field("r"));
        entry["s"] = quantity(auth.items[5], field("s"));
        out.emplace_back(std::move(entry));
    }
    return out;
}

std::vector<Hash> versioned_hashes_field(const rlp::Item& item) {
    if (!item.is_list) fail("blobVersionedHashes is not a list");
    if (item.items.empty()) {
        fail("blobVersionedHashes is empty; an EIP-4844 transaction carries at least one blob");
    }
    if (item.items.size() > kMaxBlobsPerTransaction) {
        fail(fmt::format("the transaction has {} blobs; at most {} per transaction (EIP-7594)",
                         item.items.size(), kMaxBlobsPerTransaction));
    }
    std::vector<Hash> out;
    for (std::size_t i = 0; i < item.items.size(); ++i) {
        const rlp::Item& hash = item.items[i];
        if (hash.is_list || hash.payload.size() != 32) {
            fail(fmt::format("blobVersionedHashes entry {} must be 32 bytes", i));
        }
        if (hash.payload[0] != kKzgVersion) {
            fail(
                fmt::format("blobVersionedHashes entry {} has version 0x{:02x}; expected 0x{:02x} "
                            "(a KZG commitment)",
                            i, hash.payload[0], kKzgVersion));
        }
        Hash& h = out.emplace_back();
        std::copy(hash.payload.begin(), hash.payload.end(), h.begin());
    }
    return out;
}

Scalar scalar_field(const rlp::Item& item, std::string_view field) {
    const auto bytes = rlp::to_uint256(item, field);
    Scalar out{};
    std::copy(bytes.begin(), bytes.end(), out.end() - static_cast<std::ptrdiff_t>(bytes.size()));
    return out;
}

void check_signature_values(const Transaction& tx) {
    constexpr Scalar kZero{};
    if (tx.r == kZero) fail("signature r is zero");
    if (tx.r >= kOrder) fail("signature r is not below the secp256k1 group order");
    if (tx.s == kZero) fail("signature s is zero");
    if (tx.s > kHalfOrder) {
        fail(
            "signature s is above secp256k1n/2, which EIP-2 forbids; sign again with a library "
            "that produces low-s signatures");
    }
}

const secp256k1_context* recovery_context() {
    // Created once, never destroyed. A context is safe to share between threads for every
    // function that takes it as const, as recovery does.
    static const secp256k1_context* const context =
        secp256k1_context_create(SECP256K1_CONTEXT_NONE);
    return context;
}

Address recover_sender(const Hash& signing_hash, const Transaction& tx) {
    std::array<std::uint8_t, 64> compact{};
    std::copy(tx.r.begin(), tx.r.end(), compact.begin());
    std::copy(tx.s.begin(), tx.s.end(), compact.begin() + 32);
    secp256k1_ecdsa_recoverable_signature signature;
    if (secp256k1_ecdsa_recoverable_signature_parse_compact(recovery_context(), &signature,
                                                            compact.data(), tx.y_parity) != 1) {
        fail("signature cannot be parsed");
    }
    secp256k1_pubkey public_key;
    if (secp256k1_ecdsa_recover(recovery_context(), &public_key, &signature, signing_hash.data()) !=
        1) {
        fail("signature does not recover a public key (r, s or v is wrong)");
    }
    std::array<std::uint8_t, 65> serialized{};
    std::size_t size = serialized.size();
    secp256k1_ec_pubkey_serialize(recovery_context(), serialized.data(), &size, &public_key,
                                  SECP256K1_EC_UNCOMPRESSED);
    // The address is the last 20 bytes of the hash of the key without its 0x04 prefix.
    const Hash key_hash = keccak256(std::span(serialized).subspan(1));
    Address sender{};
    std::copy(key_hash.begin() + 12, key_hash.end(), sender.begin());
    return sender;
}

// The encoded items [first, last) of `list`, concatenated: the payload of a list holding them.
// The decoder accepts canonical encodings only, so these are the bytes the signer encoded.
Bytes encoded_items(const rlp::Item& list, std::size_t first, std::size_t last) {
    Bytes out;
    for (std::size_t i = first; i < last; ++i) {
        out.insert(out.end(), list.items[i].encoded.begin(), list.items[i].encoded.end());
    }
    return out;
}

// [nonce, gasPrice, gas, to, value, data, v, r, s]
Transaction decode_legacy(const rlp::Item& list) {
    if (!list.is_list) fail("legacy transaction is not an RLP list");
    if (list.items.size() != 9) {
        fail(fmt::format("legacy transaction has {} fields, expected 9", list.items.size()));
    }
    const auto& f = list.items;
    Transaction tx;
    tx.type = TxType::legacy;
    tx.nonce = rlp::to_uint64(f[0], "nonce");
    tx.gas_price = quantity(f[1], "gasPrice");
    tx.gas = rlp::to_uint64(f[2], "gas");
    tx.to = to_field(f[3]);
    tx.value = quantity(f[4], "value");
    tx.input = string_field(f[5], "input");
    tx.v = rlp::to_uint64(f[6], "v");
    tx.r = scalar_field(f[7], "r");
    tx.s = scalar_field(f[8], "s");

    Bytes signed_fields = encoded_items(list, 0, 6);
    if (tx.v == 27 || tx.v == 28) {
        tx.y_parity = static_cast<std::uint8_t>(tx.v - 27);  // before EIP-155: any chain
    } else if (tx.v >= 37) {
        // EIP-155: v = chain_id * 2 + 35 + y_parity, and the chain id is signed as well.
        tx.chain_id = (tx.v - 35) / 2;
        tx.y_parity = static_cast<std::uint8_t>((tx.v - 35) % 2);
        const Bytes chain_id = rlp::encode_uint(*tx.chain_id);
        signed_fields.insert(signed_fields.end(), chain_id.begin(), chain_id.end());
        signed_fields.push_back(0x80);
        signed_fields.push_back(0x80);
    } else {
        fail(fmt::format(
            "legacy signature v is {}; expected 27 or 28, or chain_id * 2 + 35 or 36 (EIP-155) "
            "with a chain id of at least 1",
            tx.v));
    }
    check_signature_values(tx);
    tx.sender = recover_sender(keccak256(rlp::encode_list(signed_fields)), tx);
    return tx;
}

// EIP-2930: [chainId, nonce, gasPrice, gas, to, value, data, accessList, yParity, r, s]
// EIP-1559: [chainId, nonce, maxPriorityFeePerGas, maxFeePerGas, gas, to, value, data,
//            accessList, yParity, r, s]
// EIP-4844: as EIP-1559 with maxFeePerBlobGas and blobVersionedHashes after accessList.
// EIP-7702: as EIP-1559 with authorizationList after accessList.
Transaction decode_typed(TxType type, const rlp::Item& list) {
    const std::size_t expected = type == TxType::access_list   ? 11
                                 : type == TxType::dynamic_fee ? 12
                                 : type == TxType::set_code    ? 13
                                                               : 14;
    if (!list.is_list) {
        fail(fmt::format("{} transaction payload is not an RLP list", type_name(type)));
    }
    if (list.items.size() != expected) {
        fail(fmt::format("{} transaction has {} fields, expected {}", type_name(type),
                         list.items.size(), expected));
    }
    const auto& f = list.items;
    std::size_t i = 0;
    Transaction tx;
    tx.type = type;
    tx.chain_id = rlp::to_uint64(f[i++], "chainId");
    tx.nonce = rlp::to_uint64(f[i++], "nonce");
    if (type == TxType::access_list) {
        tx.gas_price = quantity(f[i++], "gasPrice");
    } else {
        tx.max_priority_fee_per_gas = quantity(f[i++], "maxPriorityFeePerGas");
        tx.max_fee_per_gas = quantity(f[i++], "maxFeePerGas");
    }
    tx.gas = rlp::to_uint64(f[i++], "gas");
    tx.to = to_field(f[i++]);
    if (type == TxType::set_code && !tx.to) {
        fail("an EIP-7702 transaction cannot create a contract: to must be a 20-byte address");
    }
    if (type == TxType::blob && !tx.to) {
        fail("an EIP-4844 transaction cannot create a contract: to must be a 20-byte address");
    }
    tx.value = quantity(f[i++], "value");
    tx.input = string_field(f[i++], "input");
    tx.access_list = access_list_field(f[i++]);
    if (type == TxType::set_code) tx.authorization_list = authorization_list_field(f[i++]);
    if (type == TxType::blob) {
        tx.max_fee_per_blob_gas = quantity(f[i++], "maxFeePerBlobGas");
        tx.blob_versioned_hashes = versioned_hashes_field(f[i++]);
    }
    const std::size_t signature_start = i;
    tx.v = rlp::to_uint64(f[i++], "yParity");
    if (tx.v > 1) fail(fmt::format("signature yParity is {}; expected 0 or 1", tx.v));
    tx.y_parity = static_cast<std::uint8_t>(tx.v);
    tx.r = scalar_field(f[i++], "r");
    tx.s = scalar_field(f[i++], "s");
    check_signature_values(tx);

    Bytes preimage{static_cast<std::uint8_t>(type)};
    const Bytes unsigned_list = rlp::encode_list(encoded_items(list, 0, signature_start));
    preimage.insert(preimage.end(), unsigned_list.begin(), unsigned_list.end());
    tx.sender = recover_sender(keccak256(preimage), tx);
    return tx;
}

// EIP-4844: the payload alone (as blocks hold it), or one of the two network forms that wrap it
// with the sidecar. The payload's first item (chainId) is a string, a wrapper's is the payload.
Transaction decode_blob(const rlp::Item& outer) {
    if (!outer.is_list) fail("EIP-4844 transaction payload is not an RLP list");
    const bool wrapped = !outer.items.empty() && outer.items[0].is_list;
    const rlp::Item& body = wrapped ? outer.items[0] : outer;
    if (body.encoded.size() + 1 > kMaxBlobPayloadBytes) {
        fail(
            fmt::format("EIP-4844 transaction payload (without its sidecar) is {} bytes; at most "
                        "{}",
                        body.encoded.size() + 1, kMaxBlobPayloadBytes));
    }
    Transaction tx = decode_typed(TxType::blob, body);
    if (wrapped) {
        tx.sidecar = check_sidecar(std::span(outer.items).subspan(1), tx.blob_versioned_hashes);
    }
    tx.payload.reserve(body.encoded.size() + 1);
    tx.payload.push_back(static_cast<std::uint8_t>(TxType::blob));
    tx.payload.insert(tx.payload.end(), body.encoded.begin(), body.encoded.end());
    return tx;
}

Transaction decode_envelope(std::span<const std::uint8_t> raw) {
    if (raw.empty()) fail("empty input");
    const std::uint8_t first = raw[0];
    if (first >= 0xc0) return decode_legacy(rlp::decode(raw));
    if (first >= 0x80) {
        fail(fmt::format(
            "starts with 0x{:02x}: expected an RLP list (legacy) or a type byte (0x01 to 0x04)",
            first));
    }
    const auto type = static_cast<TxType>(first);
    switch (type) {
        case TxType::blob:
            if (raw.size() == 1) fail("type 0x03 without a payload");
            return decode_blob(rlp::decode(raw.subspan(1)));
        case TxType::access_list:
        case TxType::dynamic_fee:
        case TxType::set_code:
            if (raw.size() == 1) fail(fmt::format("type 0x{:02x} without a payload", first));
            return decode_typed(type, rlp::decode(raw.subspan(1)));
        case TxType::legacy: break;
    }
    fail(fmt::format("unknown transaction type 0x{:02x} (supported: legacy, 0x01 to 0x04)", first));
}

}  // namespace

Transaction decode_transaction(std::span<const std::uint8_t> raw) {
    Transaction tx;
    try {
        tx = decode_envelope(raw);
    } catch (const DecodeError& e) {
        throw DecodeError(std::string("invalid transaction: ") + e.what());
    }
    tx.raw.assign(raw.begin(), raw.end());
    // A blob transaction is known by its payload: the sidecar is not signed and not in blocks.
    tx.hash = keccak256(tx.type == TxType::blob ? std::span<const std::uint8_t>(tx.payload) : raw);
    return tx;
}

boost::system::result<Transaction, std::string> parse_transaction(
    std::span<const std::uint8_t> raw) {
    // The decoder throws from deep inside the RLP; this is where that becomes a value.
    try {
        return decode_transaction(raw);
    } catch (const DecodeError& e) {
        return {boost::system::in_place_error, e.what()};
    }
}

json::object to_rpc_json(const Transaction& tx) {
    // geth's RPCTransaction, field by field in its order, for a transaction not yet in a block.
    json::object out;
    out["blockHash"] = nullptr;
    out["blockNumber"] = nullptr;
    out["from"] = to_hex(tx.sender);
    out["gas"] = to_quantity(tx.gas);
    if (tx.max_fee_per_gas) {
        // geth shows the effective price once mined; until then, the most the sender pays.
        out["gasPrice"] = *tx.max_fee_per_gas;
        out["maxFeePerGas"] = *tx.max_fee_per_gas;
        out["maxPriorityFeePerGas"] = tx.max_priority_fee_per_gas.value_or("0x0");
        if (tx.max_fee_per_blob_gas) out["maxFeePerBlobGas"] = *tx.max_fee_per_blob_gas;
    } else {
        out["gasPrice"] = tx.gas_price.value_or("0x0");
    }
    out["hash"] = to_hex(tx.hash);
    out["input"] = to_hex(tx.input);
    out["nonce"] = to_quantity(tx.nonce);
    out["to"] = tx.to ? json::value(to_hex(*tx.to)) : json::value(nullptr);
    out["transactionIndex"] = nullptr;
    out["value"] = tx.value;
    out["type"] = to_quantity(static_cast<std::uint64_t>(tx.type));
    if (tx.type != TxType::legacy) out["accessList"] = tx.access_list;
    if (tx.chain_id) out["chainId"] = to_quantity(*tx.chain_id);
    if (tx.type == TxType::blob) {
        json::array hashes;
        for (const Hash& h : tx.blob_versioned_hashes) hashes.emplace_back(to_hex(h));
        out["blobVersionedHashes"] = std::move(hashes);
    }
    if (tx.type == TxType::set_code) out["authorizationList"] = tx.authorization_list;
    out["v"] = to_quantity(tx.v);
    out["r"] = to_quantity(tx.r);
    out["s"] = to_quantity(tx.s);
    if (tx.type != TxType::legacy) out["yParity"] = to_quantity(tx.y_parity);
    return out;
}

}  // namespace gateway::eth
