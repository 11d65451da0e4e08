#pragma once
// The gateway's configuration: plain structs, filled from YAML once at start-up. Loading rejects
// anything it does not understand (unknown keys included) with the key's path and line.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace gateway::config {

using Millis = std::chrono::milliseconds;

/// A listen address, "host:port"; port 0 lets the system choose.
struct Endpoint {
    std::string host;
    std::uint16_t port = 0;
    std::string to_string() const;
    bool operator==(const Endpoint&) const = default;
};

/// Whether an endpoint's address is a loopback address (127.0.0.0/8, ::1): only processes on the
/// same host (in Kubernetes, the same pod) can reach it.
bool is_loopback(const Endpoint& endpoint);

/// TLS on the RPC listener, for keys that cross a network without a TLS terminator in front.
struct TlsConfig {
    std::string cert_file;  ///< PEM, the certificate chain
    std::string key_file;   ///< PEM, its private key
    bool enabled() const { return !cert_file.empty(); }
    bool operator==(const TlsConfig&) const = default;
};

/// gzip of the RPC listener's answers, for deployments that are not a sidecar.
struct CompressionConfig {
    /// Answers of at least this many bytes are gzip-compressed for clients that accept it; 0:
    /// never. (Smaller ones gain too little for the CPU.)
    std::size_t min_bytes = 1024;
    int level = 1;  ///< zlib's, 1 (fastest) to 9 (smallest)
    bool operator==(const CompressionConfig&) const = default;
};

