// Ethereum encodings: hex and quantities, EIP-55 checksums, Keccak-256 and RLP, on published
// vectors, and the decoding of transactions.

#include "gateway/eth/hex.hpp"
#include "gateway/eth/keccak.hpp"
#include "gateway/eth/rlp.hpp"
#include "gateway/eth/transaction.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace gateway::eth {
namespace {

using ::testing::HasSubstr;

Bytes hex(std::string_view text) {
    auto bytes = from_hex(text);
    EXPECT_TRUE(bytes.has_value()) << "bad hex in the test: " << text;
    return bytes.value_or(Bytes{});
}

Bytes ascii(std::string_view text) {
    return {text.begin(), text.end()};
}

Address address(std::string_view text) {
    const Bytes bytes = hex(text);
    Address out{};
    EXPECT_EQ(bytes.size(), out.size()) << text;
    std::copy_n(bytes.begin(), std::min(bytes.size(), out.size()), out.begin());
    return out;
}

Bytes concat(const std::vector<Bytes>& parts) {
    Bytes out;
    for (const Bytes& part : parts) out.insert(out.end(), part.begin(), part.end());
    return out;
}

// ---------------------------------------------------------------------------------------------
// Hex

TEST(HexTest, FromHexAcceptsPrefixedEvenLengthHexOnly) {
    EXPECT_EQ(from_hex("0x"), Bytes{});
    EXPECT_EQ(from_hex("0x00ff"), (Bytes{0x00, 0xff}));
    EXPECT_EQ(from_hex("0XAbCd"), (Bytes{0xab, 0xcd}));
    EXPECT_EQ(from_hex(""), std::nullopt);
    EXPECT_EQ(from_hex("00ff"), std::nullopt);   // no prefix
    EXPECT_EQ(from_hex("0x0"), std::nullopt);    // odd length
    EXPECT_EQ(from_hex("0x0g"), std::nullopt);   // not a digit
    EXPECT_EQ(from_hex("0x 00"), std::nullopt);  // a space
    EXPECT_EQ(from_hex("x00"), std::nullopt);    // half a prefix
    EXPECT_EQ(from_hex("0x-1"), std::nullopt);   // a sign
}

TEST(HexTest, ToHexIsLowercaseWithPrefix) {
    EXPECT_EQ(to_hex(Bytes{}), "0x");
    EXPECT_EQ(to_hex(Bytes{0x00, 0x0a, 0xbc, 0xff}), "0x000abcff");
}

TEST(HexTest, ToQuantityIsCanonical) {
    EXPECT_EQ(to_quantity(Bytes{}), "0x0");
    EXPECT_EQ(to_quantity(Bytes{0x00, 0x00}), "0x0");
    EXPECT_EQ(to_quantity(Bytes{0x01}), "0x1");
    EXPECT_EQ(to_quantity(Bytes{0x00, 0x04, 0x00}), "0x400");
    EXPECT_EQ(to_quantity(Bytes{0x0a, 0xbc}), "0xabc");
    EXPECT_EQ(to_quantity(Bytes(32, 0xff)), "0x" + std::string(64, 'f'));
    EXPECT_EQ(to_quantity(std::uint64_t{0}), "0x0");
    EXPECT_EQ(to_quantity(std::uint64_t{1024}), "0x400");
    EXPECT_EQ(to_quantity(std::uint64_t{31337}), "0x7a69");
    EXPECT_EQ(to_quantity(UINT64_MAX), "0xffffffffffffffff");
}

TEST(HexTest, ChecksumAddressMatchesEip55Vectors) {
    // The test cases listed in EIP-55.
    for (const std::string_view expected : {
             "0x52908400098527886E0F7030069857D2E4169EE7",
             "0x8617E340B3D01FA5F11F306F4090FD50E238070D",
             "0xde709f2102306220921060314715629080e2fb77",
             "0x27b1fdb04752bbc536007a920d24acb045561c26",
             "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
             "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
             "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
             "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb",
         }) {
        EXPECT_EQ(to_checksum_address(address(expected)), expected);
    }
}

// ---------------------------------------------------------------------------------------------
// Keccak-256

TEST(KeccakTest, PublishedVectors) {
    EXPECT_EQ(to_hex(keccak256("")),
              "0xc5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470");
    EXPECT_EQ(to_hex(keccak256("abc")),
              "0x4e03657aea45a94fc7d47ba826c8d667c0d1e6e33a64a036ec44f58fa12d6c45");
    EXPECT_EQ(to_hex(keccak256("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")),
              "0x45d3b367a6904e6e8d502ee04999a7c27647f91fa845d456525fd352ae3d7371");
    // EIP-155's example: the signing data and its signing hash.
    EXPECT_EQ(to_hex(keccak256(hex("0xec098504a817c800825208943535353535353535353535353535353535"
                                   "353535880de0b6b3a764000080018080"))),
              "0xdaf5a779ae972f972197303d7b574746c7ef83eadac0f2791ad23db92e4c8e53");
}

TEST(KeccakTest, AroundTheRateOf136Bytes) {
    // Expected digests from `cast keccak 0x<bytes>` (Foundry 1.7.1).
    EXPECT_EQ(to_hex(keccak256(std::string(135, 'a'))),
              "0x34367dc248bbd832f4e3e69dfaac2f92638bd0bbd18f2912ba4ef454919cf446");
    EXPECT_EQ(to_hex(keccak256(std::string(136, 'a'))),
              "0xa6c4d403279fe3e0af03729caada8374b5ca54d8065329a3ebcaeb4b60aa386e");
    EXPECT_EQ(to_hex(keccak256(std::string(137, 'a'))),
              "0xd869f639c7046b4929fc92a4d988a8b22c55fbadb802c0c66ebcd484f1915f39");
    EXPECT_EQ(to_hex(keccak256(std::string(272, 'a'))),
              "0xcf7fcd4f705ee749930d19ca84561a9bf62516bd90a471545fa2f49fdc7e63c8");
    EXPECT_EQ(to_hex(keccak256(Bytes(200, 0xa3))),
              "0x3a57666b048777f2c953dc4456f45a2588e1cb6f2da760122d530ac2ce607d4a");
    Bytes counting(136);
    for (std::size_t i = 0; i < counting.size(); ++i) counting[i] = static_cast<std::uint8_t>(i);
    EXPECT_EQ(to_hex(keccak256(counting)),
              "0x7ce759f1ab7f9ce437719970c26b0a66ff11fe3e38e17df89cf5d29c7d7f807e");
}

// ---------------------------------------------------------------------------------------------
// RLP

TEST(RlpTest, EncodesWikiVectors) {
    EXPECT_EQ(to_hex(rlp::encode_bytes(ascii("dog"))), "0x83646f67");
    EXPECT_EQ(to_hex(rlp::encode_list(
                  concat({rlp::encode_bytes(ascii("cat")), rlp::encode_bytes(ascii("dog"))}))),
              "0xc88363617483646f67");
    EXPECT_EQ(to_hex(rlp::encode_bytes(Bytes{})), "0x80");
    EXPECT_EQ(to_hex(rlp::encode_list(Bytes{})), "0xc0");
    EXPECT_EQ(to_hex(rlp::encode_bytes(Bytes{0x00})), "0x00");
    EXPECT_EQ(to_hex(rlp::encode_bytes(Bytes{0x7f})), "0x7f");
    EXPECT_EQ(to_hex(rlp::encode_bytes(Bytes{0x80})), "0x8180");
    // The set-theoretic representation of three: [ [], [[]], [ [], [[]] ] ].
    const Bytes empty = rlp::encode_list(Bytes{});
    const Bytes one = rlp::encode_list(empty);
    const Bytes two = rlp::encode_list(concat({empty, one}));
    EXPECT_EQ(to_hex(rlp::encode_list(concat({empty, one, two}))), "0xc7c0c1c0c3c0c1c0");
    EXPECT_EQ(to_hex(rlp::encode_bytes(
                  ascii("Lorem ipsum dolor sit amet, consectetur adipisicing elit"))),
              "0xb8384c6f72656d20697073756d20646f6c6f722073697420616d65742c20636f6e7365637465"
              "747572206164697069736963696e6720656c6974");
    const Bytes long_string = rlp::encode_bytes(Bytes(1024, 0x61));
    ASSERT_EQ(long_string.size(), 1027U);
    EXPECT_EQ(to_hex(std::span(long_string).first(3)), "0xb90400");
}

TEST(RlpTest, EncodesIntegers) {
    EXPECT_EQ(to_hex(rlp::encode_uint(std::uint64_t{0})), "0x80");
    EXPECT_EQ(to_hex(rlp::encode_uint(std::uint64_t{1})), "0x01");
    EXPECT_EQ(to_hex(rlp::encode_uint(std::uint64_t{15})), "0x0f");
    EXPECT_EQ(to_hex(rlp::encode_uint(std::uint64_t{127})), "0x7f");
    EXPECT_EQ(to_hex(rlp::encode_uint(std::uint64_t{128})), "0x8180");
    EXPECT_EQ(to_hex(rlp::encode_uint(std::uint64_t{1024})), "0x820400");
    EXPECT_EQ(to_hex(rlp::encode_uint(std::uint64_t{0xffffff})), "0x83ffffff");
    EXPECT_EQ(to_hex(rlp::encode_uint(UINT64_MAX)), "0x88ffffffffffffffff");
    // Big-endian input: leading zeros dropped. RLPTests "bigint": 2^256.
    EXPECT_EQ(to_hex(rlp::encode_uint(Bytes{0x00, 0x00, 0x04, 0x00})), "0x820400");
    EXPECT_EQ(to_hex(rlp::encode_uint(Bytes{0x00, 0x00})), "0x80");
    Bytes two_to_256(33, 0x00);
    two_to_256[0] = 0x01;
    EXPECT_EQ(to_hex(rlp::encode_uint(two_to_256)), "0xa101" + std::string(64, '0'));
}

TEST(RlpTest, DecodesWikiVectors) {
    const Bytes dog = hex("0x83646f67");
    const rlp::Item dog_item = rlp::decode(dog);
    EXPECT_FALSE(dog_item.is_list);
    EXPECT_EQ(Bytes(dog_item.payload.begin(), dog_item.payload.end()), ascii("dog"));
    EXPECT_EQ(dog_item.encoded.size(), 4U);

    const Bytes cat_dog = hex("0xc88363617483646f67");
    const rlp::Item list = rlp::decode(cat_dog);
    ASSERT_TRUE(list.is_list);
    ASSERT_EQ(list.items.size(), 2U);
    EXPECT_EQ(Bytes(list.items[0].payload.begin(), list.items[0].payload.end()), ascii("cat"));
    EXPECT_EQ(Bytes(list.items[1].payload.begin(), list.items[1].payload.end()), ascii("dog"));
    EXPECT_EQ(to_hex(list.items[1].encoded), "0x83646f67");

    const Bytes empty_string = hex("0x80");
    EXPECT_FALSE(rlp::decode(empty_string).is_list);
    EXPECT_TRUE(rlp::decode(empty_string).payload.empty());
    const Bytes empty_list = hex("0xc0");
    EXPECT_TRUE(rlp::decode(empty_list).is_list);
    EXPECT_TRUE(rlp::decode(empty_list).items.empty());

    const Bytes three = hex("0xc7c0c1c0c3c0c1c0");
    const rlp::Item set = rlp::decode(three);
    ASSERT_EQ(set.items.size(), 3U);
    EXPECT_TRUE(set.items[0].items.empty());
    ASSERT_EQ(set.items[1].items.size(), 1U);
    EXPECT_TRUE(set.items[1].items[0].is_list);
    ASSERT_EQ(set.items[2].items.size(), 2U);
    EXPECT_EQ(to_hex(set.items[2].encoded), "0xc3c0c1c0");

    const Bytes lorem = hex(
        "0xb8384c6f72656d20697073756d20646f6c6f722073697420616d65742c20636f6e73656374657475722061"
        "64697069736963696e6720656c6974");
    const rlp::Item lorem_item = rlp::decode(lorem);
    EXPECT_EQ(Bytes(lorem_item.payload.begin(), lorem_item.payload.end()),
              ascii("Lorem ipsum dolor sit amet, consectetur adipisicing elit"));

    const Bytes long_string = rlp::encode_bytes(Bytes(1024, 0x61));
    EXPECT_EQ(rlp::decode(long_string).payload.size(), 1024U);
}

TEST(RlpTest, DecodesIntegers) {
    const auto uint64_of = [](std::string_view text) {
        const Bytes bytes = hex(text);
        return rlp::to_uint64(rlp::decode(bytes), "n");
    };
    EXPECT_EQ(uint64_of("0x80"), 0U);
    EXPECT_EQ(uint64_of("0x0f"), 15U);
    EXPECT_EQ(uint64_of("0x820400"), 1024U);
    EXPECT_EQ(uint64_of("0x88ffffffffffffffff"), UINT64_MAX);

    const Bytes max256 = rlp::encode_bytes(Bytes(32, 0xff));
    EXPECT_EQ(rlp::to_uint256(rlp::decode(max256), "n").size(), 32U);
    const Bytes zero = hex("0x80");
    EXPECT_TRUE(rlp::to_uint256(rlp::decode(zero), "n").empty());
}

std::string rlp_error(const Bytes& input) {
    try {
        rlp::decode(input);
    } catch (const DecodeError& e) {
        return e.what();
    }
    return "(decoded without error)";
}

TEST(RlpTest, RejectsInvalidEncodings) {
    struct Case {
        std::string input;
        std::string_view error;
    };
    // Mostly from ethereum/tests RLPTests/invalidRLPTest.json.
    const Case cases[] = {
        {"0x", "RLP: empty input"},
        {"0x8000", "RLP: 1 trailing bytes"},
        {"0xc00000", "RLP: 2 trailing bytes"},
        {"0x81", "string of 1 bytes at offset 0 runs past the end of the input"},
        {"0x83646f", "string of 3 bytes"},
        {"0xc50102", "list of 5 bytes"},
        {"0xba010000aabb", "string of 65536 bytes"},
        {"0xb9", "length of 2 bytes at offset 0 runs past the end"},
        // bytesShouldBeSingleByte00 / 01 / 7F
        {"0x8100", "single byte 0x00 at offset 0 encoded as a string (not canonical)"},
        {"0x8101", "single byte 0x01"},
        {"0x817f", "single byte 0x7f"},
        // nonOptimalLongLengthArray1, nonOptimalLongLengthList1
        {"0xb81000112233445566778899aabbccddeeff", "long form used for 16 bytes"},
        {"0xf80180", "long form used for 1 bytes"},
        // leadingZerosInLongLengthArray1, leadingZerosInLongLengthList1
        {"0xb90040" + std::string(128, '0'), "length with leading zero bytes"},
        {"0xf9003f" + std::string(126, '0'), "length with leading zero bytes"},
        // An item that runs past the end of its list but not past the input.
        {"0xc18180", "string of 1 bytes at offset 1 runs past the end of its enclosing list"},
        {"0xc2c28080", "list of 2 bytes at offset 1 runs past the end of its enclosing list"},
    };
    for (const Case& c : cases) {
        const auto bytes = from_hex(c.input);
        ASSERT_TRUE(bytes.has_value()) << c.input;
        const std::string error = rlp_error(*bytes);
        EXPECT_THAT(error, HasSubstr(c.error)) << c.input;
        EXPECT_EQ(error.rfind("RLP: ", 0), 0U) << error;
    }
}

TEST(RlpTest, LimitsNesting) {
    Bytes nested = rlp::encode_list(Bytes{});
    for (std::size_t depth = 1; depth < rlp::kMaxDepth; ++depth) nested = rlp::encode_list(nested);
    // kMaxDepth lists inside each other: accepted.
    const rlp::Item item = rlp::decode(nested);
    EXPECT_TRUE(item.is_list);
    // One more: refused.
    EXPECT_THAT(rlp_error(rlp::encode_list(nested)), HasSubstr("nested deeper than 16 levels"));
}

TEST(RlpTest, IntegerHelpersRejectNonCanonicalAndOversized) {
    const auto error_of = [](std::string_view text, bool wide) -> std::string {
        const Bytes bytes = hex(text);
        try {
            const rlp::Item item = rlp::decode(bytes);
            if (wide) {
                rlp::to_uint256(item, "value");
            } else {
                rlp::to_uint64(item, "nonce");
            }
        } catch (const DecodeError& e) {
            return e.what();
        }
        return "(decoded without error)";
    };
    EXPECT_EQ(error_of("0x00", false), "RLP: nonce has leading zero bytes (not canonical)");
    EXPECT_EQ(error_of("0x820004", false), "RLP: nonce has leading zero bytes (not canonical)");
    EXPECT_EQ(error_of("0x89010000000000000000", false),
              "RLP: nonce is 9 bytes long, more than 64 bits");
    EXPECT_EQ(error_of("0xc0", false), "RLP: nonce is a list, expected an integer");
    EXPECT_EQ(
        error_of("0xa1010000000000000000000000000000000000000000000000000000000000000000", true),
        "RLP: value is 33 bytes long, more than 256 bits");
    EXPECT_EQ(
        error_of("0xa00000000000000000000000000000000000000000000000000000000000000001", true),
        "RLP: value has leading zero bytes (not canonical)");
}

// ---------------------------------------------------------------------------------------------
// Transactions

// The example in EIP-155.
constexpr std::string_view kEip155Example =
    "0xf86c098504a817c800825208943535353535353535353535353535353535353535880de0b6b3a76400008025a0"
    "28ef61340bd939bc2195fe537567866003e1a15d3c71ff63e1590620aa636276a067cbe9d8997f761aecb70330"
    "4b3800ccf555c9f3dc64214b297fb1966a3b6d83";

// Nick's method, pre-EIP-155 (v = 27): the deployment of Arachnid's deterministic deployment
// proxy, sent on many chains; its sender is the well-known 0x3fab1846...
constexpr std::string_view kPreEip155Deployment =
    "0xf8a58085174876e800830186a08080b853604580600e600039806000f350fe7fffffffffffffffffffffffff"
    "ffffffffffffffffffffffffffffffffffffffe03601600081602082378035828234f58015156039578182fd5b"
    "8082525050506014600cf31ba02222222222222222222222222222222222222222222222222222222222222222a0"
    "2222222222222222222222222222222222222222222222222222222222222222";

// The rest were signed offline by `cast mktx` (Foundry 1.7.1) with anvil's first key, whose
// address is 0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266; their hashes are `cast keccak <raw>`
// and agree with `cast decode-transaction`.
constexpr std::string_view kAnvilSender = "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266";

// cast mktx --legacy --chain 31337 --nonce 7 --gas-limit 21000 --gas-price 1000000000
//   0x70997970C51812dc3A010C7d01b50e0d17dc79C8 --value 1000000000000000000
constexpr std::string_view kLegacy =
    "0xf86d07843b9aca008252089470997970c51812dc3a010c7d01b50e0d17dc79c8880de0b6b3a76400008082f4"
    "f5a0db987a363f954ae979a4bee877cd10b1abc2e363082e18de402d6c4a817378d2a03f34cfd101bd15d3c590"
    "1f6217b4434b3174ab78cc80c1fc56efc1010771eca6";

// cast mktx --legacy --access-list '[{"address":"0x5FbD...0aa3","storageKeys":["0x00..01"]}]'
//   --chain 31337 --nonce 5 --gas-limit 50000 --gas-price 3000000000 0x7099...79C8 --value 2
constexpr std::string_view kEip2930 =
    "0x01f8a0827a690584b2d05e0082c3509470997970c51812dc3a010c7d01b50e0d17dc79c80280f838f7945fbd"
    "b2315678afecb367f032d93f642f64180aa3e1a000000000000000000000000000000000000000000000000000"
    "0000000000000180a0377883288c759f3710f9aecf49987dc8d2d12cafdc200bf7511362d65b2da97ea0407137"
    "3ae7e83819521547d0bbe459efbc2446ae52da8bc6dd7367adb2099782";

// cast mktx --chain 31337 --nonce 3 --gas-limit 21000 --gas-price 2000000000
//   --priority-gas-price 1000000000 0x7099...79C8 --value 1
constexpr std::string_view kEip1559 =
    "0x02f86c827a6903843b9aca0084773594008252089470997970c51812dc3a010c7d01b50e0d17dc79c8018"
    "0c001a030f7c74d4c3f9a951af8f0db0736ac020ab0c01797cd7ed5bb4c3a388fa80e92a029b3fa57d71b5fe1"
    "96251aee6601efc9a06be0a4207fedf6f4ca19a220e98aa9";

// cast mktx --chain 1 --nonce 0 --gas-limit 200000 --gas-price 30000000000
//   --priority-gas-price 2000000000 --access-list '[two entries]' --create 0x6080604052
constexpr std::string_view kEip1559Create =
    "0x02f8d0018084773594008506fc23ac0083030d408080856080604052f872f859945fbdb2315678afecb367f0"
    "32d93f642f64180aa3f842a0000000000000000000000000000000000000000000000000000000000000000"
    "0a000000000000000000000000000000000000000000000000000000000000000ffd694e7f1725e7734ce288f"
    "8367e1bb143e90bb3f0512c001a0c4c79a76c187605be79181b3e9da8915376f15996e0c31cd0a1ec5dd4d45"
    "1394a073cda6aba1275ba3c11b7d6c6de20d4a5228ebb0c793075b6251ca6546835d9d";

// AUTH=$(cast wallet sign-auth --private-key <anvil key 1> --chain 31337 --nonce 0
//   0x5FbDB2315678afecb367f032d93F642f64180aa3)
// cast mktx --chain 31337 --nonce 4 --gas-limit 100000 --gas-price 2000000000
//   --priority-gas-price 1000000000 --auth $AUTH 0x7099...79C8
constexpr std::string_view kEip7702 =
    "0x04f8cd827a6904843b9aca008477359400830186a09470997970c51812dc3a010c7d01b50e0d17dc79c88080"
    "c0f85ef85c827a69945fbdb2315678afecb367f032d93f642f64180aa38080a00a17b68dcbf7db8bafb45cbcb"
    "eb61316aa330f045e43425e1db41e6c794c2e64a01a7f46131075975b44ae67f3bc968a9bce64f257b24571d9"
    "45bb9026812c114e80a075c411db3d2034fd6d5cc904c4a836a79080286ad5190284e999a2743bd11e04a0745"
    "9618b9597fa2d45418f7ccb3c304ccfeef99b11fe191dcf1bc1b391f850eb";

Transaction decode(std::string_view raw_hex) {
    return decode_transaction(hex(raw_hex));
}

std::string decode_error(const Bytes& raw) {
    try {
        decode_transaction(raw);
    } catch (const DecodeError& e) {
        return e.what();
    }
    return "(decoded without error)";
}

// The fields of a transaction, each as its own RLP encoding, for tests that change one of them.
std::vector<Bytes> fields_of(std::string_view raw_hex) {
    const Bytes raw = hex(raw_hex);
    const bool typed = raw.at(0) < 0xc0;
    const rlp::Item list = rlp::decode(std::span(raw).subspan(typed ? 1 : 0));
    std::vector<Bytes> fields;
    for (const rlp::Item& item : list.items)
        fields.emplace_back(item.encoded.begin(), item.encoded.end());
    return fields;
}

Bytes legacy_from(const std::vector<Bytes>& fields) {
    return rlp::encode_list(concat(fields));
}

Bytes typed_from(std::uint8_t type, const std::vector<Bytes>& fields) {
    Bytes out{type};
    const Bytes list = rlp::encode_list(concat(fields));
    out.insert(out.end(), list.begin(), list.end());
    return out;
}

TEST(TransactionTest, Eip155ExampleFromTheEip) {
    const Transaction tx = decode(kEip155Example);
    EXPECT_EQ(tx.type, TxType::legacy);
    EXPECT_EQ(to_checksum_address(tx.sender), "0x9d8A62f656a8d1615C1294fd71e9CFb3E4855A4F");
    EXPECT_EQ(tx.chain_id, 1U);
    EXPECT_EQ(tx.nonce, 9U);
    EXPECT_EQ(tx.gas_price, "0x4a817c800");  // 20 gwei
    EXPECT_EQ(tx.max_fee_per_gas, std::nullopt);
    EXPECT_EQ(tx.gas, 21000U);
    ASSERT_TRUE(tx.to.has_value());
    EXPECT_EQ(to_hex(*tx.to), "0x3535353535353535353535353535353535353535");
    EXPECT_EQ(tx.value, "0xde0b6b3a7640000");  // 1 ether
    EXPECT_TRUE(tx.input.empty());
    EXPECT_EQ(tx.v, 37U);
    EXPECT_EQ(tx.y_parity, 0);
    EXPECT_EQ(to_hex(tx.r), "0x28ef61340bd939bc2195fe537567866003e1a15d3c71ff63e1590620aa636276");
    EXPECT_EQ(to_hex(tx.s), "0x67cbe9d8997f761aecb703304b3800ccf555c9f3dc64214b297fb1966a3b6d83");
    EXPECT_TRUE(tx.access_list.is_null());
    EXPECT_EQ(to_hex(tx.raw), kEip155Example);
    EXPECT_EQ(to_hex(tx.hash),
              "0x33469b22e9f636356c4160a87eb19df52b7412e8eac32a4a55ffe88ea8350788");
}

TEST(TransactionTest, PreEip155HasNoChainId) {
    const Transaction tx = decode(kPreEip155Deployment);
    EXPECT_EQ(tx.type, TxType::legacy);
    EXPECT_EQ(tx.chain_id, std::nullopt);
    EXPECT_EQ(tx.v, 27U);
    EXPECT_EQ(to_hex(tx.sender), "0x3fab184622dc19b6109349b94811493bf2a45362");
    EXPECT_EQ(tx.to, std::nullopt);  // a contract creation
    EXPECT_EQ(tx.nonce, 0U);
    EXPECT_EQ(tx.gas_price, "0x174876e800");  // 100 gwei
    EXPECT_EQ(tx.gas, 100000U);
    EXPECT_EQ(tx.value, "0x0");
    EXPECT_EQ(tx.input.size(), 83U);
    EXPECT_EQ(to_hex(tx.hash),
              "0xeddf9e61fb9d8f5111840daef55e5fde0041f5702856532cdbb5a02998033d26");
}

TEST(TransactionTest, LegacyEip155WithAFiveDigitChainId) {
    const Transaction tx = decode(kLegacy);
    EXPECT_EQ(tx.type, TxType::legacy);
    EXPECT_EQ(tx.chain_id, 31337U);
    EXPECT_EQ(tx.v, 31337U * 2 + 35);  // 0xf4f5
    EXPECT_EQ(tx.y_parity, 0);
    EXPECT_EQ(to_hex(tx.sender), kAnvilSender);
    EXPECT_EQ(tx.nonce, 7U);
    EXPECT_EQ(tx.gas_price, "0x3b9aca00");
    EXPECT_EQ(tx.value, "0xde0b6b3a7640000");
    EXPECT_EQ(to_hex(tx.hash),
              "0x8e65c5b30a605699f2b70591238f4455da03c584edaa0f929bc71d538522bfe6");
}

TEST(TransactionTest, Eip2930WithAnAccessList) {
    const Transaction tx = decode(kEip2930);
    EXPECT_EQ(tx.type, TxType::access_list);
    EXPECT_EQ(tx.chain_id, 31337U);
    EXPECT_EQ(tx.nonce, 5U);
    EXPECT_EQ(tx.gas_price, "0xb2d05e00");
    EXPECT_EQ(tx.gas, 50000U);
    EXPECT_EQ(tx.value, "0x2");
    EXPECT_EQ(tx.y_parity, 0);
    EXPECT_EQ(to_hex(tx.sender), kAnvilSender);
    EXPECT_EQ(tx.access_list, boost::json::parse(R"([{
        "address": "0x5fbdb2315678afecb367f032d93f642f64180aa3",
        "storageKeys": ["0x0000000000000000000000000000000000000000000000000000000000000001"]
    }])"));
    EXPECT_EQ(to_hex(tx.hash),
              "0x4b8d82bfcca4e5d20e5b18d7570ba3554ab1f80bcbf40677acbaa6825a5c7ef2");
}

