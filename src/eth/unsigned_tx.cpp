#include "gateway/eth/unsigned_tx.hpp"

#include "gateway/eth/keccak.hpp"
#include "gateway/eth/rlp.hpp"

#include <limits>
#include <span>
#include <stdexcept>

namespace gateway::eth {
namespace {

namespace json = boost::json;

void append(Bytes& out, const Bytes& more) {
    out.insert(out.end(), more.begin(), more.end());
}

Bytes encode_to(const std::optional<Address>& to) {
    // A contract creation has the empty string where the address would be.
    return to ? rlp::encode_bytes(*to) : rlp::encode_bytes(Bytes{});
}

// The fields every signature covers, in the order of the transaction's type: legacy
// [nonce, gasPrice, gas, to, value, data]; EIP-1559 [chainId, nonce, maxPriorityFeePerGas,
// maxFeePerGas, gas, to, value, data, accessList].
Bytes unsigned_fields(const UnsignedTx& tx) {
    Bytes out;
    if (tx.type == TxType::legacy) {
        append(out, rlp::encode_uint(tx.nonce));
        append(out, rlp::encode_uint(tx.gas_price));
    } else {
        append(out, rlp::encode_uint(tx.chain_id));
        append(out, rlp::encode_uint(tx.nonce));
        append(out, rlp::encode_uint(tx.max_priority_fee_per_gas));
        append(out, rlp::encode_uint(tx.max_fee_per_gas));
    }
    append(out, rlp::encode_uint(tx.gas));
    append(out, encode_to(tx.to));
    append(out, rlp::encode_uint(tx.value));
    append(out, rlp::encode_bytes(tx.input));
    if (tx.type != TxType::legacy) append(out, rlp::encode_list(Bytes{}));  // no access list
    return out;
}

Bytes typed(TxType type, const Bytes& list_payload) {
    Bytes out{static_cast<std::uint8_t>(type)};
    append(out, rlp::encode_list(list_payload));
    return out;
}

// The largest chain id whose EIP-155 v (chain_id * 2 + 36 at most) fits in 64 bits.
constexpr std::uint64_t kMaxLegacyChainId = (std::numeric_limits<std::uint64_t>::max() - 36) / 2;

// UnsignedTx is built by the gateway from its own config, never from client input, so a value
// outside the model is a programming error: it throws rather than producing bytes no node takes.
void check(const UnsignedTx& tx) {
    if (tx.type != TxType::legacy && tx.type != TxType::dynamic_fee) {
        throw std::invalid_argument("UnsignedTx: only legacy and EIP-1559 transactions are built");
    }
    if (tx.type == TxType::legacy && tx.chain_id > kMaxLegacyChainId) {
        throw std::invalid_argument("UnsignedTx: chain id too large for an EIP-155 v");
    }
}

}  // namespace

Bytes signing_payload(const UnsignedTx& tx) {
    check(tx);
    Bytes fields = unsigned_fields(tx);
    if (tx.type == TxType::legacy) {
        // EIP-155: the chain id, then two empty integers in place of r and s.
        append(fields, rlp::encode_uint(tx.chain_id));
        append(fields, rlp::encode_uint(0));
        append(fields, rlp::encode_uint(0));
        return rlp::encode_list(fields);
    }
    return typed(tx.type, fields);
}

Hash signing_hash(const UnsignedTx& tx) {
    return keccak256(signing_payload(tx));
}

Bytes encode_signed(const UnsignedTx& tx, std::uint8_t y_parity, const Scalar& r, const Scalar& s) {
    check(tx);
    if (y_parity > 1) throw std::invalid_argument("UnsignedTx: y_parity must be 0 or 1");
    Bytes fields = unsigned_fields(tx);
    if (tx.type == TxType::legacy) {
        // EIP-155: v = chain_id * 2 + 35 + y_parity (check() keeps it within 64 bits).
        append(fields, rlp::encode_uint(tx.chain_id * 2 + 35 + y_parity));
    } else {
        append(fields, rlp::encode_uint(y_parity));
    }
    // r and s are integers: their leading zero bytes are dropped.
    append(fields, rlp::encode_uint(std::span<const std::uint8_t>(r)));
    append(fields, rlp::encode_uint(std::span<const std::uint8_t>(s)));
    if (tx.type == TxType::legacy) return rlp::encode_list(fields);
    return typed(tx.type, fields);
}

json::object sign_request_json(const UnsignedTx& tx, const Address& from) {
    check(tx);
    json::object out;
    out["from"] = to_hex(from);
    // Web3Signer takes a missing `to` as a contract creation.
    if (tx.to) out["to"] = to_hex(*tx.to);
    out["gas"] = to_quantity(tx.gas);
    if (tx.type == TxType::legacy) {
        out["gasPrice"] = to_quantity(tx.gas_price);
    } else {
        out["maxFeePerGas"] = to_quantity(tx.max_fee_per_gas);
        out["maxPriorityFeePerGas"] = to_quantity(tx.max_priority_fee_per_gas);
    }
    out["nonce"] = to_quantity(tx.nonce);
    out["value"] = to_quantity(tx.value);
    out["data"] = to_hex(tx.input);
    out["chainId"] = to_quantity(tx.chain_id);
    return out;
}

}  // namespace gateway::eth
