#include "support/tx_signer.hpp"

#include "gateway/eth/keccak.hpp"
#include "gateway/eth/rlp.hpp"

#include <secp256k1.h>
#include <secp256k1_recovery.h>

#include <stdexcept>

namespace gateway::test {

namespace {

secp256k1_context* context() {
    static secp256k1_context* ctx = secp256k1_context_create(SECP256K1_CONTEXT_SIGN);
    return ctx;
}

eth::Bytes key_bytes(const std::string& private_key) {
    auto key = eth::from_hex(private_key);
    if (!key || key->size() != 32) throw std::invalid_argument("a private key is 32 bytes of hex");
    return *key;
}

void append(eth::Bytes& out, const eth::Bytes& more) {
    out.insert(out.end(), more.begin(), more.end());
}

eth::Bytes trim(const std::uint8_t* p32) {
    std::size_t i = 0;
    while (i < 32 && p32[i] == 0) ++i;
    return eth::Bytes(p32 + i, p32 + 32);
}

eth::Bytes string_list(const std::vector<eth::Bytes>& strings) {
    eth::Bytes items;
    for (const auto& s : strings) append(items, eth::rlp::encode_bytes(s));
    return eth::rlp::encode_list(items);
}

}  // namespace

std::string address_of(const std::string& private_key) {
    const eth::Bytes key = key_bytes(private_key);
    secp256k1_pubkey pub;
    if (!secp256k1_ec_pubkey_create(context(), &pub, key.data()))
        throw std::invalid_argument("not a valid private key");
    std::uint8_t out[65];
    std::size_t len = sizeof out;
    secp256k1_ec_pubkey_serialize(context(), out, &len, &pub, SECP256K1_EC_UNCOMPRESSED);
    const eth::Hash h = eth::keccak256(std::span<const std::uint8_t>(out + 1, 64));
    return eth::to_hex(std::span<const std::uint8_t>(h.data() + 12, 20));
}

std::string sign_legacy(const std::string& private_key, const TxParams& p) {
    const eth::Bytes key = key_bytes(private_key);
    const auto to = eth::from_hex(p.to);
    if (!to || to->size() != 20) throw std::invalid_argument("`to` is 20 bytes of hex");
    eth::Bytes fields;
    append(fields, eth::rlp::encode_uint(p.nonce));
    append(fields, eth::rlp::encode_uint(p.gas_price));
    append(fields, eth::rlp::encode_uint(p.gas));
    append(fields, eth::rlp::encode_bytes(*to));
    append(fields, eth::rlp::encode_uint(p.value));
    append(fields, eth::rlp::encode_bytes(eth::Bytes{}));
    eth::Bytes unsigned_fields = fields;  // EIP-155: chain id, 0, 0
    append(unsigned_fields, eth::rlp::encode_uint(p.chain_id));
    append(unsigned_fields, eth::rlp::encode_uint(0));
    append(unsigned_fields, eth::rlp::encode_uint(0));
    const eth::Hash digest = eth::keccak256(eth::rlp::encode_list(unsigned_fields));

    secp256k1_ecdsa_recoverable_signature sig;
    if (!secp256k1_ecdsa_sign_recoverable(context(), &sig, digest.data(), key.data(), nullptr,
                                          nullptr))
        throw std::runtime_error("signing failed");
    std::uint8_t compact[64];
    int recid = 0;
    secp256k1_ecdsa_recoverable_signature_serialize_compact(context(), compact, &recid, &sig);
    if (p.high_s) {
        // s' = n - s, with n the order of secp256k1.
        static const std::uint8_t n[32] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                           0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe,
                                           0xba, 0xae, 0xdc, 0xe6, 0xaf, 0x48, 0xa0, 0x3b,
                                           0xbf, 0xd2, 0x5e, 0x8c, 0xd0, 0x36, 0x41, 0x41};
        int borrow = 0;
        for (int i = 31; i >= 0; --i) {
            int d = n[i] - compact[32 + i] - borrow;
            borrow = d < 0;
            compact[32 + i] = static_cast<std::uint8_t>(d + (borrow ? 256 : 0));
        }
        recid ^= 1;
    }
    append(fields, eth::rlp::encode_uint(p.chain_id * 2 + 35 + static_cast<std::uint64_t>(recid)));
    append(fields, eth::rlp::encode_bytes(trim(compact)));
    append(fields, eth::rlp::encode_bytes(trim(compact + 32)));
    return eth::to_hex(eth::rlp::encode_list(fields));
}

