#pragma once
// The whole gateway, wired from a configuration. Every component is built in app.cpp, so the
// architecture can be read in one place.

#include "gateway/config/config.hpp"
#include "gateway/util/clock.hpp"

#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace gateway {

class Gateway {
public:
    /// Builds every component and binds both listeners. Throws on start-up failures (a port in
    /// use, an unusable store, a bad upstream URL) with a message for people. `clock` (which
    /// must outlive the gateway) times the gateway's own decisions: the pool's breakers, rests
    /// and scores, the transaction manager's and the managed senders' waits, the journal's
    /// books; a test hands in a manual one. Timers and deadlines of real I/O stay on the steady
    /// clock.
    explicit Gateway(const config::Config& config,
                     const util::Clock& clock = util::SteadyClock::instance());
    ~Gateway();
    Gateway(const Gateway&) = delete;
    Gateway& operator=(const Gateway&) = delete;

    /// The bound addresses (real ports when 0 was configured).
    config::Endpoint rpc_endpoint() const;
    config::Endpoint admin_endpoint() const;

    /// Serves on server.threads threads until shut down, then returns 0 (1 when it stopped
    /// because another gateway took its shared journal over). With `handle_signals`,
    /// SIGTERM and SIGINT start the shutdown and a second one forces it; SIGHUP reloads.
    int run(bool handle_signals = true);

    /// Starts the graceful shutdown: /readyz turns 503 at once; after server.drain_delay_ms
    /// (serving as before meanwhile), stop accepting, let in-flight requests finish (at most
    /// server.shutdown_grace_ms), stop the probes, close the admin listener. Thread-safe.
    void shutdown();

    /// Where a reload (SIGHUP with run(true), POST /admin/reload) reads the configuration again
    /// (main: the file it started from, with the process's environment). Without it, a reload
    /// is refused. A reload applies what can change while serving: chains' upstreams, methods
    /// and policies, API keys and their clients' limits, the admin token, the log level; calls
    /// in flight finish as they began. A configuration that does not load, or cannot be
    /// applied, is refused whole and the running one kept. Both run on the first thread's loop,
    /// one at a time.
    void set_config_source(std::function<config::Config()> load);

    struct ReloadOutcome {
        bool ok = false;
        bool no_source = false;            ///< no config source was set: nothing to read
        std::string error;                 ///< why it was refused: file:line:col: key: message
        std::vector<std::string> applied;  ///< changed keys now in use
        std::vector<std::string> restart;  ///< changed keys that wait for a restart
    };

    /// False when run() returned with work abandoned (grace period over, or a forced stop): the
    /// process should then exit without destroying the Gateway, whose coroutines are mid-flight.
    bool clean_exit() const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace gateway
