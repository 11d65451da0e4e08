#pragma once
// Small text helpers shared across modules.

#include <algorithm>
#include <cctype>
#include <string>
#include <string_view>

namespace gateway::util {

/// `s` in ASCII lower case (hex digits, header names, node error messages).
inline std::string lower(std::string_view s) {
    std::string out(s);
    std::transform(out.begin(), out.end(), out.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return out;
}

}  // namespace gateway::util
