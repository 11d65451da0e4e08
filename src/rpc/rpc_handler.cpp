#include "gateway/rpc/rpc_handler.hpp"

#include "gateway/metrics/metrics.hpp"
#include "gateway/rpc/methods.hpp"
#include "gateway/upstream/pool.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/experimental/parallel_group.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <chrono>

namespace gateway::rpc {

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;

namespace {

struct InFlight {
    explicit InFlight(metrics::Metrics* m) : m_(m) {
        if (m_) m_->add_in_flight(1);
    }
    ~InFlight() {
        if (m_) m_->add_in_flight(-1);
    }
    InFlight(const InFlight&) = delete;
    InFlight& operator=(const InFlight&) = delete;
    metrics::Metrics* m_;
};

http::Response error_reply(unsigned status, const jsonrpc::Error& error) {
    http::Response r;
    r.status = status;
    r.body = jsonrpc::error_response(jsonrpc::kNullId, error);
    return r;
}

}  // namespace

// The state a batch's workers share; lives in the frame of the coroutine that waits for them all.
struct RpcHandler::Batch {
    upstream::ChainPool* chain;
    const std::vector<jsonrpc::Entry>* entries;
    std::vector<Outcome> outcomes;
    // Workers share the session's strand, so these need no lock.
    std::size_t next = 0;   // the next entry a worker takes
    std::size_t bytes = 0;  // the size of the answers so far
};

RpcHandler::RpcHandler(const config::ServerConfig& server, std::vector<upstream::ChainPool*> chains,
                       metrics::Metrics* metrics)
    : server_(server), chains_(std::move(chains)), metrics_(metrics) {}

std::string RpcHandler::refusal_body(unsigned status, std::string_view message) {
    const auto code = status == 413 || status == 431 ? jsonrpc::ErrorCode::limit_exceeded
                                                     : jsonrpc::ErrorCode::invalid_request;
    return jsonrpc::error_response(jsonrpc::kNullId, jsonrpc::Error(code, std::string(message)));
}

asio::awaitable<RpcHandler::Outcome> RpcHandler::execute(upstream::ChainPool& chain,
                                                         const jsonrpc::Entry& entry) {
    const auto t0 = Clock::now();
    const std::string& chain_name = chain.config().name;
    Outcome out;
    if (const auto* invalid = std::get_if<jsonrpc::InvalidCall>(&entry)) {
        out.response = jsonrpc::error_response(invalid->id, invalid->error);
        if (metrics_) metrics_->observe_call(chain_name, "other", "invalid", 0);
        co_return out;
    }
    const auto& call = std::get<jsonrpc::Call>(entry);
    const MethodKind kind = method_kind(call.method);
    std::string_view outcome = "ok";

    if (auto refusal = chain.methods().refusal(call.method)) {
        outcome = "denied";
        out.response = jsonrpc::error_response(
            call.id, jsonrpc::Error(jsonrpc::ErrorCode::method_not_found, std::move(*refusal)));
    } else if (kind == MethodKind::local) {
        // eth_chainId is the only local method so far: the configured chain id, which the
        // health probes hold every upstream to.
        out.response =
            jsonrpc::result_response(call.id, fmt::format("\"0x{:x}\"", chain.config().chain_id));
    } else {
        upstream::Forwarded f = co_await chain.forward(
            call.method, call.params, kind == MethodKind::write, t0 + server_.request_timeout);
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
            spdlog::debug("chain {}: {} not answered: {}", chain_name, method_label(call.method),
                          f.error.message);
    }
    spdlog::debug("chain {}: {} -> {} from {} in {} us", chain_name, method_label(call.method),
                  outcome, out.upstream.empty() ? "-" : out.upstream,
                  std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - t0).count());
    if (metrics_)
        metrics_->observe_call(chain_name, method_label(call.method), outcome,
                               std::chrono::duration<double>(Clock::now() - t0).count());
    if (call.notification) out.response.clear();
    co_return out;
}

