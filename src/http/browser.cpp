#include "gateway/http/browser.hpp"

#include "gateway/util/text.hpp"

#include <boost/asio/ip/address_v4.hpp>
#include <boost/asio/ip/address_v6.hpp>

namespace gateway::http {

namespace {

constexpr std::size_t kShownOriginChars = 80;

bool all_digits(std::string_view s) {
    for (char c : s)
        if (c < '0' || c > '9') return false;
    return true;
}

// The host of a Host header value without its port; "" when it is not a host[:port].
std::string_view host_of(std::string_view value) {
    if (!value.empty() && value.front() == '[') {
        const auto close = value.find(']');
        if (close == std::string_view::npos) return {};
        const auto rest = value.substr(close + 1);
        if (!rest.empty() && (rest.front() != ':' || !all_digits(rest.substr(1)))) return {};
        return value.substr(0, close + 1);
    }
    const auto colon = value.find(':');
    if (colon == std::string_view::npos) return value;
    if (!all_digits(value.substr(colon + 1))) return {};  // an IPv6 address needs brackets
    return value.substr(0, colon);
}

// 127.x.y.z in dotted decimal, and nothing else (not "127.0.0.1.evil.com", not "2130706433").
bool is_ipv4_loopback(std::string_view s) {
    unsigned parts[4];
    for (int i = 0; i < 4; ++i) {
        const auto dot = s.find('.');
        const auto part = i < 3 ? s.substr(0, dot) : s;
        if (i < 3 && dot == std::string_view::npos) return false;
        if (part.empty() || part.size() > 3 || !all_digits(part)) return false;
        parts[i] = 0;
        for (char c : part) parts[i] = parts[i] * 10 + static_cast<unsigned>(c - '0');
        if (parts[i] > 255) return false;
        if (i < 3) s.remove_prefix(dot + 1);
    }
    return parts[0] == 127;
}

bool is_ipv6_loopback(std::string_view bracketed) {
    if (bracketed.size() < 3 || bracketed.back() != ']') return false;
    boost::system::error_code ec;
    const auto a = boost::asio::ip::make_address_v6(
        std::string(bracketed.substr(1, bracketed.size() - 2)), ec);
    if (ec) return false;
    if (a.is_v4_mapped())
        return boost::asio::ip::make_address_v4(boost::asio::ip::v4_mapped, a).is_loopback();
    return a.is_loopback();
}

// Printable and short: an origin quoted in a message is the client's text.
std::string shown(std::string_view text) {
    std::string out;
    for (char c : text.substr(0, kShownOriginChars)) out += (c >= 0x20 && c < 0x7f) ? c : '?';
    if (text.size() > kShownOriginChars) out += "...";
    return out;
}

std::string join(const std::vector<std::string>& items) {
    std::string out;
    for (const auto& item : items) {
        if (!out.empty()) out += ", ";
        out += item;
    }
    return out;
}

Response refusal(const BrowserPolicy& policy, unsigned status, const std::string& message) {
    Response r;
    r.status = status;
    r.content_type = "application/json";
    if (policy.error_body) r.body = policy.error_body(status, message);
    return r;
}

bool is_own_origin(const Request& request, std::string_view normalized, const BrowserPolicy& p) {
    const auto host = util::trim_ows(request.header("host"));
    if (host.empty()) return false;
    std::string own = p.tls ? "https://" : "http://";
    own += host;
    return normalize_origin(own) == normalized;
}

bool origin_allowed(const Request& request, std::string_view origin, const BrowserPolicy& p) {
    if (p.any_origin) return true;
    const std::string normalized = normalize_origin(origin);
    // Sandboxed frames, local files and some redirects send "null": any of them may, or none.
    if (normalized == "null") return false;
    if (is_own_origin(request, normalized, p)) return true;
    for (const auto& allowed : p.allowed_origins)
        if (allowed == normalized) return true;
    return false;
}

}  // namespace

bool iequals(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i)
        if (util::ascii_lower(a[i]) != util::ascii_lower(b[i])) return false;
    return true;
}

std::string normalize_origin(std::string_view origin) {
    std::string out(util::trim_ows(origin));
    for (char& c : out) c = util::ascii_lower(c);
    while (!out.empty() && out.back() == '/') out.pop_back();
    const std::string_view o = out;
    if (o.starts_with("http://") && o.ends_with(":80"))
        out.resize(out.size() - 3);
    else if (o.starts_with("https://") && o.ends_with(":443"))
        out.resize(out.size() - 4);
    // An IPv6 host in its one written form (browsers send http://[::1]:3000, an operator may
    // write [0:0:0:0:0:0:0:1]), so that the comparison is of addresses, not of spellings.
    const auto scheme_end = out.find("://[");
    if (scheme_end != std::string::npos) {
        const auto open = scheme_end + 3;
        const auto close = out.find(']', open);
        if (close != std::string::npos) {
            boost::system::error_code ec;
            const auto a =
                boost::asio::ip::make_address_v6(out.substr(open + 1, close - open - 1), ec);
            if (!ec && a.scope_id() == 0) out.replace(open + 1, close - open - 1, a.to_string());
        }
    }
    return out;
}