TEST(TransactionTest, Eip1559Transfer) {
    const Transaction tx = decode(kEip1559);
    EXPECT_EQ(tx.type, TxType::dynamic_fee);
    EXPECT_EQ(tx.chain_id, 31337U);
    EXPECT_EQ(tx.nonce, 3U);
    EXPECT_EQ(tx.gas_price, std::nullopt);
    EXPECT_EQ(tx.max_fee_per_gas, "0x77359400");
    EXPECT_EQ(tx.max_priority_fee_per_gas, "0x3b9aca00");
    EXPECT_EQ(tx.gas, 21000U);
    ASSERT_TRUE(tx.to.has_value());
    EXPECT_EQ(to_checksum_address(*tx.to), "0x70997970C51812dc3A010C7d01b50e0d17dc79C8");
    EXPECT_EQ(tx.value, "0x1");
    EXPECT_EQ(tx.access_list, boost::json::array{});
    EXPECT_TRUE(tx.authorization_list.is_null());
    EXPECT_EQ(tx.y_parity, 1);
    EXPECT_EQ(to_checksum_address(tx.sender), "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266");
    EXPECT_EQ(to_hex(tx.hash),
              "0x15fc1e208525de7bbca268d1cff7812852a03bb357b7bcec27152296a1fccdaf");
}

