#include "gateway/store/store.hpp"

#include "sql_states.hpp"
#include "sqlite_schema.hpp"

#include <fmt/format.h>
#include <sqlite3.h>

#include <filesystem>
#include <memory>
#include <stdexcept>
#include <unordered_map>

namespace gateway::store {
namespace {

using sqlite_schema::kMigrations;

constexpr const char* kColumns =
    "hash, chain, chain_id, sender, nonce, raw, state, reason, created_ms, updated_ms, broadcasts,"
    " block_hash, block_number, parent, client, finalized, source";

constexpr const char* kManagedColumns =
    "id, chain, sender, request, idempotency_key, nonce, state, reason, created_ms, updated_ms,"
    " attempts, hash, client, value, spend_ms";

using sql::kFinal;
using sql::kMined;
using sql::kUnfinished;

class SqliteStore final : public Store {
public:
    explicit SqliteStore(std::string path, int up_to = 0) : path_(std::move(path)) { open(up_to); }

    int schema_version() const override { return version_; }
    std::string describe() const override { return "sqlite:" + path_; }

    std::pair<TxRecord, bool> insert(const TxRecord& r) override {
        // One look at the hash's index, not two: a row already there is read only then.
        static const std::string sql = fmt::format(
            "INSERT INTO transactions ({}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, "
            "?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17) ON CONFLICT (hash) DO "
            "NOTHING RETURNING id;",
            kColumns);
        std::optional<std::int64_t> id;
        {
            Stmt st(*this, sql);
            st.text(1, r.hash).text(2, r.chain).integer(3, static_cast<std::int64_t>(r.chain_id));
            st.text(4, r.sender).integer(5, static_cast<std::int64_t>(r.nonce)).blob(6, r.raw);
            st.text(7, to_string(r.state)).text(8, r.reason).integer(9, r.created_ms);
            st.integer(10, r.updated_ms).integer(11, r.broadcasts);
            if (r.block_hash) st.text(12, *r.block_hash);
            if (r.block_number) st.integer(13, static_cast<std::int64_t>(*r.block_number));
            if (r.parent) st.text(14, *r.parent);
            if (!r.client.empty()) st.text(15, r.client);
            // As in update(): a final state without a block (never mined) is final for good.
            st.integer(16, r.finalized || (is_final(r.state) && !r.block_hash) ? 1 : 0);
            if (!r.source.empty()) st.text(17, r.source);
            if (st.step()) {
                id = st.column_int(0);
                st.done();
            }
        }
        if (!id) {
            auto existing = find(r.hash);
            if (!existing)
                throw StoreError(fmt::format("store {}: transaction {} neither inserted nor found",
                                             path_, r.hash));
            return {std::move(*existing), false};
        }
        add_tx_event(*id, r.state, r.reason, r.created_ms);
        return {r, true};
    }

    bool update(const TxUpdate& u) override {
        Stmt st(*this, u.set_block ? "UPDATE transactions SET state = ?2, reason = ?3, "
                                     "updated_ms = ?4, broadcasts = COALESCE(?5, broadcasts), "
                                     "block_hash = ?6, block_number = ?7, "
                                     "finalized = (?8 OR (?9 AND ?6 IS NULL)) "
                                     "WHERE hash = ?1 RETURNING id, finalized;"
                                   : "UPDATE transactions SET state = ?2, reason = ?3, "
                                     "updated_ms = ?4, broadcasts = COALESCE(?5, broadcasts), "
                                     "finalized = (?8 OR (?9 AND block_hash IS NULL)) "
                                     "WHERE hash = ?1 RETURNING id, finalized;");
        st.text(1, u.hash).text(2, to_string(u.state)).text(3, u.reason).integer(4, u.at_ms);
        // A final state without a block (never mined) is final for good, whoever wrote it.
        st.integer(8, u.finalized ? 1 : 0).integer(9, is_final(u.state) ? 1 : 0);
        if (u.broadcasts) st.integer(5, *u.broadcasts);
        if (u.set_block && u.block_hash) st.text(6, *u.block_hash);
        if (u.set_block && u.block_number)
            st.integer(7, static_cast<std::int64_t>(*u.block_number));
        if (!st.step()) return false;  // no such transaction
        const std::int64_t id = st.column_int(0);
        const bool finalized = st.column_int(1) != 0;
        st.done();
        add_tx_event(id, u.state, u.reason, u.at_ms);
        // Kept while a reorg may still reopen the transaction and send it again.
        if (finalized) drop_network_form(id);
        return true;
    }

    void put_network_form(std::string_view hash,
                          const std::vector<std::uint8_t>& network) override {
        Stmt st(*this,
                "INSERT OR REPLACE INTO transaction_sidecars (tx, network) SELECT id, ?2 FROM "
                "transactions WHERE hash = ?1;");
        st.text(1, hash).blob(2, network);
        st.done();
        if (sqlite3_changes(db_.get()) == 0) {
            throw StoreError(
                fmt::format("store {}: no transaction {} to keep a network form for", path_, hash));
        }
    }

