// intake_bench: durable eth_sendRawTransaction intake, in transactions per second.
//
// Not a test (ctest does not run it): scripts/bench-intake.sh builds and runs it. It starts the
// gateway in-process (the same wiring as the binary) in front of a fake node that accepts every
// transaction at once, so what is measured is the gateway's own write path: decode and recover
// the sender, journal to SQLite (WAL, synchronous=FULL, group commit on the store's thread),
// broadcast, journal BROADCASTING, answer the hash. Each reply is checked (HTTP 200 and the
// transaction's own hash) and after each run the journal is opened to check that every answered
// transaction is on disk.
//
// Each run gets a fresh gateway and journal. The same runs are repeated with the journal on tmpfs
// (/dev/shm), where fsync costs nothing, so the difference is what durability costs on this disk;
// and with --postgres, on PostgreSQL (store.backend postgres): a throwaway server with its data on
// the same disk (under TMPDIR) and PostgreSQL's defaults for durability (fsync and
// synchronous_commit on), a fresh database for each run. CPU per transaction: the bench process's
// (the gateway, and the fake node, which is in it too; the clients' threads are left out), and on
// PostgreSQL the server's processes' (utime + stime from /proc), which are part of the cost there.
//
// --replicas 1,3 runs PostgreSQL once per count, each time with that many gateways in-process on
// one fresh database: the first opened takes the owner's lock and dispatches, the others are
// standbys that journal what they take and hand it to the owner (the handoffs table, taken every
// 100 ms). Client k talks to gateway k % N. After the last answer the run waits until the fake node
// has received every answered transaction, then stops the standbys and the owner last (so that no
// standby takes over), and checks that the node received each exactly once and that the journal
// holds each, BROADCASTING. The CPU counted runs to the end of that wait, so the owner's
// broadcasts of handed-over transactions are in it. One process rather than three: the answers and
// the node's broadcasts are checked per transaction as in every other run, and the CPU is counted
// the same way. (The gateways share the process's name that the owner's number is kept with; it
// matters only when a gateway takes over from one of its own process, which no run does.)
// --rounds R repeats every run R times, taking turns (disk, pg, pg3, ..., disk, ...), and the
// summary gives medians.
//
// The journal's commit and operation counters (store::JournalService::commits()) are not
// reachable through gateway::Gateway, so they are not printed.

#include "gateway/app.hpp"
#include "gateway/config/config.hpp"
#include "gateway/eth/hex.hpp"
#include "gateway/eth/keccak.hpp"
#include "gateway/eth/rlp.hpp"
#include "gateway/eth/transaction.hpp"
#include "gateway/log/log.hpp"

#include "bench/bench_signer.hpp"
#include "support/fake_upstream.hpp"
#include "support/http_test_client.hpp"
#include "support/postgres_server.hpp"
#include "support/process.hpp"

#include "gateway/store/pg_connection.hpp"

#include <secp256k1.h>
#include <secp256k1_recovery.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/spdlog.h>
#include <sqlite3.h>
#include <sys/resource.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>
#include <boost/json/parse.hpp>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <latch>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

