#pragma once
// An SQLite VFS that wraps the real one and fails or stalls its I/O on demand, for fault
// injection in the journal's tests: a full disk, a failed fsync, an fsync that hangs (network
// storage), a file handle that went bad (a stale NFS handle). Registered as the default VFS while
// it lives, so a store opened the ordinary way uses it; one at a time.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <future>
#include <mutex>

struct sqlite3_vfs;

namespace gateway::test {

class FaultyVfs {
public:
    FaultyVfs();
    /// Releases a stalled sync and restores the real VFS as the default.
    ~FaultyVfs();
    FaultyVfs(const FaultyVfs&) = delete;
    FaultyVfs& operator=(const FaultyVfs&) = delete;

    /// While set, every write fails with SQLITE_FULL (a full disk).
    void fail_writes(bool on) { fail_writes_ = on; }
    /// The next `n` syncs fail with SQLITE_IOERR_FSYNC.
    void fail_syncs(int n) { fail_syncs_ = n; }
    /// While set, a sync waits (until released or the VFS is gone).
    void stall_syncs(bool on);
    /// Syncs waiting now in a stall.
    int stalled() const { return stalled_; }
    /// Waits until a sync stalls; false after `timeout`.
    bool wait_stalled(std::chrono::milliseconds timeout);
    /// Files open now go bad: every read, write and sync of them fails with SQLITE_IOERR, as a
    /// stale handle would; files opened afterwards work.
    void break_open_files() { ++generation_; }
    /// Files opened so far (a reopened database opens its files again).
    int opens() const { return opens_; }

    // Used by the VFS's C callbacks.
    struct File;
    int write_fault() const;
    int sync_fault();
    bool broken(const File& f) const;
    int generation() const { return generation_; }
    void count_open() { ++opens_; }

private:
    sqlite3_vfs* real_ = nullptr;
    std::atomic<bool> fail_writes_{false};
    std::atomic<int> fail_syncs_{0};
    std::atomic<int> generation_{0};
    std::atomic<int> opens_{0};
    std::atomic<int> stalled_{0};
    mutable std::mutex mu_;
    std::condition_variable cv_;
    bool stall_ = false;
};

/// Waits (bounded, 2 s) for an answer; without one, ends the stall first: the future's destructor
/// waits for its caller.
template <class T>
bool answered_in_time(std::future<T>& f, FaultyVfs& vfs) {
    if (f.wait_for(std::chrono::seconds(2)) == std::future_status::ready) return true;
    vfs.stall_syncs(false);
    return false;
}

}  // namespace gateway::test
