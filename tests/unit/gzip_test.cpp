// gzip both ways (util/gzip): what the listener decodes from clients and upstreams, within a
// limit; which Accept-Encoding values take gzip.

#include "gateway/util/gzip.hpp"

#include <gtest/gtest.h>

#include <string>

namespace gateway::util {
namespace {

std::string some_json(std::size_t calls) {
    std::string s = "[";
    for (std::size_t i = 0; i < calls; ++i)
        s += R"({"jsonrpc":"2.0","id":)" + std::to_string(i) +
             R"(,"method":"eth_getBalance","params":["0x00000000000000000000000000000000000000)" +
             std::to_string(10 + i % 90) + R"(","latest"]},)";
    s.back() = ']';
    return s;
}

TEST(Gzip, WhatItCompressesDecodesToTheSameBytesAndIsSmaller) {
    const std::string in = some_json(200);
    for (int level : {1, 6, 9}) {
        const std::string z = gzip(in, level);
        EXPECT_LT(z.size() * 4, in.size()) << "level " << level;
        ASSERT_GE(z.size(), 2u);
        EXPECT_EQ(static_cast<unsigned char>(z[0]), 0x1f);  // the gzip magic (RFC 1952)
        EXPECT_EQ(static_cast<unsigned char>(z[1]), 0x8b);
        EXPECT_EQ(gunzip(z, in.size(), nullptr), in);
    }
    EXPECT_EQ(gunzip(gzip(""), 10, nullptr), "");
}

// A vector from another implementation than zlib's: "hello" as GNU gzip writes it (`gzip -1 -n`:
// an RFC 1952 member, a fixed Huffman block, CRC-32 0x3610a686).
TEST(Gzip, DecodesAPublishedVector) {
    const unsigned char hello[] = {0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04,
                                   0x03, 0xcb, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x86,
                                   0xa6, 0x10, 0x36, 0x05, 0x00, 0x00, 0x00};
    const std::string z(reinterpret_cast<const char*>(hello), sizeof hello);
    EXPECT_EQ(gunzip(z, 100, nullptr), "hello");
}

TEST(Gzip, DecodesMembersInARow) {
    EXPECT_EQ(gunzip(gzip("first,") + gzip("second"), 100, nullptr), "first,second");
}

TEST(Gzip, RefusesWhatDecodesPastTheLimitWithoutHoldingIt) {
    // 64 MiB of zeros: about 64 KB compressed, a bomb for a 1 MiB limit.
    const std::string bomb = gzip(std::string(64u << 20, '\0'), 9);
    ASSERT_LT(bomb.size(), 256u * 1024);
    GunzipError why = GunzipError::corrupt;
    EXPECT_FALSE(gunzip(bomb, 1u << 20, &why));
    EXPECT_EQ(why, GunzipError::too_large);
    // Exactly at the limit is fine; one byte over is not. (Also: the thread's inflate stream, reset
    // after the bomb left its input part read, takes only the new input.)
    const std::string in = some_json(50);
    EXPECT_EQ(gunzip(gzip(in), in.size(), nullptr), in);
    why = GunzipError::corrupt;
    EXPECT_FALSE(gunzip(gzip(in), in.size() - 1, &why));
    EXPECT_EQ(why, GunzipError::too_large);
}

TEST(Gzip, RefusesWhatIsNotGzipOrIsCutShort) {
    const std::string z = gzip(some_json(20));
    for (const std::string& bad :
         {std::string("{\"jsonrpc\":\"2.0\"}"), std::string(), z.substr(0, z.size() / 2),
          z.substr(0, z.size() - 4), std::string(z).replace(z.size() / 2, 4, "\xff\xff\xff\xff"),
          z + "trailing garbage"}) {
        GunzipError why = GunzipError::too_large;
        EXPECT_FALSE(gunzip(bad, 1u << 20, &why)) << bad.size();
        EXPECT_EQ(why, GunzipError::corrupt) << bad.size();
    }
}

TEST(Gzip, AcceptEncodingTakesGzipUnlessRefused) {
    for (const char* yes : {"gzip", "GZIP", "deflate, gzip", "gzip;q=0.5", "br;q=1, gzip ; q=0.1",
                            "x-gzip", "*", "br, *;q=0.3", "gzip, deflate, br, zstd"})
        EXPECT_TRUE(accepts_gzip(yes)) << yes;
    for (const char* no : {"", "identity", "br", "deflate", "gzip;q=0", "gzip; q=0.000", "*;q=0",
                           "*, gzip;q=0", "gzipx", "br, identity;q=1"})
        EXPECT_FALSE(accepts_gzip(no)) << no;
}

}  // namespace
}  // namespace gateway::util
