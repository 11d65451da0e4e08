#include "gateway/store/pg_leases.hpp"

namespace gateway::store::pg {

namespace {

std::string millis(std::chrono::milliseconds ttl) {
    return std::to_string(ttl.count());
}

}  // namespace

void Leases::create_schema() {
    c_.exec(
        "CREATE TABLE IF NOT EXISTS gateway_leases ("
        " name text PRIMARY KEY,"
        " owner text NOT NULL,"
        " token bigint NOT NULL,"
        " expires_at timestamptz NOT NULL)");
}

std::optional<std::uint64_t> Leases::acquire(const std::string& name, const std::string& owner,
                                             std::chrono::milliseconds ttl) {
    // One statement: two replicas asking at once are ordered by the row's lock, and the one that
    // finds it taken gets no row back.
    const Result r = c_.exec(
        "INSERT INTO gateway_leases (name, owner, token, expires_at)"
        " VALUES ($1, $2, 1, clock_timestamp() + $3 * interval '1 millisecond')"
        " ON CONFLICT (name) DO UPDATE SET owner = EXCLUDED.owner,"
        "  token = gateway_leases.token + 1, expires_at = EXCLUDED.expires_at"
        " WHERE gateway_leases.expires_at < clock_timestamp()"
        " RETURNING token",
        {name, owner, millis(ttl)});
    if (r.rows.empty() || !r.rows[0][0]) return std::nullopt;
    return std::stoull(*r.rows[0][0]);
}

bool Leases::renew(const std::string& name, const std::string& owner, std::uint64_t token,
                   std::chrono::milliseconds ttl) {
    return c_.exec(
                 "UPDATE gateway_leases"
                 " SET expires_at = clock_timestamp() + $4 * interval '1 millisecond'"
                 " WHERE name = $1 AND owner = $2 AND token = $3"
                 " AND expires_at >= clock_timestamp()",
                 {name, owner, std::to_string(token), millis(ttl)})
               .affected == 1;
}

void Leases::release(const std::string& name, const std::string& owner, std::uint64_t token) {
    c_.exec(
        "UPDATE gateway_leases SET expires_at = '-infinity'"
        " WHERE name = $1 AND owner = $2 AND token = $3",
        {name, owner, std::to_string(token)});
}

bool Leases::holds(const std::string& name, std::uint64_t token) {
    return !c_.exec(
                  "SELECT 1 FROM gateway_leases"
                  " WHERE name = $1 AND token = $2 AND expires_at >= clock_timestamp()",
                  {name, std::to_string(token)})
                .rows.empty();
}

}  // namespace gateway::store::pg
