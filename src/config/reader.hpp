#pragma once
// Private to src/config: the YAML reader every section goes through (so that every error names
// its file, line, column and key path, and ${NAME} is read from the environment), and the
// section readers that parse_config (config.cpp) calls. Sections: server.cpp (server, log,
// store), chains.cpp (chains and their parts), security.cpp (signers, auth, the exposure check);
// shared value readers in reader.cpp.

#include "gateway/config/config.hpp"
#include "gateway/util/text.hpp"

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <regex>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace gateway::config::detail {

// Whether `text` is at most `max_size` bytes and matches `pattern`. libstdc++'s std::regex matches
// recursively, a stack frame or more per character, so a long value (tens of KB, fewer under
// sanitizers; a configuration may hold a MiB) would overflow the stack: the length is checked
// first, and every pattern here describes something short.
inline bool matches(const std::string& text, const std::regex& pattern, std::size_t max_size) {
    return text.size() <= max_size && std::regex_match(text, pattern);
}

// Walks the YAML tree; every read goes through here so that every error can name its key and line.
class Reader {
public:
    /// `expand` false: values are taken as they are written, ${NAME} included (a definition from
    /// the admin API must not read the gateway's environment).
    Reader(std::string_view source, const EnvLookup& env, bool expand = true)
        : source_(source), env_(env), expand_(expand) {}

    [[noreturn]] void fail(const YAML::Node& at, std::string_view path,
                           std::string_view problem) const {
        throw ConfigError(fmt::format("{}: {}: {}", where(at), path, problem));
    }

    std::string where(const YAML::Node& at) const {
        if (!at.IsDefined()) return std::string(source_);  // a missing key has no position
        const YAML::Mark mark = at.Mark();
        if (mark.is_null() || mark.line < 0) return std::string(source_);
        return fmt::format("{}:{}:{}", source_, mark.line + 1, mark.column + 1);
    }

    /// Rejects unknown and repeated keys of a mapping; `allowed` lists what the section knows.
    void check_keys(const YAML::Node& map, std::string_view path,
                    std::initializer_list<std::string_view> allowed) const {
        if (!map.IsMap()) fail(map, path, "must be a mapping");
        std::set<std::string> seen;
        for (auto it = map.begin(); it != map.end(); ++it) {
            const std::string key = it->first.as<std::string>();
            const std::string key_path = path.empty() ? key : fmt::format("{}.{}", path, key);
            if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
                std::string known;
                for (auto a : allowed) known += (known.empty() ? "" : ", ") + std::string(a);
                fail(it->first, key_path, fmt::format("unknown key (known here: {})", known));
            }
            if (!seen.insert(key).second) fail(it->first, key_path, "key appears twice");
        }
    }

    /// A scalar with ${NAME} and ${NAME:-default} replaced from the environment.
    std::string scalar(const YAML::Node& node, std::string_view path) const {
        if (!node.IsScalar()) fail(node, path, "must be a single value");
        const std::string& raw = node.Scalar();
        if (!expand_) return raw;
        std::string out;
        for (std::size_t i = 0; i < raw.size();) {
            if (raw.compare(i, 3, "$${") == 0) {  // escaped: a literal "${"
                out += "${";
                i += 3;
                continue;
            }
            if (raw.compare(i, 2, "${") != 0) {
                out += raw[i++];
                continue;
            }
            auto close = raw.find('}', i);
            if (close == std::string::npos) fail(node, path, "unterminated ${ in value");
            std::string expr = raw.substr(i + 2, close - i - 2);
            std::optional<std::string> fallback;
            if (auto sep = expr.find(":-"); sep != std::string::npos) {
                fallback = expr.substr(sep + 2);
                expr.resize(sep);
            }
            static const std::regex kName("[A-Za-z_][A-Za-z0-9_]*");
            if (!matches(expr, kName, 255))
                fail(node, path,
                     fmt::format("'${{{}}}' is not a valid variable name",
                                 util::utf8_prefix(expr, 80)));
            std::optional<std::string> value = env_(expr);
            if (!value || (value->empty() && fallback)) value = fallback;
            if (!value)
                fail(node, path,
                     fmt::format(
                         "environment variable {} is not set (use ${{{}:-default}} for a default)",
                         expr, expr));
            out += *value;
            i = close + 1;
        }
        return out;
    }

    std::uint64_t integer(const YAML::Node& node, std::string_view path, std::uint64_t min,
                          std::uint64_t max) const {
        const std::string text = scalar(node, path);
        std::uint64_t value = 0;
        auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
        if (text.empty() || ec != std::errc() || end != text.data() + text.size())
            fail(node, path, fmt::format("'{}' is not a whole number", text));
        if (value < min || value > max)
            fail(node, path, fmt::format("{} is out of range [{}, {}]", value, min, max));
        return value;
    }

    Millis millis(const YAML::Node& node, std::string_view path, std::uint64_t min = 1) const {
        return Millis(integer(node, path, min, 24ull * 3600 * 1000));
    }

    std::string one_of(const YAML::Node& node, std::string_view path,
                       std::initializer_list<std::string_view> options) const {
        std::string value = scalar(node, path);
        if (std::find(options.begin(), options.end(), value) != options.end()) return value;
        std::string list;
        for (auto o : options) list += (list.empty() ? "" : ", ") + std::string(o);
        fail(node, path, fmt::format("'{}' is not one of: {}", value, list));
    }

    Endpoint endpoint(const YAML::Node& node, std::string_view path) const {
        std::string text = scalar(node, path);
        try {
            return parse_endpoint(text);
        } catch (const std::invalid_argument& e) {
            fail(node, path, fmt::format("'{}': {}", text, e.what()));
        }
    }

    /// An environment variable, as it is (for secrets named by *_env keys).
    std::optional<std::string> env(std::string_view name) const { return env_(name); }

private:
    std::string_view source_;
    const EnvLookup& env_;
    bool expand_ = true;
};

