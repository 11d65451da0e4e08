#include "scrypt.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <bit>
#include <cstring>
#include <new>
#include <vector>

namespace gateway::custody::detail {

namespace {

// The Salsa20/8 core (RFC 7914 section 3), in place.
void salsa20_8(std::uint32_t b[16]) {
    std::uint32_t x[16];
    std::memcpy(x, b, sizeof x);
    const auto r = [](std::uint32_t v, int n) { return std::rotl(v, n); };
    for (int i = 0; i < 8; i += 2) {
        x[4] ^= r(x[0] + x[12], 7);
        x[8] ^= r(x[4] + x[0], 9);
        x[12] ^= r(x[8] + x[4], 13);
        x[0] ^= r(x[12] + x[8], 18);
        x[9] ^= r(x[5] + x[1], 7);
        x[13] ^= r(x[9] + x[5], 9);
        x[1] ^= r(x[13] + x[9], 13);
        x[5] ^= r(x[1] + x[13], 18);
        x[14] ^= r(x[10] + x[6], 7);
        x[2] ^= r(x[14] + x[10], 9);
        x[6] ^= r(x[2] + x[14], 13);
        x[10] ^= r(x[6] + x[2], 18);
        x[3] ^= r(x[15] + x[11], 7);
        x[7] ^= r(x[3] + x[15], 9);
        x[11] ^= r(x[7] + x[3], 13);
        x[15] ^= r(x[11] + x[7], 18);
        x[1] ^= r(x[0] + x[3], 7);
        x[2] ^= r(x[1] + x[0], 9);
        x[3] ^= r(x[2] + x[1], 13);
        x[0] ^= r(x[3] + x[2], 18);
        x[6] ^= r(x[5] + x[4], 7);
        x[7] ^= r(x[6] + x[5], 9);
        x[4] ^= r(x[7] + x[6], 13);
        x[5] ^= r(x[4] + x[7], 18);
        x[11] ^= r(x[10] + x[9], 7);
        x[8] ^= r(x[11] + x[10], 9);
        x[9] ^= r(x[8] + x[11], 13);
        x[10] ^= r(x[9] + x[8], 18);
        x[12] ^= r(x[15] + x[14], 7);
        x[13] ^= r(x[12] + x[15], 9);
        x[14] ^= r(x[13] + x[12], 13);
        x[15] ^= r(x[14] + x[13], 18);
    }
    for (int i = 0; i < 16; ++i) b[i] += x[i];
    OPENSSL_cleanse(x, sizeof x);
}

// scryptBlockMix (RFC 7914 section 4): `in` and `out` are 2r blocks of 16 words; `x` one block.
void block_mix(const std::uint32_t* in, std::uint32_t* out, std::uint32_t* x, std::uint32_t r) {
    std::memcpy(x, in + (2 * r - 1) * 16, 64);
    for (std::uint32_t i = 0; i < 2 * r; ++i) {
        for (int k = 0; k < 16; ++k) x[k] ^= in[i * 16 + k];
        salsa20_8(x);
        // Even blocks to the first half, odd ones to the second.
        std::memcpy(out + ((i / 2) + (i % 2) * r) * 16, x, 64);
    }
}

std::uint32_t load_le32(const std::uint8_t* p) {
    return static_cast<std::uint32_t>(p[0]) | static_cast<std::uint32_t>(p[1]) << 8 |
           static_cast<std::uint32_t>(p[2]) << 16 | static_cast<std::uint32_t>(p[3]) << 24;
}

void store_le32(std::uint8_t* p, std::uint32_t v) {
    p[0] = static_cast<std::uint8_t>(v);
    p[1] = static_cast<std::uint8_t>(v >> 8);
    p[2] = static_cast<std::uint8_t>(v >> 16);
    p[3] = static_cast<std::uint8_t>(v >> 24);
}

template <class T>
void wipe(std::vector<T>& v) {
    if (!v.empty()) OPENSSL_cleanse(v.data(), v.size() * sizeof(T));
}

}  // namespace

bool scrypt_outside_rfc7914(std::uint64_t n, std::uint64_t r) {
    return r < 4 && n >= (std::uint64_t{1} << (16 * r));
}

bool scrypt_unchecked(std::string_view passphrase, std::span<const std::uint8_t> salt,
                      std::uint64_t n, std::uint32_t r, std::uint32_t p,
                      std::span<std::uint8_t> out) {
    const std::size_t words = 32 * static_cast<std::size_t>(r);  // one 128 r byte block
    std::vector<std::uint8_t> b;
    std::vector<std::uint32_t> x, y, t, v;
    try {
        b.resize(static_cast<std::size_t>(p) * words * 4);
        x.resize(words);
        y.resize(words);
        t.resize(16);
        v.resize(static_cast<std::size_t>(n) * words);
    } catch (const std::bad_alloc&) {
        return false;
    }
    bool ok = PKCS5_PBKDF2_HMAC(passphrase.data(), static_cast<int>(passphrase.size()), salt.data(),
                                static_cast<int>(salt.size()), 1, EVP_sha256(),
                                static_cast<int>(b.size()), b.data()) == 1;
    for (std::uint32_t block = 0; ok && block < p; ++block) {
        // scryptROMix (RFC 7914 section 5) on the block's words.
        std::uint8_t* bytes = b.data() + block * words * 4;
        for (std::size_t k = 0; k < words; ++k) x[k] = load_le32(bytes + 4 * k);
        for (std::uint64_t i = 0; i < n; ++i) {
            std::memcpy(v.data() + i * words, x.data(), words * 4);
            block_mix(x.data(), y.data(), t.data(), r);
            x.swap(y);
        }
        for (std::uint64_t i = 0; i < n; ++i) {
            // Integerify: the first word of the last 64-byte block; n is a power of 2 that fits
            // in the memory bound, far below 2^32, so the low word is enough.
            const std::uint64_t j = x[(2 * r - 1) * 16] & (n - 1);
            const std::uint32_t* vj = v.data() + j * words;
            for (std::size_t k = 0; k < words; ++k) x[k] ^= vj[k];
            block_mix(x.data(), y.data(), t.data(), r);
            x.swap(y);
        }
        for (std::size_t k = 0; k < words; ++k) store_le32(bytes + 4 * k, x[k]);
    }
    if (ok)
        ok = PKCS5_PBKDF2_HMAC(passphrase.data(), static_cast<int>(passphrase.size()), b.data(),
                               static_cast<int>(b.size()), 1, EVP_sha256(),
                               static_cast<int>(out.size()), out.data()) == 1;
    wipe(b);
    wipe(x);
    wipe(y);
    wipe(t);
    wipe(v);
    return ok;
}

}  // namespace gateway::custody::detail