    std::optional<std::vector<std::uint8_t>> network_form(std::string_view hash) override {
        Stmt st(*this,
                "SELECT s.network FROM transaction_sidecars s JOIN transactions t ON t.id = s.tx "
                "WHERE t.hash = ?1;");
        st.text(1, hash);
        if (!st.step()) return std::nullopt;
        return st.column_blob(0);
    }

    std::optional<TxRecord> find(std::string_view hash) override {
        static const std::string sql =
            fmt::format("SELECT {} FROM transactions WHERE hash = ?1;", kColumns);
        Stmt st(*this, sql);
        st.text(1, hash);
        if (!st.step()) return std::nullopt;
        return read_record(st);
    }

    QueuedCounts queued_counts(std::string_view chain, std::string_view sender,
                               std::string_view source) override {
        static const std::string sql = fmt::format(
            "SELECT COUNT(*), IFNULL(SUM(sender = ?2), 0), IFNULL(SUM(source = ?3), 0) FROM "
            "transactions WHERE chain = ?1 AND state IN {} AND parent IS NULL;",
            kUnfinished);
        Stmt st(*this, sql);
        st.text(1, chain).text(2, sender).text(3, source);
        st.step();
        return {static_cast<std::size_t>(st.column_int(0)),
                static_cast<std::size_t>(st.column_int(1)),
                static_cast<std::size_t>(st.column_int(2))};
    }

    std::vector<TxRecord> unfinished() override {
        Stmt st(*this, fmt::format("SELECT {} FROM transactions WHERE state IN {} ORDER BY chain, "
                                   "sender, nonce, created_ms;",
                                   kColumns, kUnfinished));
        std::vector<TxRecord> out;
        while (st.step()) out.push_back(read_record(st));
        return out;
    }

    std::vector<TxRecord> unfinalized() override {
        // By the partial index of exactly these: without it SQLite takes the index by state,
        // which holds every finished transaction (a million: 0.6 s at start-up).
        Stmt st(*this, fmt::format("SELECT {} FROM transactions INDEXED BY "
                                   "transactions_unfinalized WHERE finalized = 0 AND state IN "
                                   "{} AND block_hash IS NOT NULL ORDER BY chain, sender, nonce;",
                                   kColumns, kMined));
        std::vector<TxRecord> out;
        while (st.step()) out.push_back(read_record(st));
        return out;
    }

    void mark_finalized(const std::vector<std::string>& hashes) override {
        const std::string sql = fmt::format(
            "UPDATE transactions SET finalized = 1 WHERE hash = ?1 AND state IN {} RETURNING id;",
            kMined);
        for (const auto& hash : hashes) {
            Stmt st(*this, sql);
            st.text(1, hash);
            if (!st.step()) continue;
            const std::int64_t id = st.column_int(0);
            st.done();
            drop_network_form(id);
        }
    }

    std::vector<TxRecord> list(std::optional<TxState> state, std::size_t limit) override {
        Stmt st(*this, state ? fmt::format("SELECT {} FROM transactions WHERE state = ?1 ORDER BY "
                                           "created_ms DESC, rowid DESC LIMIT ?2;",
                                           kColumns)
                             : fmt::format("SELECT {} FROM transactions ORDER BY created_ms DESC, "
                                           "rowid DESC LIMIT ?2;",
                                           kColumns));
        if (state) st.text(1, to_string(*state));
        st.integer(2, static_cast<std::int64_t>(limit));
        std::vector<TxRecord> out;
        while (st.step()) out.push_back(read_record(st));
        return out;
    }

    std::vector<TxEvent> history(std::string_view hash) override {
        Stmt st(*this,
                "SELECT state, reason, at_ms FROM transaction_events WHERE tx = (SELECT id FROM "
                "transactions WHERE hash = ?1) ORDER BY id;");
        st.text(1, hash);
        return read_events(st);
    }

    std::pair<ManagedRecord, bool> insert_managed(const ManagedRecord& r) override {
        if (auto existing = find_managed(r.id)) return {std::move(*existing), false};
        if (r.idempotency_key) {
            Stmt st(*this, fmt::format("SELECT {} FROM managed_transactions WHERE chain = ?1 AND "
                                       "sender = ?2 AND IFNULL(client, '') = ?4 AND "
                                       "idempotency_key = ?3;",
                                       kManagedColumns));
            st.text(1, r.chain).text(2, r.sender).text(3, *r.idempotency_key).text(4, r.client);
            if (st.step()) return {read_managed(st), false};
        }
        Stmt st(*this, fmt::format("INSERT INTO managed_transactions ({}) VALUES (?1, ?2, ?3, ?4, "
                                   "?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15);",
                                   kManagedColumns));
        st.text(1, r.id).text(2, r.chain).text(3, r.sender).text(4, r.request);
        if (r.idempotency_key) st.text(5, *r.idempotency_key);
        if (r.nonce) st.integer(6, static_cast<std::int64_t>(*r.nonce));
        st.text(7, to_string(r.state)).text(8, r.reason).integer(9, r.created_ms);
        st.integer(10, r.updated_ms).integer(11, r.attempts);
        if (r.hash) st.text(12, *r.hash);
        if (!r.client.empty()) st.text(13, r.client);
        if (!r.value.empty()) st.blob(14, r.value);
        if (r.spend_ms) st.integer(15, *r.spend_ms);
        st.done();
        add_managed_event(r.id, r.state, r.reason, r.created_ms);
        return {r, true};
    }