namespace {

namespace eth = gateway::eth;
namespace json = boost::json;
namespace test = gateway::test;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

using gateway::bench::kChainId;
using gateway::bench::sign_all;
using gateway::bench::Signed;
using gateway::bench::Signer;
constexpr std::size_t kWarmup = 16;  // transactions of a sender of their own, before timing

struct Options {
    std::size_t transactions = 8192;
    std::size_t senders = 64;
    std::vector<std::size_t> clients{1, 8, 32};
    double seconds = 5;  // per run: no new transaction is sent after this long
    unsigned threads = 2;
    bool tmpfs = true;
    bool postgres = false;
    std::vector<std::size_t> replicas{1};  // gateways on one PostgreSQL journal, one run each
    std::size_t rounds = 1;
};

// ---------------------------------------------------------------------------------------------
// Storage

struct Storage {
    std::string label;  // "disk", "pg", "pg3" (three gateways on one database) or "tmpfs"
    std::string base;   // where each run's journal folder is made (pg: the server's folder)
    test::PostgresServer* postgres = nullptr;  // pg: the server, a fresh database each run
    std::size_t replicas = 1;                  // gateways sharing the journal (PostgreSQL only)
};

std::string fs_name(const std::string& path) {
    struct statfs s {};
    if (statfs(path.c_str(), &s) != 0) return "?";
    switch (static_cast<unsigned long>(s.f_type)) {
        case 0x01021994UL: return "tmpfs";
        case 0xEF53UL: return "ext4";
        case 0x58465342UL: return "xfs";
        case 0x9123683EUL: return "btrfs";
        case 0x794c7630UL: return "overlayfs";
        case 0x2FC12FC1UL: return "zfs";
        default: {
            char buf[32];
            std::snprintf(buf, sizeof buf, "fs 0x%lx", static_cast<unsigned long>(s.f_type));
            return buf;
        }
    }
}

std::string make_dir_under(const std::string& base, const std::string& prefix) {
    std::string pattern = base + "/" + prefix + "-XXXXXX";
    if (!mkdtemp(pattern.data()))
        throw std::runtime_error("cannot make a folder under " + base + ": " +
                                 std::strerror(errno));
    return pattern;
}

/// The PostgreSQL journal's rows by state, read after the gateway has stopped (a plain session:
/// reading takes no owner's lock).
std::vector<std::pair<std::string, std::size_t>> pg_journal_states(const std::string& url) {
    gateway::store::pg::Connection db(url, std::chrono::seconds(10));
    std::vector<std::pair<std::string, std::size_t>> out;
    for (const auto& row : db.exec("SELECT state, count(*) FROM transactions GROUP BY state").rows)
        out.emplace_back(row.at(0).value_or("NULL"), std::stoul(row.at(1).value_or("0")));
    return out;
}

// ---------------------------------------------------------------------------------------------
// CPU

double seconds_of(const timeval& t) {
    return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6;
}

/// The whole process's CPU so far (user + system, every thread).
double process_cpu_s() {
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    return seconds_of(u.ru_utime) + seconds_of(u.ru_stime);
}

/// The calling thread's CPU so far.
double thread_cpu_s() {
    timespec t{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_nsec) / 1e9;
}

struct ProcStat {
    int ppid = 0;
    double cpu_s = 0;       // utime + stime
    double children_s = 0;  // cutime + cstime: its children that ended and were waited for
};

std::optional<ProcStat> proc_stat(const std::string& pid) {
    const std::string stat = test::read_file("/proc/" + pid + "/stat");
    const std::size_t close = stat.rfind(')');  // the command's name may hold spaces
    if (close == std::string::npos || close + 2 > stat.size()) return std::nullopt;
    std::istringstream in(stat.substr(close + 2));
    std::vector<std::string> f(15);  // fields 3 (state) to 17 (cstime)
    for (auto& x : f) in >> x;
    if (!in) return std::nullopt;
    static const double tick = static_cast<double>(sysconf(_SC_CLK_TCK));
    ProcStat p;
    p.ppid = std::stoi(f[1]);
    p.cpu_s = (std::stod(f[11]) + std::stod(f[12])) / tick;
    p.children_s = (std::stod(f[13]) + std::stod(f[14])) / tick;
    return p;
}

/// A PostgreSQL server's CPU so far: the postmaster's, its ended children's (cutime + cstime),
/// and each running child's (backends, WAL writer, checkpointer, ...).
double server_cpu_s(int postmaster) {
    if (postmaster <= 0) return 0;
    const auto pm = proc_stat(std::to_string(postmaster));
    if (!pm) return 0;
    double sum = pm->cpu_s + pm->children_s;
    for (const auto& e : std::filesystem::directory_iterator("/proc")) {
        const std::string name = e.path().filename().string();
        if (name.empty() || !std::isdigit(static_cast<unsigned char>(name[0]))) continue;
        if (const auto p = proc_stat(name); p && p->ppid == postmaster) sum += p->cpu_s;
    }
    return sum;
}

/// The journal's rows by state, read after the gateway has stopped.
std::vector<std::pair<std::string, std::size_t>> journal_states(const std::string& db_path) {
    std::vector<std::pair<std::string, std::size_t>> out;
    sqlite3* db = nullptr;
    if (sqlite3_open_v2(db_path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
        sqlite3_close(db);
        throw std::runtime_error("cannot open the journal " + db_path);
    }
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(db, "SELECT state, count(*) FROM transactions GROUP BY state", -1, &st,
                           nullptr) != SQLITE_OK) {
        const std::string why = sqlite3_errmsg(db);
        sqlite3_close(db);
        throw std::runtime_error("cannot read the journal: " + why);
    }
    while (sqlite3_step(st) == SQLITE_ROW)
        out.emplace_back(reinterpret_cast<const char*>(sqlite3_column_text(st, 0)),
                         static_cast<std::size_t>(sqlite3_column_int64(st, 1)));
    sqlite3_finalize(st);
    sqlite3_close(db);
    return out;
}

// ---------------------------------------------------------------------------------------------
// One run: a fresh gateway and journal, C clients.

struct RunResult {
    std::string storage;
    std::size_t clients = 0;
    std::size_t sent = 0;
    std::size_t failures = 0;
    double seconds = 0;
    double tps = 0;
    double p50_ms = 0;
    double p99_ms = 0;
    double cpu_us = 0;     // the bench process's CPU but the clients', per answered transaction
    double db_cpu_us = 0;  // the PostgreSQL server's, per answered transaction (pg runs only)
    double drain_ms = 0;   // from the last answer until the node had received every one
    std::size_t journaled = 0;      // BROADCASTING rows found in the journal afterwards
    std::size_t receipt_calls = 0;  // the dispatcher woke and polled receipts (it should not)
    std::vector<std::string> failure_samples;
};

double percentile_ms(std::vector<double>& sorted_us, double p) {
    if (sorted_us.empty()) return 0;
    const auto rank =
        static_cast<std::size_t>(std::ceil(p * static_cast<double>(sorted_us.size())));
    return sorted_us[std::clamp<std::size_t>(rank, 1, sorted_us.size()) - 1] / 1000.0;
}

/// Why a reply is not the expected one, or nullopt when it is.
std::optional<std::string> check_reply(const test::HttpReply& r, const std::string& hash) {
    if (r.status != 200) return "HTTP " + std::to_string(r.status) + ": " + r.body.substr(0, 200);
    json::error_code ec;
    const json::value v = json::parse(r.body, ec);
    const json::object* o = ec ? nullptr : v.if_object();
    const json::value* result = o ? o->if_contains("result") : nullptr;
    if (!result || !result->is_string() || result->get_string() != hash)
        return "expected " + hash + ", got " + r.body.substr(0, 200);
    return std::nullopt;
}

/// `journal`: SQLite's file, or a PostgreSQL URL. `warmup`: the warm-up transactions of every
/// gateway on the journal together.
gateway::config::Config make_config(const std::string& journal, const std::string& upstream_url,
                                    const Options& opt, std::size_t warmup) {
    gateway::config::Config c;
    c.server.listen = {"127.0.0.1", 0};
    c.server.admin_listen = {"127.0.0.1", 0};
    c.server.threads = opt.threads;
    c.server.shutdown_grace = 5s;
    if (journal.starts_with("postgresql://")) {
        c.store.backend = "postgres";
        c.store.url = journal;
    } else {
        c.store.backend = "sqlite";
        c.store.path = journal;
    }
    gateway::config::ChainConfig chain;
    chain.name = "devnet";
    chain.chain_id = kChainId;
    // The dispatcher and receipt tracker stay asleep: no transaction is ever queued (each
    // sender's nonces are sent one after the other by one client), so nothing wakes it.
    // An owner with standbys wakes every 100 ms to take their handoffs and dispatch them; no
    // transaction of a run is old enough to be sent again.
    chain.tx.poll_interval = std::chrono::hours(1);
    chain.tx.rebroadcast_after = std::chrono::hours(1);
    chain.tx.max_queued_per_sender = opt.transactions + kWarmup;
    chain.tx.max_queued = opt.transactions + warmup + kWarmup;
    // Every client connects from 127.0.0.1: the default cap of 1,000 per client would refuse
    // the rest (and be measured: a refusal is quick).
    chain.tx.max_queued_per_client = opt.transactions + warmup + kWarmup;
    gateway::config::UpstreamConfig u;
    u.id = "fake";
    u.url = upstream_url;
    chain.upstreams.push_back(u);
    c.chains.push_back(chain);
    return c;
}

/// Whether the gateway's /metrics says it is a standby of a shared journal (another gateway owns
/// it), as gateway_journal_standby.
std::optional<bool> is_standby(std::uint16_t admin_port) {
    const test::HttpReply r = test::http_get(admin_port, "/metrics");
    std::istringstream in(r.body);
    for (std::string line; std::getline(in, line);)
        if (line.starts_with("gateway_journal_standby "))
            return std::stod(line.substr(line.find(' ') + 1)) != 0;
    return std::nullopt;
}

/// `warmup`: one sender's kWarmup transactions per gateway, at least storage.replicas of them.
RunResult run_once(const Storage& storage, std::size_t clients, const Options& opt,
                   const std::vector<Signed>& txs, const std::vector<Signed>& warmup) {
    RunResult res;
    res.storage = storage.label;
    res.clients = clients;
    const std::size_t replicas = storage.replicas;
    const std::size_t warmed = replicas * kWarmup;  // warm-up transactions of this run
    if (warmup.size() < warmed) throw std::logic_error("too few warm-up transactions");

    // A node that takes every transaction at once and has no receipts yet, and counts how often
    // each one reached it.
    std::mutex node_mu;
    std::unordered_map<std::string, std::size_t> broadcasts;  // hash -> times received
    test::FakeUpstream node(
        kChainId,
        [&](const std::string& method,
            const json::value& request) -> std::optional<test::FakeReply> {
            if (method == "eth_getTransactionReceipt") return test::FakeReply::ok("null");
            if (method != "eth_sendRawTransaction") return std::nullopt;
            const json::array* params = request.at("params").if_array();
            const json::string* raw =
                params && !params->empty() ? params->at(0).if_string() : nullptr;
            const auto bytes = raw ? eth::from_hex(*raw) : std::nullopt;
            if (!bytes) return test::FakeReply::rpc_error(-32602, "fake: bad raw transaction");
            const std::string hash = eth::to_hex(eth::keccak256(*bytes));
            {
                std::lock_guard lock(node_mu);
                ++broadcasts[hash];
            }
            return test::FakeReply::ok("\"" + hash + "\"");
        });
    const auto received = [&] {
        std::lock_guard lock(node_mu);
        return broadcasts.size();
    };

    static int runs = 0;
    const std::string dir =
        storage.postgres ? "" : make_dir_under(storage.base, "intake-bench-" + storage.label);
    const std::string db_path = storage.postgres
                                    ? storage.postgres->database("intake_" + std::to_string(++runs))
                                    : dir + "/gateway.db";
    const int postmaster = storage.postgres ? storage.postgres->pid() : -1;

    // The gateways, the owner first: it takes the journal's lock as it opens, so each one opened
    // after it is ready is a standby.
    std::vector<std::unique_ptr<gateway::Gateway>> gws;
    std::vector<std::thread> runners;
    std::vector<std::uint16_t> ports;
    const auto stop_all = [&] {  // the standbys first, so that none takes over from the owner
        for (std::size_t i = gws.size(); i-- > 0;) {
            gws[i]->shutdown();
            runners[i].join();
        }
    };
    for (std::size_t g = 0; g < replicas; ++g) {
        gws.push_back(
            std::make_unique<gateway::Gateway>(make_config(db_path, node.url(), opt, warmed)));
        runners.emplace_back([gw = gws.back().get()] { gw->run(false); });
        ports.push_back(gws.back()->rpc_endpoint().port);
        const std::uint16_t admin_port = gws.back()->admin_endpoint().port;
        bool ready = false;
        for (int i = 0; i < 500 && !ready; ++i) {
            ready = test::http_get(admin_port, "/readyz?require=upstreams").status == 200;
            if (!ready) std::this_thread::sleep_for(10ms);
        }
        const std::optional<bool> standby = replicas > 1 ? is_standby(admin_port) : false;
        if (!ready || standby != (g > 0)) {
            stop_all();
            throw std::runtime_error(
                !ready ? "a gateway never became ready"
                       : "gateway " + std::to_string(g) + " is " +
                             (standby ? (*standby ? "a standby" : "the owner") : "of no role") +
                             ", not " + (g > 0 ? "a standby" : "the owner"));
        }
    }

    std::mutex mu;  // guards res.failures and res.failure_samples
    const auto fail = [&](std::string why) {
        std::lock_guard lock(mu);
        ++res.failures;
        if (res.failure_samples.size() < 5) res.failure_samples.push_back(std::move(why));
    };

    // Warm-up, each gateway with a sender of its own: the upstream connection, the journal's
    // first pages or connection, the code paths.
    std::vector<const Signed*> answered;  // every transaction answered with its hash
    for (std::size_t g = 0; g < replicas; ++g) {
        test::HttpConnection conn(ports[g]);
        for (std::size_t i = g * kWarmup; i < (g + 1) * kWarmup; ++i) {
            const auto r = conn.post(
                "/", test::rpc_body("eth_sendRawTransaction", "[\"" + warmup[i].raw_hex + "\"]",
                                    static_cast<int>(i)));
            if (auto why = check_reply(r, warmup[i].hash))
                fail("warm-up: " + *why);
            else
                answered.push_back(&warmup[i]);
        }
    }

    // Client k sends the transactions of senders k, k + C, ... to gateway k % N: each sender's
    // nonces in order from one connection, round robin over its senders.
    const std::size_t per_sender = txs.size() / opt.senders;
    std::vector<std::vector<const Signed*>> plan(clients);
    for (std::size_t n = 0; n < per_sender; ++n)
        for (std::size_t s = 0; s < opt.senders; ++s)
            plan[s % clients].push_back(&txs[s * per_sender + n]);

    std::vector<std::vector<double>> latencies(clients);
    std::vector<std::vector<const Signed*>> accepted(clients);  // answered with their hash
    std::vector<Clock::time_point> ended(clients);
    std::vector<double> client_cpu_s(clients);  // each client thread's CPU during the run
    std::latch start(static_cast<std::ptrdiff_t>(clients) + 1);
    const auto budget =
        std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(opt.seconds));
    std::vector<std::thread> workers;
    for (std::size_t k = 0; k < clients; ++k) {
        workers.emplace_back([&, k] {
            const std::uint16_t port = ports[k % replicas];
            std::unique_ptr<test::HttpConnection> conn;
            try {
                conn = std::make_unique<test::HttpConnection>(port);
            } catch (const std::exception& e) {
                fail(std::string("connect: ") + e.what());
            }
            auto& lat = latencies[k];
            lat.reserve(plan[k].size());
            start.arrive_and_wait();
            const double cpu0 = thread_cpu_s();
            const auto deadline = Clock::now() + budget;
            int id = 0;
            for (const Signed* t : plan[k]) {
                if (Clock::now() >= deadline) break;
                const std::string body =
                    test::rpc_body("eth_sendRawTransaction", "[\"" + t->raw_hex + "\"]", ++id);
                const auto t0 = Clock::now();
                try {
                    if (!conn) conn = std::make_unique<test::HttpConnection>(port);
                    const test::HttpReply r = conn->post("/", body);
                    lat.push_back(
                        std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
                    if (auto why = check_reply(r, t->hash))
                        fail(*why);
                    else
                        accepted[k].push_back(t);
                    if (!r.keep_alive) conn.reset();
                } catch (const std::exception& e) {
                    lat.push_back(
                        std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
                    fail(std::string("transport: ") + e.what());
                    conn.reset();
                }
            }
            ended[k] = Clock::now();
            client_cpu_s[k] = thread_cpu_s() - cpu0;
        });
    }
    const double cpu_before = process_cpu_s();
    const double db_before = server_cpu_s(postmaster);
    start.arrive_and_wait();
    const auto began = Clock::now();
    for (auto& w : workers) w.join();
    const auto finished = *std::max_element(ended.begin(), ended.end());
    for (const auto& a : accepted) answered.insert(answered.end(), a.begin(), a.end());

    // Until the owner has sent every answered transaction: at once with one gateway (it answers
    // after the broadcast), within about 100 ms of the last handoff with standbys.
    const auto drain_until = Clock::now() + 120s;
    while (received() < answered.size() && Clock::now() < drain_until)
        std::this_thread::sleep_for(1ms);
    res.drain_ms = std::chrono::duration<double, std::milli>(Clock::now() - finished).count();
    double cpu_s = process_cpu_s() - cpu_before;
    for (const double c : client_cpu_s) cpu_s -= c;
    const double db_cpu_s = server_cpu_s(postmaster) - db_before;

    stop_all();
    bool clean = true;
    for (const auto& gw : gws) clean = clean && gw->clean_exit();
    if (!clean)
        fail("a gateway did not stop cleanly");
    else
        gws.clear();  // (an unclean gateway is left alone: its coroutines are mid-flight)

    res.receipt_calls = node.calls("eth_getTransactionReceipt");

    std::vector<double> all;
    for (auto& l : latencies) all.insert(all.end(), l.begin(), l.end());
    std::sort(all.begin(), all.end());
    res.sent = all.size();
    res.seconds = std::chrono::duration<double>(finished - began).count();
    res.tps = res.seconds > 0 ? static_cast<double>(res.sent) / res.seconds : 0;
    res.p50_ms = percentile_ms(all, 0.50);
    res.p99_ms = percentile_ms(all, 0.99);
    if (res.sent) {
        res.cpu_us = cpu_s / static_cast<double>(res.sent) * 1e6;
        res.db_cpu_us = db_cpu_s / static_cast<double>(res.sent) * 1e6;
    }

    // Dispatched, seen from the node: every answered transaction exactly once, nothing else.
    {
        std::lock_guard lock(node_mu);
        std::size_t missing = 0;
        std::size_t repeated = 0;
        for (const Signed* t : answered) {
            const auto it = broadcasts.find(t->hash);
            if (it == broadcasts.end())
                ++missing;
            else if (it->second != 1)
                ++repeated;
        }
        if (missing || repeated || broadcasts.size() != answered.size())
            fail("node: of " + std::to_string(answered.size()) + " answered transactions, " +
                 std::to_string(missing) + " never received, " + std::to_string(repeated) +
                 " received more than once; " + std::to_string(broadcasts.size()) +
                 " different ones received");
    }

    // Durability, seen from outside: every answered transaction has its row, BROADCASTING.
    if (clean) {
        for (const auto& [state, count] :
             storage.postgres ? pg_journal_states(db_path) : journal_states(db_path)) {
            if (state == "BROADCASTING")
                res.journaled = count;
            else
                fail("journal: " + std::to_string(count) + " transaction(s) " + state);
        }
        if (res.journaled != res.sent + warmed)
            fail("journal: " + std::to_string(res.journaled) + " BROADCASTING rows for " +
                 std::to_string(res.sent + warmed) + " answered transactions");
        std::error_code ec;
        if (!dir.empty()) std::filesystem::remove_all(dir, ec);
    }
    return res;
}

// ---------------------------------------------------------------------------------------------

std::vector<std::size_t> parse_list(const std::string& text) {
    std::vector<std::size_t> out;
    std::size_t pos = 0;
    while (pos <= text.size()) {
        const std::size_t comma = std::min(text.find(',', pos), text.size());
        out.push_back(std::stoul(text.substr(pos, comma - pos)));
        pos = comma + 1;
    }
    return out;
}

constexpr const char* kUsage =
    "usage: intake_bench [--transactions N] [--senders S] [--clients 1,8,32] [--seconds X]\n"
    "                    [--threads T] [--no-tmpfs] [--postgres] [--replicas 1,3] [--rounds R]\n"
    "  --transactions  pre-signed transactions per run (default 8192), split evenly over\n"
    "  --senders       senders (default 64; at least the largest client count, so that each\n"
    "                  sender's nonces go out in order from one connection)\n"
    "  --clients       concurrent keep-alive clients, one run each (default 1,8,32)\n"
    "  --seconds       a run sends no new transaction after this long (default 5)\n"
    "  --threads       the gateway's server.threads (default 2)\n"
    "  --no-tmpfs      skip the runs with the journal on /dev/shm\n"
    "  --postgres      also run with the journal on PostgreSQL (a throwaway server of Debian's\n"
    "                  postgresql-15, its data under TMPDIR, fsync and synchronous_commit on)\n"
    "  --replicas      with --postgres: gateways in-process on one journal, one run each count\n"
    "                  (default 1); the first owns the journal, the others hand it their\n"
    "                  transactions; client k talks to gateway k % N\n"
    "  --rounds        every run this many times, taking turns; the summary gives medians\n"
    "                  (default 1)\n"
    "Exit status: 0, or 1 when any reply or journal row was not the expected one.\n";

Options parse_args(int argc, char** argv) {
    Options o;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        const auto value = [&]() -> std::string {
            if (i + 1 >= argc) throw std::invalid_argument(a + " needs a value");
            return argv[++i];
        };
        if (a == "--transactions")
            o.transactions = std::stoul(value());
        else if (a == "--senders")
            o.senders = std::stoul(value());
        else if (a == "--clients")
            o.clients = parse_list(value());
        else if (a == "--seconds")
            o.seconds = std::stod(value());
        else if (a == "--threads")
            o.threads = static_cast<unsigned>(std::stoul(value()));
        else if (a == "--no-tmpfs")
            o.tmpfs = false;
        else if (a == "--postgres")
            o.postgres = true;
        else if (a == "--replicas")
            o.replicas = parse_list(value());
        else if (a == "--rounds")
            o.rounds = std::stoul(value());
        else if (a == "--help" || a == "-h") {
            std::fputs(kUsage, stdout);
            std::exit(0);
        } else
            throw std::invalid_argument("unknown argument " + a);
    }
    const std::size_t max_clients = *std::max_element(o.clients.begin(), o.clients.end());
    if (o.senders == 0 || o.transactions < o.senders || o.senders < max_clients || o.threads == 0 ||
        o.seconds <= 0 || std::count(o.clients.begin(), o.clients.end(), 0))
        throw std::invalid_argument(
            "need transactions >= senders >= largest client count > 0, threads > 0, seconds > 0");
    if (o.rounds == 0 || std::count(o.replicas.begin(), o.replicas.end(), 0) ||
        (!o.postgres && o.replicas != std::vector<std::size_t>{1}))
        throw std::invalid_argument("need rounds > 0, and replicas > 0 with --postgres only");
    o.transactions -= o.transactions % o.senders;  // the same count for every sender
    return o;
}

int bench(const Options& opt) {
    // The gateway logs as in production (JSON lines, info: one line per accepted transaction),
    // to a file instead of stdout so that the table stays readable.
    const std::string log_dir = test::make_temp_dir("intake-bench-log");
    const std::string log_path = log_dir + "/gateway.log";
    auto logger = spdlog::basic_logger_mt("gateway", log_path, true);
    logger->set_formatter(gateway::log::make_json_formatter());
    logger->set_level(spdlog::level::info);
    spdlog::set_default_logger(logger);

    const auto sign_began = Clock::now();
    Signer signer;
    const std::size_t per_sender = opt.transactions / opt.senders;
    const std::vector<Signed> txs = sign_all(signer, 0, opt.senders, per_sender);
    // A warm-up sender for each gateway of the run with the most.
    const std::size_t most_replicas = *std::max_element(opt.replicas.begin(), opt.replicas.end());
    const std::vector<Signed> warmup = sign_all(signer, opt.senders, most_replicas, kWarmup);
    const double sign_ms =
        std::chrono::duration<double, std::milli>(Clock::now() - sign_began).count();

    std::vector<Storage> storages;
    {
        const char* t = std::getenv("TMPDIR");
        storages.push_back({"disk", t && *t ? t : "/tmp"});
    }
    std::unique_ptr<test::PostgresServer> postgres;
    if (opt.postgres) {
        postgres =
            std::make_unique<test::PostgresServer>(test::PostgresServer::Durability::durable);
        for (const std::size_t n : opt.replicas)
            storages.push_back(
                {n == 1 ? "pg" : "pg" + std::to_string(n), postgres->dir(), postgres.get(), n});
    }
    const bool shm = opt.tmpfs && access("/dev/shm", W_OK) == 0 && fs_name("/dev/shm") == "tmpfs";
    if (shm) storages.push_back({"tmpfs", "/dev/shm"});

    std::printf("intake_bench: durable eth_sendRawTransaction intake through chain-gateway\n");
    std::printf(
        "  %zu EIP-1559 transactions pre-signed over %zu senders (+%zu warm-up), each decoded "
        "back to its sender: %.0f ms\n",
        txs.size(), opt.senders, warmup.size(), sign_ms);
    std::printf(
        "  gateway in-process, server.threads %u; fake node answers the hash at once; %u CPUs\n",
        opt.threads, std::thread::hardware_concurrency());
    // Everything shares the machine (clients, gateway, fake node): a busy machine lowers the rates.
    const std::string load = test::read_file("/proc/loadavg");
    if (!load.empty())
        std::printf("  load average before the runs: %s\n",
                    load.substr(0, load.find(' ', load.find(' ', load.find(' ') + 1) + 1)).c_str());
    std::printf(
        "  per run: a fresh gateway and journal; at most %zu transactions or %.1f s; %zu "
        "round(s)\n",
        txs.size(), opt.seconds, opt.rounds);
    for (const auto& s : storages) {
        std::printf("  journal %-5s: %s (%s)%s\n", s.label.c_str(), s.base.c_str(),
                    fs_name(s.base).c_str(),
                    s.label == "disk" ? ", SQLite WAL synchronous=FULL: fsync on every commit"
                    : s.postgres ? ", PostgreSQL 15 on loopback, fsync and synchronous_commit on"
                                 : ", SQLite as on disk; fsync costs nothing here");
        if (s.replicas > 1)
            std::printf(
                "                 %zu gateways on one database: the first owns it, the others "
                "hand over; client k to gateway k %% %zu\n",
                s.replicas, s.replicas);
    }
    std::printf(
        "  CPU per transaction: the bench process's but its clients' (the gateways, and the fake "
        "node),\n  until the node had every answered transaction; db: the PostgreSQL server's "
        "processes'\n  drain ms: from the last answer until the node had every one (the owner's "
        "broadcasts of handoffs)\n");
    if (fs_name(storages[0].base) == "tmpfs")
        std::printf("  WARNING: %s is tmpfs, so the disk rows measure no fsync; set TMPDIR\n",
                    storages[0].base.c_str());
    if (!shm && opt.tmpfs) std::printf("  (no writable tmpfs at /dev/shm: disk runs only)\n");
    std::printf("  gateway log: %s (removed when every check passes)\n\n", log_path.c_str());
    const char* const row = "%-7s %7zu %7zu %8zu %9.2f %9.0f %9.2f %9.2f %8.0f %8.0f %8.0f %8zu\n";
    const auto header = [] {
        std::printf("%-7s %7s %7s %8s %9s %9s %9s %9s %8s %8s %8s %8s\n", "journal", "clients",
                    "sent", "failed", "seconds", "tx/s", "p50 ms", "p99 ms", "CPU µs", "db µs",
                    "drain ms", "on disk");
    };
    header();
    std::fflush(stdout);

    std::vector<RunResult> results;
    std::size_t failures = 0;
    for (std::size_t round = 1; round <= opt.rounds; ++round) {
        if (opt.rounds > 1) std::printf("-- round %zu of %zu\n", round, opt.rounds);
        for (const auto& storage : storages) {
            for (std::size_t c : opt.clients) {
                RunResult r = run_once(storage, c, opt, txs, warmup);
                std::printf(row, r.storage.c_str(), r.clients, r.sent, r.failures, r.seconds, r.tps,
                            r.p50_ms, r.p99_ms, r.cpu_us, r.db_cpu_us, r.drain_ms, r.journaled);
                if (r.receipt_calls)
                    std::printf("    note: the dispatcher polled %zu receipts during the run\n",
                                r.receipt_calls);
                for (const auto& f : r.failure_samples) std::printf("    failure: %s\n", f.c_str());
                std::fflush(stdout);
                failures += r.failures;
                results.push_back(std::move(r));
            }
        }
    }

    // Each storage's and client count's median over the rounds, field by field (the rounds
    // themselves with more than one).
    const auto median_of = [&](const std::string& storage, std::size_t clients,
                               double RunResult::*field) {
        std::vector<double> v;
        for (const auto& r : results)
            if (r.storage == storage && r.clients == clients) v.push_back(r.*field);
        std::sort(v.begin(), v.end());
        return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
    };
    std::vector<RunResult> medians;
    for (const auto& storage : storages)
        for (std::size_t c : opt.clients) {
            RunResult m;
            m.storage = storage.label;
            m.clients = c;
            for (double RunResult::*f :
                 {&RunResult::seconds, &RunResult::tps, &RunResult::p50_ms, &RunResult::p99_ms,
                  &RunResult::cpu_us, &RunResult::db_cpu_us, &RunResult::drain_ms})
                m.*f = median_of(storage.label, c, f);
            for (const auto& r : results)
                if (r.storage == storage.label && r.clients == c) {
                    m.sent += r.sent;
                    m.failures += r.failures;
                    m.journaled += r.journaled;
                }
            medians.push_back(std::move(m));
        }
    if (opt.rounds > 1) {
        std::printf("\nmedians of %zu rounds (sent, failed, on disk: the rounds' sums)\n",
                    opt.rounds);
        header();
        for (const auto& m : medians)
            std::printf(row, m.storage.c_str(), m.clients, m.sent, m.failures, m.seconds, m.tps,
                        m.p50_ms, m.p99_ms, m.cpu_us, m.db_cpu_us, m.drain_ms, m.journaled);
    }

    std::string summary;
    for (const auto& r : medians)
        summary += " " + r.storage + "/C" + std::to_string(r.clients) + "=" +
                   std::to_string(static_cast<long long>(std::lround(r.tps)));
    // What fsync costs: the disk run's rate as a share of the tmpfs run's, per client count.
    std::string cost;
    for (const auto& d : medians)
        for (const auto& t : medians)
            if (d.storage == "disk" && t.storage == "tmpfs" && d.clients == t.clients && t.tps > 0)
                cost += " C" + std::to_string(d.clients) + "=" +
                        std::to_string(static_cast<int>(std::lround(100 * d.tps / t.tps))) + "%";
    if (!cost.empty()) summary += "; disk as a share of tmpfs:" + cost;
    // PostgreSQL against SQLite on the same disk: tx/s, and CPU per transaction (the server's
    // included).
    std::string pg;
    for (const auto& p : medians)
        for (const auto& d : medians)
            if (p.storage == "pg" && d.storage == "disk" && p.clients == d.clients && d.tps > 0 &&
                d.cpu_us > 0) {
                char buf[96];
                std::snprintf(buf, sizeof buf, " C%zu=%.2f (CPU %.2f)", p.clients, p.tps / d.tps,
                              (p.cpu_us + p.db_cpu_us) / d.cpu_us);
                pg += buf;
            }
    if (!pg.empty()) summary += "; pg against disk, tx/s (CPU per tx):" + pg;
    // Several gateways on one journal against one: tx/s, and CPU per transaction (the
    // server's included).
    std::string several;
    for (const auto& n : medians)
        for (const auto& p : medians)
            if (n.storage.starts_with("pg") && n.storage != "pg" && p.storage == "pg" &&
                n.clients == p.clients && p.tps > 0 && p.cpu_us + p.db_cpu_us > 0) {
                char buf[96];
                std::snprintf(buf, sizeof buf, " %s/C%zu=%.2f (CPU %.2f)", n.storage.c_str(),
                              n.clients, n.tps / p.tps,
                              (n.cpu_us + n.db_cpu_us) / (p.cpu_us + p.db_cpu_us));
                several += buf;
            }
    if (!several.empty()) summary += "; several gateways against one, tx/s (CPU per tx):" + several;
    std::printf("\nsummary: tx/s%s%s; failures %zu: %s\n", opt.rounds > 1 ? " (medians)" : "",
                summary.c_str(), failures, failures ? "FAIL" : "ok");
    spdlog::shutdown();
    if (!failures) {
        std::error_code ec;
        std::filesystem::remove_all(log_dir, ec);
    }
    return failures ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
    Options opt;
    try {
        opt = parse_args(argc, argv);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "intake_bench: %s\n%s", e.what(), kUsage);
        return 2;
    }
    try {
        return bench(opt);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "intake_bench: %s\n", e.what());
        return 1;
    }
}
