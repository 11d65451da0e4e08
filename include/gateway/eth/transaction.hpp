#pragma once
// Signed transactions as clients send them to eth_sendRawTransaction: decoded, checked and their
// sender recovered, so the gateway knows what it forwards before any node sees it.

#include "gateway/eth/blob.hpp"
#include "gateway/eth/hex.hpp"
#include "gateway/eth/rlp.hpp"

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>
#include <boost/system/result.hpp>

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace gateway::eth {

/// The EIP-2718 transaction type.
enum class TxType : std::uint8_t {
    legacy = 0x00,       ///< an RLP list without a type byte (pre-EIP-155 or EIP-155)
    access_list = 0x01,  ///< EIP-2930
    dynamic_fee = 0x02,  ///< EIP-1559
    blob = 0x03,         ///< EIP-4844
    set_code = 0x04,     ///< EIP-7702
};

/// A secp256k1 signature scalar, big-endian, left-padded to 32 bytes.
using Scalar = std::array<std::uint8_t, 32>;

/// A decoded, signature-checked transaction. Amounts of wei are JSON-RPC quantity strings
/// ("0x3b9aca00") because they may need all 256 bits.
struct Transaction {
    TxType type = TxType::legacy;
    /// Absent only for a legacy transaction signed before EIP-155 (v 27 or 28), which any chain
    /// accepts. Chain ids past 64 bits are refused.
    std::optional<std::uint64_t> chain_id;
    std::uint64_t nonce = 0;
    std::optional<std::string> gas_price;                 ///< legacy and EIP-2930
    std::optional<std::string> max_fee_per_gas;           ///< EIP-1559, EIP-4844, EIP-7702
    std::optional<std::string> max_priority_fee_per_gas;  ///< EIP-1559, EIP-4844, EIP-7702
    std::optional<std::string> max_fee_per_blob_gas;      ///< EIP-4844
    std::uint64_t gas = 0;
    std::optional<Address> to;  ///< absent for a contract creation
    std::string value;
    Bytes input;
    /// [{"address", "storageKeys"}] for typed transactions; null for legacy ones.
    boost::json::value access_list;
    /// [{"chainId", "address", "nonce", "yParity", "r", "s"}] for EIP-7702; null otherwise.
    boost::json::value authorization_list;
    /// EIP-4844: one per blob, 1 to kMaxBlobsPerTransaction of them.
    std::vector<Hash> blob_versioned_hashes;
    /// EIP-4844: the form `raw` came in; none for the other types.
    BlobSidecar sidecar = BlobSidecar::none;
    /// As signed: 27/28 or chain_id*2+35/36 for legacy transactions, y_parity for typed ones.
    std::uint64_t v = 0;
    std::uint8_t y_parity = 0;  ///< 0 or 1: which of the two candidate public keys signed
    Scalar r{};
    Scalar s{};
    Bytes raw;  ///< the bytes as received
    /// A blob transaction's signed bytes without its sidecar, 0x03 || rlp(tx_payload_body): what
    /// blocks hold and its hash is over. Empty for the other types, whose `raw` is that.
    Bytes payload;
    /// keccak256(raw), or of `payload` for a blob transaction: the hash nodes and explorers know
    /// the transaction by.
    Hash hash{};
    Address sender{};  ///< recovered from the signature
};

/// Decodes a signed raw transaction: legacy, EIP-2930, EIP-1559, EIP-4844 or EIP-7702. A blob
/// transaction may come with its sidecar (either network form, checked by check_sidecar) or
/// without (`sidecar` is none: the caller decides whether that will do). Throws DecodeError with
/// a message that starts "invalid transaction: " and says what to fix: malformed RLP, an unknown
/// type, a field of the wrong size or with leading zeros, a blob transaction that creates a
/// contract, has no blob or too many, or whose sidecar does not match, a signature that is
/// malleable (s > n/2), out of range or that recovers no key. Pure; safe from any thread.
Transaction decode_transaction(std::span<const std::uint8_t> raw);

/// decode_transaction for the request path: the transaction, or the message decode_transaction
/// would throw. Never throws (but std::bad_alloc).
boost::system::result<Transaction, std::string> parse_transaction(
    std::span<const std::uint8_t> raw);

/// The transaction as eth_getTransactionByHash shows a pending one (geth's field names and
/// order): blockHash, blockNumber and transactionIndex null; gasPrice is maxFeePerGas for
/// EIP-1559, EIP-4844 and EIP-7702 transactions; from and addresses lowercase. A blob
/// transaction shows maxFeePerBlobGas and blobVersionedHashes, not its sidecar.
boost::json::object to_rpc_json(const Transaction& tx);

}  // namespace gateway::eth