TEST(TransactionTest, Eip1559ContractCreationWithAccessList) {
    const Transaction tx = decode(kEip1559Create);
    EXPECT_EQ(tx.chain_id, 1U);
    EXPECT_EQ(tx.to, std::nullopt);
    EXPECT_EQ(to_hex(tx.input), "0x6080604052");
    EXPECT_EQ(tx.max_fee_per_gas, "0x6fc23ac00");
    EXPECT_EQ(tx.max_priority_fee_per_gas, "0x77359400");
    EXPECT_EQ(tx.gas, 200000U);
    EXPECT_EQ(to_hex(tx.sender), kAnvilSender);
    EXPECT_EQ(tx.access_list, boost::json::parse(R"([
        {"address": "0x5fbdb2315678afecb367f032d93f642f64180aa3",
         "storageKeys": ["0x0000000000000000000000000000000000000000000000000000000000000000",
                         "0x00000000000000000000000000000000000000000000000000000000000000ff"]},
        {"address": "0xe7f1725e7734ce288f8367e1bb143e90bb3f0512", "storageKeys": []}
    ])"));
    EXPECT_EQ(to_hex(tx.hash),
              "0xd6c79238d394ea5c14b952e46f547c8fd6ee2645be747f078bcc3adb9434d1bb");
}

