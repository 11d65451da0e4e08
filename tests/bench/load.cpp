// bench_load: a closed-loop HTTP/1.1 load driver for JSON-RPC. Each of --connections keep-alive
// connections sends a request, waits for its answer and sends the next; every latency is kept,
// so the percentiles are exact. Prints one JSON line:
//   {"requests":N,"errors":N,"seconds":S,"rps":R,"p50_us":..,"p99_us":..,"p999_us":..,
//    "answered":N,"body_bytes":B,"first_error":".."}
// `requests` counts the measured ones (after the warm-up); `answered`, every answer read, warm-up
// included (what a process's counters over the whole run are divided by).
// An answer counts as an error unless it is HTTP 200 with no JSON-RPC "error" in it.
//
//   bench_load --port P [--path /] [--connections N] [--seconds S] [--warmup S] [--vary]
//              [--header "Name: value"]... [--gzip] (--body JSON | --bodies FILE [--once])
//   bench_load sign --count N --senders S [--first K]    one eth_sendRawTransaction body a line
//   bench_load fill --journal PATH --finished N [--age-hours H]
//
// --bodies takes one request body a line, used in turn; with --once each is sent once and the run
// ends when they are used up (unique signed transactions). --vary makes each request's first
// address ("0x" and 40 hex digits) one no other request of any run used: its last 16 digits are a
// random start of this run plus the request's number (nothing cached, nothing to coalesce).
// --header adds a header to every request (a credential). --gzip asks for gzip answers
// (Accept-Encoding) and decodes those that come so; `body_bytes` is the mean body of an answer as
// it came over the wire.
//
// fill writes N finished raw transactions into the SQLite journal at PATH (created if need be),
// as the gateway would have left them: QUEUED, BROADCASTING, CONFIRMING with its block,
// COMPLETED and final, four events each, the last change H hours ago (1 by default: inside any
// store.retention_ms; more than 168, past the default and due to be pruned). Hashes, senders and
// blocks are spread as real ones are (a hash's place in its index is random), so that what the
// bench measures is a journal that grew by use.

#include "bench/bench_signer.hpp"
#include "gateway/config/config.hpp"
#include "gateway/store/store.hpp"
#include "gateway/util/gzip.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <memory>
#include <random>
#include <string>
#include <vector>

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

namespace {

struct Options {
    unsigned short port = 0;
    std::string path = "/";
    std::size_t connections = 16;
    double seconds = 5;
    double warmup = 1;
    std::vector<std::string> bodies;
    bool once = false;
    bool vary = false;
    bool gzip = false;
    std::vector<std::pair<std::string, std::string>> headers;
};

struct Shared {
    const Options* o = nullptr;
    Clock::time_point measure_from, stop_at;
    std::atomic<std::size_t> next{0};  // the next body
    std::uint64_t vary_from = 0;       // --vary: this run's random start
    std::size_t requests = 0, errors = 0, answered = 0;
    std::uint64_t body_bytes = 0;  // every answer's, as it came
    std::string first_error;
    std::vector<std::uint32_t> latencies_us;  // measured requests only
    Clock::time_point last_answer;
};

// --vary: the first address in `body` with its last 16 hex digits set to `n`.
void vary_address(std::string& body, std::uint64_t n) {
    const auto is_hex = [](char c) {
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
    };
    for (std::size_t p = body.find("\"0x"); p != std::string::npos; p = body.find("\"0x", p + 1)) {
        if (p + 3 + 40 >= body.size() || body[p + 3 + 40] != '"') continue;
        if (!std::all_of(body.begin() + static_cast<long>(p + 3),
                         body.begin() + static_cast<long>(p + 3 + 40), is_hex))
            continue;
        static constexpr char kDigits[] = "0123456789abcdef";
        for (int d = 0; d < 16; ++d)
            body[p + 3 + 39 - static_cast<std::size_t>(d)] = kDigits[(n >> (4 * d)) & 0xf];
        return;
    }
}

bool failed(const http::response<http::string_body>& r) {
    return r.result() != http::status::ok || r.body().find("\"error\"") != std::string::npos ||
           r.body().find("\"result\"") == std::string::npos;
}

asio::awaitable<void> connection(Shared& s) {
    const Options& o = *s.o;
    auto ex = co_await asio::this_coro::executor;
    beast::tcp_stream stream(ex);
    auto [cec] =
        co_await stream.async_connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), o.port),
                                      asio::as_tuple(asio::use_awaitable));
    if (cec) {
        ++s.errors;
        if (s.first_error.empty()) s.first_error = "connect: " + cec.message();
        co_return;
    }
    stream.socket().set_option(tcp::no_delay(true));
    beast::flat_buffer buffer;
    for (;;) {
        const auto now = Clock::now();
        if (now >= s.stop_at) co_return;
        const std::size_t i = s.next++;
        if (o.once && i >= o.bodies.size()) co_return;
        http::request<http::string_body> req{http::verb::post, o.path, 11};
        req.set(http::field::host, "127.0.0.1");
        req.set(http::field::content_type, "application/json");
        for (const auto& [name, value] : o.headers) req.set(name, value);
        if (o.gzip) req.set(http::field::accept_encoding, "gzip");
        req.keep_alive(true);
        req.body() = o.bodies[i % o.bodies.size()];
        if (o.vary) vary_address(req.body(), s.vary_from + i);
        req.prepare_payload();
        const auto t0 = Clock::now();
        auto [wec, w] =
            co_await http::async_write(stream, req, asio::as_tuple(asio::use_awaitable));
        http::response<http::string_body> res;
        beast::error_code rec = wec;
        if (!wec) {
            auto [ec, n] =
                co_await http::async_read(stream, buffer, res, asio::as_tuple(asio::use_awaitable));
            rec = ec;
        }
        const auto t1 = Clock::now();
        s.last_answer = t1;
        if (!rec) {
            ++s.answered;
            s.body_bytes += res.body().size();
            if (res[http::field::content_encoding] == "gzip") {
                auto plain = gateway::util::gunzip(res.body(), 1u << 30, nullptr);
                res.body() = plain ? std::move(*plain) : std::string("not gzip");
            }
        }
        const bool measured = t0 >= s.measure_from;
        if (rec || failed(res)) {
            if (measured || o.once) ++s.errors;
            if (s.first_error.empty())
                s.first_error = rec ? rec.message() : res.body().substr(0, 300);
            if (rec) co_return;
        }
        if (measured || o.once) {
            ++s.requests;
            s.latencies_us.push_back(static_cast<std::uint32_t>(
                std::chrono::duration_cast<std::chrono::microseconds>(t1 - t0).count()));
        }
    }
}

