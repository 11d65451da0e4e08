#pragma once
// Which event loop this thread runs alone. The gateway gives each of its loops one thread (one
// io_context each, like nginx's workers), and says so here: what runs on such a loop never runs at
// the same time as anything else of that loop, as if it were on a strand, without a strand's cost.

#include <boost/asio/execution_context.hpp>

namespace gateway::util {

namespace detail {
inline thread_local const boost::asio::execution_context* sole_runner_of = nullptr;
}  // namespace detail

/// While it lives, this thread is the only one that runs `loop` (the caller's promise: it runs
/// the loop on this thread and no other thread does).
class SoleRunner {
public:
    explicit SoleRunner(const boost::asio::execution_context& loop)
        : before_(detail::sole_runner_of) {
        detail::sole_runner_of = &loop;
    }
    ~SoleRunner() { detail::sole_runner_of = before_; }
    SoleRunner(const SoleRunner&) = delete;
    SoleRunner& operator=(const SoleRunner&) = delete;

private:
    const boost::asio::execution_context* before_;
};

/// Whether this thread is the only one that runs `loop`.
inline bool runs_alone(const boost::asio::execution_context& loop) {
    return detail::sole_runner_of == &loop;
}

}  // namespace gateway::util
