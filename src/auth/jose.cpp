// base64url, SHA-256, JWKS keys and RS256 / ES256 checks on OpenSSL 3 (see jose.hpp).

#include "jose.hpp"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>

#include <cstdint>

namespace gateway::auth::detail {

namespace json = boost::json;

namespace {

// -1 for a character outside the base64url alphabet.
constexpr std::array<std::int8_t, 256> kDecode = [] {
    std::array<std::int8_t, 256> t{};
    t.fill(-1);
    const char* alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    for (int i = 0; i < 64; ++i)
        t[static_cast<unsigned char>(alphabet[i])] = static_cast<std::int8_t>(i);
    return t;
}();

struct BnFree {
    void operator()(BIGNUM* b) const { BN_free(b); }
};
struct ParamBldFree {
    void operator()(OSSL_PARAM_BLD* b) const { OSSL_PARAM_BLD_free(b); }
};
struct ParamFree {
    void operator()(OSSL_PARAM* p) const { OSSL_PARAM_free(p); }
};
struct PkeyCtxFree {
    void operator()(EVP_PKEY_CTX* c) const { EVP_PKEY_CTX_free(c); }
};
struct MdCtxFree {
    void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
};
struct EcdsaSigFree {
    void operator()(ECDSA_SIG* s) const { ECDSA_SIG_free(s); }
};
using Bn = std::unique_ptr<BIGNUM, BnFree>;

// OpenSSL leaves the reasons of a failure in a per-thread queue; TLS code on the same thread
// reads that queue after its own failures, so nothing of ours may stay in it.
struct ClearErrors {
    ~ClearErrors() { ERR_clear_error(); }
};

Bn to_bn(std::string_view bytes) {
    return Bn(BN_bin2bn(reinterpret_cast<const unsigned char*>(bytes.data()),
                        static_cast<int>(bytes.size()), nullptr));
}

// A public key from provider parameters, checked (an EC point on the curve, an RSA modulus that
// is odd with a sane exponent).
std::shared_ptr<EVP_PKEY> public_key_from(const char* type, OSSL_PARAM_BLD* bld) {
    ClearErrors clear;
    std::unique_ptr<OSSL_PARAM, ParamFree> params(OSSL_PARAM_BLD_to_param(bld));
    std::unique_ptr<EVP_PKEY_CTX, PkeyCtxFree> ctx(
        EVP_PKEY_CTX_new_from_name(nullptr, type, nullptr));
    EVP_PKEY* raw = nullptr;
    if (!params || !ctx || EVP_PKEY_fromdata_init(ctx.get()) != 1 ||
        EVP_PKEY_fromdata(ctx.get(), &raw, EVP_PKEY_PUBLIC_KEY, params.get()) != 1)
        return nullptr;
    std::shared_ptr<EVP_PKEY> key(raw, EVP_PKEY_free);
    std::unique_ptr<EVP_PKEY_CTX, PkeyCtxFree> check(
        EVP_PKEY_CTX_new_from_pkey(nullptr, key.get(), nullptr));
    if (!check || EVP_PKEY_public_check(check.get()) != 1) return nullptr;
    return key;
}

std::optional<std::string> decoded_member(const json::object& jwk, std::string_view name) {
    const json::value* v = jwk.if_contains(name);
    if (!v || !v->is_string()) return std::nullopt;
    return base64url_decode(v->get_string());
}

std::shared_ptr<EVP_PKEY> rsa_key(const json::object& jwk) {
    auto n = decoded_member(jwk, "n");
    auto e = decoded_member(jwk, "e");
    if (!n || !e || n->empty() || e->empty() || e->size() > 8) return nullptr;
    // Under 2048 bits is too weak to trust; over 16384 only makes every check slow.
    Bn bn_n = to_bn(*n), bn_e = to_bn(*e);
    if (!bn_n || !bn_e || BN_num_bits(bn_n.get()) < 2048 || BN_num_bits(bn_n.get()) > 16384)
        return nullptr;
    // An exponent of 1 (or an even one) makes signatures meaningless.
    if (!BN_is_odd(bn_e.get()) || BN_is_one(bn_e.get())) return nullptr;
    std::unique_ptr<OSSL_PARAM_BLD, ParamBldFree> bld(OSSL_PARAM_BLD_new());
    if (!bld || OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_N, bn_n.get()) != 1 ||
        OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_E, bn_e.get()) != 1)
        return nullptr;
    return public_key_from("RSA", bld.get());
}

