#pragma once
// What a fuzz target does when an invariant breaks: says which, and aborts, so that libFuzzer
// keeps the input as a finding. (assert() is compiled out in this RelWithDebInfo build.)

#include <cstdio>
#include <cstdlib>
#include <string_view>

namespace gateway::fuzz {

// __builtin_FILE and __builtin_LINE: clang 14's libstdc++ has no usable <source_location>.
inline void check(bool holds, std::string_view what, const char* file = __builtin_FILE(),
                  int line = __builtin_LINE()) {
    if (holds) return;
    std::fprintf(stderr, "%s:%d: invariant broken: %.*s\n", file, line,
                 static_cast<int>(what.size()), what.data());
    std::abort();
}

}  // namespace gateway::fuzz
