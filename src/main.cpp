// chain-gateway: a JSON-RPC gateway for EVM chains. Everything is built in app.cpp.

#include "gateway/app.hpp"
#include "gateway/config/config.hpp"
#include "gateway/log/log.hpp"

#include <spdlog/spdlog.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

#ifdef GATEWAY_JEMALLOC
// jemalloc's options, read when it starts: a thread of its own hands back the pages no
// allocation has used for about a second (dirty_decay_ms), so that what a flood of large request
// bodies took goes back soon after it ends, without a purge on a connection's thread (which
// anyone could set off with one large body, and which stalls that loop while it runs).
extern "C" {
const char* malloc_conf = "background_thread:true,dirty_decay_ms:1000";
}
#endif

namespace {

constexpr const char* kUsage =
    "usage: chain-gateway --config FILE      run the gateway\n"
    "       chain-gateway --check-config FILE validate FILE and exit (0 valid, 1 invalid)\n"
    "       chain-gateway --version\n";

}  // namespace

int main(int argc, char** argv) {
    std::string config_path;
    bool check_only = false;
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        if (arg == "--version") {
            std::printf("chain-gateway %s\n", GATEWAY_VERSION);
            return 0;
        }
        if (arg == "--help" || arg == "-h") {
            std::fputs(kUsage, stdout);
            return 0;
        }
        if ((arg == "--config" || arg == "--check-config") && i + 1 < argc) {
            check_only = arg == "--check-config";
            config_path = argv[++i];
            continue;
        }
        std::fprintf(stderr, "chain-gateway: unexpected argument '%s'\n%s", arg.c_str(), kUsage);
        return 2;
    }
    if (config_path.empty()) {
        std::fputs(kUsage, stderr);
        return 2;
    }

    gateway::config::Config config;
    try {
        config = gateway::config::load_config_file(config_path);
    } catch (const gateway::config::ConfigError& e) {
        std::fprintf(stderr, "chain-gateway: invalid configuration: %s\n", e.what());
        return 1;
    }
    if (check_only) {
        std::printf("%s: valid (%zu chain(s))\n", config_path.c_str(), config.chains.size());
        return 0;
    }

    gateway::log::init(config.log);
    std::unique_ptr<gateway::Gateway> gw;
    try {
        gw = std::make_unique<gateway::Gateway>(config);
    } catch (const std::exception& e) {
        spdlog::critical("cannot start: {}", e.what());
        spdlog::shutdown();
        return 1;
    }
    const int code = gw->run();
    spdlog::shutdown();
    if (!gw->clean_exit())
        std::_Exit(code);  // coroutines were abandoned mid-flight: do not unwind them
    return code;
}
