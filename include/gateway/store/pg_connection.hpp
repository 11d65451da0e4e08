#pragma once
// One PostgreSQL session through libpq, for the PostgreSQL journal (issue 19): statements with
// parameters, and each failure sorted by what its caller does about it (catalog rows E3, A3: a
// lost connection makes writes fail closed and is retried, a conflict is an answer).

#include "gateway/store/journal.hpp"

#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace gateway::store::pg {

/// What a failure means to the caller.
enum class Failure {
    connection,  ///< the server is unreachable, went away or is shutting down: retry later
    conflict,    ///< a constraint refused the row (unique, foreign key, check): an answer
    retry,       ///< a serialization failure or a deadlock: the transaction may run again
    other,       ///< a bad statement or data: a bug, not retried
};

/// A StoreError: the journal's callers and its service treat it as any database's failure.
class Error : public StoreError {
public:
    Error(Failure failure, std::string sqlstate, const std::string& message)
        : StoreError(message), failure_(failure), sqlstate_(std::move(sqlstate)) {}
    Failure failure() const { return failure_; }
    /// The server's SQLSTATE ("23505"); empty when the failure is the connection's own.
    const std::string& sqlstate() const { return sqlstate_; }

private:
    Failure failure_;
    std::string sqlstate_;
};

/// `url` without its password, for logs: postgresql://user@host:port/db (what libpq parses of
/// it); "postgresql (unparsable URL)" when libpq cannot parse it.
std::string describe(const std::string& url);

/// `text` as PostgreSQL's text takes it: valid UTF-8 without NUL; any other byte becomes U+FFFD.
/// For what people read (a reason), which may carry what a node or a signer answered.
std::string valid_text(std::string_view text);

/// The failure a SQLSTATE stands for (class 08 and the 57P shutdowns: connection; class 23:
/// conflict; 40001 and 40P01: retry).
Failure classify(std::string_view sqlstate);

/// A statement's rows (text format: NULL is nullopt) and the rows it changed.
struct Result {
    std::vector<std::vector<std::optional<std::string>>> rows;
    std::size_t affected = 0;
};

using Param = std::optional<std::string>;  ///< text format; nullopt is NULL

class Connection {
public:
    /// Connects to `url` (a libpq URL or "key=value" string: postgresql://user@host:port/db,
    /// with sslmode and the rest as libpq takes them). Throws Error{connection} with libpq's
    /// message, which names the host and the user, never the password; `url` is not repeated.
    Connection(std::string url, std::chrono::milliseconds connect_timeout);
    ~Connection();
    Connection(const Connection&) = delete;
    Connection& operator=(const Connection&) = delete;

    /// Runs one statement (several, without parameters). Throws Error; a failure of the
    /// connection leaves it broken until reconnect(). A statement with parameters is prepared on
    /// the server the first time its text is run on this session, and executed by name after.
    Result exec(std::string_view sql, const std::vector<Param>& params = {});
    /// Whether the session is up, as libpq last saw it.
    bool ok() const;
    /// Whether a transaction is open on the session (an aborted one included).
    bool in_transaction() const;
    /// Connects again (after the server came back). Throws as the constructor does.
    void reconnect();

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace gateway::store::pg
