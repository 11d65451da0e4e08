// An event stream's follower (see event_stream.hpp): from its checkpoint to the chain's confirmed
// head, eth_getLogs a range at a time, batches cut at block boundaries, each POSTed signed to the
// webhook and checkpointed once acknowledged.

#include "gateway/streams/event_stream.hpp"

#include "gateway/eth/hex.hpp"
#include "gateway/jsonrpc/methods.hpp"
#include "gateway/metrics/metrics.hpp"
#include "gateway/upstream/forwarder.hpp"
#include "gateway/upstream/http_client.hpp"
#include "gateway/util/backoff.hpp"
#include "gateway/util/nothrow.hpp"
#include "gateway/util/text.hpp"
#include "gateway/util/wall_time.hpp"

#include <fmt/format.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <spdlog/spdlog.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/serialize.hpp>

#include <algorithm>

namespace gateway::streams {

namespace asio = boost::asio;
namespace json = boost::json;
using Clock = std::chrono::steady_clock;
using util::use_nothrow;

std::string signature(std::string_view secret, std::int64_t unix_seconds, std::string_view body) {
    const std::string t = std::to_string(unix_seconds);
    std::string message;
    message.reserve(t.size() + 1 + body.size());
    message.append(t).append(".").append(body);
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int length = 0;
    HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
         reinterpret_cast<const unsigned char*>(message.data()), message.size(), mac, &length);
    return "t=" + t + ",v1=" + eth::to_hex(std::span<const std::uint8_t>(mac, length)).substr(2);
}

namespace {

// A log's field as a quantity ("0x1a"): nullopt when it is missing or not one.
std::optional<std::uint64_t> quantity_at(const json::object& o, std::string_view key) {
    const json::value* v = o.if_contains(key);
    if (!v || !v->is_string()) return std::nullopt;
    return jsonrpc::parse_quantity(v->get_string());
}

}  // namespace

struct EventStream::Impl {
    explicit Impl(asio::any_io_executor ex) : strand(asio::make_strand(ex)), timer(strand) {}
    asio::strand<asio::any_io_executor> strand;
    asio::steady_timer timer;
    std::atomic<bool> stopped{false};
    std::atomic<bool> finished{false};

    // The strand only.
    bool loaded = false;
    std::optional<std::uint64_t> next_block;
    bool paused = false;
    unsigned failures = 0;
    Clock::time_point not_before{};
    bool busy = false;  // a step or an admin action holds the stream
    // Blocks asked for at once: max_blocks (and the nodes' max_logs_range) at most, halved after
    // a failed eth_getLogs (a range too large for a node, too many results), doubled back after.
    std::uint64_t span = 0;
    // Cancels the webhook post in flight when the stream stops.
    std::shared_ptr<upstream::CancelSignal> cancel = std::make_shared<upstream::CancelSignal>();

    // Shared with view(): guarded by mu.
    mutable std::mutex mu;
    std::string state = "starting";
    std::string reason;
    std::optional<std::uint64_t> shown_next;
    std::optional<std::uint64_t> head;
    unsigned shown_failures = 0;
    std::uint64_t events = 0;
    std::uint64_t batches = 0;
    std::int64_t last_delivery_ms = 0;
    bool shown_paused = false;
};

EventStream::EventStream(config::StreamConfig config, std::uint64_t chain_id,
                         upstream::Forwarder& pool, store::JournalService& journal,
                         metrics::Metrics* metrics, asio::any_io_executor executor,
                         std::chrono::milliseconds poll_interval, const util::Clock& clock)
    : config_(std::move(config)),
      chain_id_(chain_id),
      pool_(pool),
      journal_(journal),
      metrics_(metrics),
      poll_interval_(poll_interval),
      clock_(clock),
      impl_(std::make_unique<Impl>(executor)) {
    config::UpstreamConfig cfg;
    cfg.id = "stream-" + config_.id;
    cfg.url = config_.webhook.url;
    cfg.timeout = config_.webhook.timeout;
    cfg.max_idle_connections = 2;
    cfg.max_response_bytes = 1024 * 1024;  // the answer is only read for its status
    try {
        webhook_ = upstream::make_http_client(cfg);
    } catch (const std::exception&) {
        // Never the URL, nor what was wrong with it: it may carry credentials.
        throw std::runtime_error("stream " + config_.id + ": its webhook url cannot be used");
    }
}

