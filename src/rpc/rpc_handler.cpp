#include "gateway/rpc/rpc_handler.hpp"

#include "handler_internal.hpp"
#include "node_calls.hpp"

#include "gateway/cache/chain_cache.hpp"
#include "gateway/cache/coalescer.hpp"
#include "gateway/util/text.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include <boost/container/small_vector.hpp>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <span>
#include <variant>

namespace gateway::rpc {

RpcHandler::RpcHandler(const config::ServerConfig& server, std::vector<ChainRoute> chains,
                       auth::Authenticator& auth, metrics::Metrics* metrics)
    : server_(server),
      chains_(std::move(chains)),
      auth_(auth),
      metrics_(metrics),
      coalescer_(std::make_shared<cache::Coalescer>()) {
    for (auto& c : chains_) {
        if (!c.methods) c.methods = std::make_shared<MethodPolicy>(c.pool->config().methods);
        if (!c.calls) c.calls = std::make_shared<NodeCalls>(*c.pool, metrics_);
    }
}

RpcHandler::~RpcHandler() = default;

std::shared_ptr<const MethodPolicy> RpcHandler::methods_of(const ChainRoute& route) const {
    std::lock_guard lock(methods_mu_);
    return route.methods;
}

bool RpcHandler::reconfigure_methods(std::string_view chain, const config::MethodsConfig& methods) {
    auto policy = std::make_shared<const MethodPolicy>(methods);
    for (auto& c : chains_)
        if (c.pool->config().name == chain) {
            std::lock_guard lock(methods_mu_);
            c.methods = std::move(policy);
            return true;
        }
    return false;
}

void RpcHandler::count_client_call(const auth::Client& client, std::string_view outcome,
                                   std::size_t calls) const {
    if (metrics_ && !client.anonymous())
        metrics_->count_client_call(client.label(), outcome, calls);
}

std::string RpcHandler::refusal_body(unsigned status, std::string_view message) {
    const auto code = status == 413 || status == 431 || status == 503
                          ? jsonrpc::ErrorCode::limit_exceeded
                          : jsonrpc::ErrorCode::invalid_request;
    return jsonrpc::error_response(jsonrpc::kNullId, jsonrpc::Error(code, std::string(message)));
}

namespace {

bool is_address(std::string_view s) {
    return s.size() == 42 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X') &&
           std::all_of(s.begin() + 2, s.end(),
                       [](char c) { return std::isxdigit(static_cast<unsigned char>(c)) != 0; });
}

// Names the `from` as the client sent it: cut to the length of an address, an address with
// junk after it would read as that address (one the client may well use), and a 32-byte
// padded one as its first 20 bytes.
std::string sender_refusal(const auth::Client& client, std::string_view from) {
    if (is_address(from))
        return fmt::format(
            "client {} may not send from {} (not in its senders; eth_accounts lists the ones it "
            "may use)",
            client.id(), from);
    constexpr std::size_t kShown = 80;
    const std::string_view shown = util::utf8_prefix(from, kShown);
    return fmt::format(
        "client {} may not send from '{}{}': not an address (0x and 40 hex digits; "
        "eth_accounts lists the ones it may use)",
        client.id(), shown, shown.size() < from.size() ? "\u2026" : "");
}

}  // namespace

asio::awaitable<RpcHandler::Outcome> RpcHandler::execute(
    const ChainRoute& route, const jsonrpc::Entry& entry, std::string_view idempotency_key,
    const auth::Client& client, std::string_view source,
    std::shared_ptr<upstream::AnswerBudget> budget) {
    const auto t0 = Clock::now();
    const std::string& chain_name = route.pool->config().name;
    Outcome out;
    if (const auto* invalid = std::get_if<jsonrpc::InvalidCall>(&entry)) {
        out.response = jsonrpc::error_response(invalid->id, invalid->error);
        if (metrics_) metrics_->observe_call(chain_name, "other", "invalid", 0);
        count_client_call(client, "invalid");
        co_return out;
    }
    const auto& call = std::get<jsonrpc::Call>(entry);
    CallContext c{route, call, client, source, idempotency_key, t0, std::move(budget), out};

    std::optional<std::string> refusal = unserved_reason(call.method);
    if (!refusal) refusal = methods_of(route)->refusal(call.method);
    if (!refusal) refusal = client.method_refusal(call.method);
    std::optional<std::string_view> sender;
    if (is_managed_send(call.method)) sender = sender_param(call.params);
    if (refusal) {
        c.outcome = "denied";
        out.response = jsonrpc::error_response(
            call.id, jsonrpc::Error(jsonrpc::ErrorCode::method_not_found, std::move(*refusal)));
    } else if (sender && !client.may_send_from(chain_name, *sender)) {
        c.outcome = "denied";
        out.response = jsonrpc::error_response(
            call.id,
            jsonrpc::Error(jsonrpc::ErrorCode::unauthorized, sender_refusal(client, *sender)));
    } else {
        const Route answer = route_of(call.method);
        co_await (this->*answer)(c);
    }
    // A call that may have changed state: answers tied to the head are not given again.
    if (route.cache && method_kind(call.method) == MethodKind::write) route.cache->note_write();
    std::string_view from = "-";
    if (!out.upstream.empty()) from = out.upstream;
    if (out.cached) from = "cache";
    spdlog::debug("chain {}: {} -> {} from {} in {} us", chain_name, method_label(call.method),
                  c.outcome, from,
                  std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - t0).count());
    if (metrics_) {
        metrics_->observe_call(chain_name, method_label(call.method), c.outcome,
                               std::chrono::duration<double>(Clock::now() - t0).count());
        // Only an answer the outcome calls an error is looked at: a result is never searched.
        if (c.outcome != "ok")
            if (const auto code = jsonrpc::error_code_of(out.response))
                metrics_->count_rpc_error(chain_name, *code);
    }
    count_client_call(client, c.outcome);
    if (call.notification) out.response.clear();
    co_return out;
}

