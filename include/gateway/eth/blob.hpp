#pragma once
// EIP-4844 blob sidecars as eth_sendRawTransaction carries them: the blobs, their KZG commitments
// and proofs that travel with a type-3 transaction but are not part of what it signs. Checked for
// shape and against the transaction's versioned hashes; the KZG proofs are left to the nodes.

#include "gateway/eth/hex.hpp"
#include "gateway/eth/rlp.hpp"

#include <cstddef>
#include <cstdint>
#include <span>

namespace gateway::eth {

inline constexpr std::size_t kBlobBytes = 131072;  ///< 4096 field elements of 32 bytes
inline constexpr std::size_t kCommitmentBytes = 48;
inline constexpr std::size_t kProofBytes = 48;
/// EIP-7594 (PeerDAS): one proof per cell, 128 cells per extended blob.
inline constexpr std::size_t kCellProofsPerBlob = 128;
/// EIP-7594's MAX_BLOBS_PER_TX, mainnet's limit per transaction since Fusaka (Osaka). Before it
/// the only limit was the block's (6 in Cancun, 9 in Prague), so 6 is never below a node's.
inline constexpr std::size_t kMaxBlobsPerTransaction = 6;
/// The signed part of a blob transaction (its payload without the sidecar) is at most this, as
/// geth's blob pool allows: its calldata is small, its data rides in the blobs.
inline constexpr std::size_t kMaxBlobPayloadBytes = 1024 * 1024;
/// The first byte of a versioned hash made from a KZG commitment.
inline constexpr std::uint8_t kKzgVersion = 0x01;

/// How a blob transaction came: without a sidecar (as blocks hold it), or in one of the two
/// network forms eth_sendRawTransaction takes.
enum class BlobSidecar : std::uint8_t {
    none,     ///< 0x03 || rlp(tx_payload_body)
    eip4844,  ///< 0x03 || rlp([tx_payload_body, blobs, commitments, proofs])
    eip7594,  ///< 0x03 || rlp([tx_payload_body, 1, blobs, commitments, cell_proofs])
};

/// 0x01 || sha256(commitment)[1:], the hash a blob transaction signs for each blob. Pure.
Hash versioned_hash(std::span<const std::uint8_t> commitment);

/// Checks the items of a network form after tx_payload_body (`items` starts with the wrapper
/// version for EIP-7594, with the blobs for EIP-4844) against the versioned hashes the
/// transaction signed: one blob, commitment and proof (128 cell proofs for EIP-7594) per hash,
/// each of its exact size, each commitment hashing to its versioned hash. Returns the form.
/// Throws DecodeError saying what is wrong. Pure; safe from any thread.
BlobSidecar check_sidecar(std::span<const rlp::Item> items, std::span<const Hash> versioned_hashes);

}  // namespace gateway::eth
