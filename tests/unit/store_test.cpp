// The SQLite journal's own behaviour (what every backend does is in journal_contract_test.cpp):
// its folder and migrations, finality, records owned by their client, newer versions refused and
// unusable paths.

#include "gateway/store/store.hpp"

#include "support/process.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <filesystem>

namespace gateway::store {
namespace {

using ::testing::HasSubstr;

TEST(SqliteStore, CreatesItsFolderAndMigrates) {
    const std::string dir = test::make_temp_dir("store-test");
    config::StoreConfig c{"sqlite", dir + "/nested/data/gateway.db"};
    {
        auto store = open_store(c);
        EXPECT_EQ(store->schema_version(), 14);
        EXPECT_EQ(store->describe(), "sqlite:" + c.path);
    }
    EXPECT_TRUE(std::filesystem::exists(c.path));
    // Reopening an up-to-date database changes nothing.
    EXPECT_EQ(open_store(c)->schema_version(), 14);
}

// The operator page asks for managed transactions every few seconds: the last changed first, and by
// an idempotency key alone. Both come from an index (version 13), not a read of every row.
TEST(SqliteStore, TheOperatorPagesListsOfManagedTransactionsComeFromIndexes) {
    const std::string dir = test::make_temp_dir("store-test");
    config::StoreConfig c{"sqlite", dir + "/gateway.db"};
    open_store(c);
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(c.path.c_str(), &db), SQLITE_OK);
    auto plan = [&](const std::string& where) {
        const std::string sql = "EXPLAIN QUERY PLAN SELECT id FROM managed_transactions" + where +
                                " ORDER BY updated_ms DESC, rowid DESC LIMIT 100;";
        sqlite3_stmt* st = nullptr;
        std::string out;
        EXPECT_EQ(sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr), SQLITE_OK);
        while (sqlite3_step(st) == SQLITE_ROW)
            out += reinterpret_cast<const char*>(sqlite3_column_text(st, 3)) + std::string("; ");
        sqlite3_finalize(st);
        return out;
    };
    EXPECT_THAT(plan(""), HasSubstr("managed_by_update"));
    EXPECT_THAT(plan(""), ::testing::Not(HasSubstr("TEMP B-TREE"))) << "no sort of every row";
    EXPECT_THAT(plan(" WHERE idempotency_key = 'k'"), HasSubstr("managed_by_any_key"));
    sqlite3_close(db);
}

// Version 4 points events to their transaction by an integer id: a version-3 journal keeps its
// transactions and their histories, and new events join them.
TEST(SqliteStore, AVersion3JournalMigratesWithItsHistories) {
    const std::string dir = test::make_temp_dir("store-test");
    config::StoreConfig c{"sqlite", dir + "/gateway.db"};
    EXPECT_EQ(open_store_at_version(c, 3)->schema_version(), 3);
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(c.path.c_str(), &db), SQLITE_OK);
    const char* v3 =
        "INSERT INTO transactions (hash, chain, chain_id, sender, nonce, raw, state, reason,"
        " created_ms, updated_ms, broadcasts) VALUES"
        " ('0xaa', 'devnet', 31337, '0xs', 0, x'01', 'BROADCASTING', 'accepted', 10, 20, 1),"
        " ('0xbb', 'devnet', 31337, '0xs', 1, x'02', 'QUEUED', 'received', 30, 30, 0);"
        "INSERT INTO transaction_events (hash, state, reason, at_ms) VALUES"
        " ('0xaa', 'QUEUED', 'received', 10), ('0xbb', 'QUEUED', 'received', 30),"
        " ('0xaa', 'BROADCASTING', 'accepted', 20);";
    ASSERT_EQ(sqlite3_exec(db, v3, nullptr, nullptr, nullptr), SQLITE_OK) << sqlite3_errmsg(db);
    sqlite3_close(db);

    auto store = open_store(c);
    EXPECT_EQ(store->schema_version(), 14);
    auto a = store->find("0xaa");
    ASSERT_TRUE(a);
    EXPECT_EQ(a->state, TxState::broadcasting);
    EXPECT_EQ(a->raw, (std::vector<std::uint8_t>{1}));
    EXPECT_EQ(a->broadcasts, 1u);
    auto history = store->history("0xaa");
    ASSERT_EQ(history.size(), 2u);
    EXPECT_EQ(history[0].state, TxState::queued);
    EXPECT_EQ(history[1].state, TxState::broadcasting);
    EXPECT_EQ(history[1].at_ms, 20);
    ASSERT_EQ(store->history("0xbb").size(), 1u);

    // Carrying on: an update and a new transaction record their events.
    EXPECT_TRUE(store->update(TxUpdate{"0xbb", TxState::broadcasting, "accepted", 40}));
    EXPECT_FALSE(store->update(TxUpdate{"0xcc", TxState::broadcasting, "accepted", 40}));
    TxRecord n;
    n.hash = "0xcc";
    n.chain = "devnet";
    n.chain_id = 31337;
    n.sender = "0xs";
    n.nonce = 2;
    n.raw = {3};
    n.state = TxState::queued;
    n.reason = "received";
    n.created_ms = n.updated_ms = 50;
    EXPECT_TRUE(store->insert(n).second);
    EXPECT_FALSE(store->insert(n).second) << "the same hash twice is one transaction";
    auto bb = store->history("0xbb");
    ASSERT_EQ(bb.size(), 2u);
    EXPECT_EQ(bb[1].state, TxState::broadcasting);
    ASSERT_EQ(store->history("0xcc").size(), 1u);
    EXPECT_TRUE(store->history("0xdd").empty());
    auto unfinished = store->unfinished();
    ASSERT_EQ(unfinished.size(), 3u);
    EXPECT_EQ(unfinished[0].nonce, 0u);
    EXPECT_EQ(unfinished[2].nonce, 2u);
}

