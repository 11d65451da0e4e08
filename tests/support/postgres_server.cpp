#include "support/postgres_server.hpp"

#include "support/process.hpp"

#include "gateway/store/pg_connection.hpp"

#include <fmt/format.h>

#include <netinet/in.h>
#include <pwd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <vector>

namespace gateway::test {

namespace {

constexpr const char* kBin = "/usr/lib/postgresql/15/bin";

// A loopback port free now: bound by the system, then released for the server to take.
std::uint16_t free_port() {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
        if (fd >= 0) ::close(fd);
        throw std::runtime_error("postgres: no free port");
    }
    ::close(fd);
    return ntohs(addr.sin_port);
}

// The command as the server's owner: through runuser when the tests run as root.
std::vector<std::string> as_owner(std::vector<std::string> argv) {
    if (::geteuid() != 0) return argv;
    argv.insert(argv.begin(), {"/usr/sbin/runuser", "-u", "postgres", "--"});
    return argv;
}

std::string read_all(const std::string& path) {
    std::ifstream in(path);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

}  // namespace

bool PostgresServer::available() {
    return std::filesystem::exists(std::string(kBin) + "/initdb") &&
           (::geteuid() != 0 || ::getpwnam("postgres") != nullptr);
}

PostgresServer::PostgresServer(Durability durability) : durability_(durability) {
    if (!available())
        throw std::runtime_error(
            "postgres: Debian's postgresql-15 is not installed (scripts/install-deps.sh)");
    dir_ = make_temp_dir("gateway-pg");
    if (::geteuid() == 0) {
        const passwd* pw = ::getpwnam("postgres");
        if (::chown(dir_.c_str(), pw->pw_uid, pw->pw_gid) != 0)
            throw std::runtime_error("postgres: cannot give " + dir_ + " to the postgres user");
    }
    const CommandResult init =
        run_command(as_owner({std::string(kBin) + "/initdb", "-D", dir_ + "/data", "-U", "postgres",
                              "-A", "trust", "-E", "UTF8", "--no-sync", "--no-instructions"}),
                    std::chrono::seconds(60));
    if (init.exit_code != 0)
        throw std::runtime_error("postgres: initdb failed:\n" + init.out + init.err);
    port_ = free_port();
    start();
}

PostgresServer::~PostgresServer() {
    try {
        if (running_) pg_ctl({"stop", "-m", "immediate"}, std::chrono::seconds(20));
    } catch (const std::exception&) {
    }
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
}

std::string PostgresServer::url(const std::string& database) const {
    return fmt::format("postgresql://postgres@127.0.0.1:{}/{}", port_, database);
}

std::string PostgresServer::database(const std::string& name) {
    store::pg::Connection admin(url(), std::chrono::seconds(10));
    try {
        admin.exec("CREATE DATABASE " + name);
    } catch (const store::pg::Error& e) {
        if (e.sqlstate() != "42P04") throw;  // duplicate_database: made before
    }
    return url(name);
}

void PostgresServer::pg_ctl(const std::vector<std::string>& args, std::chrono::seconds timeout) {
    std::vector<std::string> argv{std::string(kBin) + "/pg_ctl",  "-D", dir_ + "/data", "-w", "-t",
                                  std::to_string(timeout.count())};
    argv.insert(argv.end(), args.begin(), args.end());
    const CommandResult r = run_command(as_owner(argv), timeout + std::chrono::seconds(5));
    if (r.exit_code != 0)
        throw std::runtime_error(fmt::format("postgres: pg_ctl {} failed:\n{}{}\n{}", args[0],
                                             r.out, r.err, read_all(dir_ + "/server.log")));
}

void PostgresServer::kill() {
    pg_ctl({"stop", "-m", "immediate"}, std::chrono::seconds(20));
    running_ = false;
}

void PostgresServer::start() {
    // Loopback only, its socket in its own folder. For the tests, fsync off: they kill the
    // server, not the machine, and what a commit wrote is in the kernel's hands either way.
    pg_ctl({"start", "-l", dir_ + "/server.log", "-o",
            fmt::format("-p {} -c listen_addresses=127.0.0.1 -k {}{}", port_, dir_,
                        durability_ == Durability::tests ? " -c fsync=off" : "")},
           std::chrono::seconds(30));
    running_ = true;
}

int PostgresServer::pid() const {
    if (!running_) return -1;
    // The pid file's first line is the postmaster's id.
    const std::string text = read_all(dir_ + "/data/postmaster.pid");
    try {
        return std::stoi(text.substr(0, text.find('\n')));
    } catch (const std::exception&) {
        return -1;
    }
}

}  // namespace gateway::test
