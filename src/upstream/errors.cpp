#include "gateway/upstream/errors.hpp"
#include "gateway/util/text.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cctype>

namespace gateway::upstream {

namespace {

constexpr int kAnyCode = 0;

struct Rule {
    int code;                 // kAnyCode: any code
    std::string_view needle;  // lower case; empty: any message
    ErrorClass cls;
};

using enum ErrorClass;

// First match wins. Deterministic answers come first: a "-32603 nonce too low" is the call's
// answer, never a reason to try every node (openzeppelin-relayer #681).
constexpr auto kRules = std::to_array<Rule>({
    {kAnyCode, "execution reverted", deterministic},
    {kAnyCode, "revert", deterministic},
    {kAnyCode, "nonce too low", deterministic},
    {kAnyCode, "nonce too high", deterministic},
    {kAnyCode, "insufficient funds", deterministic},
    {kAnyCode, "underpriced", deterministic},
    {kAnyCode, "already known", deterministic},
    {kAnyCode, "known transaction", deterministic},
    {kAnyCode, "already imported", deterministic},
    {kAnyCode, "invalid argument", deterministic},
    {kAnyCode, "invalid params", deterministic},
    // Rate limits of hosted providers.
    {-32005, "", rate_limited},
    {kAnyCode, "rate limit", rate_limited},
    {kAnyCode, "too many requests", rate_limited},
    {kAnyCode, "request rate exceeded", rate_limited},
    {kAnyCode, "limit exceeded", rate_limited},
    {kAnyCode, "capacity exceeded", rate_limited},
    // Methods a node does not serve (before "not found", which they contain).
    {-32601, "", unsupported},
    {kAnyCode, "method not found", unsupported},
    {kAnyCode, "does not exist/is not available", unsupported},
    {kAnyCode, "not supported", unsupported},
    {kAnyCode, "unsupported method", unsupported},
    // What the call asks for is not on this node: it is behind or pruned, or nobody has it.
    {kAnyCode, "header not found", missing},
    {kAnyCode, "missing trie node", missing},
    {kAnyCode, "unknown block", missing},
    {kAnyCode, "block not found", missing},
    {kAnyCode, "unknown transaction", missing},
    {kAnyCode, "transaction not found", missing},
    {kAnyCode, "historical state", missing},
    {kAnyCode, "state not available", missing},
    {kAnyCode, "state is not available", missing},
    {kAnyCode, "is not available yet", missing},
    {kAnyCode, "pruned", missing},
    // A node that is syncing or briefly broken.
    {kAnyCode, "node is syncing", transient},
    {kAnyCode, "not synced", transient},
    {kAnyCode, "timeout", transient},
    {kAnyCode, "timed out", transient},
    {kAnyCode, "try again", transient},
    // Internal errors wrap transient faults; the deterministic ones were matched above.
    {-32603, "", transient},
});

// HTTP answers that mean the upstream could not serve the call (another node may), rather than
// an answer to it: rate limits, server errors, and a gateway in front of the node refusing us.
bool status_means_unavailable(unsigned status) {
    return status == 429 || status >= 500 || status == 401 || status == 403 || status == 404;
}

// HTTP answers after which the node certainly did not act on the call. Not 503: a proxy in
// front of a node answers 503 also when the connection broke after the node got the request.
bool status_means_refused(unsigned status) {
    return status == 429 || status == 401 || status == 403 || status == 404;
}

// HTTP answers about the request the node was sent (too large, unreadable), not about the node.
bool status_about_the_request(unsigned status) {
    return status >= 400 && status < 500 && !status_means_refused(status);
}

struct WriteRule {
    std::string_view needle;  // lower case
    WriteVerdict verdict;
};

// First match wins. From ../shared/spec/node-errors.md: geth, Erigon, Besu, Nethermind, anvil.
constexpr auto kWriteRules = std::to_array<WriteRule>({
    {"already known", WriteVerdict::accepted},
    {"known transaction", WriteVerdict::accepted},
    {"alreadyknown", WriteVerdict::accepted},
    {"already imported", WriteVerdict::accepted},
    {"existing txn with same hash", WriteVerdict::accepted},
    {"nonce too low", WriteVerdict::nonce_too_low},
    {"oldnonce", WriteVerdict::nonce_too_low},
    {"ownnoncealreadyused", WriteVerdict::nonce_too_low},
    // Before anything that matches "underpriced" alone: "transaction underpriced" is a node's
    // minimum price (refused), "replacement transaction underpriced" is a pool slot taken.
    {"replacement transaction underpriced", WriteVerdict::replacement_underpriced},
    {"replacementnotallowed", WriteVerdict::replacement_underpriced},
    {"could not replace existing tx", WriteVerdict::replacement_underpriced},
    {"nonce too high", WriteVerdict::retry_later},
    {"noncegap", WriteVerdict::retry_later},
    {"too distant from current sender nonce", WriteVerdict::retry_later},
    {"less than block base fee", WriteVerdict::retry_later},
    {"below current base fee", WriteVerdict::retry_later},
    {"fee too low", WriteVerdict::retry_later},
    {"feetoolow", WriteVerdict::retry_later},
    {"txpool is full", WriteVerdict::retry_later},
    {"transaction pool is full", WriteVerdict::retry_later},
    // Refusals of this transaction as it is. Unmatched messages are refused as well; these are
    // here so the table says what it has seen.
    {"underpriced", WriteVerdict::refused},
    {"insufficient funds", WriteVerdict::refused},
    {"exceeds account balance", WriteVerdict::refused},
});

}  // namespace

std::string_view to_string(WriteVerdict v) {
    switch (v) {
        case WriteVerdict::accepted: return "accepted";
        case WriteVerdict::nonce_too_low: return "nonce_too_low";
        case WriteVerdict::retry_later: return "retry_later";
        case WriteVerdict::replacement_underpriced: return "replacement_underpriced";
        case WriteVerdict::refused: return "refused";
    }
    return "refused";
}

WriteVerdict classify_write_refusal(int, std::string_view message) {
    const std::string lower = util::lower(message);
    for (const auto& rule : kWriteRules)
        if (lower.find(rule.needle) != std::string::npos) return rule.verdict;
    return WriteVerdict::refused;
}

std::string_view to_string(ErrorClass c) {
    switch (c) {
        case deterministic: return "deterministic";
        case missing: return "missing";
        case transient: return "transient";
        case rate_limited: return "rate_limited";
        case unsupported: return "unsupported";
    }
    return "deterministic";
}

ErrorClass classify_rpc_error(int code, std::string_view message) {
    const std::string text = util::lower(message);
    for (const Rule& r : kRules) {
        if (r.code != kAnyCode && r.code != code) continue;
        if (!r.needle.empty() && text.find(r.needle) == std::string::npos) continue;
        return r.cls;
    }
    return deterministic;
}

Attempt classify(const HttpResult& r, std::uint64_t id) {
    Attempt a;
    if (!r.ok()) {
        a.kind = Attempt::Kind::transport;
        a.label = to_string(r.error);
        a.detail = r.detail;
        a.maybe_delivered = r.maybe_delivered;
        // Slowness and oversized answers belong to the call as much as to the node: the
        // probes (health.timeout_ms) judge slowness, so one heavy call cannot take a node down.
        a.node_fault = r.error != TransportError::timeout &&
                       r.error != TransportError::response_too_large &&
                       r.error != TransportError::over_budget;
        return a;
    }
    auto reply = jsonrpc::parse_reply(r.body, id);
    if (r.status != 200 && (status_means_unavailable(r.status) || !reply)) {
        a.kind = Attempt::Kind::http_error;
        a.throttled = r.status == 429;
        a.label = a.throttled ? "http_429" : "http_error";
        a.detail = a.throttled && r.retry_after
                       ? fmt::format("HTTP 429 (retry after {}s)", r.retry_after->count())
                       : fmt::format("HTTP {}", r.status);
        a.maybe_delivered = !status_means_refused(r.status) && !status_about_the_request(r.status);
        // Another 4xx (400, 413, 415, ...) refuses this request, not every request: the node
        // works. Only answers no request can cause count against it.
        a.node_fault = !a.throttled && !status_about_the_request(r.status);
        a.retry_after = r.retry_after;
        return a;
    }
    if (!reply) {
        a.kind = Attempt::Kind::http_error;
        a.label = "bad_response";
        a.detail = "malformed answer: " + reply.error();
        a.node_fault = true;
        return a;
    }
    if (reply->is_error()) {
        const ErrorClass c = classify_rpc_error(reply->error.code, reply->error.message);
        if (c != deterministic) {
            a.kind = Attempt::Kind::rpc_error;
            a.error_class = c;
            a.throttled = c == rate_limited;
            a.label = c == rate_limited  ? "rpc_rate_limited"
                      : c == unsupported ? "rpc_unsupported"
                      : c == missing     ? "rpc_missing"
                                         : "rpc_transient";
            a.detail = fmt::format("{} ({})", util::utf8_prefix(reply->error.message, 200),
                                   reply->error.code);
            // The node answered: whatever it said, it works (see Attempt::node_fault).
            a.node_fault = false;
            // The node read the call and refused it: with a rate limit, an unsupported method or
            // a missing block it certainly did nothing; a transient fault may come after it acted.
            a.maybe_delivered = c == transient;
            a.reply = std::move(*reply);
            return a;
        }
    }
    a.kind = Attempt::Kind::answered;
    a.label = "";
    a.reply = std::move(*reply);
    a.maybe_delivered = true;
    return a;
}

}  // namespace gateway::upstream
