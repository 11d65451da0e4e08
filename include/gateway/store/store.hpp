#pragma once
// The gateway's durable store: its schema version and the journal of transactions. One
// interface, one backend per database: SQLite (a file, one gateway) and PostgreSQL (a server,
// several gateways).

#include "gateway/config/config.hpp"
#include "gateway/store/journal.hpp"

#include <chrono>
#include <memory>
#include <string>

namespace gateway::store {

class Store : public Journal {
public:
    /// The schema version the database is at after migrations.
    virtual int schema_version() const = 0;
    /// Where the data lives, for logs: "sqlite:./data/gateway.db".
    virtual std::string describe() const = 0;
};

/// Opens (creating it and its folder when needed) the configured store and migrates its schema
/// to the newest version. Throws StoreError naming the path (a URL without its password) and the
/// reason.
std::unique_ptr<Store> open_store(const config::StoreConfig& config);

/// For migration tests: opens the database migrated up to `version` only (the methods of Store
/// expect the newest schema, so such a store is for raw SQL).
std::unique_ptr<Store> open_store_at_version(const config::StoreConfig& config, int version);

namespace detail {
std::unique_ptr<Store> open_sqlite(const std::string& path, int up_to);
/// `timeout` bounds the connection's set-up and a server that stops answering (TCP).
std::unique_ptr<Store> open_postgres(const std::string& url, std::chrono::milliseconds timeout,
                                     int up_to);
}  // namespace detail

}  // namespace gateway::store
