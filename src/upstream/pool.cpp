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

// Whether an HTTP status says the upstream itself could not serve the call (try another node),
// rather than answering it.
bool status_means_unavailable(unsigned status) {
    return status == 429 || status >= 500 || status == 401 || status == 403 || status == 404;
}

// For a write: HTTP answers after which the node certainly did not take the transaction.
bool status_means_not_taken(unsigned status) {
    return status == 429 || status == 503 || status == 401 || status == 403 || status == 404;
}

std::string describe_http(const HttpResult& r) {
    if (r.status == 429 && r.retry_after)
        return fmt::format("HTTP 429 (retry after {}s)", r.retry_after->count());
    return fmt::format("HTTP {}", r.status);
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

    std::string body;
    std::string failures;
    auto note = [&](const Upstream& u, std::string_view what) {
        failures += fmt::format("{}{}: {}", failures.empty() ? "" : "; ", u.id(), what);
    };
    for (Upstream* u : candidates) {
        const auto now = Clock::now();
        if (now >= deadline) break;
        const std::uint64_t id = next_id_++;
        body = jsonrpc::upstream_request(id, method, params);
        HttpResult r = co_await u->client().post(
            body, PostOptions{std::min(deadline, now + u->config().timeout), !write});

        if (!r.ok()) {
            if (metrics_)
                metrics_->observe_upstream(config_.name, u->id(), to_string(r.error),
                                           seconds_since(now));
            u->record_failure(r.detail);
            note(*u, r.detail);
            if (write && r.maybe_delivered) {
                out.error =
                    jsonrpc::Error(jsonrpc::ErrorCode::internal_error,
                                   fmt::format("upstream {} failed after the transaction was sent "
                                               "({}); it may have reached the network, "
                                               "so it was not re-sent to another node: check by "
                                               "hash before sending it again",
                                               u->id(), r.detail));
                co_return out;
            }
            continue;
        }

        auto reply = jsonrpc::parse_reply(r.body, id);
        if (r.status != 200 && (status_means_unavailable(r.status) || !reply)) {
            if (metrics_)
                metrics_->observe_upstream(config_.name, u->id(),
                                           r.status == 429 ? "http_429" : "http_error",
                                           seconds_since(now));
            u->record_failure(describe_http(r));
            note(*u, describe_http(r));
            if (write && !status_means_not_taken(r.status)) {
                out.error = jsonrpc::Error(
                    jsonrpc::ErrorCode::internal_error,
                    fmt::format(
                        "upstream {} answered {} to the transaction; it may have reached the "
                        "network, so it was "
                        "not re-sent to another node: check by hash before sending it again",
                        u->id(), describe_http(r)));
                co_return out;
            }
            continue;
        }
        if (!reply) {
            if (metrics_)
                metrics_->observe_upstream(config_.name, u->id(), "bad_response",
                                           seconds_since(now));
            u->record_failure("malformed answer: " + reply.error());
            note(*u, "malformed answer: " + reply.error());
            if (write) {
                out.error =
                    jsonrpc::Error(jsonrpc::ErrorCode::internal_error,
                                   fmt::format("upstream {} answered the transaction with "
                                               "something that is not JSON-RPC; it may have "
                                               "reached the network, so it was not re-sent: check "
                                               "by hash before sending it again",
                                               u->id()));
                co_return out;
            }
            continue;
        }

        if (metrics_) metrics_->observe_upstream(config_.name, u->id(), "", seconds_since(now));
        u->record_success();
        out.answered = true;
        out.reply = std::move(*reply);
        out.upstream = u->id();
        co_return out;
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
