#pragma once
// Leases in PostgreSQL with a fencing token (issue 19): one replica at a time owns a name (a
// chain's sender and its nonces, an event stream) until its lease expires, by the database's
// clock, so that replicas need not agree on time. Each new owner gets a larger token; a write
// made under a lease checks its token (holds()) in the same transaction, so that an owner that
// stalled past its expiry cannot write after the next one took over.

#include "gateway/store/pg_connection.hpp"

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

namespace gateway::store::pg {

class Leases {
public:
    explicit Leases(Connection& connection) : c_(connection) {}

    /// Creates the table when it is not there (idempotent).
    void create_schema();

    /// Takes `name` for `owner` for `ttl` when nobody holds it (never held, released, or
    /// expired): its new token. nullopt while another lease (this owner's included) is valid.
    std::optional<std::uint64_t> acquire(const std::string& name, const std::string& owner,
                                         std::chrono::milliseconds ttl);
    /// Extends a valid lease of this owner and token; false when it was lost (expired and taken,
    /// or expired: the owner must stop and acquire again).
    bool renew(const std::string& name, const std::string& owner, std::uint64_t token,
               std::chrono::milliseconds ttl);
    /// Gives it up at once (the token stays counted: the next owner's is larger).
    void release(const std::string& name, const std::string& owner, std::uint64_t token);
    /// Whether `token` is the valid lease of `name` now.
    bool holds(const std::string& name, std::uint64_t token);

private:
    Connection& c_;
};

}  // namespace gateway::store::pg
