#pragma once
// Identical reads in flight at the same moment go upstream once: the first caller (the leader)
// forwards the call, and callers that join before it is answered wait for its answer. A caller
// joins only a flight started in the same head generation, so a read made after a write or a new
// head is never answered with what a node said before it. Thread-safe; waiters must run on a
// strand or on a loop one thread runs alone (the connection's).

#include "gateway/upstream/forwarder.hpp"

#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

namespace gateway::cache {

class Coalescer {
public:
    struct Flight;
    struct Joined {
        std::shared_ptr<Flight> flight;
        bool leader = false;  ///< this caller forwards the call and must finish() the flight
    };
    Coalescer();
    ~Coalescer();

    /// Joins the flight for `key` started in `generation`, or starts one (as its leader).
    Joined join(const std::string& key, std::uint64_t generation);
    /// The leader's answer, handed to every caller that joined; the flight is over.
    void finish(const std::shared_ptr<Flight>& flight, const upstream::Forwarded& answer);
    /// A leader that will not finish: the flight is closed without waking anyone (safe while
    /// executors are being torn down); its waiters get "unavailable" at their deadline.
    void abandon(const std::shared_ptr<Flight>& flight);
    /// A leader whose answer is its own, not the flight's (it passed the leader's request's
    /// budget): the flight is over, and its waiters forward the call themselves.
    void give_up(const std::shared_ptr<Flight>& flight);
    /// A joined caller's wait for the leader's answer; unavailable at `deadline`; nullopt when
    /// the leader gave up (the caller forwards the call itself).
    boost::asio::awaitable<std::optional<upstream::Forwarded>> wait(
        std::shared_ptr<Flight> flight, std::chrono::steady_clock::time_point deadline);

    /// Flights not finished yet.
    std::size_t in_flight() const;

private:
    /// Takes the flight out of the table (a newer flight for the same key stays).
    void remove(const std::shared_ptr<Flight>& flight);
    /// Marks the flight done with `answer` (given up when null) and wakes its waiters.
    static void land(const std::shared_ptr<Flight>& flight, const upstream::Forwarded* answer);

    mutable std::mutex mu_;
    std::unordered_map<std::string, std::shared_ptr<Flight>> flights_;
};

}  // namespace gateway::cache
