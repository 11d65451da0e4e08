#pragma once
// Child processes for tests: the gateway binary, anvil, cast. A child dies with the test process,
// so a failed test leaves nothing running.

#include <sys/types.h>
#include <chrono>
#include <optional>
#include <regex>
#include <string>
#include <vector>

namespace gateway::test {

using namespace std::chrono_literals;

/// A fresh, empty directory under $TMPDIR (or /tmp), named after `prefix`.
std::string make_temp_dir(const std::string& prefix);

/// Writes `text` to `path` (replacing it).
void write_file(const std::string& path, const std::string& text);
std::string read_file(const std::string& path);

class Process {
public:
    /// Starts argv[0] (a path) with stdout and stderr appended to `log_path`.
    Process(std::vector<std::string> argv, std::string log_path);
    ~Process();
    Process(const Process&) = delete;
    Process& operator=(const Process&) = delete;

    pid_t pid() const { return pid_; }
    bool running();
    void signal(int signo);
    /// Waits for the exit; the exit code, 128 + signal when killed, nullopt on timeout.
    std::optional<int> wait(std::chrono::milliseconds timeout);
    /// Everything the process wrote so far.
    std::string output() const;
    /// Waits until the output matches `pattern`; the first capture group (or the whole match).
    std::optional<std::string> wait_for_output(const std::regex& pattern,
                                               std::chrono::milliseconds timeout);

private:
    pid_t pid_ = -1;
    std::string log_path_;
    std::optional<int> exit_code_;
};

struct CommandResult {
    int exit_code = -1;  ///< -1 when it timed out (and was killed)
    std::string out;
    std::string err;
};

/// Runs a command to completion and captures its output.
CommandResult run_command(const std::vector<std::string>& argv,
                          std::chrono::milliseconds timeout = 60s);

}  // namespace gateway::test
