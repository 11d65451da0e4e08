// The write path with the real binary in front of a real anvil node reached through two
// fault-injecting forwarders: transactions queued while every node is down and mined in nonce
// order when they come back, a journal that survives kill -9, duplicates, transactions refused
// before the journal, stale reads during an outage, and a journal that cannot be opened.
// Transactions are signed offline by `cast mktx`; their hashes come from `cast keccak`.

#include "gateway/eth/transaction.hpp"
#include "integration/writes_fixture.hpp"
#include "support/http_test_client.hpp"
#include "support/json_values.hpp"
#include "support/tcp_forwarder.hpp"

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <csignal>
#include <functional>
#include <iostream>
#include <map>
#include <set>
#include <thread>

namespace gateway::test {
namespace {

TEST_F(WritesTest, B2_TransactionsSentWhileEveryNodeIsDownAreMinedInNonceOrderWhenTheyReturn) {
    start();
    ASSERT_TRUE(gw->wait_ready());
    ASSERT_NO_FATAL_FAILURE(nodes_down());

    // Sender A's in a scrambled order (the gateway must put them in nonce order), EIP-1559;
    // sender B's in order, legacy EIP-155.
    std::vector<Tx> txs;
    for (std::uint64_t n : {3, 0, 9, 1, 7, 2, 8, 4, 6, 5})
        txs.push_back(sign(kKeyA, kAddrA, kAddrB, n));
    for (std::uint64_t n = 0; n < 10; ++n)
        txs.push_back(sign(kKeyB, kAddrB, kAddrA, n, Kind::legacy));
    expect_queued(gw->port(), txs);

    for (const auto& tx : txs) {
        const json::value g = gateway_tx(tx.hash);
        ASSERT_TRUE(g.is_object()) << tx.hash;
        EXPECT_EQ(str(g.at("state")), "QUEUED");
        EXPECT_EQ(str(g.at("hash")), tx.hash);
        EXPECT_EQ(str(g.at("from")), tx.from);
        EXPECT_EQ(str(g.at("nonce")), quantity(tx.nonce));
        EXPECT_EQ(str(g.at("chainId")), "0x7a69");
        EXPECT_EQ(g.at("blockHash"), nullptr);
        EXPECT_EQ(str(g.at("history").as_array().front().at("state")), "QUEUED");

        // The node knows nothing of it: the gateway answers from its journal.
        const json::value t =
            result(gw->port(), "eth_getTransactionByHash", "[\"" + tx.hash + "\"]");
        ASSERT_TRUE(t.is_object()) << tx.hash << " not found while queued";
        EXPECT_EQ(str(t.at("hash")), tx.hash);
        EXPECT_EQ(str(t.at("from")), tx.from);
        EXPECT_EQ(str(t.at("nonce")), quantity(tx.nonce));
        EXPECT_EQ(t.at("blockHash"), nullptr);
        EXPECT_EQ(t.at("blockNumber"), nullptr);
    }
    for (const auto& sender : {kAddrA, kAddrB})
        EXPECT_EQ(result(gw->port(), "eth_getTransactionCount", "[\"" + sender + "\",\"pending\"]"),
                  "0xa")
            << sender;
    EXPECT_EQ(admin_transactions("?state=QUEUED&limit=100").size(), 20u);
    EXPECT_EQ(chain_nonce(kAddrA), 0u) << "nothing may reach a node while every node is down";

    nodes_up();
    ASSERT_TRUE(wait_completed(txs)) << json::serialize(admin_transactions());
    const auto receipts = expect_mined_exactly_once(txs);
    ASSERT_EQ(receipts.size(), 20u);

    // Per sender, the blocks follow the nonces.
    for (const auto& sender : {kAddrA, kAddrB}) {
        std::map<std::uint64_t, std::uint64_t> block_of_nonce;
        for (const auto& tx : txs)
            if (tx.from == sender)
                block_of_nonce[tx.nonce] = quantity_of(receipts.at(tx.hash).at("blockNumber"));
        std::uint64_t previous = 0;
        for (const auto& [nonce, block] : block_of_nonce) {
            EXPECT_GT(block, previous) << sender << " nonce " << nonce;
            previous = block;
        }
    }
    for (const auto& tx : txs) {
        const json::value g = gateway_tx(tx.hash);
        const json::array& history = g.at("history").as_array();
        EXPECT_EQ(str(history.front().at("state")), "QUEUED");
        EXPECT_EQ(str(history.back().at("state")), "COMPLETED");
    }
    EXPECT_EQ(admin_transactions("?state=QUEUED").size(), 0u);
    for (const auto& sender : {kAddrA, kAddrB})
        EXPECT_EQ(result(gw->port(), "eth_getTransactionCount", "[\"" + sender + "\",\"pending\"]"),
                  "0xa");
}

TEST_F(WritesTest, QueuedTransactionsSurviveKillDashNineAndAreMinedOnce) {
    start();
    ASSERT_TRUE(gw->wait_ready());
    ASSERT_NO_FATAL_FAILURE(nodes_down());
    std::vector<Tx> txs;
    for (std::uint64_t n = 0; n < 5; ++n) {
        txs.push_back(sign(kKeyA, kAddrA, kAddrB, n));
        txs.push_back(sign(kKeyB, kAddrB, kAddrA, n));
    }
    expect_queued(gw->port(), txs);

    gw->process().signal(SIGKILL);
    ASSERT_EQ(gw->process().wait(std::chrono::seconds(5)), 128 + SIGKILL);
    start();  // the same data directory, nodes still down
    ASSERT_TRUE(gw->process()
                    .wait_for_output(
                        std::regex("10 unfinished transaction\\(s\\) from the journal carry on"),
                        std::chrono::seconds(5))
                    .has_value())
        << "the journal was not replayed";
    for (const auto& tx : txs) EXPECT_EQ(str(gateway_tx(tx.hash).at("state")), "QUEUED");
    EXPECT_EQ(result(gw->port(), "eth_getTransactionCount", "[\"" + kAddrA + "\",\"pending\"]"),
              "0x5");

    nodes_up();
    ASSERT_TRUE(wait_completed(txs)) << json::serialize(admin_transactions());
    expect_mined_exactly_once(txs);
}

// Blob transactions (EIP-4844) need a fork that has them: Osaka, mainnet's since Fusaka, whose
// nodes take both network forms (anvil 1.7.1 does; so do Cancun and Prague in anvil).
class BlobWritesTest : public WritesTest {
protected:
    BlobWritesTest() {
        anvil_args = {"--hardfork", "osaka"};
        // anvil checks the 768 cell proofs of six blobs in seconds on a busy machine (9 s
        // measured at load 15 on two cores), and answers nothing else meanwhile.
        upstream_timeout_ms = 30000;
    }

