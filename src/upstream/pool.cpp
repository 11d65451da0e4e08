#include "gateway/upstream/pool.hpp"

#include "gateway/metrics/metrics.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/parallel_group.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <algorithm>
#include <cctype>
#include <random>

namespace gateway::upstream {

namespace asio = boost::asio;
namespace json = boost::json;
using Clock = std::chrono::steady_clock;
using jsonrpc::BlockNeed;
constexpr auto use_nothrow = asio::as_tuple(asio::use_awaitable);

struct ChainPool::Prober {
    explicit Prober(asio::any_io_executor ex) : strand(asio::make_strand(ex)), timer(strand) {}
    asio::strand<asio::any_io_executor> strand;
    asio::steady_timer timer;
    std::uint64_t round = 0;
    bool chain_verified = false;
    bool syncing = false;
};

// The attempts of one call in flight: each reports here and wakes the call.
struct ChainPool::Race {
    explicit Race(asio::any_io_executor ex) : wake(ex) {}
    asio::steady_timer wake;
    std::vector<std::pair<Upstream*, Attempt>> finished;
};

struct ChainPool::Ranked {
    Upstream* upstream = nullptr;
    UpstreamView view;
    bool normal = false;    // may get calls now (not down, breaker not open, not throttled)
    bool eligible = false;  // can serve the call's block
};

namespace {

double seconds_since(Clock::time_point t0) {
    return std::chrono::duration<double>(Clock::now() - t0).count();
}

bool is_hash(const json::value* v) {
    const json::string* s = v ? v->if_string() : nullptr;
    return s && s->size() == 66 && s->starts_with("0x") &&
           std::all_of(s->begin() + 2, s->end(),
                       [](unsigned char c) { return std::isxdigit(c) != 0; });
}

// Whether `block` (an eth_getBlockByNumber result) is block `number` with a hash and a parent.
bool serves_block(const json::value& block, std::uint64_t number) {
    const json::object* o = block.if_object();
    if (!o) return false;
    const json::value* n = o->if_contains("number");
    const auto parsed =
        n && n->is_string() ? jsonrpc::parse_quantity(n->get_string()) : std::nullopt;
    return parsed == number && is_hash(o->if_contains("hash")) &&
           is_hash(o->if_contains("parentHash"));
}

}  // namespace

Forwarded over_budget(std::size_t limit) {
    Forwarded refused;
    refused.outcome = Forwarded::Outcome::answered;
    refused.over_budget = true;
    refused.reply.error =
        jsonrpc::Error(jsonrpc::ErrorCode::limit_exceeded,
                       fmt::format("batch answer too large: over {} bytes with this call's answer "
                                   "(server.max_batch_response_bytes); split the batch",
                                   limit));
    return refused;
}

ChainPool::ChainPool(const config::ChainConfig& config, asio::any_io_executor executor,
                     metrics::Metrics* metrics, const util::Clock& clock)
    : config_(config), executor_(std::move(executor)), metrics_(metrics), clock_(clock) {
    for (const auto& u : config_.upstreams) {
        upstreams_.push_back(std::make_unique<Upstream>(
            config_.name, u, config_.health, config_.failover, make_http_client(u), clock_));
        probers_.push_back(std::make_unique<Prober>(executor_));
    }
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
    return std::any_of(upstreams_.begin(), upstreams_.end(), [](const auto& u) {
        return !u->excluded() && u->status().health == Health::up;
    });
}

std::optional<std::uint64_t> ChainPool::head() const {
    std::optional<std::uint64_t> best;
    for (const auto& u : upstreams_)
        if (const auto h = u->usable_head()) best = std::max(best.value_or(0), *h);
    return best;
}

bool ChainPool::cordon(std::string_view id, bool cordoned, std::string reason) {
    for (auto& u : upstreams_)
        if (u->id() == id) {
            u->set_cordoned(cordoned, std::move(reason));
            return true;
        }
    return false;
}

// Every upstream's state, score and eligibility for a call needing `need`.
std::vector<ChainPool::Ranked> ChainPool::rank(const BlockNeed& need, bool explain) const {
    using namespace std::chrono;
    const auto now = clock_.now();
    const std::optional<std::uint64_t> best = head();
    const std::uint64_t max_lag = config_.health.max_lag_blocks;
    std::vector<Ranked> out;
    out.reserve(upstreams_.size());
    for (const auto& u : upstreams_) {
        Ranked r;
        r.upstream = u.get();
        UpstreamView& v = r.view;
        v.status = u->status();
        const UpstreamStatus& s = v.status;
        if (best && s.head) v.lag = *best > *s.head ? *best - *s.head : 0;
        const bool lagging = s.syncing || !s.head_doubt.empty() || (v.lag && *v.lag > max_lag);

        // The score: latency (mean of EWMA and p90), weighed up by recent errors and throttling,
        // plus 10 ms for every block behind. Lower is better.
        const double latency =
            s.has_latency ? 0.5 * s.latency_ewma_ms + 0.5 * s.latency_p90_ms : 0.0;
        const std::uint64_t lag = v.lag.value_or(0);
        v.score = latency * (1 + 4 * s.error_rate + 2 * s.throttle_rate) +
                  10.0 * static_cast<double>(lag);
        if (explain)
            v.score_explained = fmt::format(
                "latency {:.2f} ms (ewma {:.2f}, p90 {:.2f}) x (1 + 4 x errors {:.0f}% + 2 x "
                "throttled "
                "{:.0f}%) "
                "+ 10 x lag {} = {:.2f}",
                latency, s.latency_ewma_ms, s.latency_p90_ms, 100 * s.error_rate,
                100 * s.throttle_rate, lag, v.score);

        const auto in_s = [&](TimePoint t) {
            return duration_cast<milliseconds>(t - now).count() / 1000.0;
        };
        if (s.health == Health::wrong_chain) {
            v.state = "wrong_chain";
            if (explain) v.reason = s.reason;
        } else if (s.cordoned) {
            v.state = "cordoned";
            if (explain)
                v.reason = s.cordon_reason.empty() ? "cordoned by an operator" : s.cordon_reason;
        } else if (s.health == Health::down) {
            v.state = "down";
            if (explain) v.reason = s.reason;
        } else if (s.breaker == CircuitBreaker::State::open) {
            v.state = "breaker_open";
            if (explain)
                v.reason = fmt::format(
                    "{} failed calls in a row; a trial call after failover.breaker_cooldown_ms ({} "
                    "ms)",
                    s.consecutive_failures, config_.failover.breaker_cooldown.count());
        } else if (s.throttled_until) {
            v.state = "throttled";
            if (explain)
                v.reason = fmt::format("rate limited by the upstream; resting {:.1f} s more",
                                       in_s(*s.throttled_until));
        } else if (!s.head_doubt.empty()) {
            v.state = "bad_head";
            if (explain) v.reason = s.head_doubt + ": no latest reads";
        } else if (s.syncing) {
            v.state = "syncing";
            if (explain) v.reason = "eth_syncing says the node is syncing: no latest reads";
        } else if (lagging) {
            v.state = "lagging";
            if (explain)
                v.reason = fmt::format(
                    "{} blocks behind the chain head {} (health.max_lag_blocks {}): no latest "
                    "reads",
                    *v.lag, *best, max_lag);
        } else if (s.breaker == CircuitBreaker::State::half_open) {
            v.state = "breaker_half_open";
            if (explain) v.reason = "breaker cooled down: the next call is a trial";
        } else if (s.health == Health::unknown) {
            v.state = "unknown";
            if (explain) v.reason = s.reason;
        } else {
            v.state = "up";
            if (explain) v.reason = s.reason;
        }

        const bool excluded = s.health == Health::wrong_chain || s.cordoned;
        r.normal = !excluded && s.health != Health::down &&
                   s.breaker != CircuitBreaker::State::open && !s.throttled_until;
        switch (need.kind) {
            case BlockNeed::Kind::none: r.eligible = !excluded; break;
            case BlockNeed::Kind::latest:
            case BlockNeed::Kind::hash: r.eligible = !excluded && !lagging; break;
            case BlockNeed::Kind::number:
                // A node that has the block; a block nobody has yet may go to anyone.
                r.eligible = !excluded &&
                             (!s.head || *s.head >= need.number || !best || need.number > *best);
                break;
        }
        out.push_back(std::move(r));
    }
    return out;
}

std::vector<UpstreamView> ChainPool::view() const {
    std::vector<UpstreamView> out;
    for (auto& r : rank(BlockNeed{BlockNeed::Kind::latest}, true)) out.push_back(std::move(r.view));
    return out;
}

void ChainPool::publish_metrics() const {
    if (!metrics_) return;
    if (auto h = head()) metrics_->set_chain_head(config_.name, *h);
    for (const auto& r : rank(BlockNeed{BlockNeed::Kind::latest})) {
        const UpstreamView& v = r.view;
        metrics::UpstreamGauges g;
        g.up = r.normal && r.eligible;
        g.state = v.state;
        g.lag = v.lag ? static_cast<double>(*v.lag) : 0;
        g.score = v.score;
        g.breaker = v.status.breaker == CircuitBreaker::State::closed ? 0
                    : v.status.breaker == CircuitBreaker::State::open ? 1
                                                                      : 2;
        g.latency_ewma_seconds = v.status.latency_ewma_ms / 1000;
        g.latency_p90_seconds = v.status.latency_p90_ms / 1000;
        g.head = v.status.head ? static_cast<double>(*v.status.head) : 0;
        g.error_rate = v.status.error_rate;
        metrics_->set_upstream(config_.name, r.upstream->id(), g);
    }
}

asio::awaitable<void> ChainPool::probe_loop(Upstream& upstream, Prober& prober) {
    std::mt19937 rng(std::random_device{}());
    const auto interval = config_.health.interval;
    std::uniform_int_distribution<long> jitter(-interval.count() / 10, interval.count() / 10);
    while (!stopped_) {
        co_await probe(upstream, prober);
        if (stopped_ || upstream.status().health == Health::wrong_chain) break;
        prober.timer.expires_after(interval + std::chrono::milliseconds(jitter(rng)));
        co_await prober.timer.async_wait(use_nothrow);
    }
}

// One probe round: the chain id (first, then every 60 rounds), eth_syncing (every 5 rounds),
// the head (every round, timed).
asio::awaitable<void> ChainPool::probe(Upstream& upstream, Prober& prober) {
    const auto deadline = Clock::now() + config_.health.timeout;
    // The answer's result, or why there is none.
    auto ask = [&](const char* method, json::value params = json::value())
        -> asio::awaitable<std::pair<std::optional<json::value>, std::string>> {
        const std::uint64_t id = next_id_++;
        // A named variable: GCC 12 destroys an aggregate temporary in a co_await expression
        // twice (harmless while it holds no CancelSignal, a use after free once it does).
        PostOptions options{deadline, true};
        HttpResult r = co_await upstream.client().post(
            jsonrpc::upstream_request(id, method, params), std::move(options));
        Attempt a = classify(r, id);
        if (a.kind != Attempt::Kind::answered)
            co_return std::pair(std::nullopt, fmt::format("{}: {}", method, a.detail));
        if (a.reply->is_error())
            co_return std::pair(
                std::nullopt,
                fmt::format("{}: {} ({})", method, a.reply->error.message, a.reply->error.code));
        json::error_code ec;
        json::value v = json::parse(*a.reply->result, ec);
        if (ec) co_return std::pair(std::nullopt, fmt::format("{}: unreadable result", method));
        co_return std::pair(std::move(v), std::string());
    };
    const std::uint64_t round = prober.round++;

    if (!prober.chain_verified || round % 60 == 0) {
        auto [v, why] = co_await ask("eth_chainId");
        if (!v) {
            upstream.probe_failed("probe " + why);
            co_return;
        }
        const auto id = v->is_string() ? jsonrpc::parse_quantity(v->get_string()) : std::nullopt;
        if (!id) {
            upstream.probe_failed("probe eth_chainId: not a quantity");
            co_return;
        }
        if (*id != config_.chain_id) {
            upstream.record_wrong_chain(config_.chain_id, *id);
            if (metrics_) metrics_->count_wrong_chain(config_.name, upstream.id());
            co_return;
        }
        prober.chain_verified = true;
    }
    if (round % 5 == 0) {
        auto [v, why] = co_await ask("eth_syncing");
        if (!v) {
            upstream.probe_failed("probe " + why);
            co_return;
        }
        prober.syncing = !(v->is_bool() && !v->get_bool());  // false, or a progress object
    }
    const auto t0 = Clock::now();
    auto [v, why] = co_await ask("eth_blockNumber");
    const auto latency = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - t0);
    if (!v) {
        upstream.probe_failed("probe " + why);
        co_return;
    }
    const auto head = v->is_string() ? jsonrpc::parse_quantity(v->get_string()) : std::nullopt;
    if (!head) {
        upstream.probe_failed("probe eth_blockNumber: not a quantity");
        co_return;
    }
    // A head above the chain's is believed when most upstreams claim as much, or when the node
    // can serve that block: one node's bogus answer must not become the chain's head.
    if (const auto chain_head = this->head();
        (!chain_head || *head > *chain_head) && !most_claim(upstream, *head)) {
        json::array params;
        params.emplace_back(fmt::format("0x{:x}", *head));
        params.emplace_back(false);
        auto [block, why] = co_await ask("eth_getBlockByNumber", std::move(params));
        if (!block)
            why = fmt::format("it claims head {} but could not serve that block ({})", *head, why);
        else if (!serves_block(*block, *head))
            why = fmt::format(
                "it claims head {} but answered {} for that block", *head,
                block->is_null() ? "null" : "no block with that number, hash and parent");
        if (!why.empty()) {
            upstream.head_not_believed(latency, *head, prober.syncing, std::move(why));
            co_return;
        }
    }
    upstream.probe_succeeded(latency, *head, prober.syncing);
}

