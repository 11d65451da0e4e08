#pragma once
// The operator page (/ui/ on the admin listener): plain HTML, CSS and JavaScript compiled into the
// binary, that shows what the admin API says (upstreams, chains, transactions, approvals, dead
// letters, streams) and acts through it. The files hold no data and are served without the admin
// token; the page asks for the token once per browser session and sends it to the admin API, which
// checks it as for any client. Every answer carries a strict Content-Security-Policy.

#include "gateway/http/listener.hpp"

#include <string_view>

namespace gateway::admin {

/// The Content-Security-Policy of the page's answers: its own scripts, styles and API only, no
/// inline script or style, never in a frame.
inline constexpr std::string_view kOperatorPagePolicy =
    "default-src 'self'; img-src 'self' data:; object-src 'none'; frame-ancestors 'none'; "
    "base-uri 'none'; form-action 'self'";

/// Whether `path` (without its query) is the page's: /ui, or under /ui/.
bool is_operator_page(std::string_view path);

/// The answer to a request for one of the page's paths: GET /ui/ (index.html), /ui/app.js,
/// /ui/app.css with their types; /ui redirects to /ui/; another file is 404 and another method
/// 405. Each with the security headers (Content-Security-Policy, X-Content-Type-Options: nosniff,
/// Referrer-Policy: no-referrer, Cache-Control: no-store). Never throws.
http::Response operator_page(std::string_view method, std::string_view path);

/// Adds the page's security headers to an answer to one of its paths made elsewhere (a refusal).
void add_page_headers(http::Response& response);

}  // namespace gateway::admin
