// `chain-gateway migrate-store`: a SQLite journal moved into a new PostgreSQL journal. Rows are
// read from SQLite by a cursor and written in multi-row INSERTs, so a journal of millions of rows
// never sits in memory; everything goes in one PostgreSQL transaction, checked before it commits.

#include "gateway/store/migrate_store.hpp"

#include "gateway/store/pg_connection.hpp"
#include "gateway/store/store.hpp"

#include <fmt/format.h>
#include <sqlite3.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>

namespace gateway::store {
namespace {

// How a column is written to PostgreSQL (text-format parameters).
enum class Kind { integer, text, bytes, boolean };

struct Column {
    const char* sqlite;  // its expression in SQLite
    const char* pg;      // its name in PostgreSQL
    Kind kind;
};

struct Table {
    const char* name;
    std::vector<Column> columns;
    const char* order;  // SQLite's ORDER BY: ids in the order they were given
    // Its identity column in PostgreSQL (nullptr: none), written as it was in SQLite.
    const char* identity;
    // The identity's SQLite expression, for its largest value.
    const char* sqlite_id;
};

// Parents before the rows that refer to them (foreign keys). managed_transactions' seq is SQLite's
// rowid: both order managed transactions by insertion.
const std::vector<Table>& tables() {
    using K = Kind;
    static const std::vector<Table> all = {
        {"transactions",
         {{"id", "id", K::integer},
          {"hash", "hash", K::text},
          {"chain", "chain", K::text},
          {"chain_id", "chain_id", K::integer},
          {"sender", "sender", K::text},
          {"nonce", "nonce", K::integer},
          {"raw", "raw", K::bytes},
          {"state", "state", K::text},
          {"reason", "reason", K::text},
          {"created_ms", "created_ms", K::integer},
          {"updated_ms", "updated_ms", K::integer},
          {"broadcasts", "broadcasts", K::integer},
          {"block_hash", "block_hash", K::text},
          {"block_number", "block_number", K::integer},
          {"parent", "parent", K::text},
          {"client", "client", K::text},
          {"finalized", "finalized", K::boolean},
          {"source", "source", K::text}},
         "id",
         "id",
         "id"},
        {"transaction_events",
         {{"id", "id", K::integer},
          {"tx", "tx", K::integer},
          {"state", "state", K::text},
          {"reason", "reason", K::text},
          {"at_ms", "at_ms", K::integer}},
         "id",
         "id",
         "id"},
        {"transaction_sidecars",
         {{"tx", "tx", K::integer}, {"network", "network", K::bytes}},
         "tx",
         nullptr,
         "tx"},
        {"managed_transactions",
         {{"rowid", "seq", K::integer},
          {"id", "id", K::text},
          {"chain", "chain", K::text},
          {"sender", "sender", K::text},
          {"request", "request", K::text},
          {"idempotency_key", "idempotency_key", K::text},
          {"nonce", "nonce", K::integer},
          {"state", "state", K::text},
          {"reason", "reason", K::text},
          {"created_ms", "created_ms", K::integer},
          {"updated_ms", "updated_ms", K::integer},
          {"attempts", "attempts", K::integer},
          {"hash", "hash", K::text},
          {"client", "client", K::text},
          {"value", "value", K::bytes},
          {"spend_ms", "spend_ms", K::integer}},
         "rowid",
         "seq",
         "rowid"},
        {"managed_events",
         {{"id", "id", K::integer},
          {"managed_id", "managed_id", K::text},
          {"state", "state", K::text},
          {"reason", "reason", K::text},
          {"at_ms", "at_ms", K::integer}},
         "id",
         "id",
         "id"},
        {"nonces",
         {{"chain", "chain", K::text}, {"sender", "sender", K::text}, {"next", "next", K::integer}},
         "chain, sender",
         nullptr,
         nullptr},
        {"streams",
         {{"id", "id", K::text},
          {"chain", "chain", K::text},
          {"next_block", "next_block", K::integer},
          {"paused", "paused", K::boolean},
          {"updated_ms", "updated_ms", K::integer},
          {"cursor", "cursor", K::text},
          {"definition", "definition", K::text}},
         "id",
         nullptr,
         nullptr},
    };
    return all;
}

// A batch is written when it has this many rows, or this many bytes of parameters (blob
// transactions' network forms are up to ~1 MB each, twice that in hex).
constexpr std::size_t kBatchRows = 500;
constexpr std::size_t kBatchBytes = 8 * 1024 * 1024;

struct CloseDb {
    void operator()(sqlite3* db) const { sqlite3_close_v2(db); }
};
struct Finalize {
    void operator()(sqlite3_stmt* s) const { sqlite3_finalize(s); }
};
using Db = std::unique_ptr<sqlite3, CloseDb>;
using Statement = std::unique_ptr<sqlite3_stmt, Finalize>;

class Sqlite {
public:
    // Opens an existing file (never creates one).
    Sqlite(const std::string& path, int flags) : path_(path) {
        sqlite3* db = nullptr;
        const int rc = sqlite3_open_v2(path.c_str(), &db, flags, nullptr);
        db_.reset(db);
        if (rc != SQLITE_OK)
            throw StoreError(fmt::format("cannot open the SQLite journal {}: {}", path,
                                         db ? sqlite3_errmsg(db) : "out of memory"));
        sqlite3_busy_timeout(db, 5000);
    }

