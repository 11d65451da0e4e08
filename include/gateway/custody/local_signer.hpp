#pragma once
// A signer holding one private key in the gateway's own memory, loaded at start-up from a hex
// file, an environment variable or a Web3 Secret Storage (keystore v3) file.

#include "gateway/config/config.hpp"
#include "gateway/custody/signer.hpp"

#include <memory>
#include <string>

namespace gateway::custody {

/// Where a local key comes from.
struct KeySource {
    enum class Kind {
        hex_file,  ///< `path` holds the key as hex: "0x" optional, surrounding whitespace ignored
        env,       ///< the variable `variable` holds the key as hex, the same way
        keystore,  ///< `path` is a keystore v3 JSON file; `variable` holds its passphrase
    };
    Kind kind = Kind::hex_file;
    std::string path;
    std::string variable;
    /// Reads environment variables; empty: the process environment (getenv).
    config::EnvLookup env;

    static KeySource hex_file(std::string path) {
        return KeySource{.kind = Kind::hex_file, .path = std::move(path)};
    }
    static KeySource environment(std::string variable) {
        return KeySource{.kind = Kind::env, .variable = std::move(variable)};
    }
    static KeySource keystore(std::string path, std::string passphrase_variable) {
        return KeySource{.kind = Kind::keystore,
                         .path = std::move(path),
                         .variable = std::move(passphrase_variable)};
    }
};

/// Loads the key and returns a signer for its one address. Start-up only: throws
/// std::runtime_error naming the file or variable (never the key or the passphrase) when the
/// file is missing or unreadable, the variable unset, the hex not a valid secp256k1 key, the
/// keystore malformed or using an unsupported kdf (scrypt and pbkdf2 with hmac-sha256 are
/// supported) or cipher (aes-128-ctr), or its MAC does not match ("MAC mismatch: wrong
/// passphrase or damaged keystore"). A keystore's scrypt derivation may take a second and up to
/// 256 MiB (n=262144, r=8).
///
/// The returned signer signs synchronously inside sign() (microseconds) and refuses any `from`
/// other than its address. Copies of the key made while loading are wiped (OPENSSL_cleanse).
std::unique_ptr<Signer> make_local_signer(std::string id, KeySource source);

}  // namespace gateway::custody
