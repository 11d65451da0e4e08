// The journal in PostgreSQL (issue 19): the same tables as SQLite's, for several gateways that
// share one database. Each journal operation is one round trip where SQLite's took several
// statements (an insert with its event is one statement of data-modifying CTEs), plus one for the
// savepoint the JournalService puts around it (the previous savepoint's RELEASE goes with it), and
// statements are prepared once per session.
//
// Several gateways may connect to one database; one owns the journal at a time (own(): the
// others are standbys). Whoever writes, the JournalService's transactions take one advisory lock
// (begin()), so that they commit one after another, as SQLite's do: the numbers of the changes
// that event streams read (transaction_events, managed_events) become visible in order, which the
// streams' cursors count on, and a read-then-write (a nonce taken, an idempotency key looked up
// before an insert) sees the last commit, including a tool's (migrate-store) or, once replicas
// share the senders, another owner's. Group commit keeps that cheap: each commit carries every
// operation that waited for it.

#include "gateway/store/pg_connection.hpp"
#include "gateway/store/store.hpp"

#include "pg_schema.hpp"
#include "sql_states.hpp"

#include <fmt/format.h>

#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <memory>
#include <random>
#include <set>
#include <thread>
#include <utility>

namespace gateway::store {
namespace {

using pg::Param;
using sql::kFinal;
using sql::kMined;
using sql::kUnfinished;

using pg_schema::kAfter13;
using pg_schema::kSchema13;
using pg_schema::kVersion;

// The advisory locks' keys: the journal's writers, one transaction at a time; migrations, one at
// a time; the gateway that owns the journal, one at a time (held by its session).
constexpr const char* kJournalLock = "7301942861027311";
constexpr const char* kMigrationLock = "7301942861027312";
constexpr const char* kOwnerLock = "7301942861027313";
constexpr const char* kTryOwn = "SELECT pg_try_advisory_lock(7301942861027313)";
// The two-key advisory locks (a class, a key; apart from the one-key ones above): a gateway's
// presence (replicas()), and the leases (take_lease).
constexpr int kPresenceClass = 730194286;
constexpr int kLeaseClass = 730194287;
constexpr const char* kTryLease = "SELECT pg_try_advisory_lock($1::int, $2::int)";

constexpr const char* kColumns =
    "hash, chain, chain_id, sender, nonce, raw, state, reason, created_ms, updated_ms, broadcasts,"
    " block_hash, block_number, parent, client, finalized, source";

constexpr const char* kManagedColumns =
    "id, chain, sender, request, idempotency_key, nonce, state, reason, created_ms, updated_ms,"
    " attempts, hash, client, value, spend_ms";

constexpr const char* kStreamColumns =
    "id, chain, next_block, paused, updated_ms, cursor, definition";

// Parameters, in PostgreSQL's text format.
Param num(std::int64_t v) {
    return std::to_string(v);
}
Param num(std::uint64_t v) {
    return std::to_string(static_cast<std::int64_t>(v));  // the signed pattern
}
Param boolean(bool v) {
    return std::string(v ? "true" : "false");
}
Param bytes(const std::vector<std::uint8_t>& v) {
    static constexpr char kHex[] = "0123456789abcdef";
    std::string out = "\\x";
    out.reserve(2 + v.size() * 2);
    for (std::uint8_t b : v) {
        out.push_back(kHex[b >> 4]);
        out.push_back(kHex[b & 15]);
    }
    return out;
}
template <class T>
Param maybe(const std::optional<T>& v) {
    if (!v) return std::nullopt;
    if constexpr (std::is_same_v<T, std::string>)
        return *v;
    else
        return num(*v);
}
// A reason as PostgreSQL's text takes it (pg::valid_text): reasons are for people and may carry
// what a node or a signer answered, which PostgreSQL would refuse with the state change.
Param reason(const std::string& v) {
    return pg::valid_text(v);
}

Param text_or_null(const std::string& v) {
    return v.empty() ? Param() : Param(v);
}

// One row's columns, read in order.
class Row {
public:
    explicit Row(const std::vector<Param>& cells) : cells_(cells) {}
    bool null(std::size_t c) const { return !cells_.at(c); }
    std::string text(std::size_t c) const { return cells_.at(c).value_or(""); }
    std::int64_t integer(std::size_t c) const {
        const auto& v = cells_.at(c);
        std::int64_t out = 0;
        if (v) std::from_chars(v->data(), v->data() + v->size(), out);
        return out;
    }
    bool boolean(std::size_t c) const { return cells_.at(c).value_or("f") == "t"; }
    std::vector<std::uint8_t> blob(std::size_t c) const {
        const auto& v = cells_.at(c);
        std::vector<std::uint8_t> out;
        if (!v || v->size() < 2) return out;  // bytea in hex: \x then two digits a byte
        const auto digit = [](char ch) { return ch <= '9' ? ch - '0' : (ch | 0x20) - 'a' + 10; };
        out.reserve((v->size() - 2) / 2);
        for (std::size_t i = 2; i + 1 < v->size(); i += 2)
            out.push_back(static_cast<std::uint8_t>(digit((*v)[i]) << 4 | digit((*v)[i + 1])));
        return out;
    }
    template <class T>
    std::optional<T> opt_int(std::size_t c) const {
        if (null(c)) return std::nullopt;
        return static_cast<T>(integer(c));
    }
    std::optional<std::string> opt_text(std::size_t c) const { return cells_.at(c); }

private:
    const std::vector<Param>& cells_;
};

TxRecord read_record(const Row& r) {
    TxRecord t;
    t.hash = r.text(0);
    t.chain = r.text(1);
    t.chain_id = static_cast<std::uint64_t>(r.integer(2));
    t.sender = r.text(3);
    t.nonce = static_cast<std::uint64_t>(r.integer(4));
    t.raw = r.blob(5);
    t.state = parse_tx_state(r.text(6)).value_or(TxState::dead_letter);
    t.reason = r.text(7);
    t.created_ms = r.integer(8);
    t.updated_ms = r.integer(9);
    t.broadcasts = static_cast<std::uint32_t>(r.integer(10));
    t.block_hash = r.opt_text(11);
    t.block_number = r.opt_int<std::uint64_t>(12);
    t.parent = r.opt_text(13);
    t.client = r.text(14);
    t.finalized = r.boolean(15);
    t.source = r.text(16);
    return t;
}

ManagedRecord read_managed(const Row& r) {
    ManagedRecord m;
    m.id = r.text(0);
    m.chain = r.text(1);
    m.sender = r.text(2);
    m.request = r.text(3);
    m.idempotency_key = r.opt_text(4);
    m.nonce = r.opt_int<std::uint64_t>(5);
    m.state = parse_tx_state(r.text(6)).value_or(TxState::dead_letter);
    m.reason = r.text(7);
    m.created_ms = r.integer(8);
    m.updated_ms = r.integer(9);
    m.attempts = static_cast<std::uint32_t>(r.integer(10));
    m.hash = r.opt_text(11);
    m.client = r.text(12);
    m.value = r.blob(13);
    m.spend_ms = r.opt_int<std::int64_t>(14);
    return m;
}

StreamRecord read_stream(const Row& r) {
    StreamRecord s;
    s.id = r.text(0);
    s.chain = r.text(1);
    s.next_block = r.opt_int<std::uint64_t>(2);
    s.paused = r.boolean(3);
    s.updated_ms = r.integer(4);
    s.cursor = r.text(5);
    s.definition = r.opt_text(6);
    return s;
}

std::vector<TxEvent> read_events(const pg::Result& result) {
    std::vector<TxEvent> out;
    out.reserve(result.rows.size());
    for (const auto& cells : result.rows) {
        const Row r(cells);
        out.push_back(
            TxEvent{parse_tx_state(r.text(0)).value_or(TxState::failed), r.text(1), r.integer(2)});
    }
    return out;
}

template <class T, class Read>
std::vector<T> read_all(const pg::Result& result, Read read) {
    std::vector<T> out;
    out.reserve(result.rows.size());
    for (const auto& cells : result.rows) out.push_back(read(Row(cells)));
    return out;
}

class PgStore final : public Store {
public:
    PgStore(std::string url, std::chrono::milliseconds timeout, int up_to)
        : where_(pg::describe(url)), db_(std::move(url), timeout) {
        migrate(up_to > 0 ? up_to : kVersion);
        // A commit the client hears of as kept must be durable: a role or database set to
        // synchronous_commit=off would not be (a stricter setting, remote_apply, is kept).
        const auto sync = db_.exec("SELECT current_setting('synchronous_commit')");
        if (Row(sync.rows.at(0)).text(0) == "off") db_.exec("SET synchronous_commit = on");
        announce();
        own(timeout);
    }

