#pragma once
// Runs journal operations on the store's own thread, never on the event loop, and commits
// concurrent callers' operations together (group commit): one fsync for everything that arrived
// while the previous commit was on disk. A coroutine awaits its operation; the operation's
// effects are durable when the await returns.

#include "gateway/store/journal.hpp"

#include <boost/asio/awaitable.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

namespace gateway::store {

class JournalService {
public:
    /// Opens the journal; called on the store thread, again (at most once a second) while it
    /// fails, so a store that was unusable at start is used once it becomes usable.
    using Opener = std::function<std::unique_ptr<Journal>()>;

    explicit JournalService(Opener opener);
    /// Runs what was already queued, then stops the thread.
    ~JournalService();
    JournalService(const JournalService&) = delete;
    JournalService& operator=(const JournalService&) = delete;

    using Operation = std::function<void(Journal&)>;

    /// Runs `op` inside the next group commit and resumes the caller (on its own executor) once
    /// the commit is durable. Rethrows what `op` threw; throws StoreError when the journal cannot
    /// be opened or the commit fails (then nothing of `op` was kept).
    boost::asio::awaitable<void> run(Operation op);
    /// The same, blocking the calling thread (start-up, tests). Not on the event loop.
    void run_blocking(Operation op);

    /// Why the journal is unusable, or "" when the last batch committed.
    std::string failure() const;
    /// Commits made so far, and the operations in them (group commit at work: ops > commits).
    std::uint64_t commits() const { return commits_; }
    std::uint64_t operations() const { return operations_; }
    /// Operations waiting for the journal thread.
    std::size_t queued() const;

private:
    struct Task {
        Operation op;
        std::function<void(std::exception_ptr)> done;
    };
    void enqueue(Task task);
    void loop();
    bool ensure_open();

    Opener opener_;
    std::unique_ptr<Journal> journal_;
    std::chrono::steady_clock::time_point next_open_try_{};
    mutable std::mutex mu_;
    std::condition_variable wake_;
    std::deque<Task> queue_;
    bool stopping_ = false;
    std::string failure_;
    std::atomic<std::uint64_t> commits_{0};
    std::atomic<std::uint64_t> operations_{0};
    std::thread thread_;
};

}  // namespace gateway::store
