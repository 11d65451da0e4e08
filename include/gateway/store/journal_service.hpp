#pragma once
// Runs journal operations on the store's own thread, never on the event loop, and commits
// concurrent callers' operations together (group commit): one fsync for everything that arrived
// while the previous commit was on disk. A coroutine awaits its operation; the operation's
// effects are durable when the await returns. Every wait is bounded (`timeout`), the queue too
// (`max_queued`), and a journal that fails at run time is closed and opened again with backoff:
// the journal fails closed in time, and comes back by itself.

#include "gateway/store/journal.hpp"
#include "gateway/util/clock.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/system/result.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace gateway::store {

/// What the journal tells the rest of the gateway (metrics, logs), from any thread.
enum class JournalEvent {
    timed_out,      ///< an operation was refused: not done within `timeout`
    queue_full,     ///< an operation was refused at once: `max_queued` were waiting
    unavailable,    ///< an operation was refused: the journal is closed or its commit failed
    down,           ///< the journal failed (it will be opened again)
    up,             ///< the journal works again (opened, and a commit went through)
    reopened,       ///< a journal that had failed at run time was opened again
    reopen_failed,  ///< and that failed
    /// Another gateway owns the shared journal (Journal::owns): this one is a standby, which
    /// journals what it accepts and hands it to the owner, and tries to take over every
    /// `reopen_after` (no backoff: taking over soon is the point).
    standby,
    standby_over,  ///< it is no longer one: it owns the journal, or the journal failed
    /// This gateway owned the shared journal, and another one owned it since (it took over while
    /// this one's session was lost): what this gateway holds in memory may be out of date, so the
    /// journal stays closed for good (every operation refused) and the gateway must restart.
    /// Told once.
    superseded,
};

struct JournalOptions {
    /// The longest a caller waits for its operation: queued, run and committed (store.timeout_ms).
    std::chrono::milliseconds timeout{5000};
    /// Operations waiting for the journal thread at most; one more is refused at once.
    std::size_t max_queued = 10000;
    /// After a failure, the journal is opened again this long after, doubling while it fails, up
    /// to `reopen_max`.
    std::chrono::milliseconds reopen_after{1000};
    std::chrono::milliseconds reopen_max{15000};
    /// Told every event, on the thread it happens on (the journal's, or a caller's).
    std::function<void(JournalEvent)> on_event;
    /// Told how long each commit of callers' operations took (the COMMIT with its sync to disk),
    /// on the journal thread.
    std::function<void(std::chrono::nanoseconds)> on_commit;
    /// Finished transactions whose last change is older than this are deleted (store.retention_ms);
    /// 0: none are.
    std::chrono::milliseconds retention{0};
    /// How often the journal thread looks for them, and how many of each kind one look deletes at
    /// most: each look is one short transaction between callers' commits, and a look that found a
    /// full batch is followed by another at once when no caller is at work (see below when some
    /// are).
    std::chrono::milliseconds prune_every{60'000};
    std::size_t prune_batch = 500;
    /// While callers are at work (an operation of any kind, reads included, waits or was served
    /// within prune_busy_window), a look deletes at most this many of each kind, so that no
    /// caller waits long behind one (500 rows of a journal of a million take about 30 ms), and
    /// the next look comes `prune_busy_pause` times its own length later: pruning takes at most a
    /// fifth of the journal thread while callers use it, and all of it while they do not. With a
    /// million in the journal that deletes 1,000 to 1,500 raw transactions a second under load
    /// (BENCHMARKS.md); a writer that keeps the journal busy with more than that grows it until
    /// it pauses.
    std::size_t prune_batch_busy = 50;
    unsigned prune_busy_pause = 4;
    /// Callers count as at work this long after one was served: a write that comes between two
    /// others then does not wait behind a full batch.
    std::chrono::milliseconds prune_busy_window{1000};
    /// Now in Unix milliseconds, what retention counts from (tests move it); the system clock
    /// when unset.
    std::function<std::int64_t()> unix_now;
    /// Told what each look deleted (when it deleted anything), on the journal thread.
    std::function<void(const Pruned&)> on_pruned;
    /// A shared journal (one with an owner_epoch: PostgreSQL's) idle this long is asked whether
    /// its session still lives (an empty transaction), so that a gateway whose session was lost
    /// learns it without waiting for a write: it then closes and opens the journal again, as a
    /// standby, or superseded when another gateway took over meanwhile.
    std::chrono::milliseconds ping_every{1000};
};

namespace detail {
/// How many of each kind one look deletes: prune_batch, or prune_batch_busy while callers are at
/// work.
std::size_t prune_limit(bool busy, const JournalOptions& options);
/// How long after a look that took `took` the next one comes: prune_every when it found less
/// than its limit; else at once when no caller is at work, `prune_busy_pause` times `took` when
/// some are (at most prune_every).
std::chrono::steady_clock::duration prune_wait(bool more, bool busy,
                                               std::chrono::steady_clock::duration took,
                                               const JournalOptions& options);
}  // namespace detail

class JournalService {
public:
    /// Opens the journal; called on the store thread, and again (with backoff) while it fails or
    /// after it failed, so a store that was unusable at start is used once it becomes usable.
    using Opener = std::function<std::unique_ptr<Journal>()>;

    /// `clock` must outlive the service. The reopen backoff and the prune schedule are waited
    /// for on a condition variable, which waits in real steady time: they stay on that clock.
    explicit JournalService(Opener opener, JournalOptions options = {},
                            const util::Clock& clock = util::SteadyClock::instance());
    /// Runs what was already queued, then stops the thread.
    ~JournalService();
    JournalService(const JournalService&) = delete;
    JournalService& operator=(const JournalService&) = delete;