    int schema_version() const override { return version_; }
    std::optional<std::uint64_t> owner_epoch() const override { return epoch_; }
    bool owns() const override { return owns_; }
    bool try_own() override {
        if (!owns_ && Row(db_.exec(kTryOwn).rows.at(0)).text(0) == "t") took_ownership();
        return owns_;
    }
    bool last_owner_was_this_process() const override { return last_owner_was_me_; }
    std::string describe() const override { return "postgres:" + where_; }

    std::pair<TxRecord, bool> insert(const TxRecord& r) override {
        static const std::string sql = fmt::format(
            "WITH t AS (INSERT INTO transactions ({}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, "
            "$10, $11, $12, $13, $14, $15, $16, $17) ON CONFLICT (hash) DO NOTHING RETURNING id) "
            "INSERT INTO transaction_events (tx, state, reason, at_ms) SELECT id, $7, $8, $9 "
            "FROM t RETURNING tx",
            kColumns);
        // As in update(): a final state without a block (never mined) is final for good.
        const bool finalized = r.finalized || (is_final(r.state) && !r.block_hash);
        const auto inserted =
            db_.exec(sql, {r.hash, r.chain, num(r.chain_id), r.sender, num(r.nonce), bytes(r.raw),
                           std::string(to_string(r.state)), reason(r.reason), num(r.created_ms),
                           num(r.updated_ms), num(std::int64_t{r.broadcasts}), maybe(r.block_hash),
                           maybe(r.block_number), maybe(r.parent), text_or_null(r.client),
                           boolean(finalized), text_or_null(r.source)});
        if (!inserted.rows.empty()) return {r, true};
        auto existing = find(r.hash);
        if (!existing)
            throw StoreError(fmt::format("store {}: transaction {} neither inserted nor found",
                                         describe(), r.hash));
        return {std::move(*existing), false};
    }

