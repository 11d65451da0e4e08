#include "gateway/custody/local_signer.hpp"

#include "gateway/eth/keccak.hpp"
#include "key.hpp"
#include "scrypt.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <stdexcept>

namespace gateway::custody {

namespace json = boost::json;
using detail::PrivateKey;

namespace {

// A hex key file is a line; a keystore a few hundred bytes. Anything far larger is not one.
constexpr std::size_t kMaxKeyFileBytes = 4 * 1024;
constexpr std::size_t kMaxKeystoreBytes = 1024 * 1024;
// scrypt's memory is 128 * r * (n + 2) + 128 * r * p bytes; geth's "standard" parameters
// (n=262144, r=8, p=1) need 256 MiB. Keystores asking for more than this are refused rather than
// letting a file decide how much memory the gateway takes at start-up.
constexpr std::uint64_t kMaxScryptMemory = 1024ull * 1024 * 1024;
// Work factors below these are not keystores anyone should trust a key to, but they load: the
// file was made by someone else and refusing it would only move the key somewhere worse.
constexpr std::uint64_t kMaxPbkdf2Iterations = 100'000'000;

/// Wipes a buffer when the scope ends, however it ends.
template <class Buffer>
struct WipeOnExit {
    Buffer& buffer;
    ~WipeOnExit() { detail::wipe(buffer); }
};

std::string read_file(const std::string& what, const std::string& path, std::size_t max_bytes) {
    std::unique_ptr<std::FILE, int (*)(std::FILE*)> file(std::fopen(path.c_str(), "rb"),
                                                         &std::fclose);
    if (!file)
        throw std::runtime_error(what + " " + path + ": cannot open it: " + std::strerror(errno));
    // Read into a buffer allocated once, so that no reallocation leaves an unwiped copy behind.
    std::string content(max_bytes + 1, '\0');
    const std::size_t n = std::fread(content.data(), 1, content.size(), file.get());
    if (std::ferror(file.get())) {
        detail::wipe(content);
        throw std::runtime_error(what + " " + path + ": cannot read it");
    }
    if (n > max_bytes) {
        detail::wipe(content);
        throw std::runtime_error(what + " " + path + ": larger than " + std::to_string(max_bytes) +
                                 " bytes, so not a " + what);
    }
    content.resize(n);
    return content;
}

std::optional<std::string> read_env(const KeySource& source, const std::string& name) {
    if (source.env) return source.env(name);
    const char* value = std::getenv(name.c_str());
    if (value == nullptr) return std::nullopt;
    return std::string(value);
}

// ---------------------------------------------------------------------------------------------
// Web3 Secret Storage (keystore v3).

[[noreturn]] void keystore_error(const std::string& path, const std::string& message) {
    throw std::runtime_error("keystore " + path + ": " + message);
}

const json::value& member(const std::string& path, const json::object& object, std::string_view key,
                          std::string_view where) {
    const json::value* v = object.if_contains(key);
    if (v == nullptr) keystore_error(path, "no " + std::string(where) + std::string(key));
    return *v;
}

const json::object& object_member(const std::string& path, const json::object& object,
                                  std::string_view key, std::string_view where) {
    const json::value& v = member(path, object, key, where);
    if (!v.is_object())
        keystore_error(path, std::string(where) + std::string(key) + " is not an object");
    return v.get_object();
}

std::string string_member(const std::string& path, const json::object& object, std::string_view key,
                          std::string_view where) {
    const json::value& v = member(path, object, key, where);
    if (!v.is_string())
        keystore_error(path, std::string(where) + std::string(key) + " is not a string");
    return std::string(v.get_string());
}

/// Keystores write hex without "0x"; some tools add it.
eth::Bytes hex_member(const std::string& path, const json::object& object, std::string_view key,
                      std::string_view where) {
    std::string text = string_member(path, object, key, where);
    if (text.size() < 2 || text[0] != '0' || (text[1] != 'x' && text[1] != 'X'))
        text.insert(0, "0x");
    auto bytes = eth::from_hex(text);
    if (!bytes) keystore_error(path, std::string(where) + std::string(key) + " is not hex");
    return *bytes;
}

std::uint64_t uint_member(const std::string& path, const json::object& object, std::string_view key,
                          std::string_view where) {
    const json::value& v = member(path, object, key, where);
    json::error_code ec;
    const auto n = v.to_number<std::uint64_t>(ec);
    if (ec)
        keystore_error(path,
                       std::string(where) + std::string(key) + " is not a non-negative integer");
    return n;
}

/// The derived key (dklen bytes) from the passphrase, by the keystore's kdf.
eth::Bytes derive_key(const std::string& path, const json::object& crypto,
                      const std::string& passphrase) {
    const std::string kdf = string_member(path, crypto, "kdf", "crypto.");
    const json::object& params = object_member(path, crypto, "kdfparams", "crypto.");
    const eth::Bytes salt = hex_member(path, params, "salt", "crypto.kdfparams.");
    const std::uint64_t dklen = uint_member(path, params, "dklen", "crypto.kdfparams.");
    // The first 16 bytes are the AES key, the next 16 go into the MAC.
    if (dklen < 32 || dklen > 64)
        keystore_error(path, "crypto.kdfparams.dklen must be between 32 and 64");
    eth::Bytes key(dklen);
    if (kdf == "scrypt") {
        const std::uint64_t n = uint_member(path, params, "n", "crypto.kdfparams.");
        const std::uint64_t r = uint_member(path, params, "r", "crypto.kdfparams.");
        const std::uint64_t p = uint_member(path, params, "p", "crypto.kdfparams.");
        if (n < 2 || (n & (n - 1)) != 0)
            keystore_error(path, "crypto.kdfparams.n must be a power of 2 greater than 1");
        if (r == 0 || p == 0) keystore_error(path, "crypto.kdfparams.r and p must be positive");
        // 128 * r * (n + 2) + 128 * r * p, without overflowing on hostile values.
        const long double need = 128.0L * static_cast<long double>(r) *
                                 (static_cast<long double>(n) + 2 + static_cast<long double>(p));
        if (need > static_cast<long double>(kMaxScryptMemory))
            keystore_error(path, "its scrypt parameters need more than " +
                                     std::to_string(kMaxScryptMemory >> 20) + " MiB of memory");
        if (detail::scrypt_outside_rfc7914(n, r)) {
            // OpenSSL refuses these (RFC 7914 wants n < 2^(16 r)); geth does not, so keystores
            // with them exist. The memory bound above also bounds r and p to 32 bits.
            if (!detail::scrypt_unchecked(passphrase, salt, n, static_cast<std::uint32_t>(r),
                                          static_cast<std::uint32_t>(p), key))
                keystore_error(path, "scrypt could not get the memory it needs");
            return key;
        }
        // OpenSSL refuses to use more than 32 MiB unless told; tell it exactly what it needs,
        // with a little room for its own bookkeeping.
        const std::uint64_t maxmem = 128 * r * (n + 2) + 128 * r * p + 1024 * 1024;
        if (EVP_PBE_scrypt(passphrase.data(), passphrase.size(), salt.data(), salt.size(), n, r, p,
                           maxmem, key.data(), key.size()) != 1)
            keystore_error(path, "scrypt failed with the keystore's parameters (n " +
                                     std::to_string(n) + ", r " + std::to_string(r) + ", p " +
                                     std::to_string(p) + ")");
    } else if (kdf == "pbkdf2") {
        const std::string prf = string_member(path, params, "prf", "crypto.kdfparams.");
        if (prf != "hmac-sha256")
            keystore_error(path, "unsupported pbkdf2 prf \"" + prf + "\" (hmac-sha256 is)");
        const std::uint64_t c = uint_member(path, params, "c", "crypto.kdfparams.");
        if (c == 0 || c > kMaxPbkdf2Iterations)
            keystore_error(path, "crypto.kdfparams.c must be between 1 and " +
                                     std::to_string(kMaxPbkdf2Iterations));
        if (PKCS5_PBKDF2_HMAC(passphrase.data(), static_cast<int>(passphrase.size()), salt.data(),
                              static_cast<int>(salt.size()), static_cast<int>(c), EVP_sha256(),
                              static_cast<int>(key.size()), key.data()) != 1)
            keystore_error(path, "pbkdf2 failed");
    } else {
        keystore_error(path, "unsupported kdf \"" + kdf + "\" (scrypt and pbkdf2 are)");
    }
    return key;
}

eth::Bytes aes_128_ctr(const std::string& path, std::span<const std::uint8_t> key,
                       std::span<const std::uint8_t> iv, std::span<const std::uint8_t> input) {
    std::unique_ptr<EVP_CIPHER_CTX, void (*)(EVP_CIPHER_CTX*)> ctx(EVP_CIPHER_CTX_new(),
                                                                   &EVP_CIPHER_CTX_free);
    eth::Bytes out(input.size() + 16);
    int len = 0;
    int final_len = 0;
    if (!ctx ||
        EVP_DecryptInit_ex(ctx.get(), EVP_aes_128_ctr(), nullptr, key.data(), iv.data()) != 1 ||
        EVP_DecryptUpdate(ctx.get(), out.data(), &len, input.data(),
                          static_cast<int>(input.size())) != 1 ||
        EVP_DecryptFinal_ex(ctx.get(), out.data() + len, &final_len) != 1) {
        detail::wipe(out);
        keystore_error(path, "AES-128-CTR decryption failed");
    }
    out.resize(static_cast<std::size_t>(len + final_len));
    return out;
}

PrivateKey load_keystore(const KeySource& source) {
    const std::string& path = source.path;
    if (source.variable.empty())
        keystore_error(path, "no passphrase variable is configured for it");
    const std::string text = read_file("keystore", path, kMaxKeystoreBytes);
    json::error_code ec;
    const json::value doc = json::parse(text, ec);
    if (ec || !doc.is_object()) keystore_error(path, "not a JSON object");
    const json::object& root = doc.get_object();
    const json::value* version = root.if_contains("version");
    if (version == nullptr || !version->is_number() || version->to_number<double>() != 3)
        keystore_error(path, "not a version 3 keystore");
    // Some writers (old geth) capitalise "Crypto".
    const char* crypto_key = root.contains("crypto") ? "crypto" : "Crypto";
    const json::object& crypto = object_member(path, root, crypto_key, "");

    const std::string cipher = string_member(path, crypto, "cipher", "crypto.");
    if (cipher != "aes-128-ctr")
        keystore_error(path, "unsupported cipher \"" + cipher + "\" (aes-128-ctr is)");
    const json::object& cipherparams = object_member(path, crypto, "cipherparams", "crypto.");
    const eth::Bytes iv = hex_member(path, cipherparams, "iv", "crypto.cipherparams.");
    if (iv.size() != 16) keystore_error(path, "crypto.cipherparams.iv is not 16 bytes");
    const eth::Bytes ciphertext = hex_member(path, crypto, "ciphertext", "crypto.");
    if (ciphertext.size() != 32) keystore_error(path, "crypto.ciphertext is not 32 bytes");
    const eth::Bytes mac = hex_member(path, crypto, "mac", "crypto.");
    if (mac.size() != 32) keystore_error(path, "crypto.mac is not 32 bytes");

    std::optional<std::string> passphrase = read_env(source, source.variable);
    if (!passphrase)
        keystore_error(path, "the passphrase variable " + source.variable + " is not set");
    WipeOnExit<std::string> wipe_passphrase{*passphrase};

    eth::Bytes derived = derive_key(path, crypto, *passphrase);
    WipeOnExit<eth::Bytes> wipe_derived{derived};

    // Sized once: growing it would leave a copy of the key half behind, unwiped.
    eth::Bytes mac_body(16 + ciphertext.size());
    std::copy(derived.begin() + 16, derived.begin() + 32, mac_body.begin());
    std::copy(ciphertext.begin(), ciphertext.end(), mac_body.begin() + 16);
    const eth::Hash computed = eth::keccak256(mac_body);
    detail::wipe(mac_body);
    if (CRYPTO_memcmp(computed.data(), mac.data(), computed.size()) != 0)
        keystore_error(path, "MAC mismatch: wrong passphrase or damaged keystore");

    eth::Bytes plain = aes_128_ctr(path, std::span(derived).first(16), iv, ciphertext);
    WipeOnExit<eth::Bytes> wipe_plain{plain};
    std::optional<PrivateKey> key = PrivateKey::from_bytes(plain);
    if (!key) keystore_error(path, "it does not hold a valid secp256k1 private key");

    // The address is optional in v3; when present it must be the key's, or the file lies.
    if (const json::value* address = root.if_contains("address");
        address != nullptr && address->is_string()) {
        const eth::Bytes written = hex_member(path, root, "address", "");
        if (written.size() != 20 ||
            !std::equal(written.begin(), written.end(), key->address().begin()))
            keystore_error(path, "its address field is not the address of the key it holds (" +
                                     eth::to_checksum_address(key->address()) + ")");
    }
    return std::move(*key);
}

PrivateKey load(const KeySource& source) {
    switch (source.kind) {
        case KeySource::Kind::hex_file: {
            std::string text = read_file("key file", source.path, kMaxKeyFileBytes);
            WipeOnExit<std::string> wipe_text{text};
            std::optional<PrivateKey> key = detail::parse_hex_key(text);
            if (!key)
                throw std::runtime_error(
                    "key file " + source.path +
                    ": not a secp256k1 private key (expected 64 hex digits, \"0x\" optional)");
            return std::move(*key);
        }
        case KeySource::Kind::env: {
            if (source.variable.empty())
                throw std::runtime_error("local key: no environment variable is configured");
            std::optional<std::string> text = read_env(source, source.variable);
            if (!text)
                throw std::runtime_error("environment variable " + source.variable +
                                         " (a private key) is not set");
            WipeOnExit<std::string> wipe_text{*text};
            std::optional<PrivateKey> key = detail::parse_hex_key(*text);
            if (!key)
                throw std::runtime_error(
                    "environment variable " + source.variable +
                    ": not a secp256k1 private key (expected 64 hex digits, \"0x\" optional)");
            return std::move(*key);
        }
        case KeySource::Kind::keystore: return load_keystore(source);
    }
    throw std::runtime_error("local key: unknown key source");
}

class LocalSigner final : public Signer {
public:
    LocalSigner(std::string id, PrivateKey key) : id_(std::move(id)), key_(std::move(key)) {}

    const std::string& id() const override { return id_; }
    std::vector<eth::Address> addresses() const override { return {key_.address()}; }

    boost::asio::awaitable<Signed> sign(const eth::UnsignedTx& tx, const eth::Address& from,
                                        std::chrono::steady_clock::time_point) override {
        // Signing takes microseconds on this thread; there is nothing to wait for, so the
        // deadline cannot be missed in any way that matters.
        if (from != key_.address()) {
            Signed out;
            out.outcome = Signed::Outcome::refused;
            out.detail = "signer " + id_ + " holds no key for " + eth::to_checksum_address(from);
            co_return out;
        }
        co_return key_.sign(tx);
    }

private:
    std::string id_;
    PrivateKey key_;
};

}  // namespace

std::unique_ptr<Signer> make_local_signer(std::string id, KeySource source) {
    try {
        return std::make_unique<LocalSigner>(id, load(source));
    } catch (const std::runtime_error& e) {
        throw std::runtime_error("signer " + id + ": " + e.what());
    }
}

}  // namespace gateway::custody
