#pragma once
// What the process's allocator keeps of freed memory, handed back to the system: after a flood
// of large request bodies, the allocator would otherwise hold the peak (glibc until it is asked,
// jemalloc for its decay time, 10 s by default).

#include <string_view>

namespace gateway::util {

/// Hands back the free memory the allocator holds: jemalloc's when the process runs on it (the
/// chain-gateway binary, GATEWAY_MALLOC=jemalloc), and glibc's.
void give_back_free_memory();

/// The allocator malloc goes to: "jemalloc", or "system" (glibc's, or a sanitizer's).
std::string_view allocator_name();

}  // namespace gateway::util