    bool update(const TxUpdate& u) override {
        // The row, its event, and its network form dropped once it is final for good (kept while
        // a reorg may still reopen it and send it again): one statement. The block is written
        // when $10 says so; a final state without a block (never mined) is final for good.
        static const std::string sql =
            "WITH u AS (UPDATE transactions SET state = $2, reason = $3, updated_ms = $4, "
            "broadcasts = COALESCE($5::integer, broadcasts), block_hash = CASE WHEN $10::boolean "
            "THEN $6::text ELSE block_hash END, block_number = CASE WHEN $10 THEN $7::bigint ELSE "
            "block_number END, finalized = ($8::boolean OR ($9::boolean AND (CASE WHEN $10 THEN "
            "$6 ELSE block_hash END) IS NULL)) WHERE hash = $1 RETURNING id, finalized), e AS "
            "(INSERT INTO transaction_events (tx, state, reason, at_ms) SELECT id, $2, $3, $4 "
            "FROM u), s AS (DELETE FROM transaction_sidecars WHERE tx IN (SELECT id FROM u WHERE "
            "finalized)) SELECT id FROM u";
        return !db_.exec(sql,
                         {u.hash, std::string(to_string(u.state)), reason(u.reason), num(u.at_ms),
                          u.broadcasts ? num(std::int64_t{*u.broadcasts}) : Param(),
                          u.set_block ? maybe(u.block_hash) : Param(),
                          u.set_block ? maybe(u.block_number) : Param(), boolean(u.finalized),
                          boolean(is_final(u.state)), boolean(u.set_block)})
                    .rows.empty();
    }

    void put_network_form(std::string_view hash,
                          const std::vector<std::uint8_t>& network) override {
        const auto r = db_.exec(
            "INSERT INTO transaction_sidecars (tx, network) SELECT id, $2 FROM transactions "
            "WHERE hash = $1 ON CONFLICT (tx) DO UPDATE SET network = EXCLUDED.network",
            {std::string(hash), bytes(network)});
        if (r.affected == 0)
            throw StoreError(fmt::format("store {}: no transaction {} to keep a network form for",
                                         describe(), hash));
    }

    std::optional<std::vector<std::uint8_t>> network_form(std::string_view hash) override {
        const auto r = db_.exec(
            "SELECT s.network FROM transaction_sidecars s JOIN transactions t ON t.id = s.tx "
            "WHERE t.hash = $1",
            {std::string(hash)});
        if (r.rows.empty()) return std::nullopt;
        return Row(r.rows[0]).blob(0);
    }

    std::optional<TxRecord> find(std::string_view hash) override {
        static const std::string sql =
            fmt::format("SELECT {} FROM transactions WHERE hash = $1", kColumns);
        const auto r = db_.exec(sql, {std::string(hash)});
        if (r.rows.empty()) return std::nullopt;
        return read_record(Row(r.rows[0]));
    }

    QueuedCounts queued_counts(std::string_view chain, std::string_view sender,
                               std::string_view source) override {
        // Kept by a trigger (queued_counts, schema 14): three rows, not a count.
        const auto r = db_.exec(
            "SELECT kind, n FROM queued_counts WHERE chain = $1 AND ((kind = 'c' AND key = '') OR "
            "(kind = 's' AND key = $2) OR (kind = 'k' AND key = $3))",
            {std::string(chain), std::string(sender), std::string(source)});
        QueuedCounts out;
        for (const auto& cells : r.rows) {
            const Row row(cells);
            const auto n = static_cast<std::size_t>(std::max<std::int64_t>(0, row.integer(1)));
            const std::string kind = row.text(0);
            if (kind == "c") out.chain = n;
            if (kind == "s") out.sender = n;
            if (kind == "k") out.source = n;
        }
        return out;
    }

    std::vector<TxRecord> unfinished() override {
        static const std::string sql = fmt::format(
            "SELECT {} FROM transactions WHERE state IN {} ORDER BY chain, sender, "
            "nonce, created_ms, id",
            kColumns, kUnfinished);
        return read_all<TxRecord>(db_.exec(sql, {}), read_record);
    }

    std::vector<TxRecord> unfinalized() override {
        static const std::string sql = fmt::format(
            "SELECT {} FROM transactions WHERE NOT finalized AND state IN {} AND block_hash IS "
            "NOT NULL ORDER BY chain, sender, nonce",
            kColumns, kMined);
        return read_all<TxRecord>(db_.exec(sql, {}), read_record);
    }

    void mark_finalized(const std::vector<std::string>& hashes) override {
        static const std::string sql = fmt::format(
            "WITH f AS (UPDATE transactions SET finalized = true WHERE hash = $1 AND state IN {} "
            "RETURNING id) DELETE FROM transaction_sidecars WHERE tx IN (SELECT id FROM f)",
            kMined);
        for (const auto& hash : hashes) db_.exec(sql, {hash});
    }

    std::vector<TxRecord> list(std::optional<TxState> state, std::size_t limit) override {
        static const std::string by_state = fmt::format(
            "SELECT {} FROM transactions WHERE state = $1 ORDER BY created_ms DESC, "
            "id DESC LIMIT $2",
            kColumns);
        static const std::string all = fmt::format(
            "SELECT {} FROM transactions ORDER BY created_ms DESC, id DESC LIMIT $1", kColumns);
        const Param lim = num(static_cast<std::int64_t>(limit));
        return read_all<TxRecord>(state ? db_.exec(by_state, {std::string(to_string(*state)), lim})
                                        : db_.exec(all, {lim}),
                                  read_record);
    }

