// The journal thread under faults, injected below SQLite (a VFS that fails writes): every caller
// is told the truth about what is on disk.

#include "gateway/store/journal_service.hpp"
#include "gateway/store/store.hpp"
#include "support/faulty_vfs.hpp"
#include "support/process.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <future>
#include <thread>

namespace gateway {
namespace {

using namespace std::chrono_literals;

store::TxRecord record(const std::string& hash, std::uint64_t nonce, std::size_t raw_bytes = 3) {
    store::TxRecord r;
    r.hash = hash;
    r.chain = "devnet";
    r.chain_id = 31337;
    r.sender = "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266";
    r.nonce = nonce;
    r.raw.assign(raw_bytes, 0x02);
    r.reason = "received";
    r.created_ms = r.updated_ms = 1000;
    return r;
}

store::JournalService::Opener opener(const std::string& path) {
    return [path] {
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
                s.run_blocking([this](store::Journal&) {
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
        store::JournalService service(opener(path));
        service.run_blocking([](store::Journal& j) { j.insert(record("0x00", 0)); });
        Holder holder(service);
        std::vector<std::thread> callers;
        std::mutex mu;
        const auto call = [&](std::string hash, std::uint64_t nonce, bool fills_the_disk) {
            callers.emplace_back([&, hash, nonce, fills_the_disk] {
                bool kept = true;
                try {
                    service.run_blocking([&](store::Journal& j) {
                        // Larger than SQLite's page cache: written out mid-statement.
                        if (fills_the_disk) vfs.fail_writes(true);
                        struct Restore {
                            test::FaultyVfs& v;
                            ~Restore() { v.fail_writes(false); }
                        } restore{vfs};
                        j.insert(record(hash, nonce, fills_the_disk ? 4'000'000 : 3));
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
        bool usable = false;
        for (int i = 0; i < 100 && !usable; ++i) {
            try {
                service.run_blocking([](store::Journal& j) { j.insert(record("0xdd", 4)); });
                usable = true;
            } catch (const store::StoreError&) {
                std::this_thread::sleep_for(10ms);
            }
        }
        EXPECT_TRUE(usable);
    }
    for (const auto& [hash, kept] : told_kept)
        EXPECT_EQ(on_disk(path, hash).has_value(), kept)
            << hash << (kept ? " was reported kept" : " was reported lost");
    EXPECT_TRUE(on_disk(path, "0x00"));
}

}  // namespace
}  // namespace gateway
