#include "gateway/upstream/pool.hpp"

#include "pool_internal.hpp"

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

std::optional<json::value> Forwarded::result_json() const {
    if (outcome != Outcome::answered || reply.is_error() || !reply.result) return std::nullopt;
    json::error_code ec;
    json::value v = json::parse(*reply.result, ec);
    if (ec) return std::nullopt;
    return v;
}

std::optional<std::uint64_t> Forwarded::result_quantity() const {
    const auto v = result_json();
    if (!v || !v->is_string()) return std::nullopt;
    return jsonrpc::parse_quantity(v->get_string());
}

const std::string& Forwarded::failure() const {
    return outcome == Outcome::answered && reply.is_error() ? reply.error.message : error.message;
}

ChainPool::ChainPool(const config::ChainConfig& config, asio::any_io_executor executor,
                     metrics::Metrics* metrics, const util::Clock& clock)
    : config_(config), executor_(std::move(executor)), metrics_(metrics), clock_(clock) {
    auto members = std::make_shared<Members>();
    for (const auto& u : config_.upstreams)
        members->push_back(
            Member{std::make_shared<Upstream>(config_.name, u, config_.health, config_.failover,
                                              make_http_client(u), clock_),
                   std::make_shared<Prober>(executor_)});
    members_ = std::move(members);
}

ChainPool::~ChainPool() = default;

std::shared_ptr<const ChainPool::Members> ChainPool::members() const {
    std::lock_guard lock(members_mu_);
    return members_;
}

std::shared_ptr<ChainPool::Staged> ChainPool::stage(
    const std::vector<config::UpstreamConfig>& upstreams) const {
    auto staged = std::make_shared<Staged>();
    staged->before = members();
    staged->after = std::make_shared<Members>();
    const Members& before = *staged->before;
    Members& after = *staged->after;
    for (const auto& u : upstreams) {
        const auto same = std::find_if(before.begin(), before.end(), [&](const Member& m) {
            return m.upstream->id() == u.id && m.upstream->config() == u;
        });
        if (same != before.end()) {
            after.push_back(*same);
            continue;
        }
        auto upstream = std::make_shared<Upstream>(config_.name, u, config_.health,
                                                   config_.failover, make_http_client(u), clock_);
        // Same id, new settings (a rotated URL): an operator's cordon stays with it.
        for (const Member& m : before)
            if (m.upstream->id() == u.id) {
                const UpstreamStatus was = m.upstream->status(true);
                if (was.cordoned) upstream->set_cordoned(true, was.cordon_reason);
            }
        after.push_back(Member{std::move(upstream), std::make_shared<Prober>(executor_), true});
        staged->added.push_back(after.back());
    }
    return staged;
}

void ChainPool::reconfigure(std::shared_ptr<Staged> staged) {
    const std::shared_ptr<const Members> before = std::move(staged->before);
    const std::shared_ptr<const Members> after = std::move(staged->after);
    bool probing = false;
    {
        std::lock_guard lock(members_mu_);
        members_ = after;
        probing = started_ && !stopped_;
    }
    const auto had = [&](const std::string& id) {
        return std::any_of(before->begin(), before->end(),
                           [&](const Member& m) { return m.upstream->id() == id; });
    };
    for (const Member& m : *before) {
        const bool kept = std::any_of(after->begin(), after->end(),
                                      [&](const Member& n) { return n.upstream == m.upstream; });
        if (kept) continue;
        const bool replaced = std::any_of(after->begin(), after->end(), [&](const Member& n) {
            return n.upstream->id() == m.upstream->id();
        });
        if (!replaced)
            spdlog::info("upstream {} (chain {}) removed", m.upstream->id(), config_.name);
        m.prober->retired = true;
        asio::post(m.prober->strand, [p = m.prober] { p->timer.cancel(); });
        if (metrics_ && !replaced) metrics_->forget_upstream(config_.name, m.upstream->id());
    }
    for (const Member& m : staged->added) {
        spdlog::info("upstream {} (chain {}) {}", m.upstream->id(), config_.name,
                     had(m.upstream->id()) ? "changed: probed afresh" : "added");
        if (probing) start_probing(m);
    }
}

