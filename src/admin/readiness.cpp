// /readyz: whether this process can take work, and what it can say about its chains and journal.

#include "gateway/admin/readiness.hpp"

#include <boost/json/array.hpp>
#include <boost/url/parse.hpp>

namespace gateway::admin {

namespace json = boost::json;

namespace {

constexpr std::string_view kUsage = "/readyz takes require=upstreams,journal (either or both)";

std::string clipped(std::string_view text) {
    return std::string(text.substr(0, 64)) + (text.size() > 64 ? "..." : "");
}

}  // namespace

std::variant<ReadinessRequirements, std::string> parse_readiness_requirements(
    std::string_view target) {
    ReadinessRequirements out;
    const auto url = boost::urls::parse_origin_form(target);
    if (!url) return std::string("the query cannot be read: ") + std::string(kUsage);
    for (const auto& p : url->params()) {
        // A misspelt name would otherwise drop a condition its caller relies on.
        if (p.key != "require")
            return "unknown parameter '" + clipped(p.key) + "': " + std::string(kUsage);
        std::string_view values = p.value;
        while (!values.empty()) {
            const auto comma = values.find(',');
            std::string_view v = values.substr(0, comma);
            values =
                comma == std::string_view::npos ? std::string_view() : values.substr(comma + 1);
            while (!v.empty() && v.front() == ' ') v.remove_prefix(1);
            while (!v.empty() && v.back() == ' ') v.remove_suffix(1);
            if (v == "upstreams")
                out.upstreams = true;
            else if (v == "journal")
                out.journal = true;
            else if (!v.empty())
                return "unknown readiness condition '" + clipped(v) + "': " + std::string(kUsage);
        }
    }
    return out;
}

Readiness readiness(const ReadinessFacts& facts, const ReadinessRequirements& required) {
    json::array not_ready;
    if (facts.draining) not_ready.emplace_back("draining: the gateway is shutting down");

    json::object chains;
    for (const auto& c : facts.chains) {
        json::object chain{{"upstream_answers", c.upstream_answers}};
        if (!c.upstream_answers) {
            chain["reason"] = "no upstream known to answer";
            if (required.upstreams)
                not_ready.emplace_back("chain " + c.name + ": no upstream known to answer");
        }
        if (c.transactions_loaded) {
            chain["transactions_loaded"] = *c.transactions_loaded;
            if (!*c.transactions_loaded && required.journal)
                not_ready.emplace_back("chain " + c.name +
                                       ": its unfinished transactions are still loading from the "
                                       "journal (writes are refused until they are)");
        }
        chains[c.name] = std::move(chain);
    }

    json::object journal{{"writable", !facts.journal_problem.has_value()}};
    if (facts.journal_problem) {
        journal["reason"] = *facts.journal_problem;
        if (required.journal) not_ready.emplace_back("journal: " + *facts.journal_problem);
    }

    json::array asked;
    if (required.upstreams) asked.emplace_back("upstreams");
    if (required.journal) asked.emplace_back("journal");

    Readiness out;
    out.status = not_ready.empty() ? 200 : 503;
    out.body = json::object{{"ready", not_ready.empty()},
                            {"draining", facts.draining},
                            {"required", std::move(asked)},
                            {"chains", std::move(chains)},
                            {"journal", std::move(journal)}};
    if (!not_ready.empty()) out.body["not_ready"] = std::move(not_ready);
    return out;
}

}  // namespace gateway::admin
