#pragma once
// An io_context running on a background thread, and a way to await a coroutine from a test.

#include "gateway/util/sole_runner.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>

#include <optional>
#include <thread>

namespace gateway::test {

class IoThread {
public:
    /// `runs_alone`: the thread says it is the loop's only runner (util::SoleRunner), as the
    /// gateway's loop threads do.
    explicit IoThread(bool runs_alone = false)
        : thread_([this, runs_alone] {
              std::optional<util::SoleRunner> alone;
              if (runs_alone) alone.emplace(ioc);
              ioc.run();
          }) {}
    ~IoThread() {
        guard_.reset();
        ioc.stop();
        if (thread_.joinable()) thread_.join();
    }

    /// Lets the io_context run out of work, then joins its thread: whatever ran there happened
    /// before this returns, so objects whose work ran there can then be destroyed on this thread.
    /// Hangs (and the test times out) while something still waits there.
    void finish() {
        guard_.reset();
        if (thread_.joinable()) thread_.join();
    }

    /// Runs the coroutine on the io thread and waits for its result.
    template <class T>
    T run(boost::asio::awaitable<T> a) {
        return boost::asio::co_spawn(ioc, std::move(a), boost::asio::use_future).get();
    }

    boost::asio::io_context ioc;

private:
    std::optional<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> guard_{
        ioc.get_executor()};
    std::thread thread_;
};

}  // namespace gateway::test