struct ServerConfig {
    Endpoint listen{"127.0.0.1", 8545};
    Endpoint admin_listen{"127.0.0.1", 9545};
    unsigned threads = 2;                          ///< threads running the event loop
    std::size_t max_body_bytes = 5 * 1024 * 1024;  ///< a larger request body gets HTTP 413
    /// Request bodies the RPC listener reads and holds at once (503 beyond); 0: the default,
    /// the larger of 256 MiB and max_body_bytes.
    std::size_t max_body_bytes_in_flight = 0;
    std::size_t max_header_bytes = 8 * 1024;            ///< larger request headers get HTTP 431
    std::size_t max_batch_size = 1000;                  ///< calls in one batch
    std::size_t batch_concurrency = 16;                 ///< calls of one batch forwarded at once
    std::size_t max_batch_response_bytes = 25'000'000;  ///< then the rest of a batch is refused
    Millis idle_timeout{60'000};     ///< a keep-alive connection with no request is closed
    Millis read_timeout{30'000};     ///< time to receive a whole request once it started
    Millis request_timeout{30'000};  ///< a call's whole time upstream, all attempts together
    Millis shutdown_grace{10'000};   ///< on SIGTERM, time left for in-flight requests
    Millis header_timeout{10'000};   ///< from accept (or a request's first byte) to a whole head
    /// On SIGTERM, time /readyz answers 503 while the listeners still accept and serve, before
    /// the drain starts: endpoint controllers (Kubernetes) stop sending new work meanwhile.
    Millis drain_delay{0};
    /// Client connections each listener holds at once; 0: a quarter of the descriptor limit
    /// (half of it, split between the two listeners). At the cap, idle connections are closed
    /// first; with none idle, a new connection is closed at accept.
    std::size_t max_connections = 0;
    /// Connections from one address on the RPC listener; 0: no limit. Loopback addresses are
    /// exempt (in a sidecar every client is 127.0.0.1).
    std::size_t max_connections_per_ip = 0;
    /// Origins (scheme://host[:port]) whose browser pages may call the RPC listener; "*": any.
    /// A request with another Origin than these or the listener's own gets 403.
    std::vector<std::string> cors_allowed_origins;
    TlsConfig tls;
    CompressionConfig compression;
    bool operator==(const ServerConfig&) const = default;
};

struct LogConfig {
    enum class Format { json, text };
    std::string level = "info";  ///< trace, debug, info, warn, error, critical, off
    Format format = Format::json;
    bool operator==(const LogConfig&) const = default;
};

struct StoreConfig {
    std::string backend = "sqlite";          ///< "sqlite" or "postgres"
    std::string path = "./data/gateway.db";  ///< sqlite
    /// postgres: postgresql://user@host:port/db?sslmode=...; may hold a password (from ${ENV}),
    /// so it is never logged.
    std::string url;
    Millis timeout{5'000};  ///< a journal operation not done by then is refused (503 for writes)
    /// Finished transactions are deleted this long after their last change. At least 48 hours:
    /// a managed transaction's idempotency key is honoured only while its row is kept.
    Millis retention{7 * 24 * 3'600'000};
    bool operator==(const StoreConfig&) const = default;
};

enum class Tier { primary, fallback };

struct UpstreamConfig {
    std::string id;
    std::string url;  ///< http:// or https://; may carry credentials, so it is never logged
    Tier tier = Tier::primary;
    Millis timeout{10'000};  ///< one attempt against this upstream
    std::size_t max_idle_connections = 64;
    std::size_t max_response_bytes = 64 * 1024 * 1024;
    std::string ca_file;  ///< extra CA bundle for https upstreams; the system store otherwise
    double max_rps = 0;   ///< calls a second sent to it (token bucket); 0: no limit
    std::size_t max_concurrency = 0;   ///< calls in flight to it at once; 0: no limit
    std::uint64_t max_logs_range = 0;  ///< blocks one eth_getLogs may span on it; 0: no limit
    std::size_t max_batch_size = 100;  ///< reads of a client's batch sent to it as one; 0: never
    /// Ask it for gzip-compressed answers (Accept-Encoding: gzip): hosted providers serve them,
    /// and a block or a log range shrinks several times. Default: yes unless its host is a
    /// loopback address or "localhost" (a sidecar's node: compressing costs more than it saves).
    std::optional<bool> accept_gzip;
    bool operator==(const UpstreamConfig&) const = default;
};

struct HealthConfig {
    Millis interval{1'000};            ///< time between probes of one upstream (with jitter)
    Millis timeout{2'000};             ///< a probe slower than this is a failure
    unsigned healthy_threshold = 1;    ///< consecutive successes that make a down upstream usable
    unsigned unhealthy_threshold = 2;  ///< consecutive failures that make an upstream down
    std::uint64_t max_lag_blocks = 5;  ///< further behind the chain's head: no `latest` reads
    bool operator==(const HealthConfig&) const = default;
};

struct FailoverConfig {
    unsigned max_attempts = 3;       ///< attempts of one call, all upstreams together
    Millis backoff{50};              ///< before trying an upstream again (doubling each round)
    Millis hedge_after{0};           ///< ask a second upstream when a read is this slow; 0: off
    unsigned breaker_threshold = 5;  ///< failed calls in a row that open an upstream's breaker
    Millis breaker_cooldown{5'000};  ///< then one trial call
    bool operator==(const FailoverConfig&) const = default;
};

struct MethodsConfig {
    std::vector<std::string> allow;  ///< when not empty, only these (a trailing * matches a prefix)
    /// By default also a dev node's state changes (anvil_setBalance, hardhat_setCode,
    /// evm_increaseTime): any client could mint itself money or rewrite a contract. An operator who
    /// wants them through the gateway sets a deny list without them.
    std::vector<std::string> deny{"admin_*",  "debug_*", "personal_*", "miner_*", "engine_*",
                                  "txpool_*", "anvil_*", "hardhat_*",  "evm_*"};
    bool operator==(const MethodsConfig&) const = default;
};

struct LogsConfig {
    bool split = true;             ///< split eth_getLogs ranges over max_logs_range; else refuse
    std::size_t concurrency = 4;   ///< parts of one split request fetched at once
    std::size_t max_parts = 1000;  ///< a range needing more parts is refused at once
    bool operator==(const LogsConfig&) const = default;
};

/// How far back the chain's head is followed to tell reorgs.
struct ReorgConfig {
    bool track = true;        ///< follow the head (block reads every health interval)
    std::size_t depth = 128;  ///< recent blocks kept (number, hash, parent hash)
    /// Blocks under the head taken as final (and as safe) when the nodes do not answer the
    /// "finalized" and "safe" tags.
    std::uint64_t finality_depth = 64;
    bool operator==(const ReorgConfig&) const = default;
};

/// Fees of transactions the gateway builds for managed senders.
struct FeeConfig {
    std::uint64_t max_fee_per_gas_gwei = 500;  ///< cap on maxFeePerGas (and a legacy gasPrice)
    std::uint64_t max_priority_fee_gwei = 10;  ///< cap on maxPriorityFeePerGas
    unsigned bump_percent = 10;      ///< a replacement raises fees by max(10 % + 1 wei, this)
    unsigned bump_after_blocks = 3;  ///< blocks without inclusion before a replacement
    bool operator==(const FeeConfig&) const = default;
};

/// How often a managed transaction is tried (signing, sending) before it is a dead letter.
struct RetryConfig {
    unsigned max_attempts = 10;
    Millis backoff{1'000};  ///< doubles each attempt, at most a minute
    bool operator==(const RetryConfig&) const = default;
};

struct TxConfig {
    unsigned confirmations = 1;  ///< blocks (the including one counted) before COMPLETED
    std::size_t max_queued_per_sender = 64;  ///< unfinished transactions of one sender
    std::size_t max_queued = 10'000;         ///< unfinished transactions of the chain
    /// Unfinished raw transactions of one client (its id with auth, else its address)
    std::size_t max_queued_per_client = 1'000;
    /// A raw transaction the nodes keep refusing ("not now": a fee below the base fee, a nonce
    /// gap) is FAILED once they have refused it this long; time without a reachable node does not
    /// count. 0: never.
    Millis expire_after{3'600'000};
    Millis poll_interval{1'000};       ///< dispatcher and receipt tracker round (also woken early)
    Millis rebroadcast_after{30'000};  ///< a transaction not mined by then is sent again
    std::size_t broadcast_fanout = 2;  ///< upstreams a transaction is sent to at once
    unsigned gas_margin_percent = 20;  ///< gas limit = eth_estimateGas x (100 + this) / 100
    FeeConfig fee;
    RetryConfig retry;
    bool operator==(const TxConfig&) const = default;
};

/// The rules a managed sender's transactions must keep to (catalog row C2), checked before a nonce
/// is taken: a transaction that breaks one is held (PENDING_APPROVAL) until an operator approves
/// or rejects it, or approval_ttl passes. An unset rule allows everything.
struct PolicyConfig {
    std::optional<std::string> max_value_wei;                   ///< decimal wei, at most 2^256 - 1
    std::optional<std::string> daily_value_wei;                 ///< per sender, the last 24 hours
    std::optional<std::vector<std::string>> allowed_to;         ///< lowercase addresses
    std::optional<std::vector<std::string>> allowed_selectors;  ///< "0x" and 8 lowercase hex
    Millis approval_ttl{86'400'000};  ///< a held transaction is CANCELLED after this long
    /// An outside policy service asked about each transaction the rules let through
    /// (README, "The policy service"): allow, hold for a person, or deny.
    struct Service {
        std::string url;  ///< http(s)
        Millis timeout{2'000};
        bool operator==(const Service&) const = default;
    };
    std::optional<Service> service;
    bool operator==(const PolicyConfig&) const = default;
};

/// A sender whose transactions the gateway builds and signs (eth_sendTransaction).
struct AccountConfig {
    std::string address;  ///< 0x-prefixed, lowercase after loading
    std::string signer;   ///< a signers[].id
    /// This sender's own caps, below the chain's (tx.fee); unset: the chain's.
    std::optional<std::uint64_t> max_fee_per_gas_gwei;
    std::optional<std::uint64_t> max_priority_fee_gwei;
    /// This sender's rules, in place of the chain's (not merged with them); unset: the chain's.
    std::optional<PolicyConfig> policy;
    bool operator==(const AccountConfig&) const = default;
};

/// One signer. Which fields apply depends on `type`:
///   local         exactly one of key_file, key_env, or keystore with passphrase_env
///   remote        url and addresses (the addresses it signs for); timeout
///   custody-stub  stub_keys_env: variables each holding one hex private key
struct SignerConfig {
    std::string id;
    std::string type;  ///< local | remote | custody-stub
    std::string key_file, key_env, keystore, passphrase_env, url;
    std::vector<std::string> addresses;  ///< 0x-prefixed, 20 bytes (remote)
    std::vector<std::string> stub_keys_env;
    std::chrono::milliseconds timeout{10'000};  ///< one remote signing request
    bool operator==(const SignerConfig&) const = default;
};

/// A method's place in the chain's cache (chains[].cache.methods).
enum class CacheMode {
    on,     ///< the default rules: see the README's "Cache"
    final,  ///< only answers that cannot change (a block hash, a finalized block) are served
            ///< from the cache; the rest are kept for stale serving only
    off,    ///< never answered from the cache, not even stale; identical calls not coalesced
};

/// The chain's read cache: answers served again while they are still true, and served marked
/// stale when no upstream can answer.
struct CacheConfig {
    bool enabled = true;                       ///< answers served from the cache while nodes are up
    std::size_t max_bytes = 64 * 1024 * 1024;  ///< the chain's budget (keys, answers, bookkeeping)
    Millis max_stale{3'600'000};  ///< older answers are not served stale; 0: no stale serving
    bool coalesce = true;         ///< identical reads in flight together go upstream once
    std::map<std::string, CacheMode, std::less<>> methods;  ///< per-method overrides
    bool operator==(const CacheConfig&) const = default;
};

struct ChainConfig {
    std::string name;
    std::uint64_t chain_id = 0;
    HealthConfig health;
    FailoverConfig failover;
    MethodsConfig methods;
    LogsConfig logs;
    ReorgConfig reorgs;
    CacheConfig cache;
    TxConfig tx;
    std::vector<AccountConfig> accounts;  ///< managed senders (eth_sendTransaction)
    std::optional<PolicyConfig> policy;   ///< every managed sender's, unless it has its own
    std::vector<UpstreamConfig> upstreams;
    bool operator==(const ChainConfig&) const = default;
};

/// A client of the RPC listener known by its keys (auth.clients).
struct ClientConfig {
    std::string id;
    /// Its keys, loaded from key_env or key_file at load time (several allow rotation). Secrets:
    /// never logged, never in an error message.
    std::vector<std::string> keys;
    std::string key_env, key_file;     ///< where the keys came from (for messages)
    std::vector<std::string> senders;  ///< managed senders it may use, lowercase; empty: none
    std::vector<std::string> methods;  ///< when not empty, the only methods it may call (`*` rule)
    double max_rps = 0;                ///< calls a second (each call of a batch); 0: no limit
    bool operator==(const ClientConfig&) const = default;
};

/// Bearer tokens (JWT) issued by an authentication service, checked against its JWKS.
struct JwtConfig {
    std::string jwks_url;                   ///< http(s); empty: no tokens accepted
    std::string issuer;                     ///< the `iss` every token must carry
    std::string audience;                   ///< `aud` must be or contain it
    std::string senders_claim = "senders";  ///< the claim listing the senders a token may use
    Millis refresh{300'000};                ///< the JWKS is fetched again this often
    std::string ca_file;                    ///< extra CA certificates for an https JWKS URL
    std::vector<std::string> methods;       ///< for every token client, as clients[].methods
    double max_rps = 0;                     ///< per token client (its `sub`)
    bool enabled() const { return !jwks_url.empty(); }
    bool operator==(const JwtConfig&) const = default;
};

struct AuthConfig {
    std::vector<ClientConfig> clients;
    JwtConfig jwt;
    /// The admin listener's bearer token (auth.admin.token_env or token_file); empty: none.
    /// A secret: never logged.
    std::string admin_token;
    /// Whether the RPC listener asks clients for credentials.
    bool clients_required() const { return !clients.empty() || jwt.enabled(); }
    bool operator==(const AuthConfig&) const = default;
};

/// An event stream (README, "Event streams"; catalog rows I1 and I2): a chain's logs that match a
/// filter, pushed to an application's webhook in batches; the checkpoint moves only once the
/// application acknowledged a batch.
struct StreamConfig {
    std::string id;     ///< 1-63 of [a-z0-9_-]
    std::string chain;  ///< a chains[].name
    /// What it follows: a chain's logs, or the state changes of the gateway's own transactions.
    enum class Kind { logs, transactions };
    Kind kind = Kind::logs;
    /// kind transactions: the senders whose transactions it follows (lowercase); empty: all.
    std::vector<std::string> senders;
    std::vector<std::string> addresses;  ///< lowercase; empty: any
    /// Per position, the topics any of which matches (lowercase); an empty list matches any.
    std::vector<std::vector<std::string>> topics;
    std::optional<std::uint64_t> from_block;  ///< unset: the head when it first starts
    unsigned confirmations = 12;      ///< blocks on top of a block before its logs are delivered
    std::size_t batch_size = 100;     ///< events a batch aims at (a block's are never split)
    std::uint64_t max_blocks = 1000;  ///< blocks asked for in one eth_getLogs
    struct Webhook {
        std::string url;  ///< http(s)
        Millis timeout{5'000};
        /// The HMAC-SHA256 key of the signature header, from `secret_env` at load time (a
        /// stream made through the admin API: given or generated, kept in the journal). A
        /// secret: never logged, never in an error message.
        std::string secret;
        std::string secret_env;
        bool operator==(const Webhook&) const = default;
    };
    Webhook webhook;
    bool operator==(const StreamConfig&) const = default;
};

struct Config {
    ServerConfig server;
    AuthConfig auth;
    std::vector<SignerConfig> signers;
    LogConfig log;
    StoreConfig store;
    std::vector<ChainConfig> chains;
    std::vector<StreamConfig> streams;
    bool operator==(const Config&) const = default;
};

/// A configuration that cannot be used. what() names the file, line, column and key path, e.g.
/// `gateway.yaml:12:9: chains[0].upstreams[1].url: must start with http:// or https://`.
class ConfigError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

/// Looks up an environment variable; nullopt when it is not set.
using EnvLookup = std::function<std::optional<std::string>(std::string_view)>;

/// The process environment.
EnvLookup process_env();

/// The largest configuration read. A real one is a few KB; the bound is checked before the YAML
/// parser sees the text, whose time and memory grow with it.
inline constexpr std::size_t kMaxConfigBytes = 1024 * 1024;

/// Parses YAML text. `${NAME}` and `${NAME:-default}` in values are replaced from `env`; an unset
/// variable without a default is an error. `source` names the text in messages.
/// Throws ConfigError, also for a text over kMaxConfigBytes.
Config parse_config(std::string_view yaml, std::string_view source, const EnvLookup& env);

/// Reads and parses a file. Throws ConfigError (also when the file cannot be read, or is over
/// kMaxConfigBytes: no more than that is read).
Config load_config_file(const std::string& path, const EnvLookup& env = process_env());

/// Parses a stream made through the admin API: a JSON object with the keys of a `streams[]`
/// entry, but the webhook's `secret` (16 bytes or more) in place of `secret_env`, optional (empty
/// in the result when not given: the caller makes one). Nothing is read from the environment
/// (`${NAME}` is refused). Whether its chain exists is the caller's to check. Throws ConfigError.
StreamConfig parse_stream_definition(std::string_view json);

/// Parses "host:port" or "[v6]:port". Throws std::invalid_argument with the reason.
Endpoint parse_endpoint(std::string_view text);

}  // namespace gateway::config
