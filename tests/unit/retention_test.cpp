// Retention: finished transactions leave the journal after store.retention_ms, a bounded batch at
// a time on the journal's thread, and the file stops growing once they do. What must outlive them
// (unfinished transactions, attempts of unfinished managed ones, nonces) stays.

#include "gateway/store/journal_service.hpp"
#include "gateway/store/store.hpp"

#include "support/process.hpp"

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <iostream>
#include <map>
#include <thread>

namespace gateway::store {
namespace {

using namespace std::chrono_literals;

constexpr std::int64_t kHour = 3'600'000;

TxRecord raw_tx(const std::string& hash, TxState state, std::int64_t at_ms) {
    TxRecord r;
    r.hash = hash;
    r.chain = "devnet";
    r.chain_id = 31337;
    r.sender = "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266";
    r.raw = {0x02, 0xf8, 0x01};
    r.state = state;
    r.reason = "received";
    r.created_ms = r.updated_ms = at_ms;
    return r;
}

ManagedRecord managed_tx(const std::string& id, TxState state, std::int64_t at_ms) {
    ManagedRecord m;
    m.id = id;
    m.chain = "devnet";
    m.sender = "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266";
    m.request = "{}";
    m.idempotency_key = "key-" + id;
    m.state = state;
    m.reason = "received";
    m.created_ms = m.updated_ms = at_ms;
    return m;
}

TxRecord attempt_of(const std::string& parent, const std::string& hash, TxState state,
                    std::int64_t at_ms) {
    TxRecord r = raw_tx(hash, state, at_ms);
    r.parent = parent;
    return r;
}

// A mined transaction whose block is not final yet may still be reopened by a reorg: it is kept
// however old, until its block is final.
TEST(Retention, AMinedTransactionIsKeptUntilItsBlockIsFinal) {
    const std::string dir = test::make_temp_dir("retention");
    auto s = open_store(config::StoreConfig{"sqlite", dir + "/j.db"});
    TxRecord mined = raw_tx("0xm1", TxState::completed, 1000);
    mined.block_hash = "0xb10c";
    mined.block_number = 7;
    s->insert(mined);
    EXPECT_EQ(s->prune(2000, 100).transactions, 0u);
    EXPECT_TRUE(s->find("0xm1"));
    s->mark_finalized({"0xm1"});
    EXPECT_EQ(s->prune(2000, 100).transactions, 1u);
    EXPECT_FALSE(s->find("0xm1"));
}

TEST(Retention, PruningDeletesOnlyFinishedTransactionsOlderThanTheCutoff) {
    const std::string dir = test::make_temp_dir("retention");
    auto s = open_store(config::StoreConfig{"sqlite", dir + "/j.db"});
    const std::int64_t old = 1000, cutoff = 2000, recent = 3000;
    for (auto [hash, state] : {std::pair{"0xa1", TxState::completed},
                               {"0xa2", TxState::failed},
                               {"0xa3", TxState::dead_letter},
                               {"0xa4", TxState::replaced}})
        s->insert(raw_tx(hash, state, old));
    s->update(TxUpdate{"0xa1", TxState::completed, "mined", old});  // a history of two events
    s->insert(raw_tx("0xq1", TxState::queued, old));                // old, but unfinished
    s->insert(raw_tx("0xq2", TxState::broadcasting, old));
    s->insert(raw_tx("0xr1", TxState::completed, recent));  // finished, but not long enough ago

    // A finished managed transaction goes with its attempts; one with an attempt still out (or
    // itself unfinished, or finished recently) stays, attempts and all.
    s->insert_managed(managed_tx("gtx-done", TxState::completed, old));
    s->insert(attempt_of("gtx-done", "0xb1", TxState::completed, old));
    s->insert(attempt_of("gtx-done", "0xb2", TxState::replaced, old));
    s->insert_managed(managed_tx("gtx-out", TxState::failed, old));
    s->insert(attempt_of("gtx-out", "0xb3", TxState::broadcasting, old));
    s->insert_managed(managed_tx("gtx-open", TxState::broadcasting, old));
    s->insert(attempt_of("gtx-open", "0xb4", TxState::failed, old));
    s->insert_managed(managed_tx("gtx-new", TxState::cancelled, recent));
    s->take_nonce("devnet", "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266", 41);

    const Pruned p = s->prune(cutoff, 100);
    EXPECT_EQ(p.transactions, 6u) << "0xa1-0xa4 and the two attempts of gtx-done";
    EXPECT_EQ(p.managed, 1u);
    EXPECT_FALSE(p.more);
    for (const char* gone : {"0xa1", "0xa2", "0xa3", "0xa4", "0xb1", "0xb2"}) {
        EXPECT_FALSE(s->find(gone)) << gone;
        EXPECT_TRUE(s->history(gone).empty()) << gone;
    }
    EXPECT_FALSE(s->find_managed("gtx-done"));
    EXPECT_TRUE(s->managed_history("gtx-done").empty());
    for (const char* kept : {"0xq1", "0xq2", "0xr1", "0xb3", "0xb4"}) {
        EXPECT_TRUE(s->find(kept)) << kept;
        EXPECT_FALSE(s->history(kept).empty()) << kept;
    }
    for (const char* kept : {"gtx-out", "gtx-open", "gtx-new"}) EXPECT_TRUE(s->find_managed(kept));
    EXPECT_EQ(s->unfinished().size(), 3u);
    EXPECT_EQ(s->next_nonce("devnet", "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266"), 42u)
        << "the nonces outlive every transaction";
    // The same key again finds the managed transaction still kept.
    ManagedRecord again = managed_tx("gtx-other", TxState::queued, recent);
    again.idempotency_key = "key-gtx-new";
    EXPECT_FALSE(s->insert_managed(again).second);
}

TEST(Retention, ABatchIsBoundedAndSaysWhenMoreAreDue) {
    const std::string dir = test::make_temp_dir("retention");
    auto s = open_store(config::StoreConfig{"sqlite", dir + "/j.db"});
    for (int i = 0; i < 5; ++i)
        s->insert(raw_tx(fmt::format("0x{:02x}", i), TxState::completed, 1000));
    Pruned p = s->prune(2000, 2);
    EXPECT_EQ(p.transactions, 2u);
    EXPECT_TRUE(p.more);
    p = s->prune(2000, 2);
    EXPECT_EQ(p.transactions, 2u);
    p = s->prune(2000, 2);
    EXPECT_EQ(p.transactions, 1u);
    EXPECT_FALSE(p.more);
    EXPECT_TRUE(s->list(std::nullopt, 10).empty());
}

// The journal thread prunes by itself, every prune_every, in batches of prune_batch, between the
// callers' operations, counting by its own clock.
TEST(Retention, TheJournalThreadPrunesByItselfInBatches) {
    const std::string dir = test::make_temp_dir("retention");
    std::atomic<std::int64_t> now{100 * kHour};
    std::atomic<std::size_t> looks{0};
    JournalOptions options;
    options.retention = std::chrono::milliseconds(48 * kHour);
    options.prune_every = 10ms;
    options.prune_batch = 10;
    options.unix_now = [&] { return now.load(); };
    options.on_pruned = [&](const Pruned&) { ++looks; };
    JournalService service(
        [&] {
            return std::unique_ptr<Journal>(open_store({"sqlite", dir + "/j.db"}));
        },
        options);
    service.run_blocking([&](JournalView& j) {
        for (int i = 0; i < 35; ++i)
            j.insert(raw_tx(fmt::format("0x{:02x}", i), TxState::completed, 60 * kHour));
        j.insert(raw_tx("0xopen", TxState::queued, 60 * kHour));
    });
    std::this_thread::sleep_for(50ms);
    EXPECT_EQ(service.pruned(), 0u) << "40 hours old: within retention";

    now = 109 * kHour;  // 49 hours later
    for (int i = 0; i < 300 && service.pruned() < 35; ++i) std::this_thread::sleep_for(10ms);
    EXPECT_EQ(service.pruned(), 35u);
    EXPECT_GE(looks.load(), 4u) << "35 in batches of at most 10";
    std::vector<TxRecord> left;
    service.run_blocking([&](JournalView& j) { left = j.list(std::nullopt, 100); });
    ASSERT_EQ(left.size(), 1u);
    EXPECT_EQ(left[0].hash, "0xopen");
}

std::uintmax_t checkpointed_size(const std::string& path) {
    // Everything in the main file (the WAL emptied into it) so that sizes compare.
    sqlite3* db = nullptr;
    EXPECT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
    EXPECT_EQ(sqlite3_exec(db, "PRAGMA wal_checkpoint(TRUNCATE);", nullptr, nullptr, nullptr),
              SQLITE_OK)
        << sqlite3_errmsg(db);
    sqlite3_close(db);
    return std::filesystem::file_size(path);
}

// 50,000 transactions go through the journal as the transaction manager writes them (QUEUED,
// BROADCASTING, CONFIRMING, COMPLETED, by a node that mines at once), half an hour of the
// journal's clock per hundred: ten days. With store.retention_ms at 48 hours the journal thread
// prunes as it goes, and once it does the file stops growing: SQLite reuses the pages freed.
// Labelled `slow` (tests/CMakeLists.txt): run in the plain pass only, not under sanitizers.
TEST(SlowJournal, TheFileStopsGrowingOncePruningRuns) {
    const std::string dir = test::make_temp_dir("retention-50k");
    const std::string path = dir + "/j.db";
    std::atomic<std::int64_t> now{1'700'000'000'000};
    JournalOptions options;
    options.retention = std::chrono::milliseconds(48 * kHour);
    options.prune_every = 5ms;
    options.unix_now = [&] { return now.load(); };
    JournalService service(
        [&] {
            return std::unique_ptr<Journal>(open_store({"sqlite", path}));
        },
        options);

    constexpr int kRounds = 500, kPerRound = 100;
    std::map<int, std::uintmax_t> size_at;
    const auto t0 = std::chrono::steady_clock::now();
    // Mined transactions are kept until their block is final (a reorg may reopen them): the
    // gateway marks them so as the chain's finalized block passes theirs; here, a round later.
    std::vector<std::string> mined_last_round;
    for (int round = 0; round < kRounds; ++round) {
        service.run_blocking([&](JournalView& j) {
            j.mark_finalized(mined_last_round);
            mined_last_round.clear();
            const std::int64_t at = now.load();
            for (int k = 0; k < kPerRound; ++k) {
                const int n = round * kPerRound + k;
                TxRecord r = raw_tx(fmt::format("0x{:064x}", n), TxState::queued, at);
                r.sender = fmt::format("0x{:040x}", n % 977);
                r.nonce = static_cast<std::uint64_t>(n / 977);
                r.raw.assign(110, static_cast<std::uint8_t>(n));
                r.source = "127.0.0.1";
                j.insert(r);
                j.update(
                    TxUpdate{r.hash, TxState::broadcasting, "accepted by node-0,node-1", at, 1u});
                TxUpdate mined{r.hash, TxState::confirming,
                               fmt::format("mined in block {} (0x{:064x})", n, n), at};
                mined.set_block = true;
                mined.block_hash = fmt::format("0x{:064x}", n);
                mined.block_number = static_cast<std::uint64_t>(n);
                j.update(mined);
                mined.state = TxState::completed;
                mined.reason =
                    fmt::format("mined in block {} (0x{:064x}), 1 confirmation(s)", n, n);
                j.update(mined);
                mined_last_round.push_back(r.hash);
            }
        });
        now += kHour / 2;
        if (round + 1 == 100 || round + 1 == 200 || round + 1 == kRounds) {
            // Let the journal thread catch up with what is due, then measure.
            std::this_thread::sleep_for(50ms);
            size_at[round + 1] = checkpointed_size(path);
        }
    }
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::size_t kept = 0;
    service.run_blocking([&](JournalView& j) { kept = j.list(std::nullopt, 100'000).size(); });
    std::cout << fmt::format(
        "50,000 transactions in {:.1f} s; file after 10,000: {} KiB, after 20,000: {} KiB, after "
        "50,000: {} KiB; {} pruned, {} kept\n",
        seconds, size_at[100] / 1024, size_at[200] / 1024, size_at[kRounds] / 1024,
        service.pruned(), kept);

    // 48 hours are 96 rounds: about 9,700 transactions are kept at any time after that.
    EXPECT_GT(service.pruned(), 40'000u);
    EXPECT_LT(kept, 10'000u);
    EXPECT_GT(kept, 9'000u);
    EXPECT_GT(size_at[200], size_at[100] / 2);
    EXPECT_LE(size_at[kRounds], size_at[200] + size_at[200] / 10)
        << "the file kept growing after pruning began";
}

}  // namespace
}  // namespace gateway::store
