#include "key.hpp"

#include "gateway/eth/keccak.hpp"

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <secp256k1.h>
#include <secp256k1_recovery.h>

#include <spdlog/spdlog.h>

#include <cstdlib>
#include <exception>
#include <utility>

namespace gateway::custody::detail {

namespace {

// One context for the process, created and randomised (blinding against side channels) once;
// after that libsecp256k1 only reads it, so threads may sign with it at the same time.
const secp256k1_context* context() {
    static const secp256k1_context* ctx = [] {
        secp256k1_context* c = secp256k1_context_create(SECP256K1_CONTEXT_NONE);
        std::array<unsigned char, 32> seed{};
        // Without a seed (or if randomising fails, which it cannot with a valid seed) the
        // context still signs correctly, only without the extra blinding.
        if (RAND_bytes(seed.data(), static_cast<int>(seed.size())) == 1 &&
            secp256k1_context_randomize(c, seed.data()) != 1) {
            spdlog::warn("custody: could not randomise the secp256k1 context");
        }
        OPENSSL_cleanse(seed.data(), seed.size());
        return c;
    }();
    return ctx;
}

int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

bool is_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

}  // namespace

std::optional<PrivateKey> PrivateKey::from_bytes(std::span<const std::uint8_t> bytes) {
    if (bytes.size() != 32) return std::nullopt;
    PrivateKey key;
    std::copy(bytes.begin(), bytes.end(), key.secret_.begin());
    secp256k1_pubkey pub;
    if (!secp256k1_ec_seckey_verify(context(), key.secret_.data()) ||
        !secp256k1_ec_pubkey_create(context(), &pub, key.secret_.data()))
        return std::nullopt;
    std::array<std::uint8_t, 65> out{};
    std::size_t len = out.size();
    secp256k1_ec_pubkey_serialize(context(), out.data(), &len, &pub, SECP256K1_EC_UNCOMPRESSED);
    const eth::Hash h = eth::keccak256(std::span<const std::uint8_t>(out.data() + 1, 64));
    std::copy(h.begin() + 12, h.end(), key.address_.begin());
    return key;
}

PrivateKey::PrivateKey(PrivateKey&& other) noexcept
    : secret_(other.secret_), address_(other.address_) {
    OPENSSL_cleanse(other.secret_.data(), other.secret_.size());
}

PrivateKey& PrivateKey::operator=(PrivateKey&& other) noexcept {
    if (this != &other) {
        secret_ = other.secret_;
        address_ = other.address_;
        OPENSSL_cleanse(other.secret_.data(), other.secret_.size());
    }
    return *this;
}

PrivateKey::~PrivateKey() {
    OPENSSL_cleanse(secret_.data(), secret_.size());
}

Signed PrivateKey::sign(const eth::UnsignedTx& tx) const {
    Signed out;
    try {
        if (tx.type != eth::TxType::legacy && tx.type != eth::TxType::dynamic_fee) {
            out.outcome = Signed::Outcome::refused;
            out.detail = "only legacy (EIP-155) and EIP-1559 transactions can be signed";
            return out;
        }
        const eth::Hash digest = eth::signing_hash(tx);
        secp256k1_ecdsa_recoverable_signature sig;
        // nullptr nonce function: RFC 6979 deterministic nonces, so signing the same transaction
        // twice gives the same bytes (and the same hash) again.
        if (!secp256k1_ecdsa_sign_recoverable(context(), &sig, digest.data(), secret_.data(),
                                              nullptr, nullptr)) {
            out.outcome = Signed::Outcome::refused;
            out.detail = "secp256k1 could not sign";
            return out;
        }
        std::array<std::uint8_t, 64> compact{};
        int recid = 0;
        secp256k1_ecdsa_recoverable_signature_serialize_compact(context(), compact.data(), &recid,
                                                                &sig);
        eth::Scalar r{};
        eth::Scalar s{};
        std::copy(compact.begin(), compact.begin() + 32, r.begin());
        std::copy(compact.begin() + 32, compact.end(), s.begin());
        out.raw = eth::encode_signed(tx, static_cast<std::uint8_t>(recid), r, s);
        out.outcome = Signed::Outcome::signed_ok;
    } catch (const std::exception& e) {
        // The encoder refuses what it cannot encode; nothing here ever holds key material.
        out = Signed{};
        out.outcome = Signed::Outcome::refused;
        out.detail = std::string("cannot sign the transaction: ") + e.what();
    }
    return out;
}

std::optional<eth::Bytes> parse_hex_secret(std::string_view text) {
    while (!text.empty() && is_space(text.front())) text.remove_prefix(1);
    while (!text.empty() && is_space(text.back())) text.remove_suffix(1);
    if (text.size() >= 2 && text[0] == '0' && (text[1] == 'x' || text[1] == 'X'))
        text.remove_prefix(2);
    if (text.size() != 64) return std::nullopt;
    eth::Bytes bytes(32);
    for (std::size_t i = 0; i < 32; ++i) {
        const int hi = hex_digit(text[2 * i]);
        const int lo = hex_digit(text[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            wipe(bytes);
            return std::nullopt;
        }
        bytes[i] = static_cast<std::uint8_t>(hi * 16 + lo);
    }
    return bytes;
}

std::optional<PrivateKey> parse_hex_key(std::string_view text) {
    std::optional<eth::Bytes> bytes = parse_hex_secret(text);
    if (!bytes) return std::nullopt;
    std::optional<PrivateKey> key = PrivateKey::from_bytes(*bytes);
    wipe(*bytes);
    return key;
}

void wipe(std::string& s) {
    if (!s.empty()) OPENSSL_cleanse(s.data(), s.size());
    s.clear();
}

void wipe(eth::Bytes& b) {
    if (!b.empty()) OPENSSL_cleanse(b.data(), b.size());
    b.clear();
}

}  // namespace gateway::custody::detail
