// The config's event streams: what each follows (a chain's logs by address and topics, from a
// block, with confirmations) and where it delivers (a webhook, signed with a secret).

#include "reader.hpp"

#include <limits>
#include <regex>

namespace gateway::config::detail {

namespace {

std::string read_topic(const Reader& r, const YAML::Node& n, const std::string& path) {
    static const std::regex kTopic("0x[0-9a-fA-F]{64}");
    const std::string text = r.scalar(n, path);
    if (!matches(text, kTopic, 66))
        r.fail(
            n, path,
            fmt::format("'{}' is not a topic: 0x and 64 hex digits", util::utf8_prefix(text, 80)));
    return util::lower(text);
}

}  // namespace

void read_stream(const Reader& r, const YAML::Node& n, const std::string& path, StreamConfig& s) {
    r.check_keys(n, path,
                 {"id", "chain", "addresses", "topics", "from_block", "confirmations", "batch_size",
                  "max_blocks", "webhook"});
    for (const char* key : {"id", "chain", "webhook"})
        if (!n[key].IsDefined() || n[key].IsNull()) r.fail(n, path + "." + key, "is required");
    s.id = read_path_name(r, n["id"], path + ".id");
    s.chain = r.scalar(n["chain"], path + ".chain");
    if_set(n, "addresses", [&](auto& v) {
        if (!v.IsSequence()) r.fail(v, path + ".addresses", "must be a list of addresses");
        for (std::size_t i = 0; i < v.size(); ++i)
            s.addresses.push_back(read_address(r, v[i], fmt::format("{}.addresses[{}]", path, i)));
    });
    if_set(n, "topics", [&](auto& v) {
        // As eth_getLogs takes them: per position null (any), a topic, or a list (any of them).
        if (!v.IsSequence() || v.size() > 4)
            r.fail(v, path + ".topics", "must be a list of at most 4 positions");
        for (std::size_t i = 0; i < v.size(); ++i) {
            const std::string p = fmt::format("{}.topics[{}]", path, i);
            std::vector<std::string> any;
            if (v[i].IsNull()) {
            } else if (v[i].IsSequence()) {
                for (std::size_t j = 0; j < v[i].size(); ++j)
                    any.push_back(read_topic(r, v[i][j], fmt::format("{}[{}]", p, j)));
            } else {
                any.push_back(read_topic(r, v[i], p));
            }
            s.topics.push_back(std::move(any));
        }
    });
    if_set(n, "from_block", [&](auto& v) {
        if (r.scalar(v, path + ".from_block") == "latest") return;
        s.from_block =
            r.integer(v, path + ".from_block", 0, std::numeric_limits<std::int64_t>::max());
    });
    if_set(n, "confirmations", [&](auto& v) {
        s.confirmations = static_cast<unsigned>(r.integer(v, path + ".confirmations", 0, 1'000));
    });
    if_set(n, "batch_size",
           [&](auto& v) { s.batch_size = r.integer(v, path + ".batch_size", 1, 10'000); });
    if_set(n, "max_blocks",
           [&](auto& v) { s.max_blocks = r.integer(v, path + ".max_blocks", 1, 100'000); });

    const YAML::Node w = n["webhook"];
    const std::string wp = path + ".webhook";
    r.check_keys(w, wp, {"url", "timeout_ms", "secret_env"});
    if (!w["url"].IsDefined()) r.fail(w, wp + ".url", "is required");
    s.webhook.url = read_http_url(r, w["url"], wp + ".url");
    if_set(w, "timeout_ms", [&](auto& v) {
        s.webhook.timeout = Millis(r.integer(v, wp + ".timeout_ms", 1, 300'000));
    });
    // Deliveries are signed, always: an application must be able to tell them from forgeries.
    if (!w["secret_env"].IsDefined())
        r.fail(w, wp + ".secret_env",
               "is required: the variable holding the secret that signs each delivery "
               "(X-Gateway-Signature)");
    s.webhook.secret_env = r.scalar(w["secret_env"], wp + ".secret_env");
    const auto secret = r.env(s.webhook.secret_env);
    if (!secret || secret->empty())
        r.fail(w["secret_env"], wp + ".secret_env",
               fmt::format("environment variable {} is not set", s.webhook.secret_env));
    if (secret->size() < 16)
        r.fail(w["secret_env"], wp + ".secret_env",
               fmt::format("the secret in {} is shorter than 16 bytes (it is not shown)",
                           s.webhook.secret_env));
    s.webhook.secret = *secret;
}

}  // namespace gateway::config::detail