    Statement prepare(const std::string& sql) {
        sqlite3_stmt* s = nullptr;
        if (sqlite3_prepare_v2(db_.get(), sql.c_str(), -1, &s, nullptr) != SQLITE_OK) fail(sql);
        return Statement(s);
    }

    // The next row: false at the end.
    bool step(sqlite3_stmt* s) {
        const int rc = sqlite3_step(s);
        if (rc == SQLITE_ROW) return true;
        if (rc == SQLITE_DONE) return false;
        fail(sqlite3_sql(s));
    }

    void exec(const char* sql) {
        if (sqlite3_exec(db_.get(), sql, nullptr, nullptr, nullptr) != SQLITE_OK) fail(sql);
    }

    // One integer of a one-row query; nullopt when it has no row or a NULL.
    std::optional<std::int64_t> integer(const std::string& sql) {
        const Statement s = prepare(sql);
        if (!step(s.get()) || sqlite3_column_type(s.get(), 0) == SQLITE_NULL) return std::nullopt;
        return sqlite3_column_int64(s.get(), 0);
    }

    bool has_table(const char* name) {
        return integer(
                   fmt::format(
                       "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = '{}'",
                       name))
                   .value_or(0) > 0;
    }

    [[noreturn]] void fail(const char* sql) {
        throw StoreError(fmt::format("SQLite journal {}: {} (in: {})", path_,
                                     sqlite3_errmsg(db_.get()), sql ? sql : ""));
    }
    [[noreturn]] void fail(const std::string& sql) { fail(sql.c_str()); }

private:
    std::string path_;
    Db db_;
};

std::string hex(const void* data, std::size_t size) {
    static constexpr char kHex[] = "0123456789abcdef";
    const auto* p = static_cast<const std::uint8_t*>(data);
    std::string out = "\\x";
    out.reserve(2 + size * 2);
    for (std::size_t i = 0; i < size; ++i) {
        out.push_back(kHex[p[i] >> 4]);
        out.push_back(kHex[p[i] & 15]);
    }
    return out;
}

// A column of the row under `s`, as PostgreSQL's text format takes it. What SQLite's loose types
// would let through (text in an integer column) is refused rather than guessed at.
pg::Param cell(sqlite3_stmt* s, int i, const Table& table, const Column& column, std::size_t row) {
    const int type = sqlite3_column_type(s, i);
    if (type == SQLITE_NULL) return std::nullopt;
    switch (column.kind) {
        case Kind::integer:
        case Kind::boolean:
            if (type != SQLITE_INTEGER)
                throw StoreError(fmt::format(
                    "SQLite journal: {}.{} holds a value that is not an integer (row {} by {}): "
                    "nothing copied",
                    table.name, column.sqlite, row + 1, table.order));
            if (column.kind == Kind::boolean)
                return std::string(sqlite3_column_int64(s, i) != 0 ? "true" : "false");
            return std::to_string(sqlite3_column_int64(s, i));
        case Kind::bytes: {
            // Read as a blob whatever SQLite holds: the bytes it was given.
            const void* data = sqlite3_column_blob(s, i);
            return hex(data, static_cast<std::size_t>(sqlite3_column_bytes(s, i)));
        }
        case Kind::text: {
            const auto* data = reinterpret_cast<const char*>(sqlite3_column_text(s, i));
            std::string text(data, static_cast<std::size_t>(sqlite3_column_bytes(s, i)));
            // A reason, for people, that SQLite kept whatever its bytes (what a node or a signer
            // answered) is kept as the PostgreSQL journal keeps one: its bytes that are not UTF-8
            // become U+FFFD.
            if (column.pg == std::string_view("reason")) return pg::valid_text(text);
            // A parameter goes to libpq as a C string: it would end at the NUL, silently.
            if (text.find('\0') != std::string::npos)
                throw StoreError(fmt::format(
                    "SQLite journal: {}.{} holds text with a NUL byte, which PostgreSQL's text "
                    "cannot hold (row {} by {}): nothing copied",
                    table.name, column.sqlite, row + 1, table.order));
            return text;
        }
    }
    return std::nullopt;
}

// INSERT INTO <table> (<columns>) [OVERRIDING SYSTEM VALUE] VALUES ($1, ...), ... for `rows` rows.
std::string insert_sql(const Table& table, std::size_t rows) {
    std::string names;
    for (const Column& c : table.columns) names += (names.empty() ? "" : ", ") + std::string(c.pg);
    std::string sql = fmt::format("INSERT INTO {} ({}){} VALUES ", table.name, names,
                                  table.identity ? " OVERRIDING SYSTEM VALUE" : "");
    std::size_t n = 0;
    for (std::size_t r = 0; r < rows; ++r) {
        sql += r == 0 ? "(" : ", (";
        for (std::size_t c = 0; c < table.columns.size(); ++c)
            sql += fmt::format("{}${}", c == 0 ? "" : ", ", ++n);
        sql += ")";
    }
    return sql;
}

std::int64_t pg_integer(pg::Connection& db, const std::string& sql) {
    const pg::Result r = db.exec(sql);
    if (r.rows.empty() || r.rows[0].empty() || !r.rows[0][0]) return 0;
    return std::stoll(*r.rows[0][0]);
}

// Copies one table; the rows copied.
std::size_t copy_table(Sqlite& from, pg::Connection& to, const Table& table,
                       const MigrationOptions& options) {
    std::string select;
    for (const Column& c : table.columns)
        select += (select.empty() ? "" : ", ") + std::string(c.sqlite);
    const Statement s =
        from.prepare(fmt::format("SELECT {} FROM {} ORDER BY {}", select, table.name, table.order));
    const std::string full_batch = insert_sql(table, kBatchRows);
    std::vector<pg::Param> params;
    std::size_t batch_rows = 0, batch_bytes = 0, copied = 0;
    const auto flush = [&] {
        if (batch_rows == 0) return;
        try {
            to.exec(batch_rows == kBatchRows ? full_batch : insert_sql(table, batch_rows), params);
        } catch (const pg::Error& e) {
            // Which rows PostgreSQL refused (text it cannot hold, a row whose parent is missing).
            throw StoreError(fmt::format("copying {} (rows {} to {} by {}): {}", table.name,
                                         copied + 1, copied + batch_rows, table.order, e.what()));
        }
        copied += batch_rows;
        params.clear();
        batch_rows = batch_bytes = 0;
        if (options.on_progress) options.on_progress(table.name, copied);
    };
    while (from.step(s.get())) {
        for (std::size_t c = 0; c < table.columns.size(); ++c) {
            params.push_back(
                cell(s.get(), static_cast<int>(c), table, table.columns[c], copied + batch_rows));
            if (params.back()) batch_bytes += params.back()->size();
        }
        if (++batch_rows == kBatchRows || batch_bytes >= kBatchBytes) flush();
    }
    flush();
    return copied;
}

// Which of the tables a gateway writes to already hold rows: "" when none does.
std::string in_use(pg::Connection& db) {
    std::string held;
    for (const char* t : {"transactions", "managed_transactions", "nonces", "streams"})
        if (pg_integer(db, fmt::format("SELECT count(*) FROM (SELECT 1 FROM {} LIMIT 1) AS t", t)))
            held += (held.empty() ? "" : ", ") + std::string(t);
    return held;
}

}  // namespace

MigrationSummary migrate_store(const std::string& sqlite_path, const std::string& postgres_url,
                               const MigrationOptions& options) {
    const auto started = std::chrono::steady_clock::now();
    MigrationSummary summary;
    summary.from = "sqlite:" + sqlite_path;

    // open_store would create a missing file, or add the journal's tables to any SQLite file:
    // this must be a journal already.
    std::error_code ec;
    if (!std::filesystem::is_regular_file(sqlite_path, ec))
        throw StoreError(
            fmt::format("no SQLite journal at {}: the file does not exist", sqlite_path));
    {
        Sqlite probe(sqlite_path, SQLITE_OPEN_READONLY);
        if (!probe.has_table("schema_version") || !probe.has_table("transactions"))
            throw StoreError(
                fmt::format("{} is not a chain-gateway journal (no schema_version or "
                            "transactions table)",
                            sqlite_path));
        summary.sqlite_version_before = static_cast<int>(
            probe.integer("SELECT version FROM schema_version LIMIT 1").value_or(0));
    }

    // PostgreSQL first: a journal in use is refused before the SQLite file is migrated. Opened as
    // a gateway opens it, so the schema is there and its owner lock is ours until we return.
    config::StoreConfig pg_config;
    pg_config.backend = "postgres";
    pg_config.url = postgres_url;
    pg_config.timeout = options.timeout;
    summary.to = "postgres:" + pg::describe(postgres_url);
    std::unique_ptr<Store> owner;
    try {
        owner = open_store(pg_config);
    } catch (const StoreError& e) {
        throw StoreError(fmt::format("cannot open the PostgreSQL journal: {}", e.what()));
    }
    if (!owner->owns())
        throw StoreError(fmt::format(
            "cannot open the PostgreSQL journal: {}: another gateway owns this journal; stop every "
            "gateway on it first",
            summary.to));
    // The rows go through a session of their own: the owner's session only holds the lock.
    pg::Connection to(postgres_url, options.timeout);
    if (const std::string held = in_use(to); !held.empty())
        throw StoreError(fmt::format(
            "the PostgreSQL journal {} is not empty (it holds rows in: {}): migrate-store only "
            "moves a journal into an empty one, never merges into a journal in use; nothing was "
            "copied",
            pg::describe(postgres_url), held));

    // The SQLite journal at the newest schema, as a gateway of this build would have it.
    {
        config::StoreConfig sqlite_config;
        sqlite_config.backend = "sqlite";
        sqlite_config.path = sqlite_path;
        summary.schema_version = open_store(sqlite_config)->schema_version();
        if (owner->schema_version() != summary.schema_version)
            throw StoreError(fmt::format(
                "the journals' schema versions differ (SQLite {}, PostgreSQL {}): nothing copied",
                summary.schema_version, owner->schema_version()));
    }

    // A write transaction on SQLite that is never used to write: every row is read from one
    // snapshot, and a gateway still running against the file cannot commit while the rows are
    // copied (it should have been stopped; its writes fail rather than go missing unseen).
    // Rolled back when `from` closes.
    Sqlite from(sqlite_path, SQLITE_OPEN_READWRITE);
    try {
        from.exec("BEGIN IMMEDIATE");
    } catch (const StoreError& e) {
        throw StoreError(
            fmt::format("{}: is a gateway still running against it? Stop it first", e.what()));
    }

    try {
        to.exec("BEGIN");
        // Checked again inside the transaction: what is committed was empty when it began.
        if (const std::string held = in_use(to); !held.empty())
            throw StoreError(fmt::format("the PostgreSQL journal {} is no longer empty ({})",
                                         pg::describe(postgres_url), held));
        for (const Table& table : tables()) {
            const std::size_t rows = copy_table(from, to, table, options);
            summary.tables.push_back({table.name, rows});

            // What was copied is what SQLite holds: the counts, and the largest ids (with them the
            // change numbers event streams' cursors count).
            const auto sqlite_count =
                from.integer(fmt::format("SELECT count(*) FROM {}", table.name)).value_or(0);
            const auto pg_count =
                pg_integer(to, fmt::format("SELECT count(*) FROM {}", table.name));
            if (sqlite_count != pg_count || static_cast<std::int64_t>(rows) != pg_count)
                throw StoreError(fmt::format(
                    "{}: SQLite holds {} rows, PostgreSQL {} after copying {}: nothing copied",
                    table.name, sqlite_count, pg_count, rows));
            if (!table.sqlite_id) continue;
            const auto sqlite_max =
                from.integer(fmt::format("SELECT max({}) FROM {}", table.sqlite_id, table.name))
                    .value_or(0);
            const char* pg_id = table.identity ? table.identity : table.sqlite_id;
            const auto pg_max =
                pg_integer(to, fmt::format("SELECT max({}) FROM {}", pg_id, table.name));
            if (sqlite_max != pg_max)
                throw StoreError(fmt::format(
                    "{}: the largest {} is {} in SQLite, {} in PostgreSQL: nothing copied",
                    table.name, pg_id, sqlite_max, pg_max));
            if (!table.identity) continue;

            // New rows get ids past every one SQLite gave: past its largest, and for the
            // AUTOINCREMENT tables (the events) past the largest it ever gave, deleted rows'
            // included, so that a change number a stream's cursor has read is never given again.
            std::int64_t last = sqlite_max;
            if (from.has_table("sqlite_sequence"))
                last =
                    std::max(last, from.integer(fmt::format("SELECT seq FROM sqlite_sequence WHERE "
                                                            "name = '{}'",
                                                            table.name))
                                       .value_or(0));
            to.exec(fmt::format("SELECT setval(pg_get_serial_sequence('{}', '{}'), {}, false)",
                                table.name, table.identity, last + 1));
        }
        to.exec("COMMIT");
    } catch (...) {
        try {
            to.exec("ROLLBACK");
        } catch (const StoreError&) {
            // The session is gone, and its transaction with it.
        }
        throw;
    }
    summary.seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    return summary;
}

}  // namespace gateway::store