namespace {

// A request's path: "/" is the first chain, "/<name>" (with or without a trailing slash) a named
// one, "/<name>/<key>" a named one with the client's key (for wallets that cannot set headers).
struct Target {
    bool root = false;
    std::string_view chain;
    std::string_view key;
};

Target target_of(const http::Request& request) {
    std::string_view path = request.path();
    if (path.size() > 1 && path.back() == '/') path.remove_suffix(1);
    Target t;
    t.root = path == "/" || path.empty();
    t.chain = path.empty() ? path : path.substr(1);
    if (const auto slash = t.chain.find('/'); slash != std::string_view::npos) {
        t.key = t.chain.substr(slash + 1);
        t.chain = t.chain.substr(0, slash);
    }
    return t;
}

}  // namespace

// The caller, from its key or token; a 401 when there is none or it is not valid.
asio::awaitable<std::variant<std::shared_ptr<const auth::Client>, http::Response>>
RpcHandler::identify(const http::Request& request) {
    using Identity = std::variant<std::shared_ptr<const auth::Client>, http::Response>;
    if (!auth_.required()) co_return Identity(auth_.anonymous());
    if (request.principal)  // the head check did it
        co_return Identity(std::static_pointer_cast<const auth::Client>(request.principal));
    std::string_view credential = auth::bearer_token(request.header("authorization"));
    auth::Presented where = auth::Presented::header;
    if (credential.empty()) {
        credential = target_of(request).key;
        where = auth::Presented::path;
    }
    auth::Verdict verdict = co_await auth_.authenticate(credential, where);
    if (verdict.outcome == auth::Outcome::ok) co_return Identity(std::move(verdict.client));
    http::Response r = error_reply(
        401, jsonrpc::Error(jsonrpc::ErrorCode::unauthorized, std::move(verdict.message)));
    r.headers.emplace_back("WWW-Authenticate",
                           verdict.outcome == auth::Outcome::missing
                               ? "Bearer realm=\"chain-gateway\""
                               : "Bearer realm=\"chain-gateway\", error=\"invalid_token\"");
    co_return Identity(std::move(r));
}

asio::awaitable<std::optional<http::Response>> RpcHandler::check_head(http::Request& request) {
    auto identity = co_await identify(request);
    if (auto* refused = std::get_if<http::Response>(&identity)) co_return std::move(*refused);
    request.principal = std::move(std::get<std::shared_ptr<const auth::Client>>(identity));
    co_return std::nullopt;
}

