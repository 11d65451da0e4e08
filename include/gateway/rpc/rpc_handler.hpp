#pragma once
// The JSON-RPC endpoint: routes a request to its chain, decodes it, runs every call (a batch's
// calls concurrently, answered in the client's order) and encodes the answer.

#include "gateway/config/config.hpp"
#include "gateway/http/listener.hpp"
#include "gateway/jsonrpc/jsonrpc.hpp"
#include "gateway/rpc/method_policy.hpp"

#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace gateway::metrics {
class Metrics;
}
namespace gateway::upstream {
class Forwarder;
struct Forwarded;
struct AnswerBudget;
}  // namespace gateway::upstream
namespace gateway::txm {
class TxManager;
class ManagedSenders;
struct SubmitResult;
}  // namespace gateway::txm
namespace gateway::cache {
class ChainCache;
class Coalescer;
}  // namespace gateway::cache
namespace gateway::auth {
class Authenticator;
class Client;
}  // namespace gateway::auth

namespace gateway::rpc {

/// Response header naming the upstream(s) that answered.
inline constexpr std::string_view kUpstreamHeader = "X-Gateway-Upstream";
/// "true" when a transaction was journaled but no node has taken it yet.
inline constexpr std::string_view kQueuedHeader = "X-Gateway-Queued";
/// "hit" when every answer came from the cache (still true), "partial" when some did.
inline constexpr std::string_view kCacheHeader = "X-Gateway-Cache";
/// "true" when an answer came from the cache because no node could answer; with its age.
inline constexpr std::string_view kStaleHeader = "X-Gateway-Stale";
inline constexpr std::string_view kDataAgeHeader = "X-Gateway-Data-Age-Ms";
/// On eth_getTransactionReceipt for a hash the gateway replaced: the hash that was mined.
inline constexpr std::string_view kReplacedByHeader = "X-Gateway-Replaced-By";
/// Request header: a client's key for one managed send; a retried request with the same key
/// (same chain and sender) returns the same transaction.
inline constexpr std::string_view kIdempotencyHeader = "idempotency-key";

class NodeCalls;

/// What serves one chain.
struct ChainRoute {
    upstream::Forwarder* pool = nullptr;
    txm::TxManager* txm = nullptr;           ///< the write path; without it writes are forwarded
    txm::ManagedSenders* managed = nullptr;  ///< eth_sendTransaction; without it refused
    cache::ChainCache* cache = nullptr;      ///< reads answered again; without it none are
    /// The chain's allow and deny lists; built by the handler from the pool's config.
    std::shared_ptr<const MethodPolicy> methods;
    /// Calls to the chain's nodes, with what some methods need (src/rpc/node_calls.hpp); built by
    /// the handler.
    std::shared_ptr<NodeCalls> calls;
};

class RpcHandler {
public:
    /// `chains[0]` serves `POST /`; every chain serves `POST /<name>` (and `POST /<name>/<key>`
    /// when clients authenticate). Everything referenced must outlive the handler. One handler
    /// per set of pools: it holds each chain's client-facing state (the node each filter lives
    /// on, the highest eth_blockNumber given out), which a second handler would not share.
    RpcHandler(const config::ServerConfig& server, std::vector<ChainRoute> chains,
               auth::Authenticator& auth, metrics::Metrics* metrics);
    ~RpcHandler();

    /// Answers one HTTP request. Never throws.
    boost::asio::awaitable<http::Response> operator()(http::Request& request);

    /// The listener's head check: with auth, a request without valid credentials is refused
    /// (401) before its body is read; the caller is kept in `request.principal` (an
    /// auth::Client) for operator(). Never throws.
    boost::asio::awaitable<std::optional<http::Response>> check_head(http::Request& request);

    /// The body of a refusal by the listener itself (413, 431, ...): a JSON-RPC error, id null.
    static std::string refusal_body(unsigned status, std::string_view message);

    /// Replaces a chain's allow and deny lists (a configuration reload); a call already past
    /// the check is not affected. False when no chain has that name. Thread-safe.
    bool reconfigure_methods(std::string_view chain, const config::MethodsConfig& methods);