    std::vector<TxEvent> history(std::string_view hash) override {
        return read_events(
            db_.exec("SELECT state, reason, at_ms FROM transaction_events WHERE tx = (SELECT id "
                     "FROM transactions WHERE hash = $1) ORDER BY id",
                     {std::string(hash)}));
    }

    std::pair<ManagedRecord, bool> insert_managed(const ManagedRecord& r) override {
        // Inserted with its event when neither its id nor its key is taken (both are unique);
        // else the one that holds them is read, by id first as SQLite's does.
        static const std::string sql = fmt::format(
            "WITH m AS (INSERT INTO managed_transactions ({}) VALUES ($1, $2, $3, $4, $5, $6, $7, "
            "$8, $9, $10, $11, $12, $13, $14, $15) ON CONFLICT DO NOTHING RETURNING id) INSERT "
            "INTO managed_events (managed_id, state, reason, at_ms) SELECT id, $7, $8, $9 FROM m "
            "RETURNING managed_id",
            kManagedColumns);
        const auto inserted =
            db_.exec(sql, {r.id, r.chain, r.sender, r.request, maybe(r.idempotency_key),
                           maybe(r.nonce), std::string(to_string(r.state)), reason(r.reason),
                           num(r.created_ms), num(r.updated_ms), num(std::int64_t{r.attempts}),
                           maybe(r.hash), text_or_null(r.client),
                           r.value.empty() ? Param() : bytes(r.value), maybe(r.spend_ms)});
        if (!inserted.rows.empty()) return {r, true};
        if (auto existing = find_managed(r.id)) return {std::move(*existing), false};
        if (r.idempotency_key) {
            static const std::string by_key = fmt::format(
                "SELECT {} FROM managed_transactions WHERE chain = $1 AND sender = $2 AND "
                "COALESCE(client, '') = $4 AND idempotency_key = $3",
                kManagedColumns);
            const auto found = db_.exec(by_key, {r.chain, r.sender, *r.idempotency_key, r.client});
            if (!found.rows.empty()) return {read_managed(Row(found.rows[0])), false};
        }
        throw StoreError(fmt::format("store {}: managed transaction {} neither inserted nor found",
                                     describe(), r.id));
    }

    bool update_managed(const ManagedUpdate& u) override {
        return !db_.exec(
                       "WITH u AS (UPDATE managed_transactions SET state = $2, reason = $3, "
                       "updated_ms = $4, nonce = CASE WHEN $13::boolean THEN NULL ELSE "
                       "COALESCE($5::bigint, nonce) END, hash = COALESCE($6::text, hash), "
                       "attempts = COALESCE($7::integer, attempts), idempotency_key = CASE WHEN "
                       "$8::boolean THEN NULL ELSE idempotency_key END, spend_ms = CASE WHEN "
                       "$9::boolean THEN $10::bigint ELSE spend_ms END, value = CASE WHEN "
                       "$11::boolean THEN $12::bytea ELSE value END WHERE id = $1 RETURNING id) "
                       "INSERT INTO managed_events (managed_id, state, reason, at_ms) SELECT id, "
                       "$2, $3, $4 FROM u RETURNING managed_id",
                       {u.id, std::string(to_string(u.state)), reason(u.reason), num(u.at_ms),
                        maybe(u.nonce), maybe(u.hash),
                        u.attempts ? num(std::int64_t{*u.attempts}) : Param(),
                        boolean(u.release_idempotency_key), boolean(u.set_spend), maybe(u.spend_ms),
                        boolean(u.value.has_value()),
                        u.value && !u.value->empty() ? bytes(*u.value) : Param(),
                        boolean(u.clear_nonce)})
                    .rows.empty();
    }

    std::optional<ManagedRecord> find_managed(std::string_view id) override {
        static const std::string sql =
            fmt::format("SELECT {} FROM managed_transactions WHERE id = $1", kManagedColumns);
        const auto r = db_.exec(sql, {std::string(id)});
        if (r.rows.empty()) return std::nullopt;
        return read_managed(Row(r.rows[0]));
    }

    std::vector<ManagedRecord> unfinished_managed() override {
        static const std::string sql = fmt::format(
            "SELECT {} FROM managed_transactions WHERE state IN {} ORDER BY chain, "
            "sender, created_ms, seq",
            kManagedColumns, kUnfinished);
        return read_all<ManagedRecord>(db_.exec(sql, {}), read_managed);
    }

    std::vector<ManagedRecord> list_managed(std::optional<TxState> state,
                                            std::optional<std::string_view> idempotency_key,
                                            std::size_t limit) override {
        // NULL parameters select every state, every key.
        static const std::string sql = fmt::format(
            "SELECT {} FROM managed_transactions WHERE ($1::text IS NULL OR state = $1) AND "
            "($2::text IS NULL OR idempotency_key = $2) ORDER BY updated_ms DESC, seq DESC "
            "LIMIT $3",
            kManagedColumns);
        return read_all<ManagedRecord>(
            db_.exec(sql, {state ? Param(std::string(to_string(*state))) : Param(),
                           idempotency_key ? Param(std::string(*idempotency_key)) : Param(),
                           num(static_cast<std::int64_t>(limit))}),
            read_managed);
    }