    bool update_managed(const ManagedUpdate& u) override {
        Stmt st(
            *this,
            "UPDATE managed_transactions SET state = ?2, reason = ?3, updated_ms = ?4, "
            "nonce = IIF(?13, NULL, COALESCE(?5, nonce)), hash = COALESCE(?6, hash), attempts = "
            "COALESCE(?7, attempts), idempotency_key = IIF(?8, NULL, idempotency_key), spend_ms = "
            "IIF(?9, ?10, spend_ms), value = IIF(?11, ?12, value) WHERE id = ?1;");
        st.text(1, u.id).text(2, to_string(u.state)).text(3, u.reason).integer(4, u.at_ms);
        if (u.nonce) st.integer(5, static_cast<std::int64_t>(*u.nonce));
        if (u.hash) st.text(6, *u.hash);
        if (u.attempts) st.integer(7, *u.attempts);
        st.integer(8, u.release_idempotency_key ? 1 : 0);
        st.integer(9, u.set_spend ? 1 : 0);
        if (u.spend_ms) st.integer(10, *u.spend_ms);
        st.integer(11, u.value ? 1 : 0);
        if (u.value && !u.value->empty()) st.blob(12, *u.value);
        st.integer(13, u.clear_nonce ? 1 : 0);
        st.done();
        if (sqlite3_changes(db_.get()) == 0) return false;
        add_managed_event(u.id, u.state, u.reason, u.at_ms);
        return true;
    }

    std::optional<ManagedRecord> find_managed(std::string_view id) override {
        Stmt st(*this,
                fmt::format("SELECT {} FROM managed_transactions WHERE id = ?1;", kManagedColumns));
        st.text(1, id);
        if (!st.step()) return std::nullopt;
        return read_managed(st);
    }

    std::vector<ManagedRecord> unfinished_managed() override {
        Stmt st(*this, fmt::format("SELECT {} FROM managed_transactions WHERE state IN {} "
                                   "ORDER BY chain, sender, created_ms, rowid;",
                                   kManagedColumns, kUnfinished));
        std::vector<ManagedRecord> out;
        while (st.step()) out.push_back(read_managed(st));
        return out;
    }

    std::vector<ManagedRecord> list_managed(std::optional<TxState> state,
                                            std::optional<std::string_view> idempotency_key,
                                            std::size_t limit) override {
        std::string where;
        if (state) where += " WHERE state = ?1";
        if (idempotency_key)
            where += state ? " AND idempotency_key = ?2" : " WHERE idempotency_key = ?2";
        Stmt st(*this, fmt::format("SELECT {} FROM managed_transactions{} ORDER BY updated_ms "
                                   "DESC, rowid DESC LIMIT ?3;",
                                   kManagedColumns, where));
        if (state) st.text(1, to_string(*state));
        if (idempotency_key) st.text(2, *idempotency_key);
        st.integer(3, static_cast<std::int64_t>(limit));
        std::vector<ManagedRecord> out;
        while (st.step()) out.push_back(read_managed(st));
        return out;
    }

    std::vector<ManagedRef> reopened_managed() override {
        Stmt st(*this,
                // From the few unfinished attempts (the index by state) to their parents, not
                // from every finished managed transaction to its attempts (`+m.state` keeps the
                // planner off the index of every finished one).
                "SELECT m.id, m.chain, m.sender FROM managed_transactions m WHERE m.rowid IN "
                "(SELECT p.rowid FROM transactions t JOIN managed_transactions p ON p.id = "
                "t.parent WHERE t.state IN ('QUEUED', 'BROADCASTING', 'CONFIRMING') AND "
                "t.nonce = p.nonce) AND +m.state IN ('COMPLETED', 'FAILED', 'CANCELLED') AND "
                "m.nonce IS NOT NULL ORDER BY m.created_ms, m.rowid;");
        std::vector<ManagedRef> out;
        while (st.step()) out.push_back({st.column_text(0), st.column_text(1), st.column_text(2)});
        return out;
    }

    std::vector<Spending> spending(std::string_view chain, std::string_view sender,
                                   std::int64_t since_ms) override {
        Stmt st(*this,
                "SELECT id, state, attempts, value, spend_ms FROM managed_transactions WHERE "
                "chain = ?1 AND sender = ?2 AND spend_ms >= ?3 AND value IS NOT NULL ORDER BY "
                "spend_ms;");
        st.text(1, chain).text(2, sender).integer(3, since_ms);
        std::vector<Spending> out;
        while (st.step()) {
            Spending s;
            s.id = st.column_text(0);
            s.state = parse_tx_state(st.column_text(1)).value_or(TxState::dead_letter);
            s.attempts = static_cast<std::uint32_t>(st.column_int(2));
            s.value = st.column_blob(3);
            s.spend_ms = st.column_int(4);
            out.push_back(std::move(s));
        }
        return out;
    }

