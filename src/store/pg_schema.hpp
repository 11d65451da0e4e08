#pragma once
// The PostgreSQL journal's schema: what a new journal is created with, and the migrations after
// it. The statements only: src/store/pg_store.cpp runs them (under its migration lock).

namespace gateway::store::pg_schema {

// The schema version this build migrates to: the same numbers as SQLite's. A new PostgreSQL
// journal is created at version 13 in one step (SQLite's first twelve versions moved rows of
// databases that no PostgreSQL journal ever had); a migration after 13 is written for both.
inline constexpr int kVersion = 14;

/// Version 13 in one step (tables and indexes).
extern const char* const kSchema13;
/// The migrations after 13, as SQLite's: kAfter13[0] makes version 14.
extern const char* const kAfter13[kVersion - 13];

}  // namespace gateway::store::pg_schema
