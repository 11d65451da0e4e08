// bench_trivial_node: the least a JSON-RPC node can be, for measuring what a proxy costs. One
// thread, epoll, no JSON or HTTP library: a request's body is scanned for its id, method and first
// parameter, and answered at once with a fixed result under that id (batches element by element).
// Next to it, a proxy's own work shows, where bench_fake_node (Beast and Boost.JSON) costs about
// as much as the proxy in front of it.
//
// It answers what the gateway's probes and head watcher ask (eth_chainId 31337, eth_syncing,
// eth_blockNumber, blocks by number, tag or hash of a fixed chain whose head is 0x1000), eth_call
// with an answer of --call-bytes bytes, null receipts and transactions, and a balance
// (0xde0b6b3a7640000) for any other method. HTTP/1.1 with Content-Length, keep-alive, pipelining.
//
//   bench_trivial_node [--port N] [--call-bytes N]
// Prints "listening on <port>" once it accepts connections.

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>
#include <unordered_map>

namespace {

using std::string_view;

constexpr std::uint64_t kHead = 0x1000;
constexpr std::uint64_t kHashBase = 0xb10c000000000000ULL;
std::string g_call_answer;

std::string hex(std::uint64_t n, int width = 0) {
    char buf[32];
    auto [end, ec] = std::to_chars(buf, buf + sizeof buf, n, 16);
    std::string digits(buf, end);
    if (width > static_cast<int>(digits.size()))
        digits.insert(0, static_cast<std::size_t>(width) - digits.size(), '0');
    return "0x" + digits;
}

std::string block_hash(std::uint64_t n) {
    return hex(kHashBase + n, 64);
}

std::string block_json(std::uint64_t n) {
    return R"({"number":")" + hex(n) + R"(","hash":")" + block_hash(n) + R"(","parentHash":")" +
           block_hash(n == 0 ? 0 : n - 1) + R"(","timestamp":")" + hex(1'700'000'000 + n * 12) +
           R"(","baseFeePerGas":"0x3b9aca00","gasLimit":"0x1c9c380","gasUsed":"0x0","transactions":[]})";
}

std::size_t skip_ws(string_view s, std::size_t i) {
    while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
    return i;
}

// `i` at a string's opening quote: the index after its closing one.
std::size_t end_of_string(string_view s, std::size_t i) {
    for (++i; i < s.size(); ++i) {
        if (s[i] == '\\')
            ++i;
        else if (s[i] == '"')
            return i + 1;
    }
    return s.size();
}

// `i` at a value's first character: the index after the value.
std::size_t end_of_value(string_view s, std::size_t i) {
    if (i >= s.size()) return i;
    if (s[i] == '"') return end_of_string(s, i);
    if (s[i] == '{' || s[i] == '[') {
        int depth = 0;
        for (; i < s.size(); ++i) {
            if (s[i] == '"') {
                i = end_of_string(s, i) - 1;
            } else if (s[i] == '{' || s[i] == '[') {
                ++depth;
            } else if (s[i] == '}' || s[i] == ']') {
                if (--depth == 0) return i + 1;
            }
        }
        return s.size();
    }
    while (i < s.size() && s[i] != ',' && s[i] != '}' && s[i] != ']' &&
           !std::isspace(static_cast<unsigned char>(s[i])))
        ++i;
    return i;
}

struct Call {
    string_view id = "null";
    string_view method;
    string_view first;  // the first parameter, when it is a string
};

// The members of one call object that the answer needs.
Call read_call(string_view obj) {
    Call c;
    std::size_t i = skip_ws(obj, 0);
    if (i >= obj.size() || obj[i] != '{') return c;
    for (i = skip_ws(obj, i + 1); i < obj.size() && obj[i] == '"';) {
        const std::size_t key_end = end_of_string(obj, i);
        const string_view key = obj.substr(i + 1, key_end - i - 2);
        i = skip_ws(obj, key_end);
        if (i >= obj.size() || obj[i] != ':') break;
        i = skip_ws(obj, i + 1);
        const std::size_t value_end = end_of_value(obj, i);
        const string_view value = obj.substr(i, value_end - i);
        if (key == "id") {
            c.id = value;
        } else if (key == "method" && value.size() >= 2 && value.front() == '"') {
            c.method = value.substr(1, value.size() - 2);
        } else if (key == "params" && !value.empty() && value.front() == '[') {
            const std::size_t j = skip_ws(value, 1);
            if (j < value.size() && value[j] == '"')
                c.first = value.substr(j + 1, end_of_string(value, j) - j - 2);
        }
        i = skip_ws(obj, value_end);
        if (i < obj.size() && obj[i] == ',') i = skip_ws(obj, i + 1);
    }
    return c;
}

