#include "sqlite_schema.hpp"

namespace gateway::store::sqlite_schema {

// Each migration moves the schema one version up, in one transaction.
const char* const kMigrations[kVersion] = {
    // 1: what this database is, so that a later version can tell.
    "CREATE TABLE gateway_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
    "INSERT INTO gateway_meta (key, value) VALUES ('created_by', 'chain-gateway " GATEWAY_VERSION
    "'),"
    " ('created_at', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'));",
    // 2: the journal of transactions.
    "CREATE TABLE transactions ("
    " hash TEXT PRIMARY KEY,"
    " chain TEXT NOT NULL,"
    " chain_id INTEGER NOT NULL,"
    " sender TEXT NOT NULL,"
    " nonce INTEGER NOT NULL,"  // stored as a signed 64-bit pattern
    " raw BLOB NOT NULL,"
    " state TEXT NOT NULL,"
    " reason TEXT NOT NULL,"
    " created_ms INTEGER NOT NULL,"
    " updated_ms INTEGER NOT NULL,"
    " broadcasts INTEGER NOT NULL DEFAULT 0,"
    " block_hash TEXT,"
    " block_number INTEGER);"
    "CREATE INDEX transactions_unfinished ON transactions (chain, sender, nonce)"
    " WHERE state NOT IN ('COMPLETED', 'FAILED', 'DEAD_LETTER');"
    "CREATE INDEX transactions_by_state ON transactions (state, updated_ms);"
    "CREATE INDEX transactions_by_time ON transactions (created_ms);"
    "CREATE TABLE transaction_events ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " hash TEXT NOT NULL REFERENCES transactions (hash),"
    " state TEXT NOT NULL,"
    " reason TEXT NOT NULL,"
    " at_ms INTEGER NOT NULL);"
    "CREATE INDEX transaction_events_by_hash ON transaction_events (hash, id);",
    // 3: managed senders: transactions the gateway builds and signs, their attempts, nonces.
    "CREATE TABLE managed_transactions ("
    " id TEXT PRIMARY KEY,"
    " chain TEXT NOT NULL,"
    " sender TEXT NOT NULL,"
    " request TEXT NOT NULL,"
    " idempotency_key TEXT,"
    " nonce INTEGER,"
    " state TEXT NOT NULL,"
    " reason TEXT NOT NULL,"
    " created_ms INTEGER NOT NULL,"
    " updated_ms INTEGER NOT NULL,"
    " attempts INTEGER NOT NULL DEFAULT 0,"
    " hash TEXT);"
    "CREATE UNIQUE INDEX managed_by_key ON managed_transactions (chain, sender, idempotency_key)"
    " WHERE idempotency_key IS NOT NULL;"
    "CREATE INDEX managed_unfinished ON managed_transactions (chain, sender, created_ms)"
    " WHERE state NOT IN ('COMPLETED', 'FAILED', 'DEAD_LETTER', 'CANCELLED');"
    "CREATE TABLE managed_events ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " managed_id TEXT NOT NULL REFERENCES managed_transactions (id),"
    " state TEXT NOT NULL,"
    " reason TEXT NOT NULL,"
    " at_ms INTEGER NOT NULL);"
    "CREATE INDEX managed_events_by_id ON managed_events (managed_id, id);"
    "ALTER TABLE transactions ADD COLUMN parent TEXT;"
    "CREATE INDEX transactions_by_parent ON transactions (parent) WHERE parent IS NOT NULL;"
    "CREATE TABLE nonces ("
    " chain TEXT NOT NULL,"
    " sender TEXT NOT NULL,"
    " next INTEGER NOT NULL,"
    " PRIMARY KEY (chain, sender));",
    // 4: fewer random page writes per transaction. Events point to their transaction by an
    // integer id instead of its hash, so a new transaction's events land at the end of their
    // index; the per-sender index of unfinished transactions is gone (only the start-up load
    // used it, which now sorts in memory).
    "CREATE TABLE transactions_v4 ("
    " id INTEGER PRIMARY KEY,"
    " hash TEXT NOT NULL UNIQUE,"
    " chain TEXT NOT NULL,"
    " chain_id INTEGER NOT NULL,"
    " sender TEXT NOT NULL,"
    " nonce INTEGER NOT NULL,"
    " raw BLOB NOT NULL,"
    " state TEXT NOT NULL,"
    " reason TEXT NOT NULL,"
    " created_ms INTEGER NOT NULL,"
    " updated_ms INTEGER NOT NULL,"
    " broadcasts INTEGER NOT NULL DEFAULT 0,"
    " block_hash TEXT,"
    " block_number INTEGER,"
    " parent TEXT);"
    "INSERT INTO transactions_v4 (id, hash, chain, chain_id, sender, nonce, raw, state, reason,"
    " created_ms, updated_ms, broadcasts, block_hash, block_number, parent)"
    " SELECT rowid, hash, chain, chain_id, sender, nonce, raw, state, reason, created_ms,"
    " updated_ms, broadcasts, block_hash, block_number, parent FROM transactions ORDER BY rowid;"
    "CREATE TABLE transaction_events_v4 ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " tx INTEGER NOT NULL REFERENCES transactions_v4 (id),"
    " state TEXT NOT NULL,"
    " reason TEXT NOT NULL,"
    " at_ms INTEGER NOT NULL);"
    "INSERT INTO transaction_events_v4 (id, tx, state, reason, at_ms)"
    " SELECT e.id, t.id, e.state, e.reason, e.at_ms FROM transaction_events e"
    " JOIN transactions_v4 t ON t.hash = e.hash ORDER BY e.id;"
    "DROP TABLE transaction_events;"
    "DROP TABLE transactions;"
    "ALTER TABLE transactions_v4 RENAME TO transactions;"
    "ALTER TABLE transaction_events_v4 RENAME TO transaction_events;"
    "CREATE INDEX transactions_by_state ON transactions (state, updated_ms);"
    "CREATE INDEX transactions_by_time ON transactions (created_ms);"
    "CREATE INDEX transactions_by_parent ON transactions (parent) WHERE parent IS NOT NULL;"
    "CREATE INDEX transaction_events_by_tx ON transaction_events (tx, id);",
    // 5: who sent each transaction (the authenticated client; NULL without auth), so that records
    // and idempotency keys are scoped to their client.
    "ALTER TABLE transactions ADD COLUMN client TEXT;"
    "ALTER TABLE managed_transactions ADD COLUMN client TEXT;"
    "DROP INDEX managed_by_key;"
    "CREATE UNIQUE INDEX managed_by_key ON managed_transactions"
    " (chain, sender, IFNULL(client, ''), idempotency_key) WHERE idempotency_key IS NOT NULL;",
    // 6: whether a final state can still change: a mined transaction's block may be dropped by a
    // reorg until it is final. What earlier versions finished is taken as final.
    "ALTER TABLE transactions ADD COLUMN finalized INTEGER NOT NULL DEFAULT 0;"
    "UPDATE transactions SET finalized = 1"
    " WHERE state IN ('COMPLETED', 'FAILED', 'DEAD_LETTER', 'REPLACED');"
    "CREATE INDEX transactions_unfinalized ON transactions (chain, sender, nonce)"
    " WHERE finalized = 0 AND state IN ('COMPLETED', 'FAILED') AND block_hash IS NOT NULL;",
    // 7: whom the per-client cap counts a raw transaction against (the client, or without auth
    // the peer's address), and the index that finds finished managed transactions to prune.
    "ALTER TABLE transactions ADD COLUMN source TEXT;"
    "CREATE INDEX managed_by_state ON managed_transactions (state, updated_ms);",
    // 8: blob transactions' network forms (their signed bytes with the sidecar, up to ~1 MB),
    // apart from the records so that loading unfinished transactions does not read blobs; a row
    // lives until its transaction is final for good (finalized).
    "CREATE TABLE transaction_sidecars ("
    " tx INTEGER PRIMARY KEY REFERENCES transactions (id),"
    " network BLOB NOT NULL);",
    // 9: the raw transactions retention may delete, by time: the index by state also holds every
    // managed transaction's attempts, which a prune would step over again on every look until
    // their parent goes.
    "CREATE INDEX transactions_prunable ON transactions (updated_ms)"
    " WHERE parent IS NULL AND finalized = 1;",
    // 10: the managed senders' policy (catalog row C2): what each managed transaction moves and
    // when the policy let it (NULL while it is held for approval), for the rolling daily sums.
    // Transactions from before have neither: the sums count from this version on.
    "ALTER TABLE managed_transactions ADD COLUMN value BLOB;"
    "ALTER TABLE managed_transactions ADD COLUMN spend_ms INTEGER;"
    "CREATE INDEX managed_spending ON managed_transactions (chain, sender, spend_ms)"
    " WHERE spend_ms IS NOT NULL AND value IS NOT NULL;",
    // 11: event streams' checkpoints (catalog row I1).
    "CREATE TABLE streams ("
    " id TEXT PRIMARY KEY,"
    " chain TEXT NOT NULL,"
    " next_block INTEGER,"
    " paused INTEGER NOT NULL DEFAULT 0,"
    " updated_ms INTEGER NOT NULL);",
    // 12: what else a stream needs (a log stream's recently delivered blocks, to undo them after
    // a reorg; a transaction stream's cursors), and the definition of one made through the admin
    // API.
    "ALTER TABLE streams ADD COLUMN cursor TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE streams ADD COLUMN definition TEXT;",
    // 13: the operator page's lists of managed transactions, refreshed every few seconds: the
    // last changed first (without a state), and by an idempotency key alone (every chain's,
    // sender's and client's), each from an index rather than a read of every row.
    "CREATE INDEX managed_by_update ON managed_transactions (updated_ms);"
    "CREATE INDEX managed_by_any_key ON managed_transactions (idempotency_key)"
    " WHERE idempotency_key IS NOT NULL;",
    // 14: transactions handed from the gateways that accept them to the one that dispatches them
    // (a journal several gateways share; a file only one opens never has any).
    "CREATE TABLE handoffs ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " chain TEXT NOT NULL,"
    " managed INTEGER NOT NULL,"
    " key TEXT NOT NULL,"
    " sender TEXT NOT NULL);",
};

}  // namespace gateway::store::sqlite_schema
