#include "gateway/rpc/method_policy.hpp"

#include "gateway/util/text.hpp"

#include <fmt/format.h>

#include <utility>

namespace gateway::rpc {

MethodPolicy::MethodPolicy(const config::MethodsConfig& config)
    : allow_list_(!config.allow.empty()) {
    auto add = [&](const std::vector<std::string>& patterns, bool allow) {
        for (const auto& p : patterns) {
            const bool prefix = !p.empty() && p.back() == '*';
            rules_.push_back(Rule{prefix ? p.substr(0, p.size() - 1) : p, prefix, allow});
        }
    };
    add(config.deny, false);
    add(config.allow, true);
}

std::optional<std::string> MethodPolicy::refusal(std::string_view method) const {
    const Rule* best = nullptr;
    for (const Rule& r : rules_) {
        const bool matches =
            r.prefix ? method.substr(0, r.pattern.size()) == r.pattern : method == r.pattern;
        if (!matches) continue;
        // Exact beats prefix, longer prefix beats shorter, deny beats allow (deny rules come
        // first).
        auto rank = [](const Rule& x) { return std::pair(!x.prefix, x.pattern.size()); };
        if (!best || rank(r) > rank(*best)) best = &r;
    }
    if (best) {
        if (best->allow) return std::nullopt;
        return fmt::format("method {} is not allowed here (methods.deny: {}{})",
                           util::utf8_prefix(method, 64), best->pattern, best->prefix ? "*" : "");
    }
    if (allow_list_)
        return fmt::format("method {} is not allowed here (not in methods.allow)",
                           util::utf8_prefix(method, 64));
    return std::nullopt;
}

}  // namespace gateway::rpc
