#pragma once
// Signs transactions for tests (the gateway itself never holds keys yet): legacy EIP-155
// transfers and EIP-4844 blob transactions, built with the gateway's RLP encoder and signed with
// libsecp256k1.

#include "gateway/eth/blob.hpp"
#include "gateway/eth/hex.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace gateway::test {

struct TxParams {
    std::uint64_t chain_id = 31337;
    std::uint64_t nonce = 0;
    std::uint64_t gas_price = 2'000'000'000;
    std::uint64_t gas = 21'000;
    std::string to = "0x70997970c51812dc3a010c7d01b50e0d17dc79c8";
    std::uint64_t value = 1;
    bool high_s =
        false;  ///< use the other valid form of the signature, (r, n - s): EIP-2 forbids it
};

/// A signed raw transaction as 0x-hex. `private_key` is 0x and 64 hex digits.
std::string sign_legacy(const std::string& private_key, const TxParams& params);

struct BlobTxParams {
    std::uint64_t chain_id = 31337;
    std::uint64_t nonce = 0;
    std::uint64_t max_priority_fee_per_gas = 1'000'000'000;
    std::uint64_t max_fee_per_gas = 2'000'000'000;
    std::uint64_t max_fee_per_blob_gas = 1'000'000'000;
    std::uint64_t gas = 21'000;
    std::string to = "0x70997970c51812dc3a010c7d01b50e0d17dc79c8";  ///< "" for a creation
    std::size_t blobs = 1;
};

/// The parts of a blob transaction's sidecar, each the bytes of one RLP string, for tests that
/// change one of them.
struct BlobParts {
    std::vector<eth::Bytes> blobs;
    std::vector<eth::Bytes> commitments;
    std::vector<eth::Bytes> proofs;
};

/// A signed blob transaction: its payload and a sidecar whose blobs, commitments and proofs are
/// made up (the gateway does not check KZG) but whose commitments match the versioned hashes.
struct BlobTx {
    eth::Bytes payload;  ///< 0x03 || rlp(tx_payload_body)
    std::string hash;    ///< keccak256(payload)
    BlobParts parts;     ///< one proof per blob (EIP-4844)
};

/// `payload` wrapped with `parts`: EIP-4844's network form, or EIP-7594's (wrapper version 1, and
/// 128 cell proofs per blob made up from `parts` unless `cell_proofs` are given).
eth::Bytes network_form(const eth::Bytes& payload, const BlobParts& parts, eth::BlobSidecar form,
                        std::optional<std::vector<eth::Bytes>> cell_proofs = std::nullopt);

BlobTx sign_blob(const std::string& private_key, const BlobTxParams& params);

/// The address of a private key, 0x-prefixed lowercase.
std::string address_of(const std::string& private_key);

/// anvil's first two dev accounts.
inline const std::string kKey0 =
    "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
inline const std::string kKey1 =
    "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";

}  // namespace gateway::test
