#include "gateway/http/listener.hpp"

#include <sys/resource.h>
#include <algorithm>
#include <cstdint>
#include <fstream>
#include <limits>
#include <optional>

namespace gateway::http {

std::uint64_t descriptor_limit_target(std::uint64_t soft, std::uint64_t hard,
                                      std::optional<std::uint64_t> nr_open) {
    std::uint64_t target = hard;
    if (nr_open && *nr_open > 0) target = std::min(target, *nr_open);
    return std::max(soft, target);
}

std::size_t default_max_connections(std::size_t descriptor_limit) {
    return std::clamp<std::size_t>(descriptor_limit / 4, 1, kMaxDefaultConnections);
}

namespace {

// The most descriptors the kernel lets a process have (Linux); nullopt where it cannot be read.
std::optional<std::uint64_t> kernel_nr_open() {
    std::ifstream in("/proc/sys/fs/nr_open");
    std::uint64_t n = 0;
    if (in >> n) return n;
    return std::nullopt;
}

}  // namespace

std::size_t raise_descriptor_limit() {
    rlimit limit{};
    if (getrlimit(RLIMIT_NOFILE, &limit) != 0) return 0;
    const std::uint64_t target =
        descriptor_limit_target(limit.rlim_cur, limit.rlim_max, kernel_nr_open());
    if (target > limit.rlim_cur) {
        rlimit raised = limit;
        raised.rlim_cur = static_cast<rlim_t>(target);
        if (setrlimit(RLIMIT_NOFILE, &raised) == 0) limit = raised;
    }
    return static_cast<std::size_t>(
        std::min<std::uint64_t>(limit.rlim_cur, std::numeric_limits<std::size_t>::max()));
}

}  // namespace gateway::http