asio::awaitable<Attempt> ChainPool::attempt(Upstream* u, std::string body, PostOptions options,
                                            std::uint64_t id, std::string_view label) {
    const auto t0 = Clock::now();  // real time, not clock_: the latency metric times real I/O
    HttpResult r = co_await u->client().post(std::move(body), options);
    Attempt a = classify(r, id);
    u->release();
    if (r.error == TransportError::cancelled)
        co_return a;  // a hedge that lost: no verdict on the node
    if (metrics_)
        metrics_->observe_upstream(config_.name, u->id(), label, a.label,
                                   seconds_since(t0, Clock::now()));
    if (a.kind == Attempt::Kind::answered)
        u->call_succeeded();
    else
        u->call_failed(a);
    co_return a;
}

asio::awaitable<Forwarded> ChainPool::forward(std::string method, json::value params, bool write,
                                              Clock::time_point deadline,
                                              std::shared_ptr<AnswerBudget> budget) {
    // Not a coroutine: forward_one's frame is the call's (its arguments are copied into it).
    const BlockNeed need = jsonrpc::block_need(method, params);
    return forward_one(std::move(method), std::move(params), need, write, deadline, {},
                       std::move(budget));
}

asio::awaitable<Forwarded> ChainPool::forward_to(std::string method, json::value params,
                                                 BlockNeed need, bool write,
                                                 Clock::time_point deadline,
                                                 std::shared_ptr<AnswerBudget> budget,
                                                 std::string pinned) {
    // Not a coroutine either: forward_one's frame is the call's. The pinned node is looked up by
    // id in the set forward_one ranks, which a reload may have changed since.
    return forward_one(std::move(method), std::move(params), need, write, deadline,
                       std::move(pinned), std::move(budget));
}