bool ChainPool::most_claim(const Upstream& self, std::uint64_t head) const {
    std::size_t voters = 0, agree = 0;
    for (const auto& u : upstreams_) {
        if (u->excluded()) continue;
        ++voters;
        const auto claimed = u.get() == &self ? std::optional(head) : u->claimed_head();
        if (claimed && *claimed >= head) ++agree;
    }
    return 2 * agree > voters;
}

asio::awaitable<Attempt> ChainPool::attempt(Upstream* u, std::string body, PostOptions options,
                                            std::uint64_t id, std::string_view label) {
    const auto t0 = Clock::now();
    HttpResult r = co_await u->client().post(std::move(body), options);
    Attempt a = classify(r, id);
    u->release();
    if (r.error == TransportError::cancelled)
        co_return a;  // a hedge that lost: no verdict on the node
    if (metrics_)
        metrics_->observe_upstream(config_.name, u->id(), label, a.label, seconds_since(t0));
    if (a.kind == Attempt::Kind::answered)
        u->call_succeeded();
    else
        u->call_failed(a);
    co_return a;
}

asio::awaitable<Forwarded> ChainPool::forward(std::string method, json::value params, bool write,
                                              Clock::time_point deadline,
                                              std::shared_ptr<AnswerBudget> budget) {
    const BlockNeed need = jsonrpc::block_need(method, params);
    co_return co_await forward_one(std::move(method), std::move(params), need, write, deadline,
                                   nullptr, std::move(budget));
}

