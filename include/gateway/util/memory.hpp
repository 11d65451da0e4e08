#pragma once
// What the process's allocator keeps of freed memory, handed back to the system: after a flood
// of large request bodies, glibc's malloc would otherwise hold the peak until asked. jemalloc
// (the chain-gateway binary's) hands it back by itself, on a thread of its own (main.cpp).

#include <string_view>

namespace gateway::util {

/// Hands back the free memory glibc's malloc holds; nothing under jemalloc, which does so itself.
void give_back_free_memory();

/// The allocator malloc goes to: "jemalloc", or "system" (glibc's, or a sanitizer's).
std::string_view allocator_name();

}  // namespace gateway::util
