#pragma once
// The gateway's durable store. Today it holds only its own schema version: the journal of
// transactions (durable writes) builds on it. One interface, one backend per database.

#include "gateway/config/config.hpp"

#include <memory>
#include <string>

namespace gateway::store {

class Store {
public:
    virtual ~Store() = default;
    /// The schema version the database is at after migrations.
    virtual int schema_version() const = 0;
    /// Where the data lives, for logs: "sqlite:./data/gateway.db".
    virtual std::string describe() const = 0;
};

/// Opens (creating it and its folder when needed) the configured store and migrates its schema
/// to the newest version. Throws std::runtime_error naming the path and the reason (start-up only).
std::unique_ptr<Store> open_store(const config::StoreConfig& config);

}  // namespace gateway::store