std::shared_ptr<EVP_PKEY> p256_key(const json::object& jwk) {
    const json::value* crv = jwk.if_contains("crv");
    if (!crv || !crv->is_string() || crv->get_string() != "P-256") return nullptr;
    auto x = decoded_member(jwk, "x");
    auto y = decoded_member(jwk, "y");
    // RFC 7518 §6.2.1.2: the coordinates are the full 32 bytes, leading zeros included.
    if (!x || !y || x->size() != 32 || y->size() != 32) return nullptr;
    const std::string point = '\x04' + *x + *y;  // SEC 1 uncompressed
    std::unique_ptr<OSSL_PARAM_BLD, ParamBldFree> bld(OSSL_PARAM_BLD_new());
    if (!bld ||
        OSSL_PARAM_BLD_push_utf8_string(bld.get(), OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) !=
            1 ||
        OSSL_PARAM_BLD_push_octet_string(bld.get(), OSSL_PKEY_PARAM_PUB_KEY, point.data(),
                                         point.size()) != 1)
        return nullptr;
    return public_key_from("EC", bld.get());
}

// One JWK: nullopt when it is not a usable signature key.
std::optional<PublicKey> read_key(const json::value& v, std::string& kid) {
    if (!v.is_object()) return std::nullopt;
    const json::object& jwk = v.get_object();
    const json::value* kid_value = jwk.if_contains("kid");
    const json::value* kty = jwk.if_contains("kty");
    if (!kid_value || !kid_value->is_string() || kid_value->get_string().empty() || !kty ||
        !kty->is_string())
        return std::nullopt;
    if (const json::value* use = jwk.if_contains("use");
        use && (!use->is_string() || use->get_string() != "sig"))
        return std::nullopt;
    PublicKey key;
    if (kty->get_string() == "RSA") {
        key.type = PublicKey::Type::rsa;
        key.key = rsa_key(jwk);
    } else if (kty->get_string() == "EC") {
        key.type = PublicKey::Type::ec_p256;
        key.key = p256_key(jwk);
    }
    if (!key.key) return std::nullopt;
    // A key meant for another algorithm (RS512, ...) is not used for this one.
    if (const json::value* alg = jwk.if_contains("alg");
        alg && (!alg->is_string() || alg->get_string() != algorithm_of(key.type)))
        return std::nullopt;
    kid = kid_value->get_string();
    return key;
}

// The DER ECDSA-Sig-Value OpenSSL verifies, from JOSE's r || s (32 bytes each); "" on failure.
std::string ecdsa_der(std::string_view raw) {
    std::unique_ptr<ECDSA_SIG, EcdsaSigFree> sig(ECDSA_SIG_new());
    Bn r = to_bn(raw.substr(0, 32)), s = to_bn(raw.substr(32, 32));
    if (!sig || !r || !s || ECDSA_SIG_set0(sig.get(), r.get(), s.get()) != 1) return "";
    // The signature owns them now.
    (void)r.release();
    (void)s.release();
    const int length = i2d_ECDSA_SIG(sig.get(), nullptr);
    if (length <= 0) return "";
    std::string der(static_cast<std::size_t>(length), '\0');
    auto* out = reinterpret_cast<unsigned char*>(der.data());
    if (i2d_ECDSA_SIG(sig.get(), &out) != length) return "";
    return der;
}

}  // namespace

