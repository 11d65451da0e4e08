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
#include <boost/json/parse.hpp>
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

// Where a stream is: a log stream's next block and the blocks it delivered lately (to undo them
// after a reorg), a transaction stream's cursors in the two journals of changes.
struct EventStream::Position {
    std::optional<std::uint64_t> next_block;
    // Ascending by number: {"n": block number, "h": its hash, "events": [{"id", "log"}]}, the last
    // one the checkpoint's block (the block before next_block).
    json::array recent;
    std::int64_t raw = 0;
    std::int64_t managed = 0;

    std::string cursor(config::StreamConfig::Kind kind) const {
        if (kind == config::StreamConfig::Kind::transactions)
            return json::serialize(
                json::object{{"kind", "transactions"}, {"raw", raw}, {"managed", managed}});
        return json::serialize(json::object{{"kind", "logs"}, {"recent", recent}});
    }

    // From the journal's cursor; false when it is not this kind's (the stream starts again).
    bool read(const std::string& text, config::StreamConfig::Kind kind) {
        json::error_code ec;
        const json::value v = json::parse(text, ec);
        const json::object* o = ec ? nullptr : v.if_object();
        if (!o) return text.empty() && kind == config::StreamConfig::Kind::logs;  // schema 11
        const json::value* k = o->if_contains("kind");
        if (kind == config::StreamConfig::Kind::transactions) {
            if (!k || *k != "transactions") return false;
            const json::value* r = o->if_contains("raw");
            const json::value* m = o->if_contains("managed");
            if (!r || !m || !r->is_int64() || !m->is_int64()) return false;
            raw = r->get_int64();
            managed = m->get_int64();
            return true;
        }
        if (!k || *k != "logs") return false;
        if (const json::value* r = o->if_contains("recent"); r && r->is_array())
            recent = r->get_array();
        return true;
    }

    // Forgets the blocks from `from` on (they are sent, and remembered, again).
    void forget_from(std::uint64_t from) {
        json::array below;
        for (auto& b : recent)
            if (b.at("n").to_number<std::uint64_t>() < from) below.push_back(std::move(b));
        recent = std::move(below);
    }

    // Remembers an event sent, under its block (events come in block order).
    void remember(std::uint64_t block, std::string_view hash, const json::value& id,
                  const json::object& log) {
        if (recent.empty() || recent.back().at("n").to_number<std::uint64_t>() != block)
            recent.push_back(
                json::object{{"n", block}, {"h", std::string(hash)}, {"events", json::array{}}});
        recent.back().at("events").as_array().push_back(json::object{{"id", id}, {"log", log}});
    }

    // With `last` (hash `last_hash`) the checkpoint's block: remembers it, and forgets what is
    // too deep to undo. Between the kept ones, only the checkpoint's block and the blocks with
    // events are remembered, at most kRememberedBytes of them, the newest (the checkpoint's block
    // always).
    void trim(std::uint64_t last, const std::string& last_hash) {
        if (recent.empty() || recent.back().at("n").to_number<std::uint64_t>() != last)
            recent.push_back(
                json::object{{"n", last}, {"h", last_hash}, {"events", json::array{}}});
        json::array kept;
        for (auto& b : recent) {
            const auto n = b.at("n").to_number<std::uint64_t>();
            if (n + kRememberedBlocks <= last) continue;
            if (n != last && b.at("events").as_array().empty()) continue;
            kept.push_back(std::move(b));
        }
        std::size_t bytes = 0;
        std::size_t oldest = kept.size();
        while (oldest > 0) {
            bytes += json::serialize(kept[oldest - 1]).size();
            if (bytes > kRememberedBytes && oldest < kept.size()) break;
            --oldest;
        }
        if (oldest > 0)
            kept.erase(kept.begin(), kept.begin() + static_cast<std::ptrdiff_t>(oldest));
        recent = std::move(kept);
    }
};

struct EventStream::Impl {
    explicit Impl(asio::any_io_executor ex) : strand(asio::make_strand(ex)), timer(strand) {}
    asio::strand<asio::any_io_executor> strand;
    asio::steady_timer timer;
    std::atomic<bool> stopped{false};
    std::atomic<bool> finished{false};

    // The strand only.
    bool loaded = false;
    Position position;
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
    std::uint64_t reorgs = 0;
};

