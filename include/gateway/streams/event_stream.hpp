#pragma once
// Event streams (catalog rows I1 and I2): a chain's logs that match a filter, followed from a
// checkpoint and pushed to an application's webhook in signed batches. A batch's checkpoint is
// written to the journal only once the application acknowledged it (2xx), so delivery is at least
// once and never skips: a failing or slow handler is retried with backoff, the same batch again,
// for as long as it takes (I2); after a crash the stream resumes from the last acknowledged
// checkpoint (I1). An application makes processing exactly once by keeping the ids it processed.

#include "gateway/config/config.hpp"
#include "gateway/store/journal_service.hpp"
#include "gateway/util/clock.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/json/array.hpp>
#include <boost/json/object.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace gateway::metrics {
class Metrics;
}
namespace gateway::upstream {
class Forwarder;
class HttpClient;
}  // namespace gateway::upstream

namespace gateway::streams {

/// The signature header's value for `body` sent at `unix_seconds`:
/// "t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>" keyed with `secret`>".
std::string signature(std::string_view secret, std::int64_t unix_seconds, std::string_view body);

/// An admin action's answer: an HTTP status and its JSON body.
struct StreamAnswer {
    unsigned status = 200;
    boost::json::object body;
};

/// One stream's follower. Its work runs on its own strand; view() and the admin actions may be
/// called from any thread.
class EventStream {
public:
    /// `pool` is the stream's chain's; everything referenced must outlive the stream. `clock`
    /// times the gateway's own waits (poll, backoff).
    EventStream(config::StreamConfig config, std::uint64_t chain_id, upstream::Forwarder& pool,
                store::JournalService& journal, metrics::Metrics* metrics,
                boost::asio::any_io_executor executor,
                std::chrono::milliseconds poll_interval = std::chrono::milliseconds(1'000),
                const util::Clock& clock = util::SteadyClock::instance());
    ~EventStream();

    void start();
    /// Stops following and cancels a delivery in flight; finished() once its work is over (the
    /// stream may go then).
    void stop();
    bool finished() const;
    const std::string& id() const { return config_.id; }

    /// {id, chain, state, reason, nextBlock, head, lagBlocks, failures, delivered, ...}
    boost::json::object view() const;

    /// pause, resume, or reset (`from_block`: the next block to deliver from, again).
    boost::asio::awaitable<StreamAnswer> act(std::string action,
                                             std::optional<std::uint64_t> from_block);

private:
    struct Status;
    boost::asio::awaitable<void> run();
    boost::asio::awaitable<bool> load();
    /// One batch: read, deliver, checkpoint. False when there was nothing to do or it failed
    /// (the loop waits then).
    boost::asio::awaitable<bool> step();
    boost::asio::awaitable<bool> save(std::optional<std::uint64_t> next_block, bool paused);
    boost::asio::awaitable<StreamAnswer> act_owned(std::string action,
                                                   std::optional<std::uint64_t> from_block);
    void failed(std::string why);
    void set_state(std::string state, std::string reason);

    config::StreamConfig config_;
    std::uint64_t chain_id_;
    upstream::Forwarder& pool_;
    store::JournalService& journal_;
    metrics::Metrics* metrics_;
    std::chrono::milliseconds poll_interval_;
    const util::Clock& clock_;
    std::unique_ptr<upstream::HttpClient> webhook_;
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace gateway::streams