TEST(TransactionTest, Eip7702WithAnAuthorization) {
    const Transaction tx = decode(kEip7702);
    EXPECT_EQ(tx.type, TxType::set_code);
    EXPECT_EQ(tx.chain_id, 31337U);
    EXPECT_EQ(tx.nonce, 4U);
    EXPECT_EQ(tx.gas, 100000U);
    EXPECT_EQ(tx.value, "0x0");
    EXPECT_EQ(to_hex(tx.sender), kAnvilSender);
    // The authorization's r has a leading zero nibble: a quantity drops it, as geth and cast do.
    EXPECT_EQ(tx.authorization_list, boost::json::parse(R"([{
        "chainId": "0x7a69",
        "address": "0x5fbdb2315678afecb367f032d93f642f64180aa3",
        "nonce": "0x0",
        "yParity": "0x0",
        "r": "0xa17b68dcbf7db8bafb45cbcbeb61316aa330f045e43425e1db41e6c794c2e64",
        "s": "0x1a7f46131075975b44ae67f3bc968a9bce64f257b24571d945bb9026812c114e"
    }])"));
    EXPECT_EQ(to_hex(tx.hash),
              "0xda36756214641ca08330d784c9e9194da201a478c4cbb2e9ab3caad094227b32");
}

// --- to_rpc_json: the shape of eth_getTransactionByHash for a pending transaction (geth's).

