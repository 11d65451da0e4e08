// What an authenticated caller may do (senders, methods), and the small credential helpers:
// the bearer scheme and constant-time secret comparison.

#include "gateway/auth/auth.hpp"

#include "gateway/util/text.hpp"
#include "jose.hpp"

#include <fmt/format.h>

#include <algorithm>

namespace gateway::auth {

namespace {

bool is_space(char c) {
    return c == ' ' || c == '\t';
}

// The rule of chains[].methods: an exact name, or a prefix ending in `*` (`*` alone: any).
bool matches(std::string_view pattern, std::string_view method) {
    if (!pattern.empty() && pattern.back() == '*')
        return method.starts_with(pattern.substr(0, pattern.size() - 1));
    return method == pattern;
}

}  // namespace

UnixClock system_unix_clock() {
    return [] {
        return std::chrono::duration_cast<std::chrono::seconds>(
                   std::chrono::system_clock::now().time_since_epoch())
            .count();
    };
}

Client::Client(std::string id, std::vector<std::string> senders, std::vector<std::string> methods,
               bool anonymous, std::string label)
    : id_(std::move(id)),
      label_(label.empty() ? id_ : std::move(label)),
      senders_(std::move(senders)),
      methods_(std::move(methods)),
      anonymous_(anonymous) {
    for (auto& s : senders_) s = util::lower(s);
}

bool Client::may_send_from(std::string_view chain, std::string_view sender) const {
    if (anonymous_) return true;
    const std::string wanted = util::lower(sender);
    for (const std::string& s : senders_) {
        const auto colon = s.find(':');
        if (colon == std::string::npos) {
            if (s == wanted) return true;  // on every chain
        } else if (std::string_view(s).substr(0, colon) == chain &&
                   std::string_view(s).substr(colon + 1) == wanted) {
            return true;
        }
    }
    return false;
}

std::optional<std::string> Client::method_refusal(std::string_view method) const {
    if (methods_.empty()) return std::nullopt;
    for (const auto& pattern : methods_)
        if (matches(pattern, method)) return std::nullopt;
    // Token clients share auth.jwt.methods; a configured client has its own list.
    const char* where = id_.starts_with("jwt:") ? "auth.jwt.methods" : "auth.clients[].methods";
    return fmt::format("method {} is not allowed for client {} ({})", util::utf8_prefix(method, 64),
                       id_, where);
}

std::string_view to_string(Outcome outcome) {
    switch (outcome) {
        case Outcome::ok: return "ok";
        case Outcome::missing: return "missing";
        case Outcome::invalid: return "invalid";
        case Outcome::expired: return "expired";
        case Outcome::unknown_key: return "unknown_key";
    }
    return "invalid";
}

std::string_view bearer_token(std::string_view authorization_header) {
    std::string_view h = util::trim_ows(authorization_header);
    constexpr std::string_view kScheme = "bearer";
    if (h.size() <= kScheme.size() || !is_space(h[kScheme.size()]) ||
        util::lower(h.substr(0, kScheme.size())) != kScheme)
        return {};
    return util::trim_ows(h.substr(kScheme.size()));
}

bool secret_equals(std::string_view presented, std::string_view expected) {
    const auto a = detail::sha256(presented);
    const auto b = detail::sha256(expected);
    return a && b && detail::digest_equals(*a, *b);
}

}  // namespace gateway::auth
