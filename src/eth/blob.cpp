#include "gateway/eth/blob.hpp"

#include <fmt/format.h>
#include <openssl/sha.h>

#include <string>
#include <string_view>

namespace gateway::eth {
namespace {

[[noreturn]] void fail(const std::string& what) {
    throw DecodeError(what);
}

const rlp::Item& list_of(const rlp::Item& item, std::string_view what) {
    if (!item.is_list) fail(fmt::format("blob sidecar: {} is not a list", what));
    return item;
}

void check_sizes(const rlp::Item& list, std::string_view what, std::size_t size) {
    for (std::size_t i = 0; i < list.items.size(); ++i) {
        const rlp::Item& item = list.items[i];
        if (item.is_list || item.payload.size() != size) {
            fail(fmt::format("blob sidecar: {} {} must be {} bytes, got {}", what, i, size,
                             item.is_list ? "a list" : std::to_string(item.payload.size())));
        }
    }
}

}  // namespace

Hash versioned_hash(std::span<const std::uint8_t> commitment) {
    Hash out{};
    SHA256(commitment.data(), commitment.size(), out.data());
    out[0] = kKzgVersion;
    return out;
}

BlobSidecar check_sidecar(std::span<const rlp::Item> items,
                          std::span<const Hash> versioned_hashes) {
    BlobSidecar form;
    if (items.size() == 3) {
        form = BlobSidecar::eip4844;
    } else if (items.size() == 4) {
        // EIP-7594 marks its form with a version between the payload and the blobs.
        if (items[0].is_list || rlp::to_uint64(items[0], "wrapper version") != 1) {
            fail("blob sidecar: wrapper version must be 1 (EIP-7594)");
        }
        form = BlobSidecar::eip7594;
        items = items.subspan(1);
    } else {
        fail(fmt::format(
            "blob transaction network form has {} items; expected [tx_payload_body, blobs, "
            "commitments, proofs] (EIP-4844) or [tx_payload_body, 1, blobs, commitments, "
            "cell_proofs] (EIP-7594)",
            items.size() + 1));
    }
    const rlp::Item& blobs = list_of(items[0], "blobs");
    const rlp::Item& commitments = list_of(items[1], "commitments");
    const rlp::Item& proofs =
        list_of(items[2], form == BlobSidecar::eip4844 ? "proofs" : "cell_proofs");
    const std::size_t count = versioned_hashes.size();
    if (blobs.items.size() != count || commitments.items.size() != count) {
        fail(fmt::format(
            "blob sidecar has {} blob(s) and {} commitment(s) for {} versioned hash(es); "
            "each versioned hash needs one blob and one commitment",
            blobs.items.size(), commitments.items.size(), count));
    }
    const std::size_t proofs_per_blob = form == BlobSidecar::eip4844 ? 1 : kCellProofsPerBlob;
    if (proofs.items.size() != count * proofs_per_blob) {
        fail(form == BlobSidecar::eip4844
                 ? fmt::format("blob sidecar has {} proof(s) for {} blob(s); EIP-4844 needs one "
                               "per blob",
                               proofs.items.size(), count)
                 : fmt::format("blob sidecar has {} cell proof(s) for {} blob(s); EIP-7594 needs "
                               "{} per blob ({})",
                               proofs.items.size(), count, kCellProofsPerBlob,
                               count * kCellProofsPerBlob));
    }
    check_sizes(blobs, "blob", kBlobBytes);
    check_sizes(commitments, "commitment", kCommitmentBytes);
    check_sizes(proofs, form == BlobSidecar::eip4844 ? "proof" : "cell proof", kProofBytes);
    for (std::size_t i = 0; i < count; ++i) {
        if (versioned_hash(commitments.items[i].payload) != versioned_hashes[i]) {
            fail(fmt::format(
                "blob sidecar: commitment {} does not match versioned hash {} ({}): a versioned "
                "hash is 0x01 followed by the last 31 bytes of sha256(commitment)",
                i, i, to_hex(versioned_hashes[i])));
        }
    }
    return form;
}

}  // namespace gateway::eth
