#pragma once
// Private to the custody module: scrypt (RFC 7914) for keystores whose parameters OpenSSL
// refuses.
//
// OpenSSL enforces RFC 7914's "N less than 2^(128 * r / 8)", so it will not derive a key for
// n=262144 with r=1. go-ethereum and most wallets do not check that, and such keystores exist:
// the Web3 Secret Storage Definition's own scrypt test vector is one. Keys for them come from
// this plain implementation; every other scrypt keystore goes through OpenSSL.

#include <cstdint>
#include <span>
#include <string_view>

namespace gateway::custody::detail {

/// True when OpenSSL's scrypt refuses (n, r) for n >= 2^(16 r), which scrypt_unchecked accepts.
bool scrypt_outside_rfc7914(std::uint64_t n, std::uint64_t r);

/// scrypt(passphrase, salt, n, r, p) into `out`, without RFC 7914's bound on n. The caller has
/// already checked that n is a power of 2 above 1, r and p positive, and the memory it takes
/// (128 * r * n bytes) acceptable. Returns false only when memory cannot be had. Buffers holding
/// intermediate values are wiped before it returns.
bool scrypt_unchecked(std::string_view passphrase, std::span<const std::uint8_t> salt,
                      std::uint64_t n, std::uint32_t r, std::uint32_t p,
                      std::span<std::uint8_t> out);

}  // namespace gateway::custody::detail
