#pragma once
// The SQLite journal's schema: its migrations, each one version up, in one transaction. The
// statements only: src/store/sqlite_store.cpp runs them.

namespace gateway::store::sqlite_schema {

/// The schema version this build migrates to (the same numbers as PostgreSQL's).
inline constexpr int kVersion = 14;

/// kMigrations[n] makes version n + 1.
extern const char* const kMigrations[kVersion];

}  // namespace gateway::store::sqlite_schema