std::uint64_t parse_hex(string_view s) {
    if (s.size() > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) s.remove_prefix(2);
    std::uint64_t n = 0;
    std::from_chars(s.data(), s.data() + s.size(), n, 16);
    return n;
}

std::string block_by_number(string_view tag) {
    std::uint64_t n = kHead;
    if (tag == "safe")
        n = kHead - 32;
    else if (tag == "finalized")
        n = kHead - 64;
    else if (tag == "earliest")
        n = 0;
    else if (tag != "latest" && tag != "pending" && !tag.empty())
        n = parse_hex(tag);
    return n <= kHead ? block_json(n) : "null";
}

std::string block_by_hash(string_view hash) {
    const std::uint64_t n = parse_hex(hash.size() > 18 ? hash.substr(hash.size() - 16) : hash);
    const std::uint64_t number = n - kHashBase;
    return n >= kHashBase && number <= kHead && block_hash(number) == hash ? block_json(number)
                                                                           : "null";
}

std::string result_of(const Call& c) {
    const string_view m = c.method;
    if (m == "eth_chainId") return "\"0x7a69\"";
    if (m == "net_version") return "\"31337\"";
    if (m == "eth_syncing") return "false";
    if (m == "eth_blockNumber") return "\"" + hex(kHead) + "\"";
    if (m == "eth_getBlockByNumber") return block_by_number(c.first);
    if (m == "eth_getBlockByHash") return block_by_hash(c.first);
    if (m == "eth_call") return g_call_answer;
    if (m == "eth_getTransactionReceipt" || m == "eth_getTransactionByHash") return "null";
    if (m == "eth_getTransactionCount") return "\"0x0\"";
    if (m == "eth_gasPrice" || m == "eth_maxPriorityFeePerGas") return "\"0x3b9aca00\"";
    return "\"0xde0b6b3a7640000\"";
}

void answer_call(string_view obj, std::string& out) {
    const Call c = read_call(obj);
    out += R"({"jsonrpc":"2.0","id":)";
    out += c.id;
    out += R"(,"result":)";
    out += result_of(c);
    out += '}';
}

// A request body's answer: one call's, or a batch's element by element.
std::string answer(string_view body) {
    std::string out;
    std::size_t i = skip_ws(body, 0);
    if (i < body.size() && body[i] == '[') {
        out += '[';
        for (i = skip_ws(body, i + 1); i < body.size() && body[i] != ']';) {
            const std::size_t end = end_of_value(body, i);
            if (out.size() > 1) out += ',';
            answer_call(body.substr(i, end - i), out);
            i = skip_ws(body, end);
            if (i < body.size() && body[i] == ',') i = skip_ws(body, i + 1);
        }
        out += ']';
        return out;
    }
    answer_call(body, out);
    return out;
}

// The Content-Length of a request head (`head` ends before its blank line); 0 without one.
std::size_t content_length(string_view head) {
    constexpr string_view kName = "content-length:";
    for (std::size_t line = head.find("\r\n"); line != string_view::npos;
         line = head.find("\r\n", line + 2)) {
        const string_view rest = head.substr(line + 2);
        if (rest.size() < kName.size()) continue;
        bool same = true;
        for (std::size_t k = 0; k < kName.size() && same; ++k)
            same = std::tolower(static_cast<unsigned char>(rest[k])) == kName[k];
        if (!same) continue;
        std::size_t n = 0;
        const std::size_t v = skip_ws(rest, kName.size());
        std::from_chars(rest.data() + v, rest.data() + rest.size(), n);
        return n;
    }
    return 0;
}

