#pragma once
// A token issuer for tests: RSA-2048 and P-256 keys (fixed ones first, then made at run time),
// their JWKS, and compact JWTs signed with them (RS256, ES256 with JOSE r || s), plus the tokens a
// gateway must refuse: alg none, HS256, a broken signature, a payload swapped after signing.

#include <boost/json/object.hpp>

#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace gateway::test {

/// Unpadded base64url (RFC 4648 §5), and back (padding optional; no checks: test data only).
std::string base64url(std::string_view bytes);
std::string base64url_decode(std::string_view text);

/// One signing key with its kid. Not copyable (it owns an OpenSSL key); thread-safe to sign with.
class JwtKey {
public:
    enum class Type { rsa, ec };

    /// `rsa_bits`: 2048 unless a test wants a key the gateway must refuse.
    JwtKey(Type type, std::string kid, unsigned rsa_bits = 2048);
    ~JwtKey();
    JwtKey(const JwtKey&) = delete;
    JwtKey& operator=(const JwtKey&) = delete;

    const std::string& kid() const { return kid_; }
    /// "RS256" or "ES256".
    std::string alg() const;
    /// The public JWK, a JSON object text with kty, kid, use "sig", alg and n, e or crv, x, y.
    std::string jwk() const;

    /// A compact JWT of `claims_json` (a JSON object text) signed with this key. The header is
    /// {"alg": alg(), "typ": "JWT", "kid": kid()}; `header` entries replace those (a null value
    /// removes one) or add to them; the signature is always this key's own algorithm.
    std::string sign(const std::string& claims_json, const boost::json::object& header = {}) const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
    std::string kid_;
    Type type_;
};

/// {"keys": [...]} of these keys.
std::string jwks(const std::vector<const JwtKey*>& keys);

/// A token with alg "none" and an empty signature.
std::string unsigned_token(const std::string& claims_json, const std::string& kid);
/// A token signed with HMAC-SHA256 under `secret` (alg HS256).
std::string hs256_token(const std::string& claims_json, const std::string& secret,
                        const std::string& kid);
/// `token` with one signature byte changed.
std::string with_broken_signature(const std::string& token);
/// `token` with its payload replaced by `claims_json`, the signature kept.
std::string with_payload(const std::string& token, const std::string& claims_json);

}  // namespace gateway::test
