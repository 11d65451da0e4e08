#include "gateway/store/journal_service.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <future>
#include <optional>

namespace gateway::store {

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;

// One caller's operation. Its caller and the journal thread both move it along; `mu` orders
// them, so that exactly one of them answers the caller, and an operation is never run after its
// caller was told it failed.
struct JournalService::Task {
    enum class Stage {
        queued,   // waiting for the journal thread
        running,  // `op` runs now, on the journal thread
        ran,      // `op` is in the open transaction, waiting for its commit
        done,     // committed, rolled back, or never to run
    };
    std::mutex mu;
    Stage stage = Stage::queued;
    bool answered = false;  // the caller was resumed: with `ran`, it was told the op failed
    bool expired = false;   // the deadline passed while `op` ran: rolled back when it returns
    Operation op;
    Operation undo;
    std::function<void(std::exception_ptr)> resume;  // posts to the caller
    std::chrono::milliseconds timeout{};             // store.timeout_ms, for late()
    std::function<void(JournalEvent)> on_event;

    /// What the caller is told at its deadline.
    std::exception_ptr late() const {
        return std::make_exception_ptr(StoreError(fmt::format(
            "store: the journal did not answer within {} ms (store.timeout_ms)", timeout.count())));
    }
    /// With `mu` held.
    void answer(std::exception_ptr e) {
        if (answered) return;
        answered = true;
        resume(std::move(e));
    }
    void tell(JournalEvent e) const {
        if (on_event) on_event(e);
    }
    /// The caller's deadline passed. Touches nothing but the task: it may run after the service
    /// is gone (the task was answered by then, so it does nothing).
    void expire() {
        std::lock_guard lock(mu);
        if (answered) return;
        switch (stage) {
            case Stage::queued:
                // Not started: it never will be (the journal thread passes tasks that are done).
                stage = Stage::done;
                op = nullptr;
                undo = nullptr;
                break;
            case Stage::running:
                // Its statements use the caller's variables, so the caller cannot leave yet: the
                // journal thread rolls them back and answers as soon as they return.
                expired = true;
                return;
            case Stage::ran:
                // In the transaction being committed (a stalled fsync): that cannot be stopped.
                // The caller hears now; once the commit is through, `undo` takes it back.
                break;
            case Stage::done: return;
        }
        answer(late());
        tell(JournalEvent::timed_out);
    }
};

JournalService::JournalService(Opener opener, JournalOptions options, const util::Clock& clock)
    : opener_(std::move(opener)), options_(std::move(options)), clock_(clock) {
    thread_ = std::thread([this] { loop(); });
}

JournalService::~JournalService() {
    {
        std::lock_guard lock(mu_);
        stopping_ = true;
    }
    wake_.notify_all();
    thread_.join();
}

JournalService::TaskPtr JournalService::make_task(Operation op, Operation undo) {
    auto task = std::make_shared<Task>();
    task->op = std::move(op);
    task->undo = std::move(undo);
    task->timeout = std::chrono::duration_cast<std::chrono::milliseconds>(options_.timeout);
    task->on_event = options_.on_event;
    return task;
}

void JournalService::emit(JournalEvent event) const {
    if (options_.on_event) options_.on_event(event);
}

void JournalService::enqueue(const TaskPtr& task) {
    std::string refusal;
    bool full = false;
    {
        std::lock_guard lock(mu_);
        if (stopping_) {
            refusal = "store: closed (the gateway is stopping)";
        } else if (queue_.size() >= options_.max_queued) {
            full = true;
            // Refused at once: a queue that outgrows the journal only makes every caller wait
            // until its deadline (and holds memory without bound).
            refusal = fmt::format(
                "store: {} journal operations are waiting already (the journal is slower than "
                "the requests)",
                queue_.size());
        } else {
            queue_.push_back(task);
            wake_.notify_one();
            return;
        }
    }
    std::lock_guard lock(task->mu);
    task->stage = Task::Stage::done;
    task->answer(std::make_exception_ptr(StoreError(refusal)));
    if (full) task->tell(JournalEvent::queue_full);
}

namespace {

JournalService::Committed committed(const std::exception_ptr& error) {
    if (!error) return {};
    // The journal thread caught what `op` or the journal threw; this is where it becomes words.
    try {
        std::rethrow_exception(error);
    } catch (const std::exception& e) {
        return JournalService::Committed(boost::system::in_place_error, e.what());
    } catch (...) {
        return JournalService::Committed(boost::system::in_place_error,
                                         "the journal operation failed");
    }
}

}  // namespace

asio::awaitable<JournalService::Committed> JournalService::run(Operation op, Operation undo) {
    auto task = make_task(std::move(op), std::move(undo));
    // Named, not a temporary in the co_await: GCC 12 destroys those twice (and `task` with them).
    auto initiate = [this, task](auto handler) {
        auto h = std::make_shared<decltype(handler)>(std::move(handler));
        auto ex = asio::get_associated_executor(*h);
        auto timer = std::make_shared<asio::steady_timer>(ex, options_.timeout);
        task->resume = [h, ex, timer](std::exception_ptr e) {
            asio::post(ex, [h, e, timer] {
                timer->cancel();
                std::move (*h)(e);
            });
        };
        timer->async_wait([task](boost::system::error_code ec) {
            if (!ec) task->expire();
        });
        enqueue(task);
    };
    const auto answer =
        co_await asio::async_initiate<const asio::as_tuple_t<asio::use_awaitable_t<>>&,
                                      void(std::exception_ptr)>(
            initiate, asio::as_tuple(asio::use_awaitable));
    co_return committed(std::get<0>(answer));
}

void JournalService::run_blocking(Operation op, Operation undo) {
    auto task = make_task(std::move(op), std::move(undo));
    auto done = std::make_shared<std::promise<void>>();
    auto future = done->get_future();
    task->resume = [done](std::exception_ptr e) {
        if (e)
            done->set_exception(e);
        else
            done->set_value();
    };
    enqueue(task);
    if (future.wait_for(options_.timeout) == std::future_status::timeout) task->expire();
    future.get();  // answered by now, or once its running statements return
}

std::string JournalService::failure() const {
    std::lock_guard lock(mu_);
    return failure_;
}

std::size_t JournalService::queued() const {
    std::lock_guard lock(mu_);
    return queue_.size();
}

void JournalService::set_failure(const std::string& why) {
    std::lock_guard lock(mu_);
    if (failure_ != why) spdlog::error("{}; writes are refused until the journal works", why);
    failure_ = why;
}

bool JournalService::ensure_open() {
    if (journal_) return true;
    if (superseded_) return false;
    // Real steady time, not clock_: next_open_try_ is waited for by wake_.wait_until in loop().
    const auto now = Clock::now();
    if (now < next_open_try_) return false;
    try {
        journal_ = opener_();
    } catch (const std::exception& e) {
        end_standby();
        set_failure(e.what());
        backoff_ =
            std::min(options_.reopen_max, backoff_.count() ? backoff_ * 2 : options_.reopen_after);
        next_open_try_ = now + backoff_;
        if (opened_once_) emit(JournalEvent::reopen_failed);
        return false;
    }
    shared_ = journal_->owner_epoch().has_value();
    if (journal_->owns()) {
        if (!take_over()) return false;
    } else if (epoch_) {
        // It was this gateway's, and another one took it over while this one's session was lost.
        journal_.reset();
        supersede("store: another gateway owns the journal (this gateway owned it before)");
        return false;
    } else {
        // A standby: it journals what it accepts and hands it to the owner, and tries to take
        // over every reopen_after (loop()).
        next_own_try_ = now + options_.reopen_after;
        if (!standby_) {
            spdlog::info(
                "store: another gateway owns the journal and dispatches what it holds; this one "
                "journals what it accepts and hands it over, and takes over when that one's "
                "session ends");
            emit(JournalEvent::standby);
        }
        standby_ = true;
    }
    if (opened_once_) {
        spdlog::warn("store: the journal was opened again after a failure");
        emit(JournalEvent::reopened);
    }
    opened_once_ = true;
    return true;
}

bool JournalService::take_over() {
    const auto epoch = journal_->owner_epoch();
    // One more than this gateway's last: nobody owned it in between. Two more, the one between
    // this process's own (an opening whose answer was lost): nobody else either.
    const bool consecutive = epoch && epoch_ &&
                             (*epoch == *epoch_ + 1 ||
                              (*epoch == *epoch_ + 2 && journal_->last_owner_was_this_process()));
    if (epoch && epoch_ && !consecutive) {
        journal_.reset();  // its lock goes with it, to the gateways that may own it
        supersede(fmt::format(
            "store: another gateway owned the journal while this one's session was lost (owner "
            "number {} after this gateway's {})",
            *epoch, *epoch_));
        return false;
    }
    if (standby_) spdlog::warn("store: this gateway owns the journal now and dispatches it");
    epoch_ = epoch;
    end_standby();
    dispatching_ = true;
    return true;
}

void JournalService::try_own_if_due() {
    if (!journal_ || !standby_) return;
    const auto now = Clock::now();  // real time: loop() waits for it (wait_until)
    if (now < next_own_try_) return;
    next_own_try_ = now + options_.reopen_after;
    try {
        if (journal_->try_own()) take_over();
    } catch (const std::exception& e) {
        fail(e.what());
    }
}

void JournalService::supersede(const std::string& why) {
    superseded_ = true;
    dispatching_ = false;
    end_standby();
    set_failure(why + ": what this gateway holds in memory may be out of date; it must restart");
    emit(JournalEvent::superseded);
}

void JournalService::end_standby() {
    if (!standby_) return;
    standby_ = false;
    emit(JournalEvent::standby_over);
}

void JournalService::fail(const std::string& why) {
    // Whatever went wrong may have left the handle unusable (an I/O error, a stale handle on
    // network storage): it is closed and opened again, after a backoff that doubles while that
    // keeps failing. Until then operations are refused at once. A shared journal's owner tries
    // once at once: its session (and ownership) is gone, and a standby tries every
    // reopen_after, so an owner whose database is still there keeps it rather than lose it to a
    // standby and stop (superseded).
    const bool retry_now = epoch_ && backoff_.count() == 0;
    journal_.reset();
    end_standby();
    set_failure(why);
    backoff_ =
        std::min(options_.reopen_max, backoff_.count() ? backoff_ * 2 : options_.reopen_after);
    next_open_try_ = retry_now ? Clock::now() : Clock::now() + backoff_;  // real time
    if (up_) {
        up_ = false;
        emit(JournalEvent::down);
    }
}

void JournalService::refuse(std::vector<TaskPtr>& tasks, const std::string& why) {
    const auto error = std::make_exception_ptr(StoreError(why));
    for (auto& t : tasks) {
        std::lock_guard lock(t->mu);
        if (t->answered || t->stage == Task::Stage::done) continue;
        t->stage = Task::Stage::done;
        t->answer(error);
        t->tell(JournalEvent::unavailable);
    }
}

bool JournalService::run_undos() {
    if (undos_.empty()) return true;
    try {
        journal_->begin();
        for (auto& undo : undos_) {
            journal_->savepoint();
            try {
                undo(*journal_);
            } catch (const StoreError&) {
                throw;  // the journal failed: all of them are tried again later
            } catch (const std::exception& e) {
                // Its own failure, which trying again will not cure: not worth blocking the
                // journal for.
                spdlog::error("store: taking back an operation failed: {}", e.what());
                journal_->rollback_to_savepoint();
            }
            if (!journal_->in_transaction())
                throw StoreError(
                    "store: the database rolled back the journal's transaction (or lost it with "
                    "its connection)");
            journal_->release_savepoint();
        }
        journal_->commit();
    } catch (const std::exception& e) {
        journal_->rollback();
        fail(e.what());
        return false;
    }
    spdlog::warn("store: {} operation(s) whose callers were told they failed were taken back",
                 undos_.size());
    undos_.clear();
    return true;
}

void JournalService::loop() {
    for (;;) {
        std::vector<TaskPtr> batch;
        {
            std::unique_lock lock(mu_);
            const auto ready = [&] { return stopping_ || !queue_.empty(); };
            // Undos run as soon as the journal can be (re)opened, whether or not work comes; a
            // prune when it is due.
            std::optional<Clock::time_point> until;
            // A closed journal is opened again at its next try whether or not work comes: a
            // standby takes a shared journal over when its owner goes, a gateway that lost its
            // session learns whether another took over, and undos run. Superseded, it never opens
            // again: nothing is due but callers, to be refused.
            if (!journal_ && !superseded_) until = next_open_try_;
            if (options_.retention.count() > 0 && !superseded_) {
                // A closed journal is pruned once it opens again: not before its next try.
                const auto prune_at =
                    journal_ ? next_prune_ : std::max(next_prune_, next_open_try_);
                until = until ? std::min(*until, prune_at) : prune_at;
            }
            if (journal_ && shared_ && options_.ping_every.count() > 0)
                until = until ? std::min(*until, next_ping_) : next_ping_;
            if (journal_ && standby_)
                until = until ? std::min(*until, next_own_try_) : next_own_try_;
            if (until)
                wake_.wait_until(lock, *until, ready);
            else
                wake_.wait(lock, ready);
            if (queue_.empty() && stopping_) {
                lock.unlock();
                // A last try of the undos; without any, nothing to open (a standby that stops must
                // not take the journal on its way out).
                if (!undos_.empty() && ensure_open()) run_undos();
                return;
            }
            batch.assign(queue_.begin(), queue_.end());
            queue_.clear();
        }
        if (!ensure_open()) {
            refuse(batch, failure());
            continue;
        }
        // Operations whose callers were told they failed are taken back before anything else
        // runs: a caller who sends the same again must find them taken back, not the reverse.
        if (!run_undos()) {
            refuse(batch, failure());
            continue;
        }
        if (!batch.empty()) {
            run_batch(batch);
            last_served_ = Clock::now();
            next_ping_ = last_served_ + options_.ping_every;  // it just answered
        }
        prune_if_due();
        ping_if_due();
        try_own_if_due();
    }
}

void JournalService::ping_if_due() {
    if (!journal_ || !shared_ || options_.ping_every.count() <= 0) return;
    const auto now = Clock::now();  // real time: loop() waits for it (wait_until)
    if (now < next_ping_) return;
    next_ping_ = now + options_.ping_every;
    try {
        journal_->begin();
        journal_->commit();
    } catch (const std::exception& e) {
        journal_->rollback();
        fail(e.what());
    }
}

namespace detail {

std::size_t prune_limit(bool busy, const JournalOptions& options) {
    return busy ? std::max<std::size_t>(1, std::min(options.prune_batch, options.prune_batch_busy))
                : options.prune_batch;
}

std::chrono::steady_clock::duration prune_wait(bool more, bool busy,
                                               std::chrono::steady_clock::duration took,
                                               const JournalOptions& options) {
    if (!more) return options.prune_every;
    if (!busy) return std::chrono::steady_clock::duration::zero();
    // No longer than a look's own schedule: one stalled commit does not stop pruning for minutes.
    return std::min<std::chrono::steady_clock::duration>(took * options.prune_busy_pause,
                                                         options.prune_every);
}

}  // namespace detail

void JournalService::prune_if_due() {
    // next_prune_ is real steady time, not clock_: loop() waits for it (wake_.wait_until).
    if (options_.retention.count() == 0 || Clock::now() < next_prune_ || !journal_ ||
        !undos_.empty())
        return;
    const std::int64_t now = options_.unix_now
                                 ? options_.unix_now()
                                 : std::chrono::duration_cast<std::chrono::milliseconds>(
                                       std::chrono::system_clock::now().time_since_epoch())
                                       .count();
    // Callers are at work when some wait or some were served a moment ago.
    const auto busy = [&] {
        if (Clock::now() - last_served_ < options_.prune_busy_window) return true;
        std::lock_guard lock(mu_);
        return !queue_.empty();
    };
    const std::size_t limit = detail::prune_limit(busy(), options_);
    const auto started = Clock::now();
    Pruned pruned;
    try {
        journal_->begin();
        pruned = journal_->prune(now - options_.retention.count(), limit);
        journal_->commit();
    } catch (const std::exception& e) {
        journal_->rollback();
        spdlog::error("store: deleting finished transactions past store.retention_ms failed: {}",
                      e.what());
        fail(e.what());
        next_prune_ = Clock::now() + options_.prune_every;
        return;
    }
    // A full batch: the next one right after the callers waiting now, not a minute later; while
    // callers are at work, after a pause in proportion to this one's length.
    const auto took = Clock::now() - started;
    next_prune_ = Clock::now() + detail::prune_wait(pruned.more, busy(), took, options_);
    if (pruned.transactions || pruned.managed) {
        pruned_ += pruned.transactions + pruned.managed;
        spdlog::debug(
            "store: deleted {} transaction(s) and {} managed transaction(s) finished "
            "before store.retention_ms",
            pruned.transactions, pruned.managed);
        if (options_.on_pruned) options_.on_pruned(pruned);
    }
}

// One database transaction for the whole batch; each operation in a savepoint, so that one
// operation's failure does not undo the others.
void JournalService::run_batch(std::vector<TaskPtr>& batch) {
    using Stage = Task::Stage;
    std::vector<TaskPtr> in_transaction;  // ran, released into the transaction
    std::string lost;                     // why SQLite dropped the whole transaction
    bool committing = false;
    try {
        journal_->begin();
        for (auto& t : batch) {
            {
                std::lock_guard lock(t->mu);
                if (t->stage != Stage::queued) continue;  // given up on before it started
                t->stage = Stage::running;
            }
            journal_->savepoint();
            std::exception_ptr error;
            try {
                t->op(*journal_);
            } catch (...) {
                error = std::current_exception();
            }
            std::unique_lock lock(t->mu);
            if (error || t->expired) {
                lock.unlock();
                journal_->rollback_to_savepoint();
                lock.lock();
                t->stage = Stage::done;
                if (!error) t->tell(JournalEvent::timed_out);
                t->answer(error ? error : t->late());
                // On SQLITE_FULL, SQLITE_IOERR or SQLITE_NOMEM, SQLite may have rolled back the
                // whole transaction: the savepoint is gone with it (the ROLLBACK TO above failed
                // quietly), the operations before this one are undone, and any statement run now
                // would commit by itself. The batch ends here; nobody is told "kept".
                if (!journal_->in_transaction()) {
                    lost = "an operation failed";
                    try {
                        if (error) std::rethrow_exception(error);
                    } catch (const std::exception& e) {
                        lost = e.what();
                    } catch (...) {
                    }
                    break;
                }
                continue;
            }
            t->stage = Stage::ran;
            lock.unlock();
            in_transaction.push_back(t);
            // An operation that caught a database error itself may have gone on outside the
            // transaction: what it wrote since is on disk, and only its undo can take it back.
            if (!journal_->in_transaction()) {
                committing = true;
                throw StoreError(
                    "store: the database rolled back the journal's transaction (or lost it with "
                    "its connection) while an "
                    "operation ran");
            }
            journal_->release_savepoint();
        }
        if (lost.empty()) {
            committing = true;
            const auto began = std::chrono::steady_clock::now();
            journal_->commit();
            if (options_.on_commit) options_.on_commit(std::chrono::steady_clock::now() - began);
        }
    } catch (const std::exception& e) {
        // The transaction (or its commit) failed: nothing of the batch was kept, unless the
        // commit wrote its rows and only their sync failed: then they may be on disk, and the
        // undos of those told otherwise take them back once the journal works again.
        journal_->rollback();
        if (committing)
            for (auto& t : in_transaction) {
                std::lock_guard lock(t->mu);
                if (t->undo) undos_.push_back(std::move(t->undo));
            }
        // On a shared journal the undos may never run here: another gateway can take the
        // journal over first, and carry on what the commit kept. The callers hear that the
        // outcome is not known, never that nothing was kept.
        const std::string why =
            committing && shared_
                ? fmt::format(
                      "{}; the commit's outcome is unknown: it may have been kept (and then "
                      "carried on), so look it up before sending it again, or send it "
                      "again with the same Idempotency-Key",
                      e.what())
                : std::string(e.what());
        fail(why);
        refuse(batch, why);
        return;
    }
    if (!lost.empty()) {
        const std::string why = fmt::format(
            "{}; the database rolled back the journal's transaction (or lost it with its "
            "connection): nothing of the operation was kept",
            lost);
        fail(why);
        refuse(batch, why);
        return;
    }
    // The books first: a caller resumed below may look at them at once.
    ++commits_;
    operations_ += in_transaction.size();
    backoff_ = std::chrono::milliseconds(0);
    {
        std::lock_guard lock(mu_);
        if (!failure_.empty()) spdlog::info("store: usable again");
        failure_.clear();
    }
    if (!up_) {
        up_ = true;
        emit(JournalEvent::up);
    }
    for (auto& t : in_transaction) {
        std::lock_guard lock(t->mu);
        t->stage = Stage::done;
        if (t->answered) {
            // Its caller was told it failed while it was being committed.
            if (t->undo) undos_.push_back(std::move(t->undo));
        } else {
            t->answer(nullptr);
        }
    }
}

}  // namespace gateway::store