    // A blob transaction signed offline by cast from `data_bytes` of data (126976 per blob):
    // EIP-7594's network form, or with `--eip4844` EIP-4844's. Its hash is the gateway's reading,
    // which anvil's receipts for it then confirm.
    Tx sign_blob(std::uint64_t nonce, std::size_t data_bytes, bool eip4844) {
        const std::string path = dir + "/blob-data-" + std::to_string(nonce);
        std::string data(data_bytes, '\0');
        for (std::size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i * 7 + nonce);
        write_file(path, data);
        std::vector<std::string> args{"mktx",
                                      "--blob",
                                      "--path",
                                      path,
                                      "--private-key",
                                      kKeyA,
                                      "--chain",
                                      "31337",
                                      "--nonce",
                                      std::to_string(nonce),
                                      "--gas-limit",
                                      "21000",
                                      "--gas-price",
                                      "2000000000",
                                      "--priority-gas-price",
                                      "1000000000",
                                      "--blob-gas-price",
                                      "1000000000",
                                      kAddrB};
        if (eip4844) args.insert(args.begin() + 2, "--eip4844");
        Tx tx;
        tx.raw = cast(args);
        const auto decoded = eth::decode_transaction(*eth::from_hex(tx.raw));
        EXPECT_EQ(decoded.sidecar, eip4844 ? eth::BlobSidecar::eip4844 : eth::BlobSidecar::eip7594)
            << "cast's form";
        tx.hash = eth::to_hex(decoded.hash);
        tx.from = kAddrA;
        tx.nonce = nonce;
        return tx;
    }
    std::uint64_t blob_gas_used(const std::string& hash) {
        return quantity_of(result(anvil->port(), "eth_getTransactionReceipt", "[\"" + hash + "\"]")
                               .at("blobGasUsed"));
    }
};

TEST_F(BlobWritesTest, BlobTransactionsInBothFormsAreMinedOnceAlsoAcrossAKillDashNine) {
    start();
    ASSERT_TRUE(gw->wait_ready());
    // Six blobs in EIP-7594's form, the largest a transaction may be: ~1.65 MB of hex, within
    // the default server.max_body_bytes. (Whether a node took it at once depends on how long
    // anvil takes over its proofs: its probes may time out meanwhile and the gateway queue it.)
    std::vector<Tx> txs{sign_blob(0, 700'000, false)};
    EXPECT_GT(txs[0].raw.size(), 1'600'000u);
    HttpReply r = send_raw(gw->port(), txs[0].raw);
    EXPECT_EQ(r.status, 200u) << r.body.substr(0, 500);
    EXPECT_EQ(json::parse(r.body).at("result"), txs[0].hash.c_str()) << r.body.substr(0, 500);
    ASSERT_TRUE(wait_completed(txs)) << json::serialize(admin_transactions());
    EXPECT_EQ(blob_gas_used(txs[0].hash), 6u * 131072);

    // Queued while every node is down, kept through kill -9, sent with their sidecars read from
    // the journal by the next gateway.
    ASSERT_NO_FATAL_FAILURE(nodes_down());
    std::vector<Tx> queued{sign_blob(1, 1000, true), sign_blob(2, 200'000, false)};
    expect_queued(gw->port(), queued);
    // The same transaction in the other form is the same transaction: its hash, one entry.
    r = send_raw(gw->port(), sign_blob(1, 1000, false).raw);
    EXPECT_EQ(json::parse(r.body).at("result"), queued[0].hash.c_str()) << r.body.substr(0, 500);
    EXPECT_EQ(r.header("x-gateway-queued"), "true");
    gw->process().signal(SIGKILL);
    ASSERT_EQ(gw->process().wait(std::chrono::seconds(5)), 128 + SIGKILL);
    start();
    ASSERT_TRUE(gw->process()
                    .wait_for_output(
                        std::regex("2 unfinished transaction\\(s\\) from the journal carry on"),
                        std::chrono::seconds(5))
                    .has_value())
        << "the journal was not replayed";
    nodes_up();
    txs.insert(txs.end(), queued.begin(), queued.end());
    ASSERT_TRUE(wait_completed(txs)) << json::serialize(admin_transactions());
    expect_mined_exactly_once(txs);
    EXPECT_EQ(blob_gas_used(queued[0].hash), 131072u);
    EXPECT_EQ(blob_gas_used(queued[1].hash), 2u * 131072);
}

TEST_F(BlobWritesTest, ABlobTransactionWithoutItsSidecarIsRefusedBeforeTheJournal) {
    start();
    ASSERT_TRUE(gw->wait_ready());
    const Tx tx = sign_blob(0, 1000, true);
    // The payload alone: the first item of the network form's list, behind the type byte.
    const eth::Bytes network = *eth::from_hex(tx.raw);
    const eth::Transaction decoded = eth::decode_transaction(network);
    HttpReply r = send_raw(gw->port(), eth::to_hex(decoded.payload));
    const json::value v = json::parse(r.body);
    EXPECT_EQ(v.at("error").at("code"), -32602) << r.body;
    EXPECT_THAT(str(v.at("error").at("message")),
                HasSubstr("a blob transaction without its sidecar"));
    EXPECT_EQ(admin_transactions().size(), 0u);
    EXPECT_EQ(chain_nonce(kAddrA), 0u);
}

TEST_F(WritesTest, KillDashNineWhileTheQueueIsBeingSentLosesNothingAndSendsNothingTwice) {
    start();
    ASSERT_TRUE(gw->wait_ready());
    ASSERT_NO_FATAL_FAILURE(nodes_down());
    std::vector<Tx> txs;
    for (std::uint64_t n = 0; n < 10; ++n) {
        txs.push_back(sign(kKeyA, kAddrA, kAddrB, n));
        txs.push_back(sign(kKeyB, kAddrB, kAddrA, n));
    }
    expect_queued(gw->port(), txs);

    // Killed as soon as the first transaction is on the chain: some are sent and mined, some
    // perhaps sent but not yet journaled as such, the rest still queued.
    nodes_up();
    ASSERT_TRUE(wait_until([&] { return result(anvil->port(), "eth_blockNumber", "[]") != "0x0"; },
                           std::chrono::seconds(10)));
    gw->process().signal(SIGKILL);
    ASSERT_EQ(gw->process().wait(std::chrono::seconds(5)), 128 + SIGKILL);
    std::cerr << "mined when killed: " << chain_transactions().size() << " of 20\n";

    start();
    ASSERT_TRUE(wait_completed(txs)) << json::serialize(admin_transactions());
    expect_mined_exactly_once(txs);
}

TEST_F(WritesTest, TheSameTransactionSentTwiceIsOneTransaction) {
    start();
    ASSERT_TRUE(gw->wait_ready());
    // With nodes up, through cast.
    const Tx first = sign(kKeyA, kAddrA, kAddrB, 0);
    EXPECT_EQ(cast({"publish", "--async", "--rpc-url", gw->url(), first.raw}), first.hash);
    EXPECT_EQ(cast({"publish", "--async", "--rpc-url", gw->url(), first.raw}), first.hash);

    // While queued.
    ASSERT_NO_FATAL_FAILURE(nodes_down());
    const Tx second = sign(kKeyA, kAddrA, kAddrB, 1);
    expect_queued(gw->port(), {second, second});

    json::array listed = admin_transactions();
    ASSERT_EQ(listed.size(), 2u) << json::serialize(listed);
    EXPECT_EQ(std::set<std::string>({str(listed[0].at("hash")), str(listed[1].at("hash"))}),
              std::set<std::string>({first.hash, second.hash}));

    nodes_up();
    ASSERT_TRUE(wait_completed({first, second})) << json::serialize(admin_transactions());
    // And once more after both are mined.
    EXPECT_EQ(cast({"publish", "--async", "--rpc-url", gw->url(), first.raw}), first.hash);
    EXPECT_EQ(cast({"publish", "--async", "--rpc-url", gw->url(), second.raw}), second.hash);
    expect_mined_exactly_once({first, second});
    for (const auto& tx : {first, second})
        EXPECT_EQ(str(gateway_tx(tx.hash).at("state")), "COMPLETED");
}

TEST_F(WritesTest, AnInvalidTransactionIsRefusedWithAReasonAndNeverJournaled) {
    start();
    ASSERT_TRUE(gw->wait_ready());
    const Tx valid = sign(kKeyA, kAddrA, kAddrB, 0);

    // Low-s signatures (EIP-2) have s below n/2, so s's first byte is below 0x80; setting its top
    // bit gives an s no valid transaction has. (Any other flipped bit gives a signature that is
    // valid for some other account, which only a node's balance check can refuse.)
    std::string bad_signature = valid.raw;
    const std::size_t s_at = bad_signature.size() - 64;
    ASSERT_EQ(bad_signature.substr(s_at - 2, 2), "a0") << "s is not 32 bytes long in " << valid.raw;
    const int s0 = std::stoi(bad_signature.substr(s_at, 2), nullptr, 16);
    ASSERT_LT(s0, 0x80);
    bad_signature.replace(s_at, 2, fmt::format("{:02x}", s0 | 0x80));

    const Tx mainnet = sign(kKeyA, kAddrA, kAddrB, 0, Kind::eip1559, "1");
    const Tx mainnet_legacy = sign(kKeyB, kAddrB, kAddrA, 0, Kind::legacy, "1");
    struct Case {
        std::string name, raw, message;
    };
    const std::vector<Case> cases = {
        {"another chain", mainnet.raw, "signed for chain id 1, but chain devnet has id 31337"},
        {"another chain, legacy", mainnet_legacy.raw, "signed for chain id 1"},
        {"bad RLP", "0xf8ff00", "invalid transaction"},
        {"bad signature", bad_signature, "signature s is above secp256k1n/2"},
    };
    for (const auto& c : cases) {
        SCOPED_TRACE(c.name);
        HttpReply r = send_raw(gw->port(), c.raw);
        EXPECT_EQ(r.status, 200u);
        EXPECT_EQ(r.header("x-gateway-queued"), "");
        const json::value v = json::parse(r.body);
        ASSERT_TRUE(v.as_object().contains("error")) << r.body;
        EXPECT_EQ(v.at("error").at("code"), -32602) << r.body;
        EXPECT_THAT(str(v.at("error").at("message")), HasSubstr(c.message)) << r.body;
        const std::string hash = cast({"keccak", c.raw});
        EXPECT_EQ(gateway_tx(hash), nullptr);
    }
    EXPECT_EQ(admin_transactions().size(), 0u) << json::serialize(admin_transactions());
    EXPECT_EQ(chain_nonce(kAddrA), 0u);
    EXPECT_EQ(chain_nonce(kAddrB), 0u);

    // The valid one it was made from goes through.
    EXPECT_EQ(json::parse(send_raw(gw->port(), valid.raw).body).at("result"), valid.hash.c_str());
    ASSERT_TRUE(wait_completed({valid}));
    expect_mined_exactly_once({valid});
}

TEST_F(WritesTest, ReadsAlreadyMadeAreServedStaleDuringAnOutageAndOthersGet503) {
    start();
    ASSERT_TRUE(gw->wait_ready());
    const std::string balance = rpc_body("eth_getBalance", "[\"" + kAddrA + "\",\"latest\"]");
    const std::string block_number = rpc_body("eth_blockNumber");
    cast({"rpc", "anvil_mine", "3", "--rpc-url", anvil->url()});

    // The node answered each read between `sent` and `received`: that is when it was fresh.
    struct Read {
        json::value result;
        Clock::time_point sent, received;
    };
    std::map<std::string, Read> fresh;
    for (const auto& body : {balance, block_number}) {
        Read& read = fresh[body];
        read.sent = Clock::now();
        HttpReply r = http_post(gw->port(), "/", body);
        read.received = Clock::now();
        EXPECT_EQ(r.status, 200u) << r.body;
        EXPECT_EQ(r.header("x-gateway-stale"), "") << body;
        EXPECT_EQ(r.header("x-gateway-data-age-ms"), "") << body;
        read.result = json::parse(r.body).at("result");
    }
    EXPECT_EQ(fresh[balance].result, "0x21e19e0c9bab2400000");
    EXPECT_EQ(fresh[block_number].result, "0x3");

    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    ASSERT_NO_FATAL_FAILURE(nodes_down());
    for (int round = 0; round < 2; ++round) {
        for (const auto& body : {balance, block_number}) {
            SCOPED_TRACE(body);
            const auto sent = Clock::now();
            HttpReply r = http_post(gw->port(), "/", body);
            using std::chrono::duration_cast, std::chrono::milliseconds;
            const auto at_most = duration_cast<milliseconds>(Clock::now() - fresh[body].sent);
            const auto at_least = duration_cast<milliseconds>(sent - fresh[body].received);
            EXPECT_EQ(r.status, 200u) << r.body;
            EXPECT_EQ(json::parse(r.body).at("result"), fresh[body].result) << r.body;
            EXPECT_EQ(r.header("x-gateway-stale"), "true");
            const std::string age = r.header("x-gateway-data-age-ms");
            ASSERT_FALSE(age.empty());
            ASSERT_EQ(age.find_first_not_of("0123456789"), std::string::npos) << age;
            // The time since the node gave the answer (give or take a clock tick).
            EXPECT_GE(std::stoll(age), at_least.count() - 2);
            EXPECT_LE(std::stoll(age), at_most.count() + 2);
            EXPECT_GE(std::stoll(age), 300 + 200 * round);
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }

    // Never read before: nothing to serve.
    HttpReply never = http_post(
        gw->port(), "/",
        rpc_body("eth_getBalance", "[\"0x000000000000000000000000000000000000dead\",\"latest\"]"));
    EXPECT_EQ(never.status, 503u) << never.body;
    EXPECT_EQ(never.header("x-gateway-stale"), "");
    EXPECT_EQ(json::parse(never.body).at("error").at("code"), -32002) << never.body;

    nodes_up();
    ASSERT_TRUE(gw->wait_ready());
    for (const auto& body : {balance, block_number}) {
        HttpReply r = http_post(gw->port(), "/", body);
        EXPECT_EQ(r.status, 200u) << r.body;
        EXPECT_EQ(r.header("x-gateway-stale"), "") << body;
        EXPECT_EQ(r.header("x-gateway-data-age-ms"), "") << body;
        // From a node, or from the cache while the head has not moved: either way not stale.
        EXPECT_TRUE(r.header("x-gateway-upstream") != "" || r.header("x-gateway-cache") == "hit")
            << body;
    }
    HttpReply fresh_read = http_post(
        gw->port(), "/",
        rpc_body("eth_getBalance", "[\"0x000000000000000000000000000000000000dead\",\"latest\"]"));
    EXPECT_EQ(fresh_read.status, 200u) << fresh_read.body;
    EXPECT_NE(fresh_read.header("x-gateway-upstream"), "");
}

TEST_F(WritesTest, A3_AnUnusableJournalRefusesWritesWith503AndReadsGoOn) {
    write_file(dir + "/not-a-directory", "a regular file\n");
    start(dir + "/not-a-directory/gateway.db");
    ASSERT_TRUE(gw->wait_ready());
    const Tx tx = sign(kKeyA, kAddrA, kAddrB, 0);

    HttpReply r = send_raw(gw->port(), tx.raw);
    EXPECT_EQ(r.status, 503u) << r.body;
    EXPECT_EQ(r.header("x-gateway-queued"), "");
    const json::value v = json::parse(r.body);
    ASSERT_TRUE(v.as_object().contains("error")) << r.body;
    EXPECT_EQ(v.at("error").at("code"), -32002) << r.body;
    EXPECT_THAT(str(v.at("error").at("message")), HasSubstr("journal")) << r.body;

    HttpReply read =
        http_post(gw->port(), "/", rpc_body("eth_getBalance", "[\"" + kAddrA + "\",\"latest\"]"));
    EXPECT_EQ(read.status, 200u) << read.body;
    EXPECT_EQ(json::parse(read.body).at("result"), "0x21e19e0c9bab2400000") << read.body;

    // Refused means not sent either.
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    EXPECT_EQ(chain_nonce(kAddrA), 0u);
    EXPECT_EQ(result(anvil->port(), "eth_getTransactionByHash", "[\"" + tx.hash + "\"]"), nullptr);
    EXPECT_THAT(gw->process().output(), HasSubstr("the transaction journal is unusable"));
}

}  // namespace
}  // namespace gateway::test
