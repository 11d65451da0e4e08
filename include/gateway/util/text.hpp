#pragma once
// Small text helpers shared across modules.

#include <algorithm>
#include <cctype>
#include <cstddef>
#include <string>
#include <string_view>

namespace gateway::util {

/// `c` in ASCII lower case: std::tolower in the "C" locale the gateway runs in, without its call.
constexpr char ascii_lower(char c) {
    return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c;
}

/// `s` in ASCII lower case (hex digits, header names, node error messages).
inline std::string lower(std::string_view s) {
    std::string out(s);
    std::transform(out.begin(), out.end(), out.begin(), ascii_lower);
    return out;
}

/// `s` without the spaces and tabs around it (HTTP's optional whitespace, around a header value or
/// a list item).
inline std::string_view trim_ows(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}

/// At most `max` bytes of `s`, cut before a UTF-8 character rather than inside one: a message that
/// quotes a shortened text (a node's error, a method name) stays valid UTF-8, and so valid in the
/// JSON a client reads.
inline std::string_view utf8_prefix(std::string_view s, std::size_t max) {
    if (s.size() <= max) return s;
    std::size_t n = max;
    // s[n] is the first byte left out; while it continues a character (10xxxxxx), that character
    // started before the cut. A character has at most three such bytes.
    for (int i = 0; i < 3 && n > 0 && (static_cast<unsigned char>(s[n]) & 0xc0) == 0x80; ++i) --n;
    return s.substr(0, n);
}

}  // namespace gateway::util
