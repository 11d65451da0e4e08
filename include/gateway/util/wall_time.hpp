#pragma once
// Wall-clock time as the journal records it: Unix milliseconds, shown in ISO 8601 (UTC).

#include <fmt/chrono.h>
#include <fmt/format.h>

#include <chrono>
#include <cstdint>
#include <string>

namespace gateway::util {

/// Now, in milliseconds since the Unix epoch.
inline std::int64_t unix_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

/// "2026-11-27T07:06:30.560Z" for a time in Unix milliseconds.
inline std::string iso_time(std::int64_t ms) {
    const std::chrono::sys_time<std::chrono::milliseconds> t{std::chrono::milliseconds(ms)};
    return fmt::format("{:%FT%T}Z", t);
}

}  // namespace gateway::util
