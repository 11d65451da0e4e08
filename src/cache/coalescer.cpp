#include "gateway/cache/coalescer.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <utility>
#include <vector>

namespace gateway::cache {

namespace asio = boost::asio;

struct Coalescer::Flight {
    std::string key;
    std::uint64_t generation = 0;
    std::mutex mu;
    bool done = false;
    bool given_up = false;  // done, with no answer for the waiters: they forward themselves
    upstream::Forwarded answer;
    // Each waiter's timer, woken (cancelled) on its own executor when the answer is in.
    std::vector<std::shared_ptr<asio::steady_timer>> waiters;
};

Coalescer::Coalescer() = default;
Coalescer::~Coalescer() = default;

Coalescer::Joined Coalescer::join(const std::string& key, std::uint64_t generation) {
    std::lock_guard lock(mu_);
    auto& slot = flights_[key];
    if (slot && slot->generation == generation) return Joined{slot, false};
    // None in flight, or one from before a new head or a write: it must not answer this call.
    slot = std::make_shared<Flight>();
    slot->key = key;
    slot->generation = generation;
    return Joined{slot, true};
}

void Coalescer::remove(const std::shared_ptr<Flight>& flight) {
    std::lock_guard lock(mu_);
    auto it = flights_.find(flight->key);
    if (it != flights_.end() && it->second == flight) flights_.erase(it);
}

void Coalescer::land(const std::shared_ptr<Flight>& flight, const upstream::Forwarded* answer) {
    std::vector<std::shared_ptr<asio::steady_timer>> waiters;
    {
        std::lock_guard lock(flight->mu);
        flight->done = true;
        flight->given_up = answer == nullptr;
        if (answer) flight->answer = *answer;
        waiters.swap(flight->waiters);
    }
    for (auto& timer : waiters) asio::post(timer->get_executor(), [timer] { timer->cancel(); });
}

void Coalescer::finish(const std::shared_ptr<Flight>& flight, const upstream::Forwarded& answer) {
    remove(flight);
    land(flight, &answer);
}

void Coalescer::give_up(const std::shared_ptr<Flight>& flight) {
    remove(flight);
    land(flight, nullptr);
}

void Coalescer::abandon(const std::shared_ptr<Flight>& flight) {
    remove(flight);
    std::lock_guard lock(flight->mu);
    flight->waiters.clear();  // done stays false: a waiter waking at its deadline gives up
}

asio::awaitable<std::optional<upstream::Forwarded>> Coalescer::wait(
    std::shared_ptr<Flight> flight, std::chrono::steady_clock::time_point deadline) {
    auto timer = std::make_shared<asio::steady_timer>(co_await asio::this_coro::executor, deadline);
    bool done = false;
    {
        std::lock_guard lock(flight->mu);
        done = flight->done;
        if (!done) flight->waiters.push_back(timer);
    }
    // The wake-up is posted to this strand, so it runs after the wait has begun.
    if (!done) co_await timer->async_wait(asio::as_tuple(asio::use_awaitable));
    upstream::Forwarded out;
    {
        std::lock_guard lock(flight->mu);
        done = flight->done;
        if (done && flight->given_up) co_return std::nullopt;
        if (done) out = flight->answer;
    }
    if (!done) {
        out.outcome = upstream::Forwarded::Outcome::unavailable;
        out.error = jsonrpc::Error(jsonrpc::ErrorCode::resource_unavailable,
                                   "no answer in time to the identical call in flight");
    }
    co_return out;
}

std::size_t Coalescer::in_flight() const {
    std::lock_guard lock(mu_);
    return flights_.size();
}

}  // namespace gateway::cache
