// The config's event streams: what each follows (a chain's logs by address and topics, from a
// block, with confirmations) and where it delivers (a webhook, signed with a secret).

#include "reader.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>

#include <limits>
#include <regex>

namespace gateway::config::detail {

namespace {

// Addresses, senders, or topics in one position: what eth_getLogs is sent, bounded.
constexpr std::size_t kMaxListed = 1'000;

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

void read_stream(const Reader& r, const YAML::Node& n, const std::string& path, StreamConfig& s,
                 bool from_api) {
    r.check_keys(n, path,
                 {"id", "chain", "kind", "senders", "addresses", "topics", "from_block",
                  "confirmations", "batch_size", "max_blocks", "webhook"});
    for (const char* key : {"id", "chain", "webhook"})
        if (!n[key].IsDefined() || n[key].IsNull()) r.fail(n, path + "." + key, "is required");
    s.id = read_path_name(r, n["id"], path + ".id");
    s.chain = r.scalar(n["chain"], path + ".chain");
    if_set(n, "kind", [&](auto& v) {
        const std::string kind = r.scalar(v, path + ".kind");
        if (kind == "transactions")
            s.kind = StreamConfig::Kind::transactions;
        else if (kind != "logs")
            r.fail(v, path + ".kind", "must be logs or transactions");
    });
    if (s.kind == StreamConfig::Kind::transactions) {
        // The log filter means nothing to a stream of the gateway's own transactions.
        for (const char* key : {"addresses", "topics", "confirmations", "max_blocks"})
            if (n[key].IsDefined())
                r.fail(n[key], path + "." + key,
                       "is for kind logs: a transaction stream follows every change of its "
                       "senders' transactions");
        s.confirmations = 0;
    } else if (n["senders"].IsDefined()) {
        r.fail(n["senders"], path + ".senders",
               "is for kind transactions (a log stream filters by addresses and topics)");
    }
    if_set(n, "senders", [&](auto& v) {
        if (!v.IsSequence() || v.size() > kMaxListed)
            r.fail(v, path + ".senders",
                   fmt::format("must be a list of at most {} addresses", kMaxListed));
        for (std::size_t i = 0; i < v.size(); ++i)
            s.senders.push_back(read_address(r, v[i], fmt::format("{}.senders[{}]", path, i)));
    });
    if_set(n, "addresses", [&](auto& v) {
        if (!v.IsSequence() || v.size() > kMaxListed)
            r.fail(v, path + ".addresses",
                   fmt::format("must be a list of at most {} addresses", kMaxListed));
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
                if (v[i].size() > kMaxListed)
                    r.fail(v[i], p, fmt::format("at most {} topics", kMaxListed));
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
    if (from_api)
        r.check_keys(w, wp, {"url", "timeout_ms", "secret"});
    else
        r.check_keys(w, wp, {"url", "timeout_ms", "secret_env"});
    if (!w["url"].IsDefined()) r.fail(w, wp + ".url", "is required");
    s.webhook.url = read_http_url(r, w["url"], wp + ".url");
    if_set(w, "timeout_ms", [&](auto& v) {
        s.webhook.timeout = Millis(r.integer(v, wp + ".timeout_ms", 1, 300'000));
    });
    if (from_api) {
        // Given, or made by the caller when not.
        if_set(w, "secret", [&](auto& v) {
            s.webhook.secret = r.scalar(v, wp + ".secret");
            if (s.webhook.secret.size() < 16 || s.webhook.secret.size() > 256)
                r.fail(v, wp + ".secret", "must be 16 to 256 bytes (it is not shown)");
        });
        return;
    }
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

namespace gateway::config {

namespace {

// JSON as the YAML tree the readers walk (numbers and booleans as the scalars YAML would read).
YAML::Node to_yaml(const boost::json::value& v, int depth = 0) {
    if (depth > 8) throw ConfigError("the stream definition is nested too deeply");
    switch (v.kind()) {
        case boost::json::kind::object: {
            YAML::Node map(YAML::NodeType::Map);
            for (const auto& member : v.get_object())
                map[std::string(member.key())] = to_yaml(member.value(), depth + 1);
            return map;
        }
        case boost::json::kind::array: {
            YAML::Node list(YAML::NodeType::Sequence);
            for (const auto& item : v.get_array()) list.push_back(to_yaml(item, depth + 1));
            return list;
        }
        case boost::json::kind::string: return YAML::Node(std::string(v.get_string()));
        case boost::json::kind::int64: return YAML::Node(std::to_string(v.get_int64()));
        case boost::json::kind::uint64: return YAML::Node(std::to_string(v.get_uint64()));
        case boost::json::kind::double_: return YAML::Node(fmt::format("{}", v.get_double()));
        case boost::json::kind::bool_: return YAML::Node(v.get_bool() ? "true" : "false");
        case boost::json::kind::null: break;
    }
    return YAML::Node(YAML::NodeType::Null);
}

}  // namespace

StreamConfig parse_stream_definition(std::string_view json) {
    boost::system::error_code ec;
    const boost::json::value body = boost::json::parse(json, ec);
    if (ec || !body.is_object()) throw ConfigError("the stream definition must be a JSON object");
    // No environment: a definition from the API must not read the gateway's variables; its values
    // are taken as written.
    const EnvLookup none = [](std::string_view) -> std::optional<std::string> {
        return std::nullopt;
    };
    detail::Reader r("stream definition", none, false);
    StreamConfig s;
    try {
        detail::read_stream(r, to_yaml(body), "", s, true);
    } catch (const YAML::Exception& e) {
        throw ConfigError("the stream definition: " + e.msg);
    }
    return s;
}

}  // namespace gateway::config
