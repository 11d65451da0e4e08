#pragma once
// gzip (RFC 1952) both ways, with zlib: answers compressed for the clients that accept it,
// request bodies and upstream answers decoded, never past a limit (a small body that inflates to
// gigabytes is refused, not held).

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace gateway::util {

/// `in` as one gzip member, at zlib level `level` (1 fastest .. 9 smallest).
std::string gzip(std::string_view in, int level = 1);

enum class GunzipError {
    corrupt,    ///< not gzip, damaged, or cut short
    too_large,  ///< it decodes to more than the limit
};

/// Decodes gzip: one member or several in a row (RFC 1952 section 2.2). Stops as soon as the
/// output would pass `limit` bytes. `error` says why when it returns nothing.
std::optional<std::string> gunzip(std::string_view in, std::size_t limit, GunzipError* error);

/// Whether an Accept-Encoding header's value accepts gzip (RFC 9110 section 12.5.3): "gzip",
/// "x-gzip" or "*" without q=0; names without case.
bool accepts_gzip(std::string_view accept_encoding);

}  // namespace gateway::util
