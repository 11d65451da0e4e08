#pragma once
// How long to wait before trying again: a base wait doubled after each failure in a row.

#include <algorithm>
#include <chrono>

namespace gateway::util {

/// `base` doubled for each failure after the first (`failures` counts them, from 1), at most
/// 2^`max_doublings` times, and never above `cap`.
inline std::chrono::milliseconds doubling_backoff(std::chrono::milliseconds base, unsigned failures,
                                                  unsigned max_doublings,
                                                  std::chrono::milliseconds cap) {
    const unsigned doublings = std::min(failures > 0 ? failures - 1 : 0u, max_doublings);
    return std::min<std::chrono::milliseconds>(base * (1u << doublings), cap);
}

}  // namespace gateway::util
