// Blob transactions (EIP-4844) as eth_sendRawTransaction takes them: both network forms decoded
// and checked against what the transaction signed, the form without a sidecar, and every refusal.
// The payloads are cast's (Foundry 1.7.1), their hashes cast's and anvil's.

#include "gateway/eth/blob.hpp"
#include "gateway/eth/hex.hpp"
#include "gateway/eth/rlp.hpp"
#include "gateway/eth/transaction.hpp"
#include "support/tx_signer.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <string_view>
#include <vector>

namespace gateway::eth {
namespace {

using test::BlobParts;
using test::network_form;
using ::testing::HasSubstr;

Bytes hex(std::string_view text) {
    auto bytes = from_hex(text);
    EXPECT_TRUE(bytes.has_value()) << "bad hex in the test: " << text;
    return bytes.value_or(Bytes{});
}

// cast mktx --blob --path <1000 bytes> --private-key <anvil key 0> --chain 31337 --nonce 0
//   --gas-limit 21000 --gas-price 2000000000 --priority-gas-price 1000000000
//   --blob-gas-price 1000000000 0x7099...79C8
// without its sidecar; with --eip4844 the same payload. anvil answered its hash for both forms.
constexpr std::string_view kOneBlob =
    "0x03f893827a6980843b9aca0084773594008252089470997970c51812dc3a010c7d01b50e0d17dc79c88080c0"
    "843b9aca00e1a001d4dd304ceebca08afbfedf1d43a22c9fbfa3cc1961e20086b25bd004af2b6501a0d089302e"
    "d0e162454c8e206ebc51138695fa4e8f60eb63d430fc57ad81cd52dea02b82c917de9678ce9310da848a27f97de"
    "74434fd27ffc9980cd750d05782d823";
constexpr std::string_view kOneBlobHash =
    "0x33763ab46bb516164634f565a572570a7ff49a14520bb0d8ee12b0ecbaa195eb";
constexpr std::string_view kOneBlobCommitment =
    "0xaf3431fcb8b5adc3f7bbd6eb3a092c59f29d96018b7aab08ce5e78ac5dd614d41dfd99419f62f27cfb0288a3cf"
    "853fa7";

// The same with 700000 bytes of data (six blobs), --nonce 7 --blob-gas-price 3000000000.
constexpr std::string_view kSixBlobs =
    "0x03f90139827a6907843b9aca0084773594008252089470997970c51812dc3a010c7d01b50e0d17dc79c88080"
    "c084b2d05e00f8c6a0012371a0072b8a3d788b01fa0f34dfb4d4413e8e41279b33da7efe31557b07ada00113"
    "033242937b8eb5f1bf15fb18e583ba6edbad164ef252ef4c21ee599b4fd2a001e1c62a49bd92a3a60ced4ceb"
    "f30ba524227cad27ab27fcb248e6f128129dc3a0011a9d81542eaf235ecd7d021ac9d169ac21416900a6900d"
    "6820947b098f32d2a001cc168f96e2cddae117166c74194052ff31991c909c96384d9a2b74a477ea45a0014d"
    "2ed34c5a1062d52e8622094271b84c1c7979ba1782fa1df4d0256425901b01a0ebd2bc035df844ddbd288926"
    "5f31370d70d5424cbc2db90494bf14880d4f64f1a053580bd5affa87c3ed8cd222862fc1b8b996b8e53f8b94"
    "5006cc73c79932d4c0";
constexpr std::string_view kSixBlobsHash =
    "0x382082beb563f4700d76ce67afad76be83888d0234bd423178640062f53f7882";
const std::vector<std::string_view> kSixCommitments = {
    "0xad4308320f297e9cea3dc1c1887b3e44f7576538edbf5b70d61f808060c799f1ce4b1a3ae502ee68d7121f3b2b8"
    "60c8e",
    "0x84cd04a3ae3486d5aaca14f39b786a4a719041c2286c278c2274bf8ed751431360ff8c172bb432277993d712deb"
    "0c3f5",
    "0xa39bec0f56bfc9d345f8d8f2d8fe918bf29cbe2f1f8a1fb6da18641dfde866671351da455da55b830afb9e42ebc"
    "c982d",
    "0xb821b7219e634188c1017009c912647adf4d7aaa1ff4155bece1f9c05cb40e1e0002a283fc45ee951aa4c3af963"
    "86dd1",
    "0x8869340a31b11f85280862c6eeccc6696673e3aec4bccae8194ed14701f567781422359cdb8b81fbdb6ba92f14b"
    "bf0e3",
    "0x96e3018ff194b1dbd5632a540d00f3bd33a9bcb75c0f7554337bdf7886ca60b61c5dd1d82b2483b82f30f2f7052"
    "8249e",
};

constexpr std::string_view kAnvilSender = "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266";

// A sidecar for `commitments`: blobs and proofs of the right sizes (their KZG is not checked).
BlobParts parts_for(const std::vector<std::string_view>& commitments) {
    BlobParts parts;
    for (std::size_t i = 0; i < commitments.size(); ++i) {
        parts.blobs.emplace_back(kBlobBytes, static_cast<std::uint8_t>(i));
        parts.commitments.push_back(hex(commitments[i]));
        parts.proofs.emplace_back(kProofBytes, static_cast<std::uint8_t>(0xc0 + i));
    }
    return parts;
}

std::string decode_error(const Bytes& raw) {
    try {
        decode_transaction(raw);
    } catch (const DecodeError& e) {
        return e.what();
    }
    return "(decoded without error)";
}

// The fields of a payload, each as its own RLP encoding, and the payload made of them again.
std::vector<Bytes> fields_of(const Bytes& payload) {
    const rlp::Item list = rlp::decode(std::span(payload).subspan(1));
    std::vector<Bytes> fields;
    for (const rlp::Item& item : list.items)
        fields.emplace_back(item.encoded.begin(), item.encoded.end());
    return fields;
}

Bytes payload_from(const std::vector<Bytes>& fields) {
    Bytes items;
    for (const Bytes& f : fields) items.insert(items.end(), f.begin(), f.end());
    Bytes out{0x03};
    const Bytes list = rlp::encode_list(items);
    out.insert(out.end(), list.begin(), list.end());
    return out;
}

TEST(BlobTest, AVersionedHashIs0x01AndTheTailOfTheCommitmentsSha256) {
    // The point at infinity, the commitment of the zero blob: sha256 is 5f0657f3...4014
    // (Python's hashlib), so its versioned hash is the one seen in every empty-blob test.
    Bytes infinity(48, 0);
    infinity[0] = 0xc0;
    EXPECT_EQ(to_hex(versioned_hash(infinity)),
              "0x010657f37554c781402a22917dee2f75def7ab966d7b770905398eba3c444014");
    // cast's commitment and the versioned hash cast signed for it.
    EXPECT_EQ(to_hex(versioned_hash(hex(kOneBlobCommitment))),
              "0x01d4dd304ceebca08afbfedf1d43a22c9fbfa3cc1961e20086b25bd004af2b65");
}

TEST(BlobTest, TheEip4844NetworkFormIsDecodedAndKnownByItsPayloadsHash) {
    const Bytes payload = hex(kOneBlob);
    const Bytes raw = network_form(payload, parts_for({kOneBlobCommitment}), BlobSidecar::eip4844);
    const Transaction tx = decode_transaction(raw);
    EXPECT_EQ(tx.type, TxType::blob);
    EXPECT_EQ(tx.sidecar, BlobSidecar::eip4844);
    EXPECT_EQ(to_hex(tx.hash), kOneBlobHash);
    EXPECT_EQ(to_hex(tx.sender), kAnvilSender);
    EXPECT_EQ(tx.payload, payload);
    EXPECT_EQ(tx.raw, raw);
    EXPECT_EQ(tx.chain_id, 31337u);
    EXPECT_EQ(tx.nonce, 0u);
    EXPECT_EQ(tx.max_priority_fee_per_gas, "0x3b9aca00");
    EXPECT_EQ(tx.max_fee_per_gas, "0x77359400");
    EXPECT_EQ(tx.max_fee_per_blob_gas, "0x3b9aca00");
    EXPECT_EQ(tx.gas, 21000u);
    ASSERT_EQ(tx.blob_versioned_hashes.size(), 1u);
    EXPECT_EQ(to_hex(tx.blob_versioned_hashes[0]),
              "0x01d4dd304ceebca08afbfedf1d43a22c9fbfa3cc1961e20086b25bd004af2b65");
}

TEST(BlobTest, TheEip7594NetworkFormWith128CellProofsPerBlobIsTheSameTransaction) {
    const Bytes raw =
        network_form(hex(kOneBlob), parts_for({kOneBlobCommitment}), BlobSidecar::eip7594);
    const Transaction tx = decode_transaction(raw);
    EXPECT_EQ(tx.sidecar, BlobSidecar::eip7594);
    EXPECT_EQ(to_hex(tx.hash), kOneBlobHash);
    EXPECT_EQ(to_hex(tx.sender), kAnvilSender);
    EXPECT_EQ(tx.payload, hex(kOneBlob));
}

TEST(BlobTest, SixBlobsAreTheMostATransactionCarriesInEitherForm) {
    for (BlobSidecar form : {BlobSidecar::eip4844, BlobSidecar::eip7594}) {
        const Bytes raw = network_form(hex(kSixBlobs), parts_for(kSixCommitments), form);
        const Transaction tx = decode_transaction(raw);
        EXPECT_EQ(to_hex(tx.hash), kSixBlobsHash);
        EXPECT_EQ(to_hex(tx.sender), kAnvilSender);
        EXPECT_EQ(tx.blob_versioned_hashes.size(), 6u);
        EXPECT_EQ(tx.max_fee_per_blob_gas, "0xb2d05e00");
        // The largest network form: six blobs, their commitments, 768 cell proofs.
        if (form == BlobSidecar::eip7594) {
            EXPECT_LT(raw.size(), 830'000u) << raw.size();
        }
    }
}

TEST(BlobTest, WithoutItsSidecarItDecodesAsBlocksHoldIt) {
    const Transaction tx = decode_transaction(hex(kOneBlob));
    EXPECT_EQ(tx.sidecar, BlobSidecar::none);
    EXPECT_EQ(to_hex(tx.hash), kOneBlobHash);
    EXPECT_EQ(tx.payload, hex(kOneBlob));
}

TEST(BlobTest, RpcJsonShowsTheBlobFeeAndVersionedHashesNotTheSidecar) {
    const Transaction tx = decode_transaction(
        network_form(hex(kOneBlob), parts_for({kOneBlobCommitment}), BlobSidecar::eip7594));
    const boost::json::object o = to_rpc_json(tx);
    EXPECT_EQ(o.at("type"), "0x3");
    EXPECT_EQ(o.at("gasPrice"), "0x77359400");
    EXPECT_EQ(o.at("maxFeePerBlobGas"), "0x3b9aca00");
    ASSERT_EQ(o.at("blobVersionedHashes").as_array().size(), 1u);
    EXPECT_EQ(o.at("blobVersionedHashes").as_array()[0],
              "0x01d4dd304ceebca08afbfedf1d43a22c9fbfa3cc1961e20086b25bd004af2b65");
    EXPECT_EQ(o.at("hash").as_string(), kOneBlobHash);
    EXPECT_FALSE(o.contains("blobs"));
    EXPECT_FALSE(o.contains("sidecar"));
}

TEST(BlobTest, TheSignerHelperMakesTransactionsTheDecoderAccepts) {
    const test::BlobTx tx = test::sign_blob(test::kKey1, {.nonce = 3, .blobs = 2});
    const Transaction decoded =
        decode_transaction(network_form(tx.payload, tx.parts, BlobSidecar::eip7594));
    EXPECT_EQ(to_hex(decoded.hash), tx.hash);
    EXPECT_EQ(to_hex(decoded.sender), test::address_of(test::kKey1));
    EXPECT_EQ(decoded.blob_versioned_hashes.size(), 2u);
}

// --- Refusals.

TEST(BlobTest, CountsThatDoNotMatchAreRefused) {
    const Bytes payload = hex(kSixBlobs);
    const BlobParts good = parts_for(kSixCommitments);
    BlobParts parts = good;
    parts.blobs.pop_back();
    EXPECT_EQ(decode_error(network_form(payload, parts, BlobSidecar::eip4844)),
              "invalid transaction: blob sidecar has 5 blob(s) and 6 commitment(s) for 6 "
              "versioned hash(es); each versioned hash needs one blob and one commitment");
    parts = good;
    parts.commitments.push_back(parts.commitments[0]);
    EXPECT_THAT(decode_error(network_form(payload, parts, BlobSidecar::eip7594)),
                HasSubstr("6 blob(s) and 7 commitment(s) for 6 versioned hash(es)"));
    parts = good;
    parts.proofs.pop_back();
    EXPECT_EQ(decode_error(network_form(payload, parts, BlobSidecar::eip4844)),
              "invalid transaction: blob sidecar has 5 proof(s) for 6 blob(s); EIP-4844 needs "
              "one per blob");
    // EIP-7594 with one proof per blob, as EIP-4844 has them.
    EXPECT_EQ(decode_error(network_form(payload, good, BlobSidecar::eip7594, good.proofs)),
              "invalid transaction: blob sidecar has 6 cell proof(s) for 6 blob(s); EIP-7594 "
              "needs 128 per blob (768)");
    // EIP-4844 with 128 proofs per blob: the version is missing.
    const Bytes single = hex(kOneBlob);
    BlobParts many = parts_for({kOneBlobCommitment});
    many.proofs.assign(128, Bytes(kProofBytes, 0xc0));
    EXPECT_THAT(decode_error(network_form(single, many, BlobSidecar::eip4844)),
                HasSubstr("128 proof(s) for 1 blob(s); EIP-4844 needs one per blob"));
}

TEST(BlobTest, NoBlobOrMoreThanSixAreRefused) {
    auto fields = fields_of(hex(kOneBlob));
    fields[10] = rlp::encode_list(Bytes{});
    EXPECT_EQ(decode_error(payload_from(fields)),
              "invalid transaction: blobVersionedHashes is empty; an EIP-4844 transaction "
              "carries at least one blob");
    // Seven: cast builds them (800000 bytes of data); the gateway refuses before any signature
    // check, so the hashes need not be signed.
    fields = fields_of(hex(kSixBlobs));
    Bytes hashes;
    for (int i = 0; i < 7; ++i) {
        const Hash h = versioned_hash(hex(kOneBlobCommitment));
        const Bytes item = rlp::encode_bytes(h);
        hashes.insert(hashes.end(), item.begin(), item.end());
    }
    fields[10] = rlp::encode_list(hashes);
    EXPECT_EQ(decode_error(payload_from(fields)),
              "invalid transaction: the transaction has 7 blobs; at most 6 per transaction "
              "(EIP-7594)");
}

TEST(BlobTest, PartsOfTheWrongSizeAreRefused) {
    const Bytes payload = hex(kOneBlob);
    const BlobParts good = parts_for({kOneBlobCommitment});
    BlobParts parts = good;
    parts.blobs[0].pop_back();
    EXPECT_EQ(decode_error(network_form(payload, parts, BlobSidecar::eip4844)),
              "invalid transaction: blob sidecar: blob 0 must be 131072 bytes, got 131071");
    parts = good;
    parts.commitments[0].push_back(0);
    EXPECT_EQ(decode_error(network_form(payload, parts, BlobSidecar::eip7594)),
              "invalid transaction: blob sidecar: commitment 0 must be 48 bytes, got 49");
    parts = good;
    parts.proofs[0].pop_back();
    EXPECT_EQ(decode_error(network_form(payload, parts, BlobSidecar::eip4844)),
              "invalid transaction: blob sidecar: proof 0 must be 48 bytes, got 47");
    std::vector<Bytes> cells(128, Bytes(kProofBytes, 0xc0));
    cells[127].resize(96);
    EXPECT_EQ(decode_error(network_form(payload, good, BlobSidecar::eip7594, cells)),
              "invalid transaction: blob sidecar: cell proof 127 must be 48 bytes, got 96");
    auto fields = fields_of(payload);
    fields[10] = rlp::encode_list(rlp::encode_bytes(Bytes(31, 0x01)));
    EXPECT_EQ(decode_error(payload_from(fields)),
              "invalid transaction: blobVersionedHashes entry 0 must be 32 bytes");
}

TEST(BlobTest, ACommitmentThatDoesNotHashToItsVersionedHashIsRefused) {
    const Bytes payload = hex(kSixBlobs);
    BlobParts parts = parts_for(kSixCommitments);
    std::swap(parts.commitments[2], parts.commitments[3]);
    EXPECT_EQ(decode_error(network_form(payload, parts, BlobSidecar::eip7594)),
              "invalid transaction: blob sidecar: commitment 2 does not match versioned hash 2 "
              "(0x01e1c62a49bd92a3a60ced4cebf30ba524227cad27ab27fcb248e6f128129dc3): a versioned "
              "hash is 0x01 followed by the last 31 bytes of sha256(commitment)");
    // A versioned hash of another version than KZG's 0x01.
    auto fields = fields_of(hex(kOneBlob));
    Bytes h = hex("0x02d4dd304ceebca08afbfedf1d43a22c9fbfa3cc1961e20086b25bd004af2b65");
    fields[10] = rlp::encode_list(rlp::encode_bytes(h));
    EXPECT_EQ(decode_error(payload_from(fields)),
              "invalid transaction: blobVersionedHashes entry 0 has version 0x02; expected 0x01 "
              "(a KZG commitment)");
}

TEST(BlobTest, AContractCreationIsRefused) {
    auto fields = fields_of(hex(kOneBlob));
    fields[5] = rlp::encode_bytes(Bytes{});
    EXPECT_EQ(decode_error(network_form(payload_from(fields), parts_for({kOneBlobCommitment}),
                                        BlobSidecar::eip4844)),
              "invalid transaction: an EIP-4844 transaction cannot create a contract: to must be "
              "a 20-byte address");
}

TEST(BlobTest, MalformedWrappersAreRefused) {
    const Bytes payload = hex(kOneBlob);
    const Bytes body(payload.begin() + 1, payload.end());
    const auto wrap = [&](const std::vector<Bytes>& more) {
        Bytes items = body;
        for (const Bytes& m : more) items.insert(items.end(), m.begin(), m.end());
        Bytes out{0x03};
        const Bytes list = rlp::encode_list(items);
        out.insert(out.end(), list.begin(), list.end());
        return out;
    };
    const Bytes empty = rlp::encode_list(Bytes{});
    EXPECT_THAT(decode_error(wrap({empty, empty})),
                HasSubstr("network form has 3 items; expected [tx_payload_body, blobs, "
                          "commitments, proofs] (EIP-4844) or [tx_payload_body, 1, blobs, "
                          "commitments, cell_proofs] (EIP-7594)"));
    EXPECT_EQ(decode_error(wrap({rlp::encode_uint(2), empty, empty, empty})),
              "invalid transaction: blob sidecar: wrapper version must be 1 (EIP-7594)");
    EXPECT_EQ(decode_error(wrap({rlp::encode_bytes(Bytes(3, 1)), empty, empty})),
              "invalid transaction: blob sidecar: blobs is not a list");
    EXPECT_THAT(decode_error(wrap({empty, empty, empty, empty, empty})),
                HasSubstr("network form has 6 items"));
    EXPECT_THAT(decode_error(hex("0x03")), HasSubstr("type 0x03 without a payload"));
    EXPECT_THAT(decode_error(hex("0x0380")),
                HasSubstr("EIP-4844 transaction payload is not an RLP list"));
    EXPECT_THAT(decode_error(hex("0x03c0")),
                HasSubstr("EIP-4844 transaction has 0 fields, expected 14"));
    // A wrapper whose payload has a field missing.
    auto fields = fields_of(payload);
    fields.pop_back();
    const Bytes short_payload = payload_from(fields);
    EXPECT_THAT(decode_error(network_form(short_payload, parts_for({kOneBlobCommitment}),
                                          BlobSidecar::eip4844)),
                HasSubstr("EIP-4844 transaction has 13 fields, expected 14"));
}

TEST(BlobTest, APayloadOverOneMebibyteIsRefusedBeforeItsSignatureIsChecked) {
    auto fields = fields_of(hex(kOneBlob));
    fields[7] = rlp::encode_bytes(Bytes(kMaxBlobPayloadBytes, 0x42));  // input
    EXPECT_THAT(decode_error(payload_from(fields)),
                HasSubstr("EIP-4844 transaction payload (without its sidecar) is 10487"));
    EXPECT_THAT(decode_error(payload_from(fields)), HasSubstr("bytes; at most 1048576"));
}

}  // namespace
}  // namespace gateway::eth