EventStream::~EventStream() = default;

void EventStream::start() {
    asio::co_spawn(impl_->strand, run(), [id = config_.id](std::exception_ptr e) {
        if (!e) return;
        try {
            std::rethrow_exception(e);
        } catch (const std::exception& ex) {
            spdlog::critical("stream {}: stopped: {}", id, ex.what());
        }
    });
}

void EventStream::stop() {
    impl_->stopped = true;
    impl_->cancel->cancel();
    asio::post(impl_->strand, [this] { impl_->timer.cancel(); });
}

bool EventStream::finished() const {
    return impl_->finished;
}

void EventStream::set_state(std::string state, std::string reason) {
    std::lock_guard lock(impl_->mu);
    impl_->state = std::move(state);
    impl_->reason = std::move(reason);
}

json::object EventStream::view() const {
    std::lock_guard lock(impl_->mu);
    json::object o;
    o["id"] = config_.id;
    o["chain"] = config_.chain;
    o["kind"] = "logs";
    o["source"] = "config";
    o["state"] = impl_->state;
    o["reason"] = impl_->reason;
    o["paused"] = impl_->shown_paused;
    o["nextBlock"] = impl_->shown_next ? json::value(*impl_->shown_next) : json::value(nullptr);
    o["head"] = impl_->head ? json::value(*impl_->head) : json::value(nullptr);
    // Confirmed blocks not yet acknowledged, as the metric counts them.
    json::value lag = nullptr;
    if (impl_->head && impl_->shown_next) {
        const std::uint64_t confirmed =
            *impl_->head >= config_.confirmations ? *impl_->head - config_.confirmations + 1 : 0;
        lag = confirmed > *impl_->shown_next ? confirmed - *impl_->shown_next : 0;
    }
    o["lagBlocks"] = lag;
    o["confirmations"] = config_.confirmations;
    o["failures"] = impl_->shown_failures;
    o["deliveredEvents"] = impl_->events;
    o["deliveredBatches"] = impl_->batches;
    o["lastDeliveryAt"] = impl_->last_delivery_ms
                              ? json::value(util::iso_time(impl_->last_delivery_ms))
                              : json::value(nullptr);
    return o;
}

asio::awaitable<bool> EventStream::save(std::optional<std::uint64_t> next_block, bool paused) {
    store::StreamRecord r{config_.id, config_.chain, next_block, paused, util::unix_ms()};
    store::JournalService::Operation op = [&](store::StreamJournal& j) { j.put_stream(r); };
    const auto kept = co_await journal_.run(std::move(op));
    if (!kept) {
        failed("the journal cannot be written: " + kept.error());
        co_return false;
    }
    impl_->next_block = next_block;
    impl_->paused = paused;
    std::lock_guard lock(impl_->mu);
    impl_->shown_next = next_block;
    impl_->shown_paused = paused;
    co_return true;
}

asio::awaitable<bool> EventStream::load() {
    std::optional<store::StreamRecord> found;
    store::JournalService::Operation op = [&](store::StreamJournal& j) {
        found = j.find_stream(config_.id);
    };
    const auto read = co_await journal_.run(std::move(op));
    if (!read) {
        failed("the journal cannot be read: " + read.error());
        co_return false;
    }
    if (found && found->chain != config_.chain) {
        // The id now names a stream of another chain: the old checkpoint means nothing there.
        spdlog::warn(
            "stream {}: it followed chain {} before, {} now: it starts again from its "
            "from_block",
            config_.id, found->chain, config_.chain);
        found.reset();
    }
    if (found) {
        impl_->next_block = found->next_block;
        impl_->paused = found->paused;
    } else {
        impl_->next_block = config_.from_block;
        if (!co_await save(impl_->next_block, false)) co_return false;
    }
    std::lock_guard lock(impl_->mu);
    impl_->shown_next = impl_->next_block;
    impl_->shown_paused = impl_->paused;
    co_return true;
}