    std::vector<ManagedRef> reopened_managed() override {
        // From the few unfinished attempts to their parents.
        const auto r = db_.exec(
            "SELECT m.id, m.chain, m.sender FROM managed_transactions m WHERE m.id IN (SELECT "
            "t.parent FROM transactions t JOIN managed_transactions p ON p.id = t.parent WHERE "
            "t.state IN ('QUEUED', 'BROADCASTING', 'CONFIRMING') AND t.nonce = p.nonce) AND "
            "m.state IN ('COMPLETED', 'FAILED', 'CANCELLED') AND m.nonce IS NOT NULL ORDER BY "
            "m.created_ms, m.seq",
            {});
        return read_all<ManagedRef>(r, [](const Row& row) {
            return ManagedRef{row.text(0), row.text(1), row.text(2)};
        });
    }

    std::vector<TxRecord> attempts(std::string_view id) override {
        static const std::string sql = fmt::format(
            "SELECT {} FROM transactions WHERE parent = $1 ORDER BY created_ms, id", kColumns);
        return read_all<TxRecord>(db_.exec(sql, {std::string(id)}), read_record);
    }

    std::vector<Spending> spending(std::string_view chain, std::string_view sender,
                                   std::int64_t since_ms) override {
        const auto r = db_.exec(
            "SELECT id, state, attempts, value, spend_ms FROM managed_transactions WHERE chain = "
            "$1 AND sender = $2 AND spend_ms >= $3 AND value IS NOT NULL ORDER BY spend_ms, seq",
            {std::string(chain), std::string(sender), num(since_ms)});
        return read_all<Spending>(r, [](const Row& row) {
            Spending s;
            s.id = row.text(0);
            s.state = parse_tx_state(row.text(1)).value_or(TxState::dead_letter);
            s.attempts = static_cast<std::uint32_t>(row.integer(2));
            s.value = row.blob(3);
            s.spend_ms = row.integer(4);
            return s;
        });
    }

    ManagedCounts managed_counts(std::string_view chain, std::string_view sender,
                                 std::string_view awaiting_service) override {
        static const std::string sql = fmt::format(
            "SELECT count(*) FILTER (WHERE state <> 'PENDING_APPROVAL' OR starts_with(reason, "
            "$3)), "
            "count(*) FILTER (WHERE state = 'PENDING_APPROVAL' AND NOT starts_with(reason, $3)) "
            "FROM managed_transactions WHERE chain = $1 AND sender = $2 AND state IN {}",
            kUnfinished);
        const auto r =
            db_.exec(sql, {std::string(chain), std::string(sender), std::string(awaiting_service)});
        const Row row(r.rows.at(0));
        return {static_cast<std::size_t>(row.integer(0)), static_cast<std::size_t>(row.integer(1))};
    }

    bool take_lease(std::string_view name) override {
        if (leases_.contains(name)) return true;
        const auto r =
            db_.exec(kTryLease, {std::to_string(kLeaseClass), std::to_string(lease_key(name))});
        if (Row(r.rows.at(0)).text(0) != "t") return false;
        leases_.emplace(name);
        return true;
    }

    void require_lease(std::string_view name) const override {
        if (!leases_.contains(name))
            throw LeaseLost(fmt::format(
                "store: this gateway does not hold the lease of {} (another gateway may)", name));
    }

    std::size_t leases_held() const override { return leases_.size(); }

    std::size_t replicas() override {
        const auto r = db_.exec(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = $1::int "
            "AND objsubid = 2 AND granted AND database = (SELECT oid FROM pg_database WHERE "
            "datname = current_database())",
            {std::to_string(kPresenceClass)});
        return static_cast<std::size_t>(Row(r.rows.at(0)).integer(0));
    }

    void hand_off(const Handoff& h) override {
        db_.exec("INSERT INTO handoffs (chain, managed, key, sender) VALUES ($1, $2, $3, $4)",
                 {h.chain, boolean(h.managed), h.key, h.sender});
    }

    bool withdraw_handoff(std::string_view chain, bool managed, std::string_view key) override {
        return db_.exec("DELETE FROM handoffs WHERE chain = $1 AND managed = $2 AND key = $3",
                        {std::string(chain), boolean(managed), std::string(key)})
                   .affected > 0;
    }

    std::vector<Handoff> take_handoffs(std::string_view chain, bool managed,
                                       std::size_t limit) override {
        // Deleted as read: the one dispatcher reads them, in the order they were handed.
        const auto r = db_.exec(
            "WITH taken AS (DELETE FROM handoffs WHERE id IN (SELECT id FROM handoffs WHERE chain "
            "= $1 AND managed = $2 ORDER BY id LIMIT $3) RETURNING id, key, sender) SELECT id, "
            "key, sender FROM taken ORDER BY id",
            {std::string(chain), boolean(managed), num(static_cast<std::int64_t>(limit))});
        return read_all<Handoff>(r, [&](const Row& row) {
            return Handoff{std::string(chain), managed, row.text(1), row.text(2), row.integer(0)};
        });
    }

