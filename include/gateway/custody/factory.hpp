#pragma once
// Signers from their configuration: one plain struct per signer, turned into a Signer at
// start-up.

#include "gateway/config/config.hpp"
#include "gateway/custody/signer.hpp"

#include <boost/asio/any_io_executor.hpp>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

namespace gateway::custody {

/// One configured signer. Which fields apply depends on `type`:
///   local         exactly one of key_file, key_env, or keystore with passphrase_env
///   remote        url and addresses (the addresses it signs for); timeout
///   custody-stub  stub_keys_env: variables each holding one hex private key
struct SignerSpec {
    std::string id;
    std::string type;  ///< local | remote | custody-stub
    std::string key_file, key_env, keystore, passphrase_env, url;
    std::vector<std::string> addresses;  ///< 0x-prefixed, 20 bytes (remote)
    std::vector<std::string> stub_keys_env;
    std::chrono::milliseconds timeout{10'000};  ///< one remote signing request
};

/// Builds the signer. Start-up only: throws std::runtime_error naming the signer and what is
/// wrong (unknown type, missing or conflicting fields, an unloadable key, an unusable URL or
/// address), never a secret. `env` reads environment variables; empty: the process environment.
std::unique_ptr<Signer> make_signer(const SignerSpec& spec, boost::asio::any_io_executor executor,
                                    const config::EnvLookup& env = {});

}  // namespace gateway::custody
