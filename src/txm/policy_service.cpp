#include "gateway/txm/policy_service.hpp"

#include "gateway/upstream/http_client.hpp"
#include "gateway/util/text.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <algorithm>
#include <stdexcept>

namespace gateway::txm {
namespace {

namespace json = boost::json;

// A service's words, bounded and on one line, for a transaction's reason.
std::string clip(std::string_view text) {
    std::string out(util::utf8_prefix(text, 500));
    std::replace_if(
        out.begin(), out.end(), [](char c) { return static_cast<unsigned char>(c) < 0x20; }, ' ');
    return out;
}

class HttpPolicyService final : public PolicyService {
public:
    HttpPolicyService(std::unique_ptr<upstream::HttpClient> client,
                      std::chrono::milliseconds timeout, std::string name)
        : client_(std::move(client)), timeout_(timeout), name_(std::move(name)) {}

    boost::asio::awaitable<ServiceVerdict> check(
        json::object request, std::chrono::steady_clock::time_point deadline) override {
        upstream::PostOptions options;
        options.deadline = std::min(deadline, std::chrono::steady_clock::now() + timeout_);
        // Asking twice decides nothing twice: the gateway acts on one answer.
        options.idempotent = true;
        const upstream::HttpResult res =
            co_await client_->post(json::serialize(request), std::move(options));
        co_return read(res);
    }

private:
    ServiceVerdict none(std::string why) const {
        return ServiceVerdict{ServiceVerdict::Kind::unavailable,
                              "the policy service of " + name_ + " " + std::move(why)};
    }

    ServiceVerdict read(const upstream::HttpResult& res) const {
        if (!res.ok()) {
            if (res.error == upstream::TransportError::timeout)
                return none("did not answer in time");
            return none("is unreachable: " + std::string(upstream::to_string(res.error)));
        }
        if (res.status < 200 || res.status > 299)
            return none("answered HTTP " + std::to_string(res.status));
        json::error_code ec;
        const json::value v = json::parse(res.body, ec);
        const json::object* o = ec ? nullptr : v.if_object();
        const json::value* decision = o ? o->if_contains("decision") : nullptr;
        if (!decision || !decision->is_string())
            return none(
                "answered without a decision (it must be {\"decision\": \"allow\"|\"hold\"|"
                "\"deny\", \"reason\": \"...\"})");
        std::string reason;
        if (const json::value* r = o->if_contains("reason"); r && r->is_string())
            reason = clip(r->get_string());
        if (reason.empty()) reason = "no reason given";
        const json::string& d = decision->get_string();
        if (d == "allow") return ServiceVerdict{ServiceVerdict::Kind::allow, {}};
        if (d == "hold") return ServiceVerdict{ServiceVerdict::Kind::hold, reason};
        if (d == "deny") return ServiceVerdict{ServiceVerdict::Kind::deny, reason};
        return none("answered an unknown decision '" + clip(std::string_view(d).substr(0, 40)) +
                    "'");
    }

    std::unique_ptr<upstream::HttpClient> client_;
    std::chrono::milliseconds timeout_;
    std::string name_;
};

}  // namespace

std::unique_ptr<PolicyService> make_policy_service(const config::PolicyConfig::Service& config,
                                                   std::string name) {
    config::UpstreamConfig cfg;
    cfg.id = "policy-service";
    cfg.url = config.url;
    cfg.timeout = config.timeout;
    cfg.max_idle_connections = 4;
    cfg.max_response_bytes = 64 * 1024;
    try {
        return std::make_unique<HttpPolicyService>(upstream::make_http_client(cfg), config.timeout,
                                                   std::move(name));
    } catch (const std::exception&) {
        // Never the URL, nor what was wrong with it: it may carry credentials.
        throw std::runtime_error("the policy service of " + name + ": its url cannot be used");
    }
}

}  // namespace gateway::txm