    ManagedCounts managed_counts(std::string_view chain, std::string_view sender,
                                 std::string_view awaiting_service) override {
        static const std::string sql = fmt::format(
            "SELECT IFNULL(SUM(state <> 'PENDING_APPROVAL' OR substr(reason, 1, length(?3)) = "
            "?3), 0), IFNULL(SUM(state = 'PENDING_APPROVAL' AND substr(reason, 1, length(?3)) <> "
            "?3), 0) FROM managed_transactions WHERE chain = ?1 AND sender = ?2 AND state IN {};",
            kUnfinished);
        Stmt st(*this, sql);
        st.text(1, chain).text(2, sender).text(3, awaiting_service);
        st.step();
        return {static_cast<std::size_t>(st.column_int(0)),
                static_cast<std::size_t>(st.column_int(1))};
    }

    void hand_off(const Handoff& h) override {
        Stmt st(*this,
                "INSERT INTO handoffs (chain, managed, key, sender) VALUES (?1, ?2, ?3, ?4);");
        st.text(1, h.chain).integer(2, h.managed ? 1 : 0).text(3, h.key).text(4, h.sender);
        st.done();
    }

    bool withdraw_handoff(std::string_view chain, bool managed, std::string_view key) override {
        Stmt st(*this, "DELETE FROM handoffs WHERE chain = ?1 AND managed = ?2 AND key = ?3;");
        st.text(1, chain).integer(2, managed ? 1 : 0).text(3, key);
        st.done();
        return sqlite3_changes(db_.get()) > 0;
    }

    std::vector<Handoff> take_handoffs(std::string_view chain, bool managed,
                                       std::size_t limit) override {
        std::vector<Handoff> out;
        {
            Stmt st(*this,
                    "SELECT id, key, sender FROM handoffs WHERE chain = ?1 AND managed = ?2 ORDER "
                    "BY id LIMIT ?3;");
            st.text(1, chain)
                .integer(2, managed ? 1 : 0)
                .integer(3, static_cast<std::int64_t>(limit));
            while (st.step())
                out.push_back(Handoff{std::string(chain), managed, st.column_text(1),
                                      st.column_text(2), st.column_int(0)});
        }
        if (!out.empty()) {
            Stmt del(*this, "DELETE FROM handoffs WHERE chain = ?1 AND managed = ?2 AND id <= ?3;");
            del.text(1, chain).integer(2, managed ? 1 : 0).integer(3, out.back().id);
            del.done();
        }
        return out;
    }

    // One gateway opens the file: it holds every lease.
    bool take_lease(std::string_view) override { return true; }
    void require_lease(std::string_view) const override {}
    std::size_t leases_held() const override { return 0; }
    std::size_t replicas() override { return 1; }

    std::optional<StreamRecord> find_stream(std::string_view id) override {
        Stmt st(*this,
                "SELECT id, chain, next_block, paused, updated_ms, cursor, definition FROM streams "
                "WHERE id = ?1;");
        st.text(1, id);
        if (!st.step()) return std::nullopt;
        return read_stream(st);
    }

    std::vector<StreamRecord> streams() override {
        Stmt st(*this,
                "SELECT id, chain, next_block, paused, updated_ms, cursor, definition FROM streams "
                "ORDER BY id;");
        std::vector<StreamRecord> out;
        while (st.step()) out.push_back(read_stream(st));
        return out;
    }

    void put_stream(const StreamRecord& r) override {
        Stmt st(*this,
                "INSERT INTO streams (id, chain, next_block, paused, updated_ms, cursor, "
                "definition) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (id) DO UPDATE SET "
                "chain = ?2, next_block = ?3, paused = ?4, updated_ms = ?5, cursor = ?6, "
                "definition = ?7;");
        st.text(1, r.id).text(2, r.chain);
        if (r.next_block) st.integer(3, static_cast<std::int64_t>(*r.next_block));
        st.integer(4, r.paused ? 1 : 0).integer(5, r.updated_ms).text(6, r.cursor);
        if (r.definition) st.text(7, *r.definition);
        st.done();
    }

    bool delete_stream(std::string_view id) override {
        Stmt st(*this, "DELETE FROM streams WHERE id = ?1;");
        st.text(1, id);
        st.done();
        return sqlite3_changes(db_.get()) > 0;
    }

    std::pair<std::int64_t, std::int64_t> last_changes() override {
        Stmt raw(*this, "SELECT IFNULL(MAX(id), 0) FROM transaction_events;");
        raw.step();
        Stmt managed(*this, "SELECT IFNULL(MAX(id), 0) FROM managed_events;");
        managed.step();
        return {raw.column_int(0), managed.column_int(0)};
    }

