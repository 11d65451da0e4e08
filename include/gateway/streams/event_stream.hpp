#pragma once
// Event streams (catalog rows I1 and I2): a chain's logs that match a filter (or the state changes
// of the gateway's own transactions), followed from a checkpoint and pushed to an application's
// webhook in signed batches. A batch's checkpoint is written to the journal only once the
// application acknowledged it (2xx), so delivery is at least once and never skips: a failing or
// slow handler is retried with backoff, the same batch again, for as long as it takes (I2); after
// a crash the stream resumes from the last acknowledged checkpoint (I1). An application makes
// processing exactly once by keeping the ids it processed. A reorg that drops delivered blocks
// (deeper than the confirmations) has their logs delivered again as removed, with ids of their
// own, then the new canonical ones.

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

    static StreamAnswer error(unsigned status, std::string message) {
        StreamAnswer a;
        a.status = status;
        a.body["error"] = std::move(message);
        return a;
    }
};

/// How many blocks below its checkpoint a log stream remembers what it delivered (block hashes and
/// logs), to undo them after a reorg: a reorg deeper than this (below confirmations, which already
/// keep it from delivering the newest blocks) cannot be undone block by block.
inline constexpr std::uint64_t kRememberedBlocks = 64;
/// And at most this much of their logs (as JSON; the newest blocks kept), since the journal
/// writes it with every batch.
inline constexpr std::size_t kRememberedBytes = 1024 * 1024;

/// One stream's follower: a chain's logs (kind logs) or the state changes of the gateway's own
/// transactions on a chain (kind transactions). Its work runs on its own strand; view() and the
/// admin actions may be called from any thread.
class EventStream {
public:
    /// `pool` is the stream's chain's; everything referenced must outlive the stream. `clock`
    /// times the gateway's own waits (poll, backoff). `definition`: a stream made through the
    /// admin API, its definition as the journal keeps it.
    EventStream(config::StreamConfig config, std::uint64_t chain_id, upstream::Forwarder& pool,
                store::JournalService& journal, metrics::Metrics* metrics,
                boost::asio::any_io_executor executor,
                std::chrono::milliseconds poll_interval = std::chrono::milliseconds(1'000),
                const util::Clock& clock = util::SteadyClock::instance(),
                std::optional<std::string> definition = std::nullopt);
    ~EventStream();

    void start();
    /// Stops following and cancels a delivery in flight; finished() once its work is over (the
    /// stream may go then).
    void stop();
    bool finished() const;
    const std::string& id() const { return config_.id; }
    bool from_api() const { return definition_.has_value(); }
    const config::StreamConfig& config() const { return config_; }
    const std::optional<std::string>& definition() const { return definition_; }

    /// {id, chain, kind, source, state, reason, nextBlock, head, lagBlocks, failures, ...}
    boost::json::object view() const;

    /// pause, resume, or reset (`from_block`: the next block to deliver from, again).
    boost::asio::awaitable<StreamAnswer> act(std::string action,
                                             std::optional<std::uint64_t> from_block);

private:
    struct Position;
    boost::asio::awaitable<void> run();
    boost::asio::awaitable<bool> load();
    /// One batch: read, deliver, checkpoint. False when there was nothing to do or it failed
    /// (the loop waits then).
    boost::asio::awaitable<bool> step();
    boost::asio::awaitable<bool> step_logs();
    boost::asio::awaitable<bool> step_transactions();
    /// Whether the last delivered block is still the chain's; if not, the delivered logs of the
    /// blocks a reorg dropped are delivered again as removed and the checkpoint goes back below
    /// them. 0: no reorg; 1: one was undone; -1: failed.
    boost::asio::awaitable<int> undo_reorg();
    /// The hash of block `number` on a node that has it; nullopt (failed() said why) when none
    /// answered it.
    boost::asio::awaitable<std::optional<std::string>> block_hash(std::uint64_t number);
    /// POSTs one signed batch; true once acknowledged (2xx).
    boost::asio::awaitable<bool> deliver(boost::json::array events, boost::json::object checkpoint,
                                         std::string what);
    boost::asio::awaitable<bool> save(Position position, bool paused);
    boost::asio::awaitable<StreamAnswer> act_owned(std::string action,
                                                   std::optional<std::uint64_t> from_block);
    void failed(std::string why);
    void set_state(std::string state, std::string reason);
    void delivered(std::size_t events, std::string reason);

    config::StreamConfig config_;
    std::uint64_t chain_id_;
    upstream::Forwarder& pool_;
    store::JournalService& journal_;
    metrics::Metrics* metrics_;
    std::chrono::milliseconds poll_interval_;
    const util::Clock& clock_;
    std::optional<std::string> definition_;
    std::unique_ptr<upstream::HttpClient> webhook_;
    struct Impl;
    // Shared with what is posted to its strand, which may run after the stream has gone.
    std::shared_ptr<Impl> impl_;
};

}  // namespace gateway::streams
