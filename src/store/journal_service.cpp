#include "gateway/store/journal_service.hpp"

#include <spdlog/spdlog.h>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <future>

namespace gateway::store {

namespace asio = boost::asio;

namespace {

// What a caller hears when an operation's failure made SQLite drop the whole transaction.
std::string store_lost(const std::exception_ptr& error) {
    std::string why = "an operation failed";
    try {
        std::rethrow_exception(error);
    } catch (const std::exception& e) {
        why = e.what();
    } catch (...) {
    }
    return why +
           "; SQLite rolled back the journal's transaction: nothing of the operation was kept";
}

}  // namespace

JournalService::JournalService(Opener opener) : opener_(std::move(opener)) {
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

void JournalService::enqueue(Task task) {
    {
        std::lock_guard lock(mu_);
        if (!stopping_) {
            queue_.push_back(std::move(task));
            wake_.notify_one();
            return;
        }
    }
    task.done(std::make_exception_ptr(StoreError("store: closed (the gateway is stopping)")));
}

asio::awaitable<void> JournalService::run(Operation op) {
    co_await asio::async_initiate<const asio::use_awaitable_t<>&, void(std::exception_ptr)>(
        [this, &op](auto handler) {
            auto h = std::make_shared<decltype(handler)>(std::move(handler));
            auto ex = asio::get_associated_executor(*h);
            enqueue(Task{std::move(op), [h, ex](std::exception_ptr e) {
                             asio::post(ex, [h, e] { std::move (*h)(e); });
                         }});
        },
        asio::use_awaitable);
}

void JournalService::run_blocking(Operation op) {
    std::promise<void> done;
    auto future = done.get_future();
    enqueue(Task{std::move(op), [&done](std::exception_ptr e) {
                     if (e)
                         done.set_exception(e);
                     else
                         done.set_value();
                 }});
    future.get();
}

std::string JournalService::failure() const {
    std::lock_guard lock(mu_);
    return failure_;
}

std::size_t JournalService::queued() const {
    std::lock_guard lock(mu_);
    return queue_.size();
}

bool JournalService::ensure_open() {
    if (journal_) return true;
    const auto now = std::chrono::steady_clock::now();
    if (now < next_open_try_) return false;
    next_open_try_ = now + std::chrono::seconds(1);
    try {
        journal_ = opener_();
        std::lock_guard lock(mu_);
        if (!failure_.empty()) spdlog::info("store: usable again");
        failure_.clear();
        return true;
    } catch (const std::exception& e) {
        std::lock_guard lock(mu_);
        if (failure_ != e.what()) spdlog::error("{}; writes are refused until it opens", e.what());
        failure_ = e.what();
        return false;
    }
}

void JournalService::loop() {
    for (;;) {
        std::deque<Task> batch;
        {
            std::unique_lock lock(mu_);
            wake_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
            if (queue_.empty()) return;  // stopping, and everything queued was run
            batch.swap(queue_);
        }
        if (!ensure_open()) {
            const auto e = std::make_exception_ptr(StoreError(failure()));
            for (auto& t : batch) t.done(e);
            continue;
        }
        // One database transaction for the whole batch; each operation in a savepoint.
        std::vector<std::exception_ptr> results(batch.size());
        try {
            journal_->begin();
            for (std::size_t i = 0; i < batch.size(); ++i) {
                journal_->savepoint();
                try {
                    batch[i].op(*journal_);
                } catch (...) {
                    results[i] = std::current_exception();
                    journal_->rollback_to_savepoint();
                    // On SQLITE_FULL, SQLITE_IOERR or SQLITE_NOMEM SQLite may have rolled back
                    // the whole transaction: the savepoint is gone with it (the ROLLBACK TO
                    // above failed quietly), the operations before this one are undone, and the
                    // next one's statements would commit by themselves. The batch ends here, and
                    // every caller in it is told that nothing was kept (below), which is true.
                    if (!journal_->in_transaction()) throw StoreError(store_lost(results[i]));
                    continue;
                }
                // An operation that caught a database error itself may have gone on outside the
                // transaction: told "not kept", it may have rows on disk. Not in this code base.
                if (!journal_->in_transaction())
                    throw StoreError(
                        "store: SQLite rolled back the journal's transaction while an operation "
                        "ran");
                journal_->release_savepoint();
            }
            journal_->commit();
            ++commits_;
            operations_ += batch.size();
            std::lock_guard lock(mu_);
            failure_.clear();
        } catch (const std::exception& e) {
            // The transaction (or the commit) failed: nothing of the batch was kept.
            journal_->rollback();
            const std::string why = e.what();
            {
                std::lock_guard lock(mu_);
                if (failure_ != why) spdlog::error("{}: writes are refused while it fails", why);
                failure_ = why;
            }
            const auto err = std::make_exception_ptr(StoreError(why));
            for (auto& r : results) r = err;
        }
        for (std::size_t i = 0; i < batch.size(); ++i) batch[i].done(results[i]);
    }
}

}  // namespace gateway::store