EventStream::EventStream(config::StreamConfig config, std::uint64_t chain_id,
                         upstream::Forwarder& pool, store::JournalService& journal,
                         metrics::Metrics* metrics, asio::any_io_executor executor,
                         std::chrono::milliseconds poll_interval, const util::Clock& clock,
                         std::optional<std::string> definition)
    : config_(std::move(config)),
      chain_id_(chain_id),
      pool_(pool),
      journal_(journal),
      metrics_(metrics),
      poll_interval_(poll_interval),
      clock_(clock),
      definition_(std::move(definition)),
      impl_(std::make_shared<Impl>(executor)) {
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
    asio::co_spawn(impl_->strand, run(), [id = config_.id, impl = impl_](std::exception_ptr e) {
        impl->finished = true;  // also when it failed: nothing of it runs any more
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
    asio::post(impl_->strand, [impl = impl_] { impl->timer.cancel(); });
}

bool EventStream::finished() const {
    return impl_->finished;
}

void EventStream::set_state(std::string state, std::string reason) {
    std::lock_guard lock(impl_->mu);
    impl_->state = std::move(state);
    impl_->reason = std::move(reason);
}

namespace {

bool logs_kind(const config::StreamConfig& c) {
    return c.kind == config::StreamConfig::Kind::logs;
}

}  // namespace

json::object EventStream::view() const {
    std::lock_guard lock(impl_->mu);
    json::object o;
    o["id"] = config_.id;
    o["chain"] = config_.chain;
    o["kind"] = logs_kind(config_) ? "logs" : "transactions";
    o["source"] = definition_ ? "api" : "config";
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
    o["reorgsUndone"] = impl_->reorgs;
    o["lastDeliveryAt"] = impl_->last_delivery_ms
                              ? json::value(util::iso_time(impl_->last_delivery_ms))
                              : json::value(nullptr);
    return o;
}

asio::awaitable<bool> EventStream::save(Position position, bool paused) {
    // Stopped (deleted, or the gateway going): nothing more is written, so that a deleted stream's
    // record does not come back. What was not saved is delivered again (at least once).
    if (impl_->stopped) co_return false;
    store::StreamRecord r{config_.id, config_.chain, position.next_block, paused, util::unix_ms()};
    r.cursor = position.cursor(config_.kind);
    r.definition = definition_;
    store::JournalService::Operation op = [&](store::StreamJournal& j) { j.put_stream(r); };
    const auto kept = co_await journal_.run(std::move(op));
    if (!kept) {
        failed("the journal cannot be written: " + kept.error());
        co_return false;
    }
    impl_->position = std::move(position);
    impl_->paused = paused;
    std::lock_guard lock(impl_->mu);
    impl_->shown_next = impl_->position.next_block;
    impl_->shown_paused = paused;
    co_return true;
}

asio::awaitable<bool> EventStream::load() {
    std::optional<store::StreamRecord> found;
    std::pair<std::int64_t, std::int64_t> last{0, 0};
    const bool transactions = !logs_kind(config_);
    store::JournalService::Operation op = [&](store::StreamJournal& j) {
        found = j.find_stream(config_.id);
        if (transactions) last = j.last_changes();
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
    Position position;
    if (found && !found->cursor.empty() && !position.read(found->cursor, config_.kind)) {
        spdlog::warn("stream {}: it followed something else before: it starts again", config_.id);
        found.reset();
        position = Position{};
    }
    // Made through the admin API and not started yet: a transaction stream's start is worked
    // out here.
    if (found && transactions && found->cursor.empty()) found.reset();
    if (found) {
        position.next_block = found->next_block;
        impl_->position = std::move(position);
        impl_->paused = found->paused;
    } else {
        if (transactions) {
            // From now on, or with from_block 0 every change the journal keeps.
            if (!config_.from_block || *config_.from_block != 0) {
                position.raw = last.first;
                position.managed = last.second;
            }
        } else {
            position.next_block = config_.from_block;
        }
        if (!co_await save(std::move(position), false)) co_return false;
    }
    std::lock_guard lock(impl_->mu);
    impl_->shown_next = impl_->position.next_block;
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

void EventStream::delivered(std::size_t events, std::string reason) {
    impl_->failures = 0;
    std::lock_guard lock(impl_->mu);
    impl_->shown_failures = 0;
    if (events > 0) {
        impl_->events += events;
        ++impl_->batches;
        impl_->last_delivery_ms = util::unix_ms();
    }
    impl_->state = "following";
    impl_->reason = std::move(reason);
}

asio::awaitable<void> EventStream::run() {
    while (!impl_->stopped && !impl_->loaded) {
        // On a standby of a shared journal the stream waits: the gateway that owns the journal
        // delivers it, so that deliveries do not multiply, until this one takes over.
        if (journal_.dispatching()) impl_->loaded = co_await load();
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
            const auto& next = impl_->position.next_block;
            if (metrics_ && head && next && *head >= config_.confirmations) {
                const std::uint64_t confirmed = *head - config_.confirmations + 1;
                std::uint64_t lag = 0;
                if (confirmed > *next) lag = confirmed - *next;
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
    if (logs_kind(config_)) co_return co_await step_logs();
    co_return co_await step_transactions();
}

asio::awaitable<bool> EventStream::deliver(json::array events, json::object checkpoint,
                                           std::string what) {
    const std::size_t count = events.size();
    json::object body;
    body["stream"] = config_.id;
    body["chain"] = config_.chain;
    body["chainId"] = chain_id_;
    body["kind"] = logs_kind(config_) ? "logs" : "transactions";
    body["events"] = std::move(events);
    body["checkpoint"] = std::move(checkpoint);
    std::string text = json::serialize(body);
    upstream::PostOptions options;
    options.deadline = Clock::now() + config_.webhook.timeout;
    // Sent again after a failure anyway: the receiver keeps the ids it processed.
    options.idempotent = true;
    options.cancel = impl_->cancel;
    const std::string headers =
        "X-Gateway-Signature: " + signature(config_.webhook.secret, util::unix_ms() / 1000, text) +
        "\r\n";
    options.extra_headers = headers;  // lives in this frame until the post ends
    set_state("delivering", what);
    const upstream::HttpResult res = co_await webhook_->post(std::move(text), options);
    if (!res.ok() || res.status < 200 || res.status > 299) {
        std::string why = res.ok() ? fmt::format("answered HTTP {}", res.status)
                                   : std::string(upstream::to_string(res.error));
        if (metrics_) metrics_->count_stream_delivery(config_.id, "failed");
        failed(fmt::format("the webhook did not acknowledge {}: {}", what, why));
        co_return false;
    }
    if (metrics_) {
        metrics_->count_stream_delivery(config_.id, "acknowledged");
        metrics_->count_stream_events(config_.id, count);
    }
    co_return true;
}

asio::awaitable<std::optional<std::string>> EventStream::block_hash(std::uint64_t number) {
    json::array params;
    params.emplace_back(eth::to_quantity(number));
    params.emplace_back(false);
    upstream::Forwarded got = co_await pool_.forward_at_least(
        "eth_getBlockByNumber", std::move(params), number, Clock::now() + std::chrono::seconds(30));
    const auto result = got.result_json();
    const json::object* block = result ? result->if_object() : nullptr;
    const json::value* hash = block ? block->if_contains("hash") : nullptr;
    if (hash && hash->is_string()) co_return std::string(hash->get_string());
    std::string why = got.failure();
    if (why.empty()) why = "no node has it";
    failed(fmt::format("block {} cannot be read: {}", number, util::utf8_prefix(why, 300)));
    co_return std::nullopt;
}

asio::awaitable<int> EventStream::undo_reorg() {
    json::array& recent = impl_->position.recent;
    const json::object& tip = recent.back().as_object();
    const auto tip_hash = co_await block_hash(tip.at("n").to_number<std::uint64_t>());
    if (!tip_hash) co_return -1;
    if (*tip_hash == tip.at("h").as_string()) co_return 0;

    // Dropped: the blocks from the newest down to the first the chain still has.
    std::size_t keep = 0;
    for (std::size_t i = recent.size() - 1; i-- > 0;) {
        const json::object& b = recent[i].as_object();
        const auto h = co_await block_hash(b.at("n").to_number<std::uint64_t>());
        if (!h) co_return -1;
        if (*h == b.at("h").as_string()) {
            keep = i + 1;
            break;
        }
    }
    // Again from the block after the newest one the chain still has: the blocks between it and
    // the first dropped one had no events, but their replacements may.
    const std::uint64_t dropped_to = tip.at("n").to_number<std::uint64_t>();
    std::uint64_t dropped_from = 0;
    if (keep > 0) {
        dropped_from = recent[keep - 1].at("n").to_number<std::uint64_t>() + 1;
    } else {
        if (dropped_to + 1 > kRememberedBlocks) dropped_from = dropped_to + 1 - kRememberedBlocks;
        dropped_from = std::max(dropped_from, config_.from_block.value_or(0));
        spdlog::warn(
            "stream {}: a reorg replaced every block it remembers, up to {}: from block {} "
            "again (what it sent below the blocks it remembers, if the reorg went that deep, "
            "cannot be undone)",
            config_.id, dropped_to, dropped_from);
    }
    // Undone newest first, as nodes report removed logs: each with an id of its own; a batch at a
    // time (a block's never split), the rest in the rounds after (found dropped again).
    json::array removed;
    std::size_t undone_from = recent.size();
    while (undone_from > keep && removed.size() < config_.batch_size) {
        --undone_from;
        const json::array& events = recent[undone_from].at("events").as_array();
        for (std::size_t e = events.size(); e-- > 0;) {
            const json::object& was = events[e].as_object();
            json::object log = was.at("log").as_object();
            log["removed"] = true;
            json::object undo;
            undo["id"] = std::string(was.at("id").as_string()) + ":removed";
            undo["removed"] = true;
            undo["blockNumber"] = recent[undone_from].at("n");
            undo["log"] = std::move(log);
            removed.push_back(std::move(undo));
        }
    }
    const bool all_undone = undone_from == keep;
    spdlog::warn(
        "stream {}: reorg: blocks {} to {} it sent are no longer the chain's; {} event(s) sent "
        "again as removed{}",
        config_.id, dropped_from, dropped_to, removed.size(),
        all_undone ? fmt::format(", then from block {} again", dropped_from) : ", more to undo");
    const std::size_t count = removed.size();
    if (count > 0) {
        json::object checkpoint;
        checkpoint["fromBlock"] = dropped_from;
        checkpoint["toBlock"] = dropped_to;
        checkpoint["nextBlock"] =
            std::min(impl_->position.next_block.value_or(dropped_from), dropped_from);
        checkpoint["reorg"] = true;
        std::string what = fmt::format("{} removed event(s) of blocks {}-{} (reorg)", count,
                                       dropped_from, dropped_to);
        if (!co_await deliver(std::move(removed), std::move(checkpoint), std::move(what)))
            co_return -1;
    }
    Position back = impl_->position;
    // (What was sent but not acknowledged lies above the checkpoint: it stays where it is.)
    back.next_block = std::min(impl_->position.next_block.value_or(dropped_from), dropped_from);
    json::array kept;
    for (std::size_t i = 0; i < undone_from; ++i) kept.push_back(recent[i]);
    back.recent = std::move(kept);
    if (!co_await save(std::move(back), impl_->paused)) co_return -1;
    if (all_undone) {
        {
            std::lock_guard lock(impl_->mu);
            ++impl_->reorgs;
        }
        if (metrics_) metrics_->count_stream_reorg(config_.id);
    }
    delivered(count,
              all_undone
                  ? fmt::format("reorg undone: blocks {}-{} again", dropped_from, dropped_to)
                  : fmt::format("undoing a reorg of blocks {}-{}", dropped_from, dropped_to));
    co_return 1;
}

asio::awaitable<bool> EventStream::step_logs() {
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
    if (!impl_->position.next_block) {
        // from_block: latest: from the first confirmed block not yet there.
        Position start = impl_->position;
        start.next_block = safe + 1;
        if (!co_await save(std::move(start), impl_->paused)) co_return false;
    }
    // A reorg deeper than the confirmations may have dropped what was delivered.
    if (!impl_->position.recent.empty()) {
        const int undone = co_await undo_reorg();
        if (undone != 0) co_return undone > 0;
    }
    const std::uint64_t from = *impl_->position.next_block;
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
        // Perhaps too much for the node at once: a smaller range next time.
        impl_->span = std::max<std::uint64_t>(1, impl_->span / 2);
        failed(fmt::format("eth_getLogs of blocks {}-{} failed: {}", from, to,
                           util::utf8_prefix(got.failure(), 300)));
        co_return false;
    }

    // A batch ends at a block's end: the first block that takes it to batch_size, or `to`.
    struct Event {
        std::uint64_t block;
        const json::object* log;
        std::string_view hash;
    };
    std::vector<Event> events;
    for (const auto& v : result->get_array()) {
        const json::object* log = v.if_object();
        std::optional<std::uint64_t> block;
        const json::value* hash = log ? log->if_contains("blockHash") : nullptr;
        if (log) block = quantity_at(*log, "blockNumber");
        // Its id is (chain id, block hash, log index): without them two events could share one.
        if (log && (!quantity_at(*log, "logIndex") || !hash || !hash->is_string())) block.reset();
        if (!block || *block < from || *block > to) {
            failed(fmt::format(
                "eth_getLogs of blocks {}-{} answered a log outside them or without its "
                "block hash and log index",
                from, to));
            co_return false;
        }
        events.push_back(Event{*block, log, hash->get_string()});
    }
    std::stable_sort(events.begin(), events.end(),
                     [](const Event& a, const Event& b) { return a.block < b.block; });
    for (std::size_t i = 1; i < events.size(); ++i)
        if (events[i].block == events[i - 1].block && events[i].hash != events[i - 1].hash) {
            // Two versions of one block (a reorg while the node answered): read it again.
            failed(fmt::format("eth_getLogs answered two different blocks {}", events[i].block));
            co_return false;
        }
    std::uint64_t last = to;
    std::size_t count = events.size();
    if (events.size() > config_.batch_size) {
        last = events[config_.batch_size - 1].block;
        count = 0;
        while (count < events.size() && events[count].block <= last) ++count;
    }
    // The checkpoint's block's hash: to see later whether a reorg dropped it.
    std::string last_hash;
    if (count > 0 && events[count - 1].block == last) {
        last_hash = std::string(events[count - 1].hash);
    } else {
        auto h = co_await block_hash(last);
        if (!h) co_return false;
        last_hash = std::move(*h);
    }

    // Remembered from before it is sent: an application may process a batch whose answer is lost,
    // so a reorg must undo what was sent, acknowledged or not. What was sent of this range before
    // (a failed delivery) is replaced by what the range holds now.
    Position next = impl_->position;
    next.forget_from(from);
    json::array list;
    for (std::size_t i = 0; i < count; ++i) {
        const json::object& log = *events[i].log;
        std::string index;
        if (auto parsed = quantity_at(log, "logIndex")) index = std::to_string(*parsed);
        json::object e;
        e["id"] = fmt::format("{}:{}:{}", chain_id_, events[i].hash, index);
        e["removed"] = false;
        e["blockNumber"] = events[i].block;
        e["log"] = log;
        next.remember(events[i].block, events[i].hash, e["id"], log);
        list.push_back(std::move(e));
    }
    next.trim(last, last_hash);

    if (count > 0) {
        if (!co_await save(next, impl_->paused)) co_return false;
        // (Named: GCC 12 cannot copy an initializer list's array into a coroutine's frame.)
        json::object checkpoint;
        checkpoint["fromBlock"] = from;
        checkpoint["toBlock"] = last;
        checkpoint["nextBlock"] = last + 1;
        std::string what = fmt::format("{} event(s) of blocks {}-{}", count, from, last);
        if (!co_await deliver(std::move(list), std::move(checkpoint), std::move(what)))
            co_return false;
    }
    // Acknowledged (or nothing to deliver): the checkpoint moves past the batch.
    next.next_block = last + 1;
    if (!co_await save(std::move(next), impl_->paused)) co_return false;
    impl_->span = std::min<std::uint64_t>(impl_->span * 2, limit);
    delivered(count, fmt::format("delivered up to block {}", last));
    co_return true;
}

asio::awaitable<bool> EventStream::step_transactions() {
    const std::int64_t raw_after = impl_->position.raw;
    const std::int64_t managed_after = impl_->position.managed;
    store::ChangesPage page;
    store::JournalService::Operation op = [&](store::StreamJournal& j) {
        page = j.changes(config_.chain, raw_after, managed_after, config_.batch_size);
    };
    const auto read = co_await journal_.run(std::move(op));
    if (!read) {
        failed("the journal cannot be read: " + read.error());
        co_return false;
    }
    std::vector<store::StateChange>& changes = page.changes;
    if (changes.empty() && page.raw_upto == raw_after && page.managed_upto == managed_after) {
        set_state("following", "up to date");
        co_return false;
    }
    Position next = impl_->position;
    next.raw = page.raw_upto;
    next.managed = page.managed_upto;
    // In the order they happened (each kind is in order already: a transaction's changes too).
    std::stable_sort(changes.begin(), changes.end(),
                     [](const auto& a, const auto& b) { return a.at_ms < b.at_ms; });
    json::array list;
    for (const auto& c : changes) {
        if (!config_.senders.empty() && std::find(config_.senders.begin(), config_.senders.end(),
                                                  c.sender) == config_.senders.end())
            continue;
        json::object e;
        e["id"] = fmt::format("{}:{}:{}", chain_id_, c.tx, c.seq);
        e["transaction"] = c.tx;
        e["managed"] = c.managed;
        e["sender"] = c.sender;
        e["nonce"] = c.nonce ? json::value(*c.nonce) : json::value(nullptr);
        e["state"] = store::to_string(c.state);
        e["reason"] = c.reason;
        e["at"] = util::iso_time(c.at_ms);
        if (c.idempotency_key) e["idempotencyKey"] = *c.idempotency_key;
        list.push_back(std::move(e));
    }
    const std::size_t count = list.size();
    if (count > 0) {
        json::object checkpoint;
        checkpoint["raw"] = next.raw;
        checkpoint["managed"] = next.managed;
        std::string what = fmt::format("{} transaction change(s)", count);
        if (!co_await deliver(std::move(list), std::move(checkpoint), std::move(what)))
            co_return false;
    }
    if (!co_await save(std::move(next), impl_->paused)) co_return false;
    delivered(count, "delivered the changes up to now");
    co_return true;
}

asio::awaitable<StreamAnswer> EventStream::act(std::string action,
                                               std::optional<std::uint64_t> from_block) {
    auto answer = co_await asio::co_spawn(impl_->strand, act_owned(std::move(action), from_block),
                                          asio::use_awaitable);
    co_return answer;
}

asio::awaitable<StreamAnswer> EventStream::act_owned(std::string action,
                                                     std::optional<std::uint64_t> from_block) {
    if (!impl_->loaded)
        co_return StreamAnswer::error(503, "the stream is still loading: try again");
    if (action == "reset" && !logs_kind(config_))
        co_return StreamAnswer::error(409,
                                      "a transaction stream cannot be reset: it has no blocks");
    // A step in flight (on this strand, waiting on I/O) finishes first.
    asio::steady_timer pause(impl_->strand);
    while (impl_->busy) {
        pause.expires_after(std::chrono::milliseconds(5));
        co_await pause.async_wait(use_nothrow);
    }
    if (impl_->stopped) co_return StreamAnswer::error(503, "the stream is stopping");
    impl_->busy = true;
    bool ok = true;
    const auto& next_block = impl_->position.next_block;
    if (action == "pause") {
        ok = co_await save(impl_->position, true);
    } else if (action == "resume") {
        ok = co_await save(impl_->position, false);
        impl_->failures = 0;
        impl_->not_before = {};
    } else if (from_block && next_block && *from_block > *next_block) {
        // Reset delivers again; it never skips what was not acknowledged.
        impl_->busy = false;
        co_return StreamAnswer::error(
            409, fmt::format("reset delivers again from a block at or before the checkpoint "
                             "({}); {} would skip blocks never acknowledged",
                             *next_block, *from_block));
    } else {  // reset
        Position again = impl_->position;
        again.next_block = from_block;
        // What is remembered above it is delivered again (and remembered again).
        again.forget_from(from_block.value_or(0));
        ok = co_await save(std::move(again), impl_->paused);
        impl_->failures = 0;
        impl_->not_before = {};
    }
    impl_->busy = false;
    if (!ok) co_return StreamAnswer::error(503, "the journal cannot be written");
    spdlog::warn("stream {}: {} by an operator{}", config_.id, action,
                 from_block ? fmt::format(" (from block {})", *from_block) : "");
    if (!impl_->paused) set_state("following", action + " by an operator");
    impl_->timer.cancel();
    StreamAnswer a;
    a.body = view();
    co_return a;
}

}  // namespace gateway::streams
