#pragma once
// Signed transactions for the benchmarks: EIP-1559 transfers from keys derived from an index (the
// same on every run), signed with libsecp256k1 and checked with the gateway's own decoder.

#include "gateway/eth/hex.hpp"
#include "gateway/eth/keccak.hpp"
#include "gateway/eth/rlp.hpp"
#include "gateway/eth/transaction.hpp"

#include <secp256k1.h>
#include <secp256k1_recovery.h>

#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace gateway::bench {

namespace eth = gateway::eth;

inline constexpr std::uint64_t kChainId = 31337;

struct Signed {
    std::string raw_hex;
    std::string hash;  // 0x, lowercase: what the gateway must answer
    eth::Address sender{};
    std::uint64_t nonce = 0;
};

class Signer {
public:
    Signer() : ctx_(secp256k1_context_create(SECP256K1_CONTEXT_NONE)) {}
    ~Signer() { secp256k1_context_destroy(ctx_); }
    Signer(const Signer&) = delete;
    Signer& operator=(const Signer&) = delete;

    /// A private key derived from `index` (the same on every run), and its address.
    std::pair<eth::Hash, eth::Address> key(std::size_t index) const {
        for (std::size_t salt = 0;; ++salt) {
            const eth::Hash k = eth::keccak256("chain-gateway intake bench sender " +
                                               std::to_string(index) + "/" + std::to_string(salt));
            if (!secp256k1_ec_seckey_verify(ctx_, k.data())) continue;  // (2^-128 odds)
            secp256k1_pubkey pub;
            if (!secp256k1_ec_pubkey_create(ctx_, &pub, k.data()))
                throw std::runtime_error("secp256k1: cannot derive a public key");
            std::uint8_t out[65];
            std::size_t len = sizeof out;
            secp256k1_ec_pubkey_serialize(ctx_, out, &len, &pub, SECP256K1_EC_UNCOMPRESSED);
            const eth::Hash h = eth::keccak256(std::span<const std::uint8_t>(out + 1, 64));
            eth::Address a{};
            std::copy(h.begin() + 12, h.end(), a.begin());
            return {k, a};
        }
    }

    /// An EIP-1559 transfer of 1 wei: 0x02 || rlp([chainId, nonce, maxPriorityFeePerGas,
    /// maxFeePerGas, gas, to, value, data, accessList, yParity, r, s]), signed over keccak256 of
    /// 0x02 || rlp(the first nine fields).
    Signed sign(const eth::Hash& key, const eth::Address& sender, std::uint64_t nonce) const {
        static const eth::Bytes kTo = *eth::from_hex("0x70997970c51812dc3a010c7d01b50e0d17dc79c8");
        eth::Bytes fields;
        const auto add = [&fields](const eth::Bytes& b) {
            fields.insert(fields.end(), b.begin(), b.end());
        };
        add(eth::rlp::encode_uint(kChainId));
        add(eth::rlp::encode_uint(nonce));
        add(eth::rlp::encode_uint(1'000'000'000));   // maxPriorityFeePerGas: 1 gwei
        add(eth::rlp::encode_uint(30'000'000'000));  // maxFeePerGas: 30 gwei
        add(eth::rlp::encode_uint(21'000));
        add(eth::rlp::encode_bytes(kTo));
        add(eth::rlp::encode_uint(1));
        add(eth::rlp::encode_bytes(eth::Bytes{}));
        add(eth::rlp::encode_list(eth::Bytes{}));  // no access list

        eth::Bytes payload{0x02};
        const eth::Bytes unsigned_list = eth::rlp::encode_list(fields);
        payload.insert(payload.end(), unsigned_list.begin(), unsigned_list.end());
        const eth::Hash digest = eth::keccak256(payload);

        // libsecp256k1 signs with a low s (EIP-2) and an RFC 6979 nonce: deterministic.
        secp256k1_ecdsa_recoverable_signature sig;
        if (!secp256k1_ecdsa_sign_recoverable(ctx_, &sig, digest.data(), key.data(), nullptr,
                                              nullptr))
            throw std::runtime_error("secp256k1: signing failed");
        std::uint8_t compact[64];
        int recid = 0;
        secp256k1_ecdsa_recoverable_signature_serialize_compact(ctx_, compact, &recid, &sig);
        add(eth::rlp::encode_uint(static_cast<std::uint64_t>(recid)));
        add(eth::rlp::encode_uint(std::span<const std::uint8_t>(compact, 32)));
        add(eth::rlp::encode_uint(std::span<const std::uint8_t>(compact + 32, 32)));

        eth::Bytes raw{0x02};
        const eth::Bytes signed_list = eth::rlp::encode_list(fields);
        raw.insert(raw.end(), signed_list.begin(), signed_list.end());
        return Signed{eth::to_hex(raw), eth::to_hex(eth::keccak256(raw)), sender, nonce};
    }

private:
    secp256k1_context* ctx_;
};

/// Signs `per_sender` transactions (nonces 0, 1, ...) for each of `senders` keys starting at
/// `first_sender`, sender-major. Every one is decoded by the gateway's own decoder, which must
/// recover the sender and compute the same hash.
inline std::vector<Signed> sign_all(const Signer& signer, std::size_t first_sender,
                                    std::size_t senders, std::size_t per_sender) {
    std::vector<Signed> out;
    out.reserve(senders * per_sender);
    for (std::size_t s = first_sender; s < first_sender + senders; ++s) {
        const auto [key, address] = signer.key(s);
        for (std::uint64_t n = 0; n < per_sender; ++n) out.push_back(signer.sign(key, address, n));
    }
    for (const Signed& t : out) {
        const eth::Transaction tx = eth::decode_transaction(*eth::from_hex(t.raw_hex));
        if (tx.sender != t.sender || eth::to_hex(tx.hash) != t.hash || tx.nonce != t.nonce ||
            tx.chain_id != kChainId || tx.type != eth::TxType::dynamic_fee)
            throw std::runtime_error(
                "a signed transaction does not decode as signed: " + t.raw_hex.substr(0, 40) +
                "... recovers " + eth::to_hex(tx.sender) + ", expected " + eth::to_hex(t.sender));
    }
    return out;
}

}  // namespace gateway::bench
