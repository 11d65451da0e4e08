#include "gateway/rpc/rpc_handler.hpp"

#include "gateway/auth/auth.hpp"
#include "gateway/cache/chain_cache.hpp"
#include "gateway/cache/coalescer.hpp"
#include "gateway/eth/hex.hpp"
#include "gateway/jsonrpc/methods.hpp"
#include "gateway/metrics/metrics.hpp"
#include "gateway/txm/managed.hpp"
#include "gateway/txm/tx_manager.hpp"
#include "gateway/upstream/pool.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/experimental/parallel_group.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <algorithm>
#include <chrono>
#include <variant>

namespace gateway::rpc {

namespace asio = boost::asio;
namespace json = boost::json;
using Clock = std::chrono::steady_clock;
using jsonrpc::block_need;
using jsonrpc::BlockNeed;
using jsonrpc::method_kind;
using jsonrpc::method_label;
using jsonrpc::MethodKind;
using jsonrpc::parse_quantity;
using jsonrpc::unserved_reason;

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

// The JSON-RPC response for a reply made here. (Outside the coroutines: GCC 12 mishandles
// conditional expressions building strings inside them.)
std::string reply_response(const std::string& id, const jsonrpc::Reply& r) {
    if (r.is_error()) return jsonrpc::error_response(id, r.error);
    return jsonrpc::result_response(id, *r.result);
}

http::Response error_reply(unsigned status, const jsonrpc::Error& error) {
    http::Response r;
    r.status = status;
    r.body = jsonrpc::error_response(jsonrpc::kNullId, error);
    return r;
}

// EIP-7966: eth_sendRawTransactionSync's answer when the transaction is not mined in time (the
// hash is its data).
constexpr int kNotMinedInTime = 4;
constexpr std::string_view kNotMinedInTimeMessage =
    "the transaction was accepted but not mined within the timeout; it stays in the gateway's "
    "journal: follow it by its hash";

// Who a record belongs to, for a caller who may see only its own: nullopt sees everything.
std::optional<std::string_view> owner_of(const auth::Client& client) {
    if (client.anonymous()) return std::nullopt;
    return std::string_view(client.id());
}

// Whether an answer of `size` bytes still fits in a request's answers; when it does not, the
// budget is spent (the calls not started yet are not sent).
bool fits(upstream::AnswerBudget& budget, std::size_t size) {
    if (budget.used + size <= budget.limit) return true;
    budget.spent = true;
    return false;
}

// The id a transaction is recorded under: "" without auth.
std::string recorded_client(const auth::Client& client) {
    return client.anonymous() ? std::string() : client.id();
}

// Whom tx.max_queued_per_client counts a raw transaction against: the client with auth; without,
// the peer's address (`remote`: "address:port"), an IPv6 peer by its /64 as the connection cap
// counts it (one subscriber's network holds 2^64 addresses).
std::string source_of(const auth::Client& client, std::string_view remote) {
    if (!client.anonymous()) return client.id();
    const auto colon = remote.rfind(':');
    const std::string host(
        remote.substr(0, colon == std::string_view::npos ? remote.size() : colon));
    boost::system::error_code ec;
    auto a = boost::asio::ip::make_address(host, ec);
    if (ec) return host.empty() ? "unknown" : host;
    if (a.is_v6() && a.to_v6().is_v4_mapped())
        a = boost::asio::ip::make_address_v4(boost::asio::ip::v4_mapped, a.to_v6());
    if (!a.is_v6()) return a.to_string();
    auto bytes = a.to_v6().to_bytes();
    std::fill(bytes.begin() + 8, bytes.end(), 0);
    return boost::asio::ip::address_v6(bytes).to_string() + "/64";
}

// The second parameter of eth_sendRawTransactionSync and eth_sendTransactionSync (EIP-7966): a
// timeout in milliseconds. nullopt when the params are not [x] or [x, timeout]; an empty timeout
// when there is none.
std::optional<std::optional<std::uint64_t>> sync_params(const json::value& params) {
    const json::array* p = params.if_array();
    if (!p || p->empty() || p->size() > 2) return std::nullopt;
    if (p->size() == 1) return std::optional<std::uint64_t>();
    const json::value& t = p->at(1);
    std::optional<std::uint64_t> ms;
    if (const auto* n = t.if_int64(); n && *n > 0) ms = static_cast<std::uint64_t>(*n);
    if (const auto* n = t.if_uint64()) ms = *n;
    if (const auto* text = t.if_string()) ms = parse_quantity(*text);
    if (!ms || *ms == 0) return std::nullopt;
    return ms;
}

// The call with its first parameter only (the Sync variants' timeout taken off).
json::array first_param(const json::value& params) {
    json::array out;
    out.push_back(params.as_array().front());
    return out;
}

// The `from` of a transaction object (eth_sendTransaction's first parameter), when it is a string.
std::optional<std::string_view> sender_param(const boost::json::value& params) {
    const json::array* a = params.if_array();
    const json::object* o = a && !a->empty() ? a->at(0).if_object() : nullptr;
    const json::value* from = o ? o->if_contains("from") : nullptr;
    if (!from || !from->is_string()) return std::nullopt;
    return std::string_view(from->get_string());
}

}  // namespace

