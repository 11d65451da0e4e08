#pragma once
// The real thing for integration tests: anvil nodes, the chain-gateway binary, cast.

#include "support/process.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace gateway::test {

/// Path of a pinned tool (anvil, cast) installed by scripts/install-deps.sh.
std::string tool_path(const std::string& name);

/// Polls `done` every 20 ms until it is true (true) or `timeout` has passed (false).
bool wait_until(const std::function<bool()>& done,
                std::chrono::milliseconds timeout = std::chrono::seconds(30));

/// Runs cast and returns its trimmed stdout; a failing cast fails the test (with its stderr).
std::string cast(const std::vector<std::string>& args);

/// An anvil node on a port of its own choosing.
class Anvil {
public:
    /// `extra_args` go to anvil as they are (e.g. {"--hardfork", "berlin"}).
    explicit Anvil(const std::string& dir, std::uint64_t chain_id = 31337,
                   const std::vector<std::string>& extra_args = {});
    std::uint16_t port() const { return port_; }
    std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
    Process& process() { return *process_; }

private:
    std::unique_ptr<Process> process_;
    std::uint16_t port_ = 0;
};

/// The chain-gateway binary, configured with `chains_yaml` (the list under `chains:`) and extra
/// lines for `server:`; it listens on ports of its own choosing. Its store is `store_path`, by
/// default `dir`/data/gateway.db (so a gateway started again on `dir` finds its journal), or the
/// PostgreSQL database `store_path` names when it is a postgresql:// URL.
/// `top_yaml` holds more top-level sections (e.g. `signers:`).
class GatewayProcess {
public:
    /// `log_level`: log.level (debug, for a test that asserts what the log never holds).
    GatewayProcess(const std::string& dir, const std::string& chains_yaml,
                   const std::string& server_yaml = "", const std::string& store_path = "",
                   const std::string& top_yaml = "", const std::string& log_level = "info");
    std::uint16_t port() const { return port_; }
    std::uint16_t admin_port() const { return admin_port_; }
    std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
    Process& process() { return *process_; }
    /// Its configuration file (a reload's test rewrites it).
    const std::string& config_path() const { return config_; }
    /// Waits until an upstream of every chain answers (/readyz?require=upstreams answers 200).
    bool wait_ready(std::chrono::milliseconds timeout = 10s);

private:
    std::unique_ptr<Process> process_;
    std::string config_;
    std::uint16_t port_ = 0;
    std::uint16_t admin_port_ = 0;
};

/// The path of the chain-gateway binary under test.
std::string gateway_binary();

/// What the integration suites share: a temporary folder, an anvil in it, and the gateway under
/// test, started again as a test needs (a restart, a crash). A failed test prints every log of
/// its gateways, the earlier ones first.
class DevnetTest : public ::testing::Test {
protected:
    /// A new folder (named after `prefix`) with an anvil of chain id 31337 in it.
    void start_devnet(const std::string& prefix, const std::vector<std::string>& anvil_args = {});
    /// Runs `next` as the gateway under test; the one it replaces keeps its log for the report.
    void run_gateway(std::unique_ptr<GatewayProcess> next);
    void TearDown() override;

    std::string dir;
    std::unique_ptr<Anvil> anvil;
    std::unique_ptr<GatewayProcess> gw;

private:
    std::string earlier_logs_;
};

}  // namespace gateway::test