asio::awaitable<Forwarded> ChainPool::forward_to(std::string method, json::value params,
                                                 BlockNeed need, bool write,
                                                 Clock::time_point deadline,
                                                 std::shared_ptr<AnswerBudget> budget,
                                                 std::string pinned) {
    const Upstream* only = nullptr;
    for (const auto& u : upstreams_)
        if (!pinned.empty() && u->id() == pinned) only = u.get();
    co_return co_await forward_one(std::move(method), std::move(params), need, write, deadline,
                                   only, std::move(budget));
}

std::uint64_t ChainPool::max_logs_range() const {
    std::uint64_t limit = 0;
    for (const auto& u : upstreams_)
        if (!u->excluded() && u->config().max_logs_range)
            limit =
                limit ? std::min(limit, u->config().max_logs_range) : u->config().max_logs_range;
    return limit;
}

std::size_t ChainPool::max_response_bytes(std::string_view upstream) const {
    for (const auto& u : upstreams_)
        if (u->id() == upstream) return u->config().max_response_bytes;
    return std::numeric_limits<std::size_t>::max();
}

asio::awaitable<Forwarded> ChainPool::forward_at_least(std::string method, json::value params,
                                                       std::uint64_t min_block,
                                                       Clock::time_point deadline) {
    // Pinned to the upstreams at or above the block: rank() would let anyone answer a block that
    // nobody has yet, which here would be a node behind it.
    const bool any = std::any_of(upstreams_.begin(), upstreams_.end(), [&](const auto& u) {
        const auto h = u->usable_head();
        return h && *h >= min_block;
    });
    if (!any) {
        Forwarded none;
        none.error = jsonrpc::Error(jsonrpc::ErrorCode::resource_unavailable,
                                    fmt::format("no upstream of chain {} is at block {} or above",
                                                config_.name, min_block));
        co_return none;
    }
    co_return co_await forward_one(std::move(method), std::move(params),
                                   BlockNeed{BlockNeed::Kind::number, min_block}, false, deadline);
}