    std::vector<TxEvent> managed_history(std::string_view id) override {
        return read_events(db_.exec(
            "SELECT state, reason, at_ms FROM managed_events WHERE managed_id = $1 ORDER BY id",
            {std::string(id)}));
    }

    std::uint64_t take_nonce(std::string_view chain, std::string_view sender,
                             std::uint64_t floor) override {
        // The larger of `floor` and the next one, and one past it remembered: one statement.
        const auto r = db_.exec(
            "INSERT INTO nonces (chain, sender, next) VALUES ($1, $2, $3::bigint + 1) ON CONFLICT "
            "(chain, sender) DO UPDATE SET next = GREATEST(nonces.next, $3::bigint) + 1 "
            "RETURNING next - 1",
            {std::string(chain), std::string(sender), num(floor)});
        return static_cast<std::uint64_t>(Row(r.rows.at(0)).integer(0));
    }

    void set_next_nonce(std::string_view chain, std::string_view sender,
                        std::uint64_t next) override {
        db_.exec(
            "INSERT INTO nonces (chain, sender, next) VALUES ($1, $2, $3) ON CONFLICT (chain, "
            "sender) DO UPDATE SET next = EXCLUDED.next",
            {std::string(chain), std::string(sender), num(next)});
    }

    std::optional<std::uint64_t> next_nonce(std::string_view chain,
                                            std::string_view sender) override {
        const auto r = db_.exec("SELECT next FROM nonces WHERE chain = $1 AND sender = $2",
                                {std::string(chain), std::string(sender)});
        if (r.rows.empty()) return std::nullopt;
        return static_cast<std::uint64_t>(Row(r.rows[0]).integer(0));
    }

    std::optional<StreamRecord> find_stream(std::string_view id) override {
        static const std::string sql =
            fmt::format("SELECT {} FROM streams WHERE id = $1", kStreamColumns);
        const auto r = db_.exec(sql, {std::string(id)});
        if (r.rows.empty()) return std::nullopt;
        return read_stream(Row(r.rows[0]));
    }

    std::vector<StreamRecord> streams() override {
        static const std::string sql =
            fmt::format("SELECT {} FROM streams ORDER BY id", kStreamColumns);
        return read_all<StreamRecord>(db_.exec(sql, {}), read_stream);
    }

    void put_stream(const StreamRecord& r) override {
        static const std::string sql = fmt::format(
            "INSERT INTO streams ({}) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO "
            "UPDATE SET chain = $2, next_block = $3, paused = $4, updated_ms = $5, cursor = $6, "
            "definition = $7",
            kStreamColumns);
        db_.exec(sql, {r.id, r.chain, maybe(r.next_block), boolean(r.paused), num(r.updated_ms),
                       r.cursor, maybe(r.definition)});
    }

    bool delete_stream(std::string_view id) override {
        return db_.exec("DELETE FROM streams WHERE id = $1", {std::string(id)}).affected > 0;
    }

    std::pair<std::int64_t, std::int64_t> last_changes() override {
        const auto r = db_.exec(
            "SELECT (SELECT COALESCE(MAX(id), 0) FROM transaction_events), (SELECT "
            "COALESCE(MAX(id), 0) FROM managed_events)",
            {});
        const Row row(r.rows.at(0));
        return {row.integer(0), row.integer(1)};
    }

    ChangesPage changes(std::string_view chain, std::int64_t after_raw, std::int64_t after_managed,
                        std::size_t limit) override {
        // Read inside a JournalService transaction, which holds the writers' lock: nothing
        // commits between the last numbers and the pages, and numbers become visible in order
        // (see the top of this file).
        ChangesPage page;
        const auto [raw_last, managed_last] = last_changes();
        page.raw_upto = read_changes(
            "SELECT e.id, t.hash, t.sender, t.nonce, e.state, e.reason, e.at_ms, NULL FROM "
            "transaction_events e JOIN transactions t ON t.id = e.tx WHERE e.id > $1 AND "
            "t.chain = $2 AND t.parent IS NULL ORDER BY e.id LIMIT $3",
            false, chain, after_raw, raw_last, limit, page.changes);
        page.managed_upto = read_changes(
            "SELECT e.id, m.id, m.sender, m.nonce, e.state, e.reason, e.at_ms, m.idempotency_key "
            "FROM managed_events e JOIN managed_transactions m ON m.id = e.managed_id WHERE "
            "e.id > $1 AND m.chain = $2 ORDER BY e.id LIMIT $3",
            true, chain, after_managed, managed_last, limit, page.changes);
        return page;
    }

