#pragma once
// An io_context running on a background thread, and a way to await a coroutine from a test.

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>

#include <optional>
#include <thread>

namespace gateway::test {

class IoThread {
public:
    IoThread() : thread_([this] { ioc.run(); }) {}
    ~IoThread() {
        guard_.reset();
        ioc.stop();
        thread_.join();
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
