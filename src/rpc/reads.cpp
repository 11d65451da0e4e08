// The handler's read path: a call for the nodes answered from the cache while still true, from an
// identical call in flight, or by the pool; with what the gateway adds (the transactions it
// holds in "pending" nonces and by hash, the receipt of the attempt mined instead of a replaced
// one), and from the cache, marked stale, when no node can answer.

#include "handler_internal.hpp"
#include "node_calls.hpp"

#include "gateway/cache/chain_cache.hpp"
#include "gateway/cache/coalescer.hpp"
#include "gateway/txm/managed.hpp"
#include "gateway/txm/tx_manager.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace gateway::rpc {

// The nodes' answer to a call: from the cache while it is still true, else from an identical call
// already in flight, else from the pool (and then kept).
asio::awaitable<upstream::Forwarded> RpcHandler::fetch(CallContext& c) {
    const ChainRoute& route = c.route;
    const jsonrpc::Call& call = c.call;
    Outcome& out = c.out;
    const auto t0 = c.t0;
    const std::shared_ptr<upstream::AnswerBudget>& budget = c.budget;
    upstream::Forwarder& chain = *route.pool;
    const MethodKind kind = method_kind(call.method);
    const auto deadline = t0 + server_.request_timeout;
    std::optional<cache::ChainCache::Ticket> ticket;
    if (route.cache && kind == MethodKind::read) {
        if (auto head = chain.head()) route.cache->note_head(*head);
        ticket = route.cache->ticket(call.method, call.params);
    }
    std::optional<std::string> hit;
    if (ticket) hit = route.cache->fresh(*ticket, chain.ready());
    upstream::Forwarded f;
    // An answer from the cache or from another caller's flight counts against this request's
    // answers too: past their limit it is not this caller's.
    const auto within = [&](upstream::Forwarded& answer) {
        if (budget && answer.reply.result &&
            !fits(*budget, jsonrpc::result_response_size(call.id, *answer.reply.result)))
            answer = upstream::over_budget(budget->limit);
    };
    if (hit) {
        out.cached = true;
        f.outcome = upstream::Forwarded::Outcome::answered;
        f.reply = jsonrpc::Reply::success(std::move(*hit));
        within(f);
        if (f.over_budget) out.cached = false;
        co_return f;
    }
    if (!ticket || !route.cache->coalesce()) {
        f = co_await route.calls->forward(call.method, call.params, kind == MethodKind::write,
                                          deadline, budget);
        if (ticket && f.outcome == upstream::Forwarded::Outcome::answered && !f.reply.is_error())
            route.cache->put(*ticket, *f.reply.result);
        co_return f;
    }
    // Flights are per chain: the key starts with the chain's name.
    std::string key = chain.config().name;
    key.push_back('\0');
    key.append(ticket->key);
    cache::Coalescer::Joined joined = coalescer_->join(key, ticket->generation);
    if (!joined.leader) {
        if (budget && budget->spent) co_return upstream::over_budget(budget->limit);
        if (metrics_) metrics_->count_coalesced(chain.config().name, ticket->label);
        std::optional<upstream::Forwarded> shared =
            co_await coalescer_->wait(joined.flight, deadline);
        if (shared) {
            f = std::move(*shared);
            within(f);
        } else {
            // The leader's answer was its own (its request's limit): fetch ours.
            f = co_await route.calls->forward(call.method, call.params, false, deadline, budget);
        }
        co_return f;
    }
    // The leader answers the flight however this ends. A frame destroyed without finishing (at a
    // forced stop) only closes the flight: waiters see it at their deadline.
    struct Abandoned {
        std::shared_ptr<cache::Coalescer> coalescer;
        std::shared_ptr<cache::Coalescer::Flight> flight;
        ~Abandoned() {
            if (flight) coalescer->abandon(flight);
        }
    };
    Abandoned abandoned{coalescer_, joined.flight};
    f = co_await route.calls->forward(call.method, call.params, false, deadline, budget);
    if (f.outcome == upstream::Forwarded::Outcome::answered && !f.reply.is_error())
        route.cache->put(*ticket, *f.reply.result);
    // Before co_return: it moves `f` out before locals are destroyed. A refusal for this
    // request's limit is not the others' answer: they fetch their own.
    if (f.over_budget)
        coalescer_->give_up(joined.flight);
    else
        coalescer_->finish(joined.flight, f);
    abandoned.flight.reset();
    co_return f;
}

