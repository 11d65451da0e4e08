#pragma once
// JSON-RPC 2.0 as the gateway speaks it: decoding what clients send, encoding what they get back,
// and reading what upstream nodes answer. Pure functions, no I/O, never throws on bad input.

#include <boost/json/value.hpp>
#include <boost/system/result.hpp>

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace gateway::jsonrpc {

/// Error codes the gateway answers with. -32700..-32600 are JSON-RPC 2.0's own; the -32000..-32099
/// server range follows EIP-1474, which wallets and libraries already know.
enum class ErrorCode : int {
    parse_error = -32700,
    invalid_request = -32600,
    method_not_found = -32601,
    invalid_params = -32602,
    internal_error = -32603,
    resource_not_found = -32001,    ///< e.g. an unknown chain in the URL path
    resource_unavailable = -32002,  ///< no upstream could answer
    limit_exceeded = -32005,        ///< batch or body over a configured limit, or a rate limit
    /// EIP-1193's "unauthorized", which wallets know: no valid credential, or the method or
    /// account is not one this client may use.
    unauthorized = 4100,
};

/// An error as a client sees it: a code, a sentence a person can act on, optional data.
struct Error {
    int code = static_cast<int>(ErrorCode::internal_error);
    std::string message;
    std::optional<boost::json::value> data;

    Error() = default;
    Error(ErrorCode c, std::string msg) : code(static_cast<int>(c)), message(std::move(msg)) {}
    Error(int c, std::string msg, std::optional<boost::json::value> d = std::nullopt)
        : code(c), message(std::move(msg)), data(std::move(d)) {}
};

/// The id's JSON text for a response that has no usable request id.
inline constexpr std::string_view kNullId = "null";

/// One well-formed call as the client sent it.
struct Call {
    std::string id = std::string(kNullId);  ///< the id's JSON text, exactly as received
    bool notification = false;              ///< no "id" member: the client wants no answer
    std::string method;
    boost::json::value params;  ///< an array or an object; null when the client sent none
};

/// An entry of a request that is not a valid call; it is answered with `error` at its place.
struct InvalidCall {
    std::string id = std::string(kNullId);  ///< the entry's id when one could be read, else null
    Error error;
};

using Entry = std::variant<Call, InvalidCall>;

/// A decoded HTTP body: one call, or a batch whose entries keep the client's order.
struct Request {
    bool batch = false;
    std::vector<Entry> entries;
};

struct ParseLimits {
    std::size_t max_batch_size = 1000;
};

/// Decodes a request body. Fails only when the body as a whole cannot be answered call by call
/// (malformed JSON, neither an object nor an array, an empty batch, a batch over the limit); the
/// error is then answered once, with id null. Every id keeps its exact JSON text, so 1.50, "7" and
/// 12345678901234567890123 come back to the client exactly as sent.
boost::system::result<Request, Error> parse_request(std::string_view body,
                                                    const ParseLimits& limits);

/// `{"jsonrpc":"2.0","id":<id>,"result":<result_json>}`. Both arguments are JSON texts.
std::string result_response(std::string_view id, std::string_view result_json);
/// The size of result_response(id, result_json), without making it.
std::size_t result_response_size(std::string_view id, std::string_view result_json);

/// `{"jsonrpc":"2.0","id":<id>,"error":{...}}`. `id` is a JSON text.
std::string error_response(std::string_view id, const Error& error);

/// The error code of a response the gateway wrote (error_response, or a node's error passed on
/// as reply_response writes it); nullopt for a result. It looks for `"error":{"code":` outside
/// any string (inside one, the quotes would be escaped), without parsing the whole answer.
std::optional<std::int64_t> error_code_of(std::string_view response);

/// Joins single responses into a batch answer.
std::string batch_response(const std::vector<std::string>& responses);

/// The request the gateway sends to an upstream for one call, under the gateway's own id.
std::string upstream_request(std::uint64_t id, std::string_view method,
                             const boost::json::value& params);
/// upstream_request appended to `out` (a batch's calls, one after the other).
void append_upstream_request(std::string& out, std::uint64_t id, std::string_view method,
                             const boost::json::value& params);

/// What an upstream answered to one call.
struct Reply {
    std::optional<std::string>
        result;   ///< the result's JSON text; empty when the node answered an error
    Error error;  ///< meaningful only when `result` is empty
    bool is_error() const { return !result.has_value(); }

    static Reply success(std::string result_json) {
        Reply r;
        r.result = std::move(result_json);
        return r;
    }
    static Reply failure(Error e) {
        Reply r;
        r.error = std::move(e);
        return r;
    }
};

/// Reads an upstream's answer to a single call. Fails when the body is not a JSON-RPC 2.0 response
/// (an HTML error page, truncated JSON, a batch, a response with neither result nor error, or a
/// different id than `expected_id`): the message says what was wrong, for logs and for the client.
/// A node's answer to a batch: each element's text with its integer id (an element without one
/// has none). nullopt when the body is not JSON or not an array.
struct BatchElement {
    std::optional<std::uint64_t> id;
    std::string_view text;
};
std::optional<std::vector<BatchElement>> split_batch_reply(std::string_view body);

boost::system::result<Reply, std::string> parse_reply(std::string_view body,
                                                      std::uint64_t expected_id);
/// parse_reply for text already known to be valid JSON (an element split_batch_reply returned):
/// it is not validated again. Other text gets an error or a meaningless reply, never a read out
/// of its bounds.
boost::system::result<Reply, std::string> parse_valid_reply(std::string_view body,
                                                            std::uint64_t expected_id);

}  // namespace gateway::jsonrpc