void EventStream::failed(std::string why) {
    ++impl_->failures;
    const auto delay = util::doubling_backoff(std::chrono::milliseconds(500), impl_->failures, 7,
                                              std::chrono::seconds(60));
    impl_->not_before = clock_.now() + delay;
    spdlog::warn("stream {}: {} (failure {}; trying again in {} ms)", config_.id, why,
                 impl_->failures, delay.count());
    std::lock_guard lock(impl_->mu);
    impl_->state = "retrying";
    impl_->reason =
        fmt::format("{} (failure {}; trying again in {} ms)", why, impl_->failures, delay.count());
    impl_->shown_failures = impl_->failures;
}

asio::awaitable<void> EventStream::run() {
    while (!impl_->stopped && !impl_->loaded) {
        impl_->loaded = co_await load();
        if (impl_->loaded) break;
        impl_->timer.expires_after(poll_interval_);
        co_await impl_->timer.async_wait(use_nothrow);
    }
    while (!impl_->stopped) {
        bool more = false;
        if (!impl_->busy && !impl_->paused && clock_.now() >= impl_->not_before) {
            impl_->busy = true;
            more = co_await step();
            impl_->busy = false;
        } else if (impl_->paused) {
            // Its lag goes on growing meanwhile: shown.
            const auto head = pool_.head();
            {
                std::lock_guard lock(impl_->mu);
                impl_->head = head;
            }
            if (metrics_ && head && impl_->next_block && *head >= config_.confirmations) {
                const std::uint64_t confirmed = *head - config_.confirmations + 1;
                std::uint64_t lag = 0;
                if (confirmed > *impl_->next_block) lag = confirmed - *impl_->next_block;
                metrics_->set_stream_lag(config_.id, static_cast<double>(lag));
            }
            set_state("paused",
                      "paused by an operator (POST /admin/streams/" + config_.id + "/resume)");
        }
        if (more || impl_->stopped) continue;
        impl_->timer.expires_after(poll_interval_);
        co_await impl_->timer.async_wait(use_nothrow);
    }
    impl_->finished = true;
}

