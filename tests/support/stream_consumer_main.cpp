// The reference consumer of an event stream, as a program of its own (so that a test can kill it
// with SIGKILL): an HTTP server that checks each delivery's signature and processes each event
// once, in one SQLite transaction per delivery, over at-least-once delivery:
//   - `processed` keeps every event id it processed (a repeat is dropped and counted);
//   - `facts` is what the events mean to the application: an event adds its log's data under its
//     id, and an event a reorg removed (removed: true, id "<id>:removed") takes it away again;
//     each also forgets the other's id, so that a chain that goes back to a block it dropped
//     (the same ids again) is followed too.
// Every fifth delivery fails before processing (HTTP 500) and every seventh after it (processed,
// but answered 500, as if the answer were lost). Prints "port <n>" on stdout, then serves until
// killed.
//   stream_consumer <database> <secret>

#include "gateway/http/listener.hpp"
#include "gateway/streams/event_stream.hpp"

#include <sqlite3.h>
#include <boost/asio/io_context.hpp>
#include <boost/json/parse.hpp>

#include <chrono>
#include <cstdio>
#include <iostream>
#include <string>

namespace {

namespace json = boost::json;

sqlite3* db = nullptr;

void exec(const char* sql) {
    char* error = nullptr;
    if (sqlite3_exec(db, sql, nullptr, nullptr, &error) != SQLITE_OK) {
        std::fprintf(stderr, "stream_consumer: %s: %s\n", sql, error ? error : "?");
        sqlite3_free(error);
        std::exit(2);
    }
}

bool run(const char* sql, const std::string& a, const std::string& b = {}) {
    sqlite3_stmt* st = nullptr;
    sqlite3_prepare_v2(db, sql, -1, &st, nullptr);
    sqlite3_bind_text(st, 1, a.c_str(), -1, SQLITE_TRANSIENT);
    if (sqlite3_bind_parameter_count(st) > 1)
        sqlite3_bind_text(st, 2, b.c_str(), -1, SQLITE_TRANSIENT);
    const int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        std::fprintf(stderr, "stream_consumer: %s: %s\n", sql, sqlite3_errmsg(db));
        std::exit(2);
    }
    return sqlite3_changes(db) > 0;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 3) {
        std::fprintf(stderr, "usage: stream_consumer <database> <secret>\n");
        return 2;
    }
    const std::string secret = argv[2];
    if (sqlite3_open(argv[1], &db) != SQLITE_OK) return 2;
    exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;");
    exec(
        "CREATE TABLE IF NOT EXISTS processed (id TEXT PRIMARY KEY);"
        "CREATE TABLE IF NOT EXISTS facts (id TEXT PRIMARY KEY, data TEXT NOT NULL);"
        "CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, n INTEGER NOT NULL);");

    int deliveries = 0;  // the loop's thread only
    auto answer = [](unsigned status, std::string body) {
        gateway::http::Response r;
        r.status = status;
        r.body = std::move(body);
        return r;
    };
    auto handle = [&](const gateway::http::Request& request) {
        const std::string header(request.header("x-gateway-signature"));
        const auto comma = header.find(',');
        if (header.rfind("t=", 0) != 0 || comma == std::string::npos)
            return answer(401, "no signature");
        const std::int64_t t = std::stoll(header.substr(2, comma - 2));
        const auto now = std::chrono::duration_cast<std::chrono::seconds>(
                             std::chrono::system_clock::now().time_since_epoch())
                             .count();
        if (header != gateway::streams::signature(secret, t, request.body) ||
            std::llabs(now - t) > 300)
            return answer(401, "bad signature");
        const int n = ++deliveries;
        if (n % 5 == 0) return answer(500, "failed before processing");
        const json::value body = json::parse(request.body);
        exec("BEGIN IMMEDIATE;");
        for (const auto& e : body.at("events").as_array()) {
            const std::string id(e.at("id").as_string());
            if (!run("INSERT OR IGNORE INTO processed (id) VALUES (?1);", id)) {
                exec(
                    "INSERT INTO counters VALUES ('repeats', 1) ON CONFLICT (name) DO UPDATE SET "
                    "n = n + 1;");
                continue;
            }
            if (e.at("removed").as_bool()) {
                // Undone; should the chain bring the block back, its event is new again.
                const std::string original =
                    id.substr(0, id.size() - std::string(":removed").size());
                run("DELETE FROM facts WHERE id = ?1;", original);
                run("DELETE FROM processed WHERE id = ?1;", original);
                exec(
                    "INSERT INTO counters VALUES ('removed', 1) ON CONFLICT (name) DO UPDATE SET "
                    "n = n + 1;");
            } else {
                // Back after a removal (the chain came back to its block): its removal may come
                // again too.
                run("DELETE FROM processed WHERE id = ?1;", id + ":removed");
                run("INSERT INTO facts (id, data) VALUES (?1, ?2);", id,
                    std::string(e.at("log").at("data").as_string()));
            }
        }
        exec("COMMIT;");
        if (n % 7 == 0) return answer(500, "processed, answer lost");
        return answer(200, "{}");
    };
    boost::asio::io_context ioc;
    gateway::http::ListenerOptions options;
    options.name = "stream-consumer";
    options.endpoint = gateway::config::Endpoint{"127.0.0.1", 0};
    auto listener = gateway::http::make_listener(
        ioc, options,
        [&](gateway::http::Request& r) -> boost::asio::awaitable<gateway::http::Response> {
            co_return handle(r);
        },
        nullptr);
    listener->start();
    std::cout << "port " << listener->local_endpoint().port << std::endl;
    ioc.run();
}
