#pragma once
// Writing JSON text onto the end of a string, for the hot paths that build a request or a key
// piece by piece (jsonrpc's upstream requests, the cache's keys).

#include <boost/json/value.hpp>

#include <string>
#include <string_view>

namespace gateway::jsonrpc {

/// Appends the JSON text of `v` to `out`, with a serializer the thread keeps (a fresh one takes its
/// stack from the heap for every array or object).
void append_json(std::string& out, const boost::json::value& v);
/// Appends `s` as a JSON string (quoted, escaped) to `out`, the same way.
void append_json(std::string& out, std::string_view s);

}  // namespace gateway::jsonrpc
