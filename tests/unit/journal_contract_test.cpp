// The journal's contract: what every backend of Journal does, whatever its database, as
// one parameterised suite over the backends (SQLite, and PostgreSQL on a throwaway server the
// test starts; a new backend adds itself to the instantiation). What only one backend does
// (SQLite's migrations of old schema versions, its files) is tested apart: store_test.cpp,
// retention_test.cpp.

#include "gateway/store/journal_service.hpp"
#include "gateway/store/store.hpp"

#include "support/journal_records.hpp"
#include "support/postgres_server.hpp"
#include "support/process.hpp"

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>
#include <atomic>
#include <chrono>
#include <csignal>
#include <functional>
#include <memory>
#include <ostream>
#include <string>
#include <thread>
#include <vector>

namespace gateway::store {
namespace {

using namespace std::chrono_literals;
using test::raw_tx;
using test::record;

/// One backend under test.
struct JournalBackend {
    std::string name;  ///< in the test names
    /// The schema version a new journal of this backend is at.
    int schema_version = 0;
    /// Opens the journal kept in the folder `dir`, creating it when there is none: the same
    /// folder again reopens the same journal (a restart).
    std::function<std::unique_ptr<Store>(const std::string& dir)> open;
};

/// Names the backend in test output (not its bytes).
void PrintTo(const JournalBackend& backend, std::ostream* os) {
    *os << backend.name;
}

const JournalBackend kSqlite{"sqlite", 14, [](const std::string& dir) {
                                 return open_store(config::StoreConfig{"sqlite", dir + "/j.db"});
                             }};

class JournalContract : public ::testing::TestWithParam<JournalBackend> {
protected:
    /// A new, empty journal.
    std::unique_ptr<Store> open() { return open_at(test::make_temp_dir("journal-contract")); }
    /// The journal kept in `dir` (created when new).
    std::unique_ptr<Store> open_at(const std::string& dir) { return GetParam().open(dir); }
    /// What a JournalService opens: the journal kept in `dir`.
    JournalService::Opener opener(const std::string& dir) {
        return [open = GetParam().open, dir] { return std::unique_ptr<Journal>(open(dir)); };
    }
};

// One throwaway server for the process (each test is a process of its own under ctest), started
// the first time a PostgreSQL journal is opened and stopped at exit; each folder is a database of
// its own, so that the same folder reopens the same journal.
test::PostgresServer& postgres_server() {
    static test::PostgresServer server;
    return server;
}

const JournalBackend kPostgres{
    "postgres", 14, [](const std::string& dir) {
        config::StoreConfig c;
        c.backend = "postgres";
        c.url = postgres_server().database(fmt::format("j{:016x}", std::hash<std::string>{}(dir)));
        return open_store(c);
    }};

INSTANTIATE_TEST_SUITE_P(Backends, JournalContract, ::testing::Values(kSqlite, kPostgres),
                         [](const ::testing::TestParamInfo<JournalBackend>& info) {
                             return info.param.name;
                         });

constexpr std::int64_t kHour = 3'600'000;

ManagedRecord managed_tx(const std::string& id, TxState state, std::int64_t at_ms) {
    ManagedRecord m;
    m.id = id;
    m.chain = "devnet";
    m.sender = "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266";
    m.request = "{}";
    m.idempotency_key = "key-" + id;
    m.state = state;
    m.reason = "received";
    m.created_ms = m.updated_ms = at_ms;
    return m;
}

TxRecord attempt_of(const std::string& parent, const std::string& hash, TxState state,
                    std::int64_t at_ms) {
    TxRecord r = raw_tx(hash, state, at_ms);
    r.parent = parent;
    return r;
}

// ---------------------------------------------------------------------------------------------
// Raw and managed transactions, nonces.

TEST_P(JournalContract, KeepsTransactionsTheirStatesAndHistory) {
    auto s = open();
    EXPECT_EQ(s->schema_version(), GetParam().schema_version);
    auto [a, inserted] = s->insert(record("0xaa", 1));
    EXPECT_TRUE(inserted);
    EXPECT_FALSE(s->insert(record("0xaa", 1)).second) << "one entry per hash";
    s->insert(record("0xbb", 0));
    EXPECT_TRUE(s->update(TxUpdate{"0xbb", TxState::broadcasting, "accepted by node-0", 2000, 1u}));
    EXPECT_FALSE(s->update(TxUpdate{"0xcc", TxState::failed, "x", 2000}));
    TxUpdate mined{"0xbb", TxState::completed, "mined", 3000};
    mined.set_block = true;
    mined.block_hash = "0xb10c";
    mined.block_number = 7;
    s->update(mined);

    const auto bb = s->find("0xbb");
    ASSERT_TRUE(bb);
    EXPECT_EQ(bb->state, TxState::completed);
    EXPECT_EQ(bb->broadcasts, 1u);
    EXPECT_EQ(bb->block_hash, "0xb10c");
    EXPECT_EQ(bb->block_number, 7u);
    EXPECT_EQ(bb->raw, (std::vector<std::uint8_t>{0x02, 0xf8, 0x01}));
    // The same hash again gives back the row as it is kept, and adds nothing to its history.
    auto [again, added] = s->insert(record("0xbb", 0));
    EXPECT_FALSE(added);
    EXPECT_EQ(again.state, TxState::completed);
    EXPECT_EQ(again.reason, "mined");
    EXPECT_EQ(again.block_hash, "0xb10c");
    const auto h = s->history("0xbb");
    ASSERT_EQ(h.size(), 3u);
    EXPECT_EQ(h[0].state, TxState::queued);
    EXPECT_EQ(h[1].state, TxState::broadcasting);
    EXPECT_EQ(h[1].reason, "accepted by node-0");
    EXPECT_EQ(h[2].state, TxState::completed);

    const auto open = s->unfinished();
    ASSERT_EQ(open.size(), 1u);
    EXPECT_EQ(open[0].hash, "0xaa");
    EXPECT_EQ(s->list(std::nullopt, 10).size(), 2u);
    EXPECT_EQ(s->list(TxState::completed, 10).size(), 1u);
    EXPECT_EQ(s->list(TxState::failed, 10).size(), 0u);
}

// What is loaded at start-up: every transaction, raw or managed, in a state that is not final,
// and none in a final one (the SQLite store names the unfinished states, so that its index by
// state finds them without reading the finished ones).
// A reason is for people and may carry what a node or a signer answered, bytes that are not
// UTF-8 and NULs included: every journal keeps the state change with a reason that reads the
// same around them (PostgreSQL's text takes neither: such a byte becomes U+FFFD there).
TEST_P(JournalContract, AReasonOfAnyBytesNeverStopsAStateChange) {
    auto s = open();
    const std::string odd =
        std::string("node said \xff\xfe") + '\0' + " (\xe2\x82) ok \xe2\x82\xac";
    TxRecord r = record("0xaa", 0);
    r.reason = odd;
    ASSERT_TRUE(s->insert(r).second);
    ASSERT_TRUE(s->update(TxUpdate{"0xaa", TxState::broadcasting, odd, 2000}));
    ASSERT_TRUE(s->insert_managed(managed_tx("gtx-1", TxState::queued, 1000)).second);
    ManagedUpdate m;
    m.id = "gtx-1";
    m.state = TxState::signing;
    m.reason = odd;
    m.at_ms = 2000;
    ASSERT_TRUE(s->update_managed(m));
    const auto found = s->find("0xaa");
    ASSERT_TRUE(found);
    EXPECT_EQ(found->state, TxState::broadcasting);
    for (const std::string& kept :
         {found->reason, s->history("0xaa").at(1).reason, s->find_managed("gtx-1")->reason}) {
        EXPECT_TRUE(kept.starts_with("node said ")) << kept;
        EXPECT_TRUE(kept.ends_with(" ok \xe2\x82\xac")) << kept;  // a valid character stays
    }
}

TEST_P(JournalContract, EveryStateNotFinalIsUnfinishedAndNoFinalOneIs) {
    auto s = open();
    std::vector<std::string> open_raw, open_managed;
    for (int i = 0; i <= static_cast<int>(TxState::replaced); ++i) {
        const auto state = static_cast<TxState>(i);
        TxRecord t;
        t.hash = "0x" + std::to_string(100 + i);
        t.chain = "devnet";
        t.chain_id = 31337;
        t.sender = "0xs";
        t.nonce = static_cast<std::uint64_t>(i);
        t.raw = {1};
        t.state = state;
        t.created_ms = t.updated_ms = 1;
        ASSERT_TRUE(s->insert(t).second);
        ManagedRecord m;
        m.id = "gtx-" + std::to_string(i);
        m.chain = "devnet";
        m.sender = "0xs";
        m.request = "{}";
        m.state = state;
        m.created_ms = m.updated_ms = i + 1;
        ASSERT_TRUE(s->insert_managed(m).second);
        if (!is_final(state)) {
            open_raw.push_back(t.hash);
            open_managed.push_back(m.id);
        }
    }
    // queued, preparing, signing, broadcasting, confirming, pending_approval
    ASSERT_EQ(open_raw.size(), 6u);
    // The SQLite store lists the states from queued to replaced: one added after replaced would
    // be in neither list (and not loaded at start-up). This fails first.
    EXPECT_EQ(to_string(static_cast<TxState>(static_cast<int>(TxState::replaced) + 1)), "UNKNOWN");
    std::vector<std::string> raw, managed;
    for (const auto& r : s->unfinished()) raw.push_back(r.hash);
    for (const auto& m : s->unfinished_managed()) managed.push_back(m.id);
    EXPECT_EQ(raw, open_raw);
    EXPECT_EQ(managed, open_managed);
}

TEST_P(JournalContract, ABlobTransactionsNetworkFormIsKeptApartUntilItIsFinal) {
    auto s = open();
    const std::vector<std::uint8_t> network(200'000, 0x5a);
    EXPECT_THROW(s->put_network_form("0xaa", network), StoreError) << "no such transaction";
    s->insert(record("0xaa", 0));
    s->insert(record("0xbb", 1));
    s->put_network_form("0xaa", network);
    EXPECT_EQ(s->network_form("0xaa"), network);
    EXPECT_FALSE(s->network_form("0xbb")) << "not a blob transaction";
    EXPECT_EQ(s->find("0xaa")->raw, (std::vector<std::uint8_t>{0x02, 0xf8, 0x01}));
    EXPECT_EQ(s->unfinished().at(0).raw.size(), 3u) << "records are loaded without it";
    const std::vector<std::uint8_t> other(100, 0x07);  // sent again in the other form
    s->put_network_form("0xaa", other);
    EXPECT_EQ(s->network_form("0xaa"), other);

    s->update(TxUpdate{"0xaa", TxState::broadcasting, "accepted", 2000});
    EXPECT_TRUE(s->network_form("0xaa")) << "still to be sent again";
    TxUpdate mined{"0xaa", TxState::completed, "mined", 3000};
    mined.set_block = true;
    mined.block_hash = "0xb10c";
    mined.block_number = 7;
    s->update(mined);
    EXPECT_TRUE(s->network_form("0xaa")) << "a reorg may still reopen it and send it again";
    s->mark_finalized({"0xaa"});
    EXPECT_FALSE(s->network_form("0xaa")) << "nothing sends a finalized transaction";
    // Never mined: final for good at once.
    s->put_network_form("0xbb", network);
    s->update(TxUpdate{"0xbb", TxState::failed, "refused", 3000});
    EXPECT_FALSE(s->network_form("0xbb"));
}

TEST_P(JournalContract, ManagedTransactionsAttemptsAndNonces) {
    auto s = open();
    ManagedRecord m;
    m.id = "gtx-1";
    m.chain = "devnet";
    m.sender = "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266";
    m.request = R"({"to":"0xdead","value":"0x1"})";
    m.idempotency_key = "order-42";
    m.reason = "received";
    m.created_ms = m.updated_ms = 1000;
    EXPECT_TRUE(s->insert_managed(m).second);
    // The same idempotency key for the same sender is the same transaction, whatever the id.
    ManagedRecord again = m;
    again.id = "gtx-2";
    auto [found, inserted] = s->insert_managed(again);
    EXPECT_FALSE(inserted);
    EXPECT_EQ(found.id, "gtx-1");
    // Another sender may use the same key.
    ManagedRecord other = again;
    other.sender = "0x70997970c51812dc3a010c7d01b50e0d17dc79c8";
    EXPECT_TRUE(s->insert_managed(other).second);

    // Nonces are taken in order, never below the chain's count, and remembered.
    EXPECT_EQ(s->take_nonce("devnet", m.sender, 0), 0u);
    EXPECT_EQ(s->take_nonce("devnet", m.sender, 0), 1u);
    EXPECT_EQ(s->take_nonce("devnet", m.sender, 7), 7u) << "the chain is ahead: its count wins";
    EXPECT_EQ(s->next_nonce("devnet", m.sender), 8u);
    EXPECT_EQ(s->take_nonce("other-chain", m.sender, 0), 0u) << "per chain";
    s->set_next_nonce("devnet", m.sender, 3);  // lowered by reconciliation
    EXPECT_EQ(s->take_nonce("devnet", m.sender, 0), 3u);

    EXPECT_TRUE(s->update_managed({"gtx-1", TxState::signing, "nonce 3 taken", 2000, 3u}));
    ManagedUpdate signed_once{"gtx-1", TxState::broadcasting, "sent", 3000};
    signed_once.hash = "0xaa";
    signed_once.attempts = 1;
    EXPECT_TRUE(s->update_managed(signed_once));
    EXPECT_FALSE(s->update_managed({"gtx-9", TxState::failed, "x", 1}));
    TxRecord attempt = record("0xaa", 3, TxState::broadcasting);
    attempt.parent = "gtx-1";
    s->insert(attempt);
    TxRecord bumped = record("0xbb", 3, TxState::broadcasting);
    bumped.parent = "gtx-1";
    bumped.created_ms = 5000;
    s->insert(bumped);
    s->insert(record("0xcc", 4));  // a raw transaction: nobody's attempt

    const auto got = s->find_managed("gtx-1");
    ASSERT_TRUE(got);
    EXPECT_EQ(got->nonce, 3u);
    EXPECT_EQ(got->hash, "0xaa");
    EXPECT_EQ(got->attempts, 1u);
    EXPECT_EQ(got->state, TxState::broadcasting);
    EXPECT_EQ(got->idempotency_key, "order-42");
    const auto tries = s->attempts("gtx-1");
    ASSERT_EQ(tries.size(), 2u);
    EXPECT_EQ(tries[0].hash, "0xaa");
    EXPECT_EQ(tries[1].hash, "0xbb");
    EXPECT_EQ(tries[1].parent, "gtx-1");
    EXPECT_FALSE(s->find("0xcc")->parent);
    const auto h = s->managed_history("gtx-1");
    ASSERT_EQ(h.size(), 3u);
    EXPECT_EQ(h[1].state, TxState::signing);
    EXPECT_EQ(h[2].reason, "sent");
    EXPECT_EQ(s->unfinished_managed().size(), 2u);
    s->update_managed({"gtx-1", TxState::cancelled, "cancelled by an operator", 6000});
    EXPECT_EQ(s->unfinished_managed().size(), 1u);

    // Listed for the admin API, the last changed first: by state, by idempotency key (every
    // sender's), both, or neither.
    const auto ids = [](const std::vector<ManagedRecord>& list) {
        std::vector<std::string> out;
        for (const auto& r : list) out.push_back(r.id);
        return out;
    };
    using ::testing::ElementsAre;
    EXPECT_THAT(ids(s->list_managed(std::nullopt, "order-42", 10)), ElementsAre("gtx-1", "gtx-2"));
    EXPECT_THAT(ids(s->list_managed(TxState::cancelled, std::nullopt, 10)), ElementsAre("gtx-1"));
    EXPECT_THAT(ids(s->list_managed(TxState::queued, "order-42", 10)), ElementsAre("gtx-2"));
    EXPECT_THAT(ids(s->list_managed(std::nullopt, std::nullopt, 1)), ElementsAre("gtx-1"));
    EXPECT_TRUE(s->list_managed(std::nullopt, "order-43", 10).empty());
    EXPECT_TRUE(s->list_managed(TxState::dead_letter, std::nullopt, 10).empty());
}

// What the policy's daily sums read (catalog row C2): the transactions of one (chain, sender) that
// move wei and were let spend since a time, whatever their state; a held one (no spend time) is
// not among them until it is approved, and a later update that does not set the spend time keeps
// it.
// What a standby (a gateway that does not hold the queue in memory) counts the caps by: a chain's
// unfinished raw transactions, its sender's and its client's, never a managed one's attempts or
// a finished one.
TEST_P(JournalContract, TheCapsAreCountedFromTheJournal) {
    auto s = open();
    TxRecord a = record("0xa1", 0);
    a.source = "alice";
    s->insert(a);
    TxRecord b = record("0xa2", 1, TxState::broadcasting);
    b.source = "bob";
    s->insert(b);
    TxRecord other = record("0xa3", 0);
    other.sender = "0x1111111111111111111111111111111111111111";
    other.source = "alice";
    s->insert(other);
    s->insert(record("0xa4", 2, TxState::completed));
    s->insert(attempt_of("gtx-1", "0xa5", TxState::broadcasting, 10));
    TxRecord elsewhere = record("0xa6", 3);
    elsewhere.chain = "mainnet";
    s->insert(elsewhere);
    const QueuedCounts n = s->queued_counts("devnet", a.sender, "alice");
    EXPECT_EQ(n.chain, 3u);
    EXPECT_EQ(n.sender, 2u);
    EXPECT_EQ(n.source, 2u);
    EXPECT_EQ(s->queued_counts("devnet", "0x22", "carol").sender, 0u);
    s->update(TxUpdate{"0xa1", TxState::failed, "refused", 20});
    EXPECT_EQ(s->queued_counts("devnet", a.sender, "alice").chain, 2u);
    EXPECT_EQ(s->queued_counts("devnet", a.sender, "alice").source, 1u);
    // Every state not final counts, in and out again as it moves.
    const std::string c = "0x3333333333333333333333333333333333333333";
    std::size_t unfinished = 0;
    for (int i = 0; i <= static_cast<int>(TxState::replaced); ++i) {
        const auto state = static_cast<TxState>(i);
        TxRecord r = record(fmt::format("0xc{}", i), static_cast<std::uint64_t>(i), state);
        r.sender = c;
        s->insert(r);
        if (!is_final(state)) ++unfinished;
    }
    EXPECT_EQ(s->queued_counts("devnet", c, "").sender, unfinished);
    s->update(TxUpdate{"0xc0", TxState::broadcasting, "sent", 30});  // unfinished to unfinished
    EXPECT_EQ(s->queued_counts("devnet", c, "").sender, unfinished);
    s->update(TxUpdate{"0xc0", TxState::completed, "mined", 40});
    EXPECT_EQ(s->queued_counts("devnet", c, "").sender, unfinished - 1);
    s->update(TxUpdate{"0xc0", TxState::queued, "reopened by a reorg", 50});
    EXPECT_EQ(s->queued_counts("devnet", c, "").sender, unfinished);

    // Managed: those held for a person apart; one waiting for the policy service counts as
    // unfinished, as a finished one does not at all.
    s->insert_managed(managed_tx("gtx-q", TxState::queued, 10));
    s->insert_managed(managed_tx("gtx-s", TxState::signing, 10));
    ManagedRecord held = managed_tx("gtx-h", TxState::pending_approval, 10);
    held.reason = "above max_value_wei";
    s->insert_managed(held);
    ManagedRecord asking = managed_tx("gtx-a", TxState::pending_approval, 10);
    asking.reason = "waiting for the policy service's answer";
    s->insert_managed(asking);
    s->insert_managed(managed_tx("gtx-c", TxState::completed, 10));
    const ManagedCounts m =
        s->managed_counts("devnet", held.sender, "waiting for the policy service's answer");
    EXPECT_EQ(m.unfinished, 3u);
    EXPECT_EQ(m.held, 1u);
    EXPECT_EQ(s->managed_counts("mainnet", held.sender, "waiting").unfinished, 0u);
}

// A standby hands what it journaled to the gateway that dispatches: taken once, in the order
// handed, a chain and a kind at a time, as many as asked; taken back with the operation that
// handed them when it fails.
TEST_P(JournalContract, HandoffsAreTakenOnceInOrder) {
    const std::string dir = test::make_temp_dir("journal-contract");
    JournalService service(opener(dir));
    service.run_blocking([](JournalView& j) {
        for (const char* key : {"0x01", "0x02", "0x03"}) j.hand_off({"devnet", false, key, "0xa"});
        j.hand_off({"devnet", true, "gtx-1", "0xb"});
        j.hand_off({"mainnet", false, "0x09", "0xa"});
    });
    EXPECT_THROW(service.run_blocking([](JournalView& j) {
        j.hand_off({"devnet", false, "0x04", "0xa"});
        throw std::runtime_error("the operation failed");
    }),
                 std::runtime_error);
    std::vector<std::string> keys;
    service.run_blocking([&](JournalView& j) {
        for (const auto& h : j.take_handoffs("devnet", false, 2)) keys.push_back(h.key);
    });
    EXPECT_THAT(keys, ::testing::ElementsAre("0x01", "0x02"));
    keys.clear();
    service.run_blocking([&](JournalView& j) {
        for (const auto& h : j.take_handoffs("devnet", false, 10)) {
            keys.push_back(h.key);
            EXPECT_FALSE(h.managed);
            EXPECT_EQ(h.chain, "devnet");
        }
        EXPECT_TRUE(j.take_handoffs("devnet", false, 10).empty());
    });
    EXPECT_THAT(keys, ::testing::ElementsAre("0x03"));
    // A take whose operation fails leaves them for the next.
    EXPECT_THROW(service.run_blocking([](JournalView& j) {
        EXPECT_EQ(j.take_handoffs("mainnet", false, 10).size(), 1u);
        throw std::runtime_error("the operation failed");
    }),
                 std::runtime_error);
    auto s = open_at(dir);
    // A standby takes back one not taken yet (its caller was told the send failed); one taken is
    // the dispatcher's.
    s->hand_off({"devnet", false, "0x05", "0xa"});
    EXPECT_TRUE(s->withdraw_handoff("devnet", false, "0x05"));
    EXPECT_FALSE(s->withdraw_handoff("devnet", false, "0x05"));
    EXPECT_FALSE(s->withdraw_handoff("devnet", false, "0x01")) << "taken already";
    EXPECT_TRUE(s->take_handoffs("devnet", false, 10).empty());
    EXPECT_EQ(s->take_handoffs("mainnet", false, 10).at(0).key, "0x09");
    const auto managed = s->take_handoffs("devnet", true, 10);
    ASSERT_EQ(managed.size(), 1u);
    EXPECT_TRUE(managed[0].managed);
    EXPECT_EQ(managed[0].key, "gtx-1");
    EXPECT_EQ(managed[0].sender, "0xb");
}

// A lease this gateway took is its own, in every backend (SQLite's holds every lease; a shared
// journal's, for as long as the session lives: PostgresTest).
TEST_P(JournalContract, ALeaseTakenIsHeld) {
    auto s = open();
    ASSERT_TRUE(s->take_lease("devnet/0xaa"));
    EXPECT_TRUE(s->take_lease("devnet/0xaa"));
    EXPECT_NO_THROW(s->require_lease("devnet/0xaa"));
    EXPECT_GE(s->replicas(), 1u);
}

TEST_P(JournalContract, ASendersSpendingSinceATimeIsWhatMovesWeiAndWasLetSpend) {
    auto s = open();
    const std::string sender = "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266";
    const auto spend = [&](const std::string& id, std::vector<std::uint8_t> value,
                           std::optional<std::int64_t> at, std::string who) {
        ManagedRecord m = managed_tx(id, TxState::queued, 10);
        m.sender = std::move(who);
        m.value = std::move(value);
        m.spend_ms = at;
        if (!at) m.state = TxState::pending_approval;
        ASSERT_TRUE(s->insert_managed(m).second) << id;
    };
    spend("gtx-a", {0x05}, 100, sender);
    spend("gtx-held", {0x01, 0x00}, std::nullopt, sender);
    spend("gtx-other-sender", {0x09}, 100, "0x70997970c51812dc3a010c7d01b50e0d17dc79c8");
    spend("gtx-no-value", {}, 100, sender);
    spend("gtx-early", {0x02}, 50, sender);
    const auto ids = [&](std::int64_t since) {
        std::vector<std::string> out;
        for (const auto& row : s->spending("devnet", sender, since)) out.push_back(row.id);
        return out;
    };
    EXPECT_EQ(ids(60), (std::vector<std::string>{"gtx-a"}));
    EXPECT_EQ(ids(0), (std::vector<std::string>{"gtx-early", "gtx-a"}));
    EXPECT_TRUE(s->spending("mainnet", sender, 0).empty());
    const auto rows = s->spending("devnet", sender, 60);
    ASSERT_EQ(rows.size(), 1u);
    EXPECT_EQ(rows[0].value, (std::vector<std::uint8_t>{0x05}));
    EXPECT_EQ(rows[0].spend_ms, 100);
    EXPECT_EQ(rows[0].state, TxState::queued);

    // Approved: it spends from then on.
    ManagedUpdate approved{"gtx-held", TxState::queued, "approved by alice", 200};
    approved.set_spend = true;
    approved.spend_ms = 200;
    ASSERT_TRUE(s->update_managed(approved));
    EXPECT_EQ(ids(60), (std::vector<std::string>{"gtx-a", "gtx-held"}));
    EXPECT_EQ(s->find_managed("gtx-held")->value, (std::vector<std::uint8_t>{0x01, 0x00}));
    EXPECT_EQ(s->find_managed("gtx-held")->spend_ms, 200);
    // An update that does not set it keeps it, with the state it records.
    ASSERT_TRUE(s->update_managed({"gtx-held", TxState::dead_letter, "gave up", 300}));
    const auto after = s->spending("devnet", sender, 150);
    ASSERT_EQ(after.size(), 1u);
    EXPECT_EQ(after[0].state, TxState::dead_letter);
    // Held again (a retry the policy holds): no spend time, not counted.
    ManagedUpdate held{"gtx-held", TxState::pending_approval, "held again", 400};
    held.set_spend = true;
    ASSERT_TRUE(s->update_managed(held));
    EXPECT_EQ(ids(60), (std::vector<std::string>{"gtx-a"}));
    EXPECT_FALSE(s->find_managed("gtx-held")->spend_ms);

    // A retry writes what it moves (a row from before the sums had none) and forgets its nonce.
    ManagedRecord old = managed_tx("gtx-old", TxState::dead_letter, 10);
    old.nonce = 4;
    ASSERT_TRUE(s->insert_managed(old).second);
    ManagedUpdate retried{"gtx-old", TxState::queued, "retried", 500};
    retried.set_spend = true;
    retried.spend_ms = 500;
    retried.value = std::vector<std::uint8_t>{0x03};
    retried.clear_nonce = true;
    ASSERT_TRUE(s->update_managed(retried));
    const auto got = s->find_managed("gtx-old");
    EXPECT_EQ(got->value, (std::vector<std::uint8_t>{0x03}));
    EXPECT_FALSE(got->nonce);
    EXPECT_EQ(ids(450), (std::vector<std::string>{"gtx-old"}));
    // Not asked to: neither changes.
    ASSERT_TRUE(s->update_managed({"gtx-old", TxState::signing, "nonce 9 taken", 600, 9u}));
    EXPECT_EQ(s->find_managed("gtx-old")->value, (std::vector<std::uint8_t>{0x03}));
    EXPECT_EQ(s->find_managed("gtx-old")->nonce, 9u);
}

// Event streams' checkpoints (catalog row I1): kept per stream, replaced whole, and kept across a
// reopening of the journal.
TEST_P(JournalContract, AStreamsCheckpointIsKeptAndReplaced) {
    const std::string dir = test::make_temp_dir("journal-contract");
    {
        auto s = open_at(dir);
        EXPECT_FALSE(s->find_stream("transfers"));
        s->put_stream(StreamRecord{"transfers", "devnet", std::nullopt, false, 10});
        s->put_stream(StreamRecord{"approvals", "devnet", 7, true, 11});
        ASSERT_TRUE(s->find_stream("transfers"));
        EXPECT_FALSE(s->find_stream("transfers")->next_block);
        s->put_stream(StreamRecord{"transfers", "devnet", 19, false, 12});
    }
    auto s = open_at(dir);
    const auto all = s->streams();
    ASSERT_EQ(all.size(), 2u);
    EXPECT_EQ(all[0].id, "approvals");
    EXPECT_EQ(all[0].next_block, 7u);
    EXPECT_TRUE(all[0].paused);
    EXPECT_EQ(all[1].id, "transfers");
    EXPECT_EQ(all[1].next_block, 19u);
    EXPECT_FALSE(all[1].paused);
    EXPECT_EQ(all[1].updated_ms, 12);
    EXPECT_EQ(all[1].cursor, "");
    EXPECT_FALSE(all[1].definition);
}

// A stream made through the admin API keeps its definition and cursor; deleting it forgets all.
TEST_P(JournalContract, AStreamsDefinitionAndCursorAreKeptAndItCanBeDeleted) {
    const std::string dir = test::make_temp_dir("journal-contract");
    {
        auto s = open_at(dir);
        StreamRecord r{"mine", "devnet", 5, false, 10};
        r.cursor = R"({"recent":[]})";
        r.definition = R"({"id":"mine"})";
        s->put_stream(r);
        s->put_stream(StreamRecord{"other", "devnet", 1, false, 10});
    }
    auto s = open_at(dir);
    const auto mine = s->find_stream("mine");
    ASSERT_TRUE(mine);
    EXPECT_EQ(mine->cursor, R"({"recent":[]})");
    EXPECT_EQ(mine->definition, R"({"id":"mine"})");
    EXPECT_TRUE(s->delete_stream("mine"));
    EXPECT_FALSE(s->delete_stream("mine"));
    EXPECT_FALSE(s->find_stream("mine"));
    EXPECT_EQ(s->streams().size(), 1u);
}

// A transaction stream reads the changes of a chain's transactions in order, after its cursors:
// the raw transactions clients sent (not a managed transaction's attempts) and managed ones.
TEST_P(JournalContract, ChangesAreReadInOrderAfterTheCursors) {
    auto s = open();
    s->insert(raw_tx("0xa1", TxState::queued, 100));
    auto elsewhere = raw_tx("0xb1", TxState::queued, 100);
    elsewhere.chain = "other";
    s->insert(elsewhere);
    ASSERT_TRUE(s->update({"0xa1", TxState::broadcasting, "sent", 110}));
    s->insert_managed(managed_tx("gtx-1", TxState::queued, 100));
    s->insert(attempt_of("gtx-1", "0xc1", TxState::queued, 120));
    ASSERT_TRUE(s->update_managed({"gtx-1", TxState::signing, "nonce 0 taken", 120, 0u}));

    const ChangesPage page = s->changes("devnet", 0, 0, 100);
    const auto& all = page.changes;
    ASSERT_EQ(all.size(), 4u);
    EXPECT_FALSE(all[0].managed);
    EXPECT_EQ(all[0].tx, "0xa1");
    EXPECT_EQ(all[0].state, TxState::queued);
    EXPECT_EQ(all[1].tx, "0xa1");
    EXPECT_EQ(all[1].state, TxState::broadcasting);
    EXPECT_EQ(all[1].reason, "sent");
    EXPECT_LT(all[0].seq, all[1].seq);
    EXPECT_TRUE(all[2].managed);
    EXPECT_EQ(all[2].tx, "gtx-1");
    EXPECT_EQ(all[3].state, TxState::signing);
    EXPECT_EQ(all[3].nonce, 0u);
    EXPECT_EQ(all[3].sender, "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266");
    EXPECT_EQ(all[3].idempotency_key, "key-gtx-1");

    // Read past what it skipped (the other chain's, the attempt's): up to the last of each kind.
    EXPECT_EQ(page.raw_upto, s->last_changes().first);
    EXPECT_EQ(page.managed_upto, all[3].seq);
    const auto after = s->changes("devnet", all[0].seq, all[2].seq, 100).changes;
    ASSERT_EQ(after.size(), 2u);
    EXPECT_EQ(after[0].state, TxState::broadcasting);
    EXPECT_EQ(after[1].state, TxState::signing);
    const ChangesPage one = s->changes("devnet", 0, 0, 1);  // one of each kind at most
    EXPECT_EQ(one.changes.size(), 2u);
    EXPECT_EQ(one.raw_upto, all[0].seq) << "a full page: up to its last only";
    EXPECT_EQ(s->changes("other", 0, 0, 100).changes.size(), 1u);
    EXPECT_EQ(s->last_changes(), std::make_pair(all[1].seq + 1, all[3].seq))
        << "the attempt's change came last of the raw ones";
}

// A managed transaction finished while its attempt of its nonce is unfinished again (a reorg
// reopened it, and the gateway stopped before the managed one could follow) is named, with its
// chain and sender, so that the next start reopens it; an earlier try's attempt, on another
// nonce, does not count, nor does one still unfinished.
TEST_P(JournalContract, AFinishedManagedTransactionWhoseAttemptIsReopenedIsFoundAtStart) {
    auto store = open();
    auto managed = [&](const std::string& id, TxState state, std::uint64_t nonce) {
        ManagedRecord m;
        m.id = id;
        m.chain = "devnet";
        m.sender = "0xs";
        m.request = "{}";
        m.nonce = nonce;
        m.state = state;
        m.created_ms = m.updated_ms = static_cast<std::int64_t>(nonce) + 1;
        EXPECT_TRUE(store->insert_managed(m).second);
    };
    auto attempt = [&](const std::string& hash, const std::string& parent, std::uint64_t nonce,
                       TxState state) {
        TxRecord t;
        t.hash = hash;
        t.chain = "devnet";
        t.chain_id = 31337;
        t.sender = "0xs";
        t.nonce = nonce;
        t.raw = {1};
        t.parent = parent;
        t.state = state;
        t.created_ms = t.updated_ms = 1;
        EXPECT_TRUE(store->insert(t).second);
    };
    managed("gtx-reopened", TxState::completed, 0);
    attempt("0xa0", "gtx-reopened", 0, TxState::broadcasting);
    managed("gtx-done", TxState::completed, 1);
    attempt("0xa1", "gtx-done", 1, TxState::completed);
    managed("gtx-old-try", TxState::failed, 2);
    attempt("0xa2", "gtx-old-try", 7, TxState::queued);
    managed("gtx-open", TxState::broadcasting, 3);
    attempt("0xa3", "gtx-open", 3, TxState::broadcasting);

    const auto found = store->reopened_managed();
    ASSERT_EQ(found.size(), 1u);
    EXPECT_EQ(found[0].id, "gtx-reopened");
    EXPECT_EQ(found[0].chain, "devnet");
    EXPECT_EQ(found[0].sender, "0xs");
}

// ---------------------------------------------------------------------------------------------
// Operations run by a JournalService: group commit, savepoints, a crash.

// A nonce is taken inside the operation that uses it: when that operation fails, the nonce is
// not used up.
TEST_P(JournalContract, ANonceTakenInAFailedOperationIsNotLost) {
    const std::string dir = test::make_temp_dir("journal-nonce");
    JournalService service(opener(dir));
    std::uint64_t n = 99;
    service.run_blocking([&](JournalView& j) { n = j.take_nonce("devnet", "0xa", 0); });
    EXPECT_EQ(n, 0u);
    EXPECT_THROW(service.run_blocking([&](JournalView& j) {
        j.take_nonce("devnet", "0xa", 0);
        throw StoreError("the signer's answer could not be journaled");
    }),
                 StoreError);
    service.run_blocking([&](JournalView& j) { n = j.take_nonce("devnet", "0xa", 0); });
    EXPECT_EQ(n, 1u) << "the failed operation's nonce 1 was rolled back and taken again";
}

// A process that journals a transaction's life up to `steps` steps and is killed (SIGKILL, no
// clean-up) mid-way through the next one; the journal must hold exactly the steps committed.
TEST_P(JournalContract, ReplayAfterACrashAtEveryStep) {
    const std::vector<TxState> life = {TxState::queued, TxState::broadcasting, TxState::confirming,
                                       TxState::completed};
    for (std::size_t steps = 1; steps <= life.size(); ++steps) {
        SCOPED_TRACE(steps);
        const std::string dir = test::make_temp_dir("journal-crash");
        open_at(dir);  // created here: what the child opens is the parent's (a server's database)
        const pid_t child = fork();
        ASSERT_GE(child, 0);
        if (child == 0) {
            JournalService service(opener(dir));
            service.run_blocking([&](JournalView& j) { j.insert(record("0xaa", 0)); });
            for (std::size_t i = 1; i < steps; ++i)
                service.run_blocking([&](JournalView& j) {
                    j.update(TxUpdate{"0xaa", life[i], "step", 2000});
                });
            // The next step starts and the process dies inside its transaction.
            try {
                service.run_blocking([&](JournalView& j) {
                    j.insert(record("0xbb", 1));
                    ::kill(::getpid(), SIGKILL);
                    std::this_thread::sleep_for(10s);
                });
            } catch (...) {
            }
            ::_exit(3);  // not reached
        }
        int status = 0;
        ASSERT_EQ(::waitpid(child, &status, 0), child);
        ASSERT_TRUE(WIFSIGNALED(status));
        EXPECT_EQ(WTERMSIG(status), SIGKILL);

        auto s = open_at(dir);
        const auto aa = s->find("0xaa");
        ASSERT_TRUE(aa) << "a committed transaction survives";
        EXPECT_EQ(aa->state, life[steps - 1]);
        EXPECT_EQ(s->history("0xaa").size(), steps);
        EXPECT_FALSE(s->find("0xbb")) << "the interrupted step left nothing behind";
        EXPECT_EQ(s->unfinished().size(), is_final(life[steps - 1]) ? 0u : 1u);
    }
}

TEST_P(JournalContract, ConcurrentCallersShareCommits) {
    const std::string dir = test::make_temp_dir("journal-group");
    JournalService service(opener(dir));
    std::vector<std::thread> callers;
    for (int t = 0; t < 8; ++t)
        callers.emplace_back([&, t] {
            for (int i = 0; i < 25; ++i)
                service.run_blocking([&](JournalView& j) {
                    j.insert(record(fmt::format("0x{:02x}{:02x}", t, i),
                                    static_cast<std::uint64_t>(t * 100 + i)));
                });
        });
    for (auto& c : callers) c.join();
    EXPECT_EQ(service.operations(), 200u);
    EXPECT_LT(service.commits(), service.operations()) << "no group commit happened";
    std::size_t count = 0;
    service.run_blocking([&](JournalView& j) { count = j.unfinished().size(); });
    EXPECT_EQ(count, 200u);
}

TEST_P(JournalContract, OneFailingOperationDoesNotUndoTheOthers) {
    const std::string dir = test::make_temp_dir("journal-savepoint");
    JournalService service(opener(dir));
    service.run_blocking([&](JournalView& j) { j.insert(record("0xaa", 0)); });
    EXPECT_THROW(service.run_blocking([&](JournalView& j) {
        j.insert(record("0xbb", 1));
        throw std::runtime_error("the caller's own failure");
    }),
                 std::runtime_error);
    std::optional<TxRecord> aa, bb;
    service.run_blocking([&](JournalView& j) {
        aa = j.find("0xaa");
        bb = j.find("0xbb");
    });
    EXPECT_TRUE(aa);
    EXPECT_FALSE(bb) << "a failed operation is rolled back";
}

// ---------------------------------------------------------------------------------------------
// Retention.

// A mined transaction whose block is not final yet may still be reopened by a reorg: it is kept
// however old, until its block is final.
TEST_P(JournalContract, AMinedTransactionIsKeptUntilItsBlockIsFinal) {
    auto s = open();
    TxRecord mined = raw_tx("0xm1", TxState::completed, 1000);
    mined.block_hash = "0xb10c";
    mined.block_number = 7;
    s->insert(mined);
    EXPECT_EQ(s->prune(2000, 100).transactions, 0u);
    EXPECT_TRUE(s->find("0xm1"));
    s->mark_finalized({"0xm1"});
    EXPECT_EQ(s->prune(2000, 100).transactions, 1u);
    EXPECT_FALSE(s->find("0xm1"));
}

TEST_P(JournalContract, PruningDeletesOnlyFinishedTransactionsOlderThanTheCutoff) {
    auto s = open();
    const std::int64_t old = 1000, cutoff = 2000, recent = 3000;
    for (auto [hash, state] : {std::pair{"0xa1", TxState::completed},
                               {"0xa2", TxState::failed},
                               {"0xa3", TxState::dead_letter},
                               {"0xa4", TxState::replaced}})
        s->insert(raw_tx(hash, state, old));
    s->update(TxUpdate{"0xa1", TxState::completed, "mined", old});  // a history of two events
    s->insert(raw_tx("0xq1", TxState::queued, old));                // old, but unfinished
    s->insert(raw_tx("0xq2", TxState::broadcasting, old));
    s->insert(raw_tx("0xr1", TxState::completed, recent));  // finished, but not long enough ago

    // A finished managed transaction goes with its attempts; one with an attempt still out (or
    // itself unfinished, or finished recently) stays, attempts and all.
    s->insert_managed(managed_tx("gtx-done", TxState::completed, old));
    s->insert(attempt_of("gtx-done", "0xb1", TxState::completed, old));
    s->insert(attempt_of("gtx-done", "0xb2", TxState::replaced, old));
    s->insert_managed(managed_tx("gtx-out", TxState::failed, old));
    s->insert(attempt_of("gtx-out", "0xb3", TxState::broadcasting, old));
    s->insert_managed(managed_tx("gtx-open", TxState::broadcasting, old));
    s->insert(attempt_of("gtx-open", "0xb4", TxState::failed, old));
    s->insert_managed(managed_tx("gtx-new", TxState::cancelled, recent));
    s->take_nonce("devnet", "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266", 41);

    const Pruned p = s->prune(cutoff, 100);
    EXPECT_EQ(p.transactions, 6u) << "0xa1-0xa4 and the two attempts of gtx-done";
    EXPECT_EQ(p.managed, 1u);
    EXPECT_FALSE(p.more);
    for (const char* gone : {"0xa1", "0xa2", "0xa3", "0xa4", "0xb1", "0xb2"}) {
        EXPECT_FALSE(s->find(gone)) << gone;
        EXPECT_TRUE(s->history(gone).empty()) << gone;
    }
    EXPECT_FALSE(s->find_managed("gtx-done"));
    EXPECT_TRUE(s->managed_history("gtx-done").empty());
    for (const char* kept : {"0xq1", "0xq2", "0xr1", "0xb3", "0xb4"}) {
        EXPECT_TRUE(s->find(kept)) << kept;
        EXPECT_FALSE(s->history(kept).empty()) << kept;
    }
    for (const char* kept : {"gtx-out", "gtx-open", "gtx-new"}) EXPECT_TRUE(s->find_managed(kept));
    EXPECT_EQ(s->unfinished().size(), 3u);
    EXPECT_EQ(s->next_nonce("devnet", "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266"), 42u)
        << "the nonces outlive every transaction";
    // The same key again finds the managed transaction still kept.
    ManagedRecord again = managed_tx("gtx-other", TxState::queued, recent);
    again.idempotency_key = "key-gtx-new";
    EXPECT_FALSE(s->insert_managed(again).second);
}

TEST_P(JournalContract, ABatchIsBoundedAndSaysWhenMoreAreDue) {
    auto s = open();
    for (int i = 0; i < 5; ++i)
        s->insert(raw_tx(fmt::format("0x{:02x}", i), TxState::completed, 1000));
    Pruned p = s->prune(2000, 2);
    EXPECT_EQ(p.transactions, 2u);
    EXPECT_TRUE(p.more);
    p = s->prune(2000, 2);
    EXPECT_EQ(p.transactions, 2u);
    p = s->prune(2000, 2);
    EXPECT_EQ(p.transactions, 1u);
    EXPECT_FALSE(p.more);
    EXPECT_TRUE(s->list(std::nullopt, 10).empty());
}

// The journal thread prunes by itself, every prune_every, in batches of prune_batch, between the
// callers' operations, counting by its own clock.
TEST_P(JournalContract, TheJournalThreadPrunesByItselfInBatches) {
    const std::string dir = test::make_temp_dir("retention");
    std::atomic<std::int64_t> now{100 * kHour};
    std::atomic<std::size_t> looks{0};
    JournalOptions options;
    options.retention = std::chrono::milliseconds(48 * kHour);
    options.prune_every = 10ms;
    options.prune_batch = 10;
    options.unix_now = [&] { return now.load(); };
    options.on_pruned = [&](const Pruned&) { ++looks; };
    JournalService service(opener(dir), options);
    service.run_blocking([&](JournalView& j) {
        for (int i = 0; i < 35; ++i)
            j.insert(raw_tx(fmt::format("0x{:02x}", i), TxState::completed, 60 * kHour));
        j.insert(raw_tx("0xopen", TxState::queued, 60 * kHour));
    });
    std::this_thread::sleep_for(50ms);
    EXPECT_EQ(service.pruned(), 0u) << "40 hours old: within retention";

    now = 109 * kHour;  // 49 hours later
    for (int i = 0; i < 300 && service.pruned() < 35; ++i) std::this_thread::sleep_for(10ms);
    EXPECT_EQ(service.pruned(), 35u);
    EXPECT_GE(looks.load(), 4u) << "35 in batches of at most 10";
    std::vector<TxRecord> left;
    service.run_blocking([&](JournalView& j) { left = j.list(std::nullopt, 100); });
    ASSERT_EQ(left.size(), 1u);
    EXPECT_EQ(left[0].hash, "0xopen");
}

}  // namespace
}  // namespace gateway::store
