#pragma once
// A throwaway PostgreSQL server for tests, from Debian's postgresql-15: initdb in a temporary
// folder and pg_ctl on a free loopback port, run as the `postgres` user when the tests run as root
// (the server refuses root). Started and stopped by the test itself, never a system service.

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace gateway::test {

class PostgresServer {
public:
    /// What a commit waits for.
    enum class Durability {
        /// fsync off (the default, for tests): they kill the server, not the machine.
        tests,
        /// PostgreSQL's defaults, fsync, synchronous_commit and full_page_writes on: a commit
        /// returns once its WAL is on disk. For benchmarks, whose figures must include it.
        durable,
    };

    /// initdb and start; throws with the server's log when it cannot.
    explicit PostgresServer(Durability durability = Durability::tests);
    /// Stops it (immediately) and removes its folder.
    ~PostgresServer();
    PostgresServer(const PostgresServer&) = delete;
    PostgresServer& operator=(const PostgresServer&) = delete;

    /// postgresql://postgres@127.0.0.1:<port>/<database> (trust authentication, loopback only).
    std::string url(const std::string& database = "postgres") const;
    /// A new database's URL; `name` is letters, digits and '_'. The same name again: the same
    /// database (created once).
    std::string database(const std::string& name);
    std::uint16_t port() const { return port_; }
    /// The postmaster's process id (its pid file), or -1 when it is not running: the server's
    /// other processes are its children.
    int pid() const;
    /// The folder of its data (and its log, server.log, beside it).
    const std::string& dir() const { return dir_; }

    /// `pg_ctl stop -m immediate`: the server dies at once, as on a crash (committed work stays).
    void kill();
    /// Starts it again on the same port and data.
    void start();
    /// Whether Debian's postgresql-15 is installed (tests say why they cannot run otherwise).
    static bool available();

private:
    void pg_ctl(const std::vector<std::string>& args, std::chrono::seconds timeout);
    std::string dir_;
    Durability durability_;
    std::uint16_t port_ = 0;
    bool running_ = false;
};

/// A suite's throwaway server: started once for the suite (each test runs in a process of its
/// own under ctest, so once a test), stopped after it.
class PostgresSuite : public ::testing::Test {
protected:
    static void SetUpTestSuite() { server = std::make_unique<PostgresServer>(); }
    static void TearDownTestSuite() { server.reset(); }
    static inline std::unique_ptr<PostgresServer> server;
};

}  // namespace gateway::test
