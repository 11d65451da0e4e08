#pragma once
// A chain's allow and deny lists of methods (`methods:` in its config), applied by the RPC
// handler before a call goes anywhere.

#include "gateway/config/config.hpp"

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace gateway::rpc {

/// A chain's allow and deny lists. An exact name beats a prefix (`debug_*`), a longer prefix
/// beats a shorter one, deny beats allow at the same length; with a non-empty allow list,
/// methods it does not match are refused.
class MethodPolicy {
public:
    explicit MethodPolicy(const config::MethodsConfig& config);
    /// Empty when the method may be called; otherwise why not, naming the rule.
    std::optional<std::string> refusal(std::string_view method) const;

private:
    struct Rule {
        std::string pattern;  // an exact name, or a prefix when `prefix`
        bool prefix = false;
        bool allow = false;
    };
    std::vector<Rule> rules_;
    bool allow_list_ = false;
};

}  // namespace gateway::rpc
