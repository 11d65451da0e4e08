// The config's server, log and store sections.

#include "reader.hpp"

#include <boost/asio/ip/address.hpp>
#include <boost/url/parse.hpp>

#include <fstream>

namespace gateway::config::detail {

void read_server(const Reader& r, const YAML::Node& n, ServerConfig& s) {
    r.check_keys(n, "server",
                 {"listen",
                  "admin_listen",
                  "threads",
                  "max_body_bytes",
                  "max_body_bytes_in_flight",
                  "max_header_bytes",
                  "max_batch_size",
                  "batch_concurrency",
                  "max_batch_response_bytes",
                  "idle_timeout_ms",
                  "read_timeout_ms",
                  "request_timeout_ms",
                  "shutdown_grace_ms",
                  "drain_delay_ms",
                  "header_timeout_ms",
                  "max_connections",
                  "max_connections_per_ip",
                  "cors",
                  "tls",
                  "compression"});
    if_set(n, "listen", [&](auto& v) { s.listen = r.endpoint(v, "server.listen"); });
    if_set(n, "admin_listen",
           [&](auto& v) { s.admin_listen = r.endpoint(v, "server.admin_listen"); });
    if_set(n, "threads", [&](auto& v) { s.threads = r.integer(v, "server.threads", 1, 256); });
    if_set(n, "max_body_bytes", [&](auto& v) {
        s.max_body_bytes = r.integer(v, "server.max_body_bytes", 64, 1ull << 30);
    });
    if_set(n, "max_body_bytes_in_flight", [&](auto& v) {
        s.max_body_bytes_in_flight =
            r.integer(v, "server.max_body_bytes_in_flight", 64, 1ull << 40);
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
    if_set(n, "compression", [&](auto& c) {
        r.check_keys(c, "server.compression", {"min_bytes", "level"});
        if_set(c, "min_bytes", [&](auto& v) {
            s.compression.min_bytes = r.integer(v, "server.compression.min_bytes", 0, 1ull << 30);
        });
        if_set(c, "level", [&](auto& v) {
            s.compression.level = static_cast<int>(r.integer(v, "server.compression.level", 1, 9));
        });
    });
    if_set(n, "cors", [&](auto& c) {
        r.check_keys(c, "server.cors", {"allowed_origins"});
        if_set(c, "allowed_origins", [&](auto& list) {
            s.cors_allowed_origins = read_list(r, list, "server.cors.allowed_origins");
            // An origin is scheme://host[:port], as browsers send it: nothing else ever matches.
            // The host may be an IPv6 address in brackets (http://[::1]:3000), without a zone
            // (browsers never send one); the listener compares it as an address, whatever its
            // spelling.
            static const std::regex kOrigin(
                "https?://([A-Za-z0-9.-]+|\\[[0-9A-Fa-f:.]+\\])(:[0-9]{1,5})?|\\*");
            const auto ipv6_ok = [](const std::string& origin) {
                const auto open = origin.find('[');
                if (open == std::string::npos) return true;
                boost::system::error_code ec;
                boost::asio::ip::make_address_v6(
                    origin.substr(open + 1, origin.find(']') - open - 1), ec);
                return !ec;
            };
            for (std::size_t i = 0; i < s.cors_allowed_origins.size(); ++i) {
                auto& o = s.cors_allowed_origins[i];
                o = util::lower(o);
                if (!matches(o, kOrigin, 300) || !ipv6_ok(o))
                    r.fail(list[i], fmt::format("server.cors.allowed_origins[{}]", i),
                           fmt::format("'{}' is not an origin (scheme://host[:port], an IPv6 "
                                       "host in brackets, no path) or *",
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
    if (s.max_body_bytes_in_flight && s.max_body_bytes_in_flight < s.max_body_bytes)
        r.fail(n["max_body_bytes_in_flight"], "server.max_body_bytes_in_flight",
               fmt::format("must be at least server.max_body_bytes ({}): a body that large "
                           "would always be refused",
                           s.max_body_bytes));
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
    r.check_keys(n, "store", {"backend", "path", "url", "timeout_ms", "retention_ms"});
    if_set(n, "backend", [&](auto& v) {
        s.backend = r.one_of(v, "store.backend", {"sqlite", "postgres"});
    });
    if_set(n, "path", [&](auto& v) { s.path = r.scalar(v, "store.path"); });
    // The URL may hold a password (${PGPASSWORD}-style variables are expanded): messages about
    // it never repeat it.
    if_set(n, "url", [&](auto& v) { s.url = r.scalar(v, "store.url"); });
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
    if (s.backend == "postgres") {
        if (s.url.empty())
            r.fail(n, "store.url", "is required with backend postgres (postgresql://...)");
        if (!s.url.starts_with("postgresql://") && !s.url.starts_with("postgres://"))
            r.fail(n["url"], "store.url", "must start with postgresql:// or postgres://");
        // libpq reads a URL that is not one (a password's '/', '@' or '%' not percent-encoded)
        // in ways that put the password in its messages: refused here, without repeating it.
        const auto parsed = boost::urls::parse_absolute_uri(s.url);
        const auto odd = [&] {
            if (!parsed) return true;
            const std::string_view port = parsed->port();
            const std::string_view path = parsed->encoded_path();
            return port.find_first_not_of("0123456789") != std::string_view::npos ||
                   path.find_first_of("@:") != std::string_view::npos;
        };
        if (odd())
            r.fail(n["url"], "store.url",
                   "is not a valid URL (percent-encode the password's special characters, or give "
                   "it through PGPASSWORD); it is not shown");
    } else {
        if (n["url"].IsDefined()) r.fail(n["url"], "store.url", "is for backend postgres");
        if (s.path.empty()) r.fail(n, "store.path", "must not be empty");
    }
}

}  // namespace gateway::config::detail
