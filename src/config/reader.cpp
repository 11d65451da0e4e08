// The value readers several config sections share: lists, booleans, method patterns, addresses,
// and secrets named by an environment variable or a file.

#include "reader.hpp"

#include <boost/url/parse.hpp>

#include <fstream>

namespace gateway::config::detail {

std::vector<std::string> read_list(const Reader& r, const YAML::Node& n, const std::string& path) {
    if (!n.IsSequence()) r.fail(n, path, "must be a list");
    std::vector<std::string> out;
    for (std::size_t i = 0; i < n.size(); ++i)
        out.push_back(r.scalar(n[i], fmt::format("{}[{}]", path, i)));
    return out;
}

bool read_bool(const Reader& r, const YAML::Node& n, const std::string& path) {
    return r.one_of(n, path, {"true", "false"}) == "true";
}

std::vector<std::string> read_method_patterns(const Reader& r, const YAML::Node& n,
                                              const std::string& path) {
    static const std::regex kPattern("[A-Za-z0-9_]+\\*?|\\*");
    std::vector<std::string> out = read_list(r, n, path);
    for (std::size_t i = 0; i < out.size(); ++i)
        if (!matches(out[i], kPattern, 128))
            r.fail(n[i], fmt::format("{}[{}]", path, i),
                   fmt::format("'{}' is not a method name or a prefix ending in *",
                               util::utf8_prefix(out[i], 80)));
    return out;
}

// An address: 0x and 40 hex digits, kept lowercase.
std::string read_http_url(const Reader& r, const YAML::Node& n, const std::string& path) {
    std::string url = r.scalar(n, path);
    const auto parsed = boost::urls::parse_absolute_uri(url);
    if (!parsed || (parsed->scheme() != "http" && parsed->scheme() != "https") ||
        parsed->host().empty())
        r.fail(n, path, "must be an http:// or https:// URL");
    return url;
}

std::string read_path_name(const Reader& r, const YAML::Node& n, const std::string& path) {
    static const std::regex kName("[a-z0-9][a-z0-9_-]{0,62}");
    std::string name = r.scalar(n, path);
    if (!matches(name, kName, 63))
        r.fail(n, path,
               fmt::format(
                   "'{}' must be 1-63 lowercase letters, digits, '_' or '-' (it is a URL path)",
                   util::utf8_prefix(name, 80)));
    return name;
}

std::string read_address(const Reader& r, const YAML::Node& n, const std::string& path) {
    static const std::regex kAddress("0[xX][0-9a-fA-F]{40}");
    const std::string a = r.scalar(n, path);
    if (!matches(a, kAddress, 42))
        r.fail(
            n, path,
            fmt::format("'{}' is not an address (0x and 40 hex digits)", util::utf8_prefix(a, 80)));
    return util::lower(a);
}

// Secrets named by `<what>_env` or `<what>_file`: several may be listed, separated by commas,
// spaces or new lines (a file may hold comments after #). Messages name the variable or the file,
// never a secret.
std::vector<std::string> read_secrets(const Reader& r, const YAML::Node& n, const std::string& path,
                                      const std::string& what, std::string& env_name,
                                      std::string& file_name) {
    const std::string env_key = what + "_env";
    const std::string file_key = what + "_file";
    if_set(n, env_key.c_str(), [&](auto& v) { env_name = r.scalar(v, path + "." + env_key); });
    if_set(n, file_key.c_str(), [&](auto& v) { file_name = r.scalar(v, path + "." + file_key); });
    if (env_name.empty() == file_name.empty())
        r.fail(n, path, fmt::format("takes exactly one of {} and {}", env_key, file_key));
    std::string text;
    std::string from;
    if (!env_name.empty()) {
        from = "variable " + env_name;
        auto value = r.env(env_name);
        if (!value) r.fail(n[env_key], path + "." + env_key, from + " is not set");
        text = std::move(*value);
    } else {
        from = "file " + file_name;
        std::ifstream in(file_name);
        if (!in) r.fail(n[file_key], path + "." + file_key, "cannot read " + from);
        std::string line;
        while (std::getline(in, line)) text += line.substr(0, line.find('#')) + "\n";
    }
    std::vector<std::string> out;
    std::string current;
    const auto flush = [&] {
        if (current.empty()) return;
        static const std::regex kSecret("[A-Za-z0-9._~-]{16,512}");
        if (!matches(current, kSecret, 512))
            r.fail(n, path,
                   fmt::format("{} holds a {} that is not 16-512 characters of A-Z a-z 0-9 . _ ~ - "
                               "(it is not shown)",
                               from, what));
        out.push_back(std::move(current));
        current.clear();
    };
    for (char c : text) {
        if (c == ',' || c == ' ' || c == '\n' || c == '\r' || c == '\t')
            flush();
        else
            current.push_back(c);
    }
    flush();
    if (out.empty()) r.fail(n, path, fmt::format("{} holds no {}", from, what));
    return out;
}

}  // namespace gateway::config::detail