    /// What running one entry produced.
    struct Outcome {
        std::string response;       ///< the JSON-RPC response object (empty for a notification)
        std::string upstream;       ///< the upstream that answered, if one did
        bool unavailable = false;   ///< no upstream could answer
        bool queued = false;        ///< a transaction journaled, not yet taken by a node
        bool store_failed = false;  ///< a write refused because the journal cannot be written
        std::optional<std::chrono::milliseconds> stale_age;  ///< answered from the cache
        std::string replaced_by;  ///< a receipt of the attempt mined instead of the one asked
        bool cached = false;      ///< answered from the cache, still true
    };

private:
    struct Batch;
    /// One call on its way through the handler (src/rpc/handler_internal.hpp).
    struct CallContext;
    /// A member that answers a call. The router (src/rpc/router.cpp) gives each method its
    /// route; methods it does not name go to the nodes (forward).
    using Route = boost::asio::awaitable<void> (RpcHandler::*)(CallContext&);
    static Route route_of(std::string_view method);

    /// `source`: whom the per-client queue cap counts a raw transaction against (the client, or
    /// without auth the peer's address).
    boost::asio::awaitable<Outcome> execute(
        const ChainRoute& chain, const jsonrpc::Entry& entry, std::string_view idempotency_key,
        const auth::Client& client, std::string_view source,
        std::shared_ptr<upstream::AnswerBudget> budget = nullptr);

    // Routes. The gateway's own answers (router.cpp):
    boost::asio::awaitable<void> accounts(CallContext& c);
    boost::asio::awaitable<void> chain_id(CallContext& c);
    // Transactions (transactions.cpp):
    boost::asio::awaitable<void> managed_send(CallContext& c);
    boost::asio::awaitable<void> get_transaction(CallContext& c);
    boost::asio::awaitable<void> raw_send(CallContext& c);
    boost::asio::awaitable<void> raw_send_sync(CallContext& c);
    boost::asio::awaitable<txm::SubmitResult> intake(CallContext& c, const boost::json::value& raw);
    boost::asio::awaitable<void> await_receipt(CallContext& c, std::string hash_json,
                                               std::optional<std::uint64_t> timeout_ms);
    boost::asio::awaitable<void> add_managed(const ChainRoute& route, jsonrpc::Reply& reply,
                                             Outcome& out, const auth::Client& client);
    // The nodes (reads.cpp):
    boost::asio::awaitable<void> forward(CallContext& c);
    boost::asio::awaitable<upstream::Forwarded> fetch(CallContext& c);
    // Batches (batches.cpp):
    boost::asio::awaitable<std::vector<Outcome>> run_batch(
        const ChainRoute& chain, const auth::Client& client, std::string_view source,
        const std::vector<jsonrpc::Entry>& entries, std::string_view idempotency_key);
    bool batchable(const ChainRoute& chain, const jsonrpc::Call& call,
                   const auth::Client& client) const;
    boost::asio::awaitable<void> forward_batched(const ChainRoute& chain, Batch& batch);
    static boost::asio::awaitable<void> batch_worker(RpcHandler* self, Batch* batch);

    void count_client_call(const auth::Client& client, std::string_view outcome,
                           std::size_t calls = 1) const;
    boost::asio::awaitable<std::variant<std::shared_ptr<const auth::Client>, http::Response>>
    identify(const http::Request& request);

    config::ServerConfig server_;
    std::vector<ChainRoute> chains_;
    // Guards chains_[].methods, which a reload replaces.
    mutable std::mutex methods_mu_;
    std::shared_ptr<const MethodPolicy> methods_of(const ChainRoute& route) const;
    auth::Authenticator& auth_;
    metrics::Metrics* metrics_;
    // Shared with leaders' guards, which may run after the handler is gone (frames the io_context
    // destroys at a forced stop).
    std::shared_ptr<cache::Coalescer> coalescer_;
};

}  // namespace gateway::rpc
