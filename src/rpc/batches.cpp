// The handler's batches: plain reads answered from the cache or sent upstream as one batch, the
// rest by a few workers call by call, and the answers kept within server.max_batch_response_bytes.

#include "handler_internal.hpp"

#include "gateway/cache/chain_cache.hpp"

#include <fmt/format.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/experimental/parallel_group.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/container/small_vector.hpp>

#include <algorithm>

namespace gateway::rpc {

// A batch: its plain reads first, from the cache and as one upstream batch (forward_batched),
// then what is left by server.batch_concurrency workers, each call as a call of its own.
asio::awaitable<std::vector<RpcHandler::Outcome>> RpcHandler::run_batch(
    const ChainRoute& chain, const auth::Client& client, std::string_view source,
    const std::vector<jsonrpc::Entry>& entries, std::string_view idempotency_key) {
    Batch batch{&chain,
                &client,
                source,
                &entries,
                std::vector<Outcome>(entries.size()),
                idempotency_key,
                std::vector<bool>(entries.size(), false)};
    batch.budget->limit = server_.max_batch_response_bytes;
    co_await forward_batched(chain, batch);
    // Workers only for the calls left (none when the cache and one upstream batch answered all).
    const std::size_t left =
        static_cast<std::size_t>(std::count(batch.done.begin(), batch.done.end(), false));
    const std::size_t workers = std::min(server_.batch_concurrency, left);
    if (workers == 0) co_return std::move(batch.outcomes);
    auto ex = co_await asio::this_coro::executor;
    using Op = decltype(asio::co_spawn(ex, batch_worker(this, &batch), asio::deferred));
    std::vector<Op> ops;
    ops.reserve(workers);
    for (std::size_t w = 0; w < workers; ++w)
        ops.push_back(asio::co_spawn(ex, batch_worker(this, &batch), asio::deferred));
    co_await asio::experimental::make_parallel_group(std::move(ops))
        .async_wait(asio::experimental::wait_for_all(), asio::use_awaitable);
    co_return std::move(batch.outcomes);
}

// Whether a call of a client's batch may go upstream inside one batch: a plain read, which the
// gateway neither answers itself nor adds to (pending nonces, held transactions, replaced
// receipts), nor routes by its own rules (filters, split log ranges, block numbers that never go
// back).
bool RpcHandler::batchable(const ChainRoute& route, const jsonrpc::Call& call,
                           const auth::Client& client) const {
    const std::string& m = call.method;
    if (method_kind(m) != MethodKind::read || methods_of(route)->refusal(m) ||
        client.method_refusal(m) || unserved_reason(m))
        return false;
    if (m == "eth_blockNumber" || m == "eth_getLogs" || m == "eth_subscribe" ||
        m == "eth_unsubscribe" || m.find("Filter") != std::string::npos)
        return false;
    if (route.txm && (m == "eth_getTransactionCount" || m == "eth_getTransactionByHash"))
        return false;
    if (route.managed && m == "eth_getTransactionReceipt") return false;
    return true;
}

// Before the workers: the batch's plain reads answered from the cache, and the rest of them sent
// to one node as one batch. What that leaves (calls it did not answer, everything else) the
// workers do one by one.
asio::awaitable<void> RpcHandler::forward_batched(const ChainRoute& route, Batch& batch) {
    upstream::Forwarder& chain = *route.pool;
    const std::string& chain_name = chain.config().name;
    const auto t0 = Clock::now();
    const bool head_known = chain.ready();
    if (route.cache)
        if (auto head = chain.head()) route.cache->note_head(*head);
    std::vector<std::size_t> index;
    std::vector<upstream::BatchCall> calls;
    std::vector<std::optional<cache::ChainCache::Ticket>> tickets;
    index.reserve(batch.entries->size());
    calls.reserve(batch.entries->size());
    tickets.reserve(batch.entries->size());
    // The call that does not fit: -32005, and the rest of the batch is not sent either.
    const auto refuse_over_budget = [&](std::size_t i, const jsonrpc::Call& call) {
        const jsonrpc::Error error = upstream::over_budget(batch.budget->limit).reply.error;
        batch.outcomes[i].response = jsonrpc::error_response(call.id, error);
        if (metrics_) {
            metrics_->observe_call(chain_name, method_label(call.method), "rpc_error", 0);
            metrics_->count_rpc_error(chain_name, error.code);
        }
        count_client_call(*batch.client, "rpc_error");
        if (call.notification) batch.outcomes[i].response.clear();
        batch.done[i] = true;
    };
    // The calls answered here are counted in metrics by method and outcome, once for each (they
    // are answered together: from the cache, then by the upstream batch), not once a call.
    struct Tally {
        std::string_view method;  // a bounded label (method_label)
        std::string_view outcome;
        std::size_t calls = 0;
    };
    boost::container::small_vector<Tally, 4> tally;
    const auto flush = [&] {
        const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
        for (const Tally& t : tally) {
            if (metrics_) metrics_->observe_call(chain_name, t.method, t.outcome, seconds, t.calls);
            count_client_call(*batch.client, t.outcome, t.calls);
        }
        tally.clear();
    };
    const auto answered = [&](std::size_t i, const jsonrpc::Call& call, std::string_view outcome) {
        Outcome& out = batch.outcomes[i];
        const std::string_view method = method_label(call.method);
        auto t = std::find_if(tally.begin(), tally.end(), [&](const Tally& t) {
            return t.method == method && t.outcome == outcome;
        });
        if (t == tally.end()) t = tally.insert(tally.end(), Tally{method, outcome, 0});
        ++t->calls;
        batch.budget->used += out.response.size();
        if (call.notification) out.response.clear();
        batch.done[i] = true;
    };
    // Whether a method may go in the upstream batch depends on the method alone here (one chain,
    // one client): asked once for each method, not once for each call.
    struct Known {
        std::string_view method;
        bool batchable;
    };
    boost::container::small_vector<Known, 4> known;
    const auto may_batch = [&](const jsonrpc::Call& call) {
        for (const Known& k : known)
            if (k.method == call.method) return k.batchable;
        const bool b = batchable(route, call, *batch.client);
        if (known.size() < 16) known.push_back(Known{call.method, b});
        return b;
    };
    for (std::size_t i = 0; i < batch.entries->size(); ++i) {
        const auto* call = std::get_if<jsonrpc::Call>(&(*batch.entries)[i]);
        if (!call || !may_batch(*call)) continue;
        std::optional<cache::ChainCache::Ticket> ticket;
        if (route.cache) ticket = route.cache->ticket(call->method, call->params);
        std::optional<std::string> hit;
        if (ticket) hit = route.cache->fresh(*ticket, head_known);
        if (hit) {
            // Kept only while the batch's answers stay within their limit; past it, refused.
            if (fits(*batch.budget, jsonrpc::result_response_size(call->id, *hit))) {
                batch.outcomes[i].cached = true;
                batch.outcomes[i].response = jsonrpc::result_response(call->id, *hit);
                answered(i, *call, "ok");
            } else {
                refuse_over_budget(i, *call);
            }
            continue;
        }
        index.push_back(i);
        calls.push_back(
            upstream::BatchCall{call->method, &call->params});  // batch.entries lives on
        tickets.push_back(std::move(ticket));
    }
    flush();                          // the cache's answers
    if (calls.size() < 2) co_return;  // one call gains nothing from a batch
    // The upstream batch's answer is checked against the limit while it arrives, but on a budget
    // of its own: all of it passing the limit does not mean each call would, so the batch's own
    // budget is not spent by it (its calls then go one by one).
    auto together = std::make_shared<upstream::AnswerBudget>(
        upstream::AnswerBudget{batch.budget->used, batch.budget->limit});
    std::optional<upstream::BatchForwarded> r =
        co_await chain.forward_batch(std::move(calls), t0 + server_.request_timeout, together);
    if (!r) co_return;
    std::vector<cache::ChainCache::Put> kept;  // the answers the cache keeps, under one lock
    if (route.cache) kept.reserve(index.size());
    for (std::size_t k = 0; k < index.size(); ++k) {
        if (!r->replies[k]) continue;
        const std::size_t i = index[k];
        const auto& call = std::get<jsonrpc::Call>((*batch.entries)[i]);
        Outcome& out = batch.outcomes[i];
        const jsonrpc::Reply& reply = *r->replies[k];
        std::string response = reply_response(call.id, reply);
        if (!reply.is_error() && tickets[k]) kept.push_back({&*tickets[k], &*reply.result});
        if (!fits(*batch.budget, response.size())) {
            refuse_over_budget(i, call);
            continue;
        }
        out.upstream = r->upstream;
        out.response = std::move(response);
        if (reply.is_error() && metrics_) metrics_->count_rpc_error(chain_name, reply.error.code);
        answered(i, call, reply.is_error() ? "rpc_error" : "ok");
    }
    flush();
    if (!kept.empty()) route.cache->put_all(kept);
}

asio::awaitable<void> RpcHandler::batch_worker(RpcHandler* self, Batch* batch) {
    const std::size_t limit = batch->budget->limit;
    while (batch->next < batch->entries->size()) {
        const std::size_t i = batch->next++;
        if (batch->done[i]) continue;
        const jsonrpc::Entry& entry = (*batch->entries)[i];
        if (batch->budget->used > limit || batch->budget->spent) {
            // Like geth's batch response limit: the calls left are answered with an error rather
            // than holding an unbounded answer in memory.
            const auto* call = std::get_if<jsonrpc::Call>(&entry);
            if (call && call->notification) continue;
            batch->outcomes[i].response = jsonrpc::error_response(
                call ? call->id : std::get<jsonrpc::InvalidCall>(entry).id,
                jsonrpc::Error(jsonrpc::ErrorCode::limit_exceeded,
                               fmt::format("batch answer too large: over {} bytes "
                                           "(server.max_batch_response_bytes); split the batch",
                                           limit)));
            continue;
        }
        batch->outcomes[i] = co_await self->execute(*batch->chain, entry, batch->idempotency_key,
                                                    *batch->client, batch->source, batch->budget);
        batch->budget->used += batch->outcomes[i].response.size();
    }
}

}  // namespace gateway::rpc
