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

}  // namespace gateway::custody