asio::awaitable<bool> EventStream::step() {
    const auto head = pool_.head();
    {
        std::lock_guard lock(impl_->mu);
        impl_->head = head;
    }
    if (!head) {
        set_state("waiting", "no upstream of chain " + config_.chain + " knows the head");
        co_return false;
    }
    if (*head < config_.confirmations) {
        set_state("waiting", "the chain is shorter than the confirmations");
        co_return false;
    }
    const std::uint64_t safe = *head - config_.confirmations;
    if (!impl_->next_block) {
        // from_block: latest: from the first confirmed block not yet there.
        if (!co_await save(safe + 1, impl_->paused)) co_return false;
    }
    const std::uint64_t from = *impl_->next_block;
    if (from > safe) {
        set_state("following", fmt::format("up to date: block {} needs {} confirmation(s)", from,
                                           config_.confirmations));
        if (metrics_) metrics_->set_stream_lag(config_.id, 0);
        co_return false;
    }
    if (metrics_) metrics_->set_stream_lag(config_.id, static_cast<double>(safe + 1 - from));
    std::uint64_t limit = config_.max_blocks;
    if (const auto node_limit = pool_.max_logs_range(); node_limit > 0)
        limit = std::min(limit, node_limit);
    if (impl_->span == 0 || impl_->span > limit) impl_->span = limit;
    const std::uint64_t to = std::min(safe, from + impl_->span - 1);

    json::object filter;
    filter["fromBlock"] = eth::to_quantity(from);
    filter["toBlock"] = eth::to_quantity(to);
    if (!config_.addresses.empty()) {
        json::array a;
        for (const auto& address : config_.addresses) a.emplace_back(address);
        filter["address"] = std::move(a);
    }
    if (!config_.topics.empty()) {
        json::array positions;
        for (const auto& any : config_.topics) {
            if (any.empty()) {
                positions.emplace_back(nullptr);
                continue;
            }
            json::array one;
            for (const auto& t : any) one.emplace_back(t);
            positions.emplace_back(std::move(one));
        }
        filter["topics"] = std::move(positions);
    }
    json::array params;
    params.emplace_back(std::move(filter));
    // Only a node that has block `to` may answer: an empty answer from one behind it would read
    // as "no events" and move the checkpoint past events it has not seen.
    upstream::Forwarded got = co_await pool_.forward_at_least(
        "eth_getLogs", std::move(params), to, Clock::now() + std::chrono::seconds(30));
    const auto result = got.result_json();
    if (!result || !result->is_array()) {
        std::string why =
            got.outcome == upstream::Forwarded::Outcome::answered && got.reply.is_error()
                ? got.reply.error.message
                : got.error.message;
        // Perhaps too much for the node at once: a smaller range next time.
        impl_->span = std::max<std::uint64_t>(1, impl_->span / 2);
        failed(fmt::format("eth_getLogs of blocks {}-{} failed: {}", from, to,
                           util::utf8_prefix(why, 300)));
        co_return false;
    }

    // A batch ends at a block's end: the first block that takes it to batch_size, or `to`.
    struct Event {
        std::uint64_t block;
        const json::object* log;
    };
    std::vector<Event> events;
    for (const auto& v : result->get_array()) {
        const json::object* log = v.if_object();
        std::optional<std::uint64_t> block;
        if (log) block = quantity_at(*log, "blockNumber");
        // Its id is (chain id, block hash, log index): without them two events could share one.
        if (log && (!quantity_at(*log, "logIndex") || !log->if_contains("blockHash") ||
                    !log->at("blockHash").is_string()))
            block.reset();
        if (!block || *block < from || *block > to) {
            failed(fmt::format(
                "eth_getLogs of blocks {}-{} answered a log outside them or without its "
                "block hash and log index",
                from, to));
            co_return false;
        }
        events.push_back(Event{*block, log});
    }
    std::stable_sort(events.begin(), events.end(),
                     [](const Event& a, const Event& b) { return a.block < b.block; });
    std::uint64_t last = to;
    std::size_t count = events.size();
    if (events.size() > config_.batch_size) {
        last = events[config_.batch_size - 1].block;
        count = 0;
        while (count < events.size() && events[count].block <= last) ++count;
    }

    if (count > 0) {
        json::array list;
        for (std::size_t i = 0; i < count; ++i) {
            const json::object& log = *events[i].log;
            std::string block_hash;
            std::string index;
            if (const auto* h = log.if_contains("blockHash"); h && h->is_string())
                block_hash = std::string(h->get_string());
            if (auto parsed = quantity_at(log, "logIndex")) index = std::to_string(*parsed);
            json::object e;
            e["id"] = fmt::format("{}:{}:{}", chain_id_, block_hash, index);
            e["removed"] = false;
            e["blockNumber"] = events[i].block;
            e["log"] = log;
            list.push_back(std::move(e));
        }
        json::object body;
        body["stream"] = config_.id;
        body["chain"] = config_.chain;
        body["chainId"] = chain_id_;
        body["events"] = std::move(list);
        body["checkpoint"] =
            json::object{{"fromBlock", from}, {"toBlock", last}, {"nextBlock", last + 1}};
        std::string text = json::serialize(body);
        upstream::PostOptions options;
        options.deadline = Clock::now() + config_.webhook.timeout;
        // Sent again after a failure anyway: the receiver keeps the ids it processed.
        options.idempotent = true;
        options.cancel = impl_->cancel;
        const std::string headers =
            "X-Gateway-Signature: " +
            signature(config_.webhook.secret, util::unix_ms() / 1000, text) + "\r\n";
        options.extra_headers = headers;  // lives in this frame until the post ends
        set_state("delivering", fmt::format("{} event(s) of blocks {}-{}", count, from, last));
        const upstream::HttpResult res = co_await webhook_->post(std::move(text), options);
        if (!res.ok() || res.status < 200 || res.status > 299) {
            std::string why = res.ok() ? fmt::format("answered HTTP {}", res.status)
                                       : std::string(upstream::to_string(res.error));
            if (metrics_) metrics_->count_stream_delivery(config_.id, "failed");
            failed(fmt::format("the webhook did not acknowledge {} event(s) of blocks {}-{}: {}",
                               count, from, last, why));
            co_return false;
        }
        if (metrics_) {
            metrics_->count_stream_delivery(config_.id, "acknowledged");
            metrics_->count_stream_events(config_.id, count);
        }
    }
    // Acknowledged (or nothing to deliver): the checkpoint moves past the batch.
    if (!co_await save(last + 1, impl_->paused)) co_return false;
    impl_->failures = 0;
    impl_->span = std::min<std::uint64_t>(impl_->span * 2, limit);
    {
        std::lock_guard lock(impl_->mu);
        impl_->shown_failures = 0;
        if (count > 0) {
            impl_->events += count;
            ++impl_->batches;
            impl_->last_delivery_ms = util::unix_ms();
        }
        impl_->state = "following";
        impl_->reason = fmt::format("delivered up to block {}", last);
    }
    co_return true;
}