std::uint32_t percentile(std::vector<std::uint32_t>& v, double p) {
    if (v.empty()) return 0;
    const auto k = static_cast<std::size_t>(p * static_cast<double>(v.size() - 1));
    std::nth_element(v.begin(), v.begin() + static_cast<long>(k), v.end());
    return v[k];
}

std::string escape(const std::string& s) {
    std::string out;
    for (char c : s) {
        if (c == '"' || c == '\\') out += '\\';
        if (static_cast<unsigned char>(c) < 0x20) continue;
        out += c;
    }
    return out;
}

int sign_main(int argc, char** argv) {
    std::size_t count = 1000, senders = 100, first = 0;
    for (int i = 2; i + 1 < argc; i += 2) {
        const std::string a = argv[i];
        const std::size_t v = std::stoul(argv[i + 1]);
        if (a == "--count")
            count = v;
        else if (a == "--senders")
            senders = v;
        else if (a == "--first")
            first = v;
    }
    const std::size_t per_sender = (count + senders - 1) / senders;
    gateway::bench::Signer signer;
    const auto txs = gateway::bench::sign_all(signer, first, senders, per_sender);
    // Interleave senders, so that consecutive requests come from different senders.
    for (std::size_t n = 0, printed = 0; n < per_sender && printed < count; ++n)
        for (std::size_t s = 0; s < senders && printed < count; ++s, ++printed)
            std::printf(
                "{\"jsonrpc\":\"2.0\",\"id\":%zu,\"method\":\"eth_sendRawTransaction\","
                "\"params\":[\"%s\"]}\n",
                printed, txs[s * per_sender + n].raw_hex.c_str());
    return 0;
}

