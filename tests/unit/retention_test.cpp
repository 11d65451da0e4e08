// Retention with SQLite: once the journal thread prunes, the file stops growing (SQLite reuses the
// pages freed). What every backend's pruning keeps and deletes is in the journal's contract
// (journal_contract_test.cpp).

#include "gateway/store/journal_service.hpp"
#include "gateway/store/store.hpp"

#include "support/journal_records.hpp"
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
using test::raw_tx;

constexpr std::int64_t kHour = 3'600'000;

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
    // As fast as the writer, who never pauses here: this is about the file's size, not about
    // pruning yielding to callers (JournalPruning.* in journal_service_test.cpp).
    options.prune_batch_busy = options.prune_batch;
    options.prune_busy_pause = 0;
    options.prune_busy_window = 0ms;
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