asio::awaitable<StreamAnswer> EventStream::act(std::string action,
                                               std::optional<std::uint64_t> from_block) {
    auto answer = co_await asio::co_spawn(impl_->strand, act_owned(std::move(action), from_block),
                                          asio::use_awaitable);
    co_return answer;
}

namespace {

StreamAnswer answer_error(unsigned status, std::string message) {
    StreamAnswer a;
    a.status = status;
    a.body["error"] = std::move(message);
    return a;
}

}  // namespace

asio::awaitable<StreamAnswer> EventStream::act_owned(std::string action,
                                                     std::optional<std::uint64_t> from_block) {
    if (!impl_->loaded) co_return answer_error(503, "the stream is still loading: try again");
    // A step in flight (on this strand, waiting on I/O) finishes first.
    asio::steady_timer pause(impl_->strand);
    while (impl_->busy) {
        pause.expires_after(std::chrono::milliseconds(5));
        co_await pause.async_wait(use_nothrow);
    }
    impl_->busy = true;
    bool ok = true;
    if (action == "pause") {
        ok = co_await save(impl_->next_block, true);
    } else if (action == "resume") {
        ok = co_await save(impl_->next_block, false);
        impl_->failures = 0;
        impl_->not_before = {};
    } else if (from_block && impl_->next_block && *from_block > *impl_->next_block) {
        // Reset delivers again; it never skips what was not acknowledged.
        impl_->busy = false;
        co_return answer_error(
            409, fmt::format("reset delivers again from a block at or before the checkpoint "
                             "({}); {} would skip blocks never acknowledged",
                             *impl_->next_block, *from_block));
    } else {  // reset
        ok = co_await save(from_block, impl_->paused);
        impl_->failures = 0;
        impl_->not_before = {};
    }
    impl_->busy = false;
    if (!ok) co_return answer_error(503, "the journal cannot be written");
    spdlog::warn("stream {}: {} by an operator{}", config_.id, action,
                 from_block ? fmt::format(" (from block {})", *from_block) : "");
    if (!impl_->paused) set_state("following", action + " by an operator");
    impl_->timer.cancel();
    StreamAnswer a;
    a.body = view();
    co_return a;
}

}  // namespace gateway::streams