// The order calls try upstreams in: tier, then score; upstreams that cannot serve the call are
// left out, those down, open or throttled come last, as a last resort before giving up.
std::vector<ChainPool::Ranked*> ChainPool::in_order(std::vector<Ranked>& ranked) {
    std::vector<Ranked*> order;
    for (auto& r : ranked)
        if (r.eligible) order.push_back(&r);
    std::stable_sort(order.begin(), order.end(), [](const Ranked* a, const Ranked* b) {
        return std::tuple(!a->normal, a->view.status.tier, a->view.score) <
               std::tuple(!b->normal, b->view.status.tier, b->view.score);
    });
    return order;
}

asio::awaitable<std::optional<ChainPool::BatchForwarded>> ChainPool::forward_batch(
    std::vector<BatchCall> calls, Clock::time_point deadline,
    std::shared_ptr<AnswerBudget> budget) {
    // The newest block any of them needs decides who can answer them all.
    BlockNeed need{BlockNeed::Kind::none};
    for (const auto& c : calls) {
        const BlockNeed n = jsonrpc::block_need(c.method, c.params);
        if (n.kind == BlockNeed::Kind::latest || n.kind == BlockNeed::Kind::hash) {
            need = BlockNeed{BlockNeed::Kind::latest};
        } else if (n.kind == BlockNeed::Kind::number && need.kind != BlockNeed::Kind::latest) {
            const std::uint64_t before = need.kind == BlockNeed::Kind::number ? need.number : 0;
            need = BlockNeed{BlockNeed::Kind::number, std::max(before, n.number)};
        }
    }
    std::vector<Ranked> ranked = rank(need);
    Upstream* u = nullptr;
    for (Ranked* r : in_order(ranked)) {
        if (!r->normal || r->upstream->config().max_batch_size < 2) continue;
        {
            std::lock_guard lock(no_batch_mu_);
            if (std::find(no_batch_.begin(), no_batch_.end(), r->upstream) != no_batch_.end())
                continue;
        }
        if (r->upstream->admit() != Upstream::Admission::admitted) continue;
        u = r->upstream;
        break;
    }
    if (!u) co_return std::nullopt;

    const std::size_t n = std::min(calls.size(), u->config().max_batch_size);
    std::vector<std::uint64_t> ids(n);
    std::string body = "[";
    for (std::size_t i = 0; i < n; ++i) {
        ids[i] = next_id_++;
        if (i) body.push_back(',');
        body.append(jsonrpc::upstream_request(ids[i], calls[i].method, calls[i].params));
    }
    body.push_back(']');
    const auto t0 = Clock::now();
    PostOptions options{std::min(deadline, Clock::now() + u->config().timeout), true, nullptr,
                        budget ? std::make_shared<CallBudget>(CallBudget{budget}) : nullptr};
    HttpResult r = co_await u->client().post(std::move(body), options);
    u->release();
    std::optional<std::vector<jsonrpc::BatchElement>> elements;
    if (r.ok() && r.status == 200) elements = jsonrpc::split_batch_reply(r.body);
    if (metrics_)
        metrics_->observe_upstream(config_.name, u->id(), "batch",
                                   elements ? "" : (r.ok() ? "bad_response" : to_string(r.error)),
                                   seconds_since(t0));
    if (!r.ok() || r.status == 429 || r.status >= 500) {
        // The node failed (or rests): as for any call. The calls go one by one, elsewhere.
        u->call_failed(classify(r, 0));
        co_return std::nullopt;
    }
    // HTTP 413: this batch was too large for the node, which says nothing of smaller ones.
    if (!elements && r.status == 413) co_return std::nullopt;
    if (!elements) {
        // It answered, but not a batch: it does not take them. Single calls from now on.
        bool first = false;
        {
            std::lock_guard lock(no_batch_mu_);
            if (std::find(no_batch_.begin(), no_batch_.end(), u) == no_batch_.end()) {
                no_batch_.push_back(u);
                first = true;
            }
        }
        if (first)
            spdlog::info(
                "chain {}: upstream {} does not answer batches (HTTP {}); it gets the "
                "calls of client batches one by one",
                config_.name, u->id(), r.status);
        co_return std::nullopt;
    }
    u->call_succeeded();
    BatchForwarded out;
    out.upstream = u->id();
    out.replies.resize(calls.size());
    for (const auto& e : *elements) {
        if (!e.id) continue;
        const auto at = std::find(ids.begin(), ids.end(), *e.id);
        if (at == ids.end()) continue;
        auto reply = jsonrpc::parse_reply(e.text, *e.id);
        if (!reply) continue;
        // A node error another node may not give (behind, rate-limited, unsupported): that call
        // goes alone, with failover.
        if (reply->is_error() && classify_rpc_error(reply->error.code, reply->error.message) !=
                                     ErrorClass::deterministic)
            continue;
        out.replies[static_cast<std::size_t>(at - ids.begin())] = std::move(*reply);
    }
    co_return out;
}