TEST(TransactionTest, RpcJsonOfAnEip1559Transaction) {
    const boost::json::object json = to_rpc_json(decode(kEip1559));
    EXPECT_EQ(json, boost::json::parse(R"({
        "blockHash": null,
        "blockNumber": null,
        "from": "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266",
        "gas": "0x5208",
        "gasPrice": "0x77359400",
        "maxFeePerGas": "0x77359400",
        "maxPriorityFeePerGas": "0x3b9aca00",
        "hash": "0x15fc1e208525de7bbca268d1cff7812852a03bb357b7bcec27152296a1fccdaf",
        "input": "0x",
        "nonce": "0x3",
        "to": "0x70997970c51812dc3a010c7d01b50e0d17dc79c8",
        "transactionIndex": null,
        "value": "0x1",
        "type": "0x2",
        "accessList": [],
        "chainId": "0x7a69",
        "v": "0x1",
        "r": "0x30f7c74d4c3f9a951af8f0db0736ac020ab0c01797cd7ed5bb4c3a388fa80e92",
        "s": "0x29b3fa57d71b5fe196251aee6601efc9a06be0a4207fedf6f4ca19a220e98aa9",
        "yParity": "0x1"
    })")
                        .as_object());
    // geth's field order, which clients that print the answer show.
    EXPECT_EQ(json.begin()->key(), "blockHash");
    EXPECT_EQ((json.end() - 1)->key(), "yParity");
}