eth::Bytes network_form(const eth::Bytes& payload, const BlobParts& parts, eth::BlobSidecar form,
                        std::optional<std::vector<eth::Bytes>> cell_proofs) {
    eth::Bytes items(payload.begin() + 1, payload.end());
    std::vector<eth::Bytes> proofs = parts.proofs;
    if (form == eth::BlobSidecar::eip7594) {
        append(items, eth::rlp::encode_uint(1));
        if (cell_proofs) {
            proofs = *cell_proofs;
        } else {
            proofs.clear();
            for (const auto& proof : parts.proofs)
                for (std::size_t cell = 0; cell < eth::kCellProofsPerBlob; ++cell) {
                    proofs.push_back(proof);
                    proofs.back()[1] = static_cast<std::uint8_t>(cell);
                }
        }
    }
    append(items, string_list(parts.blobs));
    append(items, string_list(parts.commitments));
    append(items, string_list(proofs));
    eth::Bytes out{0x03};
    append(out, eth::rlp::encode_list(items));
    return out;
}

BlobTx sign_blob(const std::string& private_key, const BlobTxParams& p) {
    const eth::Bytes key = key_bytes(private_key);
    const auto to = eth::from_hex(p.to.empty() ? "0x" : p.to);
    if (!to || (to->size() != 20 && !to->empty()))
        throw std::invalid_argument("`to` is 20 bytes of hex or empty");
    BlobTx tx;
    eth::Bytes hashes;
    for (std::size_t i = 0; i < p.blobs; ++i) {
        eth::Bytes blob(eth::kBlobBytes, 0);
        blob[0] = static_cast<std::uint8_t>(i);
        eth::Bytes commitment(eth::kCommitmentBytes, static_cast<std::uint8_t>(0xa0 + i));
        eth::Bytes proof(eth::kProofBytes, static_cast<std::uint8_t>(0xb0 + i));
        const eth::Hash versioned = eth::versioned_hash(commitment);
        append(hashes, eth::rlp::encode_bytes(eth::Bytes(versioned.begin(), versioned.end())));
        tx.parts.blobs.push_back(std::move(blob));
        tx.parts.commitments.push_back(std::move(commitment));
        tx.parts.proofs.push_back(std::move(proof));
    }
    eth::Bytes fields;
    append(fields, eth::rlp::encode_uint(p.chain_id));
    append(fields, eth::rlp::encode_uint(p.nonce));
    append(fields, eth::rlp::encode_uint(p.max_priority_fee_per_gas));
    append(fields, eth::rlp::encode_uint(p.max_fee_per_gas));
    append(fields, eth::rlp::encode_uint(p.gas));
    append(fields, eth::rlp::encode_bytes(*to));
    append(fields, eth::rlp::encode_uint(0));              // value
    append(fields, eth::rlp::encode_bytes(eth::Bytes{}));  // input
    append(fields, eth::rlp::encode_list(eth::Bytes{}));   // access list
    append(fields, eth::rlp::encode_uint(p.max_fee_per_blob_gas));
    append(fields, eth::rlp::encode_list(hashes));
    eth::Bytes preimage{0x03};
    append(preimage, eth::rlp::encode_list(fields));
    const eth::Hash digest = eth::keccak256(preimage);

    secp256k1_ecdsa_recoverable_signature sig;
    if (!secp256k1_ecdsa_sign_recoverable(context(), &sig, digest.data(), key.data(), nullptr,
                                          nullptr))
        throw std::runtime_error("signing failed");
    std::uint8_t compact[64];
    int recid = 0;
    secp256k1_ecdsa_recoverable_signature_serialize_compact(context(), compact, &recid, &sig);
    append(fields, eth::rlp::encode_uint(static_cast<std::uint64_t>(recid)));
    append(fields, eth::rlp::encode_bytes(trim(compact)));
    append(fields, eth::rlp::encode_bytes(trim(compact + 32)));
    tx.payload = {0x03};
    append(tx.payload, eth::rlp::encode_list(fields));
    tx.hash = eth::to_hex(eth::keccak256(tx.payload));
    return tx;
}

}  // namespace gateway::test
