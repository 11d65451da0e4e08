#pragma once
// The JOSE pieces the auth module needs (RFC 7515, 7517, 7518), on OpenSSL 3: base64url, SHA-256,
// public keys read from a JWKS, and RS256 / ES256 signature checks. Private to src/auth.

#include <openssl/types.h>
#include <boost/system/result.hpp>

#include <array>
#include <cstddef>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace gateway::auth::detail {

/// Decodes unpadded base64url (RFC 4648 §5). nullopt on any other character, on padding, on a
/// length no encoding has, or on non-zero unused bits (so each value has one encoding).
std::optional<std::string> base64url_decode(std::string_view text);

/// Whether `text` has the compact JWS shape: three base64url parts separated by dots, the first
/// two not empty.
bool looks_like_jws(std::string_view text);

using Digest = std::array<unsigned char, 32>;
/// SHA-256 of `data`; nullopt only when OpenSSL cannot digest at all (out of memory).
std::optional<Digest> sha256(std::string_view data);
/// Compares two digests in constant time.
bool digest_equals(const Digest& a, const Digest& b);

/// A signature key from a JWKS. The EVP_PKEY is only read once made, so threads may verify
/// with it at the same time.
struct PublicKey {
    enum class Type { rsa, ec_p256 };
    Type type = Type::rsa;
    std::shared_ptr<EVP_PKEY> key;
};

/// Keys by kid (heterogeneous lookup: a string_view finds a key without a copy).
using KeyMap = std::map<std::string, PublicKey, std::less<>>;

/// The algorithm a key type signs with: "RS256" or "ES256".
std::string_view algorithm_of(PublicKey::Type type);

/// Reads a JWKS document: an object with a "keys" array. Usable keys are RSA keys (n, e; at least
/// 2048 bits) and P-256 keys (x, y), each with a kid and, when present, "use": "sig" and an alg
/// matching its type; other keys are skipped (`skipped` counts them). Errors say what is wrong
/// with the document, never quoting it.
struct Jwks {
    KeyMap keys;
    std::size_t skipped = 0;
};
boost::system::result<Jwks, std::string> parse_jwks(std::string_view json);

/// Whether `signature` over `signed_part` verifies with `key` under `alg` ("RS256" with an RSA
/// key; "ES256" with a P-256 key and a 64-byte r || s signature). False for any other pairing
/// and for a signature of the wrong length.
bool verify_signature(const PublicKey& key, std::string_view alg, std::string_view signed_part,
                      std::string_view signature);

}  // namespace gateway::auth::detail