TEST(TransactionTest, RpcJsonOfLegacyTransactions) {
    EXPECT_EQ(to_rpc_json(decode(kEip155Example)), boost::json::parse(R"({
        "blockHash": null,
        "blockNumber": null,
        "from": "0x9d8a62f656a8d1615c1294fd71e9cfb3e4855a4f",
        "gas": "0x5208",
        "gasPrice": "0x4a817c800",
        "hash": "0x33469b22e9f636356c4160a87eb19df52b7412e8eac32a4a55ffe88ea8350788",
        "input": "0x",
        "nonce": "0x9",
        "to": "0x3535353535353535353535353535353535353535",
        "transactionIndex": null,
        "value": "0xde0b6b3a7640000",
        "type": "0x0",
        "chainId": "0x1",
        "v": "0x25",
        "r": "0x28ef61340bd939bc2195fe537567866003e1a15d3c71ff63e1590620aa636276",
        "s": "0x67cbe9d8997f761aecb703304b3800ccf555c9f3dc64214b297fb1966a3b6d83"
    })")
                                                       .as_object());

    // Before EIP-155: no chainId; a creation: to is null.
    const boost::json::object json = to_rpc_json(decode(kPreEip155Deployment));
    EXPECT_FALSE(json.contains("chainId"));
    EXPECT_FALSE(json.contains("yParity"));
    EXPECT_FALSE(json.contains("accessList"));
    ASSERT_TRUE(json.contains("to"));
    EXPECT_TRUE(json.at("to").is_null());
    EXPECT_EQ(json.at("v").as_string(), "0x1b");
    EXPECT_EQ(json.at("from").as_string(), "0x3fab184622dc19b6109349b94811493bf2a45362");
}

TEST(TransactionTest, RpcJsonOfEip2930AndEip7702Transactions) {
    const boost::json::object access = to_rpc_json(decode(kEip2930));
    EXPECT_EQ(access.at("type").as_string(), "0x1");
    EXPECT_EQ(access.at("gasPrice").as_string(), "0xb2d05e00");
    EXPECT_FALSE(access.contains("maxFeePerGas"));
    EXPECT_EQ(access.at("accessList").as_array().size(), 1U);
    EXPECT_EQ(access.at("yParity").as_string(), "0x0");
    EXPECT_EQ(access.at("v").as_string(), "0x0");
    EXPECT_FALSE(access.contains("authorizationList"));

    const boost::json::object set_code = to_rpc_json(decode(kEip7702));
    EXPECT_EQ(set_code.at("type").as_string(), "0x4");
    EXPECT_EQ(set_code.at("gasPrice").as_string(), "0x77359400");
    EXPECT_EQ(set_code.at("maxPriorityFeePerGas").as_string(), "0x3b9aca00");
    EXPECT_EQ(set_code.at("authorizationList").as_array().size(), 1U);
    EXPECT_EQ(set_code.at("authorizationList").at(0).at("address").as_string(),
              "0x5fbdb2315678afecb367f032d93f642f64180aa3");
    EXPECT_EQ(set_code.at("r").as_string(),
              "0x75c411db3d2034fd6d5cc904c4a836a79080286ad5190284e999a2743bd11e04");
}

