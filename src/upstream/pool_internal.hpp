#pragma once
// Private to src/upstream: what the pool's files share. The pool is split by job: pool.cpp (the
// failover call: attempts, hedging, batches, broadcasts), selection.cpp (ranking upstreams for a
// call, with the score's explanation, and the views of them), health_probes.cpp (the probes
// that keep each upstream's state, head and chain id).

#include "gateway/upstream/pool.hpp"

#include "gateway/util/nothrow.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

namespace gateway::upstream {

namespace asio = boost::asio;
namespace json = boost::json;
using Clock = std::chrono::steady_clock;
using jsonrpc::BlockNeed;
using util::use_nothrow;

struct ChainPool::Prober {
    explicit Prober(asio::any_io_executor ex) : strand(asio::make_strand(ex)), timer(strand) {}
    asio::strand<asio::any_io_executor> strand;
    asio::steady_timer timer;
    std::uint64_t round = 0;
    std::atomic<bool> chain_verified{false};  // written on the strand, read by rank()
    bool syncing = false;
    std::atomic<bool> retired{false};  // removed by a reload: its loop ends
};

struct ChainPool::Member {
    std::shared_ptr<Upstream> upstream;
    std::shared_ptr<Prober> prober;
    // Added (or changed) by a reload: a last resort until a probe verified its chain id, so that
    // a URL pointing at another chain's node serves nothing meanwhile.
    bool joined_later = false;
};

// The attempts of one call in flight: each reports here and wakes the call.
struct ChainPool::Race {
    explicit Race(asio::any_io_executor ex) : wake(ex) {}
    asio::steady_timer wake;
    std::vector<std::pair<Upstream*, Attempt>> finished;
};

struct ChainPool::Staged {
    std::shared_ptr<const Members> before;  // what was in use when it was staged
    std::shared_ptr<Members> after;
    std::vector<Member> added;  // new or changed: probed once in use
};

struct ChainPool::Ranked {
    Upstream* upstream = nullptr;
    std::shared_ptr<Upstream> owner;  // keeps it for the call, through a reload removing it
    UpstreamView view;
    bool normal = false;    // may get calls now (not down, breaker not open, not throttled)
    bool eligible = false;  // can serve the call's block
};

/// Seconds from `t0` to `now` (the caller reads the time: a latency metric reads the real clock).
inline double seconds_since(Clock::time_point t0, Clock::time_point now) {
    return std::chrono::duration<double>(now - t0).count();
}

}  // namespace gateway::upstream