    ChangesPage changes(std::string_view chain, std::int64_t after_raw, std::int64_t after_managed,
                        std::size_t limit) override {
        ChangesPage page;
        const auto [raw_last, managed_last] = last_changes();
        page.raw_upto = read_changes(
            "SELECT e.id, t.hash, t.sender, t.nonce, e.state, e.reason, e.at_ms, NULL FROM "
            "transaction_events e JOIN transactions t ON t.id = e.tx WHERE e.id > ?1 AND "
            "t.chain = ?2 AND t.parent IS NULL ORDER BY e.id LIMIT ?3;",
            false, chain, after_raw, raw_last, limit, page.changes);
        page.managed_upto = read_changes(
            "SELECT e.id, m.id, m.sender, m.nonce, e.state, e.reason, e.at_ms, m.idempotency_key "
            "FROM managed_events e JOIN managed_transactions m ON m.id = e.managed_id WHERE "
            "e.id > ?1 AND m.chain = ?2 ORDER BY e.id LIMIT ?3;",
            true, chain, after_managed, managed_last, limit, page.changes);
        return page;
    }

    // One kind's changes (`sql`: id, transaction, sender, nonce, state, reason, at, key) after
    // `after`, appended to `out`; where the next read starts. Fewer than `limit`: every change of
    // the kind there is now was read (SQLite's writes are one at a time), so after `last`,
    // whatever it was.
    std::int64_t read_changes(const char* sql, bool managed, std::string_view chain,
                              std::int64_t after, std::int64_t last, std::size_t limit,
                              std::vector<StateChange>& out) {
        Stmt st(*this, sql);
        st.integer(1, after).text(2, chain).integer(3, static_cast<std::int64_t>(limit));
        std::size_t read = 0;
        while (st.step()) {
            StateChange c;
            c.managed = managed;
            c.seq = st.column_int(0);
            c.tx = st.column_text(1);
            c.sender = st.column_text(2);
            if (!st.is_null(3)) c.nonce = static_cast<std::uint64_t>(st.column_int(3));
            c.state = parse_tx_state(st.column_text(4)).value_or(TxState::failed);
            c.reason = st.column_text(5);
            c.at_ms = st.column_int(6);
            if (!st.is_null(7)) c.idempotency_key = st.column_text(7);
            out.push_back(std::move(c));
            ++read;
        }
        return read < limit ? std::max(after, last) : out.back().seq;
    }

    std::vector<TxEvent> managed_history(std::string_view id) override {
        Stmt st(
            *this,
            "SELECT state, reason, at_ms FROM managed_events WHERE managed_id = ?1 ORDER BY id;");
        st.text(1, id);
        return read_events(st);
    }

    std::vector<TxRecord> attempts(std::string_view id) override {
        Stmt st(*this, fmt::format("SELECT {} FROM transactions WHERE parent = ?1 ORDER BY "
                                   "created_ms, rowid;",
                                   kColumns));
        st.text(1, id);
        std::vector<TxRecord> out;
        while (st.step()) out.push_back(read_record(st));
        return out;
    }

    std::uint64_t take_nonce(std::string_view chain, std::string_view sender,
                             std::uint64_t floor) override {
        const std::uint64_t nonce = std::max(floor, next_nonce(chain, sender).value_or(0));
        set_next_nonce(chain, sender, nonce + 1);
        return nonce;
    }

    void set_next_nonce(std::string_view chain, std::string_view sender,
                        std::uint64_t next) override {
        Stmt st(*this,
                "INSERT INTO nonces (chain, sender, next) VALUES (?1, ?2, ?3) ON CONFLICT (chain, "
                "sender) DO UPDATE SET next = excluded.next;");
        st.text(1, chain).text(2, sender).integer(3, static_cast<std::int64_t>(next));
        st.done();
    }

    std::optional<std::uint64_t> next_nonce(std::string_view chain,
                                            std::string_view sender) override {
        Stmt st(*this, "SELECT next FROM nonces WHERE chain = ?1 AND sender = ?2;");
        st.text(1, chain).text(2, sender);
        if (!st.step()) return std::nullopt;
        return static_cast<std::uint64_t>(st.column_int(0));
    }

