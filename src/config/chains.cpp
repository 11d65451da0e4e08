// The config's chains: each chain's health checks, failover, methods, reorgs, log ranges,
// transactions, accounts and their policy, cache and upstreams.

#include "reader.hpp"

#include "gateway/eth/wei.hpp"
#include "gateway/jsonrpc/methods.hpp"

#include <boost/url/parse.hpp>

#include <fstream>

#include <limits>

namespace gateway::config::detail {

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

void read_policy(const Reader& r, const YAML::Node& n, const std::string& path, PolicyConfig& p) {
    r.check_keys(n, path,
                 {"max_value_wei", "daily_value_wei", "allowed_to", "allowed_selectors",
                  "approval_ttl_ms", "service"});
    const auto wei = [&](const YAML::Node& v, const std::string& at) {
        const std::string text = r.scalar(v, at);
        if (!eth::parse_wei(text))
            r.fail(v, at,
                   fmt::format("'{}' is not an amount of wei: a decimal whole number in quotes, "
                               "at most 2^256 - 1",
                               util::utf8_prefix(text, 80)));
        return text;
    };
    if_set(n, "max_value_wei", [&](auto& v) { p.max_value_wei = wei(v, path + ".max_value_wei"); });
    if_set(n, "daily_value_wei",
           [&](auto& v) { p.daily_value_wei = wei(v, path + ".daily_value_wei"); });
    if_set(n, "allowed_to", [&](auto& v) {
        if (!v.IsSequence()) r.fail(v, path + ".allowed_to", "must be a list of addresses");
        std::vector<std::string> list;
        for (std::size_t i = 0; i < v.size(); ++i)
            list.push_back(read_address(r, v[i], fmt::format("{}.allowed_to[{}]", path, i)));
        p.allowed_to = std::move(list);
    });
    if_set(n, "allowed_selectors", [&](auto& v) {
        const std::string at = path + ".allowed_selectors";
        if (!v.IsSequence()) r.fail(v, at, "must be a list of 4-byte selectors (\"0xa9059cbb\")");
        static const std::regex kSelector("0x[0-9a-fA-F]{8}");
        std::vector<std::string> list;
        for (std::size_t i = 0; i < v.size(); ++i) {
            const std::string p_i = fmt::format("{}[{}]", at, i);
            const std::string text = r.scalar(v[i], p_i);
            if (!matches(text, kSelector, 10))
                r.fail(v[i], p_i,
                       fmt::format("'{}' is not a function selector: 0x and 8 hex digits",
                                   util::utf8_prefix(text, 80)));
            list.push_back(util::lower(text));
        }
        p.allowed_selectors = std::move(list);
    });
    if_set(n, "service", [&](auto& v) {
        const std::string at = path + ".service";
        r.check_keys(v, at, {"url", "timeout_ms"});
        if (!v["url"].IsDefined()) r.fail(v, at + ".url", "is required");
        PolicyConfig::Service service;
        service.url = read_http_url(r, v["url"], at + ".url");
        if_set(v, "timeout_ms", [&](auto& t) {
            service.timeout = Millis(r.integer(t, at + ".timeout_ms", 1, 60'000));
        });
        p.service = std::move(service);
    });
    if_set(n, "approval_ttl_ms", [&](auto& v) {
        p.approval_ttl = Millis(r.integer(v, path + ".approval_ttl_ms", 1'000, 30ull * 86'400'000));
    });
}

void read_accounts(const Reader& r, const YAML::Node& n, const std::string& path,
                   std::vector<AccountConfig>& out) {
    if (!n.IsSequence()) r.fail(n, path, "must be a list of {address, signer}");
    for (std::size_t i = 0; i < n.size(); ++i) {
        const std::string p = fmt::format("{}[{}]", path, i);
        r.check_keys(
            n[i], p,
            {"address", "signer", "max_fee_per_gas_gwei", "max_priority_fee_gwei", "policy"});
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
        if_set(n[i], "policy",
               [&](auto& v) { read_policy(r, v, p + ".policy", a.policy.emplace()); });
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
                 {"id", "url", "url_file", "tier", "timeout_ms", "max_idle_connections",
                  "max_response_bytes", "ca_file", "max_rps", "max_concurrency", "max_logs_range",
                  "max_batch_size", "accept_gzip"});
    if_set(n, "accept_gzip",
           [&](auto& v) { u.accept_gzip = read_bool(r, v, path + ".accept_gzip"); });
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

    // A provider's URL often holds its API key: `url_file` reads it from a file (a mounted
    // Secret, which a reload picks up when it is rotated) rather than from the config.
    const YAML::Node url = n["url"];
    const YAML::Node url_file = n["url_file"];
    const bool has_url = url.IsDefined() && !url.IsNull();
    const bool has_file = url_file.IsDefined() && !url_file.IsNull();
    if (has_url == has_file) r.fail(n, path, "takes exactly one of url and url_file");
    const std::string key = path + (has_url ? ".url" : ".url_file");
    const YAML::Node& at = has_url ? url : url_file;
    if (has_url) {
        u.url = r.scalar(url, key);
    } else {
        const std::string file = r.scalar(url_file, key);
        std::ifstream in(file);
        if (!in) r.fail(url_file, key, fmt::format("cannot read '{}'", file));
        std::string text(4097, '\0');
        in.read(text.data(), static_cast<std::streamsize>(text.size()));
        text.resize(static_cast<std::size_t>(in.gcount()));
        if (text.size() > 4096) r.fail(url_file, key, "holds more than 4096 bytes");
        const auto first = text.find_first_not_of(" \t\r\n");
        const auto last = text.find_last_not_of(" \t\r\n");
        if (first != std::string::npos) u.url = text.substr(first, last - first + 1);
        if (u.url.empty()) r.fail(url_file, key, fmt::format("'{}' is empty", file));
    }
    // The URL may hold an API key, so messages about it never repeat it.
    auto parsed = boost::urls::parse_absolute_uri(u.url);
    if (!parsed) r.fail(at, key, "is not a valid absolute URL");
    if (parsed->scheme() != "http" && parsed->scheme() != "https")
        r.fail(at, key, "must start with http:// or https://");
    if (parsed->host().empty()) r.fail(at, key, "has no host");

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
                  "tx", "accounts", "policy", "upstreams"});
    const YAML::Node name = n["name"];
    if (!name.IsDefined() || name.IsNull()) r.fail(n, path + ".name", "is required");
    c.name = read_path_name(r, name, path + ".name");
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
    if_set(n, "policy", [&](auto& v) { read_policy(r, v, path + ".policy", c.policy.emplace()); });

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

}  // namespace gateway::config::detail
