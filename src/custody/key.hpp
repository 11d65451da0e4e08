#pragma once
// Private to the custody module: a secp256k1 private key held in memory only, and the one signing
// routine the local signer and the custody stub share.

#include "gateway/custody/signer.hpp"
#include "gateway/eth/hex.hpp"
#include "gateway/eth/unsigned_tx.hpp"

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace gateway::custody::detail {

/// A private key: 32 bytes, wiped (OPENSSL_cleanse) when destroyed or moved from. Move-only so
/// that no copy is left behind unnoticed.
class PrivateKey {
public:
    /// nullopt unless `bytes` is 32 bytes and a valid secp256k1 scalar (0 < k < n).
    static std::optional<PrivateKey> from_bytes(std::span<const std::uint8_t> bytes);

    PrivateKey(PrivateKey&& other) noexcept;
    PrivateKey& operator=(PrivateKey&& other) noexcept;
    PrivateKey(const PrivateKey&) = delete;
    PrivateKey& operator=(const PrivateKey&) = delete;
    ~PrivateKey();

    /// The Ethereum address: the last 20 bytes of keccak256 of the uncompressed public key.
    const eth::Address& address() const { return address_; }

    /// Signs `tx` (EIP-155 or EIP-1559) and returns the signed encoding. Never throws: a
    /// transaction the encoder refuses is `refused` with its reason. Pure CPU, microseconds;
    /// safe from any thread.
    Signed sign(const eth::UnsignedTx& tx) const;

private:
    PrivateKey() = default;
    std::array<std::uint8_t, 32> secret_{};
    eth::Address address_{};
};

/// Parses a hex private key as people write it in files and variables: surrounding whitespace
/// trimmed, "0x" optional, 64 hex digits. nullopt otherwise (the caller words the error; the
/// text itself must never be repeated in one).
std::optional<PrivateKey> parse_hex_key(std::string_view text);

/// The same text as 32 bytes, not yet checked to be a valid key; the caller wipes them.
std::optional<eth::Bytes> parse_hex_secret(std::string_view text);

/// Wipes a string or byte buffer that held a secret.
void wipe(std::string& s);
void wipe(eth::Bytes& b);

}  // namespace gateway::custody::detail
