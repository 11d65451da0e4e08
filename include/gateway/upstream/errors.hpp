#pragma once
// How the gateway reads a failed or refused call: the one place where errors are classified.
// Rules are data (src/upstream/errors.cpp), matched on the JSON-RPC code and on substrings of
// the message, case-insensitively, as ../shared/spec/node-errors.md describes.

#include "gateway/jsonrpc/jsonrpc.hpp"
#include "gateway/upstream/http_client.hpp"

#include <optional>
#include <string>
#include <string_view>

namespace gateway::upstream {

/// What a JSON-RPC error answer from a node means for routing.
enum class ErrorClass {
    deterministic,  ///< the call's answer (a revert, invalid params): back to the client as it came
    /// this node does not have what the call asks for (a block, a state, a transaction): it may
    /// merely lag or be pruned; another node at or above its head may have it; if none does,
    /// the answer goes back as it came
    missing,
    transient,     ///< this node cannot answer now (syncing, internal fault): try another
    rate_limited,  ///< this node refuses for a rate limit: try another; this one is throttled
    unsupported,   ///< this node does not serve the method: try another; if none does, answer this
};

std::string_view to_string(ErrorClass c);

/// Classifies a node's JSON-RPC error by the rule table.
ErrorClass classify_rpc_error(int code, std::string_view message);

/// What a node's refusal of eth_sendRawTransaction means for a journaled transaction.
enum class WriteVerdict {
    accepted,       ///< the node has it already ("already known"): as good as accepted
    nonce_too_low,  ///< the nonce is used: mined already (ours?) or taken by another transaction
    retry_later,    ///< not now (nonce gap, fee below the base fee): keep it queued, try again
    /// a transaction with the same nonce is in the node's pool and this one does not raise both
    /// fees enough (10 % in geth and Besu) to replace it
    replacement_underpriced,
    refused,  ///< the node will not take it (underpriced, insufficient funds, invalid)
};
std::string_view to_string(WriteVerdict v);

/// Classifies a node's JSON-RPC error answer to eth_sendRawTransaction (node-errors.md).
WriteVerdict classify_write_refusal(int code, std::string_view message);

/// What one attempt against one upstream came to.
struct Attempt {
    enum class Kind {
        answered,    ///< a result, or a deterministic JSON-RPC error: the call's answer
        rpc_error,   ///< a JSON-RPC error answer of another class: try another node
        http_error,  ///< HTTP 5xx, 429, 401/403/404, or a body that is not JSON-RPC
        transport,   ///< no HTTP answer (connect, TLS, reset, timeout, too large)
    };
    Kind kind = Kind::transport;
    std::optional<jsonrpc::Reply> reply;                 ///< for answered and rpc_error
    ErrorClass error_class = ErrorClass::deterministic;  ///< for rpc_error
    std::string_view label;       ///< metric label of the failure; empty when answered
    std::string detail;           ///< the failure, for people
    bool maybe_delivered = true;  ///< the node may have acted on the call
    /// Counts against the node (breaker, error rate, score). Never for a JSON-RPC error answer:
    /// a node that answers is working, and what it says about a call is about the call (else any
    /// client could open every breaker with calls for blocks that do not exist).
    bool node_fault = false;
    bool throttled = false;  ///< a rate limit: the node is skipped for a while
    std::optional<std::chrono::seconds> retry_after;
};

/// Classifies the outcome of one HTTP exchange for the call with gateway id `id`.
Attempt classify(const HttpResult& result, std::uint64_t id);

}  // namespace gateway::upstream
