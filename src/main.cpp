// chain-gateway: a JSON-RPC gateway for EVM chains. Everything is built in app.cpp.

#include "gateway/app.hpp"
#include "gateway/config/config.hpp"
#include "gateway/log/log.hpp"
#include "gateway/probe.hpp"
#include "gateway/store/migrate_store.hpp"
#include "gateway/store/pg_connection.hpp"

#include <spdlog/spdlog.h>

#include <csignal>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>

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
    "usage: chain-gateway --config FILE      run the gateway (without --config: the file\n"
    "                                         GATEWAY_CONFIG names)\n"
    "       chain-gateway --check-config FILE validate FILE and exit (0 valid, 1 invalid)\n"
    "       chain-gateway --probe [FILE|HOST:PORT] [--path /readyz]\n"
    "                                         GET the admin listener's /healthz (or the path) of\n"
    "                                         the gateway FILE configures, or at HOST:PORT: exit\n"
    "                                         0 on a 2xx answer within 3 s, 1 otherwise\n"
    "                                         (HEALTHCHECK, exec probes)\n"
    "       chain-gateway migrate-store --from SQLITE_FILE --to POSTGRES_URL\n"
    "                                         copy a SQLite journal into an empty PostgreSQL\n"
    "                                         journal (stop the gateway first): exit 0 when\n"
    "                                         every row was copied and checked, 1 otherwise\n"
    "       chain-gateway --version\n";

// `chain-gateway migrate-store --from FILE --to URL` (store/migrate_store.hpp). Progress and the
// summary go to stdout, a failure to stderr; the URL is only ever printed without its password.
int migrate_store(int argc, char** argv) {
    std::string from, to;
    for (int i = 2; i < argc; ++i) {
        const std::string arg = argv[i];
        if (arg == "--from" && i + 1 < argc) {
            from = argv[++i];
        } else if (arg == "--to" && i + 1 < argc) {
            to = argv[++i];
        } else {
            std::fprintf(stderr, "chain-gateway migrate-store: unexpected argument '%s'\n%s",
                         arg.c_str(), kUsage);
            return 2;
        }
    }
    if (from.empty() || to.empty()) {
        std::fprintf(stderr, "chain-gateway migrate-store: --from and --to are both needed\n%s",
                     kUsage);
        return 2;
    }
    const std::string where = gateway::store::pg::describe(to);
    std::printf("migrate-store: copying sqlite:%s into postgres:%s\n", from.c_str(), where.c_str());
    std::fflush(stdout);
    gateway::store::MigrationOptions options;
    // A line every 100000 rows of a table: a long move is seen to move.
    options.on_progress = [shown = std::string(), next = std::size_t{0}](std::string_view table,
                                                                         std::size_t rows) mutable {
        if (table != shown) {
            shown = table;
            next = 100'000;
        }
        if (rows < next) return;
        next = rows + 100'000;
        std::printf("migrate-store:   %.*s: %zu rows so far\n", static_cast<int>(table.size()),
                    table.data(), rows);
        std::fflush(stdout);
    };
    gateway::store::MigrationSummary s;
    try {
        s = gateway::store::migrate_store(from, to, options);
    } catch (const std::exception& e) {
        std::fprintf(stderr,
                     "chain-gateway migrate-store: failed: %s\nNothing was copied: the SQLite "
                     "journal is still the one to use.\n",
                     e.what());
        return 1;
    }
    if (s.sqlite_version_before < s.schema_version)
        std::printf(
            "migrate-store: the SQLite journal was at schema version %d; it was migrated "
            "to %d first, as a gateway of this build would have\n",
            s.sqlite_version_before, s.schema_version);
    std::printf("migrate-store: copied and checked (row counts and largest ids equal) in %.1f s:\n",
                s.seconds);
    for (const auto& t : s.tables) std::printf("  %-22s %zu rows\n", t.name.c_str(), t.rows);
    std::printf(
        "migrate-store: done. The journal now lives in %s. Point the gateway at it (store.backend: "
        "postgres, store.url: this database) and do not run a gateway against %s again: its "
        "changes would not reach PostgreSQL.\n",
        s.to.c_str(), from.c_str());
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc >= 2 && std::strcmp(argv[1], "migrate-store") == 0) return migrate_store(argc, argv);
    std::string config_path;
    bool check_only = false;
    bool probe_only = false;
    std::string probe_path = "/healthz";
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
        if (arg == "--probe") {
            // The file (or address) may be left to GATEWAY_CONFIG, as the image's HEALTHCHECK does.
            probe_only = true;
            if (i + 1 < argc && std::strncmp(argv[i + 1], "--", 2) != 0) config_path = argv[++i];
            continue;
        }
        if (arg == "--path" && i + 1 < argc && argv[i + 1][0] == '/') {
            probe_path = argv[++i];
            continue;
        }
        std::fprintf(stderr, "chain-gateway: unexpected argument '%s'\n%s", arg.c_str(), kUsage);
        return 2;
    }
    // Without --config: the file GATEWAY_CONFIG names (the container image sets it, so that its
    // command and its HEALTHCHECK read the same file).
    if (const char* from_env = std::getenv("GATEWAY_CONFIG");
        config_path.empty() && from_env && *from_env)
        config_path = from_env;
    if (config_path.empty()) {
        std::fputs(kUsage, stderr);
        return 2;
    }

    const auto run_probe = [&](const gateway::config::Endpoint& admin) {
        const gateway::ProbeResult r = gateway::probe(admin, probe_path, std::chrono::seconds(3));
        std::printf("%s: %s\n", r.healthy ? "healthy" : "unhealthy", r.said.c_str());
        return r.healthy ? 0 : 1;
    };
    if (probe_only && config_path.find('/') == std::string::npos) {
        // An address rather than a file: no config to read.
        try {
            return run_probe(gateway::config::parse_endpoint(config_path));
        } catch (const std::invalid_argument&) {
            // A file in the working directory.
        }
    }
    gateway::config::Config config;
    try {
        config = gateway::config::load_config_file(config_path);
    } catch (const gateway::config::ConfigError& e) {
        std::fprintf(stderr, "chain-gateway: invalid configuration: %s\n", e.what());
        return 1;
    }
    if (probe_only) return run_probe(config.server.admin_listen);
    if (check_only) {
        std::printf("%s: valid (%zu chain(s))\n", config_path.c_str(), config.chains.size());
        return 0;
    }

    // SIGHUP reloads once the gateway serves; until then (opening the journal, loading keys) it
    // is ignored rather than ending the process, as its default action would.
    std::signal(SIGHUP, SIG_IGN);
    gateway::log::init(config.log);
    std::unique_ptr<gateway::Gateway> gw;
    try {
        gw = std::make_unique<gateway::Gateway>(config);
    } catch (const std::exception& e) {
        spdlog::critical("cannot start: {}", e.what());
        spdlog::shutdown();
        return 1;
    }
    gw->set_config_source([config_path] { return gateway::config::load_config_file(config_path); });
    const int code = gw->run();
    spdlog::shutdown();
    if (!gw->clean_exit())
        std::_Exit(code);  // coroutines were abandoned mid-flight: do not unwind them
    return code;
}
