#include "gateway/util/memory.hpp"

#include <malloc.h>

#include <cstddef>

// jemalloc's control interface. Weak: the library is linked into binaries that run on glibc's
// malloc (the tests, the sanitizer builds), where it stays null.
extern "C" int mallctl(const char* name, void* oldp, std::size_t* oldlenp, void* newp,
                       std::size_t newlen) __attribute__((weak));

namespace gateway::util {

void give_back_free_memory() {
    if (mallctl) {
        // Every arena's unused dirty pages: "arena.<MALLCTL_ARENAS_ALL>.purge" (4096).
        mallctl("arena.4096.purge", nullptr, nullptr, nullptr, 0);
        return;
    }
    ::malloc_trim(0);
}

std::string_view allocator_name() {
    return mallctl ? "jemalloc" : "system";
}

}  // namespace gateway::util
