#include "gateway/admin/admin_handler.hpp"

#include "gateway/metrics/metrics.hpp"
#include "gateway/upstream/pool.hpp"

#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

namespace gateway::admin {

namespace json = boost::json;

namespace {

http::Response json_response(unsigned status, const json::value& body) {
    http::Response r;
    r.status = status;
    r.body = json::serialize(body);
    r.body.push_back('\n');
    return r;
}

const char* tier_name(config::Tier tier) {
    return tier == config::Tier::primary ? "primary" : "fallback";
}

}  // namespace

AdminHandler::AdminHandler(std::vector<upstream::ChainPool*> chains, metrics::Metrics* metrics,
                           const std::atomic<bool>* draining)
    : chains_(std::move(chains)), metrics_(metrics), draining_(draining) {}

std::string AdminHandler::refusal_body(unsigned, std::string_view message) {
    return json::serialize(json::object{{"error", message}});
}

http::Response AdminHandler::readyz() const {
    json::object chains;
    bool ready = !draining_->load();
    for (auto* c : chains_) {
        const bool chain_ready = c->ready();
        ready = ready && chain_ready;
        chains[c->config().name] = chain_ready ? "ready" : "no upstream known to answer";
    }
    json::object body{{"ready", ready}, {"chains", std::move(chains)}};
    if (draining_->load()) body["draining"] = true;
    return json_response(ready ? 200 : 503, body);
}

http::Response AdminHandler::upstreams() const {
    using namespace std::chrono;
    json::array list;
    const auto now = steady_clock::now();
    for (auto* c : chains_)
        for (const auto& s : c->status())
            list.push_back(json::object{
                {"chain", c->config().name},
                {"id", s.id},
                {"tier", tier_name(s.tier)},
                {"state", to_string(s.health)},
                {"reason", s.reason},
                {"since_ms", duration_cast<milliseconds>(now - s.since).count()},
                {"consecutive_failures", s.consecutive_failures},
                {"requests", s.requests},
                {"failures", s.failures},
            });
    return json_response(200, json::object{{"upstreams", std::move(list)}});
}

boost::asio::awaitable<http::Response> AdminHandler::operator()(http::Request& request) {
    const std::string_view path = request.path();
    if (request.method != "GET")
        co_return json_response(405, json::object{{"error", "admin endpoints answer GET"}});
    if (path == "/healthz") co_return json_response(200, json::object{{"status", "ok"}});
    if (path == "/readyz") co_return readyz();
    if (path == "/admin/upstreams") co_return upstreams();
    if (path == "/metrics") {
        http::Response r;
        r.content_type = "text/plain; version=0.0.4; charset=utf-8";
        r.body = metrics_->render();
        co_return r;
    }
    co_return json_response(
        404, json::object{{"error", "not found"},
                          {"endpoints",
                           json::array{"/healthz", "/readyz", "/metrics", "/admin/upstreams"}}});
}

}  // namespace gateway::admin
