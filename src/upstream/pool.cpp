#include "gateway/upstream/pool.hpp"

#include "gateway/metrics/metrics.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/parse.hpp>

#include <algorithm>
#include <charconv>
#include <random>

namespace gateway::upstream {

namespace asio = boost::asio;
namespace json = boost::json;
using Clock = std::chrono::steady_clock;
constexpr auto use_nothrow = asio::as_tuple(asio::use_awaitable);

struct ChainPool::Prober {
    explicit Prober(asio::any_io_executor ex) : strand(asio::make_strand(ex)), timer(strand) {}
    asio::strand<asio::any_io_executor> strand;
    asio::steady_timer timer;
};

namespace {

// "0x7a69" -> 31337
std::optional<std::uint64_t> parse_quantity(std::string_view text) {
    if (text.size() < 3 || text.size() > 18 || text[0] != '0' || (text[1] != 'x' && text[1] != 'X'))
        return std::nullopt;
    std::uint64_t value = 0;
    auto [end, ec] = std::from_chars(text.data() + 2, text.data() + text.size(), value, 16);
    if (ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
    return value;
}

double seconds_since(Clock::time_point t0) {
    return std::chrono::duration<double>(Clock::now() - t0).count();
}

// HTTP answers that mean the upstream could not serve the call (another node may), rather than
// an answer to it: rate limits, server errors, and a gateway in front of the node refusing us.
bool status_means_unavailable(unsigned status) {
    return status == 429 || status >= 500 || status == 401 || status == 403 || status == 404;
}

// HTTP answers after which the node certainly did not act on the call. Not 503: a proxy in front
// of a node answers 503 also when the connection broke after the node got the request.
bool status_means_refused(unsigned status) {
    return status == 429 || status == 401 || status == 403 || status == 404;
}

std::string describe_http(const HttpResult& r) {
    if (r.status == 429 && r.retry_after)
        return fmt::format("HTTP 429 (retry after {}s)", r.retry_after->count());
    return fmt::format("HTTP {}", r.status);
}

// What one attempt against one upstream came to. This is the one place where failures are
// classified.
struct Attempt {
    std::optional<jsonrpc::Reply> reply;  ///< the node answered (a result or a JSON-RPC error)
    std::string_view kind;                ///< the failure's metric label; empty on an answer
    std::string detail;                   ///< the failure, for people
    bool maybe_delivered = true;          ///< the node may have acted on the call
    bool node_fault = true;               ///< counts against the node's health
};

Attempt classify(const HttpResult& r, std::uint64_t id) {
    if (!r.ok()) {
        // Slowness and oversized answers belong to the call as much as to the node: the probes
        // (health.timeout_ms) judge slowness, so one heavy call does not take a node down.
        const bool node_fault =
            r.error != TransportError::timeout && r.error != TransportError::response_too_large;
        return {std::nullopt, to_string(r.error), r.detail, r.maybe_delivered, node_fault};
    }
    auto reply = jsonrpc::parse_reply(r.body, id);
    if (r.status != 200 && (status_means_unavailable(r.status) || !reply))
        return {std::nullopt, r.status == 429 ? "http_429" : "http_error", describe_http(r),
                !status_means_refused(r.status), true};
    if (!reply)
        return {std::nullopt, "bad_response", "malformed answer: " + reply.error(), true, true};
    return {std::move(*reply), "", "", true, false};
}

}  // namespace

ChainPool::ChainPool(const config::ChainConfig& config, asio::any_io_executor executor,
                     metrics::Metrics* metrics)
    : config_(config), executor_(std::move(executor)), metrics_(metrics) {
    for (config::Tier tier : {config::Tier::primary, config::Tier::fallback})
        for (const auto& u : config_.upstreams)
            if (u.tier == tier)
                upstreams_.push_back(std::make_unique<Upstream>(
                    config_.name, u, config_.health, make_http_client(executor_, u), metrics_));
    for (std::size_t i = 0; i < upstreams_.size(); ++i)
        probers_.push_back(std::make_unique<Prober>(executor_));
}

ChainPool::~ChainPool() = default;

void ChainPool::start() {
    for (std::size_t i = 0; i < upstreams_.size(); ++i)
        asio::co_spawn(probers_[i]->strand, probe_loop(*upstreams_[i], *probers_[i]),
                       asio::detached);
}

void ChainPool::stop() {
    stopped_ = true;
    for (auto& p : probers_) asio::post(p->strand, [&timer = p->timer] { timer.cancel(); });
}

bool ChainPool::ready() const {
    return std::any_of(upstreams_.begin(), upstreams_.end(), [](const auto& u) { return u->up(); });
}

std::vector<UpstreamStatus> ChainPool::status() const {
    std::vector<UpstreamStatus> out;
    for (const auto& u : upstreams_) out.push_back(u->status());
    return out;
}

asio::awaitable<void> ChainPool::probe_loop(Upstream& upstream, Prober& prober) {
    std::mt19937 rng(std::random_device{}());
    const auto interval = config_.health.interval;
    std::uniform_int_distribution<long> jitter(-interval.count() / 10, interval.count() / 10);
    while (!stopped_) {
        co_await probe(upstream);
        if (stopped_) break;
        prober.timer.expires_after(interval + std::chrono::milliseconds(jitter(rng)));
        co_await prober.timer.async_wait(use_nothrow);
    }
}

asio::awaitable<void> ChainPool::probe(Upstream& upstream) {
    const std::uint64_t id = next_id_++;
    const auto t0 = Clock::now();
    HttpResult r =
        co_await upstream.client().post(jsonrpc::upstream_request(id, "eth_chainId", json::value()),
                                        PostOptions{t0 + config_.health.timeout, true});
    if (!r.ok()) {
        upstream.record_failure(fmt::format("probe: {}", r.detail));
        co_return;
    }
    if (r.status != 200) {
        upstream.record_failure(fmt::format("probe: {}", describe_http(r)));
        co_return;
    }
    auto reply = jsonrpc::parse_reply(r.body, id);
    if (!reply) {
        upstream.record_failure(fmt::format("probe: malformed answer: {}", reply.error()));
        co_return;
    }
    if (reply->is_error()) {
        upstream.record_failure(fmt::format("probe: eth_chainId failed: {}", reply->error.message));
        co_return;
    }
    json::error_code ec;
    json::value v = json::parse(*reply->result, ec);
    std::optional<std::uint64_t> chain_id =
        !ec && v.is_string() ? parse_quantity(v.get_string()) : std::nullopt;
    if (!chain_id) {
        upstream.record_failure("probe: eth_chainId answered something that is not a quantity");
        co_return;
    }
    if (*chain_id != config_.chain_id) {
        upstream.record_wrong_chain(config_.chain_id, *chain_id);
        co_return;
    }
    upstream.record_success();
}

asio::awaitable<Forwarded> ChainPool::forward(std::string_view method, const json::value& params,
                                              bool write, Clock::time_point deadline) {
    Forwarded out;
    std::vector<Upstream*> candidates;
    for (auto& u : upstreams_)
        if (u->usable()) candidates.push_back(u.get());

    if (candidates.empty()) {
        std::string why;
        for (auto& u : upstreams_) {
            auto s = u->status();
            why += fmt::format("{}{}: {} ({})", why.empty() ? "" : "; ", s.id, to_string(s.health),
                               s.reason);
        }
        out.error =
            jsonrpc::Error(jsonrpc::ErrorCode::resource_unavailable,
                           fmt::format("no usable upstream for chain {}: {}", config_.name, why));
        co_return out;
    }

    std::string failures;
    for (Upstream* u : candidates) {
        const auto now = Clock::now();
        if (now >= deadline) break;
        const std::uint64_t id = next_id_++;
        HttpResult r = co_await u->client().post(
            jsonrpc::upstream_request(id, method, params),
            PostOptions{std::min(deadline, now + u->config().timeout), !write});
        Attempt a = classify(r, id);
        if (metrics_) metrics_->observe_upstream(config_.name, u->id(), a.kind, seconds_since(now));

        if (a.reply) {
            u->record_success();
            out.outcome = Forwarded::Outcome::answered;
            out.reply = std::move(*a.reply);
            out.upstream = u->id();
            co_return out;
        }
        if (a.node_fault) u->record_failure(a.detail);
        failures += fmt::format("{}{}: {}", failures.empty() ? "" : "; ", u->id(), a.detail);
        if (write && a.maybe_delivered) {
            // Sending it to another node could execute it twice; only its hash can tell.
            out.outcome = Forwarded::Outcome::uncertain;
            out.error = jsonrpc::Error(
                jsonrpc::ErrorCode::internal_error,
                fmt::format("upstream {} failed after the call was sent ({}); it may have been "
                            "executed, so it was not sent to another node: check (for a "
                            "transaction, by its hash) before sending it again",
                            u->id(), a.detail));
            co_return out;
        }
    }

    if (Clock::now() >= deadline)
        out.error =
            jsonrpc::Error(jsonrpc::ErrorCode::resource_unavailable,
                           fmt::format("no upstream of chain {} answered in time{}{}", config_.name,
                                       failures.empty() ? "" : ": ", failures));
    else
        out.error = jsonrpc::Error(
            jsonrpc::ErrorCode::resource_unavailable,
            fmt::format("every upstream of chain {} failed: {}", config_.name, failures));
    co_return out;
}

}  // namespace gateway::upstream
