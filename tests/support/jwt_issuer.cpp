#include "support/jwt_issuer.hpp"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <algorithm>
#include <stdexcept>

namespace gateway::test {

namespace json = boost::json;

namespace {

void check(bool ok, const char* what) {
    if (!ok) throw std::runtime_error(std::string("jwt issuer: ") + what);
}

std::string big_endian(const BIGNUM* bn, int width = 0) {
    const int size = width ? width : BN_num_bytes(bn);
    std::string out(static_cast<std::size_t>(size), '\0');
    check(BN_bn2binpad(bn, reinterpret_cast<unsigned char*>(out.data()), size) == size, "bn2bin");
    return out;
}

std::string bn_param(EVP_PKEY* key, const char* name, int width = 0) {
    BIGNUM* bn = nullptr;
    check(EVP_PKEY_get_bn_param(key, name, &bn) == 1, name);
    std::string out = big_endian(bn, width);
    BN_free(bn);
    return out;
}

std::string json_text(const std::string& claims_json) {
    // Parsed and written again, so a test's formatting does not matter and bad JSON fails early.
    return json::serialize(json::parse(claims_json));
}

}  // namespace

std::string base64url(std::string_view bytes) {
    std::string out(4 * ((bytes.size() + 2) / 3) + 1, '\0');
    const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                  reinterpret_cast<const unsigned char*>(bytes.data()),
                                  static_cast<int>(bytes.size()));
    out.resize(static_cast<std::size_t>(n));
    while (!out.empty() && out.back() == '=') out.pop_back();
    for (char& c : out) {
        if (c == '+') c = '-';
        if (c == '/') c = '_';
    }
    return out;
}

std::string base64url_decode(std::string_view text) {
    std::string s(text);
    for (char& c : s) {
        if (c == '-') c = '+';
        if (c == '_') c = '/';
    }
    while (s.size() % 4) s += '=';
    std::string out(s.size() / 4 * 3, '\0');
    const int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                  reinterpret_cast<const unsigned char*>(s.data()),
                                  static_cast<int>(s.size()));
    check(n >= 0, "base64 decode");
    // EVP_DecodeBlock counts the bytes padding stands for.
    out.resize(static_cast<std::size_t>(n) -
               static_cast<std::size_t>(
                   std::count(s.end() - std::min<std::size_t>(s.size(), 2), s.end(), '=')));
    return out;
}

struct JwtKey::Impl {
    EVP_PKEY* key = nullptr;
    ~Impl() { EVP_PKEY_free(key); }
};

JwtKey::JwtKey(Type type, std::string kid, unsigned rsa_bits)
    : impl_(std::make_unique<Impl>()), kid_(std::move(kid)), type_(type) {
    impl_->key = type == Type::rsa
                     ? EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", std::size_t{rsa_bits})
                     : EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
    check(impl_->key != nullptr, "keygen");
}

JwtKey::~JwtKey() = default;

std::string JwtKey::alg() const {
    return type_ == Type::rsa ? "RS256" : "ES256";
}

std::string JwtKey::jwk() const {
    json::object o{{"kid", kid_}, {"use", "sig"}, {"alg", alg()}};
    if (type_ == Type::rsa) {
        o["kty"] = "RSA";
        o["n"] = base64url(bn_param(impl_->key, OSSL_PKEY_PARAM_RSA_N));
        o["e"] = base64url(bn_param(impl_->key, OSSL_PKEY_PARAM_RSA_E));
    } else {
        o["kty"] = "EC";
        o["crv"] = "P-256";
        // The public point, uncompressed: 0x04 || x || y.
        unsigned char point[65];
        std::size_t length = 0;
        check(EVP_PKEY_get_octet_string_param(impl_->key, OSSL_PKEY_PARAM_PUB_KEY, point,
                                              sizeof point, &length) == 1 &&
                  length == 65 && point[0] == 0x04,
              "EC point");
        o["x"] = base64url(std::string_view(reinterpret_cast<const char*>(point) + 1, 32));
        o["y"] = base64url(std::string_view(reinterpret_cast<const char*>(point) + 33, 32));
    }
    return json::serialize(o);
}

std::string JwtKey::sign(const std::string& claims_json, const json::object& header) const {
    json::object h{{"alg", alg()}, {"typ", "JWT"}, {"kid", kid_}};
    for (const auto& [name, value] : header) {
        if (value.is_null())
            h.erase(name);
        else
            h[name] = value;
    }
    const std::string signed_part =
        base64url(json::serialize(h)) + "." + base64url(json_text(claims_json));

    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    check(ctx && EVP_DigestSignInit_ex(ctx, nullptr, "SHA256", nullptr, nullptr, impl_->key,
                                       nullptr) == 1,
          "sign init");
    std::size_t length = 0;
    check(EVP_DigestSign(ctx, nullptr, &length,
                         reinterpret_cast<const unsigned char*>(signed_part.data()),
                         signed_part.size()) == 1,
          "sign size");
    std::string signature(length, '\0');
    check(EVP_DigestSign(ctx, reinterpret_cast<unsigned char*>(signature.data()), &length,
                         reinterpret_cast<const unsigned char*>(signed_part.data()),
                         signed_part.size()) == 1,
          "sign");
    EVP_MD_CTX_free(ctx);
    signature.resize(length);

    if (type_ == Type::ec) {
        // OpenSSL writes a DER ECDSA-Sig-Value; JOSE wants r || s, 32 bytes each.
        const auto* p = reinterpret_cast<const unsigned char*>(signature.data());
        ECDSA_SIG* sig = d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(signature.size()));
        check(sig != nullptr, "der");
        signature = big_endian(ECDSA_SIG_get0_r(sig), 32) + big_endian(ECDSA_SIG_get0_s(sig), 32);
        ECDSA_SIG_free(sig);
    }
    return signed_part + "." + base64url(signature);
}

std::string jwks(const std::vector<const JwtKey*>& keys) {
    json::array list;
    for (const JwtKey* k : keys) list.push_back(json::parse(k->jwk()));
    return json::serialize(json::object{{"keys", std::move(list)}});
}

std::string unsigned_token(const std::string& claims_json, const std::string& kid) {
    const json::object h{{"alg", "none"}, {"typ", "JWT"}, {"kid", kid}};
    return base64url(json::serialize(h)) + "." + base64url(json_text(claims_json)) + ".";
}

std::string hs256_token(const std::string& claims_json, const std::string& secret,
                        const std::string& kid) {
    const json::object h{{"alg", "HS256"}, {"typ", "JWT"}, {"kid", kid}};
    const std::string signed_part =
        base64url(json::serialize(h)) + "." + base64url(json_text(claims_json));
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int length = 0;
    check(HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
               reinterpret_cast<const unsigned char*>(signed_part.data()), signed_part.size(), mac,
               &length) != nullptr,
          "hmac");
    return signed_part + "." +
           base64url(std::string_view(reinterpret_cast<const char*>(mac), length));
}

std::string with_broken_signature(const std::string& token) {
    std::string out = token;
    // A character in the middle of the signature: every bit of it is significant.
    const std::size_t dot = out.rfind('.');
    const std::size_t i = dot + (out.size() - dot) / 2;
    out[i] = out[i] == 'A' ? 'B' : 'A';
    return out;
}

std::string with_payload(const std::string& token, const std::string& claims_json) {
    const std::size_t dot1 = token.find('.');
    const std::size_t dot2 = token.rfind('.');
    return token.substr(0, dot1) + "." + base64url(json_text(claims_json)) + token.substr(dot2);
}

}  // namespace gateway::test