asio::awaitable<http::Response> RpcHandler::operator()(http::Request& request) {
    InFlight in_flight(metrics_);
    const Target target = target_of(request);

    // Who is calling, before anything else is said: nothing about the chains to a stranger.
    // Without auth everyone is the anonymous client (no coroutine frame to say so).
    std::shared_ptr<const auth::Client> client;
    if (!auth_.required()) {
        client = auth_.anonymous();
    } else {
        auto identity = co_await identify(request);
        if (auto* refused = std::get_if<http::Response>(&identity)) co_return std::move(*refused);
        client = std::move(std::get<std::shared_ptr<const auth::Client>>(identity));
    }
    const ChainRoute* chain = nullptr;
    if (target.root) {
        chain = &chains_.front();
    } else if (target.key.empty() || auth_.required()) {  // without auth, "/<name>/<more>" is none
        for (const auto& c : chains_)
            if (target.chain == c.pool->config().name) chain = &c;
    }
    if (!chain) {
        std::string names;
        for (const auto& c : chains_) names += (names.empty() ? "" : ", ") + c.pool->config().name;
        // The path is quoted only when it cannot be a key (keys have at least 16 characters).
        std::string asked = "'" + std::string(target.chain) + "'";
        if (!target.key.empty() || target.chain.size() >= 16)
            asked = "(not shown: it may hold a key)";
        co_return error_reply(
            404, jsonrpc::Error(jsonrpc::ErrorCode::resource_not_found,
                                fmt::format("unknown chain path {}: this gateway serves {} (POST "
                                            "/<chain>; POST / is {})",
                                            asked, names, chains_.front().pool->config().name)));
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
        if (metrics_) metrics_->observe_call(chain->pool->config().name, "other", "invalid", 0);
        count_client_call(*client, "invalid");
        co_return error_reply(200, parsed.error());
    }
    // Each call of a batch counts against the client's rate; a batch goes whole or not at all.
    // The request's credential check was counted `ok` (gateway_auth_requests_total counts each
    // request once); its refused calls are counted as the client's, `rate_limited`.
    const std::size_t calls = parsed->entries.size();
    if (auto throttle = auth_.admit(*client, calls)) {
        count_client_call(*client, "rate_limited", calls);
        const auto seconds =
            std::max<std::int64_t>(1, std::chrono::duration_cast<std::chrono::seconds>(
                                          throttle->retry_after + std::chrono::milliseconds(999))
                                          .count());
        std::string message =
            throttle->too_large
                ? fmt::format(
                      "rate limit: this batch has {} calls, more than client {} may ever "
                      "send at once: at most {} calls per batch (each call counts "
                      "against its max_rps); split the batch",
                      calls, client->id(), throttle->max_calls)
                : fmt::format(
                      "rate limit: client {} is over its calls per second (each call of "
                      "a batch counts); retry in {} s",
                      client->id(), seconds);
        http::Response r = error_reply(
            429, jsonrpc::Error(jsonrpc::ErrorCode::limit_exceeded, std::move(message)));
        // A batch too large ever to pass gets no Retry-After: waiting would not help.
        if (!throttle->too_large) r.headers.emplace_back("Retry-After", std::to_string(seconds));
        co_return r;
    }

    const std::string source = source_of(*client, request.remote);
    // A single call's outcome is kept here, a batch's in `many`: no vector for the one.
    Outcome one;
    std::vector<Outcome> many;
    std::span<Outcome> outcomes(&one, 1);
    if (parsed->entries.size() == 1 && !parsed->batch) {
        one = co_await execute(*chain, parsed->entries.front(), request.header(kIdempotencyHeader),
                               *client, source);
    } else {
        many = co_await run_batch(*chain, *client, source, parsed->entries,
                                  request.header(kIdempotencyHeader));
        outcomes = many;
    }

    http::Response response;
    std::vector<std::string> bodies;  // a batch's answers
    std::string body;                 // a single call's answer
    // Each upstream once, in the order of first answer (the outcomes keep the names).
    boost::container::small_vector<std::string_view, 4> upstreams;
    bool all_unavailable = true;
    bool queued = false;
    std::optional<std::chrono::milliseconds> stale_age;
    std::vector<std::string> replaced_by;
    std::size_t cached = 0, answered = 0;  // calls answered from the cache, and by anyone
    for (auto& o : outcomes) {
        if (o.cached) ++cached;
        if (o.cached || !o.upstream.empty()) ++answered;
        queued = queued || o.queued;
        if (!o.replaced_by.empty()) replaced_by.push_back(o.replaced_by);
        if (o.stale_age && (!stale_age || *o.stale_age > *stale_age)) stale_age = o.stale_age;
        if (!o.upstream.empty() &&
            std::find(upstreams.begin(), upstreams.end(), o.upstream) == upstreams.end())
            upstreams.push_back(o.upstream);
        if (o.response.empty()) continue;  // a notification
        all_unavailable = all_unavailable && (o.unavailable || o.store_failed);
        if (parsed->batch)
            bodies.push_back(std::move(o.response));
        else
            body = std::move(o.response);
    }
    if (!upstreams.empty())
        response.headers.emplace_back(std::string(kUpstreamHeader),
                                      fmt::format("{}", fmt::join(upstreams, ",")));
    if (queued) response.headers.emplace_back(std::string(kQueuedHeader), "true");
    if (cached)
        response.headers.emplace_back(std::string(kCacheHeader),
                                      cached == answered ? "hit" : "partial");
    if (!replaced_by.empty())
        response.headers.emplace_back(std::string(kReplacedByHeader),
                                      fmt::format("{}", fmt::join(replaced_by, ",")));
    if (stale_age) {
        response.headers.emplace_back(std::string(kStaleHeader), "true");
        response.headers.emplace_back(std::string(kDataAgeHeader),
                                      std::to_string(stale_age->count()));
    }
    if (parsed->batch ? bodies.empty() : body.empty()) {
        response.status = 204;  // only notifications: JSON-RPC answers nothing at all
        co_return response;
    }
    response.status = all_unavailable ? 503 : 200;
    response.body = parsed->batch ? jsonrpc::batch_response(bodies) : std::move(body);
    co_return response;
}

}  // namespace gateway::rpc
