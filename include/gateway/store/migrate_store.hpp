#pragma once
// `chain-gateway migrate-store`: moves a SQLite journal into a new PostgreSQL journal, every row
// as it is (ids and change numbers kept, so that event streams' cursors stay valid), in one
// PostgreSQL transaction, then checks that both hold the same.

#include <chrono>
#include <cstddef>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace gateway::store {

/// One table's rows copied.
struct MigratedTable {
    std::string name;
    std::size_t rows = 0;
};

struct MigrationSummary {
    std::string from;  ///< "sqlite:<path>"
    std::string to;    ///< "postgres:<url without its password>"
    /// The SQLite file's schema version before it was opened; below the newest, open_store
    /// migrated it first.
    int sqlite_version_before = 0;
    int schema_version = 0;             ///< both journals' after
    std::vector<MigratedTable> tables;  ///< in the order they were copied
    double seconds = 0;                 ///< the whole move, opening both included
};

struct MigrationOptions {
    /// How long to wait for the PostgreSQL server and for the journal's owner lock (a gateway
    /// that owns the journal makes the move fail after this long).
    std::chrono::milliseconds timeout{5'000};
    /// Called after every batch written, with the table and its rows copied so far: progress for
    /// a person watching a long move.
    std::function<void(std::string_view table, std::size_t rows)> on_progress;
};

/// Copies the SQLite journal at `sqlite_path` into the PostgreSQL database at `postgres_url`.
///
/// The SQLite file must be a chain-gateway journal (it is never created); an older schema is
/// migrated to the newest first, as a gateway would on start; its rows are not changed. The
/// PostgreSQL journal is opened as a gateway opens it (its schema created, its owner lock held
/// until the move ends, so no gateway writes to it meanwhile) and must hold no transaction,
/// managed transaction, nonce or stream: a move never merges into a journal in use. Every row is
/// copied in one PostgreSQL transaction, in batches read from SQLite by a cursor, then the
/// counts and largest ids of every table are compared before it commits: all or nothing.
///
/// Throws StoreError saying why (with the URL never holding its password); nothing was copied
/// then.
MigrationSummary migrate_store(const std::string& sqlite_path, const std::string& postgres_url,
                               const MigrationOptions& options = {});

}  // namespace gateway::store
