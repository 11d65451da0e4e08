// The config's signers and auth sections, and the check across sections that nobody who can
// reach a port can spend or run the gateway without credentials.

#include "reader.hpp"

#include <boost/asio/ip/address.hpp>
#include <boost/url/parse.hpp>

#include <fstream>

namespace gateway::config::detail {

void read_signer(const Reader& r, const YAML::Node& n, const std::string& path, SignerConfig& s) {
    r.check_keys(n, path,
                 {"id", "type", "key_file", "key_env", "keystore", "passphrase_env", "url",
                  "addresses", "stub_keys_env", "timeout_ms"});
    const YAML::Node id = n["id"];
    if (!id.IsDefined() || id.IsNull()) r.fail(n, path + ".id", "is required");
    s.id = r.scalar(id, path + ".id");
    const YAML::Node type = n["type"];
    if (!type.IsDefined() || type.IsNull())
        r.fail(n, path + ".type", "is required: local, remote or custody-stub");
    s.type = r.one_of(type, path + ".type", {"local", "remote", "custody-stub"});
    auto text = [&](const char* key, std::string& out) {
        if_set(n, key, [&](auto& v) { out = r.scalar(v, path + "." + key); });
    };
    text("key_file", s.key_file);
    text("key_env", s.key_env);
    text("keystore", s.keystore);
    text("passphrase_env", s.passphrase_env);
    text("url", s.url);
    if_set(n, "addresses", [&](auto& list) {
        if (!list.IsSequence()) r.fail(list, path + ".addresses", "must be a list");
        for (std::size_t i = 0; i < list.size(); ++i)
            s.addresses.push_back(
                read_address(r, list[i], fmt::format("{}.addresses[{}]", path, i)));
    });
    if_set(n, "stub_keys_env",
           [&](auto& list) { s.stub_keys_env = read_list(r, list, path + ".stub_keys_env"); });
    if_set(n, "timeout_ms", [&](auto& v) { s.timeout = r.millis(v, path + ".timeout_ms"); });
    // Which fields go with which type.
    const int sources = !s.key_file.empty() + !s.key_env.empty() + !s.keystore.empty();
    if (s.type == "local" && sources != 1)
        r.fail(n, path, "a local signer takes exactly one of key_file, key_env, keystore");
    if (s.type == "local" && !s.keystore.empty() && s.passphrase_env.empty())
        r.fail(n, path + ".passphrase_env", "is required with a keystore");
    if (s.type == "remote" && (s.url.empty() || s.addresses.empty()))
        r.fail(n, path, "a remote signer needs url and addresses");
    if (s.type == "custody-stub" && s.stub_keys_env.empty())
        r.fail(n, path + ".stub_keys_env", "a custody stub needs at least one key variable");
}

void read_auth(const Reader& r, const YAML::Node& n, AuthConfig& a) {
    r.check_keys(n, "auth", {"clients", "jwt", "admin"});
    if_set(n, "clients", [&](auto& list) {
        if (!list.IsSequence()) r.fail(list, "auth.clients", "must be a list");
        for (std::size_t i = 0; i < list.size(); ++i) {
            const YAML::Node c = list[i];
            const std::string p = fmt::format("auth.clients[{}]", i);
            r.check_keys(c, p, {"id", "key_env", "key_file", "senders", "methods", "max_rps"});
            ClientConfig client;
            if (!c["id"].IsDefined() || c["id"].IsNull()) r.fail(c, p + ".id", "is required");
            client.id = r.scalar(c["id"], p + ".id");
            static const std::regex kId("[A-Za-z0-9][A-Za-z0-9_.-]{0,62}");
            if (!matches(client.id, kId, 63))
                r.fail(c["id"], p + ".id",
                       fmt::format("'{}' must be 1-63 letters, digits, '_', '-' or '.', starting "
                                   "with a letter or digit",
                                   util::utf8_prefix(client.id, 80)));
            for (const auto& other : a.clients)
                if (other.id == client.id)
                    r.fail(c["id"], p + ".id",
                           fmt::format("client '{}' is listed twice", client.id));
            client.keys = read_secrets(r, c, p, "key", client.key_env, client.key_file);
            if_set(c, "senders", [&](auto& s) {
                if (!s.IsSequence()) r.fail(s, p + ".senders", "must be a list of addresses");
                for (std::size_t j = 0; j < s.size(); ++j) {
                    const std::string sp = fmt::format("{}.senders[{}]", p, j);
                    // "<chain>:<address>": on that chain only; an address alone: on every chain.
                    const std::string text = r.scalar(s[j], sp);
                    const auto colon = text.find(':');
                    std::string sender;
                    if (colon != std::string::npos) sender = text.substr(0, colon + 1);
                    YAML::Node address(text.substr(colon == std::string::npos ? 0 : colon + 1));
                    try {
                        sender += read_address(r, address, sp);
                    } catch (const ConfigError&) {
                        r.fail(s[j], sp,
                               fmt::format("'{}' is not an address or <chain>:<address>",
                                           util::utf8_prefix(text, 120)));
                    }
                    client.senders.push_back(std::move(sender));
                }
            });
            if_set(c, "methods",
                   [&](auto& m) { client.methods = read_method_patterns(r, m, p + ".methods"); });
            if_set(c, "max_rps", [&](auto& v) {
                client.max_rps = static_cast<double>(r.integer(v, p + ".max_rps", 0, 10'000'000));
            });
            for (const auto& other : a.clients)
                for (const auto& k : other.keys)
                    if (std::find(client.keys.begin(), client.keys.end(), k) != client.keys.end())
                        r.fail(c, p,
                               fmt::format("client '{}' has a key of client '{}': a key names one "
                                           "client",
                                           client.id, other.id));
            a.clients.push_back(std::move(client));
        }
    });
    if_set(n, "jwt", [&](auto& j) {
        const std::string p = "auth.jwt";
        r.check_keys(j, p,
                     {"jwks_url", "issuer", "audience", "senders_claim", "refresh_ms", "ca_file",
                      "methods", "max_rps"});
        JwtConfig& t = a.jwt;
        for (const char* key : {"jwks_url", "issuer", "audience"})
            if (!j[key].IsDefined() || j[key].IsNull()) r.fail(j, p + "." + key, "is required");
        t.jwks_url = r.scalar(j["jwks_url"], p + ".jwks_url");
        auto url = boost::urls::parse_absolute_uri(t.jwks_url);
        if (!url || (url->scheme() != "http" && url->scheme() != "https") || url->host().empty())
            r.fail(j["jwks_url"], p + ".jwks_url", "must be an http:// or https:// URL");
        // Whoever can change the keys on their way can issue tokens for any sender: plain HTTP
        // only to this host.
        if (url->scheme() == "http") {
            boost::system::error_code ec;
            const auto host = boost::asio::ip::make_address(url->host_address(), ec);
            if ((ec || !host.is_loopback()) && url->host_address() != "localhost")
                r.fail(j["jwks_url"], p + ".jwks_url",
                       "must be https:// (plain http only to a loopback address): whoever can "
                       "change the keys on the way can issue tokens");
        }
        t.issuer = r.scalar(j["issuer"], p + ".issuer");
        t.audience = r.scalar(j["audience"], p + ".audience");
        if (t.issuer.empty() || t.audience.empty())
            r.fail(j, p, "issuer and audience must not be empty");
        if_set(j, "senders_claim",
               [&](auto& v) { t.senders_claim = r.scalar(v, p + ".senders_claim"); });
        if_set(j, "refresh_ms", [&](auto& v) {
            t.refresh = Millis(r.integer(v, p + ".refresh_ms", 100, 86'400'000));
        });
        if_set(j, "ca_file", [&](auto& v) {
            t.ca_file = r.scalar(v, p + ".ca_file");
            if (!std::ifstream(t.ca_file))
                r.fail(v, p + ".ca_file", fmt::format("cannot read '{}'", t.ca_file));
        });
        if_set(j, "methods",
               [&](auto& m) { t.methods = read_method_patterns(r, m, p + ".methods"); });
        if_set(j, "max_rps", [&](auto& v) {
            t.max_rps = static_cast<double>(r.integer(v, p + ".max_rps", 0, 10'000'000));
        });
    });
    if_set(n, "admin", [&](auto& m) {
        r.check_keys(m, "auth.admin", {"token_env", "token_file"});
        std::string env_name, file_name;
        auto tokens = read_secrets(r, m, "auth.admin", "token", env_name, file_name);
        if (tokens.size() != 1) r.fail(m, "auth.admin", "takes one token (it is not shown)");
        a.admin_token = std::move(tokens.front());
    });
}

// What must hold across sections: nobody who can reach a port can spend or run the gateway
// without credentials, unless the port is reachable from this host only.
void check_exposure(const Reader& r, const YAML::Node& root, const Config& c) {
    std::set<std::string> managed;
    for (const auto& chain : c.chains)
        for (const auto& a : chain.accounts) managed.insert(a.address);
    const YAML::Node server = root["server"];
    const auto at = [&](const char* key) {
        return server.IsDefined() && server[key].IsDefined() ? server[key] : root;
    };
    const bool authenticated = c.auth.clients_required();
    if (!managed.empty() && !authenticated && !is_loopback(c.server.listen))
        r.fail(at("listen"), "server.listen",
               fmt::format("{} is reachable from other hosts and chains have managed senders "
                           "(accounts), but auth has no clients and no jwt: anyone reaching the "
                           "port could spend from them. Configure auth.clients or auth.jwt, or "
                           "listen on 127.0.0.1",
                           c.server.listen.to_string()));
    if (!managed.empty() && !authenticated)
        for (const auto& origin : c.server.cors_allowed_origins)
            if (origin == "*")
                r.fail(at("cors"), "server.cors.allowed_origins",
                       "'*' lets every web page call the gateway, and chains have managed "
                       "senders with no auth configured: list the dapp's origin, or configure "
                       "auth.clients or auth.jwt");
    if (c.auth.admin_token.empty() && !is_loopback(c.server.admin_listen))
        r.fail(at("admin_listen"), "server.admin_listen",
               fmt::format("{} is reachable from other hosts, but auth.admin has no token: "
                           "anyone reaching it could cordon upstreams and cancel transactions. "
                           "Set auth.admin.token_env (or token_file), or listen on 127.0.0.1",
                           c.server.admin_listen.to_string()));
    for (std::size_t i = 0; i < c.auth.clients.size(); ++i)
        for (std::size_t j = 0; j < c.auth.clients[i].senders.size(); ++j) {
            const std::string& sender = c.auth.clients[i].senders[j];
            const auto colon = sender.find(':');
            const bool known =
                colon == std::string::npos
                    ? managed.count(sender) > 0
                    : std::any_of(c.chains.begin(), c.chains.end(), [&](const ChainConfig& chain) {
                          return chain.name == sender.substr(0, colon) &&
                                 std::any_of(chain.accounts.begin(), chain.accounts.end(),
                                             [&](const AccountConfig& a) {
                                                 return a.address == sender.substr(colon + 1);
                                             });
                      });
            if (!known)
                r.fail(root["auth"]["clients"][i]["senders"][j],
                       fmt::format("auth.clients[{}].senders[{}]", i, j),
                       fmt::format("{} is not a managed sender of {} (chains[].accounts)", sender,
                                   colon == std::string::npos ? "any chain" : "that chain"));
        }
}

}  // namespace gateway::config::detail
