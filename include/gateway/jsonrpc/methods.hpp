#pragma once
// The method vocabulary every layer shares: how each JSON-RPC method is routed, which block it
// needs, its metric label, the methods never served, and reading a block quantity. The table
// itself is in src/jsonrpc/methods.cpp.

#include <boost/json/value.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace gateway::jsonrpc {

enum class MethodKind {
    read,   ///< answered by any healthy upstream; may be retried on another one
    write,  ///< may change state; never re-sent once it may have reached a node
    local,  ///< answered by the gateway itself
};

/// How a method is routed. Methods the table does not know are writes: the node decides what
/// they do, and the gateway does not send them twice.
MethodKind method_kind(std::string_view method);

/// The method's metric label: the method itself when the table knows it, "other" otherwise, so a
/// client inventing method names cannot grow the metrics without bound.
std::string_view method_label(std::string_view method);

/// Which chain state a call needs from the node that answers it.
struct BlockNeed {
    enum class Kind {
        none,    ///< no chain state (net_version, web3_sha3): any node will do
        latest,  ///< the head (a `latest`/`pending`/`safe`/`finalized` tag, no block, a tx hash)
        number,  ///< a block by number: the node must have reached it
        hash,    ///< a block by hash: treated like latest, a node behind may not know it
    };
    Kind kind = Kind::latest;
    std::uint64_t number = 0;  ///< for Kind::number
};

/// The block a call needs, read from its params by the method's block parameter. Unknown methods
/// and unreadable params need the head.
BlockNeed block_need(std::string_view method, const boost::json::value& params);

/// Where a method names its block: the index of its block parameter (eth_getBalance: 1). nullopt
/// for methods without one (eth_getLogs names its blocks inside its filter object).
std::optional<std::size_t> block_param_index(std::string_view method);

/// Methods the gateway never forwards, whatever the chain's lists say: a node's own accounts
/// (eth_sendUnsignedTransaction, personal_*, wallet_*, *_impersonateAccount: a node with unlocked
/// or impersonated accounts would sign and send for anyone), and, deny by default, every method
/// whose name after its namespace starts with `send` or `sign` (any case), or that mentions a
/// bundle, plus eth_cancelPrivateTransaction: signing by nodes, and sends that would go around
/// the journal and its checks (eth_sendRawTransactionConditional, private transactions, bundles,
/// user operations). The sends the gateway routes itself are not refused (eth_sendRawTransaction,
/// eth_sendRawTransactionSync, eth_sendTransaction, eth_sendTransactionSync,
/// gateway_sendTransaction). Why, for the client; nullopt for every other method.
std::optional<std::string> unserved_reason(std::string_view method);

/// Parses a block quantity ("0x1b4"). nullopt for anything else.
std::optional<std::uint64_t> parse_quantity(std::string_view text);

}  // namespace gateway::jsonrpc