// The state a batch's workers share; lives in the frame of the coroutine that waits for them all.
struct RpcHandler::Batch {
    const ChainRoute* chain;
    const auth::Client* client;
    std::string_view source;
    const std::vector<jsonrpc::Entry>* entries;
    std::vector<Outcome> outcomes;
    std::string_view idempotency_key;
    std::vector<bool> done;  // answered already (sent upstream as one batch, or from the cache)
    // Workers share the session's strand, so these need no lock.
    std::size_t next = 0;  // the next entry a worker takes
    // The size of the answers so far (and of answers arriving).
    std::shared_ptr<upstream::AnswerBudget> budget = std::make_shared<upstream::AnswerBudget>();
};

RpcHandler::RpcHandler(const config::ServerConfig& server, std::vector<ChainRoute> chains,
                       auth::Authenticator& auth, metrics::Metrics* metrics)
    : server_(server),
      chains_(std::move(chains)),
      auth_(auth),
      metrics_(metrics),
      coalescer_(std::make_shared<cache::Coalescer>()) {
    for (auto& c : chains_)
        if (!c.methods) c.methods = std::make_shared<MethodPolicy>(c.pool->config().methods);
}

RpcHandler::~RpcHandler() = default;

void RpcHandler::count_client_call(const auth::Client& client, std::string_view outcome) const {
    if (metrics_ && !client.anonymous()) metrics_->count_client_call(client.label(), outcome);
}

std::string RpcHandler::refusal_body(unsigned status, std::string_view message) {
    const auto code = status == 413 || status == 431 ? jsonrpc::ErrorCode::limit_exceeded
                                                     : jsonrpc::ErrorCode::invalid_request;
    return jsonrpc::error_response(jsonrpc::kNullId, jsonrpc::Error(code, std::string(message)));
}

