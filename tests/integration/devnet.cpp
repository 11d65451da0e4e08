#include "integration/devnet.hpp"

#include "support/http_test_client.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <stdexcept>
#include <thread>

namespace gateway::test {

std::string tool_path(const std::string& name) {
    std::string path = std::string(GATEWAY_TOOLS_BIN) + "/" + name;
    if (!std::filesystem::exists(path))
        throw std::runtime_error(
            path +
            " is missing: run scripts/install-deps.sh (it installs the pinned anvil and cast)");
    return path;
}

std::string gateway_binary() {
    return GATEWAY_BINARY;
}

std::string cast(const std::vector<std::string>& args) {
    std::vector<std::string> argv{tool_path("cast")};
    argv.insert(argv.end(), args.begin(), args.end());
    CommandResult r = run_command(argv, 60s);
    std::string cmd;
    for (auto& a : args) cmd += " " + a;
    EXPECT_EQ(r.exit_code, 0) << "cast" << cmd << "\nstderr: " << r.err;
    std::string out = r.out;
    while (!out.empty() && (out.back() == '\n' || out.back() == '\r' || out.back() == ' '))
        out.pop_back();
    return out;
}

Anvil::Anvil(const std::string& dir, std::uint64_t chain_id,
             const std::vector<std::string>& extra_args) {
    const std::string log =
        dir + "/anvil-" + std::to_string(chain_id) + "-" + std::to_string(std::rand()) + ".log";
    std::vector<std::string> argv{
        tool_path("anvil"),      "--host", "127.0.0.1", "--port", "0", "--chain-id",
        std::to_string(chain_id)};
    argv.insert(argv.end(), extra_args.begin(), extra_args.end());
    process_ = std::make_unique<Process>(argv, log);
    auto port = process_->wait_for_output(std::regex("Listening on 127\\.0\\.0\\.1:(\\d+)"), 30s);
    if (!port) throw std::runtime_error("anvil did not start:\n" + process_->output());
    port_ = static_cast<std::uint16_t>(std::stoi(*port));
}

GatewayProcess::GatewayProcess(const std::string& dir, const std::string& chains_yaml,
                               const std::string& server_yaml, const std::string& store_path,
                               const std::string& top_yaml, const std::string& log_level) {
    // Each gateway of a test gets its own files, so that one's log is never read for another's.
    static std::atomic<int> count{0};
    const std::string name = "gateway-" + std::to_string(++count);
    const std::string config = dir + "/" + name + ".yaml";
    config_ = config;
    write_file(config,
               "server:\n"
               "  listen: 127.0.0.1:0\n"
               "  admin_listen: 127.0.0.1:0\n" +
                   server_yaml +
                   "log:\n"
                   "  level: " +
                   log_level +
                   "\n"
                   "store:\n" +
                   (store_path.starts_with("postgresql://")
                        ? "  backend: postgres\n  url: " + store_path + "\n"
                        : "  path: " +
                              (store_path.empty() ? dir + "/data/gateway.db" : store_path) + "\n") +
                   top_yaml + "chains:\n" + chains_yaml);
    process_ = std::make_unique<Process>(
        std::vector<std::string>{gateway_binary(), "--config", config}, dir + "/" + name + ".log");
    auto rpc = process_->wait_for_output(
        std::regex("rpc listener: listening on 127\\.0\\.0\\.1:(\\d+)"), 30s);
    auto admin = process_->wait_for_output(
        std::regex("admin listener: listening on 127\\.0\\.0\\.1:(\\d+)"), 30s);
    if (!rpc || !admin)
        throw std::runtime_error("the gateway did not start:\n" + process_->output());
    port_ = static_cast<std::uint16_t>(std::stoi(*rpc));
    admin_port_ = static_cast<std::uint16_t>(std::stoi(*admin));
}

bool GatewayProcess::wait_ready(std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
        try {
            if (http_get(admin_port_, "/readyz?require=upstreams").status == 200) return true;
        } catch (const std::exception&) {
        }
        std::this_thread::sleep_for(20ms);
    }
    return false;
}

bool wait_until(const std::function<bool()>& done, std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
        if (done()) return true;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return done();
}

void DevnetTest::start_devnet(const std::string& prefix,
                              const std::vector<std::string>& anvil_args) {
    dir = make_temp_dir(prefix);
    anvil = std::make_unique<Anvil>(dir, 31337, anvil_args);
}

void DevnetTest::run_gateway(std::unique_ptr<GatewayProcess> next) {
    if (gw) earlier_logs_ += "--- earlier gateway log ---\n" + gw->process().output() + "\n";
    gw = std::move(next);
}

void DevnetTest::TearDown() {
    if (!HasFailure()) return;
    std::cerr << earlier_logs_;
    if (gw) std::cerr << "--- gateway log ---\n" << gw->process().output() << "\n";
}

}  // namespace gateway::test
