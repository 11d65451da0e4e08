#pragma once
// Private to src/rpc: what the handler's files share. The handler is split by job:
// rpc_handler.cpp (HTTP, the caller, one call's checks and its metrics), router.cpp (which
// member answers a method, and the calls the gateway answers itself), reads.cpp (the read path:
// cache, coalescing, the nodes, and what the gateway adds to their answers), transactions.cpp
// (sends and the gateway's transaction views) and batches.cpp.

#include "gateway/rpc/rpc_handler.hpp"

#include "gateway/auth/auth.hpp"
#include "gateway/jsonrpc/methods.hpp"
#include "gateway/metrics/metrics.hpp"
#include "gateway/upstream/forwarder.hpp"

#include <boost/asio/ip/address.hpp>
#include <boost/json/array.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

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
inline std::string reply_response(const std::string& id, const jsonrpc::Reply& r) {
    if (r.is_error()) return jsonrpc::error_response(id, r.error);
    return jsonrpc::result_response(id, *r.result);
}

inline http::Response error_reply(unsigned status, const jsonrpc::Error& error) {
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
inline std::optional<std::string_view> owner_of(const auth::Client& client) {
    if (client.anonymous()) return std::nullopt;
    return std::string_view(client.id());
}

// Whether an answer of `size` bytes still fits in a request's answers; when it does not, the
// budget is spent (the calls not started yet are not sent).
inline bool fits(upstream::AnswerBudget& budget, std::size_t size) {
    if (budget.used + size <= budget.limit) return true;
    budget.spent = true;
    return false;
}

// The id a transaction is recorded under: "" without auth.
inline std::string recorded_client(const auth::Client& client) {
    return client.anonymous() ? std::string() : client.id();
}

// Whom tx.max_queued_per_client counts a raw transaction against: the client with auth; without,
// the peer's address (`remote`: "address:port"), an IPv6 peer by its /64 as the connection cap
// counts it (one subscriber's network holds 2^64 addresses).
inline std::string source_of(const auth::Client& client, std::string_view remote) {
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
inline std::optional<std::optional<std::uint64_t>> sync_params(const json::value& params) {
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
inline json::array first_param(const json::value& params) {
    json::array out;
    out.push_back(params.as_array().front());
    return out;
}

// The `from` of a transaction object (eth_sendTransaction's first parameter), when it is a string.
inline std::optional<std::string_view> sender_param(const boost::json::value& params) {
    const json::array* a = params.if_array();
    const json::object* o = a && !a->empty() ? a->at(0).if_object() : nullptr;
    const json::value* from = o ? o->if_contains("from") : nullptr;
    if (!from || !from->is_string()) return std::nullopt;
    return std::string_view(from->get_string());
}

/// eth_sendTransaction, gateway_sendTransaction and eth_sendTransactionSync: sends from a
/// managed sender, which the gateway builds and signs.
inline bool is_managed_send(std::string_view method) {
    return method == "eth_sendTransaction" || method == "gateway_sendTransaction" ||
           method == "eth_sendTransactionSync";
}

/// One call on its way through the handler: what a route reads, and what it answers.
struct RpcHandler::CallContext {
    const ChainRoute& route;
    const jsonrpc::Call& call;
    const auth::Client& client;
    std::string_view source;  ///< whom tx.max_queued_per_client counts a raw transaction against
    std::string_view idempotency_key;
    Clock::time_point t0;
    std::shared_ptr<upstream::AnswerBudget> budget;  ///< a batch's answers so far; may be null
    Outcome& out;
    std::string_view outcome = "ok";  ///< the metric's outcome label
};

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

}  // namespace gateway::rpc
