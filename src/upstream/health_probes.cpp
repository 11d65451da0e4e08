// The pool's health probes: each upstream asked for its chain id, whether it syncs, and its head
// (a head it claims is believed once it can serve that block, or most upstreams agree).

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

namespace {

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

void ChainPool::start() {
    std::shared_ptr<const Members> all;
    {
        std::lock_guard lock(members_mu_);
        started_ = true;
        all = members_;
    }
    for (const Member& m : *all) start_probing(m);
}

void ChainPool::start_probing(const Member& m) {
    asio::co_spawn(m.prober->strand, probe_loop(m.upstream, m.prober), asio::detached);
}

void ChainPool::stop() {
    std::shared_ptr<const Members> all;
    {
        std::lock_guard lock(members_mu_);
        stopped_ = true;
        all = members_;
    }
    for (const Member& m : *all)
        asio::post(m.prober->strand, [p = m.prober] { p->timer.cancel(); });
}

// The loop owns its upstream and prober: a reload may drop them from the pool meanwhile.
asio::awaitable<void> ChainPool::probe_loop(std::shared_ptr<Upstream> owned,
                                            std::shared_ptr<Prober> owned_prober) {
    Upstream& upstream = *owned;
    Prober& prober = *owned_prober;
    std::mt19937 rng(std::random_device{}());
    const auto interval = config_.health.interval;
    std::uniform_int_distribution<long> jitter(-interval.count() / 10, interval.count() / 10);
    const auto over = [&] { return stopped_ || prober.retired; };
    while (!over()) {
        co_await probe(upstream, prober);
        if (over() || upstream.status().health == Health::wrong_chain) break;
        prober.timer.expires_after(interval + std::chrono::milliseconds(jitter(rng)));
        co_await prober.timer.async_wait(use_nothrow);
    }
}

// One probe round: the chain id (first, then every 60 rounds), eth_syncing (every 5 rounds),
// the head (every round, timed).
asio::awaitable<void> ChainPool::probe(Upstream& upstream, Prober& prober) {
    // Real time, not clock_: the HTTP client's deadline (asio timers).
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
    // Real time, not clock_: the latency of real I/O (upstream selection and metrics use it).
    const auto t0 = Clock::now();
    auto [v, why] = co_await ask("eth_blockNumber");
    const auto latency = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - t0);
    if (v && metrics_)
        metrics_->observe_probe(config_.name, upstream.id(),
                                std::chrono::duration<double>(latency).count());
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
    // Named: the set must outlive the loop (a reload may drop it from the pool meanwhile).
    const std::shared_ptr<const Members> all = members();
    for (const Member& m : *all) {
        const Upstream* u = m.upstream.get();
        if (u->excluded()) continue;
        ++voters;
        const auto claimed = u == &self ? std::optional(head) : u->claimed_head();
        if (claimed && *claimed >= head) ++agree;
    }
    return 2 * agree > voters;
}

}  // namespace gateway::upstream