asio::awaitable<std::vector<Delivery>> ChainPool::broadcast(std::string method, json::value params,
                                                            std::size_t fanout,
                                                            Clock::time_point deadline) {
    std::vector<Ranked> ranked = rank(BlockNeed{BlockNeed::Kind::none});
    const std::vector<Ranked*> order = in_order(ranked);
    const bool any_normal = !order.empty() && order.front()->normal;
    std::vector<Upstream*> chosen;
    for (Ranked* r : order) {
        if (chosen.size() >= std::max<std::size_t>(fanout, 1)) break;
        if (any_normal && !r->normal) break;  // the last resort only when nothing else is there
        if (r->upstream->admit() != Upstream::Admission::admitted) continue;
        chosen.push_back(r->upstream);
    }
    std::vector<Delivery> out;
    if (chosen.empty()) co_return out;
    if (chosen.size() == 1) {
        // One node: awaited in place, without spawning (no hops between threads).
        Upstream* u = chosen.front();
        const std::uint64_t id = next_id_++;
        PostOptions options{std::min(deadline, Clock::now() + u->config().timeout), true, nullptr};
        Attempt a = co_await attempt(u, jsonrpc::upstream_request(id, method, params), options, id,
                                     jsonrpc::method_label(method));
        out.push_back(Delivery{u->id(), std::move(a)});
        co_return out;
    }
    auto ex = co_await asio::this_coro::executor;
    using Op = decltype(asio::co_spawn(ex, attempt(nullptr, std::string(), PostOptions{}, 0, {}),
                                       asio::deferred));
    std::vector<Op> ops;
    for (Upstream* u : chosen) {
        const std::uint64_t id = next_id_++;
        PostOptions options{std::min(deadline, Clock::now() + u->config().timeout), true, nullptr};
        ops.push_back(asio::co_spawn(ex,
                                     attempt(u, jsonrpc::upstream_request(id, method, params),
                                             options, id, jsonrpc::method_label(method)),
                                     asio::deferred));
    }
    auto [order_done, errors, attempts] =
        co_await asio::experimental::make_parallel_group(std::move(ops))
            .async_wait(asio::experimental::wait_for_all(), asio::use_awaitable);
    (void)order_done;
    (void)errors;
    for (std::size_t i = 0; i < chosen.size(); ++i)
        out.push_back(Delivery{chosen[i]->id(), std::move(attempts[i])});
    co_return out;
}