// --- What is refused, and what the client is told.

TEST(TransactionTest, RefusesMalformedRlp) {
    EXPECT_EQ(decode_error({}), "invalid transaction: empty input");
    Bytes raw = hex(kEip155Example);
    raw.pop_back();
    EXPECT_THAT(decode_error(raw),
                HasSubstr("invalid transaction: RLP: list of 108 bytes at offset 0 runs past the "
                          "end of the input"));
    raw = hex(kEip155Example);
    raw.push_back(0x00);
    EXPECT_EQ(decode_error(raw),
              "invalid transaction: RLP: 1 trailing bytes after the item at "
              "offset 110");
    raw = hex(kEip1559);
    raw.push_back(0xc0);
    EXPECT_THAT(decode_error(raw), HasSubstr("RLP: 1 trailing bytes"));
    EXPECT_THAT(decode_error(hex("0x02")), HasSubstr("type 0x02 without a payload"));
    EXPECT_THAT(decode_error(hex("0x0280")),
                HasSubstr("EIP-1559 transaction payload is not an RLP list"));
    EXPECT_THAT(decode_error(hex("0x83646f67")),
                HasSubstr("starts with 0x83: expected an RLP list (legacy) or a type byte"));
    // Garbled: a list header that claims more than the payload holds.
    raw = hex(kEip1559);
    raw[2] = 0xff;
    EXPECT_THAT(decode_error(raw), HasSubstr("invalid transaction: RLP: "));
}

TEST(TransactionTest, RefusesUnknownTypes) {
    EXPECT_THAT(decode_error(hex("0x05c0")), HasSubstr("unknown transaction type 0x05"));
    EXPECT_THAT(decode_error(hex("0x00c0")), HasSubstr("unknown transaction type 0x00"));
    EXPECT_THAT(decode_error(hex("0x7fc0")), HasSubstr("unknown transaction type 0x7f"));
}

TEST(TransactionTest, RefusesAWrongNumberOfFields) {
    auto fields = fields_of(kEip1559);
    fields.pop_back();
    EXPECT_EQ(decode_error(typed_from(0x02, fields)),
              "invalid transaction: EIP-1559 transaction has 11 fields, expected 12");
    fields = fields_of(kEip155Example);
    fields.push_back(rlp::encode_bytes(Bytes{}));
    EXPECT_EQ(decode_error(legacy_from(fields)),
              "invalid transaction: legacy transaction has 10 fields, expected 9");
    // An EIP-1559 body sent as EIP-2930.
    EXPECT_THAT(decode_error(typed_from(0x01, fields_of(kEip1559))),
                HasSubstr("EIP-2930 transaction has 12 fields, expected 11"));
}

TEST(TransactionTest, RefusesAToAddressOf19Bytes) {
    auto fields = fields_of(kEip155Example);
    fields[3] = rlp::encode_bytes(Bytes(19, 0x35));
    EXPECT_EQ(decode_error(legacy_from(fields)),
              "invalid transaction: to must be a 20-byte address or empty (contract creation), "
              "got 19 bytes");
    fields = fields_of(kEip1559);
    fields[5] = rlp::encode_bytes(Bytes(21, 0x70));
    EXPECT_THAT(decode_error(typed_from(0x02, fields)), HasSubstr("got 21 bytes"));
}

TEST(TransactionTest, RefusesIntegersWithLeadingZeros) {
    auto fields = fields_of(kEip155Example);
    fields[0] = rlp::encode_bytes(Bytes{0x00, 0x09});  // nonce 9 as 0x0009
    EXPECT_EQ(decode_error(legacy_from(fields)),
              "invalid transaction: RLP: nonce has leading zero bytes (not canonical)");
    fields = fields_of(kEip1559);
    fields[6] = rlp::encode_bytes(Bytes{0x00});  // value 0 as a zero byte instead of ""
    EXPECT_EQ(decode_error(typed_from(0x02, fields)),
              "invalid transaction: RLP: value has leading zero bytes (not canonical)");
    fields = fields_of(kEip1559);
    fields[4] = rlp::encode_bytes(Bytes(9, 0x01));
    EXPECT_THAT(decode_error(typed_from(0x02, fields)), HasSubstr("gas is 9 bytes long"));
}

TEST(TransactionTest, AFlippedSignatureByteDoesNotRecoverTheSender) {
    const Bytes original = hex(kEip155Example);
    const Address real = decode_transaction(original).sender;
    // r and s are the last 2 x 33 bytes (a 0xa0 header, then 32 bytes).
    const std::size_t r_at = original.size() - 65;
    for (const std::size_t at : {r_at, r_at + 15, r_at + 31, r_at + 33, r_at + 50, r_at + 64}) {
        Bytes raw = original;
        raw[at] ^= 0x01;
        try {
            EXPECT_NE(decode_transaction(raw).sender, real) << "byte " << at;
        } catch (const DecodeError& e) {
            EXPECT_THAT(e.what(), HasSubstr("invalid transaction: ")) << "byte " << at;
        }
    }
}

TEST(TransactionTest, AChangedFieldRecoversAnotherSender) {
    auto fields = fields_of(kEip1559);
    fields[6] = rlp::encode_uint(std::uint64_t{2});  // value 1 -> 2
    const Transaction tx = decode_transaction(typed_from(0x02, fields));
    EXPECT_EQ(tx.value, "0x2");
    EXPECT_NE(to_hex(tx.sender), kAnvilSender);
    // The chain id is signed in EIP-155 transactions too: v for chain 2 instead of 1.
    fields = fields_of(kEip155Example);
    fields[6] = rlp::encode_uint(std::uint64_t{2 * 2 + 35});
    const Transaction replayed = decode_transaction(legacy_from(fields));
    EXPECT_EQ(replayed.chain_id, 2U);
    EXPECT_NE(to_checksum_address(replayed.sender), "0x9d8A62f656a8d1615C1294fd71e9CFb3E4855A4F");
}