asio::awaitable<Forwarded> ChainPool::forward_at_least(std::string method, json::value params,
                                                       std::uint64_t min_block,
                                                       Clock::time_point deadline) {
    // Pinned to the upstreams at or above the block: rank() would let anyone answer a block that
    // nobody has yet, which here would be a node behind it.
    const auto all = members();
    const bool any = std::any_of(all->begin(), all->end(), [&](const Member& m) {
        const auto h = m.upstream->usable_head();
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

asio::awaitable<std::optional<ChainPool::BatchForwarded>> ChainPool::forward_batch(
    std::vector<BatchCall> calls, Clock::time_point deadline,
    std::shared_ptr<AnswerBudget> budget) {
    // The newest block any of them needs decides who can answer them all.
    BlockNeed need{BlockNeed::Kind::none};
    for (const auto& c : calls) {
        const BlockNeed n = jsonrpc::block_need(c.method, *c.params);
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
        if (!r->upstream->takes_batches()) continue;
        if (r->upstream->admit() != Upstream::Admission::admitted) continue;
        u = r->upstream;
        break;
    }
    if (!u) co_return std::nullopt;

    // All of the calls, in parts of the node's max_batch_size, at most kPartsAtOnce of them in
    // flight. The first part sent has the admission the node was chosen with; each further one is
    // a request of its own, admitted when it goes, and the calls of a part the node does not
    // admit go one by one.
    BatchSend send;
    send.upstream = u;
    send.first_admitted = true;
    struct Unused {  // the first admission, if no part took it
        BatchSend& send;
        ~Unused() {
            if (send.first_admitted) send.upstream->release();
        }
    } unused{send};
    send.calls = calls;
    // Real time, not clock_: the latency metric times real I/O, and the HTTP client's deadline.
    send.until = std::min(deadline, Clock::now() + u->config().timeout);
    send.budget = std::move(budget);
    const std::size_t per = u->config().max_batch_size;
    for (std::size_t from = 0; from < calls.size(); from += per) {
        BatchPart part;
        part.from = from;
        part.n = std::min(per, calls.size() - from);
        part.first_id = next_id_.fetch_add(part.n);
        send.parts.push_back(std::move(part));
    }
    if (send.parts.size() == 1) {
        co_await send_parts(&send);
    } else {
        auto ex = co_await asio::this_coro::executor;
        using Op = decltype(asio::co_spawn(ex, send_parts(&send), asio::deferred));
        std::vector<Op> ops;
        const std::size_t workers = std::min(kPartsAtOnce, send.parts.size());
        ops.reserve(workers);
        for (std::size_t w = 0; w < workers; ++w)
            ops.push_back(asio::co_spawn(ex, send_parts(&send), asio::deferred));
        auto done = co_await asio::experimental::make_parallel_group(std::move(ops))
                        .async_wait(asio::experimental::wait_for_all(), asio::use_awaitable);
        // A worker that failed (out of memory) fails the batch, as one failing alone would.
        for (const std::exception_ptr& e : std::get<1>(done))
            if (e) std::rethrow_exception(e);
    }

    BatchForwarded out;
    out.upstream = u->id();
    out.replies.resize(calls.size());
    bool answered = false;
    // The node's failure, counted once for the batch: the first that is its fault, if any is.
    std::optional<Attempt> failure;
    for (BatchPart& part : send.parts) {
        if (!part.sent) continue;  // not admitted, or the answers held passed their limit
        const HttpResult& r = part.result;
        std::optional<std::vector<jsonrpc::BatchElement>> elements;
        if (r.ok() && r.status == 200) elements = jsonrpc::split_batch_reply(r.body);
        if (metrics_)
            metrics_->observe_upstream(
                config_.name, u->id(), "batch",
                elements ? "" : (r.ok() ? "bad_response" : to_string(r.error)), part.seconds);
        if (!r.ok() || r.status == 429 || r.status >= 500) {
            // The node failed (or rests): as for any call. The part's calls go one by one,
            // elsewhere.
            Attempt a = classify(r, 0);
            if (!failure ||
                (!failure->node_fault && !failure->throttled && (a.node_fault || a.throttled)))
                failure = std::move(a);
            continue;
        }
        // HTTP 413: this batch was too large for the node, which says nothing of smaller ones.
        if (!elements && r.status == 413) continue;
        if (!elements) {
            // It answered, but not a batch: it does not take them. Single calls from now on.
            // Kept by the upstream itself: a reload that replaces it starts afresh, and no
            // list of pointers outlives one it removed.
            if (u->mark_no_batches())
                spdlog::info(
                    "chain {}: upstream {} does not answer batches (HTTP {}); it gets the "
                    "calls of client batches one by one",
                    config_.name, u->id(), r.status);
            continue;
        }
        answered = true;
        for (const auto& e : *elements) {
            // The part's ids are consecutive: an answer's id says its call.
            if (!e.id || *e.id < part.first_id || *e.id - part.first_id >= part.n) continue;
            auto reply =
                jsonrpc::parse_valid_reply(e.text, *e.id);  // split_batch_reply validated it
            if (!reply) continue;
            // A node error another node may not give (behind, rate-limited, unsupported): that
            // call goes alone, with failover.
            if (reply->is_error() && classify_rpc_error(reply->error.code, reply->error.message) !=
                                         ErrorClass::deterministic)
                continue;
            out.replies[part.from + static_cast<std::size_t>(*e.id - part.first_id)] =
                std::move(*reply);
        }
    }
    if (failure)
        u->call_failed(*failure);
    else if (answered)
        u->call_succeeded();
    if (!answered) co_return std::nullopt;
    co_return out;
}

// A worker of forward_batch: sends the parts not taken yet, one at a time, each once the node
// admits it. An answer is held until every part is in, so from then on it counts against the
// answers' budget (the HTTP client counted it only while it was read): once they pass its limit,
// the parts left are not sent.
asio::awaitable<void> ChainPool::send_parts(BatchSend* send) {
    Upstream* u = send->upstream;
    while (send->next < send->parts.size()) {
        BatchPart& part = send->parts[send->next++];
        if (send->budget && send->budget->spent) continue;
        if (send->first_admitted)
            send->first_admitted = false;  // the node's choice admitted this one
        else if (u->admit() != Upstream::Admission::admitted)
            continue;
        struct Release {
            Upstream* u;
            ~Release() { u->release(); }
        } release{u};
        std::string body = "[";
        body.reserve(160 * part.n + 2);
        for (std::size_t i = 0; i < part.n; ++i) {
            if (i) body.push_back(',');
            const BatchCall& call = send->calls[part.from + i];
            jsonrpc::append_upstream_request(body, part.first_id + i, call.method, *call.params);
        }
        body.push_back(']');
        PostOptions options{
            send->until, true, nullptr,
            send->budget ? std::make_shared<CallBudget>(CallBudget{send->budget}) : nullptr};
        const auto t0 = Clock::now();
        part.sent = true;
        part.result = co_await u->client().post(std::move(body), std::move(options));
        part.seconds = seconds_since(t0, Clock::now());
        if (send->budget) {
            AnswerBudget& held = *send->budget;
            held.used += part.result.body.size();
            if (held.used > held.limit) held.spent = true;
        }
    }
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
        // Real time, not clock_: the HTTP client's deadline (asio timers).
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
        // Real time, not clock_: the HTTP client's deadline (asio timers).
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
                                                  Clock::time_point deadline, std::string only,
                                                  std::shared_ptr<AnswerBudget> budget) {
    Forwarded out;
    std::vector<Ranked> ranked = rank(need);
    if (!only.empty()) {
        // Pinned (a filter's node): that one, whatever its health, unless it was taken out of
        // use; no other node knows the filter.
        for (auto& r : ranked)
            r.eligible = r.upstream->id() == only && !r.view.status.cordoned &&
                         r.view.status.health != Health::wrong_chain;
    }
    const std::vector<Ranked*> order = in_order(ranked);
    if (order.empty()) {
        // The reasons, for the error message (not worked out for every call).
        ranked = rank(need, true);
    }
    if (order.empty() && !only.empty()) {
        const auto pinned = std::find_if(ranked.begin(), ranked.end(),
                                         [&](const Ranked& r) { return r.upstream->id() == only; });
        out.error = jsonrpc::Error(
            jsonrpc::ErrorCode::resource_unavailable,
            pinned == ranked.end()
                ? fmt::format("the filter was made on upstream {}, which is no longer "
                              "configured; no other node knows it: create a new filter",
                              only)
                : fmt::format("the filter was made on upstream {}, which is {} ({}); no other "
                              "node knows it: create a new filter",
                              pinned->view.status.id, pinned->view.state, pinned->view.reason));
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
    const bool hedging = !write && only.empty() && fo.hedge_after.count() > 0;
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
            // Real time, not clock_: the HTTP client's deadline (asio timers).
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
                           // The upstream kept until its attempt ends: the call may be
                           // over, and a reload may have removed it, by then.
                           [race, u, keep = candidate->owner](std::exception_ptr, Attempt a) {
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
    // Real time, not clock_, for `deadline` and `hedge_at` below: race->wake waits for them.
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
        failures.push_back(Failure{u, std::move(a), u->status(false).head});
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
        Clock::now() >= deadline  // real time: the deadline the timers above waited for
            ? fmt::format("no upstream of chain {} answered in time{}{}", config_.name,
                          why.empty() ? "" : ": ", why)
            : fmt::format("every upstream of chain {} failed: {}", config_.name, why));
    co_return out;
}

}  // namespace gateway::upstream
