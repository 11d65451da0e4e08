// The gateway's event streams (see stream_set.hpp): the config's, and those made through the
// admin API, whose definitions the journal keeps.

#include "gateway/streams/stream_set.hpp"

#include "gateway/eth/hex.hpp"
#include "gateway/metrics/metrics.hpp"
#include "gateway/upstream/forwarder.hpp"
#include "gateway/util/nothrow.hpp"
#include "gateway/util/wall_time.hpp"

#include <fmt/format.h>
#include <openssl/rand.h>
#include <spdlog/spdlog.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <algorithm>

namespace gateway::streams {

namespace asio = boost::asio;
namespace json = boost::json;
using util::use_nothrow;

namespace {

// Waits until `stream` has stopped its work (a delivery in flight is cancelled by stop()).
asio::awaitable<void> wait_finished(const EventStream& stream) {
    asio::steady_timer tick(co_await asio::this_coro::executor);
    while (!stream.finished()) {
        tick.expires_after(std::chrono::milliseconds(5));
        co_await tick.async_wait(use_nothrow);
    }
}

}  // namespace

struct StreamSet::Impl {
    explicit Impl(asio::any_io_executor ex) : strand(asio::make_strand(ex)) {}
    // Creations, deletions and the loading of the API's streams, one at a time.
    asio::strand<asio::any_io_executor> strand;
    mutable std::mutex mu;
    std::vector<std::shared_ptr<EventStream>> streams;  // the config's first
    bool stopping = false;
    bool loading = true;          // the API's streams are not loaded yet
    bool loader_running = false;  // load_api_streams has not returned: finished() waits for it
};

StreamSet::StreamSet(const std::vector<config::StreamConfig>& configured, std::vector<Chain> chains,
                     store::JournalService& journal, metrics::Metrics* metrics,
                     asio::any_io_executor executor, const util::Clock& clock)
    : chains_(std::move(chains)),
      journal_(journal),
      metrics_(metrics),
      executor_(executor),
      clock_(clock),
      impl_(std::make_unique<Impl>(executor)) {
    for (const auto& c : configured) {
        auto stream = make(c, std::nullopt);
        if (!stream) throw std::runtime_error("stream " + c.id + ": no chain " + c.chain);
        spdlog::info("stream {}: {} of chain {} to its webhook", c.id,
                     c.kind == config::StreamConfig::Kind::logs ? "logs" : "transactions", c.chain);
        impl_->streams.push_back(std::move(stream));
    }
}

StreamSet::~StreamSet() = default;

std::shared_ptr<EventStream> StreamSet::make(const config::StreamConfig& config,
                                             std::optional<std::string> definition) const {
    for (const auto& chain : chains_)
        if (chain.name == config.chain)
            return std::make_shared<EventStream>(config, chain.chain_id, *chain.pool, journal_,
                                                 metrics_, executor_, chain.poll_interval, clock_,
                                                 std::move(definition));
    return nullptr;
}

void StreamSet::start() {
    {
        std::lock_guard lock(impl_->mu);
        for (auto& s : impl_->streams) s->start();
    }
    {
        std::lock_guard lock(impl_->mu);
        impl_->loader_running = true;
    }
    asio::co_spawn(impl_->strand, load_api_streams(), asio::detached);
}

void StreamSet::stop() {
    std::lock_guard lock(impl_->mu);
    impl_->stopping = true;
    for (auto& s : impl_->streams) s->stop();
}

bool StreamSet::finished() const {
    std::lock_guard lock(impl_->mu);
    return !impl_->loader_running && std::all_of(impl_->streams.begin(), impl_->streams.end(),
                                                 [](const auto& s) { return s->finished(); });
}

std::shared_ptr<EventStream> StreamSet::find(const std::string& id) const {
    std::lock_guard lock(impl_->mu);
    for (const auto& s : impl_->streams)
        if (s->id() == id) return s;
    return nullptr;
}

asio::awaitable<void> StreamSet::load_api_streams() {
    // Told finished() on the way out, however it goes: the set must outlive this coroutine, which
    // sees stop() within a wait (100 ms, or a second after a failed read).
    struct Done {
        Impl& impl;
        ~Done() {
            std::lock_guard lock(impl.mu);
            impl.loader_running = false;
        }
    } done{*impl_};
    asio::steady_timer wait(impl_->strand);
    for (unsigned attempt = 1;; ++attempt) {
        {
            std::lock_guard lock(impl_->mu);
            if (impl_->stopping) co_return;
        }
        // On a standby of a shared journal, loaded once it takes over (the owner's may have
        // changed meanwhile).
        if (!journal_.dispatching()) {
            wait.expires_after(std::chrono::milliseconds(100));
            co_await wait.async_wait(use_nothrow);
            --attempt;
            continue;
        }
        std::vector<store::StreamRecord> kept;
        store::JournalService::Operation op = [&](store::StreamJournal& j) { kept = j.streams(); };
        const auto read = co_await journal_.run(std::move(op));
        if (read) {
            for (const auto& r : kept) {
                if (!r.definition || find(r.id)) continue;
                try {
                    auto stream =
                        make(config::parse_stream_definition(*r.definition), r.definition);
                    if (!stream) {
                        spdlog::error(
                            "stream {} (made through the admin API): its chain {} is "
                            "not in the config: it does not run",
                            r.id, r.chain);
                        continue;
                    }
                    std::lock_guard lock(impl_->mu);
                    if (impl_->stopping) co_return;
                    stream->start();
                    impl_->streams.push_back(std::move(stream));
                    spdlog::info("stream {}: made through the admin API, resumed", r.id);
                } catch (const std::exception& e) {
                    spdlog::error("stream {} (made through the admin API) cannot run: {}", r.id,
                                  e.what());
                }
            }
            std::lock_guard lock(impl_->mu);
            impl_->loading = false;
            co_return;
        }
        spdlog::warn("streams made through the admin API cannot be read yet: {} (try {})",
                     read.error(), attempt);
        wait.expires_after(std::chrono::seconds(1));
        co_await wait.async_wait(use_nothrow);
    }
}

asio::awaitable<StreamAnswer> StreamSet::view() {
    json::array list;
    std::vector<std::string> running;
    bool loading = false;
    {
        std::lock_guard lock(impl_->mu);
        loading = impl_->loading;
        for (const auto& s : impl_->streams) {
            list.push_back(s->view());
            running.push_back(s->id());
        }
    }
    std::vector<store::StreamRecord> kept;
    store::JournalService::Operation op = [&](store::StreamJournal& j) { kept = j.streams(); };
    const auto read = co_await journal_.run(std::move(op));
    if (!read)
        co_return StreamAnswer::error(503,
                                      std::string("the journal cannot be read: ") + read.error());
    for (const auto& r : kept) {
        if (std::find(running.begin(), running.end(), r.id) != running.end()) continue;
        json::object o;
        o["id"] = r.id;
        o["chain"] = r.chain;
        o["source"] = r.definition ? "api" : "config";
        if (r.definition && loading) {
            o["state"] = "starting";
            o["reason"] = "made through the admin API: being loaded";
        } else if (r.definition) {
            o["state"] = "unavailable";
            o["reason"] =
                "made through the admin API, but its chain is not in the config (or "
                "its definition cannot be used): it does not run";
        } else {
            o["state"] = "removed";
            o["reason"] =
                "not in the config any more: paused, its checkpoint kept (back in the config, it "
                "resumes there)";
        }
        o["paused"] = true;
        o["nextBlock"] = r.next_block ? json::value(*r.next_block) : json::value(nullptr);
        list.push_back(std::move(o));
    }
    StreamAnswer a;
    a.body["streams"] = std::move(list);
    co_return a;
}

asio::awaitable<StreamAnswer> StreamSet::act(std::string id, std::string action,
                                             std::optional<std::uint64_t> from_block) {
    if (journal_.standby()) {
        auto refused = not_now();
        if (refused) co_return *refused;
    }
    auto stream = find(id);
    if (!stream) co_return StreamAnswer::error(404, "no stream '" + id.substr(0, 64) + "'");
    co_return co_await stream->act(std::move(action), from_block);
}

asio::awaitable<StreamAnswer> StreamSet::create(std::string definition) {
    auto answer = co_await asio::co_spawn(impl_->strand, create_owned(std::move(definition)),
                                          asio::use_awaitable);
    co_return answer;
}

asio::awaitable<StreamAnswer> StreamSet::remove(std::string id) {
    auto answer =
        co_await asio::co_spawn(impl_->strand, remove_owned(std::move(id)), asio::use_awaitable);
    co_return answer;
}

std::optional<StreamAnswer> StreamSet::not_now() const {
    std::lock_guard lock(impl_->mu);
    if (impl_->stopping) return StreamAnswer::error(503, "the gateway is shutting down");
    if (journal_.standby())
        return StreamAnswer::error(
            503,
            "another gateway owns the shared journal and runs the streams: ask that one (this one "
            "is a standby)");
    if (impl_->loading)
        return StreamAnswer::error(
            503, "the streams made through the admin API are still being loaded: try again");
    return std::nullopt;
}

asio::awaitable<StreamAnswer> StreamSet::create_owned(std::string definition) {
    config::StreamConfig config;
    try {
        config = config::parse_stream_definition(definition);
    } catch (const config::ConfigError& e) {
        co_return StreamAnswer::error(400, e.what());
    }
    if (auto refused = not_now()) co_return *refused;
    {
        std::lock_guard lock(impl_->mu);
        for (const auto& s : impl_->streams) {
            if (s->id() != config.id) continue;
            co_return StreamAnswer::error(
                409, s->from_api() ? "stream '" + config.id + "' exists already"
                                   : "stream '" + config.id +
                                         "' is defined in the config: choose another id");
        }
    }
    // The webhook's secret: the caller's, or one made here and shown this once.
    const bool made_secret = config.webhook.secret.empty();
    if (made_secret) {
        std::uint8_t bytes[32];
        if (RAND_bytes(bytes, sizeof bytes) != 1)
            co_return StreamAnswer::error(503, "no random bytes for the webhook's secret");
        config.webhook.secret = eth::to_hex(std::span<const std::uint8_t>(bytes)).substr(2);
    }
    // Kept as given, with its secret, to be parsed again at the next start.
    json::value kept = json::parse(definition);
    kept.as_object()["webhook"].as_object()["secret"] = config.webhook.secret;
    const std::string text = json::serialize(kept);

    std::shared_ptr<EventStream> stream;
    try {
        stream = make(config, text);
    } catch (const std::exception& e) {
        co_return StreamAnswer::error(400, e.what());
    }
    if (!stream)
        co_return StreamAnswer::error(400, "no chain '" + config.chain + "' in the config");

    bool taken = false;
    bool full = false;
    store::StreamRecord record{config.id, config.chain, std::nullopt, false, util::unix_ms()};
    if (config.kind == config::StreamConfig::Kind::logs) record.next_block = config.from_block;
    record.definition = text;
    // Checked and written in one operation: two creations at once cannot both pass.
    store::JournalService::Operation op = [&](store::StreamJournal& j) {
        taken = j.find_stream(record.id).has_value();
        const auto all = j.streams();
        full = static_cast<std::size_t>(std::count_if(all.begin(), all.end(), [](const auto& r) {
                   return r.definition.has_value();
               })) >= kMaxApiStreams;
        if (!taken && !full) j.put_stream(record);
    };
    // A write whose answer did not come (its caller never saw the secret) is taken back.
    store::JournalService::Operation undo = [id = record.id](store::StreamJournal& j) {
        j.delete_stream(id);
    };
    const auto written = co_await journal_.run(std::move(op), std::move(undo));
    if (!written)
        co_return StreamAnswer::error(
            503, std::string("the journal cannot be written: ") + written.error());
    if (full)
        co_return StreamAnswer::error(
            409, fmt::format("at most {} streams may be made through the admin API "
                             "(the journal's, running or not)",
                             kMaxApiStreams));
    if (taken)
        co_return StreamAnswer::error(409,
                                      "the journal keeps a stream '" + config.id +
                                          "' the config no longer names (its checkpoint): DELETE "
                                          "/admin/streams/" +
                                          config.id + " first, or choose another id");
    {
        std::lock_guard lock(impl_->mu);
        if (impl_->stopping) co_return StreamAnswer::error(503, "the gateway is shutting down");
        stream->start();
        impl_->streams.push_back(stream);
    }
    spdlog::warn("stream {}: made through the admin API ({} of chain {})", config.id,
                 config.kind == config::StreamConfig::Kind::logs ? "logs" : "transactions",
                 config.chain);
    StreamAnswer a;
    a.status = 201;
    a.body["stream"] = stream->view();
    if (made_secret) a.body["secret"] = config.webhook.secret;
    co_return a;
}

asio::awaitable<StreamAnswer> StreamSet::remove_owned(std::string id) {
    // (While loading, the loader could start what is being deleted.)
    if (auto refused = not_now()) co_return *refused;
    std::shared_ptr<EventStream> stream = find(id);
    if (stream && !stream->from_api())
        co_return StreamAnswer::error(
            409, "stream '" + id +
                     "' is defined in the config: remove it there (its checkpoint is "
                     "then kept, paused, until it is deleted here)");
    if (stream) {
        // Stopped before its record goes: a save of its own after the delete would bring it back.
        {
            std::lock_guard lock(impl_->mu);
            std::erase(impl_->streams, stream);
        }
        stream->stop();
        co_await wait_finished(*stream);
    }
    bool found = false;
    store::JournalService::Operation op = [&](store::StreamJournal& j) {
        found = j.delete_stream(id);
    };
    const auto written = co_await journal_.run(std::move(op));
    if (!written) {
        if (stream) {
            // Still in the journal: it goes on (a new follower, from its checkpoint).
            try {
                auto again = make(stream->config(), stream->definition());
                std::lock_guard lock(impl_->mu);
                if (again && !impl_->stopping) {
                    again->start();
                    impl_->streams.push_back(std::move(again));
                }
            } catch (const std::exception&) {
            }
        }
        co_return StreamAnswer::error(
            503, std::string("the journal cannot be written: ") + written.error());
    }
    if (!found && !stream)
        co_return StreamAnswer::error(404, "no stream '" + id.substr(0, 64) + "'");
    if (metrics_) metrics_->forget_stream(id);
    spdlog::warn("stream {}: deleted through the admin API", id);
    StreamAnswer a;
    a.body["deleted"] = id;
    co_return a;
}

}  // namespace gateway::streams
