// Fuzz target: configuration text through parse_config, as `--check-config` and start-up read it.
// Whatever the text, the only way out is a Config or a ConfigError that names the source; any
// other exception (yaml-cpp's own, std::out_of_range, ...) or a crash is a finding. The
// environment is a fixed map, so the text's ${NAME} references are read too.

#include "check.hpp"

#include "gateway/config/config.hpp"

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>

namespace {

using gateway::fuzz::check;
namespace config = gateway::config;

std::optional<std::string> lookup(std::string_view name) {
    // The variables config/example.yaml names, and one that is set but empty.
    static const std::map<std::string, std::string, std::less<>> kEnv = {
        {"PROVIDER_A_KEY", "key-a"},
        {"PROVIDER_B_PASSWORD", "password-b"},
        {"SEPOLIA_KEY", "key-s"},
        {"BACKEND_KEY", "backend-key-0123456789abcdef"},
        {"INDEXER_KEY", "indexer-key-0123456789abcdef,second-key-0123456789abcdef"},
        {"ADMIN_TOKEN", "admin-token-0123456789abcdef"},
        {"HOT_KEY", "0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"},
        {"EMPTY", ""},
    };
    const auto it = kEnv.find(name);
    if (it == kEnv.end()) return std::nullopt;
    return it->second;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    try {
        const config::Config c = config::parse_config(text, "fuzz.yaml", lookup);
        check(!c.chains.empty(), "a configuration has chains");
        for (const auto& chain : c.chains) {
            check(!chain.name.empty(), "a chain has a name");
            check(!chain.upstreams.empty(), "a chain has upstreams");
        }
    } catch (const config::ConfigError& e) {
        check(std::string_view(e.what()).starts_with("fuzz.yaml"),
              "a configuration error names the source");
    }
    return 0;
}
