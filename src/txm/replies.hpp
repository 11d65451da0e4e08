#pragma once
// Private to src/txm: the JSON-RPC answers the transaction manager makes itself, shared by the
// raw intake and the managed senders.

#include "gateway/jsonrpc/jsonrpc.hpp"

#include <fmt/format.h>
#include <boost/json/value.hpp>

#include <optional>
#include <string>
#include <string_view>

namespace gateway::txm::detail {

inline jsonrpc::Reply error_reply(int code, std::string message,
                                  std::optional<boost::json::value> data = std::nullopt) {
    return jsonrpc::Reply::failure(jsonrpc::Error(code, std::move(message), std::move(data)));
}

inline jsonrpc::Reply error_reply(jsonrpc::ErrorCode code, std::string message) {
    return error_reply(static_cast<int>(code), std::move(message));
}

inline jsonrpc::Reply result_reply(std::string json_text) {
    return jsonrpc::Reply::success(std::move(json_text));
}

/// A send refused because the journal cannot take it (`why`: its failure, may be empty):
/// nothing was accepted, so the client may send it again.
inline jsonrpc::Reply journal_unavailable(std::string_view why) {
    return error_reply(jsonrpc::ErrorCode::resource_unavailable,
                       fmt::format("the transaction journal is not available{}{}: the "
                                   "transaction was not accepted; send it again later",
                                   why.empty() ? "" : ": ", why));
}

/// A send a standby of a shared journal could not confirm (`why`: its failure): it may have been
/// kept and handed to the gateway that dispatches all the same (a commit that went through after
/// its deadline, taken by that gateway before it could be taken back), so the client looks it up
/// or sends the same again: the same signed bytes, or the same Idempotency-Key.
inline jsonrpc::Reply journal_unsure(std::string_view why) {
    return error_reply(
        jsonrpc::ErrorCode::resource_unavailable,
        fmt::format("the transaction journal did not confirm it ({}): it may have "
                    "been kept; send the same signed transaction again, or the same "
                    "request with the same Idempotency-Key, which finds it if it was",
                    why));
}

/// A new transaction the journal could not keep (`why`: its failure): the client may send it
/// again.
inline jsonrpc::Reply journal_unwritable(std::string_view why) {
    return error_reply(jsonrpc::ErrorCode::resource_unavailable,
                       fmt::format("the transaction journal cannot be written ({}): the "
                                   "transaction was not accepted; send it again later",
                                   why));
}

/// A read of the journal that failed (`why`: its failure).
inline jsonrpc::Reply journal_unreadable(std::string_view why) {
    return error_reply(jsonrpc::ErrorCode::resource_unavailable,
                       fmt::format("the transaction journal cannot be read: {}", why));
}

}  // namespace gateway::txm::detail