    Pruned prune(std::int64_t before_ms, std::size_t limit) override {
        // What nothing can change any more, as SQLite's prune: raw transactions final for good,
        // and managed ones with every attempt final for good, each kind at most `limit`, with
        // their events and network forms. Each kind is one statement.
        static const std::string raw_sql = fmt::format(
            "WITH d AS (SELECT id FROM transactions WHERE parent IS NULL AND finalized AND state "
            "IN {} AND updated_ms < $1 LIMIT $2), s AS (DELETE FROM transaction_sidecars WHERE "
            "tx IN (SELECT id FROM d)), e AS (DELETE FROM transaction_events WHERE tx IN (SELECT "
            "id FROM d)) DELETE FROM transactions WHERE id IN (SELECT id FROM d)",
            kFinal);
        static const std::string managed_sql = fmt::format(
            "WITH m AS (SELECT m.id FROM managed_transactions m WHERE m.state IN {} AND "
            "m.updated_ms < $1 AND NOT EXISTS (SELECT 1 FROM transactions t WHERE t.parent = "
            "m.id AND NOT t.finalized) LIMIT $2), a AS (SELECT id FROM transactions WHERE parent "
            "IN (SELECT id FROM m)), s AS (DELETE FROM transaction_sidecars WHERE tx IN (SELECT "
            "id FROM a)), e AS (DELETE FROM transaction_events WHERE tx IN (SELECT id FROM a)), "
            "t AS (DELETE FROM transactions WHERE id IN (SELECT id FROM a) RETURNING 1), me AS "
            "(DELETE FROM managed_events WHERE managed_id IN (SELECT id FROM m)), d AS (DELETE "
            "FROM managed_transactions WHERE id IN (SELECT id FROM m) RETURNING 1) SELECT (SELECT "
            "count(*) FROM t), (SELECT count(*) FROM d)",
            kFinal);
        const Param lim = num(static_cast<std::int64_t>(limit));
        Pruned out;
        out.transactions = db_.exec(raw_sql, {num(before_ms), lim}).affected;
        out.more = out.transactions >= limit;
        const auto r = db_.exec(managed_sql, {num(before_ms), lim});
        const Row row(r.rows.at(0));
        out.transactions += static_cast<std::size_t>(row.integer(0));
        out.managed = static_cast<std::size_t>(row.integer(1));
        out.more = out.more || out.managed >= limit;
        return out;
    }

    void begin() override {
        release_pending_ = false;
        // One writer at a time across every gateway on this database (see the top of the file).
        db_.exec(fmt::format("BEGIN; SELECT pg_advisory_xact_lock({});", kJournalLock));
    }
    // A savepoint's RELEASE is sent with what comes next, the next operation's SAVEPOINT or the
    // COMMIT, in one round trip: a journal operation costs two round trips instead of three. It
    // still runs before either, so what a RELEASE refused (a transaction aborted by an error
    // its operation caught) still fails the batch: a COMMIT alone would end an aborted
    // transaction with a ROLLBACK and no error. (The service releases an operation's savepoint
    // only after checking the operation; it rolls back to one only before releasing it.)
    void commit() override {
        const bool release = std::exchange(release_pending_, false);
        db_.exec(release ? "RELEASE call; COMMIT" : "COMMIT");
    }
    void rollback() noexcept override {
        release_pending_ = false;
        quietly("ROLLBACK");
    }
    void savepoint() override {
        const bool release = std::exchange(release_pending_, false);
        db_.exec(release ? "RELEASE call; SAVEPOINT call" : "SAVEPOINT call");
    }
    void release_savepoint() override { release_pending_ = true; }
    void rollback_to_savepoint() noexcept override { quietly("ROLLBACK TO call; RELEASE call;"); }
    bool in_transaction() const override { return db_.in_transaction(); }

private:
    // One kind's changes after `after`, appended to `out`; where the next read starts (as
    // SQLite's: fewer than `limit` means every change of the kind up to `last` was read).
    std::int64_t read_changes(const char* sql, bool managed, std::string_view chain,
                              std::int64_t after, std::int64_t last, std::size_t limit,
                              std::vector<StateChange>& out) {
        const auto r =
            db_.exec(sql, {num(after), std::string(chain), num(static_cast<std::int64_t>(limit))});
        for (const auto& cells : r.rows) {
            const Row row(cells);
            StateChange c;
            c.managed = managed;
            c.seq = row.integer(0);
            c.tx = row.text(1);
            c.sender = row.text(2);
            c.nonce = row.opt_int<std::uint64_t>(3);
            c.state = parse_tx_state(row.text(4)).value_or(TxState::failed);
            c.reason = row.text(5);
            c.at_ms = row.integer(6);
            c.idempotency_key = row.opt_text(7);
            out.push_back(std::move(c));
        }
        return r.rows.size() < limit ? std::max(after, last) : out.back().seq;
    }

    void quietly(const char* sql) noexcept {
        try {
            db_.exec(sql);
        } catch (...) {
            // The connection is gone (its transaction with it) or there was none to roll back.
        }
    }

    // One gateway owns the journal at a time: it holds the owner's lock for as long as its
    // session lives, and dispatches what the journal holds. Every other gateway on the database
    // is a standby: it journals what it accepts and hands it to the owner (HandoffJournal), and
    // tries for the lock now and then (try_own) to take over when the owner's session ends: the
    // owner stopped, crashed (the server sees its socket close), or went silent (the server's
    // keepalives, set short for this session, give up on it within about 15 s). Until replicas
    // own senders apart, this is what keeps two gateways from driving one sender's nonces.
    // Waits a moment for it at the opening (an owner that just died is gone by then), not
    // longer.
    void own(std::chrono::milliseconds timeout) {
        // Asked without waiting in the server's lock queue, every 50 ms for up to a second: a
        // refused wait would be an ERROR in the server's log each time.
        const auto wait =
            std::chrono::milliseconds(std::clamp<long long>(timeout.count(), 1, 1000));
        const auto until = std::chrono::steady_clock::now() + wait;
        while (!try_own() && std::chrono::steady_clock::now() < until)
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }

