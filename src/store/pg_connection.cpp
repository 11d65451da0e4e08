#include "gateway/store/pg_connection.hpp"

#include <fmt/format.h>
#include <libpq-fe.h>

#include <poll.h>

#include <algorithm>
#include <cerrno>
#include <unordered_map>

namespace gateway::store::pg {

Failure classify(std::string_view sqlstate) {
    if (sqlstate.size() != 5) return Failure::other;
    // 08: connection exception; 57P01-57P03: the server shuts down or cannot take it now; 53300:
    // too many connections.
    if (sqlstate.starts_with("08") || sqlstate == "57P01" || sqlstate == "57P02" ||
        sqlstate == "57P03" || sqlstate == "53300")
        return Failure::connection;
    if (sqlstate.starts_with("23")) return Failure::conflict;
    if (sqlstate == "40001" || sqlstate == "40P01") return Failure::retry;
    return Failure::other;
}

namespace {

// libpq's message on one line (it ends its messages with a new line).
std::string message_of(const char* text) {
    std::string out = text ? text : "";
    while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
    std::replace(out.begin(), out.end(), '\n', ' ');
    return out;
}

struct ConnDeleter {
    void operator()(PGconn* c) const { PQfinish(c); }
};
struct ResultDeleter {
    void operator()(PGresult* r) const { PQclear(r); }
};

}  // namespace

struct Connection::Impl {
    std::string url;  // may hold a password: never in a message
    std::chrono::milliseconds timeout;
    std::unique_ptr<PGconn, ConnDeleter> conn;
    // Statements prepared on this session, by their text: their names.
    std::unordered_map<std::string, std::string> prepared;

    /// The result of what was just sent (`sent`: libpq took it), read until `deadline`; null when
    /// the connection failed (PQerrorMessage says why). Past the deadline: timed_out().
    PGresult* finish(bool sent, std::chrono::steady_clock::time_point deadline);
    [[noreturn]] void timed_out();

    // Checks that libpq reads the URL as meant; its `options`, to keep. Throws Error{connection}
    // without libpq's words.
    std::string read_url() const {
        char* error = nullptr;
        PQconninfoOption* parsed = PQconninfoParse(url.c_str(), &error);
        if (error) PQfreemem(error);  // it may quote the password
        if (!parsed)
            throw Error(Failure::connection, "",
                        "postgres: the store URL cannot be read (is a character of its password "
                        "not percent-encoded?); it is not shown");
        std::string options;
        bool odd = false;
        for (PQconninfoOption* o = parsed; o->keyword; ++o) {
            if (!o->val) continue;
            const std::string_view key = o->keyword, val = o->val;
            if (key == "options") options = o->val;
            // A '/' or '@' of a password that is not percent-encoded moves the rest of the URL
            // into the host, the port or the database's name.
            if (key == "port" && val.find_first_not_of("0123456789,") != std::string_view::npos)
                odd = true;
            if (key == "dbname" && val.find_first_of("@/:") != std::string_view::npos) odd = true;
            if (key == "host" && val.find('@') != std::string_view::npos) odd = true;
        }
        PQconninfoFree(parsed);
        if (odd)
            throw Error(Failure::connection, "",
                        "postgres: the store URL's port or database is not what a URL holds (is a "
                        "'/' or '@' of its password not percent-encoded?); it is not shown");
        return options;
    }