asio::awaitable<void> RpcHandler::batch_worker(RpcHandler* self, Batch* batch) {
    const std::size_t limit = self->server_.max_batch_response_bytes;
    while (batch->next < batch->entries->size()) {
        const std::size_t i = batch->next++;
        const jsonrpc::Entry& entry = (*batch->entries)[i];
        if (batch->bytes > limit) {
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
        batch->outcomes[i] = co_await self->execute(*batch->chain, entry);
        batch->bytes += batch->outcomes[i].response.size();
    }
}

asio::awaitable<http::Response> RpcHandler::operator()(http::Request& request) {
    InFlight in_flight(metrics_);

    // Route: "/" is the first chain, "/<name>" (with or without a trailing slash) a named one.
    std::string_view path = request.path();
    if (path.size() > 1 && path.back() == '/') path.remove_suffix(1);
    upstream::ChainPool* chain = nullptr;
    if (path == "/" || path.empty()) {
        chain = chains_.front();
    } else {
        for (auto* c : chains_)
            if (path.substr(1) == c->config().name) chain = c;
    }
    if (!chain) {
        std::string names;
        for (auto* c : chains_) names += (names.empty() ? "" : ", ") + c->config().name;
        co_return error_reply(
            404, jsonrpc::Error(
                     jsonrpc::ErrorCode::resource_not_found,
                     fmt::format("unknown chain path '{}': this gateway serves {} (POST /<chain>; "
                                 "POST / is {})",
                                 path.substr(0, 128), names, chains_.front()->config().name)));
    }
    if (request.method != "POST") {
        http::Response r = error_reply(405, jsonrpc::Error(jsonrpc::ErrorCode::invalid_request,
                                                           "JSON-RPC requests must use HTTP POST"));
        r.headers.emplace_back("Allow", "POST");
        co_return r;
    }

    auto parsed =
        jsonrpc::parse_request(request.body, jsonrpc::ParseLimits{server_.max_batch_size});
    if (!parsed) {
        if (metrics_) metrics_->observe_call(chain->config().name, "other", "invalid", 0);
        co_return error_reply(200, parsed.error());
    }

    std::vector<Outcome> outcomes;
    if (parsed->entries.size() == 1 && !parsed->batch) {
        outcomes.push_back(co_await execute(*chain, parsed->entries.front()));
    } else {
        Batch batch{chain, &parsed->entries, std::vector<Outcome>(parsed->entries.size())};
        const std::size_t workers = std::min(server_.batch_concurrency, parsed->entries.size());
        auto ex = co_await asio::this_coro::executor;
        using Op = decltype(asio::co_spawn(ex, batch_worker(this, &batch), asio::deferred));
        std::vector<Op> ops;
        ops.reserve(workers);
        for (std::size_t w = 0; w < workers; ++w)
            ops.push_back(asio::co_spawn(ex, batch_worker(this, &batch), asio::deferred));
        co_await asio::experimental::make_parallel_group(std::move(ops))
            .async_wait(asio::experimental::wait_for_all(), asio::use_awaitable);
        outcomes = std::move(batch.outcomes);
    }

    http::Response response;
    std::vector<std::string> bodies;
    std::vector<std::string> upstreams;  // each once, in the order of first answer
    bool all_unavailable = true;
    for (auto& o : outcomes) {
        if (!o.upstream.empty() &&
            std::find(upstreams.begin(), upstreams.end(), o.upstream) == upstreams.end())
            upstreams.push_back(o.upstream);
        if (o.response.empty()) continue;  // a notification
        all_unavailable = all_unavailable && o.unavailable;
        bodies.push_back(std::move(o.response));
    }
    if (!upstreams.empty())
        response.headers.emplace_back(std::string(kUpstreamHeader),
                                      fmt::format("{}", fmt::join(upstreams, ",")));
    if (bodies.empty()) {
        response.status = 204;  // only notifications: JSON-RPC answers nothing at all
        co_return response;
    }
    response.status = all_unavailable ? 503 : 200;
    response.body = parsed->batch ? jsonrpc::batch_response(bodies) : std::move(bodies.front());
    co_return response;
}

}  // namespace gateway::rpc
