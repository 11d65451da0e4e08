#include "gateway/config/config.hpp"

#include "reader.hpp"

#include "gateway/jsonrpc/methods.hpp"
#include "gateway/util/text.hpp"

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>
#include <boost/asio/ip/address.hpp>
#include <boost/url/parse.hpp>

#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <regex>
#include <set>

namespace gateway::config {

using namespace detail;

std::string Endpoint::to_string() const {
    if (host.find(':') != std::string::npos) return fmt::format("[{}]:{}", host, port);
    return fmt::format("{}:{}", host, port);
}

Endpoint parse_endpoint(std::string_view text) {
    std::string_view host;
    std::string_view port;
    if (!text.empty() && text.front() == '[') {
        auto close = text.find(']');
        if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':')
            throw std::invalid_argument("expected [ipv6]:port");
        host = text.substr(1, close - 1);
        port = text.substr(close + 2);
    } else {
        auto colon = text.rfind(':');
        if (colon == std::string_view::npos) throw std::invalid_argument("expected host:port");
        host = text.substr(0, colon);
        port = text.substr(colon + 1);
        if (host.find(':') != std::string_view::npos)
            throw std::invalid_argument("an IPv6 address must be written as [address]:port");
    }
    unsigned value = 0;
    auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
    if (port.empty() || ec != std::errc() || end != port.data() + port.size() || value > 65535)
        throw std::invalid_argument(fmt::format("port '{}' is not a number from 0 to 65535", port));
    boost::system::error_code aec;
    boost::asio::ip::make_address(std::string(host), aec);
    if (aec) throw std::invalid_argument(fmt::format("'{}' is not an IP address", host));
    return Endpoint{std::string(host), static_cast<std::uint16_t>(value)};
}

bool is_loopback(const Endpoint& endpoint) {
    boost::system::error_code ec;
    const auto address = boost::asio::ip::make_address(endpoint.host, ec);
    return !ec && address.is_loopback();
}

EnvLookup process_env() {
    return [](std::string_view name) -> std::optional<std::string> {
        const char* v = std::getenv(std::string(name).c_str());
        if (!v) return std::nullopt;
        return std::string(v);
    };
}

Config parse_config(std::string_view yaml, std::string_view source, const EnvLookup& env) {
    if (yaml.size() > kMaxConfigBytes)
        throw ConfigError(fmt::format(
            "{}: the configuration is over {} bytes (1 MiB); a configuration is a few KB: is "
            "this the right file?",
            source, kMaxConfigBytes));
    YAML::Node root;
    try {
        root = YAML::Load(std::string(yaml));
    } catch (const YAML::ParserException& e) {
        throw ConfigError(fmt::format("{}:{}:{}: invalid YAML: {}", source, e.mark.line + 1,
                                      e.mark.column + 1, e.msg));
    }
    Reader r(source, env);
    if (!root.IsDefined() || root.IsNull())
        throw ConfigError(fmt::format("{}: the configuration is empty", source));

    Config config;
    try {
        if_set(root, "cache", [&](auto& v) {
            r.fail(v, "cache",
                   "is set per chain now: chains[].cache {enabled, max_bytes, max_stale_ms, "
                   "coalesce, methods}");
        });
        r.check_keys(root, "", {"server", "auth", "signers", "log", "store", "chains", "streams"});
        std::set<std::string> signer_ids;
        if_set(root, "signers", [&](auto& list) {
            if (!list.IsSequence()) r.fail(list, "signers", "must be a list");
            for (std::size_t i = 0; i < list.size(); ++i) {
                SignerConfig s;
                read_signer(r, list[i], fmt::format("signers[{}]", i), s);
                if (!signer_ids.insert(s.id).second)
                    r.fail(list[i]["id"], fmt::format("signers[{}].id", i),
                           fmt::format("signer id '{}' is used twice", s.id));
                config.signers.push_back(std::move(s));
            }
        });
        if_set(root, "server", [&](auto& v) { read_server(r, v, config.server); });
        if_set(root, "log", [&](auto& v) { read_log(r, v, config.log); });
        if_set(root, "store", [&](auto& v) { read_store(r, v, config.store); });

        const YAML::Node chains = root["chains"];
        if (!chains.IsDefined() || chains.IsNull())
            r.fail(root, "chains", "is required: at least one chain with its upstreams");
        if (!chains.IsSequence() || chains.size() == 0)
            r.fail(chains, "chains", "must be a non-empty list");
        std::set<std::string> names;
        std::set<std::string> ids;
        for (std::size_t i = 0; i < chains.size(); ++i) {
            const std::string path = fmt::format("chains[{}]", i);
            ChainConfig c;
            read_chain(r, chains[i], path, c);
            for (std::size_t j = 0; j < c.accounts.size(); ++j)
                if (!signer_ids.count(c.accounts[j].signer))
                    r.fail(chains[i]["accounts"][j]["signer"],
                           fmt::format("{}.accounts[{}].signer", path, j),
                           fmt::format("no signer '{}' under signers", c.accounts[j].signer));
            if (!names.insert(c.name).second)
                r.fail(chains[i]["name"], path + ".name",
                       fmt::format("chain '{}' is configured twice", c.name));
            for (std::size_t j = 0; j < c.upstreams.size(); ++j)
                if (!ids.insert(c.upstreams[j].id).second)
                    r.fail(
                        chains[i]["upstreams"][j]["id"],
                        fmt::format("{}.upstreams[{}].id", path, j),
                        fmt::format("upstream id '{}' is used twice (ids are unique across chains)",
                                    c.upstreams[j].id));
            config.chains.push_back(std::move(c));
        }
        if_set(root, "streams", [&](auto& list) {
            if (!list.IsSequence()) r.fail(list, "streams", "must be a list");
            std::set<std::string> stream_ids;
            for (std::size_t i = 0; i < list.size(); ++i) {
                const std::string path = fmt::format("streams[{}]", i);
                StreamConfig s;
                read_stream(r, list[i], path, s);
                if (!names.count(s.chain))
                    r.fail(list[i]["chain"], path + ".chain",
                           fmt::format("no chain '{}' under chains", s.chain));
                if (!stream_ids.insert(s.id).second)
                    r.fail(list[i]["id"], path + ".id",
                           fmt::format("stream id '{}' is used twice", s.id));
                config.streams.push_back(std::move(s));
            }
        });
        if_set(root, "auth", [&](auto& v) { read_auth(r, v, config.auth); });
        check_exposure(r, root, config);
    } catch (const YAML::Exception& e) {
        // A value of the wrong shape where yaml-cpp itself refuses to read it.
        if (e.mark.is_null()) throw ConfigError(fmt::format("{}: {}", source, e.msg));
        throw ConfigError(
            fmt::format("{}:{}:{}: {}", source, e.mark.line + 1, e.mark.column + 1, e.msg));
    }
    return config;
}

Config load_config_file(const std::string& path, const EnvLookup& env) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw ConfigError(fmt::format("{}: cannot read the configuration file", path));
    // One byte past the limit is enough to refuse it, whatever the file is (/dev/zero, a log).
    std::string text(kMaxConfigBytes + 1, '\0');
    in.read(text.data(), static_cast<std::streamsize>(text.size()));
    if (in.bad()) throw ConfigError(fmt::format("{}: cannot read the configuration file", path));
    text.resize(static_cast<std::size_t>(in.gcount()));
    return parse_config(text, path, env);
}

}  // namespace gateway::config
