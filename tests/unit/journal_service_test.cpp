// The journal service (store::JournalService, the journal's thread) and the journal's state
// names. Under faults injected below SQLite (a VFS that fails or stalls writes and syncs): every
// caller is told the truth about what is on disk, a stalled fsync is answered within
// store.timeout_ms, the queue is bounded, a journal that failed is opened again, and an unusable
// store fails clearly and is used once it opens. The whole gateway with a stalled journal is in
// tests/gateway/stalled_journal_test.cpp.

#include "gateway/store/journal_service.hpp"
#include "gateway/store/store.hpp"
#include "support/faulty_vfs.hpp"
#include "support/journal_records.hpp"
#include "support/process.hpp"

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <future>
#include <mutex>
#include <thread>

namespace gateway {
namespace {

using namespace std::chrono_literals;
using store::TxState;
using ::testing::HasSubstr;
using Clock = std::chrono::steady_clock;

using test::answered_in_time;
using test::record;

store::JournalService::Opener opener(const std::string& path, std::atomic<int>* opens = nullptr) {
    return [path, opens] {
        if (opens) ++*opens;
        return std::unique_ptr<store::Journal>(
            store::open_store(config::StoreConfig{"sqlite", path}));
    };
}

// What is on disk, read afresh (after the service is gone).
std::optional<store::TxRecord> on_disk(const std::string& path, const std::string& hash) {
    return store::open_store(config::StoreConfig{"sqlite", path})->find(hash);
}

// Waits (bounded) until `n` operations are queued.
bool wait_queued(const store::JournalService& s, std::size_t n) {
    for (int i = 0; i < 200 && s.queued() < n; ++i) std::this_thread::sleep_for(5ms);
    return s.queued() >= n;
}

// Holds the journal thread inside an operation until released, so that the next operations
// make one batch.
class Holder {
public:
    explicit Holder(store::JournalService& s) {
        thread_ = std::thread([this, &s] {
            try {
                s.run_blocking([this](store::JournalView&) {
                    holding_.set_value();
                    released_.wait();
                });
            } catch (...) {
            }
        });
        holding_.get_future().wait();
    }
    void release() {
        if (!thread_.joinable()) return;
        release_.set_value();
        thread_.join();
    }
    ~Holder() { release(); }

private:
    std::promise<void> holding_, release_;
    std::shared_future<void> released_ = release_.get_future().share();
    std::thread thread_;
};

// On SQLITE_FULL in a statement SQLite rolls the whole transaction back, savepoints and all: the
// operations before the failing one are gone, and one run after it would commit by itself. Each
// caller must be told what is on disk.
TEST(JournalService, ADiskFullInTheMiddleOfAGroupCommitTellsEachCallerWhatIsOnDisk) {
    test::FaultyVfs vfs;
    const std::string path = test::make_temp_dir("journal-full") + "/j.db";
    std::map<std::string, bool> told_kept;
    {
        store::JournalService service(opener(path), {.reopen_after = 10ms});
        service.run_blocking([](store::JournalView& j) { j.insert(record("0x00", 0)); });
        Holder holder(service);
        std::vector<std::thread> callers;
        std::mutex mu;
        const auto call = [&](std::string hash, std::uint64_t nonce, bool fills_the_disk) {
            callers.emplace_back([&, hash, nonce, fills_the_disk] {
                bool kept = true;
                try {
                    service.run_blocking([&](store::JournalView& j) {
                        // Larger than SQLite's page cache: written out mid-statement.
                        if (fills_the_disk) vfs.fail_writes(true);
                        struct Restore {
                            test::FaultyVfs& v;
                            ~Restore() { v.fail_writes(false); }
                        } restore{vfs};
                        j.insert(test::with_raw_size(record(hash, nonce),
                                                     fills_the_disk ? 4'000'000 : 3));
                    });
                } catch (const store::StoreError&) {
                    kept = false;
                }
                std::lock_guard lock(mu);
                told_kept[hash] = kept;
            });
        };
        call("0xaa", 1, false);
        ASSERT_TRUE(wait_queued(service, 1));
        call("0xbb", 2, true);
        ASSERT_TRUE(wait_queued(service, 2));
        call("0xcc", 3, false);
        ASSERT_TRUE(wait_queued(service, 3));
        holder.release();
        for (auto& c : callers) c.join();
        EXPECT_FALSE(told_kept["0xbb"]);
        // The journal is usable again afterwards.
        EXPECT_TRUE(test::insert_once_usable(service, record("0xdd", 4)));
    }
    for (const auto& [hash, kept] : told_kept)
        EXPECT_EQ(on_disk(path, hash).has_value(), kept)
            << hash << (kept ? " was reported kept" : " was reported lost");
    EXPECT_TRUE(on_disk(path, "0x00"));
}

// Runs an operation on another thread: what the caller was told ("kept", or the error), and when.
std::future<std::pair<std::string, Clock::duration>> attempt(
    store::JournalService& s, store::JournalService::Operation op,
    store::JournalService::Operation undo = {}) {
    return std::async(std::launch::async, [&s, op = std::move(op), undo = std::move(undo)] {
        const auto t0 = Clock::now();
        try {
            s.run_blocking(op, undo);
            return std::make_pair(std::string("kept"), Clock::now() - t0);
        } catch (const store::StoreError& e) {
            return std::make_pair(std::string(e.what()), Clock::now() - t0);
        }
    });
}

// A stalled fsync: callers are answered at their deadline. One whose operation never started is
// never run; one whose operation is being committed is taken back by its undo once the commit
// is through, before anything else runs.
TEST(JournalService, AStalledFsyncIsAnsweredInTimeAndALateCommitIsTakenBack) {
    test::FaultyVfs vfs;
    const std::string path = test::make_temp_dir("journal-stall") + "/j.db";
    {
        store::open_store(config::StoreConfig{"sqlite", path})->insert(record("0x00", 0));
        store::JournalService service(opener(path), {.timeout = 500ms});
        struct Release {
            test::FaultyVfs& v;
            ~Release() { v.stall_syncs(false); }  // a failed assertion must not leave it hanging
        } release{vfs};
        vfs.stall_syncs(true);
        auto committing = attempt(
            service, [](store::JournalView& j) { j.insert(record("0xaa", 1)); },
            [](store::JournalView& j) {
                j.update(store::TxUpdate{"0xaa", TxState::failed, "taken back", 2000});
            });
        ASSERT_TRUE(vfs.wait_stalled(2s));
        std::atomic<bool> never_started_ran{false};
        auto queued = attempt(service, [&](store::JournalView&) { never_started_ran = true; });
        for (auto* f : {&committing, &queued}) {
            ASSERT_TRUE(answered_in_time(*f, vfs)) << "no answer in time";
            const auto [outcome, took] = f->get();
            EXPECT_THAT(outcome, HasSubstr("did not answer within 500 ms"));
            EXPECT_LT(took, 1500ms);
        }
        vfs.stall_syncs(false);
        // The next operation runs after the undo (tried again while the late commit, an undo's
        // and a checkpoint still take longer than its deadline, as under valgrind).
        std::optional<store::TxRecord> aa;
        for (int i = 0; i < 10; ++i) {
            try {
                service.run_blocking([&](store::JournalView& j) { aa = j.find("0xaa"); });
                break;
            } catch (const store::StoreError&) {
            }
        }
        EXPECT_FALSE(never_started_ran);
        ASSERT_TRUE(aa) << "committed late";
        EXPECT_EQ(aa->state, TxState::failed);
    }
    EXPECT_EQ(on_disk(path, "0xaa")->state, TxState::failed);
}

// An operation still running at its deadline (its statements use the caller's variables, so the
// caller waits for them) is rolled back: nothing of it is kept.
TEST(JournalService, AnOperationStillRunningAtItsDeadlineIsRolledBack) {
    const std::string path = test::make_temp_dir("journal-slow") + "/j.db";
    store::open_store(
        config::StoreConfig{"sqlite", path});  // created and migrated outside the time
    store::JournalService service(opener(path), {.timeout = 250ms});
    auto slow = attempt(service, [](store::JournalView& j) {
        j.insert(record("0xaa", 1));
        std::this_thread::sleep_for(600ms);
    });
    ASSERT_EQ(slow.wait_for(2s), std::future_status::ready);
    EXPECT_THAT(slow.get().first, HasSubstr("did not answer within 250 ms"));
    std::optional<store::TxRecord> aa;
    service.run_blocking([&](store::JournalView& j) { aa = j.find("0xaa"); });
    EXPECT_FALSE(aa);
}

// A full queue refuses at once instead of making the caller wait for its deadline.
TEST(JournalService, AFullQueueRefusesAtOnce) {
    const std::string path = test::make_temp_dir("journal-queue") + "/j.db";
    store::JournalService service(opener(path), {.timeout = 1500ms, .max_queued = 2});
    service.run_blocking([](store::JournalView&) {});
    Holder holder(service);
    std::vector<std::future<void>> waiting;
    for (int i = 0; i < 2; ++i)
        waiting.push_back(std::async(std::launch::async, [&service, i] {
            service.run_blocking(
                [i](store::JournalView& j) { j.insert(record(fmt::format("0x{:02x}", i), 0)); });
        }));
    ASSERT_TRUE(wait_queued(service, 2));
    const auto t0 = Clock::now();
    try {
        service.run_blocking([](store::JournalView& j) { j.insert(record("0xff", 9)); });
        FAIL() << "a third operation was queued";
    } catch (const store::StoreError& e) {
        EXPECT_THAT(e.what(), HasSubstr("2 journal operations are waiting already"));
    }
    EXPECT_LT(Clock::now() - t0, 200ms);
    EXPECT_EQ(service.queued(), 2u);
    holder.release();
    for (auto& w : waiting) EXPECT_NO_THROW(w.get());
}

// A handle that goes bad at run time (a stale handle on network storage) is closed and the
// journal opened again, with backoff; the event says so.
TEST(JournalService, E3_AJournalThatFailsAtRunTimeIsOpenedAgain) {
    test::FaultyVfs vfs;
    const std::string path = test::make_temp_dir("journal-reopen") + "/j.db";
    std::atomic<int> opens{0};
    std::atomic<int> reopened{0}, down{0};
    store::JournalOptions options{.reopen_after = 20ms};
    options.on_event = [&](store::JournalEvent e) {
        if (e == store::JournalEvent::reopened) ++reopened;
        if (e == store::JournalEvent::down) ++down;
    };
    store::JournalService service(opener(path, &opens), options);
    service.run_blocking([](store::JournalView& j) { j.insert(record("0xaa", 0)); });
    vfs.break_open_files();
    EXPECT_THROW(service.run_blocking([](store::JournalView& j) { j.insert(record("0xbb", 1)); }),
                 store::StoreError);
    EXPECT_EQ(down, 1);
    EXPECT_NE(service.failure(), "");
    bool written = false;
    for (int i = 0; i < 100 && !written; ++i) {
        try {
            service.run_blocking([](store::JournalView& j) { j.insert(record("0xcc", 2)); });
            written = true;
        } catch (const store::StoreError&) {
            std::this_thread::sleep_for(10ms);
        }
    }
    EXPECT_TRUE(written) << service.failure();
    EXPECT_EQ(opens, 2);
    EXPECT_EQ(reopened, 1);
    EXPECT_EQ(service.failure(), "");
    std::optional<store::TxRecord> aa, bb;
    service.run_blocking([&](store::JournalView& j) {
        aa = j.find("0xaa");
        bb = j.find("0xbb");
    });
    EXPECT_TRUE(aa);
    EXPECT_FALSE(bb);
}

// Pruning yields to callers: while they are at work a look deletes a small batch and the next
// waits four times its length; with nobody at work, full batches one after another; a look that
// found less than its limit waits prune_every.
TEST(JournalPruning, YieldsToCallersAtWorkAndRunsFullSpeedWithout) {
    store::JournalOptions o;
    o.prune_every = 60s;
    o.prune_batch = 500;
    o.prune_batch_busy = 50;
    o.prune_busy_pause = 4;
    EXPECT_EQ(store::detail::prune_limit(false, o), 500u);
    EXPECT_EQ(store::detail::prune_limit(true, o), 50u);
    EXPECT_EQ(store::detail::prune_wait(true, false, 3ms, o), Clock::duration::zero());
    EXPECT_EQ(store::detail::prune_wait(true, true, 3ms, o), 12ms);
    EXPECT_EQ(store::detail::prune_wait(false, true, 3ms, o), 60s);
    EXPECT_EQ(store::detail::prune_wait(false, false, 3ms, o), 60s);
    EXPECT_EQ(store::detail::prune_wait(true, true, 30s, o), 60s);  // a stalled commit: capped
    o.prune_batch = 20;  // a busy batch is never larger than the batch
    EXPECT_EQ(store::detail::prune_limit(true, o), 20u);
    o.prune_batch_busy = 0;  // nor empty
    EXPECT_EQ(store::detail::prune_limit(true, o), 1u);
}

// The same at work: a caller that writes every few milliseconds gets its commits while a backlog
// is pruned in small batches only (in the gaps between its writes too: it was served a moment
// ago), and the backlog is still deleted in full.
TEST(JournalPruning, ABacklogIsPrunedInSmallBatchesWhileACallerKeepsWriting) {
    const std::string dir = test::make_temp_dir("journal-prune-busy");
    constexpr std::int64_t kHour = 3'600'000;
    std::atomic<std::int64_t> now{10 * kHour};
    std::mutex mu;
    std::vector<std::size_t> looks;
    store::JournalOptions o;
    o.retention = std::chrono::milliseconds(48 * kHour);
    o.prune_every = 5ms;
    o.prune_batch = 200;
    o.prune_batch_busy = 10;
    o.prune_busy_pause = 1;
    o.unix_now = [&] { return now.load(); };
    o.on_pruned = [&](const store::Pruned& p) {
        std::lock_guard lock(mu);
        looks.push_back(p.transactions);
    };
    store::JournalService service(opener(dir + "/j.db"), o);
    constexpr int kBacklog = 1000;
    service.run_blocking([&](store::JournalView& j) {
        for (int i = 0; i < kBacklog; ++i)
            j.insert(test::raw_tx(fmt::format("0x{:064x}", i), TxState::completed, kHour));
    });
    now = 100 * kHour;  // all of them past retention from here on
    std::atomic<bool> stop{false};
    std::atomic<int> written{0};
    std::atomic<int> failed{0};
    std::thread caller([&] {
        for (int n = 0; !stop; ++n) {
            try {
                service.run_blocking([&, n](store::JournalView& j) {
                    j.insert(
                        test::record(fmt::format("0xnew{}", n), static_cast<std::uint64_t>(n)));
                });
                ++written;
            } catch (const std::exception&) {
                ++failed;
            }
            std::this_thread::sleep_for(2ms);  // gaps in which nobody waits
        }
    });
    for (int i = 0; i < 6000 && service.pruned() < kBacklog; ++i) std::this_thread::sleep_for(10ms);
    stop = true;
    caller.join();
    EXPECT_EQ(service.pruned(), static_cast<std::uint64_t>(kBacklog));
    EXPECT_GT(written.load(), 0);
    EXPECT_EQ(failed.load(), 0);
    std::lock_guard lock(mu);
    ASSERT_FALSE(looks.empty());
    for (std::size_t n : looks) EXPECT_LE(n, 10u) << "a full batch while the caller was at work";
}

TEST(Journal, StateNamesRoundTrip) {
    for (TxState st : {TxState::queued, TxState::preparing, TxState::signing, TxState::broadcasting,
                       TxState::confirming, TxState::completed, TxState::failed,
                       TxState::dead_letter, TxState::cancelled})
        EXPECT_EQ(store::parse_tx_state(store::to_string(st)), st);
    EXPECT_FALSE(store::parse_tx_state("queued"));
    EXPECT_TRUE(store::is_final(TxState::failed));
    EXPECT_FALSE(store::is_final(TxState::confirming));
}

TEST(JournalService, AnUnusableStoreFailsClearlyAndIsUsedOnceItOpens) {
    const std::string dir = test::make_temp_dir("journal-unusable");
    test::write_file(dir + "/data", "a file where the folder should be");
    // Tried again 20 ms after a failure (doubling), not a second: the test waits for the
    // journal to open, not for a time.
    store::JournalService service(
        [&] {
            return std::unique_ptr<store::Journal>(
                store::open_store(config::StoreConfig{"sqlite", dir + "/data/j.db"}));
        },
        {.reopen_after = 20ms, .reopen_max = 40ms});
    try {
        service.run_blocking([](store::JournalView&) {});
        FAIL() << "no error";
    } catch (const store::StoreError& e) {
        EXPECT_THAT(e.what(), HasSubstr(dir + "/data/j.db"));
    }
    EXPECT_THAT(service.failure(), HasSubstr("cannot create the folder"));
    // Refused again while it cannot open (nothing of the operation kept), and used once it can.
    EXPECT_THROW(service.run_blocking([](store::JournalView& j) { j.insert(record("0xaa", 0)); }),
                 store::StoreError);
    std::filesystem::remove(dir + "/data");
    EXPECT_TRUE(test::insert_once_usable(service, record("0xaa", 0)));
    EXPECT_EQ(service.failure(), "");
}

}  // namespace
}  // namespace gateway
