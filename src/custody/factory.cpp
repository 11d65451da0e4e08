#include "gateway/custody/factory.hpp"

#include "gateway/custody/custody_stub.hpp"
#include "gateway/custody/local_signer.hpp"
#include "gateway/custody/remote_signer.hpp"
#include "key.hpp"

#include "gateway/eth/hex.hpp"

#include <algorithm>
#include <cstdlib>
#include <set>
#include <stdexcept>

namespace gateway::custody {

namespace {

[[noreturn]] void spec_error(const SignerSpec& spec, const std::string& message) {
    throw std::runtime_error("signer " + (spec.id.empty() ? std::string("(no id)") : spec.id) +
                             ": " + message);
}

std::optional<std::string> read_env(const config::EnvLookup& env, const std::string& name) {
    if (env) return env(name);
    const char* value = std::getenv(name.c_str());
    if (value == nullptr) return std::nullopt;
    return std::string(value);
}

/// The fields a type does not use must be empty: a key_file on a remote signer is a mistake
/// someone should hear about, not a setting silently ignored.
void only(const SignerSpec& spec, const std::set<std::string>& allowed) {
    const std::pair<const char*, bool> fields[] = {
        {"key_file", !spec.key_file.empty()},
        {"key_env", !spec.key_env.empty()},
        {"keystore", !spec.keystore.empty()},
        {"passphrase_env", !spec.passphrase_env.empty()},
        {"url", !spec.url.empty()},
        {"addresses", !spec.addresses.empty()},
        {"stub_keys_env", !spec.stub_keys_env.empty()},
    };
    for (const auto& [name, set] : fields)
        if (set && !allowed.contains(name))
            spec_error(spec, std::string(name) + " does not apply to a " + spec.type + " signer");
}

std::unique_ptr<Signer> make_local(const SignerSpec& spec, const config::EnvLookup& env) {
    only(spec, {"key_file", "key_env", "keystore", "passphrase_env"});
    const int sources = !spec.key_file.empty() + !spec.key_env.empty() + !spec.keystore.empty();
    if (sources != 1)
        spec_error(spec, "a local signer needs exactly one of key_file, key_env and keystore");
    KeySource source;
    if (!spec.key_file.empty()) {
        if (!spec.passphrase_env.empty())
            spec_error(spec, "passphrase_env applies only with keystore");
        source = KeySource::hex_file(spec.key_file);
    } else if (!spec.key_env.empty()) {
        if (!spec.passphrase_env.empty())
            spec_error(spec, "passphrase_env applies only with keystore");
        source = KeySource::environment(spec.key_env);
    } else {
        if (spec.passphrase_env.empty())
            spec_error(spec,
                       "a keystore needs passphrase_env, the variable holding its passphrase");
        source = KeySource::keystore(spec.keystore, spec.passphrase_env);
    }
    source.env = env;
    return make_local_signer(spec.id, std::move(source));
}

std::unique_ptr<Signer> make_remote(const SignerSpec& spec) {
    only(spec, {"url", "addresses"});
    if (spec.url.empty()) spec_error(spec, "a remote signer needs a url");
    if (spec.addresses.empty()) spec_error(spec, "a remote signer needs addresses");
    std::vector<eth::Address> addresses;
    for (const std::string& text : spec.addresses) {
        const auto bytes = eth::from_hex(text);
        if (!bytes || bytes->size() != 20)
            spec_error(spec, "\"" + text + "\" is not an address (0x and 40 hex digits)");
        eth::Address a{};
        std::copy(bytes->begin(), bytes->end(), a.begin());
        if (std::find(addresses.begin(), addresses.end(), a) != addresses.end())
            spec_error(spec, "the address " + text + " is listed twice");
        addresses.push_back(a);
    }
    return make_remote_signer(spec.id, spec.url, std::move(addresses), spec.timeout);
}

std::unique_ptr<Signer> make_stub(const SignerSpec& spec, const config::EnvLookup& env) {
    only(spec, {"stub_keys_env"});
    if (spec.stub_keys_env.empty()) spec_error(spec, "a custody-stub signer needs stub_keys_env");
    std::vector<eth::Bytes> keys;
    // The keys are wiped however this ends.
    struct Wipe {
        std::vector<eth::Bytes>& keys;
        ~Wipe() {
            for (auto& k : keys) detail::wipe(k);
        }
    } wipe{keys};
    for (const std::string& name : spec.stub_keys_env) {
        std::optional<std::string> text = read_env(env, name);
        if (!text) spec_error(spec, "environment variable " + name + " is not set");
        std::optional<eth::Bytes> bytes = detail::parse_hex_secret(*text);
        detail::wipe(*text);
        if (!bytes || !detail::PrivateKey::from_bytes(*bytes)) {
            if (bytes) detail::wipe(*bytes);
            spec_error(spec, "environment variable " + name +
                                 ": not a secp256k1 private key (expected 64 hex digits, \"0x\" "
                                 "optional)");
        }
        keys.push_back(std::move(*bytes));
    }
    return std::make_unique<CustodyStub>(spec.id, keys);
}

}  // namespace

std::unique_ptr<Signer> make_signer(const SignerSpec& spec, const config::EnvLookup& env) {
    if (spec.id.empty()) spec_error(spec, "no id");
    if (spec.type == "local") return make_local(spec, env);
    if (spec.type == "remote") return make_remote(spec);
    if (spec.type == "custody-stub") return make_stub(spec, env);
    spec_error(spec, "unknown type \"" + spec.type + "\" (local, remote or custody-stub)");
}

std::vector<std::unique_ptr<Signer>> make_signers(const config::Config& config,
                                                  const config::EnvLookup& env) {
    std::vector<std::unique_ptr<Signer>> signers;
    for (const auto& spec : config.signers) signers.push_back(make_signer(spec, env));
    for (const auto& chain : config.chains)
        for (const auto& account : chain.accounts) {
            const auto it = std::find_if(signers.begin(), signers.end(),
                                         [&](const auto& s) { return s->id() == account.signer; });
            const auto addresses =
                it != signers.end() ? (*it)->addresses() : std::vector<eth::Address>{};
            const bool holds = std::any_of(addresses.begin(), addresses.end(), [&](const auto& a) {
                return eth::to_hex(a) == account.address;
            });
            if (!holds)
                throw std::runtime_error("chain " + chain.name + ": account " + account.address +
                                         " is not one signer '" + account.signer +
                                         "' can sign for");
        }
    return signers;
}

}  // namespace gateway::custody
