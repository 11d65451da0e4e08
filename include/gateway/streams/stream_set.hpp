#pragma once
// Every event stream of the gateway: those of the config, and those made through the admin API
// (kept in the journal with their definitions, so that they survive restarts). A stream of the
// config cannot be deleted through the API (it would come back with the next start), and an API
// stream cannot take the id of a config stream, nor of a stream the journal still keeps.

#include "gateway/streams/event_stream.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/json/array.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace gateway::streams {

/// The most streams the admin API may make (the config's are not counted).
inline constexpr std::size_t kMaxApiStreams = 64;

class StreamSet {
public:
    /// A chain streams may follow: its pool and how often its streams look again.
    struct Chain {
        std::string name;
        std::uint64_t chain_id = 0;
        upstream::Forwarder* pool = nullptr;
        std::chrono::milliseconds poll_interval{1'000};
    };

    /// Everything referenced must outlive the set. Throws std::runtime_error when a configured
    /// stream cannot be made (its webhook URL).
    StreamSet(const std::vector<config::StreamConfig>& configured, std::vector<Chain> chains,
              store::JournalService& journal, metrics::Metrics* metrics,
              boost::asio::any_io_executor executor,
              const util::Clock& clock = util::SteadyClock::instance());
    ~StreamSet();

    /// Starts the config's streams, then loads and starts those made through the API.
    void start();
    /// Stops every stream; finished() once all their work is over.
    void stop();
    bool finished() const;

    /// GET /admin/streams: every stream, and those the journal keeps that the config no longer
    /// names (paused, their checkpoint kept).
    boost::asio::awaitable<StreamAnswer> view();
    /// POST /admin/streams: makes one from a JSON definition (config::parse_stream_definition);
    /// 201 with its view, and the webhook's secret when the gateway made it (shown this once).
    boost::asio::awaitable<StreamAnswer> create(std::string definition);
    /// DELETE /admin/streams/<id>: an API stream, or the record of one the config no longer names.
    boost::asio::awaitable<StreamAnswer> remove(std::string id);
    /// POST /admin/streams/<id>/pause, resume, reset.
    boost::asio::awaitable<StreamAnswer> act(std::string id, std::string action,
                                             std::optional<std::uint64_t> from_block);

private:
    boost::asio::awaitable<void> load_api_streams();
    boost::asio::awaitable<StreamAnswer> create_owned(std::string definition);
    boost::asio::awaitable<StreamAnswer> remove_owned(std::string id);
    /// A 503 while the set is stopping or still loading the API's streams.
    std::optional<StreamAnswer> not_now() const;
    /// The stream of this id, if it runs.
    std::shared_ptr<EventStream> find(const std::string& id) const;
    /// Makes a stream (throws what its constructor throws); null when its chain is not known.
    std::shared_ptr<EventStream> make(const config::StreamConfig& config,
                                      std::optional<std::string> definition) const;

    std::vector<Chain> chains_;
    store::JournalService& journal_;
    metrics::Metrics* metrics_;
    boost::asio::any_io_executor executor_;
    const util::Clock& clock_;
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace gateway::streams
