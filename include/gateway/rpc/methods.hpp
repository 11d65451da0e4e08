#pragma once
// What the gateway knows about JSON-RPC methods: how to route each one, and its metric label.

#include <string_view>

namespace gateway::rpc {

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

}  // namespace gateway::rpc
