#pragma once
// What the rooms above the upstreams (chain, cache, txm, rpc) use of one chain's node pool: calls
// forwarded with failover, batches, broadcasts, and the chain's head. upstream::ChainPool is the
// implementation; tests use a fake (tests/support/mock_forwarder.hpp).

#include "gateway/config/config.hpp"
#include "gateway/jsonrpc/jsonrpc.hpp"
#include "gateway/jsonrpc/methods.hpp"
#include "gateway/upstream/errors.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/json/value.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace gateway::upstream {

struct AnswerBudget;

/// The result of forwarding one call.
struct Forwarded {
    enum class Outcome {
        answered,     ///< a node answered, with a result or a JSON-RPC error, as it came
        unavailable,  ///< no node could answer; nothing was executed
        uncertain,    ///< a write failed after a node may have received it; not sent elsewhere
    };
    Outcome outcome = Outcome::unavailable;
    jsonrpc::Reply reply;  ///< the answer, when answered
    jsonrpc::Error error;  ///< why there is no answer, otherwise
    std::string upstream;  ///< the node(s) that answered, comma-separated
    /// The answer is -32005: it passed what the caller's request may still hold (its batch's
    /// answers). The caller's refusal, not the call's: another caller may be answered.
    bool over_budget = false;

    /// The result as JSON: nullopt when no node answered, it answered an error, or its result is
    /// not JSON.
    std::optional<boost::json::value> result_json() const;
    /// The result as a quantity ("0x1a"): nullopt as for result_json(), or when it is not one.
    std::optional<std::uint64_t> result_quantity() const;
    /// Why there is no result: the node's error when it answered one, else why no node answered
    /// (empty when a node answered a result).
    const std::string& failure() const;
};

/// The answer to a call whose answer passed its request's AnswerBudget (`limit` bytes).
Forwarded over_budget(std::size_t limit);

/// What one upstream did with a broadcast call.
struct Delivery {
    std::string upstream;
    Attempt attempt;
};

/// One read of a client's batch: views of the call, which must outlive the forward_batch that
/// sends it (a batch's calls are read where they were parsed, not copied). An implementation
/// reads them only while its forward_batch runs: no work it leaves behind (a hedge, a retry)
/// may read them after it returns.
struct BatchCall {
    std::string_view method;
    const boost::json::value* params = nullptr;  ///< never null
};

/// The answers to a batch sent as one: one per call, in order; nullopt for a call to send
/// alone (no answer for it, or a node error another node may not give).
struct BatchForwarded {
    std::vector<std::optional<jsonrpc::Reply>> replies;
    std::string upstream;
};

/// One chain's nodes as the rooms above them see them. Implementations are thread-safe.
/// Default arguments are declared here only: call through a Forwarder& (or pointer).
class Forwarder {
public:
    virtual ~Forwarder() = default;

    virtual const config::ChainConfig& config() const = 0;

    /// At least one upstream answers its probes.
    virtual bool ready() const = 0;
    /// The chain's head: the highest head among upstreams that answer, if any is known.
    virtual std::optional<std::uint64_t> head() const = 0;

    /// Forwards one call (see the README's selection rules): upstreams in order of tier and
    /// score, those unable to serve the call's block left out, the rest as a last resort;
    /// at most failover.max_attempts attempts with backoff; a slow read hedged after
    /// failover.hedge_after_ms; a write sent to another node only when the first certainly did
    /// not get it. Answers count against `budget` while they arrive: once it is spent the call
    /// is answered -32005, not sent on. The pool knows no method by name: the block a call needs
    /// is read from its params (jsonrpc::block_need); what a method needs beyond that (log
    /// ranges split, filters pinned to their node, block numbers that never go back) the RPC
    /// layer does. Never throws; gives up at `deadline`. Must be awaited on a strand or on a
    /// loop one thread runs alone (util::SoleRunner; the caller's connection).
    virtual boost::asio::awaitable<Forwarded> forward(
        std::string method, boost::json::value params, bool write,
        std::chrono::steady_clock::time_point deadline,
        std::shared_ptr<AnswerBudget> budget = nullptr) = 0;

    /// forward() for a call needing `need`. `pinned`: only that upstream (by id) may answer,
    /// whatever its health, unless it is cordoned or on the wrong chain (a filter lives on the
    /// node that made it); an unknown id pins nothing.
    virtual boost::asio::awaitable<Forwarded> forward_to(
        std::string method, boost::json::value params, jsonrpc::BlockNeed need, bool write,
        std::chrono::steady_clock::time_point deadline,
        std::shared_ptr<AnswerBudget> budget = nullptr, std::string pinned = {}) = 0;

    /// A read that only upstreams at or above block `min_block` may answer (none such: an error
    /// after the usual attempts, never a node behind it): for answers whose absence is taken as
    /// proof, such as a receipt that is null. Never throws.
    virtual boost::asio::awaitable<Forwarded> forward_at_least(
        std::string method, boost::json::value params, std::uint64_t min_block,
        std::chrono::steady_clock::time_point deadline) = 0;

    /// Sends reads as one JSON-RPC batch to the best upstream for the newest block they need,
    /// at most its max_batch_size of them (the first ones). nullopt when that cannot be done now
    /// (no such upstream admits a call, a transport failure, an answer that is not a batch):
    /// the caller sends the calls one by one, which fail over as usual. An upstream whose answer
    /// to a batch is not a batch gets no more batches. The answer counts against `budget` while
    /// it arrives. Never throws.
    virtual boost::asio::awaitable<std::optional<BatchForwarded>> forward_batch(
        std::vector<BatchCall> calls, std::chrono::steady_clock::time_point deadline,
        std::shared_ptr<AnswerBudget> budget = nullptr) = 0;

    /// Sends one call to up to `fanout` usable upstreams at once (tier and score order, one
    /// attempt each; down or open upstreams only when nothing else is there) and returns what
    /// each did. For calls that are safe to repeat anywhere, such as a signed transaction's bytes.
    /// Empty when no upstream admits a call now.
    virtual boost::asio::awaitable<std::vector<Delivery>> broadcast(
        std::string method, boost::json::value params, std::size_t fanout,
        std::chrono::steady_clock::time_point deadline) = 0;

    /// The smallest max_logs_range of the upstreams in use; 0 when none has one.
    virtual std::uint64_t max_logs_range() const = 0;
    /// An upstream's max_response_bytes; the largest size for an unknown id.
    virtual std::size_t max_response_bytes(std::string_view upstream) const = 0;
};

}  // namespace gateway::upstream
