// The pool's choice of upstreams: each one's state, score and eligibility for a call's block,
// explained for people (GET /admin/upstreams), and the order calls try them in.

#include "pool_internal.hpp"

#include "gateway/metrics/metrics.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <algorithm>
#include <cctype>
#include <limits>
#include <random>

namespace gateway::upstream {

bool ChainPool::ready() const {
    const auto all = members();
    return std::any_of(all->begin(), all->end(),
                       [](const Member& m) { return m.upstream->serving(); });
}

std::optional<std::uint64_t> ChainPool::head() const {
    return head_of(*members());
}

std::optional<std::uint64_t> ChainPool::head_of(const Members& members) const {
    std::optional<std::uint64_t> best;
    for (const Member& m : members)
        if (const auto h = m.upstream->usable_head()) best = std::max(best.value_or(0), *h);
    return best;
}

bool ChainPool::cordon(std::string_view id, bool cordoned, std::string reason) {
    // Named: the set must outlive the loop (a reload may drop it from the pool meanwhile).
    const std::shared_ptr<const Members> all = members();
    for (const Member& m : *all)
        if (m.upstream->id() == id) {
            m.upstream->set_cordoned(cordoned, std::move(reason));
            return true;
        }
    return false;
}

// Every upstream's state, score and eligibility for a call needing `need`.
std::vector<ChainPool::Ranked> ChainPool::rank(const BlockNeed& need, bool explain) const {
    using namespace std::chrono;
    const auto now = clock_.now();
    const std::shared_ptr<const Members> all = members();
    const std::optional<std::uint64_t> best = head_of(*all);
    const std::uint64_t max_lag = config_.health.max_lag_blocks;
    std::vector<Ranked> out;
    out.reserve(all->size());
    for (const Member& m : *all) {
        const std::shared_ptr<Upstream>& u = m.upstream;
        Ranked r;
        r.upstream = u.get();
        r.owner = u;
        UpstreamView& v = r.view;
        v.status = u->status(explain);
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
        const bool unverified = m.joined_later && !m.prober->chain_verified;
        if (unverified && v.state == "unknown" && explain)
            v.reason = "added by a reload: a last resort until a probe verifies its chain id";
        r.normal = !excluded && !unverified && s.health != Health::down &&
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
        g.head = v.status.head ? static_cast<double>(*v.status.head) : 0;
        metrics_->set_upstream(config_.name, r.upstream->id(), g);
    }
}

// The order calls try upstreams in: tier, then score; upstreams that cannot serve the call are
// left out, those down, open or throttled come last, as a last resort before giving up.
std::vector<ChainPool::Ranked*> ChainPool::in_order(std::vector<Ranked>& ranked) {
    std::vector<Ranked*> order;
    for (auto& r : ranked)
        if (r.eligible) order.push_back(&r);
    const auto before = [](const Ranked* a, const Ranked* b) {
        return std::tuple(!a->normal, a->view.status.tier, a->view.score) <
               std::tuple(!b->normal, b->view.status.tier, b->view.score);
    };
    // A stable insertion sort: a chain has a handful of upstreams, and std::stable_sort takes a
    // buffer from the heap for every call.
    for (std::size_t i = 1; i < order.size(); ++i)
        for (std::size_t j = i; j > 0 && before(order[j], order[j - 1]); --j)
            std::swap(order[j], order[j - 1]);
    return order;
}

std::uint64_t ChainPool::max_logs_range() const {
    std::uint64_t limit = 0;
    // Named: the set must outlive the loop (a reload may drop it from the pool meanwhile).
    const std::shared_ptr<const Members> all = members();
    for (const Member& m : *all)
        if (const Upstream* u = m.upstream.get(); !u->excluded() && u->config().max_logs_range)
            limit =
                limit ? std::min(limit, u->config().max_logs_range) : u->config().max_logs_range;
    return limit;
}

std::size_t ChainPool::max_response_bytes(std::string_view upstream) const {
    // Named: the set must outlive the loop (a reload may drop it from the pool meanwhile).
    const std::shared_ptr<const Members> all = members();
    for (const Member& m : *all)
        if (m.upstream->id() == upstream) return m.upstream->config().max_response_bytes;
    return std::numeric_limits<std::size_t>::max();
}

}  // namespace gateway::upstream