    Pruned prune(std::int64_t before_ms, std::size_t limit) override {
        // Only what nothing can change any more: unfinished ones, and mined ones whose block is
        // not final (a reorg may reopen them), stay. Row by row through the indexes (the raw ones
        // final for good by time, events by transaction): a batch costs its own rows, not a scan
        // of the table. The
        // pages freed go to SQLite's free list, and new rows take them before the file grows.
        Pruned out;
        const auto lim = static_cast<std::int64_t>(limit);
        std::vector<std::int64_t> ids;
        {
            Stmt st(*this, fmt::format("SELECT id FROM transactions INDEXED BY "
                                       "transactions_prunable WHERE parent IS NULL AND "
                                       "finalized = 1 AND state IN {} AND updated_ms < ?1 "
                                       "LIMIT ?2;",
                                       kFinal));
            st.integer(1, before_ms).integer(2, lim);
            while (st.step()) ids.push_back(st.column_int(0));
        }
        for (std::int64_t id : ids) delete_tx(id);
        out.transactions = ids.size();
        out.more = ids.size() >= limit;

        std::vector<std::string> managed;
        {
            Stmt st(*this, fmt::format("SELECT m.id FROM managed_transactions m WHERE m.state IN "
                                       "{} AND m.updated_ms < ?1 AND NOT EXISTS (SELECT 1 FROM "
                                       "transactions t WHERE t.parent = m.id AND t.finalized = "
                                       "0) LIMIT ?2;",
                                       kFinal));
            st.integer(1, before_ms).integer(2, lim);
            while (st.step()) managed.push_back(st.column_text(0));
        }
        for (const auto& id : managed) {
            std::vector<std::int64_t> attempts;
            {
                Stmt st(*this, "SELECT id FROM transactions WHERE parent = ?1;");
                st.text(1, id);
                while (st.step()) attempts.push_back(st.column_int(0));
            }
            for (std::int64_t a : attempts) delete_tx(a);
            out.transactions += attempts.size();
            Stmt events(*this, "DELETE FROM managed_events WHERE managed_id = ?1;");
            events.text(1, id).done();
            Stmt row(*this, "DELETE FROM managed_transactions WHERE id = ?1;");
            row.text(1, id).done();
        }
        out.managed = managed.size();
        out.more = out.more || managed.size() >= limit;
        return out;
    }

    void begin() override { Stmt(*this, "BEGIN IMMEDIATE;").done(); }
    void commit() override { Stmt(*this, "COMMIT;").done(); }
    void rollback() noexcept override {
        sqlite3_exec(db_.get(), "ROLLBACK;", nullptr, nullptr, nullptr);
    }
    void savepoint() override { Stmt(*this, "SAVEPOINT call;").done(); }
    void release_savepoint() override { Stmt(*this, "RELEASE call;").done(); }
    void rollback_to_savepoint() noexcept override {
        sqlite3_exec(db_.get(), "ROLLBACK TO call; RELEASE call;", nullptr, nullptr, nullptr);
    }
    bool in_transaction() const override { return sqlite3_get_autocommit(db_.get()) == 0; }

private:
    // A prepared statement; every failure is a StoreError naming the file. Statements are
    // prepared once and kept by their SQL: a write costs no parsing. One already in use (a
    // statement run while another of the same SQL reads rows) is prepared afresh.
    struct Cached {
        sqlite3_stmt* stmt = nullptr;
        bool busy = false;
    };
    class Stmt {
    public:
        Stmt(SqliteStore& store, std::string_view sql) : store_(store) {
            auto it = store_.statements_.find(sql);
            if (it != store_.statements_.end() && !it->second.busy) {
                slot_ = &it->second;
                stmt_ = slot_->stmt;
                slot_->busy = true;
                return;
            }
            if (sqlite3_prepare_v2(store_.db_.get(), sql.data(), static_cast<int>(sql.size()),
                                   &stmt_, nullptr) != SQLITE_OK)
                store_.fail("prepare");
            if (it == store_.statements_.end()) {
                slot_ = &store_.statements_.emplace(sql, Cached{stmt_, true}).first->second;
            }
        }
        ~Stmt() {
            if (!slot_) {
                sqlite3_finalize(stmt_);
                return;
            }
            sqlite3_reset(stmt_);
            sqlite3_clear_bindings(stmt_);
            slot_->busy = false;
        }
        Stmt(const Stmt&) = delete;
        Stmt& operator=(const Stmt&) = delete;

        Stmt& text(int i, std::string_view v) {
            check(sqlite3_bind_text(stmt_, i, v.data(), static_cast<int>(v.size()),
                                    SQLITE_TRANSIENT));
            return *this;
        }
        Stmt& integer(int i, std::int64_t v) {
            check(sqlite3_bind_int64(stmt_, i, v));
            return *this;
        }
        Stmt& blob(int i, const std::vector<std::uint8_t>& v) {
            check(sqlite3_bind_blob(stmt_, i, v.data(), static_cast<int>(v.size()),
                                    SQLITE_TRANSIENT));
            return *this;
        }
        /// True while there is a row.
        bool step() {
            const int rc = sqlite3_step(stmt_);
            if (rc == SQLITE_ROW) return true;
            if (rc != SQLITE_DONE) store_.fail("step");
            return false;
        }
        void done() {
            if (step()) store_.fail("unexpected row");
        }
        bool is_null(int c) const { return sqlite3_column_type(stmt_, c) == SQLITE_NULL; }
        std::string column_text(int c) const {
            const auto* p = sqlite3_column_text(stmt_, c);
            return p ? std::string(reinterpret_cast<const char*>(p),
                                   static_cast<std::size_t>(sqlite3_column_bytes(stmt_, c)))
                     : std::string();
        }
        std::int64_t column_int(int c) const { return sqlite3_column_int64(stmt_, c); }
        std::vector<std::uint8_t> column_blob(int c) const {
            const auto* p = static_cast<const std::uint8_t*>(sqlite3_column_blob(stmt_, c));
            return p ? std::vector<std::uint8_t>(
                           p, p + static_cast<std::size_t>(sqlite3_column_bytes(stmt_, c)))
                     : std::vector<std::uint8_t>();
        }