std::optional<std::string> base64url_decode(std::string_view text) {
    if (text.size() % 4 == 1) return std::nullopt;
    std::string out;
    out.reserve(text.size() / 4 * 3 + 2);
    std::uint32_t acc = 0;
    int bits = 0;
    for (char c : text) {
        const int v = kDecode[static_cast<unsigned char>(c)];
        if (v < 0) return std::nullopt;
        acc = (acc << 6) | static_cast<std::uint32_t>(v);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out.push_back(static_cast<char>((acc >> bits) & 0xff));
        }
    }
    // What is left over must be zero bits, or the text has a twin that decodes the same.
    if ((acc & ((1u << bits) - 1)) != 0) return std::nullopt;
    return out;
}

bool looks_like_jws(std::string_view text) {
    std::size_t dots[2] = {0, 0};
    std::size_t n = 0;
    for (std::size_t i = 0; i < text.size(); ++i) {
        if (text[i] == '.') {
            if (n == 2) return false;
            dots[n++] = i;
        } else if (kDecode[static_cast<unsigned char>(text[i])] < 0) {
            return false;
        }
    }
    return n == 2 && dots[0] > 0 && dots[1] > dots[0] + 1;
}

std::optional<Digest> sha256(std::string_view data) {
    // Fetched once: an implicit fetch on every digest would look the algorithm up each time.
    static EVP_MD* const md = EVP_MD_fetch(nullptr, "SHA256", nullptr);
    Digest out{};
    unsigned int length = 0;
    if (!md || EVP_Digest(data.data(), data.size(), out.data(), &length, md, nullptr) != 1 ||
        length != out.size()) {
        ERR_clear_error();
        return std::nullopt;
    }
    return out;
}

bool digest_equals(const Digest& a, const Digest& b) {
    return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

std::string_view algorithm_of(PublicKey::Type type) {
    return type == PublicKey::Type::rsa ? "RS256" : "ES256";
}

boost::system::result<Jwks, std::string> parse_jwks(std::string_view text) {
    using Result = boost::system::result<Jwks, std::string>;
    json::error_code ec;
    const json::value doc = json::parse(text, ec);
    if (ec) return Result(boost::system::in_place_error, "not JSON");
    const json::value* keys = doc.is_object() ? doc.get_object().if_contains("keys") : nullptr;
    if (!keys || !keys->is_array())
        return Result(boost::system::in_place_error, "not a JSON object with a \"keys\" array");
    Jwks jwks;
    for (const json::value& v : keys->get_array()) {
        std::string kid;
        std::optional<PublicKey> key = read_key(v, kid);
        // A kid listed twice keeps its first key: which one a token meant cannot be known.
        if (!key || jwks.keys.contains(kid)) {
            ++jwks.skipped;
            continue;
        }
        jwks.keys.emplace(std::move(kid), std::move(*key));
    }
    return jwks;
}

bool verify_signature(const PublicKey& key, std::string_view alg, std::string_view signed_part,
                      std::string_view signature) {
    if (!key.key || alg != algorithm_of(key.type)) return false;
    ClearErrors clear;
    std::string der;
    if (key.type == PublicKey::Type::ec_p256) {
        if (signature.size() != 64) return false;
        der = ecdsa_der(signature);
        if (der.empty()) return false;
        signature = der;
    } else if (signature.size() != static_cast<std::size_t>(EVP_PKEY_get_size(key.key.get()))) {
        return false;
    }
    std::unique_ptr<EVP_MD_CTX, MdCtxFree> ctx(EVP_MD_CTX_new());
    return ctx &&
           EVP_DigestVerifyInit_ex(ctx.get(), nullptr, "SHA256", nullptr, nullptr, key.key.get(),
                                   nullptr) == 1 &&
           EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(signature.data()),
                            signature.size(),
                            reinterpret_cast<const unsigned char*>(signed_part.data()),
                            signed_part.size()) == 1;
}

}  // namespace gateway::auth::detail