// Version 6 tells whether a final state can still change: what a version-5 journal finished
// is taken as final; a mined transaction stays open to a reorg until its block is final, and a
// reopened one is unfinished again.
TEST(SqliteStore, AMinedTransactionIsNotFinalizedUntilItsBlockIs) {
    const std::string dir = test::make_temp_dir("store-test");
    config::StoreConfig c{"sqlite", dir + "/gateway.db"};
    EXPECT_EQ(open_store_at_version(c, 5)->schema_version(), 5);
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(c.path.c_str(), &db), SQLITE_OK);
    const char* v5 =
        "INSERT INTO transactions (hash, chain, chain_id, sender, nonce, raw, state, reason,"
        " created_ms, updated_ms, broadcasts, block_hash, block_number) VALUES"
        " ('0xaa', 'devnet', 31337, '0xs', 0, x'01', 'COMPLETED', 'mined', 10, 20, 1, '0xb1', 1),"
        " ('0xbb', 'devnet', 31337, '0xs', 1, x'02', 'CONFIRMING', 'mined', 30, 30, 1, '0xb2', 2);";
    ASSERT_EQ(sqlite3_exec(db, v5, nullptr, nullptr, nullptr), SQLITE_OK) << sqlite3_errmsg(db);
    sqlite3_close(db);

    auto store = open_store(c);
    EXPECT_TRUE(store->find("0xaa")->finalized) << "finished before: taken as final";
    EXPECT_FALSE(store->find("0xbb")->finalized);
    EXPECT_TRUE(store->unfinalized().empty());

    TxUpdate done{"0xbb", TxState::completed, "mined in block 2", 40};
    done.set_block = true;
    done.block_hash = "0xb2";
    done.block_number = 2;
    EXPECT_TRUE(store->update(done));
    auto open = store->unfinalized();
    ASSERT_EQ(open.size(), 1u);
    EXPECT_EQ(open[0].hash, "0xbb");
    EXPECT_TRUE(store->unfinished().empty());

    // A reorg reopens it: unfinished again, and no longer among the mined ones.
    TxUpdate reopened{"0xbb", TxState::broadcasting, "a reorg dropped block 2", 50};
    reopened.set_block = true;
    EXPECT_TRUE(store->update(reopened));
    EXPECT_TRUE(store->unfinalized().empty());
    ASSERT_EQ(store->unfinished().size(), 1u);
    EXPECT_FALSE(store->find("0xbb")->block_hash);

    done.at_ms = 60;
    EXPECT_TRUE(store->update(done));
    ASSERT_EQ(store->unfinalized().size(), 1u);
    store->mark_finalized({"0xbb"});
    EXPECT_TRUE(store->unfinalized().empty());
    EXPECT_TRUE(store->find("0xbb")->finalized);
    EXPECT_EQ(store->history("0xbb").size(), 3u) << "finalizing writes no event";

    // A final state written without a block (refused, replaced before any node took it) is
    // final for good, whoever writes it.
    TxRecord n;
    n.hash = "0xcc";
    n.chain = "devnet";
    n.chain_id = 31337;
    n.sender = "0xs";
    n.nonce = 2;
    n.raw = {3};
    n.created_ms = n.updated_ms = 70;
    EXPECT_TRUE(store->insert(n).second);
    EXPECT_FALSE(store->find("0xcc")->finalized);
    EXPECT_TRUE(
        store->update(TxUpdate{"0xcc", TxState::failed, "replaced before any node took it", 80}));
    EXPECT_TRUE(store->find("0xcc")->finalized);
    EXPECT_TRUE(store->unfinalized().empty());
}

