#pragma once
// Configuration text parsed for tests, with the environment given as a map, and the message of
// the error a text must give.

#include "gateway/config/config.hpp"

#include <gtest/gtest.h>

#include <map>
#include <optional>
#include <string>
#include <string_view>

namespace gateway::test {

/// An environment of these variables only.
inline config::EnvLookup env_of(std::map<std::string, std::string> vars) {
    return [vars = std::move(vars)](std::string_view name) -> std::optional<std::string> {
        auto it = vars.find(std::string(name));
        if (it == vars.end()) return std::nullopt;
        return it->second;
    };
}

/// Parses `yaml` as "test.yaml".
inline config::Config parse(const std::string& yaml, std::map<std::string, std::string> env = {}) {
    return config::parse_config(yaml, "test.yaml", env_of(std::move(env)));
}

/// The message of the ConfigError that parsing `yaml` throws (a test failure when it does not).
inline std::string error_of(const std::string& yaml, std::map<std::string, std::string> env = {}) {
    try {
        parse(yaml, std::move(env));
    } catch (const config::ConfigError& e) {
        return e.what();
    }
    ADD_FAILURE() << "no ConfigError for:\n" << yaml;
    return "";
}

}  // namespace gateway::test