asio::awaitable<RpcHandler::Outcome> RpcHandler::execute(
    const ChainRoute& route, const jsonrpc::Entry& entry, std::string_view idempotency_key,
    const auth::Client& client, std::string_view source,
    std::shared_ptr<upstream::AnswerBudget> budget) {
    const auto t0 = Clock::now();
    upstream::ChainPool& chain = *route.pool;
    const std::string& chain_name = chain.config().name;
    Outcome out;
    if (const auto* invalid = std::get_if<jsonrpc::InvalidCall>(&entry)) {
        out.response = jsonrpc::error_response(invalid->id, invalid->error);
        if (metrics_) metrics_->observe_call(chain_name, "other", "invalid", 0);
        count_client_call(client, "invalid");
        co_return out;
    }
    const auto& call = std::get<jsonrpc::Call>(entry);
    const MethodKind kind = method_kind(call.method);
    std::string_view outcome = "ok";

    std::optional<std::string> refusal = unserved_reason(call.method);
    if (!refusal) refusal = route.methods->refusal(call.method);
    if (!refusal) refusal = client.method_refusal(call.method);
    std::optional<std::string_view> sender;
    const bool managed_send = call.method == "eth_sendTransaction" ||
                              call.method == "gateway_sendTransaction" ||
                              call.method == "eth_sendTransactionSync";
    if (managed_send) sender = sender_param(call.params);
    if (refusal) {
        outcome = "denied";
        out.response = jsonrpc::error_response(
            call.id, jsonrpc::Error(jsonrpc::ErrorCode::method_not_found, std::move(*refusal)));
    } else if (sender && !client.may_send_from(chain_name, *sender)) {
        outcome = "denied";
        out.response = jsonrpc::error_response(
            call.id, jsonrpc::Error(jsonrpc::ErrorCode::unauthorized,
                                    fmt::format("client {} may not send from {} (not in its "
                                                "senders; eth_accounts lists the ones it may use)",
                                                client.id(), sender->substr(0, 42))));
    } else if (kind == MethodKind::local && call.method == "eth_accounts") {
        // The senders the gateway signs for on this chain that this client may use; a node's own
        // accounts are not offered through the gateway.
        json::array accounts;
        for (const auto& a : chain.config().accounts)
            if (auto bytes = eth::from_hex(a.address);
                bytes && bytes->size() == 20 && client.may_send_from(chain_name, a.address)) {
                eth::Address address;
                std::copy(bytes->begin(), bytes->end(), address.begin());
                accounts.emplace_back(eth::to_checksum_address(address));
            }
        out.response = jsonrpc::result_response(call.id, json::serialize(accounts));
    } else if (kind == MethodKind::local) {
        // eth_chainId: the configured chain id, which the health probes hold every upstream to.
        out.response =
            jsonrpc::result_response(call.id, fmt::format("\"0x{:x}\"", chain.config().chain_id));
    } else if (managed_send) {
        // Managed senders only: the gateway builds and signs; never forwarded to a node.
        if (!route.managed) {
            outcome = "rpc_error";
            out.response = jsonrpc::error_response(
                call.id, jsonrpc::Error(-32000, fmt::format("chain {} has no managed senders: "
                                                            "sign the transaction yourself and "
                                                            "use eth_sendRawTransaction",
                                                            chain_name)));
        } else {
            const std::string key(idempotency_key);
            const bool sync = call.method == "eth_sendTransactionSync";
            const bool wait = call.method != "gateway_sendTransaction";
            const auto deadline = t0 + server_.request_timeout;
            const auto timeout = sync ? sync_params(call.params) : std::nullopt;
            txm::ManagedReply r;
            if (sync && !timeout) {
                r.reply = jsonrpc::Reply::failure(
                    jsonrpc::Error(jsonrpc::ErrorCode::invalid_params,
                                   "eth_sendTransactionSync takes the transaction object and "
                                   "optionally a timeout in milliseconds"));
            } else {
                // Named, not temporaries in the co_await: GCC 12 destroys those twice.
                json::value params = call.params;
                if (sync) params = first_param(call.params);
                std::string sender_client = recorded_client(client);
                r = co_await route.managed->send(params, key, wait, deadline,
                                                 std::move(sender_client));
            }
            out.queued = r.queued;
            out.store_failed = r.store_failed;
            if (r.store_failed) outcome = "unavailable";
            if (r.reply.is_error()) {
                if (!r.store_failed) outcome = "rpc_error";
                out.response = jsonrpc::error_response(call.id, r.reply.error);
            } else if (sync) {
                co_await await_receipt(route, call, *r.reply.result, *timeout, t0, out, outcome);
            } else {
                out.response = jsonrpc::result_response(call.id, *r.reply.result);
            }
        }
    } else if (route.managed && call.method == "gateway_getTransaction" && call.params.is_array() &&
               call.params.get_array().size() == 1 && call.params.get_array()[0].is_string() &&
               call.params.get_array()[0].get_string().starts_with("gtx-")) {
        const std::string id(call.params.get_array()[0].get_string());
        jsonrpc::Reply r = co_await route.managed->describe(id, owner_of(client));
        if (r.is_error()) outcome = "rpc_error";
        out.response = reply_response(call.id, r);
    } else if (route.txm && call.method == "gateway_getTransaction") {
        jsonrpc::Reply r = co_await route.txm->describe(call.params, owner_of(client));
        if (route.managed && !r.is_error()) co_await add_managed(route, r, out, client);
        if (r.is_error()) outcome = "rpc_error";
        out.response = reply_response(call.id, r);
    } else if (route.txm && call.method == "eth_sendRawTransactionSync") {
        co_await send_sync(route, call, client, source, out, outcome, t0);
    } else if (route.txm && call.method == "eth_sendRawTransaction") {
        std::string sender_client = recorded_client(client);
        txm::SubmitResult r =
            co_await route.txm->submit(call.params, std::move(sender_client), std::string(source));
        out.queued = r.queued;
        out.store_failed = r.store_failed;
        out.upstream = std::move(r.upstream);
        if (r.store_failed) outcome = "unavailable";
        if (r.reply && r.reply->is_error()) {
            if (!r.store_failed) outcome = "rpc_error";
            out.response = jsonrpc::error_response(call.id, r.reply->error);
        } else if (r.reply) {
            out.response = jsonrpc::result_response(call.id, *r.reply->result);
        }
    } else {
        co_await forward(route, call, client, out, outcome, t0, budget);
    }
    // A call that may have changed state: answers tied to the head are not given again.
    if (route.cache && kind == MethodKind::write) route.cache->note_write();
    std::string_view from = "-";
    if (!out.upstream.empty()) from = out.upstream;
    if (out.cached) from = "cache";
    spdlog::debug("chain {}: {} -> {} from {} in {} us", chain_name, method_label(call.method),
                  outcome, from,
                  std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - t0).count());
    if (metrics_)
        metrics_->observe_call(chain_name, method_label(call.method), outcome,
                               std::chrono::duration<double>(Clock::now() - t0).count());
    count_client_call(client, outcome);
    if (call.notification) out.response.clear();
    co_return out;
}

