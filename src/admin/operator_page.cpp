// The operator page's files (embedded_files.hpp) served with their types and security headers.

#include "gateway/admin/operator_page.hpp"

#include "embedded_files.hpp"

namespace gateway::admin {

namespace {

constexpr std::string_view kPrefix = "/ui/";

std::string_view type_of(std::string_view name) {
    const auto ends_with = [&](std::string_view suffix) {
        return name.size() >= suffix.size() && name.substr(name.size() - suffix.size()) == suffix;
    };
    if (ends_with(".html")) return "text/html; charset=utf-8";
    if (ends_with(".js")) return "text/javascript; charset=utf-8";
    if (ends_with(".css")) return "text/css; charset=utf-8";
    return "application/octet-stream";
}

http::Response answer(unsigned status, std::string_view type, std::string body) {
    http::Response r;
    r.status = status;
    r.content_type = type;
    r.body = std::move(body);
    add_page_headers(r);
    return r;
}

}  // namespace

void add_page_headers(http::Response& r) {
    r.headers.emplace_back("Content-Security-Policy", std::string(kOperatorPagePolicy));
    r.headers.emplace_back("X-Content-Type-Options", "nosniff");
    r.headers.emplace_back("Referrer-Policy", "no-referrer");
    r.headers.emplace_back("Cache-Control", "no-store");
    r.headers.emplace_back("X-Frame-Options", "DENY");
}

bool is_operator_page(std::string_view path) {
    return path == "/ui" || path.substr(0, kPrefix.size()) == kPrefix;
}

http::Response operator_page(std::string_view method, std::string_view path) {
    constexpr std::string_view kText = "text/plain; charset=utf-8";
    if (method != "GET") {
        http::Response r = answer(405, kText, "the operator page answers GET\n");
        r.headers.emplace_back("Allow", "GET");
        return r;
    }
    if (path == "/ui") {
        http::Response r = answer(308, kText, "the operator page is at /ui/\n");
        r.headers.emplace_back("Location", "/ui/");
        return r;
    }
    std::string_view name = path.substr(kPrefix.size());
    if (name.empty()) name = "index.html";
    for (const auto& file : embedded_files())
        if (file.name == name) return answer(200, type_of(name), std::string(file.content));
    return answer(404, kText, "no such file of the operator page: use /ui/\n");
}

}  // namespace gateway::admin