struct Connection {
    std::string in, out;
    bool watching_out = false;  // EPOLLOUT asked for (an answer waits for room)
};

// Answers every whole request in `c.in`.
void serve(Connection& c) {
    for (;;) {
        const std::size_t blank = c.in.find("\r\n\r\n");
        if (blank == std::string::npos) return;
        const std::size_t length = content_length(string_view(c.in).substr(0, blank));
        if (c.in.size() < blank + 4 + length) return;
        const std::string body = answer(string_view(c.in).substr(blank + 4, length));
        c.out += "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: ";
        c.out += std::to_string(body.size());
        c.out += "\r\n\r\n";
        c.out += body;
        c.in.erase(0, blank + 4 + length);
    }
}

// Writes what it can; false when the connection is gone.
bool flush(int fd, Connection& c) {
    while (!c.out.empty()) {
        const ssize_t n = ::send(fd, c.out.data(), c.out.size(), MSG_NOSIGNAL);
        if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK;
        c.out.erase(0, static_cast<std::size_t>(n));
    }
    return true;
}

}  // namespace

int main(int argc, char** argv) {
    unsigned short port = 0;
    std::size_t call_bytes = 32;
    for (int i = 1; i + 1 < argc; i += 2) {
        const string_view a = argv[i];
        if (a == "--port")
            port = static_cast<unsigned short>(std::stoul(argv[i + 1]));
        else if (a == "--call-bytes")
            call_bytes = std::stoul(argv[i + 1]);
        else {
            std::fprintf(stderr, "usage: bench_trivial_node [--port N] [--call-bytes N]\n");
            return 2;
        }
    }
    g_call_answer = "\"0x" + std::string(2 * call_bytes, 'a') + "\"";

    const int listener = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    const int one = 1;
    ::setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(port);
    if (::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        ::listen(listener, 4096) != 0) {
        std::perror("bench_trivial_node: bind/listen");
        return 1;
    }
    socklen_t len = sizeof addr;
    ::getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len);
    std::printf("listening on %u\n", static_cast<unsigned>(ntohs(addr.sin_port)));
    std::fflush(stdout);

    const int ep = ::epoll_create1(0);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = listener;
    ::epoll_ctl(ep, EPOLL_CTL_ADD, listener, &ev);
    std::unordered_map<int, Connection> connections;
    epoll_event events[256];
    char buf[64 * 1024];
    for (;;) {
        const int n = ::epoll_wait(ep, events, 256, -1);
        for (int e = 0; e < n; ++e) {
            const int fd = events[e].data.fd;
            if (fd == listener) {
                for (;;) {
                    const int c = ::accept4(listener, nullptr, nullptr, SOCK_NONBLOCK);
                    if (c < 0) break;
                    ::setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    epoll_event cev{};
                    cev.events = EPOLLIN;
                    cev.data.fd = c;
                    ::epoll_ctl(ep, EPOLL_CTL_ADD, c, &cev);
                    connections[c];
                }
                continue;
            }
            Connection& c = connections[fd];
            bool open = true;
            if (events[e].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
                for (;;) {
                    const ssize_t got = ::recv(fd, buf, sizeof buf, 0);
                    if (got > 0) {
                        c.in.append(buf, static_cast<std::size_t>(got));
                        continue;
                    }
                    if (got == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) open = false;
                    break;
                }
                serve(c);
            }
            // A client that half-closed after its request still gets the answer, if it fits.
            const bool written = flush(fd, c);
            if (!open || !written) {
                ::epoll_ctl(ep, EPOLL_CTL_DEL, fd, nullptr);
                ::close(fd);
                connections.erase(fd);
                continue;
            }
            if (c.watching_out != !c.out.empty()) {
                c.watching_out = !c.out.empty();
                epoll_event cev{};
                cev.events = EPOLLIN | (c.watching_out ? static_cast<unsigned>(EPOLLOUT) : 0u);
                cev.data.fd = fd;
                ::epoll_ctl(ep, EPOLL_CTL_MOD, fd, &cev);
            }
        }
    }
}