// eth_sendRawTransactionSync: the journal's intake, as eth_sendRawTransaction; then the receipt.
asio::awaitable<void> RpcHandler::send_sync(const ChainRoute& route, const jsonrpc::Call& call,
                                            const auth::Client& client, std::string_view source,
                                            Outcome& out, std::string_view& outcome,
                                            Clock::time_point t0) {
    const auto timeout = sync_params(call.params);
    if (!timeout) {
        outcome = "rpc_error";
        out.response = jsonrpc::error_response(
            call.id, jsonrpc::Error(jsonrpc::ErrorCode::invalid_params,
                                    "eth_sendRawTransactionSync takes the signed transaction and "
                                    "optionally a timeout in milliseconds"));
        co_return;
    }
    const json::value raw = first_param(call.params);
    std::string sender_client = recorded_client(client);
    txm::SubmitResult r =
        co_await route.txm->submit(raw, std::move(sender_client), std::string(source));
    out.queued = r.queued;
    out.store_failed = r.store_failed;
    out.upstream = std::move(r.upstream);
    if (r.store_failed) outcome = "unavailable";
    if (!r.reply || r.reply->is_error()) {
        if (!r.store_failed) outcome = "rpc_error";
        out.response =
            jsonrpc::error_response(call.id, r.reply ? r.reply->error : jsonrpc::Error());
        co_return;
    }
    co_await await_receipt(route, call, *r.reply->result, *timeout, t0, out, outcome);
}

// The Sync variants' answer once their transaction is in the journal: its receipt when it is
// mined within the client's timeout (at most server.request_timeout_ms), else error 4 with the
// hash (EIP-7966); the gateway goes on with it either way.
asio::awaitable<void> RpcHandler::await_receipt(const ChainRoute& route, const jsonrpc::Call& call,
                                                std::string hash_json,
                                                std::optional<std::uint64_t> timeout_ms,
                                                Clock::time_point t0, Outcome& out,
                                                std::string_view& outcome) {
    auto deadline = t0 + server_.request_timeout;
    if (timeout_ms)
        deadline = std::min(deadline, t0 + std::chrono::milliseconds(std::min<std::uint64_t>(
                                               *timeout_ms, 24ull * 3600 * 1000)));
    json::error_code ec;
    json::value hash = json::parse(hash_json, ec);
    asio::steady_timer pause(co_await asio::this_coro::executor);
    // Named values, not braced temporaries: GCC 12 mishandles those inside coroutines.
    json::array receipt_params;
    receipt_params.push_back(hash);
    const std::string receipt_method = "eth_getTransactionReceipt";
    // Receipts are asked for every 250 ms: blocks are seconds apart on every chain worth the name.
    while (!ec && Clock::now() < deadline) {
        upstream::Forwarded f =
            co_await route.pool->forward(receipt_method, receipt_params, false, deadline);
        if (f.outcome == upstream::Forwarded::Outcome::answered && !f.reply.is_error() &&
            *f.reply.result != "null") {
            out.queued = false;
            out.response = jsonrpc::result_response(call.id, *f.reply.result);
            co_return;
        }
        pause.expires_at(std::min(deadline, Clock::now() + std::chrono::milliseconds(250)));
        co_await pause.async_wait(asio::as_tuple(asio::use_awaitable));
    }
    outcome = "rpc_error";
    out.response = jsonrpc::error_response(
        call.id,
        jsonrpc::Error(kNotMinedInTime, std::string(kNotMinedInTimeMessage), std::move(hash)));
}

