#pragma once
// Signers from their configuration: one plain struct per signer, turned into a Signer at
// start-up.

#include "gateway/config/config.hpp"
#include "gateway/custody/signer.hpp"

#include <chrono>
#include <memory>
#include <string>
#include <vector>

namespace gateway::custody {

/// One configured signer (config.hpp says which fields apply to which type).
using SignerSpec = config::SignerConfig;

/// Builds the signer. Start-up only: throws std::runtime_error naming the signer and what is
/// wrong (unknown type, missing or conflicting fields, an unloadable key, an unusable URL or
/// address), never a secret. `env` reads environment variables; empty: the process environment.
std::unique_ptr<Signer> make_signer(const SignerSpec& spec, const config::EnvLookup& env = {});

/// Every configured signer, in `config.signers` order, once each managed account is known to be
/// one its signer can sign for. Start-up and --check-config: throws std::runtime_error as
/// make_signer does, or naming the chain and the account no signer holds.
std::vector<std::unique_ptr<Signer>> make_signers(const config::Config& config,
                                                  const config::EnvLookup& env = {});

}  // namespace gateway::custody
