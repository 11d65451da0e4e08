// tcp-forward: exposes a local TCP port as another one, so that one anvil node can stand for
// several RPC endpoints (scripts/devnet.sh). Stop one to watch the gateway fail over.
//   tcp-forward LISTEN_PORT TARGET_PORT

#include "support/tcp_forwarder.hpp"

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <string>

int main(int argc, char** argv) {
    if (argc != 3) {
        std::fprintf(stderr, "usage: tcp-forward LISTEN_PORT TARGET_PORT\n");
        return 2;
    }
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, nullptr);  // before the forwarder's thread starts
    try {
        gateway::test::TcpForwarder forwarder(static_cast<std::uint16_t>(std::stoi(argv[2])),
                                              static_cast<std::uint16_t>(std::stoi(argv[1])));
        std::printf("tcp-forward: 127.0.0.1:%u -> 127.0.0.1:%s\n", forwarder.port(), argv[2]);
        std::fflush(stdout);
        int signo = 0;
        sigwait(&set, &signo);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "tcp-forward: %s\n", e.what());
        return 1;
    }
    return 0;
}