asio::awaitable<Forwarded> ChainPool::forward_one(std::string method, json::value params,
                                                  BlockNeed need, bool write,
                                                  Clock::time_point deadline, const Upstream* only,
                                                  std::shared_ptr<AnswerBudget> budget) {
    Forwarded out;
    std::vector<Ranked> ranked = rank(need);
    if (only) {
        // Pinned (a filter's node): that one, whatever its health, unless it was taken out of
        // use; no other node knows the filter.
        for (auto& r : ranked)
            r.eligible = r.upstream == only && !r.view.status.cordoned &&
                         r.view.status.health != Health::wrong_chain;
    }
    const std::vector<Ranked*> order = in_order(ranked);
    if (order.empty()) {
        // The reasons, for the error message (not worked out for every call).
        ranked = rank(need, true);
    }
    if (order.empty() && only) {
        const auto& v = std::find_if(ranked.begin(), ranked.end(), [&](const Ranked& r) {
                            return r.upstream == only;
                        })->view;
        out.error = jsonrpc::Error(
            jsonrpc::ErrorCode::resource_unavailable,
            fmt::format("the filter was made on upstream {}, which is {} ({}); no other node "
                        "knows it: create a new filter",
                        v.status.id, v.state, v.reason));
        co_return out;
    }
    if (order.empty()) {
        std::string why;
        for (const auto& r : ranked)
            why += fmt::format("{}{}: {} ({})", why.empty() ? "" : "; ", r.view.status.id,
                               r.view.state, r.view.reason);
        out.error = jsonrpc::Error(
            jsonrpc::ErrorCode::resource_unavailable,
            fmt::format("no upstream of chain {} can serve this call: {}", config_.name, why));
        co_return out;
    }

    const auto& fo = config_.failover;
    const bool hedging = !write && !only && fo.hedge_after.count() > 0;
    // The call's share of its request's budget: its attempts count its answer once.
    const auto call_budget = budget ? std::make_shared<CallBudget>(CallBudget{budget}) : nullptr;
    auto ex = co_await asio::this_coro::executor;
    auto race = std::make_shared<Race>(ex);
    std::vector<std::shared_ptr<CancelSignal>> running;
    struct Failure {
        Upstream* upstream = nullptr;
        Attempt attempt;
        std::optional<std::uint64_t> head;  // the node's head when it failed
    };
    std::vector<Failure> failures;
    std::size_t next = 0;
    unsigned launched = 0;
    std::string refusals;  // why upstreams were skipped without an attempt
    bool any_at_capacity = false;
    // Without hedging one attempt runs at a time: it is awaited here, on the caller's strand,
    // instead of being spawned and raced (no timer, no extra hops between threads).
    struct Inline {
        Upstream* upstream = nullptr;
        std::string body;
        PostOptions options;
        std::uint64_t id = 0;
    };
    std::optional<Inline> inline_attempt;

    // Starts an attempt on the next upstream that admits one; false when none does now.
    auto launch = [&]() -> bool {
        for (std::size_t tries = 0; tries < order.size(); ++tries) {
            const Ranked* candidate = order[next++ % order.size()];
            Upstream* u = candidate->upstream;
            // A node that does not serve the method will not serve it on a second try, nor will
            // one that does not have the block asked for; and a node behind one that does not
            // have it will not have it either.
            if (std::any_of(failures.begin(), failures.end(), [&](const Failure& f) {
                    if (f.attempt.kind != Attempt::Kind::rpc_error) return false;
                    if (f.attempt.error_class == ErrorClass::unsupported) return f.upstream == u;
                    if (f.attempt.error_class != ErrorClass::missing) return false;
                    const auto& head = candidate->view.status.head;
                    return f.upstream == u || (head && f.head && *head < *f.head);
                }))
                continue;
            const Upstream::Admission admission = u->admit();
            if (admission != Upstream::Admission::admitted) {
                const char* why = admission == Upstream::Admission::breaker_open ? "breaker open"
                                  : admission == Upstream::Admission::throttled
                                      ? "throttled"
                                      : "at its max_rps/max_concurrency";
                any_at_capacity = any_at_capacity || admission == Upstream::Admission::at_capacity;
                if (refusals.find(u->id() + ":") == std::string::npos)
                    refusals += fmt::format("{}{}: {}", refusals.empty() ? "" : "; ", u->id(), why);
                continue;
            }
            const std::uint64_t id = next_id_++;
            auto cancel = std::make_shared<CancelSignal>();
            running.push_back(cancel);
            PostOptions options{std::min(deadline, Clock::now() + u->config().timeout), !write,
                                cancel, call_budget};
            if (!hedging) {
                inline_attempt =
                    Inline{u, jsonrpc::upstream_request(id, method, params), options, id};
                ++launched;
                return true;
            }
            asio::co_spawn(ex,
                           attempt(u, jsonrpc::upstream_request(id, method, params), options, id,
                                   jsonrpc::method_label(method)),
                           [race, u](std::exception_ptr, Attempt a) {
                               race->finished.emplace_back(u, std::move(a));
                               race->wake.cancel();
                           });
            ++launched;
            return true;
        }
        return false;
    };
    auto cancel_all = [&] {
        for (auto& c : running) c->cancel();
    };

    std::size_t in_flight = 0;
    std::optional<Clock::time_point> hedge_at;
    for (;;) {
        if (in_flight == 0) {
            if (launched >= fo.max_attempts || Clock::now() >= deadline) break;
            // Coming back to upstreams already tried: wait a little longer each round.
            if (const std::size_t round = next / order.size();
                round > 0 && fo.backoff.count() > 0) {
                const auto pause = std::min<Clock::duration>(
                    fo.backoff * (1u << std::min<std::size_t>(round - 1, 10)),
                    deadline - Clock::now());
                race->wake.expires_after(pause);
                co_await race->wake.async_wait(use_nothrow);
            }
            any_at_capacity = false;
            if (!launch()) {
                // Nobody admits a call now. Our own rate and concurrency limits clear soon: wait
                // for them. Breakers and Retry-After rests do not.
                if (!any_at_capacity || Clock::now() >= deadline) break;
                race->wake.expires_after(std::min<Clock::duration>(std::chrono::milliseconds(5),
                                                                   deadline - Clock::now()));
                co_await race->wake.async_wait(use_nothrow);
                continue;
            }
            ++in_flight;
            if (hedging) hedge_at = Clock::now() + fo.hedge_after;
        }
        if (inline_attempt) {
            Inline next_attempt = std::move(*inline_attempt);
            inline_attempt.reset();
            Attempt a = co_await attempt(next_attempt.upstream, std::move(next_attempt.body),
                                         next_attempt.options, next_attempt.id,
                                         jsonrpc::method_label(method));
            race->finished.emplace_back(next_attempt.upstream, std::move(a));
        }
        if (race->finished.empty()) {
            const bool can_hedge = hedge_at && in_flight < 2 && launched < fo.max_attempts;
            race->wake.expires_at(can_hedge ? *hedge_at : Clock::time_point::max());
            co_await race->wake.async_wait(use_nothrow);
            if (race->finished.empty()) {
                hedge_at.reset();
                if (can_hedge && Clock::now() < deadline && launch()) {
                    ++in_flight;
                    if (metrics_) metrics_->count_hedge(config_.name);
                }
                continue;
            }
        }
        auto [u, a] = std::move(race->finished.front());
        race->finished.erase(race->finished.begin());
        --in_flight;
        if (a.kind == Attempt::Kind::answered) {
            cancel_all();  // a hedge still running loses
            out.outcome = Forwarded::Outcome::answered;
            out.reply = std::move(*a.reply);
            out.upstream = u->id();
            co_return out;
        }
        if (a.label == to_string(TransportError::cancelled)) continue;
        if (a.label == to_string(TransportError::over_budget)) {
            // The request's answers passed their limit: no node would answer this one smaller.
            cancel_all();
            co_return over_budget(budget ? budget->limit : 0);
        }
        if (metrics_) metrics_->count_failover(config_.name, u->id(), a.label);
        if (write && a.maybe_delivered) {
            // Sending it to another node could execute it twice; only its hash can tell.
            out.outcome = Forwarded::Outcome::uncertain;
            out.error =
                jsonrpc::Error(jsonrpc::ErrorCode::internal_error,
                               fmt::format("upstream {} failed after the call was sent ({}); it "
                                           "may have been executed, so it was "
                                           "not sent to another node: check (for a transaction, by "
                                           "its hash) before sending it again",
                                           u->id(), a.detail));
            co_return out;
        }
        failures.push_back(Failure{u, std::move(a), u->status().head});
    }
    cancel_all();

    // Every attempt failed: answer with the most informative failure. A node's own JSON-RPC
    // answer ("header not found", a rate limit, "method not found" from all) says more than
    // connection errors.
    const auto with_class = [&](ErrorClass c) -> const Failure* {
        for (const auto& f : failures)
            if (f.attempt.kind == Attempt::Kind::rpc_error && f.attempt.error_class == c) return &f;
        return nullptr;
    };
    const bool all_unsupported =
        !failures.empty() && std::all_of(failures.begin(), failures.end(), [](const Failure& f) {
            return f.attempt.kind == Attempt::Kind::rpc_error &&
                   f.attempt.error_class == ErrorClass::unsupported;
        });
    const Failure* telling = all_unsupported ? &failures.front() : nullptr;
    // No node at or above the one that did not have it had it: that node's answer, as it came.
    if (!telling) telling = with_class(ErrorClass::missing);
    if (!telling) telling = with_class(ErrorClass::transient);
    if (!telling) telling = with_class(ErrorClass::rate_limited);
    if (telling) {
        out.outcome = Forwarded::Outcome::answered;
        out.reply = *telling->attempt.reply;
        out.upstream = telling->upstream->id();
        co_return out;
    }
    std::string why;
    for (const auto& f : failures)
        why += fmt::format("{}{}: {}", why.empty() ? "" : "; ", f.upstream->id(), f.attempt.detail);
    if (!refusals.empty()) why += fmt::format("{}{}", why.empty() ? "" : "; ", refusals);
    out.error = jsonrpc::Error(
        jsonrpc::ErrorCode::resource_unavailable,
        Clock::now() >= deadline
            ? fmt::format("no upstream of chain {} answered in time{}{}", config_.name,
                          why.empty() ? "" : ": ", why)
            : fmt::format("every upstream of chain {} failed: {}", config_.name, why));
    co_return out;
}

}  // namespace gateway::upstream