bool is_loopback_host(std::string_view value) {
    auto host = host_of(util::trim_ows(value));
    if (host.empty()) return false;
    if (host.front() == '[') return is_ipv6_loopback(host);
    if (host.back() == '.') host.remove_suffix(1);  // "localhost." is the same name, rooted
    if (iequals(host, "localhost")) return true;
    // Not the names under .localhost: RFC 6761 makes them loopback, but a browser that asks DNS
    // for them (not every one keeps them to itself) can be given the attacker's address first.
    return is_ipv4_loopback(host);
}

bool is_json_content_type(std::string_view content_type) {
    const auto media = util::trim_ows(content_type.substr(0, content_type.find(';')));
    return iequals(media, "application/json") || iequals(media, "application/json-rpc") ||
           iequals(media, "application/jsonrequest");
}

BrowserPolicy BrowserPolicy::from(const ListenerOptions& options) {
    BrowserPolicy p;
    p.loopback_host_only = config::is_loopback(options.endpoint);
    p.tls = options.tls.enabled();
    p.own_origin_only = options.own_origin_only;
    // Own origin only: whatever the list says (it is the other listener's setting).
    if (!p.own_origin_only)
        for (const auto& origin : options.allowed_origins) {
            if (origin == "*")
                p.any_origin = true;
            else
                p.allowed_origins.push_back(normalize_origin(origin));
        }
    p.allow_headers = join(options.cors_allow_headers);
    p.expose_headers = join(options.cors_expose_headers);
    p.error_body = options.error_body;
    return p;
}

std::optional<Response> browser_check(const Request& request, const BrowserPolicy& policy,
                                      bool has_body) {
    // RFC 9112 section 3.2: exactly one Host in HTTP/1.1. With two, the check below and whatever
    // reads the request next may each believe another one (Host: localhost, Host: evil.com).
    std::size_t hosts = 0;
    for (const auto& field : request.headers)
        if (field.first == "host") ++hosts;
    if (hosts > 1)
        return refusal(policy, 400,
                       "a request has one Host header; this one has " + std::to_string(hosts));
    if (hosts == 0 && request.version >= 11)
        return refusal(policy, 400, "an HTTP/1.1 request needs a Host header");
    if (policy.loopback_host_only) {
        const auto host = request.header("host");
        if (!host.empty() && !is_loopback_host(host))
            return refusal(policy, 403,
                           "Host '" + shown(host) +
                               "' does not name this machine: the listener is bound to a loopback "
                               "address and answers only requests for localhost, 127.0.0.1 or "
                               "[::1] (a page elsewhere may not reach it through a DNS name of "
                               "its own); call it as http://localhost:<port>");
    }

    const auto origin = request.header("origin");
    if (!origin.empty()) {
        if (!origin_allowed(request, origin, policy)) {
            const bool null_origin = iequals(util::trim_ows(origin), "null");
            const std::string who = "Origin '" + shown(origin) +
                                    (null_origin ? "' (a sandboxed page or a local file)" : "'") +
                                    " may not call this listener";
            // The admin listener has no list to add an origin to: server.cors.allowed_origins is
            // the RPC listener's, and pointing at it would send an operator the wrong way.
            if (policy.own_origin_only)
                return refusal(policy, 403,
                               who +
                                   ": it answers pages of its own origin (scheme://Host) only; "
                                   "server.cors.allowed_origins applies to the RPC listener");
            return refusal(policy, 403,
                           who + ": add it to server.cors.allowed_origins to allow it" +
                               (null_origin ? " (only \"*\" allows 'null')" : ""));
        }
        if (request.method == "OPTIONS" &&
            !request.header("access-control-request-method").empty()) {
            Response r;
            r.status = 204;
            r.headers.emplace_back("Access-Control-Allow-Origin", std::string(origin));
            r.headers.emplace_back("Access-Control-Allow-Methods",
                                   request.header("access-control-request-method") == "GET"
                                       ? "GET, POST, OPTIONS"
                                       : "POST, OPTIONS");
            r.headers.emplace_back("Access-Control-Allow-Headers", policy.allow_headers);
            r.headers.emplace_back("Access-Control-Max-Age", "600");
            r.headers.emplace_back("Vary", "Origin");
            return r;
        }
    }

    if (request.method == "POST" && has_body) {
        const auto type = request.header("content-type");
        if (!is_json_content_type(type)) {
            Response r = refusal(
                policy, 415,
                type.empty() ? std::string("a request body needs Content-Type: application/json")
                             : "Content-Type '" + shown(type) +
                                   "' is not JSON: send Content-Type: application/json");
            add_cors_headers(request, policy, r);
            return r;
        }
    }
    return std::nullopt;
}

void add_cors_headers(const Request& request, const BrowserPolicy& policy, Response& response) {
    const auto origin = request.header("origin");
    if (origin.empty() || !origin_allowed(request, origin, policy)) return;
    if (is_own_origin(request, normalize_origin(origin), policy)) return;
    // The origin itself, never "*": callers send Authorization, and a page may read the answer.
    response.headers.emplace_back("Access-Control-Allow-Origin", std::string(origin));
    response.headers.emplace_back("Vary", "Origin");
    if (!policy.expose_headers.empty())
        response.headers.emplace_back("Access-Control-Expose-Headers", policy.expose_headers);
}

}  // namespace gateway::http