// Version 10 keeps what a managed transaction moves and when the policy let it: a version-9
// journal's managed transactions keep everything, with neither (the daily sums count from the
// upgrade on).
TEST(SqliteStore, AVersion9JournalsManagedTransactionsSpendNothingInTheDailySums) {
    const std::string dir = test::make_temp_dir("store-test");
    config::StoreConfig c{"sqlite", dir + "/gateway.db"};
    EXPECT_EQ(open_store_at_version(c, 9)->schema_version(), 9);
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(c.path.c_str(), &db), SQLITE_OK);
    const char* v9 =
        "INSERT INTO managed_transactions (id, chain, sender, request, state, reason, created_ms,"
        " updated_ms) VALUES ('gtx-old', 'devnet', '0xs', '{\"value\":\"0x5\"}', 'QUEUED',"
        " 'received', 10, 10);";
    ASSERT_EQ(sqlite3_exec(db, v9, nullptr, nullptr, nullptr), SQLITE_OK) << sqlite3_errmsg(db);
    sqlite3_close(db);

    auto store = open_store(c);
    EXPECT_EQ(store->schema_version(), 14);
    const auto old = store->find_managed("gtx-old");
    ASSERT_TRUE(old);
    EXPECT_EQ(old->state, TxState::queued);
    EXPECT_TRUE(old->value.empty());
    EXPECT_FALSE(old->spend_ms);
    EXPECT_TRUE(store->spending("devnet", "0xs", 0).empty());
}

// Version 5 records which client sent a transaction: a version-4 journal keeps its managed
// transactions (no client: sent without auth), and an idempotency key belongs to one client.
TEST(SqliteStore, RecordsAndIdempotencyKeysBelongToTheirClient) {
    const std::string dir = test::make_temp_dir("store-test");
    config::StoreConfig c{"sqlite", dir + "/gateway.db"};
    EXPECT_EQ(open_store_at_version(c, 4)->schema_version(), 4);
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(c.path.c_str(), &db), SQLITE_OK);
    const char* v4 =
        "INSERT INTO managed_transactions (id, chain, sender, request, idempotency_key, state,"
        " reason, created_ms, updated_ms) VALUES"
        " ('gtx-old', 'devnet', '0xs', '{}', 'k1', 'QUEUED', 'received', 10, 10);";
    ASSERT_EQ(sqlite3_exec(db, v4, nullptr, nullptr, nullptr), SQLITE_OK) << sqlite3_errmsg(db);
    sqlite3_close(db);

    auto store = open_store(c);
    EXPECT_EQ(store->schema_version(), 14);
    auto old = store->find_managed("gtx-old");
    ASSERT_TRUE(old);
    EXPECT_EQ(old->client, "");
    EXPECT_EQ(old->idempotency_key, "k1");

    ManagedRecord m;
    m.chain = "devnet";
    m.sender = "0xs";
    m.request = "{}";
    m.idempotency_key = "k1";
    m.state = TxState::queued;
    m.reason = "received";
    m.id = "gtx-a";
    m.client = "backend";
    auto [a, inserted_a] = store->insert_managed(m);
    EXPECT_TRUE(inserted_a) << "the same key from another client is another transaction";
    EXPECT_EQ(a.client, "backend");
    m.id = "gtx-b";
    m.client = "jwt:alice";
    EXPECT_TRUE(store->insert_managed(m).second);
    m.id = "gtx-c";
    m.client = "backend";
    auto [again, inserted_again] = store->insert_managed(m);
    EXPECT_FALSE(inserted_again) << "the same client and key is the same transaction";
    EXPECT_EQ(again.id, "gtx-a");
    m.id = "gtx-d";
    m.client = "";
    auto [anonymous, inserted_anonymous] = store->insert_managed(m);
    EXPECT_FALSE(inserted_anonymous);
    EXPECT_EQ(anonymous.id, "gtx-old");
    EXPECT_EQ(store->find_managed("gtx-b")->client, "jwt:alice");

    TxRecord t;
    t.hash = "0xaa";
    t.chain = "devnet";
    t.chain_id = 31337;
    t.sender = "0xs";
    t.raw = {1};
    t.client = "backend";
    store->insert(t);
    EXPECT_EQ(store->find("0xaa")->client, "backend");
    t.hash = "0xbb";
    t.client = "";
    store->insert(t);
    EXPECT_EQ(store->find("0xbb")->client, "");
}

TEST(SqliteStore, RefusesADatabaseFromANewerVersion) {
    const std::string dir = test::make_temp_dir("store-test");
    config::StoreConfig c{"sqlite", dir + "/gateway.db"};
    open_store(c);
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(c.path.c_str(), &db), SQLITE_OK);
    ASSERT_EQ(
        sqlite3_exec(db, "UPDATE schema_version SET version = 99;", nullptr, nullptr, nullptr),
        SQLITE_OK);
    sqlite3_close(db);
    try {
        open_store(c);
        FAIL() << "a newer schema was accepted";
    } catch (const std::runtime_error& e) {
        EXPECT_THAT(e.what(), HasSubstr("schema version 99"));
    }
}

TEST(SqliteStore, AnUnusablePathIsAClearError) {
    const std::string dir = test::make_temp_dir("store-test");
    test::write_file(dir + "/file", "x");
    try {
        open_store(config::StoreConfig{"sqlite", dir + "/file/gateway.db"});
        FAIL() << "no error";
    } catch (const std::runtime_error& e) {
        EXPECT_THAT(e.what(), HasSubstr(dir + "/file/gateway.db"));
    }
}

}  // namespace
}  // namespace gateway::store
