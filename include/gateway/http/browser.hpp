#pragma once
// What a listener checks before a request reaches its handler, so that a browser cannot be turned
// against the gateway: a page on another site posting to a port on the same machine (cross-site
// request forgery), or a name of the attacker's that resolves to 127.0.0.1 (DNS rebinding). Pure
// functions of the request and the listener's policy, each rule testable on its own.

#include "gateway/http/listener.hpp"

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace gateway::http {

struct BrowserPolicy {
    /// The listener is bound to a loopback address: a Host header must name the loopback too.
    bool loopback_host_only = false;
    /// The listener speaks TLS: its own origin is https://<Host> (else http://<Host>).
    bool tls = false;
    /// Other origins whose pages may call, normalised by from(): lower case, no trailing '/', no
    /// default port.
    std::vector<std::string> allowed_origins;
    /// "*" was among the allowed origins: any origin may call ("null" included).
    bool any_origin = false;
    /// The listener serves pages of its own origin only (the admin listener): no setting can
    /// allow another, and a refusal says so.
    bool own_origin_only = false;
    /// A preflight's Access-Control-Allow-Headers, e.g. "authorization, content-type".
    std::string allow_headers;
    /// Access-Control-Expose-Headers on answers to other origins ("": none).
    std::string expose_headers;
    /// The body of a refusal (as ListenerOptions::error_body); may be empty.
    std::function<std::string(unsigned status, std::string_view message)> error_body;

    /// The policy of a listener with these options.
    static BrowserPolicy from(const ListenerOptions& options);
};

/// What the listener answers itself, on the request's head: before credentials are looked at (a
/// page that may not call learns nothing about a key from the answer) and before the body is read
/// (a refused body is never read). Nothing when the request goes on. `has_body`: the head
/// announces a body (a Content-Length over 0, or chunked). In this order:
/// - Host: more than one Host header, or none in an HTTP/1.1 request, gets 400 (RFC 9112
///   section 3.2: which one would the checks below believe?). On a loopback listener, a Host (port
///   ignored) other than localhost, 127.x.y.z or [::1] gets 403. An HTTP/1.0 request without
///   Host passes (old tools; browsers always send one).
/// - Origin: a request with an Origin other than the listener's own (scheme://Host) and not
///   allowed gets 403 ("null" only passes with "*"). An OPTIONS preflight (Origin and
///   Access-Control-Request-Method) from an allowed origin gets 204 with the CORS headers.
/// - Content-Type: a POST with a body gets 415 unless its Content-Type is application/json,
///   application/json-rpc or application/jsonrequest (parameters allowed, any case).
/// Never throws on what a client sends.
std::optional<Response> browser_check(const Request& request, const BrowserPolicy& policy,
                                      bool has_body);

/// The same on a whole request: it has a body when `request.body` is not empty.
inline std::optional<Response> browser_check(const Request& request, const BrowserPolicy& policy) {
    return browser_check(request, policy, !request.body.empty());
}

/// Adds the CORS headers (Access-Control-Allow-Origin: <its origin>, Vary: Origin,
/// Access-Control-Expose-Headers) to the answer of a request from an allowed other origin; leaves
/// the answer alone for a request without Origin, from the listener's own origin, or refused.
void add_cors_headers(const Request& request, const BrowserPolicy& policy, Response& response);

/// Whether a Host header value names this machine's loopback (its port ignored): localhost, an
/// address in 127.0.0.0/8, or [::1].
bool is_loopback_host(std::string_view host);

/// ASCII case-insensitive equality (header values, host names).
bool iequals(std::string_view a, std::string_view b);

/// Whether a Content-Type value is one of the JSON media types a JSON-RPC client sends.
bool is_json_content_type(std::string_view content_type);

/// An origin as compared: lower case, without a trailing '/' and without the scheme's default
/// port ("HTTP://Example.com:80" -> "http://example.com").
std::string normalize_origin(std::string_view origin);

}  // namespace gateway::http