template <class F>
void if_set(const YAML::Node& map, const char* key, F&& f) {
    const YAML::Node node = map[key];
    if (node.IsDefined() && !node.IsNull()) f(node);
}

// Values several sections read (reader.cpp).
std::vector<std::string> read_list(const Reader& r, const YAML::Node& n, const std::string& path);
bool read_bool(const Reader& r, const YAML::Node& n, const std::string& path);
/// Method names, or prefixes ending in *.
std::vector<std::string> read_method_patterns(const Reader& r, const YAML::Node& n,
                                              const std::string& path);
/// An address: 0x and 40 hex digits, kept lowercase.
std::string read_address(const Reader& r, const YAML::Node& n, const std::string& path);
/// An http:// or https:// URL with a host, for a service the gateway calls (never repeated in an
/// error: it may carry credentials).
std::string read_http_url(const Reader& r, const YAML::Node& n, const std::string& path);
/// A name that is also a URL path segment: 1-63 of [a-z0-9_-], starting with a letter or digit
/// (a chain's, a stream's).
std::string read_path_name(const Reader& r, const YAML::Node& n, const std::string& path);
/// Secrets named by `<what>_env` or `<what>_file`; messages never show a secret.
std::vector<std::string> read_secrets(const Reader& r, const YAML::Node& n, const std::string& path,
                                      const std::string& what, std::string& env_name,
                                      std::string& file_name);

// The sections.
void read_server(const Reader& r, const YAML::Node& n, ServerConfig& s);  // server.cpp
void read_log(const Reader& r, const YAML::Node& n, LogConfig& l);
void read_store(const Reader& r, const YAML::Node& n, StoreConfig& s);
void read_chain(const Reader& r, const YAML::Node& n, const std::string& path,
                ChainConfig& c);  // chains.cpp
void read_signer(const Reader& r, const YAML::Node& n, const std::string& path,
                 SignerConfig& s);  // security.cpp
void read_auth(const Reader& r, const YAML::Node& n, AuthConfig& a);
void read_stream(const Reader& r, const YAML::Node& n, const std::string& path, StreamConfig& s,
                 bool from_api = false);  // streams.cpp  // streams.cpp
/// What must hold across sections (security.cpp).
void check_exposure(const Reader& r, const YAML::Node& root, const Config& c);

}  // namespace gateway::config::detail