// splitmix64: a spread of 64-bit words from a counter.
std::uint64_t mix(std::uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

std::string hex_words(std::uint64_t seed, int words) {
    std::string out = "0x";
    char buf[17];
    for (int w = 0; w < words; ++w) {
        std::snprintf(buf, sizeof buf, "%016llx",
                      static_cast<unsigned long long>(mix(seed * 8 + static_cast<unsigned>(w))));
        out += buf;
    }
    return out;
}

int fill_main(int argc, char** argv) {
    std::string path;
    std::size_t finished = 0;
    double age_hours = 1;
    for (int i = 2; i + 1 < argc; i += 2) {
        const std::string a = argv[i];
        if (a == "--journal")
            path = argv[i + 1];
        else if (a == "--finished")
            finished = std::stoul(argv[i + 1]);
        else if (a == "--age-hours")
            age_hours = std::stod(argv[i + 1]);
    }
    if (path.empty()) throw std::invalid_argument("fill needs --journal PATH");
    gateway::config::StoreConfig config;
    config.path = path;
    auto store = gateway::store::open_store(config);
    using gateway::store::TxState;
    const auto now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                            std::chrono::system_clock::now().time_since_epoch())
                            .count();
    const auto last_ms = now_ms - static_cast<std::int64_t>(age_hours * 3'600'000);
    constexpr std::size_t kSenders = 1000, kPerBlock = 100, kPerCommit = 10'000;
    const auto t0 = Clock::now();
    store->begin();
    for (std::size_t i = 0; i < finished; ++i) {
        // Oldest first, a millisecond apart, all four steps within a second.
        const std::int64_t at = last_ms - static_cast<std::int64_t>(finished - i) - 1000;
        gateway::store::TxRecord r;
        r.hash = hex_words(i, 4);
        r.chain = "pass";
        r.chain_id = 31337;
        r.sender = hex_words(1'000'000'000 + i % kSenders, 3).substr(0, 42);
        r.nonce = i / kSenders;
        r.raw.resize(110);
        for (std::size_t b = 0; b < r.raw.size(); b += 8) {
            const std::uint64_t w = mix(i * 16 + b);
            std::memcpy(r.raw.data() + b, &w, std::min<std::size_t>(8, r.raw.size() - b));
        }
        r.state = TxState::queued;
        r.reason = "accepted";
        r.created_ms = r.updated_ms = at;
        r.source = "127.0.0.1";
        store->insert(r);
        gateway::store::TxUpdate u;
        u.hash = r.hash;
        u.state = TxState::broadcasting;
        u.reason = "accepted by node";
        u.at_ms = at + 100;
        u.broadcasts = 1;
        store->update(u);
        u.state = TxState::confirming;
        u.reason = "mined";
        u.at_ms = at + 500;
        u.broadcasts.reset();
        u.set_block = true;
        u.block_hash = hex_words(2'000'000'000 + i / kPerBlock, 4);
        u.block_number = 1'000'000 + i / kPerBlock;
        store->update(u);
        u.state = TxState::completed;
        u.reason = "confirmed";
        u.at_ms = at + 1000;
        u.finalized = true;
        store->update(u);
        if ((i + 1) % kPerCommit == 0) {
            store->commit();
            store->begin();
        }
    }
    store->commit();
    std::printf("{\"finished\":%zu,\"seconds\":%.1f}\n", finished,
                std::chrono::duration<double>(Clock::now() - t0).count());
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc > 1 && std::string(argv[1]) == "sign") return sign_main(argc, argv);
    if (argc > 1 && std::string(argv[1]) == "fill") return fill_main(argc, argv);
    Options o;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) throw std::invalid_argument(a + " needs a value");
            return argv[++i];
        };
        if (a == "--port")
            o.port = static_cast<unsigned short>(std::stoul(value()));
        else if (a == "--path")
            o.path = value();
        else if (a == "--connections")
            o.connections = std::stoul(value());
        else if (a == "--seconds")
            o.seconds = std::stod(value());
        else if (a == "--warmup")
            o.warmup = std::stod(value());
        else if (a == "--body")
            o.bodies.push_back(value());
        else if (a == "--once")
            o.once = true;
        else if (a == "--vary")
            o.vary = true;
        else if (a == "--gzip")
            o.gzip = true;
        else if (a == "--header") {
            const std::string h = value();
            const auto colon = h.find(':');
            if (colon == std::string::npos)
                throw std::invalid_argument("--header takes Name: value");
            std::size_t v = colon + 1;
            while (v < h.size() && h[v] == ' ') ++v;
            o.headers.emplace_back(h.substr(0, colon), h.substr(v));
        } else if (a == "--bodies") {
            std::ifstream in(value());
            for (std::string line; std::getline(in, line);)
                if (!line.empty()) o.bodies.push_back(line);
        } else {
            std::cerr << "unknown argument " << a << "\n";
            return 2;
        }
    }
    if (!o.port || o.bodies.empty()) {
        std::cerr << "usage: bench_load --port P (--body JSON | --bodies FILE) ...\n";
        return 2;
    }
    if (o.once) o.warmup = 0;

    asio::io_context ioc(1);
    Shared s;
    // A random start a run's varied addresses count up from: another run's never meet them.
    s.vary_from = (std::uint64_t{std::random_device{}()} << 32) ^ std::random_device{}();
    s.o = &o;
    const auto start = Clock::now();
    s.measure_from = start + std::chrono::duration_cast<Clock::duration>(
                                 std::chrono::duration<double>(o.warmup));
    s.stop_at = s.measure_from + std::chrono::duration_cast<Clock::duration>(
                                     std::chrono::duration<double>(o.seconds));
    s.latencies_us.reserve(1 << 20);
    for (std::size_t c = 0; c < o.connections; ++c)
        asio::co_spawn(ioc, connection(s), asio::detached);
    ioc.run();
    const auto end = o.once ? s.last_answer : s.stop_at;
    const auto from = o.once ? start : s.measure_from;
    const double seconds = std::chrono::duration<double>(end - from).count();
    const double rps = seconds > 0 ? static_cast<double>(s.requests) / seconds : 0;
    std::printf(
        "{\"requests\":%zu,\"errors\":%zu,\"seconds\":%.3f,\"rps\":%.0f,\"p50_us\":%u,"
        "\"p99_us\":%u,\"p999_us\":%u,\"answered\":%zu,\"body_bytes\":%.0f,\"first_error\":\"%s\"}"
        "\n",
        s.requests, s.errors, seconds, rps, percentile(s.latencies_us, 0.5),
        percentile(s.latencies_us, 0.99), percentile(s.latencies_us, 0.999), s.answered,
        s.answered ? static_cast<double>(s.body_bytes) / static_cast<double>(s.answered) : 0.0,
        escape(s.first_error).c_str());
    return 0;
}