    private:
        void check(int rc) {
            if (rc != SQLITE_OK) store_.fail("bind");
        }
        SqliteStore& store_;
        sqlite3_stmt* stmt_ = nullptr;
        Cached* slot_ = nullptr;  // null: not kept, finalized at the end
    };

    [[noreturn]] void fail(const char* what) {
        throw StoreError(fmt::format("store {}: {}: {}", path_, what, sqlite3_errmsg(db_.get())));
    }

    void add_managed_event(const std::string& id, TxState state, const std::string& reason,
                           std::int64_t at_ms) {
        Stmt st(*this,
                "INSERT INTO managed_events (managed_id, state, reason, at_ms) VALUES (?1, ?2, ?3, "
                "?4);");
        st.text(1, id).text(2, to_string(state)).text(3, reason).integer(4, at_ms);
        st.done();
    }

    void delete_tx(std::int64_t id) {
        drop_network_form(id);
        Stmt events(*this, "DELETE FROM transaction_events WHERE tx = ?1;");
        events.integer(1, id).done();
        Stmt row(*this, "DELETE FROM transactions WHERE id = ?1;");
        row.integer(1, id).done();
    }

    void drop_network_form(std::int64_t tx) {
        Stmt st(*this, "DELETE FROM transaction_sidecars WHERE tx = ?1;");
        st.integer(1, tx);
        st.done();
    }

    void add_tx_event(std::int64_t tx, TxState state, const std::string& reason,
                      std::int64_t at_ms) {
        Stmt st(
            *this,
            "INSERT INTO transaction_events (tx, state, reason, at_ms) VALUES (?1, ?2, ?3, ?4);");
        st.integer(1, tx).text(2, to_string(state)).text(3, reason).integer(4, at_ms);
        st.done();
    }

    static std::vector<TxEvent> read_events(Stmt& st) {
        std::vector<TxEvent> out;
        while (st.step())
            out.push_back(TxEvent{parse_tx_state(st.column_text(0)).value_or(TxState::failed),
                                  st.column_text(1), st.column_int(2)});
        return out;
    }

    static TxRecord read_record(const Stmt& st) {
        TxRecord r;
        r.hash = st.column_text(0);
        r.chain = st.column_text(1);
        r.chain_id = static_cast<std::uint64_t>(st.column_int(2));
        r.sender = st.column_text(3);
        r.nonce = static_cast<std::uint64_t>(st.column_int(4));
        r.raw = st.column_blob(5);
        r.state = parse_tx_state(st.column_text(6)).value_or(TxState::dead_letter);
        r.reason = st.column_text(7);
        r.created_ms = st.column_int(8);
        r.updated_ms = st.column_int(9);
        r.broadcasts = static_cast<std::uint32_t>(st.column_int(10));
        if (!st.is_null(11)) r.block_hash = st.column_text(11);
        if (!st.is_null(12)) r.block_number = static_cast<std::uint64_t>(st.column_int(12));
        if (!st.is_null(13)) r.parent = st.column_text(13);
        if (!st.is_null(14)) r.client = st.column_text(14);
        r.finalized = st.column_int(15) != 0;
        if (!st.is_null(16)) r.source = st.column_text(16);
        return r;
    }

    static StreamRecord read_stream(const Stmt& st) {
        StreamRecord r;
        r.id = st.column_text(0);
        r.chain = st.column_text(1);
        if (!st.is_null(2)) r.next_block = static_cast<std::uint64_t>(st.column_int(2));
        r.paused = st.column_int(3) != 0;
        r.updated_ms = st.column_int(4);
        r.cursor = st.column_text(5);
        if (!st.is_null(6)) r.definition = st.column_text(6);
        return r;
    }

    static ManagedRecord read_managed(const Stmt& st) {
        ManagedRecord r;
        r.id = st.column_text(0);
        r.chain = st.column_text(1);
        r.sender = st.column_text(2);
        r.request = st.column_text(3);
        if (!st.is_null(4)) r.idempotency_key = st.column_text(4);
        if (!st.is_null(5)) r.nonce = static_cast<std::uint64_t>(st.column_int(5));
        r.state = parse_tx_state(st.column_text(6)).value_or(TxState::dead_letter);
        r.reason = st.column_text(7);
        r.created_ms = st.column_int(8);
        r.updated_ms = st.column_int(9);
        r.attempts = static_cast<std::uint32_t>(st.column_int(10));
        if (!st.is_null(11)) r.hash = st.column_text(11);
        if (!st.is_null(12)) r.client = st.column_text(12);
        if (!st.is_null(13)) r.value = st.column_blob(13);
        if (!st.is_null(14)) r.spend_ms = st.column_int(14);
        return r;
    }

    // Once a process, before SQLite initializes: no count of its memory in use, which would take
    // a global lock around every allocation it makes (nothing reads the count).
    static void configure_sqlite() {
        static const int configured = sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
        (void)configured;  // SQLITE_MISUSE when SQLite was initialized before: it counts, no harm
    }