// gateway_getTransaction for an attempt of a managed transaction: the managed transaction too, and
// the hash that was mined instead when another attempt was (X-Gateway-Replaced-By).
asio::awaitable<void> RpcHandler::add_managed(const ChainRoute& route, jsonrpc::Reply& reply,
                                              Outcome& out, const auth::Client& client) {
    json::error_code ec;
    json::value v = json::parse(*reply.result, ec);
    json::object* o = ec ? nullptr : v.if_object();
    const json::value* parent = o ? o->if_contains("transaction") : nullptr;
    if (!parent || !parent->is_string()) co_return;
    const std::string id(parent->get_string());
    jsonrpc::Reply m = co_await route.managed->describe(id, owner_of(client));
    if (m.is_error()) co_return;
    json::value managed = json::parse(*m.result, ec);
    if (ec || !managed.is_object()) co_return;
    const json::value* mined = managed.get_object().if_contains("minedHash");
    if (mined && mined->is_string() && *mined != o->at("hash")) {
        out.replaced_by = std::string(mined->get_string());
        (*o)["replacedBy"] = *mined;
    }
    (*o)["managed"] = std::move(managed);
    reply.result = json::serialize(v);
}

// The nodes' answer to a call: from the cache while it is still true, else from an identical call
// already in flight, else from the pool (and then kept).
asio::awaitable<upstream::Forwarded> RpcHandler::fetch(
    const ChainRoute& route, const jsonrpc::Call& call, Outcome& out, Clock::time_point t0,
    std::shared_ptr<upstream::AnswerBudget> budget) {
    upstream::ChainPool& chain = *route.pool;
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
        f = co_await chain.forward(call.method, call.params, kind == MethodKind::write, deadline,
                                   budget);
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
            f = co_await chain.forward(call.method, call.params, false, deadline, budget);
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
    f = co_await chain.forward(call.method, call.params, false, deadline, budget);
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
asio::awaitable<void> RpcHandler::forward(const ChainRoute& route, const jsonrpc::Call& call,
                                          const auth::Client& client, Outcome& out,
                                          std::string_view& outcome, Clock::time_point t0,
                                          std::shared_ptr<upstream::AnswerBudget> budget) {
    upstream::ChainPool& chain = *route.pool;
    const MethodKind kind = method_kind(call.method);
    upstream::Forwarded f = co_await fetch(route, call, out, t0, budget);
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
                json::error_code ec;
                json::value v;
                if (answered) v = json::parse(*f.reply.result, ec);
                std::optional<std::uint64_t> node;
                if (answered && !ec && v.is_string()) node = parse_quantity(v.get_string());
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

// Whether a call of a client's batch may go upstream inside one batch: a plain read, which the
// gateway neither answers itself nor adds to (pending nonces, held transactions, replaced
// receipts), nor routes by its own rules (filters, split log ranges, block numbers that never go
// back).
bool RpcHandler::batchable(const ChainRoute& route, const jsonrpc::Call& call,
                           const auth::Client& client) {
    const std::string& m = call.method;
    if (method_kind(m) != MethodKind::read || route.methods->refusal(m) ||
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
    upstream::ChainPool& chain = *route.pool;
    const std::string& chain_name = chain.config().name;
    const auto t0 = Clock::now();
    const bool head_known = chain.ready();
    if (route.cache)
        if (auto head = chain.head()) route.cache->note_head(*head);
    std::vector<std::size_t> index;
    std::vector<upstream::ChainPool::BatchCall> calls;
    std::vector<std::optional<cache::ChainCache::Ticket>> tickets;
    // The call that does not fit: -32005, and the rest of the batch is not sent either.
    const auto refuse_over_budget = [&](std::size_t i, const jsonrpc::Call& call) {
        batch.outcomes[i].response = jsonrpc::error_response(
            call.id, upstream::over_budget(batch.budget->limit).reply.error);
        if (metrics_) metrics_->observe_call(chain_name, method_label(call.method), "rpc_error", 0);
        count_client_call(*batch.client, "rpc_error");
        if (call.notification) batch.outcomes[i].response.clear();
        batch.done[i] = true;
    };
    const auto answered = [&](std::size_t i, const jsonrpc::Call& call, std::string_view outcome) {
        Outcome& out = batch.outcomes[i];
        if (metrics_)
            metrics_->observe_call(chain_name, method_label(call.method), outcome,
                                   std::chrono::duration<double>(Clock::now() - t0).count());
        count_client_call(*batch.client, outcome);
        batch.budget->used += out.response.size();
        if (call.notification) out.response.clear();
        batch.done[i] = true;
    };
    for (std::size_t i = 0; i < batch.entries->size(); ++i) {
        const auto* call = std::get_if<jsonrpc::Call>(&(*batch.entries)[i]);
        if (!call || !batchable(route, *call, *batch.client)) continue;
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
        calls.push_back(upstream::ChainPool::BatchCall{call->method, call->params});
        tickets.push_back(std::move(ticket));
    }
    if (calls.size() < 2) co_return;  // one call gains nothing from a batch
    // The upstream batch's answer is checked against the limit while it arrives, but on a budget
    // of its own: all of it passing the limit does not mean each call would, so the batch's own
    // budget is not spent by it (its calls then go one by one).
    auto together = std::make_shared<upstream::AnswerBudget>(
        upstream::AnswerBudget{batch.budget->used, batch.budget->limit});
    std::optional<upstream::ChainPool::BatchForwarded> r =
        co_await chain.forward_batch(std::move(calls), t0 + server_.request_timeout, together);
    if (!r) co_return;
    for (std::size_t k = 0; k < index.size(); ++k) {
        if (!r->replies[k]) continue;
        const std::size_t i = index[k];
        const auto& call = std::get<jsonrpc::Call>((*batch.entries)[i]);
        Outcome& out = batch.outcomes[i];
        const jsonrpc::Reply& reply = *r->replies[k];
        std::string response = reply_response(call.id, reply);
        if (!reply.is_error() && tickets[k]) route.cache->put(*tickets[k], *reply.result);
        if (!fits(*batch.budget, response.size())) {
            refuse_over_budget(i, call);
            continue;
        }
        out.upstream = r->upstream;
        out.response = std::move(response);
        answered(i, call, reply.is_error() ? "rpc_error" : "ok");
    }
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
    if (credential.empty()) credential = target_of(request).key;
    auth::Verdict verdict = co_await auth_.authenticate(credential);
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
    auto identity = co_await identify(request);
    if (auto* refused = std::get_if<http::Response>(&identity)) co_return std::move(*refused);
    const std::shared_ptr<const auth::Client> client =
        std::move(std::get<std::shared_ptr<const auth::Client>>(identity));
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
    // Each call of a batch counts against the client's rate.
    if (auto wait = auth_.admit(*client, parsed->entries.size())) {
        if (metrics_) metrics_->count_auth("rpc", "rate_limited");
        count_client_call(*client, "rate_limited");
        const auto seconds = std::max<std::int64_t>(
            1,
            std::chrono::duration_cast<std::chrono::seconds>(*wait + std::chrono::milliseconds(999))
                .count());
        http::Response r = error_reply(
            429, jsonrpc::Error(jsonrpc::ErrorCode::limit_exceeded,
                                fmt::format("rate limit: client {} is over its calls per second "
                                            "(each call of a batch counts); retry in {} s",
                                            client->id(), seconds)));
        r.headers.emplace_back("Retry-After", std::to_string(seconds));
        co_return r;
    }

    const std::string source = source_of(*client, request.remote);
    std::vector<Outcome> outcomes;
    if (parsed->entries.size() == 1 && !parsed->batch) {
        outcomes.push_back(co_await execute(*chain, parsed->entries.front(),
                                            request.header(kIdempotencyHeader), *client, source));
    } else {
        Batch batch{chain,
                    client.get(),
                    source,
                    &parsed->entries,
                    std::vector<Outcome>(parsed->entries.size()),
                    request.header(kIdempotencyHeader),
                    std::vector<bool>(parsed->entries.size(), false)};
        batch.budget->limit = server_.max_batch_response_bytes;
        co_await forward_batched(*chain, batch);
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
        bodies.push_back(std::move(o.response));
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
    if (bodies.empty()) {
        response.status = 204;  // only notifications: JSON-RPC answers nothing at all
        co_return response;
    }
    response.status = all_unavailable ? 503 : 200;
    response.body = parsed->batch ? jsonrpc::batch_response(bodies) : std::move(bodies.front());
    co_return response;
}

}  // namespace gateway::rpc
