// Unsigned transactions built and signed for managed senders: EIP-155 and EIP-1559 forms byte for
// byte as the EIP and cast give them, every field through signing and decoding, and the sign
// request sent to a remote signer.

#include "gateway/eth/unsigned_tx.hpp"

#include "gateway/eth/keccak.hpp"
#include "gateway/eth/transaction.hpp"

#include <gtest/gtest.h>
#include <secp256k1.h>
#include <secp256k1_recovery.h>
#include <boost/json/serialize.hpp>

#include <algorithm>
#include <limits>
#include <stdexcept>
#include <string>

namespace gateway::eth {
namespace {

// The constants below come from the EIP-155 text and from `cast mktx` (foundry 1.7.1), run
// offline with the same fields: an independent encoder and signer.
constexpr std::string_view kEip155Key =
    "0x4646464646464646464646464646464646464646464646464646464646464646";
constexpr std::string_view kEip155Sender = "0x9d8a62f656a8d1615c1294fd71e9cfb3e4855a4f";
constexpr std::string_view kCastKey =
    "0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318";
constexpr std::string_view kCastSender = "0x2c7536e3605d9c16a7a3d7b1898e529396a65c23";

Bytes hex(std::string_view text) {
    auto bytes = from_hex(text);
    if (!bytes) throw std::invalid_argument("bad hex in a test: " + std::string(text));
    return *bytes;
}

Address address(std::string_view text) {
    const Bytes bytes = hex(text);
    Address out{};
    std::copy(bytes.begin(), bytes.end(), out.begin());
    return out;
}

struct Signature {
    std::uint8_t y_parity = 0;
    Scalar r{};
    Scalar s{};
};

// RFC 6979 deterministic ECDSA (libsecp256k1's default nonce), low-s, as every Ethereum signer.
Signature sign(const Hash& digest, std::string_view private_key) {
    static secp256k1_context* const context = secp256k1_context_create(SECP256K1_CONTEXT_NONE);
    const Bytes key = hex(private_key);
    secp256k1_ecdsa_recoverable_signature signature;
    if (secp256k1_ecdsa_sign_recoverable(context, &signature, digest.data(), key.data(), nullptr,
                                         nullptr) != 1) {
        throw std::runtime_error("signing failed");
    }
    std::array<std::uint8_t, 64> compact{};
    int recovery_id = 0;
    secp256k1_ecdsa_recoverable_signature_serialize_compact(context, compact.data(), &recovery_id,
                                                            &signature);
    Signature out;
    out.y_parity = static_cast<std::uint8_t>(recovery_id);
    std::copy(compact.begin(), compact.begin() + 32, out.r.begin());
    std::copy(compact.begin() + 32, compact.end(), out.s.begin());
    return out;
}

Bytes sign_and_encode(const UnsignedTx& tx, std::string_view private_key) {
    const Signature sig = sign(signing_hash(tx), private_key);
    return encode_signed(tx, sig.y_parity, sig.r, sig.s);
}

UnsignedTx eip155_example() {
    UnsignedTx tx;
    tx.type = TxType::legacy;
    tx.chain_id = 1;
    tx.nonce = 9;
    tx.gas_price = 20'000'000'000;
    tx.gas = 21'000;
    tx.to = address("0x3535353535353535353535353535353535353535");
    tx.value = hex("0x0de0b6b3a7640000");  // 1 ether
    return tx;
}

// cast mktx --chain 8453 --nonce 1234 --gas-limit 65000 --gas-price 30000000000
//   --priority-gas-price 1500000000 --value 123456789 0x70997970C51812dc3A010C7d01b50e0d17dC79C8
//   "transfer(address,uint256)" 0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC 1000000
UnsignedTx cast_transfer() {
    UnsignedTx tx;
    tx.type = TxType::dynamic_fee;
    tx.chain_id = 8453;
    tx.nonce = 1234;
    tx.max_fee_per_gas = 30'000'000'000;
    tx.max_priority_fee_per_gas = 1'500'000'000;
    tx.gas = 65'000;
    tx.to = address("0x70997970c51812dc3a010c7d01b50e0d17dc79c8");
    tx.value = hex("0x075bcd15");  // 123456789
    tx.input = hex(
        "0xa9059cbb0000000000000000000000003c44cdddb6a900fa2b585dd299e03d12fa4293bc0000000000000000"
        "0000000000000000000000000000000000000000000f4240");
    return tx;
}

// cast mktx --chain 1 --nonce 0 --gas-limit 100000 --gas-price 2000000000
//   --priority-gas-price 0 --create 0x6001600055
UnsignedTx cast_create() {
    UnsignedTx tx;
    tx.type = TxType::dynamic_fee;
    tx.chain_id = 1;
    tx.nonce = 0;
    tx.max_fee_per_gas = 2'000'000'000;
    tx.max_priority_fee_per_gas = 0;
    tx.gas = 100'000;
    tx.input = hex("0x6001600055");
    return tx;
}

// Every field of `tx` is what the decoder reads back from its signed encoding.
void expect_round_trip(const UnsignedTx& tx, std::string_view private_key,
                       std::string_view sender) {
    const Bytes raw = sign_and_encode(tx, private_key);
    const Transaction decoded = decode_transaction(raw);
    EXPECT_EQ(decoded.type, tx.type);
    EXPECT_EQ(decoded.chain_id, std::optional<std::uint64_t>(tx.chain_id));
    EXPECT_EQ(decoded.nonce, tx.nonce);
    if (tx.type == TxType::legacy) {
        EXPECT_EQ(decoded.gas_price, to_quantity(tx.gas_price));
        EXPECT_FALSE(decoded.max_fee_per_gas);
        EXPECT_FALSE(decoded.max_priority_fee_per_gas);
        EXPECT_TRUE(decoded.access_list.is_null());
    } else {
        EXPECT_FALSE(decoded.gas_price);
        EXPECT_EQ(decoded.max_fee_per_gas, to_quantity(tx.max_fee_per_gas));
        EXPECT_EQ(decoded.max_priority_fee_per_gas, to_quantity(tx.max_priority_fee_per_gas));
        EXPECT_EQ(boost::json::serialize(decoded.access_list), "[]");
    }
    EXPECT_EQ(decoded.gas, tx.gas);
    EXPECT_EQ(decoded.to, tx.to);
    EXPECT_EQ(decoded.value, to_quantity(tx.value));
    EXPECT_EQ(decoded.input, tx.input);
    EXPECT_EQ(to_hex(decoded.sender), sender);
    EXPECT_EQ(decoded.raw, raw);
}

TEST(UnsignedTx, TheEip155ExampleGivesTheEipsHashAndSignedTransaction) {
    const UnsignedTx tx = eip155_example();
    EXPECT_EQ(to_hex(signing_payload(tx)),
              "0xec098504a817c800825208943535353535353535353535353535353535353535880de0b6b3a7640000"
              "80018080");
    EXPECT_EQ(to_hex(signing_hash(tx)),
              "0xdaf5a779ae972f972197303d7b574746c7ef83eadac0f2791ad23db92e4c8e53");
    EXPECT_EQ(to_hex(sign_and_encode(tx, kEip155Key)),
              "0xf86c098504a817c800825208943535353535353535353535353535353535353535880de0b6b3a76400"
              "008025a028ef61340bd939bc2195fe537567866003e1a15d3c71ff63e1590620aa636276a067cbe9d899"
              "7f761aecb703304b3800ccf555c9f3dc64214b297fb1966a3b6d83");
    const Transaction decoded = decode_transaction(sign_and_encode(tx, kEip155Key));
    EXPECT_EQ(decoded.v, 37u);  // chain id 1 * 2 + 35 + y_parity 0
    EXPECT_EQ(to_hex(decoded.sender), kEip155Sender);
}

TEST(UnsignedTx, AnEip1559TransferIsByteForByteWhatCastMakes) {
    const UnsignedTx tx = cast_transfer();
    EXPECT_EQ(to_hex(signing_payload(tx)),
              "0x02f8758221058204d28459682f008506fc23ac0082fde89470997970c51812dc3a010c7d01b50e0d17"
              "dc79c884075bcd15b844a9059cbb0000000000000000000000003c44cdddb6a900fa2b585dd299e03d12"
              "fa4293bc00000000000000000000000000000000000000000000000000000000000f4240c0");
    EXPECT_EQ(to_hex(signing_hash(tx)),
              "0x9d362677aba7f7e1e9b38fab809918d02398946aff8cf52bb0700a0543f61675");
    EXPECT_EQ(to_hex(sign_and_encode(tx, kCastKey)),
              "0x02f8b88221058204d28459682f008506fc23ac0082fde89470997970c51812dc3a010c7d01b50e0d17"
              "dc79c884075bcd15b844a9059cbb0000000000000000000000003c44cdddb6a900fa2b585dd299e03d12"
              "fa4293bc00000000000000000000000000000000000000000000000000000000000f4240c001a02b5bcb"
              "67cc4747cc7ca935b8e6fbd2387e8d8dc1d922c74a01f0432a25c4d2fba02a17aff78033814f67fece30"
              "b3802205805833164a0893e0dc5835dd66953b94");
    expect_round_trip(tx, kCastKey, kCastSender);
}

TEST(UnsignedTx, AnEip1559ContractCreationIsByteForByteWhatCastMakes) {
    const UnsignedTx tx = cast_create();
    EXPECT_EQ(to_hex(signing_payload(tx)), "0x02d50180808477359400830186a08080856001600055c0");
    EXPECT_EQ(to_hex(signing_hash(tx)),
              "0x7ae0efb1f5ab3cc192d2401c1716937d187a4e1c71cd0d7374fae35d3ab9e1d7");
    EXPECT_EQ(to_hex(sign_and_encode(tx, kCastKey)),
              "0x02f8580180808477359400830186a08080856001600055c001a037d72852ef4dc0e8de79e34ad4f2b8"
              "d980947df7a339adff22d215f41562343ba023bf0a48d1eb134bc0810b455dfdcba293b9b00cb5a6569e"
              "8f4d01968de2a467");
    expect_round_trip(tx, kCastKey, kCastSender);
}

TEST(UnsignedTx, EveryFieldSurvivesSigningAndDecoding) {
    constexpr std::uint64_t kMax = std::numeric_limits<std::uint64_t>::max();
    std::vector<UnsignedTx> cases;
    // Zeroes everywhere (the empty RLP string), a contract creation.
    cases.push_back(UnsignedTx{TxType::legacy, 1, 0, 0, 0, 0, 0, std::nullopt, {}, {}});
    cases.push_back(UnsignedTx{TxType::dynamic_fee, 1, 0, 0, 0, 0, 0, std::nullopt, {}, {}});
    // Largest integers; a value of all 256 bits; data past 55 bytes (RLP's long form).
    UnsignedTx big;
    big.type = TxType::dynamic_fee;
    big.chain_id = kMax;
    big.nonce = kMax - 1;
    big.max_fee_per_gas = kMax;
    big.max_priority_fee_per_gas = kMax;
    big.gas = kMax;
    big.to = address("0xffffffffffffffffffffffffffffffffffffffff");
    big.value = Bytes(32, 0xff);
    big.input = Bytes(3000, 0xab);
    cases.push_back(big);
    big.type = TxType::legacy;
    big.gas_price = kMax;
    big.chain_id = (kMax - 36) / 2;  // the largest whose v still fits in 64 bits
    cases.push_back(big);
    // Values whose single byte is below 0x80 (encoded as itself) and at 0x80 (behind a header).
    UnsignedTx small;
    small.type = TxType::legacy;
    small.chain_id = 31337;
    small.nonce = 0x7f;
    small.gas_price = 0x80;
    small.gas = 21'000;
    small.to = address("0x0000000000000000000000000000000000000001");
    small.value = {0x01};
    small.input = {0x00};
    cases.push_back(small);
    small.type = TxType::dynamic_fee;
    small.max_fee_per_gas = 0x80;
    small.max_priority_fee_per_gas = 0x7f;
    cases.push_back(small);

    for (std::size_t i = 0; i < cases.size(); ++i) {
        SCOPED_TRACE("case " + std::to_string(i));
        expect_round_trip(cases[i], kCastKey, kCastSender);
    }
}

TEST(UnsignedTx, SignatureScalarsWithLeadingZeroBytesAreEncodedAsIntegers) {
    // About one signature in 128 has r or s below 2^248; find one of each type by varying the
    // nonce. The decoder refuses integers with leading zero bytes, so a round trip proves that
    // they are dropped.
    for (const TxType type : {TxType::legacy, TxType::dynamic_fee}) {
        UnsignedTx tx = cast_transfer();
        tx.type = type;
        tx.gas_price = 30'000'000'000;
        bool found = false;
        for (std::uint64_t nonce = 0; nonce < 5000 && !found; ++nonce) {
            tx.nonce = nonce;
            const Signature sig = sign(signing_hash(tx), kCastKey);
            found = sig.r[0] == 0 || sig.s[0] == 0;
        }
        ASSERT_TRUE(found);
        SCOPED_TRACE("nonce " + std::to_string(tx.nonce));
        expect_round_trip(tx, kCastKey, kCastSender);
    }
}

TEST(UnsignedTx, ASignRequestHasTheWeb3SignerShape) {
    const Address from = address(kCastSender);
    EXPECT_EQ(
        boost::json::serialize(sign_request_json(cast_transfer(), from)),
        R"({"from":"0x2c7536e3605d9c16a7a3d7b1898e529396a65c23",)"
        R"("to":"0x70997970c51812dc3a010c7d01b50e0d17dc79c8","gas":"0xfde8",)"
        R"("maxFeePerGas":"0x6fc23ac00","maxPriorityFeePerGas":"0x59682f00",)"
        R"("nonce":"0x4d2","value":"0x75bcd15",)"
        R"("data":"0xa9059cbb0000000000000000000000003c44cdddb6a900fa2b585dd299e03d12fa4293bc)"
        R"(00000000000000000000000000000000000000000000000000000000000f4240",)"
        R"("chainId":"0x2105"})");
    EXPECT_EQ(boost::json::serialize(sign_request_json(eip155_example(), from)),
              R"({"from":"0x2c7536e3605d9c16a7a3d7b1898e529396a65c23",)"
              R"("to":"0x3535353535353535353535353535353535353535","gas":"0x5208",)"
              R"("gasPrice":"0x4a817c800","nonce":"0x9","value":"0xde0b6b3a7640000",)"
              R"("data":"0x","chainId":"0x1"})");
    // A contract creation has no `to`; zero is "0x0", not "0x".
    const auto create = sign_request_json(cast_create(), from);
    EXPECT_FALSE(create.contains("to"));
    EXPECT_EQ(create.at("nonce"), "0x0");
    EXPECT_EQ(create.at("value"), "0x0");
    EXPECT_EQ(create.at("maxPriorityFeePerGas"), "0x0");
    EXPECT_EQ(create.at("data"), "0x6001600055");
}

TEST(UnsignedTx, WhatItCannotBuildIsAProgrammingError) {
    UnsignedTx tx = cast_transfer();
    const Scalar one{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                     0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    EXPECT_THROW(encode_signed(tx, 2, one, one), std::invalid_argument);
    tx.type = TxType::blob;
    EXPECT_THROW(signing_payload(tx), std::invalid_argument);
    EXPECT_THROW(sign_request_json(tx, Address{}), std::invalid_argument);
    tx.type = TxType::legacy;
    tx.chain_id = std::numeric_limits<std::uint64_t>::max() / 2;
    EXPECT_THROW(signing_hash(tx), std::invalid_argument);
}

}  // namespace
}  // namespace gateway::eth