    // Migrates to the newest schema, or to `up_to` when it is set (tests).
    void open(int up_to) {
        std::filesystem::path p(path_);
        std::error_code ec;
        if (p.has_parent_path()) std::filesystem::create_directories(p.parent_path(), ec);
        if (ec)
            throw StoreError(
                fmt::format("store: cannot create the folder of {}: {}", path_, ec.message()));
        configure_sqlite();
        sqlite3* db = nullptr;
        // NOMUTEX: a journal is used by one thread at a time (the journal service's, or a test's),
        // so SQLite does not lock the connection around every call.
        const int rc = sqlite3_open_v2(
            path_.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
            nullptr);
        db_.reset(db);  // closed on every path, this constructor throwing included
        if (rc != SQLITE_OK)
            throw StoreError(fmt::format("store: cannot open {}: {}", path_,
                                         db ? sqlite3_errmsg(db) : "out of memory"));
        sqlite3_busy_timeout(db_.get(), 5000);
        // WAL with a full fsync on every commit: a committed row survives a crash or power loss.
        exec("PRAGMA journal_mode=WAL;");
        exec("PRAGMA synchronous=FULL;");
        exec("PRAGMA foreign_keys=ON;");
        exec("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);");
        version_ = read_version();
        const int newest = up_to > 0 ? up_to : static_cast<int>(std::size(kMigrations));
        if (version_ > newest)
            throw StoreError(
                fmt::format("store: {} has schema version {}, newer than this build knows ({}): "
                            "run a newer chain-gateway",
                            path_, version_, newest));
        while (version_ < newest) {
            exec("BEGIN IMMEDIATE;");
            try {
                exec(kMigrations[version_]);
                exec(fmt::format(
                    "DELETE FROM schema_version; INSERT INTO schema_version VALUES ({});",
                    version_ + 1));
                exec("COMMIT;");
            } catch (...) {
                sqlite3_exec(db_.get(), "ROLLBACK;", nullptr, nullptr, nullptr);
                throw;
            }
            ++version_;
        }
    }

    void exec(const std::string& sql) {
        char* error = nullptr;
        if (sqlite3_exec(db_.get(), sql.c_str(), nullptr, nullptr, &error) != SQLITE_OK) {
            std::string why = error ? error : sqlite3_errmsg(db_.get());
            sqlite3_free(error);
            throw StoreError(fmt::format("store {}: {}", path_, why));
        }
    }

    int read_version() {
        sqlite3_stmt* stmt = nullptr;
        int version = 0;
        if (sqlite3_prepare_v2(db_.get(), "SELECT version FROM schema_version LIMIT 1;", -1, &stmt,
                               nullptr) == SQLITE_OK &&
            sqlite3_step(stmt) == SQLITE_ROW)
            version = sqlite3_column_int(stmt, 0);
        sqlite3_finalize(stmt);
        return version;
    }

    struct Close {
        void operator()(sqlite3* db) const { sqlite3_close_v2(db); }
    };

    // Looked up by the SQL's text as it is given (a literal, a kept string): no copy of it made.
    struct SqlHash {
        using is_transparent = void;
        std::size_t operator()(std::string_view sql) const noexcept {
            return std::hash<std::string_view>{}(sql);
        }
    };
    // Finalizes the kept statements before the database closes (it is declared after it).
    struct Statements : std::unordered_map<std::string, Cached, SqlHash, std::equal_to<>> {
        ~Statements() {
            for (auto& [sql, c] : *this) sqlite3_finalize(c.stmt);
        }
    };

    std::string path_;
    std::unique_ptr<sqlite3, Close> db_;
    Statements statements_;
    int version_ = 0;
};

}  // namespace

std::string_view to_string(TxState state) {
    switch (state) {
        case TxState::queued: return "QUEUED";
        case TxState::broadcasting: return "BROADCASTING";
        case TxState::confirming: return "CONFIRMING";
        case TxState::completed: return "COMPLETED";
        case TxState::failed: return "FAILED";
        case TxState::dead_letter: return "DEAD_LETTER";
        case TxState::preparing: return "PREPARING";
        case TxState::signing: return "SIGNING";
        case TxState::cancelled: return "CANCELLED";
        case TxState::replaced: return "REPLACED";
        case TxState::pending_approval: return "PENDING_APPROVAL";
    }
    return "UNKNOWN";
}

std::optional<TxState> parse_tx_state(std::string_view text) {
    for (TxState s :
         {TxState::queued, TxState::preparing, TxState::signing, TxState::broadcasting,
          TxState::confirming, TxState::completed, TxState::failed, TxState::dead_letter,
          TxState::cancelled, TxState::pending_approval, TxState::replaced})
        if (to_string(s) == text) return s;
    return std::nullopt;
}

namespace detail {

std::unique_ptr<Store> open_sqlite(const std::string& path, int up_to) {
    return std::make_unique<SqliteStore>(path, up_to);
}

}  // namespace detail

}  // namespace gateway::store