    void connect() {
        prepared.clear();
        // What libpq reads of the URL, checked before it connects: libpq's own messages about a
        // URL it cannot read quote the offending part, which may be the password.
        const std::string user_options = read_url();
        const std::string seconds =
            std::to_string(std::max<long long>(1, (timeout.count() + 999) / 1000));
        // A server that stops answering (a partition, a dead host) is noticed by TCP within the
        // timeout, not after the system's default of minutes: the journal then fails closed and
        // reconnects.
        const std::string ms = std::to_string(std::max<long long>(1000, timeout.count()));
        // The server's side: it notices a gateway that went silent (a dead host, a partition)
        // within about 15 s and ends its session, releasing what it held (locks); and no
        // statement or lock wait outlives the timeout (a stalled disk, a DBA's lock), so the
        // journal fails closed in time rather than hang. The URL's own options come first, ours
        // after them: on the same setting, ours hold.
        const std::string server_side = fmt::format(
            "{}{}-c tcp_keepalives_idle=5 -c tcp_keepalives_interval=2 -c tcp_keepalives_count=3 "
            "-c tcp_user_timeout={} -c statement_timeout={} -c lock_timeout={}",
            user_options, user_options.empty() ? "" : " ", ms, ms, ms);
        // The URL as "dbname", expanded by libpq (expand_dbname = 1), and a connect timeout of
        // our own whatever the URL says.
        const char* keys[] = {"dbname",           "connect_timeout",
                              "application_name", "keepalives",
                              "keepalives_idle",  "keepalives_interval",
                              "keepalives_count", "tcp_user_timeout",
                              "options",          nullptr};
        const char* values[] = {url.c_str(), seconds.c_str(), "chain-gateway",     "1",    "5", "2",
                                "3",         ms.c_str(),      server_side.c_str(), nullptr};
        conn.reset(PQconnectdbParams(keys, values, 1));
        if (!conn) throw Error(Failure::connection, "", "postgres: out of memory");
        if (PQstatus(conn.get()) != CONNECTION_OK)
            throw Error(Failure::connection, "",
                        "postgres: cannot connect: " + message_of(PQerrorMessage(conn.get())));
        // Statements are sent without blocking (finish() waits for them until a deadline).
        if (PQsetnonblocking(conn.get(), 1) != 0)
            throw Error(Failure::connection, "", "postgres: cannot make the session nonblocking");
        // The server's notices ("relation already exists, skipping") are not the gateway's to
        // print on stderr.
        PQsetNoticeProcessor(
            conn.get(), [](void*, const char*) {}, nullptr);
    }
};

std::string valid_text(std::string_view v) {
    const auto* p = reinterpret_cast<const unsigned char*>(v.data());
    const std::size_t n = v.size();
    // The length of the valid character at i, or 0.
    const auto valid = [&](std::size_t i) -> std::size_t {
        const unsigned char c = p[i];
        if (c >= 0x01 && c < 0x80) return 1;
        std::size_t len = 0;
        unsigned char lo = 0x80, hi = 0xbf;
        if (c >= 0xc2 && c <= 0xdf)
            len = 2;
        else if (c == 0xe0)
            len = 3, lo = 0xa0;
        else if (c >= 0xe1 && c <= 0xec)
            len = 3;
        else if (c == 0xed)
            len = 3, hi = 0x9f;
        else if (c >= 0xee && c <= 0xef)
            len = 3;
        else if (c == 0xf0)
            len = 4, lo = 0x90;
        else if (c >= 0xf1 && c <= 0xf3)
            len = 4;
        else if (c == 0xf4)
            len = 4, hi = 0x8f;
        else
            return 0;
        if (i + len > n || p[i + 1] < lo || p[i + 1] > hi) return 0;
        for (std::size_t k = 2; k < len; ++k)
            if (p[i + k] < 0x80 || p[i + k] > 0xbf) return 0;
        return len;
    };
    std::size_t i = 0;
    while (i < n && valid(i)) i += valid(i);
    if (i == n) return std::string(v);  // the usual case
    std::string out(v, 0, i);
    while (i < n) {
        if (const std::size_t len = valid(i)) {
            out.append(v, i, len);
            i += len;
        } else {
            out += "\xEF\xBF\xBD";
            ++i;
        }
    }
    return out;
}

std::string describe(const std::string& url) {
    char* error = nullptr;
    PQconninfoOption* options = PQconninfoParse(url.c_str(), &error);
    if (error) PQfreemem(error);
    if (!options) return "postgresql (unparsable URL)";
    std::string user, host, port, db;
    for (PQconninfoOption* o = options; o->keyword; ++o) {
        if (!o->val) continue;
        const std::string_view key = o->keyword;
        if (key == "user") user = o->val;
        if (key == "host" || (key == "hostaddr" && host.empty())) host = o->val;
        if (key == "port") port = o->val;
        if (key == "dbname") db = o->val;
    }
    PQconninfoFree(options);
    // A password's '/' or '@' not percent-encoded lands in the port or the database's name.
    if (port.find_first_not_of("0123456789,") != std::string::npos ||
        db.find_first_of("@/:") != std::string::npos || host.find('@') != std::string::npos)
        return "postgresql (a URL libpq reads oddly: not shown)";
    return fmt::format("postgresql://{}{}{}{}/{}", user, user.empty() ? "" : "@",
                       host.empty() ? "localhost" : host, port.empty() ? "" : ":" + port, db);
}

Connection::Connection(std::string url, std::chrono::milliseconds connect_timeout)
    : impl_(std::make_unique<Impl>()) {
    impl_->url = std::move(url);
    impl_->timeout = connect_timeout;
    impl_->connect();
}

Connection::~Connection() = default;

bool Connection::ok() const {
    return impl_->conn && PQstatus(impl_->conn.get()) == CONNECTION_OK;
}

bool Connection::in_transaction() const {
    if (!impl_->conn) return false;
    const PGTransactionStatusType t = PQtransactionStatus(impl_->conn.get());
    return t == PQTRANS_INTRANS || t == PQTRANS_INERROR || t == PQTRANS_ACTIVE;
}

void Connection::reconnect() {
    impl_->connect();
}

namespace {

using Clock = std::chrono::steady_clock;

// Waits until the session's socket can be read (and written, with `write`) or `deadline`
// passes (false).
bool wait_socket(PGconn* c, bool write, Clock::time_point deadline) {
    for (;;) {
        const auto left =
            std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
        if (left.count() <= 0) return false;
        pollfd p{PQsocket(c), static_cast<short>(POLLIN | (write ? POLLOUT : 0)), 0};
        const int r = ::poll(&p, 1, static_cast<int>(std::min<long long>(left.count(), 60'000)));
        if (r > 0) return true;
        if (r < 0 && errno != EINTR) return true;  // libpq's next call reports the socket's error
    }
}

}  // namespace

// Every statement is sent without blocking and waited for until the deadline: a server that
// takes the connection but never answers (a frozen process, a proxy that hangs), which neither
// TCP's timeouts nor the server's statement_timeout notice, closes the session rather than hang
// the journal's thread. What the statement did is then unknown, as when a connection drops.
PGresult* Connection::Impl::finish(bool sent, Clock::time_point deadline) {
    PGconn* c = conn.get();
    if (!sent) return nullptr;  // the caller reads PQerrorMessage
    int flushed;
    while ((flushed = PQflush(c)) == 1)
        if (!wait_socket(c, true, deadline)) timed_out();
    if (flushed < 0) return nullptr;
    // The first failure's result, else the last one (as PQexec answers several statements).
    std::unique_ptr<PGresult, ResultDeleter> kept;
    for (;;) {
        while (PQisBusy(c)) {
            if (!wait_socket(c, false, deadline)) timed_out();
            if (!PQconsumeInput(c)) return nullptr;
        }
        PGresult* next = PQgetResult(c);
        if (!next) break;
        const auto failed = [](const PGresult* r) {
            const ExecStatusType st = PQresultStatus(r);
            return st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK;
        };
        if (kept && failed(kept.get()))
            PQclear(next);
        else
            kept.reset(next);
    }
    return kept.release();
}

void Connection::Impl::timed_out() {
    conn.reset();  // the server sees the connection close and rolls its transaction back
    prepared.clear();
    throw Error(Failure::connection, "",
                fmt::format("postgres: the database did not answer within {} ms (twice "
                            "store.timeout_ms); the session is closed",
                            2 * std::max<long long>(timeout.count(), 1000)));
}

Result Connection::exec(std::string_view sql, const std::vector<Param>& params) {
    PGconn* c = impl_->conn.get();
    if (!c || PQstatus(c) != CONNECTION_OK)
        throw Error(Failure::connection, "", "postgres: the connection is down");
    // Twice the server's own timeouts (statement_timeout, lock_timeout: the timeout), so that a
    // server that answers says why itself.
    const auto deadline =
        Clock::now() + 2 * std::max(impl_->timeout, std::chrono::milliseconds(1000));
    const std::string text(sql);
    std::unique_ptr<PGresult, ResultDeleter> r;
    if (params.empty()) {
        r.reset(impl_->finish(PQsendQuery(c, text.c_str()) == 1, deadline));
    } else {
        std::vector<const char*> values;
        values.reserve(params.size());
        for (const Param& p : params) {
            // libpq takes a parameter as a C string: one with a NUL would end there, silently
            // (a client's name cut short is another client's).
            if (p && p->find('\0') != std::string::npos)
                throw Error(Failure::other, "",
                            "postgres: a value holds a NUL byte, which PostgreSQL's text cannot");
            values.push_back(p ? p->c_str() : nullptr);
        }
        auto it = impl_->prepared.find(text);
        if (it == impl_->prepared.end()) {
            const std::string name = fmt::format("s{}", impl_->prepared.size());
            r.reset(impl_->finish(PQsendPrepare(c, name.c_str(), text.c_str(),
                                                static_cast<int>(params.size()), nullptr) == 1,
                                  deadline));
            if (r && PQresultStatus(r.get()) == PGRES_COMMAND_OK)
                it = impl_->prepared.emplace(text, name).first;
        }
        if (it != impl_->prepared.end())
            r.reset(impl_->finish(
                PQsendQueryPrepared(c, it->second.c_str(), static_cast<int>(params.size()),
                                    values.data(), nullptr, nullptr, 0) == 1,
                deadline));
    }
    const ExecStatusType status = r ? PQresultStatus(r.get()) : PGRES_FATAL_ERROR;
    if (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK) {
        Result out;
        const int rows = PQntuples(r.get());
        const int cols = PQnfields(r.get());
        out.rows.reserve(static_cast<std::size_t>(rows));
        for (int i = 0; i < rows; ++i) {
            auto& row = out.rows.emplace_back();
            row.reserve(static_cast<std::size_t>(cols));
            for (int j = 0; j < cols; ++j)
                row.emplace_back(
                    PQgetisnull(r.get(), i, j)
                        ? Param()
                        : Param(std::string(PQgetvalue(r.get(), i, j),
                                            static_cast<std::size_t>(PQgetlength(r.get(), i, j)))));
        }
        const char* affected = PQcmdTuples(r.get());
        out.affected = affected && *affected ? std::stoull(affected) : 0;
        return out;
    }
    // The server's SQLSTATE when it answered; none when the connection itself failed.
    const char* state = r ? PQresultErrorField(r.get(), PG_DIAG_SQLSTATE) : nullptr;
    const std::string sqlstate = state ? state : "";
    const std::string message = message_of(r ? PQresultErrorMessage(r.get()) : PQerrorMessage(c));
    const Failure failure = PQstatus(c) != CONNECTION_OK ? Failure::connection
                            : sqlstate.empty()           ? Failure::other
                                                         : classify(sqlstate);
    throw Error(failure, sqlstate,
                fmt::format("postgres: {}", message.empty() ? "the statement failed" : message));
}

}  // namespace gateway::store::pg