    /// What a caller runs: it reads and writes the journal's data, and never controls the
    /// database transaction (the service does: begin, savepoints, commit) nor prunes.
    using Operation = std::function<void(JournalView&)>;

    /// What run() answers: committed, or why not, in words a log line or a client's error can
    /// carry (nothing of the operation is kept then).
    using Committed = boost::system::result<void, std::string>;

    /// Runs `op` inside the next group commit and resumes the caller (on its own executor) once
    /// the commit is durable. Never throws: it answers why, and nothing of `op` is kept, when
    /// `op` threw, when the journal cannot be opened or the commit fails; at once when
    /// `max_queued` operations wait already; and when `op` is not committed within `timeout`.
    /// Then:
    /// - `op` had not started: it never runs;
    /// - `op` is running: its statements read and write the caller's variables, so the caller
    ///   waits for them (they never sync: SQLite syncs only in the commit) and `op` is rolled
    ///   back;
    /// - `op` ran and waits for its commit (a stalled fsync): the commit cannot be stopped, so
    ///   `undo`, when given, takes back what `op` wrote, on the journal thread, in its own commit
    ///   before any later operation. The same when a commit fails (after a failed fsync the rows
    ///   may still be on disk). `undo` runs after the caller has gone: it must own everything it
    ///   uses. Without `undo` a late commit stays: right for a state change the caller writes
    ///   again after a failure, wrong for a new transaction the client was told was not kept.
    /// Nothing here cancels on the caller's cancellation; the timeout bounds every wait.
    boost::asio::awaitable<Committed> run(Operation op, Operation undo = {});
    /// The same, blocking the calling thread (start-up, tests), and throwing: what `op` threw,
    /// or StoreError. Not on the event loop.
    void run_blocking(Operation op, Operation undo = {});

    /// Whether this gateway dispatches what the journal holds: it owns the journal (always, for a
    /// journal only it opens), and has not been superseded. Set once it first owns it; a journal
    /// that fails and opens again owned keeps it set. From any thread.
    bool dispatching() const { return dispatching_; }
    /// Whether the journal is one several gateways share (PostgreSQL's), as of its last opening.
    bool shared() const { return shared_; }
    /// A shared journal another gateway dispatches: this one takes writes and hands them over.
    bool standby() const { return shared() && !dispatching(); }
    /// Why the journal is unusable, or "" when the last batch committed.
    std::string failure() const;
    /// Commits made so far, and the operations in them (group commit at work: ops > commits).
    std::uint64_t commits() const { return commits_; }
    std::uint64_t operations() const { return operations_; }
    /// Transactions (raw and managed) deleted past retention so far.
    std::uint64_t pruned() const { return pruned_; }
    /// Operations waiting for the journal thread (those given up on count until it passes them).
    std::size_t queued() const;
    const JournalOptions& options() const { return options_; }

private:
    struct Task;
    using TaskPtr = std::shared_ptr<Task>;
    TaskPtr make_task(Operation op, Operation undo);
    void enqueue(const TaskPtr& task);
    void loop();
    bool ensure_open();
    /// The journal failed: closes it and schedules the next open.
    void fail(const std::string& why);
    /// Answers the `tasks` not answered yet: refused with `why`.
    void refuse(std::vector<TaskPtr>& tasks, const std::string& why);
    /// Runs the undos of operations whose callers were told they failed; false when the journal
    /// failed doing so (then they wait for the next try, and nothing else runs before them).
    bool run_undos();
    void run_batch(std::vector<TaskPtr>& batch);
    /// One look for finished transactions past retention, when one is due.
    void prune_if_due();
    /// The ping of a shared journal (ping_every), when one is due.
    void ping_if_due();
    void set_failure(const std::string& why);
    void end_standby();
    /// The opened journal is this gateway's now: checks that nobody else owned it since this one
    /// last did (else supersede(), false), and dispatches.
    bool take_over();
    /// A standby's try to take the journal over, when one is due.
    void try_own_if_due();
    /// Another gateway owned the journal since this one did: closed for good.
    void supersede(const std::string& why);
    void emit(JournalEvent event) const;

    Opener opener_;
    const JournalOptions options_;
    const util::Clock& clock_;
    // Journal thread only.
    std::unique_ptr<Journal> journal_;
    std::chrono::steady_clock::time_point next_open_try_{};
    std::chrono::milliseconds backoff_{0};
    bool opened_once_ = false;
    bool up_ = false;
    bool standby_ = false;
    // The journal's owner_epoch() when this gateway last owned it (unset: never did).
    std::optional<std::uint64_t> epoch_;
    bool superseded_ = false;
    std::chrono::steady_clock::time_point next_own_try_{};
    std::vector<Operation> undos_;
    std::chrono::steady_clock::time_point next_prune_{};
    std::chrono::steady_clock::time_point next_ping_{};
    std::chrono::steady_clock::time_point last_served_{};  // callers' operations last run
    // Shared.
    mutable std::mutex mu_;
    std::condition_variable wake_;
    std::deque<TaskPtr> queue_;
    bool stopping_ = false;
    std::string failure_;
    std::atomic<bool> dispatching_{false};
    // The journal's owner_epoch() is set: several gateways share it (written by the journal
    // thread, read by any).
    std::atomic<bool> shared_{false};
    std::atomic<std::uint64_t> commits_{0};
    std::atomic<std::uint64_t> operations_{0};
    std::atomic<std::uint64_t> pruned_{0};
    std::thread thread_;
};

}  // namespace gateway::store