TEST(TransactionTest, RefusesAHighSSignature) {
    // The malleable twin of kEip1559's signature: s' = n - s and the other y parity. Valid for
    // secp256k1, forbidden by EIP-2.
    auto fields = fields_of(kEip1559);
    fields[9] = rlp::encode_uint(std::uint64_t{0});
    fields[11] = rlp::encode_bytes(
        hex("0xd64c05a828e4a01e69dae51199fe10351a42fc428ec8b244cb0844eaaf4cb698"));
    EXPECT_THAT(decode_error(typed_from(0x02, fields)),
                HasSubstr("invalid transaction: signature s is above secp256k1n/2, which EIP-2 "
                          "forbids"));

    // The boundary: s = n/2 passes the check (and recovers some other key), n/2 + 1 does not.
    fields = fields_of(kEip1559);
    fields[11] = rlp::encode_bytes(
        hex("0x7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0"));
    EXPECT_NE(to_hex(decode_transaction(typed_from(0x02, fields)).sender), kAnvilSender);
    fields[11] = rlp::encode_bytes(
        hex("0x7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a1"));
    EXPECT_THAT(decode_error(typed_from(0x02, fields)), HasSubstr("signature s is above"));
}

TEST(TransactionTest, RefusesOutOfRangeSignatureValues) {
    auto fields = fields_of(kEip1559);
    fields[10] = rlp::encode_uint(std::uint64_t{0});
    EXPECT_EQ(decode_error(typed_from(0x02, fields)), "invalid transaction: signature r is zero");
    fields[10] = rlp::encode_bytes(
        hex("0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141"));
    EXPECT_EQ(decode_error(typed_from(0x02, fields)),
              "invalid transaction: signature r is not below the secp256k1 group order");
    fields = fields_of(kEip1559);
    fields[11] = rlp::encode_uint(std::uint64_t{0});
    EXPECT_EQ(decode_error(typed_from(0x02, fields)), "invalid transaction: signature s is zero");
    fields = fields_of(kEip1559);
    fields[9] = rlp::encode_uint(std::uint64_t{2});
    EXPECT_EQ(decode_error(typed_from(0x02, fields)),
              "invalid transaction: signature yParity is 2; expected 0 or 1");
}

TEST(TransactionTest, RefusesAnInvalidLegacyV) {
    for (const std::uint64_t v : {0, 1, 26, 29, 35, 36}) {
        auto fields = fields_of(kEip155Example);
        fields[6] = rlp::encode_uint(v);
        EXPECT_THAT(decode_error(legacy_from(fields)),
                    HasSubstr("legacy signature v is " + std::to_string(v) +
                              "; expected 27 or 28, or chain_id * 2 + 35 or 36"));
    }
}

TEST(TransactionTest, RefusesMalformedAccessLists) {
    auto fields = fields_of(kEip2930);
    const Bytes short_key = rlp::encode_list(rlp::encode_bytes(Bytes(31, 0x01)));
    const Bytes entry = rlp::encode_list(concat({rlp::encode_bytes(Bytes(20, 0x5f)), short_key}));
    fields[7] = rlp::encode_list(entry);
    EXPECT_EQ(decode_error(typed_from(0x01, fields)),
              "invalid transaction: accessList entry 0 storage key 0 must be 32 bytes");
    fields[7] = rlp::encode_bytes(Bytes{});
    EXPECT_EQ(decode_error(typed_from(0x01, fields)),
              "invalid transaction: accessList is not a list");
    fields[7] = rlp::encode_list(rlp::encode_list(rlp::encode_bytes(Bytes(20, 0x5f))));
    EXPECT_THAT(decode_error(typed_from(0x01, fields)),
                HasSubstr("accessList entry 0 must be a list [address, storageKeys]"));
}

TEST(TransactionTest, RefusesMalformedEip7702Transactions) {
    auto fields = fields_of(kEip7702);
    fields[9] = rlp::encode_list(Bytes{});
    EXPECT_THAT(decode_error(typed_from(0x04, fields)), HasSubstr("authorizationList is empty"));

    fields = fields_of(kEip7702);
    fields[5] = rlp::encode_bytes(Bytes{});
    EXPECT_THAT(decode_error(typed_from(0x04, fields)),
                HasSubstr("an EIP-7702 transaction cannot create a contract"));

    // An authorization of five fields (no s).
    fields = fields_of(kEip7702);
    const Bytes auth_list = hex(
        "0xf85ef85c827a69945fbdb2315678afecb367f032d93f642f64180aa38080a00a17b68dcbf7db8bafb45cbc"
        "beb61316aa330f045e43425e1db41e6c794c2e64a01a7f46131075975b44ae67f3bc968a9bce64f257b2457"
        "1d945bb9026812c114e");
    EXPECT_EQ(fields[9], auth_list);
    const rlp::Item auth = rlp::decode(auth_list).items.at(0);
    Bytes five;
    for (std::size_t i = 0; i < 5; ++i) {
        five.insert(five.end(), auth.items[i].encoded.begin(), auth.items[i].encoded.end());
    }
    fields[9] = rlp::encode_list(rlp::encode_list(five));
    EXPECT_THAT(decode_error(typed_from(0x04, fields)),
                HasSubstr("authorizationList entry 0 must be a list [chainId, address, nonce, "
                          "yParity, r, s]"));

    // An authority address of 19 bytes.
    Bytes bad_address;
    for (std::size_t i = 0; i < 6; ++i) {
        const Bytes item = i == 1
                               ? rlp::encode_bytes(Bytes(19, 0x5f))
                               : Bytes(auth.items[i].encoded.begin(), auth.items[i].encoded.end());
        bad_address.insert(bad_address.end(), item.begin(), item.end());
    }
    fields[9] = rlp::encode_list(rlp::encode_list(bad_address));
    EXPECT_EQ(decode_error(typed_from(0x04, fields)),
              "invalid transaction: authorizationList entry 0 address must be 20 bytes, got 19");
}

}  // namespace
}  // namespace gateway::eth
