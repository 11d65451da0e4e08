// `chain-gateway migrate-store` (store/migrate_store.hpp) against a real PostgreSQL server
// (support/postgres_server.hpp): a SQLite journal with every kind of row is moved, and the
// PostgreSQL journal answers every Journal question as the SQLite one did, change numbers and
// stream cursors included; new rows are numbered past every old one; a journal in use is never
// merged into; the binary's command says what happened and never the password.

#include "gateway/store/migrate_store.hpp"
#include "gateway/store/pg_connection.hpp"
#include "gateway/store/store.hpp"

#include "support/journal_records.hpp"
#include "support/postgres_server.hpp"
#include "support/process.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <sqlite3.h>

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace gateway::test {
namespace {

using namespace std::chrono_literals;
using store::ManagedRecord;
using store::StateChange;
using store::StreamRecord;
using store::TxEvent;
using store::TxRecord;
using store::TxState;
using ::testing::HasSubstr;
using ::testing::Not;

class MigrateStoreTest : public PostgresSuite {
protected:
    static config::StoreConfig sqlite_at(const std::string& path) {
        return config::StoreConfig{"sqlite", path};
    }
    static config::StoreConfig postgres_at(const std::string& url) {
        config::StoreConfig c;
        c.backend = "postgres";
        c.url = url;
        c.timeout = 2000ms;
        return c;
    }
    // The URL of database `name` with a password in it (trust authentication takes any): one
    // that must never be printed.
    static std::string url_with_password(const std::string& name) {
        server->database(name);
        return fmt::format("postgresql://postgres:S3CRETPASSWORD@127.0.0.1:{}/{}", server->port(),
                           name);
    }
};

const std::string kSender = "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266";

// Every field, so that two records compare as text and a difference shows in the failure.
std::string show(const TxRecord& r) {
    return fmt::format("{} {} {} {} {} raw={:02x} {} '{}' {} {} {} {} {} {} '{}' {} '{}'", r.hash,
                       r.chain, r.chain_id, r.sender, r.nonce, fmt::join(r.raw, ""),
                       store::to_string(r.state), r.reason, r.created_ms, r.updated_ms,
                       r.broadcasts, r.block_hash.value_or("-"),
                       r.block_number ? std::to_string(*r.block_number) : "-",
                       r.parent.value_or("-"), r.client, r.finalized, r.source);
}
std::string show(const ManagedRecord& m) {
    return fmt::format("{} {} {} {} key={} nonce={} {} '{}' {} {} {} {} '{}' value={:02x} spend={}",
                       m.id, m.chain, m.sender, m.request, m.idempotency_key.value_or("-"),
                       m.nonce ? std::to_string(*m.nonce) : "-", store::to_string(m.state),
                       m.reason, m.created_ms, m.updated_ms, m.attempts, m.hash.value_or("-"),
                       m.client, fmt::join(m.value, ""),
                       m.spend_ms ? std::to_string(*m.spend_ms) : "-");
}
std::string show(const TxEvent& e) {
    return fmt::format("{} '{}' {}", store::to_string(e.state), e.reason, e.at_ms);
}
std::string show(const StreamRecord& s) {
    return fmt::format("{} {} {} {} {} '{}' {}", s.id, s.chain,
                       s.next_block ? std::to_string(*s.next_block) : "-", s.paused, s.updated_ms,
                       s.cursor, s.definition.value_or("-"));
}
std::string show(const StateChange& c) {
    return fmt::format("{} #{} {} {} {} {} '{}' {} {}", c.managed, c.seq, c.tx, c.sender,
                       c.nonce ? std::to_string(*c.nonce) : "-", store::to_string(c.state),
                       c.reason, c.at_ms, c.idempotency_key.value_or("-"));
}
std::string show(const store::Spending& s) {
    return fmt::format("{} {} {} {:02x} {}", s.id, store::to_string(s.state), s.attempts,
                       fmt::join(s.value, ""), s.spend_ms);
}
std::string show(const store::ManagedRef& r) {
    return r.id + " " + r.chain + " " + r.sender;
}
template <class T>
std::string show(const std::optional<T>& v) {
    return v ? show(*v) : "(none)";
}
template <class T>
std::vector<std::string> show(const std::vector<T>& list) {
    std::vector<std::string> out;
    for (const T& v : list) out.push_back(show(v));
    return out;
}

// Every page of a chain's changes, `limit` at a time, as a stream reads them: each page's
// changes and where it reads on from.
std::vector<std::string> pages(store::Journal& j, const std::string& chain, std::size_t limit) {
    std::vector<std::string> out;
    std::int64_t raw = 0, managed = 0;
    for (int i = 0; i < 1000; ++i) {
        const store::ChangesPage p = j.changes(chain, raw, managed, limit);
        out.push_back(fmt::format("upto {} {}: {}", p.raw_upto, p.managed_upto,
                                  fmt::join(show(p.changes), " | ")));
        if (p.changes.empty()) break;
        raw = p.raw_upto;
        managed = p.managed_upto;
    }
    return out;
}

ManagedRecord managed(const std::string& id, TxState state, std::int64_t at_ms) {
    ManagedRecord m;
    m.id = id;
    m.chain = "devnet";
    m.sender = kSender;
    m.request = R"({"to":"0xdead","value":"0x100"})";
    m.state = state;
    m.reason = "received";
    m.created_ms = m.updated_ms = at_ms;
    return m;
}

const std::vector<std::uint8_t> kNetworkForm(150'000, 0x5a);
constexpr std::size_t kBulk = 1200;  // more than two of migrate_store's batches

// A SQLite journal with every kind of row: raw transactions in several states with histories
// (one a blob transaction with its network form, one mined and final, one on another chain, and
// enough of them to fill several batches), managed transactions with attempts, events,
// idempotency keys, values and spend times, nonces, streams with a cursor and a definition; and
// the last changes of each kind pruned, so that SQLite has given numbers past its largest ids.
// Returns the numbers of those pruned changes (SQLite's last raw and managed ones).
std::pair<std::int64_t, std::int64_t> fill(store::Store& s) {
    TxRecord a1 = raw_tx("0xa1", TxState::queued, 100, 0);
    a1.client = "alice";
    a1.source = "alice";
    s.insert(a1);
    s.update({"0xa1", TxState::broadcasting, "accepted by node-1", 110, 1u});
    store::TxUpdate mined{"0xa1", TxState::confirming, "mined", 120};
    mined.set_block = true;
    mined.block_hash = "0xb10c01";
    mined.block_number = 77;
    s.update(mined);

    s.insert(raw_tx("0xa2", TxState::queued, 200, 1));
    s.update({"0xa2", TxState::broadcasting, "sent", 210, 3u});
    store::TxUpdate done{"0xa2", TxState::completed, "12 confirmations", 230};
    done.set_block = true;
    done.block_hash = "0xb10c02";
    done.block_number = 78;
    s.update(done);
    s.insert(raw_tx("0xa3", TxState::queued, 300, 2));
    s.update({"0xa3", TxState::failed, "nonce too low", 310});
    s.insert(raw_tx("0xa4", TxState::queued, 400, 3));
    s.update({"0xa4", TxState::dead_letter, "no node took it", 410});
    TxRecord mined_final = raw_tx("0xa5", TxState::queued, 500, 4);
    s.insert(mined_final);
    store::TxUpdate reverted{"0xa5", TxState::failed, "reverted", 510};
    reverted.set_block = true;
    reverted.block_hash = "0xb10c03";
    reverted.block_number = 79;
    s.update(reverted);  // mined in a block not final yet: unfinalized

    TxRecord blob = raw_tx("0xb1", TxState::queued, 600, 5);
    blob.raw = {0x03, 0xf8, 0x99, 0x01};
    s.insert(blob);
    s.put_network_form("0xb1", kNetworkForm);
    s.update({"0xb1", TxState::broadcasting, "sent with its blobs", 610, 1u});

    TxRecord elsewhere = raw_tx("0xc1", TxState::queued, 700, 0);
    elsewhere.chain = "other";
    elsewhere.chain_id = 10;
    s.insert(elsewhere);

    // Managed: one with an idempotency key, a client, a value let spend, a nonce and two attempts.
    ManagedRecord g1 = managed("gtx-1", TxState::queued, 1000);
    g1.idempotency_key = "order-42";
    g1.client = "alice";
    g1.value = {0x01, 0x00};
    g1.spend_ms = 1000;
    s.insert_managed(g1);
    EXPECT_EQ(s.take_nonce("devnet", kSender, 6), 6u);
    s.update_managed({"gtx-1", TxState::signing, "nonce 6 taken", 1010, 6u});
    store::ManagedUpdate sent{"gtx-1", TxState::broadcasting, "sent", 1020};
    sent.hash = "0xd1";
    sent.attempts = 1;
    s.update_managed(sent);
    TxRecord first = raw_tx("0xd1", TxState::broadcasting, 1020, 6);
    first.parent = "gtx-1";
    s.insert(first);
    TxRecord bumped = raw_tx("0xd2", TxState::broadcasting, 1030, 6);
    bumped.parent = "gtx-1";
    s.insert(bumped);
    s.update({"0xd1", TxState::replaced, "0xd2 took its nonce", 1040});
    sent.hash = "0xd2";
    sent.attempts = 2;
    sent.at_ms = 1030;
    sent.reason = "fee bumped";
    s.update_managed(sent);
    // Held for approval: a value, no spend time yet.
    ManagedRecord g2 = managed("gtx-2", TxState::pending_approval, 1100);
    g2.value = {0x0d, 0xe0, 0xb6, 0xb3};
    s.insert_managed(g2);
    // Nothing moved (no value), finished.
    ManagedRecord g3 = managed("gtx-3", TxState::queued, 1200);
    g3.idempotency_key = "order-43";
    s.insert_managed(g3);
    s.update_managed({"gtx-3", TxState::failed, "refused by the policy", 1210});
    s.set_next_nonce("other", kSender, 41);

    StreamRecord transfers{"transfers", "devnet", 19, true, 1300};
    transfers.cursor = R"({"raw":3,"managed":2})";
    transfers.definition = R"({"id":"transfers","kind":"transactions"})";
    s.put_stream(transfers);
    s.put_stream(StreamRecord{"from-config", "devnet", std::nullopt, false, 1310});

    // Many more, in one database transaction (one fsync rather than one each).
    s.begin();
    for (std::size_t i = 0; i < kBulk; ++i) {
        const std::string hash = fmt::format("0x{:04x}", 0xe000 + i);
        s.insert(raw_tx(hash, TxState::queued, 2000 + static_cast<std::int64_t>(i), 100 + i));
        if (i % 3 == 0)
            s.update({hash, TxState::broadcasting, "sent", 3000 + static_cast<std::int64_t>(i)});
    }
    s.commit();

    // Finished long ago, pruned last: their numbers are SQLite's largest ever, gone from the
    // tables.
    s.insert(raw_tx("0xf0", TxState::failed, 5, 900));
    s.insert_managed(managed("gtx-old", TxState::cancelled, 5));
    const auto pruned = s.last_changes();
    const store::Pruned p = s.prune(10, 100);
    EXPECT_EQ(p.transactions, 1u);
    EXPECT_EQ(p.managed, 1u);
    EXPECT_LT(s.last_changes().first, pruned.first);
    EXPECT_LT(s.last_changes().second, pruned.second);
    return pruned;
}

std::vector<std::string> all_hashes() {
    std::vector<std::string> out = {"0xa1", "0xa2", "0xa3", "0xa4", "0xa5",
                                    "0xb1", "0xc1", "0xd1", "0xd2", "0xf0"};
    for (std::size_t i = 0; i < kBulk; i += 97) out.push_back(fmt::format("0x{:04x}", 0xe000 + i));
    return out;
}

// What the journal `j` answers to every question, one string each, to compare two journals.
std::vector<std::string> answers(store::Journal& j) {
    std::vector<std::string> out;
    const auto add = [&](const std::string& what, const auto& v) {
        out.push_back(fmt::format("{}: {}", what, fmt::join(show(v), " | ")));
    };
    for (const std::string& h : all_hashes()) {
        out.push_back("find " + h + ": " + show(j.find(h)));
        add("history " + h, j.history(h));
        const auto network = j.network_form(h);
        out.push_back(fmt::format("network {}: {}", h,
                                  network ? std::to_string(network->size()) + " bytes" : "none"));
    }
    add("unfinished", j.unfinished());
    add("unfinalized", j.unfinalized());
    add("list", j.list(std::nullopt, 50));
    add("list broadcasting", j.list(TxState::broadcasting, 50));
    for (const char* id : {"gtx-1", "gtx-2", "gtx-3", "gtx-old"}) {
        out.push_back(fmt::format("managed {}: {}", id, show(j.find_managed(id))));
        add(fmt::format("managed history {}", id), j.managed_history(id));
        add(fmt::format("attempts {}", id), j.attempts(id));
    }
    add("unfinished managed", j.unfinished_managed());
    add("list managed", j.list_managed(std::nullopt, std::nullopt, 50));
    add("list managed by key", j.list_managed(std::nullopt, "order-42", 50));
    add("reopened", j.reopened_managed());
    add("spending", j.spending("devnet", kSender, 0));
    for (const char* chain : {"devnet", "other"}) {
        const auto n = j.next_nonce(chain, kSender);
        out.push_back(fmt::format("nonce {}: {}", chain, n ? std::to_string(*n) : "none"));
    }
    add("streams", j.streams());
    out.push_back("stream transfers: " + show(j.find_stream("transfers")));
    const auto [raw, managed] = j.last_changes();
    out.push_back(fmt::format("last changes {} {}", raw, managed));
    for (const std::string& page : pages(j, "devnet", 7)) out.push_back("devnet " + page);
    for (const std::string& page : pages(j, "other", 100)) out.push_back("other " + page);
    return out;
}

std::size_t count(store::pg::Connection& db, const std::string& table) {
    return std::stoul(db.exec("SELECT count(*) FROM " + table).rows.at(0).at(0).value());
}

TEST_F(MigrateStoreTest, AMovedJournalAnswersAsTheSqliteOneDidAndNumbersNewRowsPastEveryOld) {
    const std::string dir = make_temp_dir("migrate-store");
    const std::string path = dir + "/gateway.db";
    std::pair<std::int64_t, std::int64_t> pruned;
    std::vector<std::string> before;
    {
        auto sqlite = store::open_store(sqlite_at(path));
        pruned = fill(*sqlite);
        before = answers(*sqlite);
    }
    const std::string file_before = read_file(path);

    const std::string url = url_with_password("moved");
    std::vector<std::pair<std::string, std::size_t>> progress;
    store::MigrationOptions options;
    options.on_progress = [&](std::string_view table, std::size_t rows) {
        progress.emplace_back(table, rows);
    };
    const store::MigrationSummary summary = store::migrate_store(path, url, options);
    EXPECT_EQ(summary.from, "sqlite:" + path);
    EXPECT_THAT(summary.to, HasSubstr("postgres@127.0.0.1"));
    EXPECT_THAT(summary.to, Not(HasSubstr("S3CRETPASSWORD")));
    EXPECT_EQ(summary.sqlite_version_before, 14);
    EXPECT_EQ(summary.schema_version, 14);
    EXPECT_GT(summary.seconds, 0.0);
    std::vector<std::string> tables;
    for (const auto& t : summary.tables) tables.push_back(fmt::format("{} {}", t.name, t.rows));
    // 10 named raw transactions (0xf0 pruned) and the bulk; their events: 3 + 3 + 2 + 2 + 2 + 2 +
    // 1 + 2 + 1 for the named ones, 1 each of the bulk and 1 more for every third.
    EXPECT_THAT(tables, ::testing::ElementsAre(
                            fmt::format("transactions {}", 9 + kBulk),
                            fmt::format("transaction_events {}", 18 + kBulk + (kBulk + 2) / 3),
                            "transaction_sidecars 1", "managed_transactions 3", "managed_events 7",
                            "nonces 2", "streams 2"));
    EXPECT_THAT(progress,
                ::testing::Contains(std::pair<std::string, std::size_t>("transactions", 500)))
        << "rows are written in batches, each reported";
    EXPECT_EQ(read_file(path), file_before) << "the SQLite file is read, never written";

    auto pg = store::open_store(postgres_at(url));
    const std::vector<std::string> after = answers(*pg);
    ASSERT_EQ(after.size(), before.size());
    for (std::size_t i = 0; i < after.size(); ++i) EXPECT_EQ(after[i], before[i]);

    // New rows are numbered past every number SQLite gave, the pruned ones' included: a stream's
    // cursor that read them never skips a new change.
    TxRecord fresh = raw_tx("0xf1", TxState::queued, 9000, 950);
    ASSERT_TRUE(pg->insert(fresh).second);
    // Changed at the same time as gtx-3, the last changed before: listed first only when its seq
    // (the order of insertion) is past SQLite's rowids.
    ASSERT_TRUE(pg->insert_managed(managed("gtx-new", TxState::queued, 1210)).second);
    const auto [raw_last, managed_last] = pg->last_changes();
    EXPECT_GT(raw_last, pruned.first);
    EXPECT_GT(managed_last, pruned.second);
    const auto page = pg->changes("devnet", pruned.first, pruned.second, 10).changes;
    ASSERT_EQ(page.size(), 2u);
    EXPECT_EQ(page[0].tx, "0xf1");
    EXPECT_EQ(page[1].tx, "gtx-new");
    EXPECT_EQ(pg->list_managed(std::nullopt, std::nullopt, 1).at(0).id, "gtx-new");
    pg->put_network_form("0xf1", {0x03, 0x01});  // a sidecar row for a new id
    EXPECT_EQ(pg->network_form("0xf1"), (std::vector<std::uint8_t>{0x03, 0x01}));
}

// A move never merges into a journal in use: a second move into the same database, or a move
// into one where a gateway has taken a nonce or kept a stream, is refused, and nothing changes.
TEST_F(MigrateStoreTest, AJournalInUseIsRefusedAndLeftAsItWas) {
    const std::string dir = make_temp_dir("migrate-store");
    const std::string path = dir + "/gateway.db";
    {
        auto sqlite = store::open_store(sqlite_at(path));
        sqlite->insert(raw_tx("0xa1", TxState::queued, 100));
        sqlite->put_stream(StreamRecord{"s", "devnet", 5, false, 100});
    }
    const std::string url = url_with_password("twice");
    store::migrate_store(path, url);
    {
        auto sqlite = store::open_store(sqlite_at(path));
        sqlite->insert(raw_tx("0xa2", TxState::queued, 200, 1));  // the old gateway ran on
    }
    try {
        store::migrate_store(path, url);
        ADD_FAILURE() << "a second move merged into the journal";
    } catch (const store::StoreError& e) {
        EXPECT_THAT(e.what(), HasSubstr("is not empty"));
        EXPECT_THAT(e.what(), HasSubstr("transactions, streams"));
        EXPECT_THAT(e.what(), Not(HasSubstr("S3CRETPASSWORD")));
    }
    {
        store::pg::Connection db(url, 2s);
        EXPECT_EQ(count(db, "transactions"), 1u);
        EXPECT_EQ(count(db, "transaction_events"), 1u);
        EXPECT_EQ(count(db, "streams"), 1u);
        auto pg = store::open_store(postgres_at(url));
        EXPECT_FALSE(pg->find("0xa2"));
    }

    // Only a nonce, or only a stream: a gateway has used it.
    for (const char* what : {"nonce", "stream"}) {
        const std::string other = server->database(std::string("used_") + what);
        {
            auto pg = store::open_store(postgres_at(other));
            if (std::string(what) == "nonce")
                pg->set_next_nonce("devnet", kSender, 3);
            else
                pg->put_stream(StreamRecord{"s", "devnet", 5, false, 100});
        }
        try {
            store::migrate_store(path, other);
            ADD_FAILURE() << "moved into a journal with a " << what;
        } catch (const store::StoreError& e) {
            EXPECT_THAT(e.what(), HasSubstr("is not empty")) << what;
            EXPECT_THAT(e.what(), HasSubstr(std::string(what) + "s")) << what;
        }
        store::pg::Connection db(other, 2s);
        EXPECT_EQ(count(db, "transactions"), 0u) << what;
    }
}

// The PostgreSQL journal is owned by the mover while it runs: a gateway owning it already makes
// the move fail rather than write under it.
TEST_F(MigrateStoreTest, AJournalAGatewayOwnsIsNotMovedInto) {
    const std::string dir = make_temp_dir("migrate-store");
    const std::string path = dir + "/gateway.db";
    store::open_store(sqlite_at(path))->insert(raw_tx("0xa1", TxState::queued, 100));
    const std::string url = server->database("owned");
    auto gateway = store::open_store(postgres_at(url));
    store::MigrationOptions options;
    options.timeout = 300ms;
    try {
        store::migrate_store(path, url, options);
        ADD_FAILURE() << "moved into a journal a gateway owns";
    } catch (const store::StoreError& e) {
        EXPECT_THAT(e.what(), HasSubstr("another gateway owns this journal"));
    }
    EXPECT_FALSE(gateway->find("0xa1"));
}

// Runs `sql` on the SQLite file at `path`, as an operator's sqlite3 would.
void sqlite_exec(const std::string& path, const char* sql) {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
    const int rc = sqlite3_exec(db, sql, nullptr, nullptr, nullptr);
    const std::string why = sqlite3_errmsg(db);
    sqlite3_close(db);
    ASSERT_EQ(rc, SQLITE_OK) << why;
}

// All or nothing: a row PostgreSQL refuses in the last table copied (text that is not UTF-8), or
// one the move refuses (text with a NUL, which libpq would cut short), leaves the PostgreSQL
// journal without a row, and once the row is mended the move goes through.
TEST_F(MigrateStoreTest, ARowThatCannotBeCopiedLeavesNothingCopied) {
    const std::string dir = make_temp_dir("migrate-store");
    const std::string path = dir + "/gateway.db";
    {
        auto sqlite = store::open_store(sqlite_at(path));
        sqlite->insert(raw_tx("0xa1", TxState::queued, 100));
        sqlite->take_nonce("devnet", kSender, 0);
        sqlite->put_stream(StreamRecord{"s", "devnet", 5, false, 100});
    }
    const std::string url = server->database("half_way");
    const auto refused = [&](const std::string& expected) {
        try {
            store::migrate_store(path, url);
            ADD_FAILURE() << "copied a row it cannot copy as it is";
        } catch (const store::StoreError& e) {
            EXPECT_THAT(e.what(), HasSubstr(expected));
        }
        store::pg::Connection db(url, 2s);
        for (const char* table : {"transactions", "transaction_events", "nonces", "streams"})
            EXPECT_EQ(count(db, table), 0u) << table;
    };
    sqlite_exec(path, "UPDATE streams SET cursor = CAST(X'FF' AS TEXT)");
    refused("copying streams (rows 1 to 1 by id)");
    sqlite_exec(path, "UPDATE streams SET cursor = CAST(X'7B007D' AS TEXT)");
    refused("streams.cursor holds text with a NUL byte");
    sqlite_exec(path, "UPDATE streams SET cursor = '{}'");
    const store::MigrationSummary moved = store::migrate_store(path, url);
    EXPECT_EQ(moved.tables.back().name, "streams");
    EXPECT_EQ(moved.tables.back().rows, 1u);
    EXPECT_EQ(store::open_store(postgres_at(url))->find_stream("s")->cursor, "{}");
}

// A reason SQLite kept whatever its bytes (what a node answered) is moved as the PostgreSQL
// journal keeps one: bytes that are not UTF-8, and a NUL, become U+FFFD; the row is not refused.
TEST_F(MigrateStoreTest, AReasonThatIsNotUtf8IsMovedReadably) {
    const std::string dir = make_temp_dir("migrate-store");
    const std::string path = dir + "/gateway.db";
    {
        auto sqlite = store::open_store(sqlite_at(path));
        sqlite->insert(raw_tx("0xa1", TxState::queued, 100));
    }
    sqlite_exec(path, "UPDATE transactions SET reason = CAST(X'6E6F6465FF00206F6B' AS TEXT)");
    sqlite_exec(path, "UPDATE transaction_events SET reason = CAST(X'FE' AS TEXT)");
    const std::string url = server->database("odd_reasons");
    store::migrate_store(path, url);
    auto moved = store::open_store(postgres_at(url));
    EXPECT_EQ(moved->find("0xa1")->reason, "node\xEF\xBF\xBD\xEF\xBF\xBD ok");
    EXPECT_EQ(moved->history("0xa1").at(0).reason, "\xEF\xBF\xBD");
}

// Only a chain-gateway journal is moved: a missing file is not created, another SQLite file is
// not given the journal's tables.
TEST_F(MigrateStoreTest, AFileThatIsNotAJournalIsRefusedAndLeftAlone) {
    const std::string dir = make_temp_dir("migrate-store");
    const std::string url = server->database("not_a_journal");
    try {
        store::migrate_store(dir + "/missing.db", url);
        ADD_FAILURE() << "no error for a missing file";
    } catch (const store::StoreError& e) {
        EXPECT_THAT(e.what(), HasSubstr("no SQLite journal at " + dir + "/missing.db"));
    }
    EXPECT_FALSE(std::filesystem::exists(dir + "/missing.db"));
    write_file(dir + "/empty.db", "");
    try {
        store::migrate_store(dir + "/empty.db", url);
        ADD_FAILURE() << "no error for a file that is not a journal";
    } catch (const store::StoreError& e) {
        EXPECT_THAT(e.what(), HasSubstr("is not a chain-gateway journal"));
    }
    EXPECT_EQ(read_file(dir + "/empty.db"), "");
}

// The command an operator runs: exit 0 with a summary and what to do next; an older SQLite
// journal migrated first, and said so; exit 1 with the reason when refused; the password never
// printed.
TEST_F(MigrateStoreTest, TheCommandSaysWhatItMovedOrWhyNotAndNeverThePassword) {
    const std::string dir = make_temp_dir("migrate-store");
    const std::string path = dir + "/gateway.db";
    {
        auto current = store::open_store(sqlite_at(path));
        current->insert(raw_tx("0xa1", TxState::queued, 100));
    }
    // Back to version 12 (version 13 only added two indexes, 14 an empty table), so that the
    // command sees an old journal with rows.
    sqlite_exec(path,
                "DROP INDEX managed_by_update; DROP INDEX managed_by_any_key; DROP TABLE handoffs; "
                "UPDATE schema_version SET version = 12;");
    const std::string url = url_with_password("command");
    const CommandResult moved =
        run_command({GATEWAY_BINARY, "migrate-store", "--from", path, "--to", url});
    EXPECT_EQ(moved.exit_code, 0) << moved.out << moved.err;
    EXPECT_THAT(moved.out, HasSubstr("schema version 12; it was migrated to 14 first"));
    EXPECT_THAT(moved.out, HasSubstr("copied and checked"));
    EXPECT_THAT(moved.out, ::testing::ContainsRegex("transactions +1 rows"));
    EXPECT_THAT(moved.out, ::testing::ContainsRegex("transaction_events +1 rows"));
    EXPECT_THAT(moved.out, HasSubstr("store.backend: postgres"));
    EXPECT_THAT(moved.out, HasSubstr("do not run a gateway against " + path + " again"));
    EXPECT_THAT(moved.out + moved.err, Not(HasSubstr("S3CRETPASSWORD")));

    const CommandResult again =
        run_command({GATEWAY_BINARY, "migrate-store", "--from", path, "--to", url});
    EXPECT_EQ(again.exit_code, 1) << again.out << again.err;
    EXPECT_THAT(again.err, HasSubstr("is not empty"));
    EXPECT_THAT(again.err, HasSubstr("Nothing was copied"));
    EXPECT_THAT(again.out + again.err, Not(HasSubstr("S3CRETPASSWORD")));

    const CommandResult missing =
        run_command({GATEWAY_BINARY, "migrate-store", "--from", dir + "/nothing.db", "--to", url});
    EXPECT_EQ(missing.exit_code, 1);
    EXPECT_THAT(missing.err, HasSubstr("no SQLite journal at"));

    const CommandResult half = run_command({GATEWAY_BINARY, "migrate-store", "--from", path});
    EXPECT_EQ(half.exit_code, 2);
    EXPECT_THAT(half.err, HasSubstr("--from and --to are both needed"));
}

}  // namespace
}  // namespace gateway::test
