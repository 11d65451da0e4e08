#include "gateway/config/config.hpp"

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

namespace {

// Whether `text` is at most `max_size` bytes and matches `pattern`. libstdc++'s std::regex matches
// recursively, a stack frame or more per character, so a long value (tens of KB, fewer under
// sanitizers; a configuration may hold a MiB) would overflow the stack: the length is checked
// first, and every pattern here describes something short.
bool matches(const std::string& text, const std::regex& pattern, std::size_t max_size) {
    return text.size() <= max_size && std::regex_match(text, pattern);
}

// Walks the YAML tree; every read goes through here so that every error can name its key and line.
class Reader {
public:
    Reader(std::string_view source, const EnvLookup& env) : source_(source), env_(env) {}

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
};

template <class F>
void if_set(const YAML::Node& map, const char* key, F&& f) {
    const YAML::Node node = map[key];
    if (node.IsDefined() && !node.IsNull()) f(node);
}

std::vector<std::string> read_list(const Reader& r, const YAML::Node& n, const std::string& path);

void read_server(const Reader& r, const YAML::Node& n, ServerConfig& s) {
    r.check_keys(
        n, "server",
        {"listen", "admin_listen", "threads", "max_body_bytes", "max_header_bytes",
         "max_batch_size", "batch_concurrency", "max_batch_response_bytes", "idle_timeout_ms",
         "read_timeout_ms", "request_timeout_ms", "shutdown_grace_ms", "drain_delay_ms",
         "header_timeout_ms", "max_connections", "max_connections_per_ip", "cors", "tls"});
    if_set(n, "listen", [&](auto& v) { s.listen = r.endpoint(v, "server.listen"); });
    if_set(n, "admin_listen",
           [&](auto& v) { s.admin_listen = r.endpoint(v, "server.admin_listen"); });
    if_set(n, "threads", [&](auto& v) { s.threads = r.integer(v, "server.threads", 1, 256); });
    if_set(n, "max_body_bytes", [&](auto& v) {
        s.max_body_bytes = r.integer(v, "server.max_body_bytes", 64, 1ull << 30);
    });
    if_set(n, "max_header_bytes", [&](auto& v) {
        s.max_header_bytes = r.integer(v, "server.max_header_bytes", 256, 1 << 20);
    });
    if_set(n, "max_batch_size",
           [&](auto& v) { s.max_batch_size = r.integer(v, "server.max_batch_size", 1, 100'000); });
    if_set(n, "max_batch_response_bytes", [&](auto& v) {
        s.max_batch_response_bytes =
            r.integer(v, "server.max_batch_response_bytes", 1024, 1ull << 34);
    });
    if_set(n, "batch_concurrency", [&](auto& v) {
        s.batch_concurrency = r.integer(v, "server.batch_concurrency", 1, 1024);
    });
    if_set(n, "idle_timeout_ms",
           [&](auto& v) { s.idle_timeout = r.millis(v, "server.idle_timeout_ms"); });
    if_set(n, "read_timeout_ms",
           [&](auto& v) { s.read_timeout = r.millis(v, "server.read_timeout_ms"); });
    if_set(n, "request_timeout_ms",
           [&](auto& v) { s.request_timeout = r.millis(v, "server.request_timeout_ms"); });
    if_set(n, "shutdown_grace_ms",
           [&](auto& v) { s.shutdown_grace = r.millis(v, "server.shutdown_grace_ms", 0); });
    // Long enough for endpoint controllers to take the pod out (seconds); not a way to linger.
    if_set(n, "drain_delay_ms", [&](auto& v) {
        s.drain_delay = Millis(r.integer(v, "server.drain_delay_ms", 0, 600'000));
    });
    if_set(n, "header_timeout_ms",
           [&](auto& v) { s.header_timeout = r.millis(v, "server.header_timeout_ms"); });
    if_set(n, "max_connections", [&](auto& v) {
        s.max_connections = r.integer(v, "server.max_connections", 0, 10'000'000);
    });
    if_set(n, "max_connections_per_ip", [&](auto& v) {
        s.max_connections_per_ip = r.integer(v, "server.max_connections_per_ip", 0, 10'000'000);
    });
    if_set(n, "cors", [&](auto& c) {
        r.check_keys(c, "server.cors", {"allowed_origins"});
        if_set(c, "allowed_origins", [&](auto& list) {
            s.cors_allowed_origins = read_list(r, list, "server.cors.allowed_origins");
            // An origin is scheme://host[:port], as browsers send it: nothing else ever matches.
            static const std::regex kOrigin("https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?|\\*");
            for (std::size_t i = 0; i < s.cors_allowed_origins.size(); ++i) {
                auto& o = s.cors_allowed_origins[i];
                o = util::lower(o);
                if (!matches(o, kOrigin, 300))
                    r.fail(list[i], fmt::format("server.cors.allowed_origins[{}]", i),
                           fmt::format("'{}' is not an origin (scheme://host[:port], no path) "
                                       "or *",
                                       util::utf8_prefix(o, 100)));
            }
        });
    });
    if_set(n, "tls", [&](auto& t) {
        r.check_keys(t, "server.tls", {"cert_file", "key_file"});
        if_set(t, "cert_file",
               [&](auto& v) { s.tls.cert_file = r.scalar(v, "server.tls.cert_file"); });
        if_set(t, "key_file",
               [&](auto& v) { s.tls.key_file = r.scalar(v, "server.tls.key_file"); });
        if (s.tls.cert_file.empty() || s.tls.key_file.empty())
            r.fail(t, "server.tls", "needs both cert_file and key_file");
        for (const auto* f : {&s.tls.cert_file, &s.tls.key_file})
            if (!std::ifstream(*f)) r.fail(t, "server.tls", fmt::format("cannot read '{}'", *f));
    });
    if (s.listen.port != 0 && s.listen.port == s.admin_listen.port &&
        s.listen.host == s.admin_listen.host)
        r.fail(n["admin_listen"].IsDefined() ? n["admin_listen"] : n["listen"],
               "server.admin_listen", "must differ from server.listen");
}

void read_log(const Reader& r, const YAML::Node& n, LogConfig& l) {
    r.check_keys(n, "log", {"level", "format"});
    if_set(n, "level", [&](auto& v) {
        l.level = r.one_of(v, "log.level",
                           {"trace", "debug", "info", "warn", "error", "critical", "off"});
    });
    if_set(n, "format", [&](auto& v) {
        l.format = r.one_of(v, "log.format", {"json", "text"}) == "json" ? LogConfig::Format::json
                                                                         : LogConfig::Format::text;
    });
}

void read_store(const Reader& r, const YAML::Node& n, StoreConfig& s) {
    r.check_keys(n, "store", {"backend", "path", "timeout_ms", "retention_ms"});
    if_set(n, "backend", [&](auto& v) { s.backend = r.one_of(v, "store.backend", {"sqlite"}); });
    if_set(n, "path", [&](auto& v) { s.path = r.scalar(v, "store.path"); });
    if_set(n, "timeout_ms", [&](auto& v) { s.timeout = r.millis(v, "store.timeout_ms"); });
    // Not below 48 hours: a client retrying with an idempotency key a day later must still find
    // its transaction, and an operator back from a weekend its history.
    if_set(n, "retention_ms", [&](auto& v) {
        constexpr std::uint64_t kLeast = 48ull * 3'600'000;
        const std::uint64_t ms = r.integer(v, "store.retention_ms", 0, 3650ull * 24 * 3'600'000);
        if (ms < kLeast)
            r.fail(v, "store.retention_ms",
                   fmt::format("{} is less than {} (48 hours): finished transactions, and the "
                               "idempotency keys of managed ones, must be kept at least that long",
                               ms, kLeast));
        s.retention = Millis(ms);
    });
    if (s.path.empty()) r.fail(n, "store.path", "must not be empty");
}

void read_health(const Reader& r, const YAML::Node& n, const std::string& path, HealthConfig& h) {
    r.check_keys(n, path,
                 {"interval_ms", "timeout_ms", "healthy_threshold", "unhealthy_threshold",
                  "max_lag_blocks"});
    if_set(n, "max_lag_blocks", [&](auto& v) {
        h.max_lag_blocks = r.integer(v, path + ".max_lag_blocks", 0, 1'000'000);
    });
    if_set(n, "interval_ms", [&](auto& v) {
        h.interval = Millis(r.integer(v, path + ".interval_ms", 10, 3'600'000));
    });
    if_set(n, "timeout_ms", [&](auto& v) { h.timeout = r.millis(v, path + ".timeout_ms"); });
    if_set(n, "healthy_threshold", [&](auto& v) {
        h.healthy_threshold = r.integer(v, path + ".healthy_threshold", 1, 100);
    });
    if_set(n, "unhealthy_threshold", [&](auto& v) {
        h.unhealthy_threshold = r.integer(v, path + ".unhealthy_threshold", 1, 100);
    });
}

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

void read_failover(const Reader& r, const YAML::Node& n, const std::string& path,
                   FailoverConfig& f) {
    r.check_keys(n, path,
                 {"max_attempts", "backoff_ms", "hedge_after_ms", "breaker_threshold",
                  "breaker_cooldown_ms"});
    if_set(n, "max_attempts",
           [&](auto& v) { f.max_attempts = r.integer(v, path + ".max_attempts", 1, 20); });
    if_set(n, "backoff_ms", [&](auto& v) { f.backoff = r.millis(v, path + ".backoff_ms", 0); });
    if_set(n, "hedge_after_ms",
           [&](auto& v) { f.hedge_after = r.millis(v, path + ".hedge_after_ms", 0); });
    if_set(n, "breaker_threshold", [&](auto& v) {
        f.breaker_threshold = r.integer(v, path + ".breaker_threshold", 1, 1000);
    });
    if_set(n, "breaker_cooldown_ms",
           [&](auto& v) { f.breaker_cooldown = r.millis(v, path + ".breaker_cooldown_ms"); });
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

void read_methods(const Reader& r, const YAML::Node& n, const std::string& path, MethodsConfig& m) {
    r.check_keys(n, path, {"allow", "deny"});
    for (const char* key : {"allow", "deny"}) {
        const YAML::Node list = n[key];
        if (!list.IsDefined()) continue;
        auto& target = std::string_view(key) == "allow" ? m.allow : m.deny;
        target = list.IsNull() ? std::vector<std::string>{}
                               : read_method_patterns(r, list, path + "." + key);
    }
}

void read_reorgs(const Reader& r, const YAML::Node& n, const std::string& path, ReorgConfig& c) {
    r.check_keys(n, path, {"track", "depth", "finality_depth"});
    if_set(n, "finality_depth", [&](auto& v) {
        c.finality_depth = r.integer(v, path + ".finality_depth", 1, 1'000'000);
    });
    if_set(n, "track", [&](auto& v) { c.track = read_bool(r, v, path + ".track"); });
    if_set(n, "depth", [&](auto& v) { c.depth = r.integer(v, path + ".depth", 2, 100'000); });
}

void read_logs(const Reader& r, const YAML::Node& n, const std::string& path, LogsConfig& l) {
    r.check_keys(n, path, {"split", "concurrency", "max_parts"});
    if_set(n, "split", [&](auto& v) { l.split = read_bool(r, v, path + ".split"); });
    if_set(n, "max_parts",
           [&](auto& v) { l.max_parts = r.integer(v, path + ".max_parts", 1, 100'000); });
    if_set(n, "concurrency",
           [&](auto& v) { l.concurrency = r.integer(v, path + ".concurrency", 1, 64); });
}

void read_tx(const Reader& r, const YAML::Node& n, const std::string& path, TxConfig& w) {
    r.check_keys(n, path,
                 {"confirmations", "max_queued_per_sender", "max_queued", "max_queued_per_client",
                  "expire_after_ms", "poll_interval_ms", "rebroadcast_after_ms", "broadcast_fanout",
                  "gas_margin_percent", "fee", "retry"});
    if_set(n, "gas_margin_percent", [&](auto& v) {
        w.gas_margin_percent =
            static_cast<unsigned>(r.integer(v, path + ".gas_margin_percent", 0, 1000));
    });
    if_set(n, "fee", [&](auto& f) {
        const std::string p = path + ".fee";
        r.check_keys(
            f, p,
            {"max_fee_per_gas_gwei", "max_priority_fee_gwei", "bump_percent", "bump_after_blocks"});
        if_set(f, "max_fee_per_gas_gwei", [&](auto& v) {
            w.fee.max_fee_per_gas_gwei =
                r.integer(v, p + ".max_fee_per_gas_gwei", 1, 1'000'000'000);
        });
        if_set(f, "max_priority_fee_gwei", [&](auto& v) {
            w.fee.max_priority_fee_gwei =
                r.integer(v, p + ".max_priority_fee_gwei", 0, 1'000'000'000);
        });
        if_set(f, "bump_percent", [&](auto& v) {
            w.fee.bump_percent = static_cast<unsigned>(r.integer(v, p + ".bump_percent", 10, 1000));
        });
        if_set(f, "bump_after_blocks", [&](auto& v) {
            w.fee.bump_after_blocks =
                static_cast<unsigned>(r.integer(v, p + ".bump_after_blocks", 1, 10'000));
        });
    });
    if_set(n, "retry", [&](auto& t) {
        const std::string p = path + ".retry";
        r.check_keys(t, p, {"max_attempts", "backoff_ms"});
        if_set(t, "max_attempts", [&](auto& v) {
            w.retry.max_attempts =
                static_cast<unsigned>(r.integer(v, p + ".max_attempts", 1, 1000));
        });
        if_set(t, "backoff_ms", [&](auto& v) { w.retry.backoff = r.millis(v, p + ".backoff_ms"); });
    });
    if_set(n, "confirmations", [&](auto& v) {
        w.confirmations = static_cast<unsigned>(r.integer(v, path + ".confirmations", 1, 1000));
    });
    if_set(n, "max_queued_per_sender", [&](auto& v) {
        w.max_queued_per_sender = r.integer(v, path + ".max_queued_per_sender", 1, 100'000);
    });
    if_set(n, "max_queued",
           [&](auto& v) { w.max_queued = r.integer(v, path + ".max_queued", 1, 10'000'000); });
    if_set(n, "max_queued_per_client", [&](auto& v) {
        w.max_queued_per_client = r.integer(v, path + ".max_queued_per_client", 1, 10'000'000);
    });
    if_set(n, "expire_after_ms", [&](auto& v) {
        w.expire_after = Millis(r.integer(v, path + ".expire_after_ms", 0, 30ull * 24 * 3'600'000));
    });
    if_set(n, "poll_interval_ms", [&](auto& v) {
        w.poll_interval = Millis(r.integer(v, path + ".poll_interval_ms", 10, 600'000));
    });
    if_set(n, "rebroadcast_after_ms", [&](auto& v) {
        w.rebroadcast_after = Millis(r.integer(v, path + ".rebroadcast_after_ms", 100, 86'400'000));
    });
    if_set(n, "broadcast_fanout",
           [&](auto& v) { w.broadcast_fanout = r.integer(v, path + ".broadcast_fanout", 1, 16); });
}

// An address: 0x and 40 hex digits, kept lowercase.
std::string read_address(const Reader& r, const YAML::Node& n, const std::string& path) {
    static const std::regex kAddress("0[xX][0-9a-fA-F]{40}");
    const std::string a = r.scalar(n, path);
    if (!matches(a, kAddress, 42))
        r.fail(
            n, path,
            fmt::format("'{}' is not an address (0x and 40 hex digits)", util::utf8_prefix(a, 80)));
    return util::lower(a);
}

void read_signer(const Reader& r, const YAML::Node& n, const std::string& path, SignerConfig& s) {
    r.check_keys(n, path,
                 {"id", "type", "key_file", "key_env", "keystore", "passphrase_env", "url",
                  "addresses", "stub_keys_env", "timeout_ms"});
    const YAML::Node id = n["id"];
    if (!id.IsDefined() || id.IsNull()) r.fail(n, path + ".id", "is required");
    s.id = r.scalar(id, path + ".id");
    const YAML::Node type = n["type"];
    if (!type.IsDefined() || type.IsNull())
        r.fail(n, path + ".type", "is required: local, remote or custody-stub");
    s.type = r.one_of(type, path + ".type", {"local", "remote", "custody-stub"});
    auto text = [&](const char* key, std::string& out) {
        if_set(n, key, [&](auto& v) { out = r.scalar(v, path + "." + key); });
    };
    text("key_file", s.key_file);
    text("key_env", s.key_env);
    text("keystore", s.keystore);
    text("passphrase_env", s.passphrase_env);
    text("url", s.url);
    if_set(n, "addresses", [&](auto& list) {
        if (!list.IsSequence()) r.fail(list, path + ".addresses", "must be a list");
        for (std::size_t i = 0; i < list.size(); ++i)
            s.addresses.push_back(
                read_address(r, list[i], fmt::format("{}.addresses[{}]", path, i)));
    });
    if_set(n, "stub_keys_env",
           [&](auto& list) { s.stub_keys_env = read_list(r, list, path + ".stub_keys_env"); });
    if_set(n, "timeout_ms", [&](auto& v) { s.timeout = r.millis(v, path + ".timeout_ms"); });
    // Which fields go with which type.
    const int sources = !s.key_file.empty() + !s.key_env.empty() + !s.keystore.empty();
    if (s.type == "local" && sources != 1)
        r.fail(n, path, "a local signer takes exactly one of key_file, key_env, keystore");
    if (s.type == "local" && !s.keystore.empty() && s.passphrase_env.empty())
        r.fail(n, path + ".passphrase_env", "is required with a keystore");
    if (s.type == "remote" && (s.url.empty() || s.addresses.empty()))
        r.fail(n, path, "a remote signer needs url and addresses");
    if (s.type == "custody-stub" && s.stub_keys_env.empty())
        r.fail(n, path + ".stub_keys_env", "a custody stub needs at least one key variable");
}

void read_accounts(const Reader& r, const YAML::Node& n, const std::string& path,
                   std::vector<AccountConfig>& out) {
    if (!n.IsSequence()) r.fail(n, path, "must be a list of {address, signer}");
    for (std::size_t i = 0; i < n.size(); ++i) {
        const std::string p = fmt::format("{}[{}]", path, i);
        r.check_keys(n[i], p,
                     {"address", "signer", "max_fee_per_gas_gwei", "max_priority_fee_gwei"});
        AccountConfig a;
        if (!n[i]["address"].IsDefined()) r.fail(n[i], p + ".address", "is required");
        if (!n[i]["signer"].IsDefined()) r.fail(n[i], p + ".signer", "is required");
        a.address = read_address(r, n[i]["address"], p + ".address");
        a.signer = r.scalar(n[i]["signer"], p + ".signer");
        if_set(n[i], "max_fee_per_gas_gwei", [&](auto& v) {
            a.max_fee_per_gas_gwei = r.integer(v, p + ".max_fee_per_gas_gwei", 1, 1'000'000);
        });
        if_set(n[i], "max_priority_fee_gwei", [&](auto& v) {
            a.max_priority_fee_gwei = r.integer(v, p + ".max_priority_fee_gwei", 0, 1'000'000);
        });
        for (const auto& other : out)
            if (other.address == a.address)
                r.fail(n[i]["address"], p + ".address",
                       fmt::format("{} is listed twice", a.address));
        out.push_back(std::move(a));
    }
}

void read_cache(const Reader& r, const YAML::Node& n, const std::string& path, CacheConfig& c) {
    r.check_keys(n, path, {"enabled", "max_bytes", "max_stale_ms", "coalesce", "methods"});
    if_set(n, "enabled", [&](auto& v) { c.enabled = read_bool(r, v, path + ".enabled"); });
    if_set(n, "coalesce", [&](auto& v) { c.coalesce = read_bool(r, v, path + ".coalesce"); });
    if_set(n, "max_bytes",
           [&](auto& v) { c.max_bytes = r.integer(v, path + ".max_bytes", 0, 1ull << 36); });
    if_set(n, "max_stale_ms", [&](auto& v) { c.max_stale = r.millis(v, path + ".max_stale_ms"); });
    if_set(n, "methods", [&](auto& m) {
        if (!m.IsMap()) r.fail(m, path + ".methods", "must be a map of method: on | final | off");
        for (const auto& kv : m) {
            const auto method = kv.first.template as<std::string>();
            const std::string p = path + ".methods." + method;
            if (jsonrpc::method_kind(method) != jsonrpc::MethodKind::read)
                r.fail(kv.first, p, "not a read the gateway knows (only reads are cached)");
            const std::string mode = r.one_of(kv.second, p, {"on", "final", "off"});
            c.methods[method] = mode == "on"      ? CacheMode::on
                                : mode == "final" ? CacheMode::final
                                                  : CacheMode::off;
        }
    });
}

void read_upstream(const Reader& r, const YAML::Node& n, const std::string& path,
                   UpstreamConfig& u) {
    r.check_keys(n, path,
                 {"id", "url", "tier", "timeout_ms", "max_idle_connections", "max_response_bytes",
                  "ca_file", "max_rps", "max_concurrency", "max_logs_range", "max_batch_size"});
    if_set(n, "max_rps", [&](auto& v) {
        u.max_rps = static_cast<double>(r.integer(v, path + ".max_rps", 0, 1'000'000));
    });
    if_set(n, "max_concurrency", [&](auto& v) {
        u.max_concurrency = r.integer(v, path + ".max_concurrency", 0, 100'000);
    });
    if_set(n, "max_batch_size",
           [&](auto& v) { u.max_batch_size = r.integer(v, path + ".max_batch_size", 0, 10'000); });
    if_set(n, "max_logs_range", [&](auto& v) {
        u.max_logs_range = r.integer(v, path + ".max_logs_range", 0, 1ull << 40);
    });
    const YAML::Node id = n["id"];
    if (!id.IsDefined() || id.IsNull()) r.fail(n, path + ".id", "is required");
    u.id = r.scalar(id, path + ".id");
    static const std::regex kId("[A-Za-z0-9][A-Za-z0-9_.-]{0,62}");
    if (!matches(u.id, kId, 63))
        r.fail(id, path + ".id",
               fmt::format("'{}' must be 1-63 letters, digits, '_', '-' or '.', starting with a "
                           "letter or digit",
                           util::utf8_prefix(u.id, 80)));

    const YAML::Node url = n["url"];
    if (!url.IsDefined() || url.IsNull()) r.fail(n, path + ".url", "is required");
    u.url = r.scalar(url, path + ".url");
    // The URL may hold an API key, so messages about it never repeat it.
    auto parsed = boost::urls::parse_absolute_uri(u.url);
    if (!parsed) r.fail(url, path + ".url", "is not a valid absolute URL");
    if (parsed->scheme() != "http" && parsed->scheme() != "https")
        r.fail(url, path + ".url", "must start with http:// or https://");
    if (parsed->host().empty()) r.fail(url, path + ".url", "has no host");

    if_set(n, "tier", [&](auto& v) {
        u.tier = r.one_of(v, path + ".tier", {"primary", "fallback"}) == "primary" ? Tier::primary
                                                                                   : Tier::fallback;
    });
    if_set(n, "timeout_ms", [&](auto& v) { u.timeout = r.millis(v, path + ".timeout_ms"); });
    if_set(n, "max_idle_connections", [&](auto& v) {
        u.max_idle_connections = r.integer(v, path + ".max_idle_connections", 0, 100'000);
    });
    if_set(n, "max_response_bytes", [&](auto& v) {
        u.max_response_bytes = r.integer(v, path + ".max_response_bytes", 1024, 1ull << 32);
    });
    if_set(n, "ca_file", [&](auto& v) {
        u.ca_file = r.scalar(v, path + ".ca_file");
        if (!std::ifstream(u.ca_file))
            r.fail(v, path + ".ca_file", fmt::format("cannot read '{}'", u.ca_file));
    });
}

void read_chain(const Reader& r, const YAML::Node& n, const std::string& path, ChainConfig& c) {
    r.check_keys(n, path,
                 {"name", "chain_id", "health", "failover", "methods", "logs", "reorgs", "cache",
                  "tx", "accounts", "upstreams"});
    const YAML::Node name = n["name"];
    if (!name.IsDefined() || name.IsNull()) r.fail(n, path + ".name", "is required");
    c.name = r.scalar(name, path + ".name");
    static const std::regex kName("[a-z0-9][a-z0-9_-]{0,62}");
    if (!matches(c.name, kName, 63))
        r.fail(name, path + ".name",
               fmt::format(
                   "'{}' must be 1-63 lowercase letters, digits, '_' or '-' (it is a URL path)",
                   util::utf8_prefix(c.name, 80)));
    const YAML::Node chain_id = n["chain_id"];
    if (!chain_id.IsDefined() || chain_id.IsNull()) r.fail(n, path + ".chain_id", "is required");
    c.chain_id =
        r.integer(chain_id, path + ".chain_id", 1, std::numeric_limits<std::int64_t>::max());
    if_set(n, "health", [&](auto& v) { read_health(r, v, path + ".health", c.health); });
    if_set(n, "failover", [&](auto& v) { read_failover(r, v, path + ".failover", c.failover); });
    if_set(n, "methods", [&](auto& v) { read_methods(r, v, path + ".methods", c.methods); });
    if_set(n, "logs", [&](auto& v) { read_logs(r, v, path + ".logs", c.logs); });
    if_set(n, "reorgs", [&](auto& v) { read_reorgs(r, v, path + ".reorgs", c.reorgs); });
    if_set(n, "cache", [&](auto& v) { read_cache(r, v, path + ".cache", c.cache); });
    if_set(n, "tx", [&](auto& v) { read_tx(r, v, path + ".tx", c.tx); });
    if_set(n, "accounts", [&](auto& v) { read_accounts(r, v, path + ".accounts", c.accounts); });

    const YAML::Node ups = n["upstreams"];
    if (!ups.IsDefined() || ups.IsNull()) r.fail(n, path + ".upstreams", "is required");
    if (!ups.IsSequence() || ups.size() == 0)
        r.fail(ups, path + ".upstreams", "must be a non-empty list");
    for (std::size_t i = 0; i < ups.size(); ++i) {
        UpstreamConfig u;
        read_upstream(r, ups[i], fmt::format("{}.upstreams[{}]", path, i), u);
        c.upstreams.push_back(std::move(u));
    }
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

void read_auth(const Reader& r, const YAML::Node& n, AuthConfig& a) {
    r.check_keys(n, "auth", {"clients", "jwt", "admin"});
    if_set(n, "clients", [&](auto& list) {
        if (!list.IsSequence()) r.fail(list, "auth.clients", "must be a list");
        for (std::size_t i = 0; i < list.size(); ++i) {
            const YAML::Node c = list[i];
            const std::string p = fmt::format("auth.clients[{}]", i);
            r.check_keys(c, p, {"id", "key_env", "key_file", "senders", "methods", "max_rps"});
            ClientConfig client;
            if (!c["id"].IsDefined() || c["id"].IsNull()) r.fail(c, p + ".id", "is required");
            client.id = r.scalar(c["id"], p + ".id");
            static const std::regex kId("[A-Za-z0-9][A-Za-z0-9_.-]{0,62}");
            if (!matches(client.id, kId, 63))
                r.fail(c["id"], p + ".id",
                       fmt::format("'{}' must be 1-63 letters, digits, '_', '-' or '.', starting "
                                   "with a letter or digit",
                                   util::utf8_prefix(client.id, 80)));
            for (const auto& other : a.clients)
                if (other.id == client.id)
                    r.fail(c["id"], p + ".id",
                           fmt::format("client '{}' is listed twice", client.id));
            client.keys = read_secrets(r, c, p, "key", client.key_env, client.key_file);
            if_set(c, "senders", [&](auto& s) {
                if (!s.IsSequence()) r.fail(s, p + ".senders", "must be a list of addresses");
                for (std::size_t j = 0; j < s.size(); ++j) {
                    const std::string sp = fmt::format("{}.senders[{}]", p, j);
                    // "<chain>:<address>": on that chain only; an address alone: on every chain.
                    const std::string text = r.scalar(s[j], sp);
                    const auto colon = text.find(':');
                    std::string sender;
                    if (colon != std::string::npos) sender = text.substr(0, colon + 1);
                    YAML::Node address(text.substr(colon == std::string::npos ? 0 : colon + 1));
                    try {
                        sender += read_address(r, address, sp);
                    } catch (const ConfigError&) {
                        r.fail(s[j], sp,
                               fmt::format("'{}' is not an address or <chain>:<address>",
                                           util::utf8_prefix(text, 120)));
                    }
                    client.senders.push_back(std::move(sender));
                }
            });
            if_set(c, "methods",
                   [&](auto& m) { client.methods = read_method_patterns(r, m, p + ".methods"); });
            if_set(c, "max_rps", [&](auto& v) {
                client.max_rps = static_cast<double>(r.integer(v, p + ".max_rps", 0, 10'000'000));
            });
            for (const auto& other : a.clients)
                for (const auto& k : other.keys)
                    if (std::find(client.keys.begin(), client.keys.end(), k) != client.keys.end())
                        r.fail(c, p,
                               fmt::format("client '{}' has a key of client '{}': a key names one "
                                           "client",
                                           client.id, other.id));
            a.clients.push_back(std::move(client));
        }
    });
    if_set(n, "jwt", [&](auto& j) {
        const std::string p = "auth.jwt";
        r.check_keys(j, p,
                     {"jwks_url", "issuer", "audience", "senders_claim", "refresh_ms", "ca_file",
                      "methods", "max_rps"});
        JwtConfig& t = a.jwt;
        for (const char* key : {"jwks_url", "issuer", "audience"})
            if (!j[key].IsDefined() || j[key].IsNull()) r.fail(j, p + "." + key, "is required");
        t.jwks_url = r.scalar(j["jwks_url"], p + ".jwks_url");
        auto url = boost::urls::parse_absolute_uri(t.jwks_url);
        if (!url || (url->scheme() != "http" && url->scheme() != "https") || url->host().empty())
            r.fail(j["jwks_url"], p + ".jwks_url", "must be an http:// or https:// URL");
        // Whoever can change the keys on their way can issue tokens for any sender: plain HTTP
        // only to this host.
        if (url->scheme() == "http") {
            boost::system::error_code ec;
            const auto host = boost::asio::ip::make_address(url->host_address(), ec);
            if ((ec || !host.is_loopback()) && url->host_address() != "localhost")
                r.fail(j["jwks_url"], p + ".jwks_url",
                       "must be https:// (plain http only to a loopback address): whoever can "
                       "change the keys on the way can issue tokens");
        }
        t.issuer = r.scalar(j["issuer"], p + ".issuer");
        t.audience = r.scalar(j["audience"], p + ".audience");
        if (t.issuer.empty() || t.audience.empty())
            r.fail(j, p, "issuer and audience must not be empty");
        if_set(j, "senders_claim",
               [&](auto& v) { t.senders_claim = r.scalar(v, p + ".senders_claim"); });
        if_set(j, "refresh_ms", [&](auto& v) {
            t.refresh = Millis(r.integer(v, p + ".refresh_ms", 100, 86'400'000));
        });
        if_set(j, "ca_file", [&](auto& v) {
            t.ca_file = r.scalar(v, p + ".ca_file");
            if (!std::ifstream(t.ca_file))
                r.fail(v, p + ".ca_file", fmt::format("cannot read '{}'", t.ca_file));
        });
        if_set(j, "methods",
               [&](auto& m) { t.methods = read_method_patterns(r, m, p + ".methods"); });
        if_set(j, "max_rps", [&](auto& v) {
            t.max_rps = static_cast<double>(r.integer(v, p + ".max_rps", 0, 10'000'000));
        });
    });
    if_set(n, "admin", [&](auto& m) {
        r.check_keys(m, "auth.admin", {"token_env", "token_file"});
        std::string env_name, file_name;
        auto tokens = read_secrets(r, m, "auth.admin", "token", env_name, file_name);
        if (tokens.size() != 1) r.fail(m, "auth.admin", "takes one token (it is not shown)");
        a.admin_token = std::move(tokens.front());
    });
}

// What must hold across sections: nobody who can reach a port can spend or run the gateway
// without credentials, unless the port is reachable from this host only.
void check_exposure(const Reader& r, const YAML::Node& root, const Config& c) {
    std::set<std::string> managed;
    for (const auto& chain : c.chains)
        for (const auto& a : chain.accounts) managed.insert(a.address);
    const YAML::Node server = root["server"];
    const auto at = [&](const char* key) {
        return server.IsDefined() && server[key].IsDefined() ? server[key] : root;
    };
    const bool authenticated = c.auth.clients_required();
    if (!managed.empty() && !authenticated && !is_loopback(c.server.listen))
        r.fail(at("listen"), "server.listen",
               fmt::format("{} is reachable from other hosts and chains have managed senders "
                           "(accounts), but auth has no clients and no jwt: anyone reaching the "
                           "port could spend from them. Configure auth.clients or auth.jwt, or "
                           "listen on 127.0.0.1",
                           c.server.listen.to_string()));
    if (!managed.empty() && !authenticated)
        for (const auto& origin : c.server.cors_allowed_origins)
            if (origin == "*")
                r.fail(at("cors"), "server.cors.allowed_origins",
                       "'*' lets every web page call the gateway, and chains have managed "
                       "senders with no auth configured: list the dapp's origin, or configure "
                       "auth.clients or auth.jwt");
    if (c.auth.admin_token.empty() && !is_loopback(c.server.admin_listen))
        r.fail(at("admin_listen"), "server.admin_listen",
               fmt::format("{} is reachable from other hosts, but auth.admin has no token: "
                           "anyone reaching it could cordon upstreams and cancel transactions. "
                           "Set auth.admin.token_env (or token_file), or listen on 127.0.0.1",
                           c.server.admin_listen.to_string()));
    for (std::size_t i = 0; i < c.auth.clients.size(); ++i)
        for (std::size_t j = 0; j < c.auth.clients[i].senders.size(); ++j) {
            const std::string& sender = c.auth.clients[i].senders[j];
            const auto colon = sender.find(':');
            const bool known =
                colon == std::string::npos
                    ? managed.count(sender) > 0
                    : std::any_of(c.chains.begin(), c.chains.end(), [&](const ChainConfig& chain) {
                          return chain.name == sender.substr(0, colon) &&
                                 std::any_of(chain.accounts.begin(), chain.accounts.end(),
                                             [&](const AccountConfig& a) {
                                                 return a.address == sender.substr(colon + 1);
                                             });
                      });
            if (!known)
                r.fail(root["auth"]["clients"][i]["senders"][j],
                       fmt::format("auth.clients[{}].senders[{}]", i, j),
                       fmt::format("{} is not a managed sender of {} (chains[].accounts)", sender,
                                   colon == std::string::npos ? "any chain" : "that chain"));
        }
}

}  // namespace

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
        r.check_keys(root, "", {"server", "auth", "signers", "log", "store", "chains"});
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