    // Known to the other gateways as one that has the journal open (replicas()), for as long as
    // this session lives: a presence lock of its own, under a random key.
    void announce() {
        std::random_device device;
        for (;;) {
            const auto key = static_cast<std::int32_t>(device() & 0x7fffffff);
            const auto r =
                db_.exec(kTryLease, {std::to_string(kPresenceClass), std::to_string(key)});
            if (Row(r.rows.at(0)).text(0) == "t") return;
        }
    }

    // A lease's key: its name's FNV-1a hash. Two names of one key share their lease (one gateway
    // holds both), which costs balance, never safety.
    static std::int32_t lease_key(std::string_view name) {
        std::uint32_t h = 2166136261u;
        for (unsigned char c : name) h = (h ^ c) * 16777619u;
        return static_cast<std::int32_t>(h & 0x7fffffff);
    }

    // The lock was just taken: this opening's number.
    void took_ownership() {
        owns_ = true;
        // This opening's number (Journal::owner_epoch): one more than the last owner's, kept
        // with this process's name ("7:3f0c..."), so that an opening whose answer was lost (the
        // number moved, and this process never heard) is known for this process's own. Only
        // the lock's holder writes it: a read, then a write.
        const auto last = db_.exec("SELECT value FROM gateway_meta WHERE key = 'owner_epoch'");
        std::uint64_t number = 0;
        if (!last.rows.empty()) {
            const std::string value = Row(last.rows[0]).text(0);
            const auto colon = value.find(':');
            std::from_chars(value.data(), value.data() + std::min(colon, value.size()), number);
            last_owner_was_me_ =
                colon != std::string::npos && value.substr(colon + 1) == process_name();
        }
        epoch_ = number + 1;
        db_.exec(
            "INSERT INTO gateway_meta (key, value) VALUES ('owner_epoch', $1) ON CONFLICT (key) "
            "DO UPDATE SET value = EXCLUDED.value",
            {fmt::format("{}:{}", *epoch_, process_name())});
    }

    // This process's name among the gateways that own journals: random, made once, with the
    // process id (a forked child is another process).
    static std::string process_name() {
        static const std::string random = [] {
            std::random_device device;
            return fmt::format("{:08x}{:08x}", device(), device());
        }();
        return fmt::format("{}-{}", random, ::getpid());
    }

    // Migrates to `newest` under a lock of its own: gateways starting together migrate once.
    void migrate(int newest) {
        db_.exec(fmt::format("SELECT pg_advisory_lock({})", kMigrationLock));
        try {
            db_.exec("CREATE TABLE IF NOT EXISTS schema_version (version integer NOT NULL)");
            const auto r = db_.exec("SELECT version FROM schema_version LIMIT 1");
            version_ = r.rows.empty() ? 0 : static_cast<int>(Row(r.rows[0]).integer(0));
            if (version_ > kVersion)
                throw StoreError(fmt::format(
                    "store: {} has schema version {}, newer than this build knows ({}): run a "
                    "newer chain-gateway",
                    where_, version_, kVersion));
            if (version_ == 0 && newest >= 13) {
                // A new journal: version 13 in one step, then the later ones, in one transaction.
                db_.exec("BEGIN");
                try {
                    db_.exec(kSchema13);
                    for (int v = 14; v <= newest; ++v) db_.exec(kAfter13[v - 14]);
                    db_.exec(fmt::format(
                        "DELETE FROM schema_version; INSERT INTO schema_version VALUES ({});",
                        newest));
                    db_.exec("COMMIT");
                } catch (...) {
                    quietly("ROLLBACK");
                    throw;
                }
                version_ = newest;
            } else if (version_ < 13 && version_ < newest) {
                throw StoreError(fmt::format(
                    "store: {} has schema version {}, which PostgreSQL journals never had", where_,
                    version_));
            }
            // One transaction per version, as SQLite's.
            for (int v = version_ + 1; v <= newest; ++v) {
                db_.exec("BEGIN");
                try {
                    db_.exec(kAfter13[v - 14]);
                    db_.exec(fmt::format("UPDATE schema_version SET version = {};", v));
                    db_.exec("COMMIT");
                } catch (...) {
                    quietly("ROLLBACK");
                    throw;
                }
                version_ = v;
            }
        } catch (...) {
            quietly(fmt::format("SELECT pg_advisory_unlock({})", kMigrationLock).c_str());
            throw;
        }
        db_.exec(fmt::format("SELECT pg_advisory_unlock({})", kMigrationLock));
    }

    std::string where_;  // the URL without its password
    pg::Connection db_;
    int version_ = 0;
    // This opening's number once it owns the journal. A shared journal's is set (0) before.
    std::optional<std::uint64_t> epoch_ = 0;
    bool owns_ = false;
    std::set<std::string, std::less<>> leases_;  // the leases this session holds
    bool last_owner_was_me_ = false;             // the opening before this one was this process's
    bool release_pending_ = false;  // the last savepoint's RELEASE, not sent yet (commit())
};

}  // namespace

namespace detail {

std::unique_ptr<Store> open_postgres(const std::string& url, std::chrono::milliseconds timeout,
                                     int up_to) {
    return std::make_unique<PgStore>(url, timeout, up_to);
}

}  // namespace detail

}  // namespace gateway::store
