#include "gateway/util/memory.hpp"

#include <malloc.h>

#include <cstddef>

// jemalloc's control interface. Weak: the library is linked into binaries that run on glibc's
// malloc (the tests, the sanitizer builds), where it stays null.
extern "C" int mallctl(const char* name, void* oldp, std::size_t* oldlenp, void* newp,
                       std::size_t newlen) __attribute__((weak));

namespace gateway::util {

void give_back_free_memory() {
    // jemalloc hands back what it does not use on a thread of its own, within about a second
    // (malloc_conf in main.cpp): nothing to do here, on the caller's thread.
    if (mallctl) return;
    ::malloc_trim(0);
}

std::string_view allocator_name() {
    return mallctl ? "jemalloc" : "system";
}

}  // namespace gateway::util
