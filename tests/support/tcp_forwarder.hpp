#pragma once
// A fault-injecting TCP forwarder: one upstream node exposed as another endpoint, which a test can
// slow down, break, black-hole or take away entirely. Runs on its own thread.

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

namespace gateway::test {

class TcpForwarder {
public:
    enum class Mode {
        forward,    ///< pass bytes both ways
        reset,      ///< accept new connections and reset them at once
        drop,       ///< accept new connections and close them at once (no answer, no reset)
        blackhole,  ///< accept new connections, read what comes, never answer
    };

    /// Listens on 127.0.0.1:`listen_port` (0: any free port) and forwards to
    /// 127.0.0.1:`target_port`.
    explicit TcpForwarder(std::uint16_t target_port, std::uint16_t listen_port = 0);
    ~TcpForwarder();
    TcpForwarder(const TcpForwarder&) = delete;
    TcpForwarder& operator=(const TcpForwarder&) = delete;

    std::uint16_t port() const;
    std::string url() const { return "http://127.0.0.1:" + std::to_string(port()); }

    /// Applies to connections accepted from now on (a black hole also stops forwarding on open
    /// ones).
    void set_mode(Mode mode);
    /// Holds every chunk from the client this long before passing it on.
    void set_delay(std::chrono::milliseconds delay);
    /// The endpoint goes away, as if its process died: the listening socket and every open
    /// connection are closed; new connections are refused.
    void stop();
    /// Listens again on the same port.
    void start();
    /// Resets every open connection; new ones are still accepted.
    void break_connections();
    /// Connections accepted since construction.
    std::size_t accepted() const;

private:
    struct Impl;
    std::shared_ptr<Impl> impl_;
};

}  // namespace gateway::test