// A call for the nodes, with what the gateway adds: transactions it holds count in "pending"
// nonces and are found by hash; reads are kept, served again while still true, and served stale
// when no node can answer.
asio::awaitable<void> RpcHandler::forward(CallContext& c) {
    const ChainRoute& route = c.route;
    const jsonrpc::Call& call = c.call;
    const auth::Client& client = c.client;
    Outcome& out = c.out;
    std::string_view& outcome = c.outcome;
    const auto t0 = c.t0;
    const std::shared_ptr<upstream::AnswerBudget>& budget = c.budget;
    upstream::Forwarder& chain = *route.pool;
    const MethodKind kind = method_kind(call.method);
    upstream::Forwarded f = co_await fetch(c);
    const bool read = kind == MethodKind::read;
    if (route.txm && f.outcome != upstream::Forwarded::Outcome::uncertain && read) {
        const json::array* p = call.params.if_array();
        const json::string* first = p && !p->empty() ? p->at(0).if_string() : nullptr;
        const bool answered =
            f.outcome == upstream::Forwarded::Outcome::answered && !f.reply.is_error();
        if (call.method == "eth_getTransactionCount" && first && p->size() == 2 &&
            p->at(1) == "pending") {
            if (auto held = route.txm->pending_nonce(*first)) {
                // The node does not know what the gateway still holds.
                const std::optional<std::uint64_t> node = f.result_quantity();
                if (!answered || (node && *node < *held)) {
                    f.outcome = upstream::Forwarded::Outcome::answered;
                    f.reply.result = fmt::format("\"0x{:x}\"", *held);
                }
            }
        } else if (call.method == "eth_getTransactionByHash" && first &&
                   (!answered || *f.reply.result == "null")) {
            if (auto held = route.txm->pending_transaction_json(*first, owner_of(client))) {
                f.outcome = upstream::Forwarded::Outcome::answered;
                f.reply.result = std::move(*held);
            }
        }
    }
    if (route.managed && call.method == "eth_getTransactionReceipt" &&
        f.outcome == upstream::Forwarded::Outcome::answered && !f.reply.is_error() &&
        *f.reply.result == "null") {
        // A hash the gateway replaced with higher fees: the receipt of the attempt mined instead.
        const json::array* p = call.params.if_array();
        const json::string* hash = p && p->size() == 1 ? p->at(0).if_string() : nullptr;
        std::string asked;
        if (hash) asked = *hash;
        std::optional<std::string> other;
        if (hash) other = co_await route.managed->mined_instead(std::move(asked));
        if (other) {
            json::array params;
            params.emplace_back(*other);
            upstream::Forwarded g = co_await chain.forward(call.method, std::move(params), false,
                                                           t0 + server_.request_timeout);
            if (g.outcome == upstream::Forwarded::Outcome::answered && !g.reply.is_error() &&
                *g.reply.result != "null") {
                f = std::move(g);
                out.replaced_by = *other;
            }
        }
    }
    if (route.cache && read && f.outcome == upstream::Forwarded::Outcome::unavailable) {
        std::optional<cache::ChainCache::Stale> hit;
        if (auto ticket = route.cache->ticket(call.method, call.params))
            hit = route.cache->stale(*ticket);
        if (hit && budget && !fits(*budget, jsonrpc::result_response_size(call.id, hit->result))) {
            f = upstream::over_budget(budget->limit);  // answered below, as a refusal
        } else if (hit) {
            if (metrics_) metrics_->count_stale_answer(chain.config().name);
            out.stale_age = hit->age;
            outcome = "stale";
            out.response = jsonrpc::result_response(call.id, hit->result);
            co_return;
        }
    }
    switch (f.outcome) {
        case upstream::Forwarded::Outcome::answered:
            out.upstream = std::move(f.upstream);
            if (f.reply.is_error()) {
                outcome = "rpc_error";
                out.response = jsonrpc::error_response(call.id, f.reply.error);
            } else {
                out.response = jsonrpc::result_response(call.id, *f.reply.result);
            }
            break;
        case upstream::Forwarded::Outcome::unavailable:
            outcome = "unavailable";
            out.unavailable = true;
            out.response = jsonrpc::error_response(call.id, f.error);
            break;
        case upstream::Forwarded::Outcome::uncertain:
            // Not a 503: something retrying 503s elsewhere could execute the write twice.
            outcome = "uncertain";
            out.response = jsonrpc::error_response(call.id, f.error);
            break;
    }
    if (f.outcome != upstream::Forwarded::Outcome::answered)
        spdlog::debug("chain {}: {} not answered: {}", chain.config().name,
                      method_label(call.method), f.error.message);
}

}  // namespace gateway::rpc
