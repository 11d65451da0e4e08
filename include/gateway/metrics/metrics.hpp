#pragma once
// Prometheus metrics of the gateway. Label values are bounded: chains and upstreams come from the
// configuration, methods from a fixed table (anything else is "other"), outcomes from fixed sets.

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace gateway::metrics {

/// What the pool publishes about one upstream after each probe round.
struct UpstreamGauges {
    bool up = false;    ///< gets calls now
    std::string state;  ///< up, lagging, down, ... (see UpstreamView)
    double lag = 0;     ///< blocks behind the chain head
    double score = 0;   ///< lower is better
    int breaker = 0;    ///< 0 closed, 1 open, 2 half-open
    double head = 0;
};

/// Thread-safe; every method may be called from any thread.
class Metrics {
public:
    Metrics();
    ~Metrics();
    /// Creates a chain's series at zero before anything happens, so that an alert's expression
    /// has a series to read from the start: its raw transactions in each of `raw_states`, its
    /// managed ones (with senders) in each of `managed_states`, its reorg histogram, stale answers
    /// and replacements, and each managed sender's stuck-at-cap gauge.
    void declare_chain(std::string_view chain, const std::vector<std::string_view>& raw_states,
                       const std::vector<std::string_view>& managed_states,
                       const std::vector<std::string>& managed_senders);
    /// The journal's refusals, one series per reason at zero.
    void declare_journal(const std::vector<std::string_view>& refusal_reasons);
    Metrics(const Metrics&) = delete;
    Metrics& operator=(const Metrics&) = delete;

    /// A call answered to a client. `method` must already be a bounded label
    /// (jsonrpc::method_label). `outcome`: ok, rpc_error, invalid, unavailable, rejected.
    /// `calls`: that many calls, each answered in `seconds` (a batch's, answered together).
    void observe_call(std::string_view chain, std::string_view method, std::string_view outcome,
                      double seconds, std::size_t calls = 1);

    /// An HTTP response written by a listener ("rpc" or "admin").
    void observe_http(std::string_view listener, unsigned status, std::size_t body_bytes);

    /// A JSON-RPC error answer: its code (a code outside the known ones counts as "other").
    void count_rpc_error(std::string_view chain, std::int64_t code);

    /// HTTP requests being served by the RPC listener.
    void add_in_flight(int delta);

    /// One attempt against an upstream for `method` (a bounded label); `error` is empty on success
    /// (a JSON-RPC error answer is a success for the transport) or the error kind (connect_failed,
    /// timeout, http_5xx, ...).
    void observe_upstream(std::string_view chain, std::string_view upstream,
                          std::string_view method, std::string_view error, double seconds);

    /// An upstream's health, lag, score, breaker and head.
    /// A health probe's answer time (its eth_blockNumber).
    void observe_probe(std::string_view chain, std::string_view upstream, double seconds);

    /// Drops the gauges of an upstream a reload removed (its counters stay, as counters do).
    void forget_upstream(std::string_view chain, std::string_view upstream);
    void set_upstream(std::string_view chain, std::string_view upstream,
                      const UpstreamGauges& gauges);
    /// The chain's head (the highest head among upstreams that answer).
    void set_chain_head(std::string_view chain, double head);
    /// A call moved away from an upstream (or gave up on it) for `reason`.
    void count_failover(std::string_view chain, std::string_view upstream, std::string_view reason);
    /// A slow read was sent to a second upstream.
    void count_hedge(std::string_view chain);
    /// A transaction entered `state` (QUEUED, BROADCASTING, ...).
    void count_transaction(std::string_view chain, std::string_view state);
    /// A managed transaction (eth_sendTransaction) entered `state`.
    void count_managed(std::string_view chain, std::string_view state);
    // Event streams.
    void set_stream_lag(std::string_view stream, double blocks);
    void count_stream_delivery(std::string_view stream, std::string_view outcome);
    void count_stream_events(std::string_view stream, std::size_t events);
    void count_stream_reorg(std::string_view stream);
    /// A deleted stream's series go (its lag would stay at its last value for ever).
    void forget_stream(std::string_view stream);
    /// A hold for approval (`held_by` policy or signer) and its end: held, approved, rejected or
    /// expired.
    void count_approval(std::string_view chain, std::string_view held_by, std::string_view outcome);
    /// A signing request to `signer` ended with `outcome` (signed, unavailable, refused,
    /// malformed).
    void count_signing(std::string_view signer, std::string_view outcome);
    /// Whether `signer` answered its latest signing request (false: it could not sign now).
    void set_signer_ready(std::string_view signer, bool ready);
    /// A managed transaction was signed again with higher fees (a replacement).
    void count_replacement(std::string_view chain);
    /// Managed transactions of a sender not mined whose fees are at the cap (0 when none).
    void set_stuck_at_cap(std::string_view chain, std::string_view sender, double count);
    /// A reorg of `depth` blocks was seen on a chain.
    void count_reorg(std::string_view chain, std::uint64_t depth);
    /// Unfinished transactions the gateway holds for a chain.
    /// The chain's safe and finalized blocks (the nodes' tags, or the head less finality_depth).
    void set_chain_tags(std::string_view chain, std::uint64_t safe, std::uint64_t finalized);
    /// One commit of the journal (the COMMIT with its sync to disk).
    void observe_journal_commit(double seconds);
    void set_transactions_held(std::string_view chain, double count);
    /// When the oldest transaction the chain's queue holds unfinished was accepted (Unix ms; 0:
    /// none), for alerts on `time() - ...`.
    void set_oldest_unfinished(std::string_view chain, std::int64_t created_ms);
    /// Mined transactions of a chain kept open to a reorg until their block is final.
    void set_transactions_unfinalized(std::string_view chain, double count);
    /// A read answered from the cache because no upstream could answer.
    void count_stale_answer(std::string_view chain);
    /// A read looked up in the cache: a hit, or a miss.
    void count_cache(std::string_view chain, std::string_view method, bool hit);
    /// A cache entry dropped to stay within the byte budget.
    void count_cache_eviction(std::string_view chain, std::string_view method);
    /// Cache entries removed because a reorg dropped their block.
    void count_cache_invalidations(std::string_view chain, std::size_t entries);
    /// The cache's size, as of a scrape.
    void set_cache_size(std::string_view chain, double entries, double bytes);
    /// A read answered by an identical call in flight.
    void count_coalesced(std::string_view chain, std::string_view method);
    /// An upstream reported another chain id.
    void count_wrong_chain(std::string_view chain, std::string_view upstream);
    /// An eth_getLogs was split into `parts` requests.
    void count_logs_split(std::string_view chain, std::size_t parts);

    /// A credential check on a listener ("rpc" or "admin") ended with `outcome`: ok, missing,
    /// invalid, expired, unknown_key (a token's kid is in no key set the gateway has). Once per
    /// request: a request refused later for its client's rate was counted `ok` here, and its
    /// calls are counted by count_client_call(..., "rate_limited").
    void count_auth(std::string_view listener, std::string_view outcome);
    /// The keys the JWKS holds now.
    void set_jwks_keys(double keys);
    /// Where gateway_auth_jwks_age_seconds is read at each scrape: seconds since the JWKS was
    /// last fetched successfully (-1: never). Read at the scrape rather than set at each fetch,
    /// so that it is the key set's age now, between fetches and through an outage. Called by
    /// render() (any thread); must not block.
    void set_jwks_age_source(std::function<double()> age_seconds);
    /// A fetch of the JWKS ended with `outcome` (ok, failed).
    void count_jwks_fetch(std::string_view outcome);
    /// A call answered to an authenticated client (`client`: a configured id, or jwt:<sub> for
    /// the first ones seen, then "jwt:other", so tokens cannot grow the label set without bound).
    /// `calls`: a batch refused whole counts each of its calls.
    void count_client_call(std::string_view client, std::string_view outcome,
                           std::size_t calls = 1);
    /// A connection the listener closed at accept (`reason`: max_connections, max_per_ip), or
    /// an idle one it closed to make room (evicted).
    void count_connection_closed(std::string_view listener, std::string_view reason);
    /// Client connections a listener holds now.
    void set_open_connections(std::string_view listener, double count);

    /// The transaction journal works (1), or failed and is not working again yet (0).
    void set_journal_up(bool up);
    /// Whether another gateway owns the shared journal and this one waits to take over.
    void set_journal_standby(bool standby);
    /// A journal operation was refused (`reason`: timeout, queue_full, unavailable).
    void count_journal_refusal(std::string_view reason);
    /// The journal was opened again after a run-time failure (`outcome`: ok, failed).
    void count_journal_reopen(std::string_view outcome);
    /// A configuration reload: applied (`restart_required` when some changes wait for a restart)
    /// or refused.
    void config_loaded(bool ok, bool restart_required);
    /// Finished transactions deleted past store.retention_ms (`kind`: transaction, managed).
    void count_journal_pruned(std::string_view kind, std::size_t count);
    /// An eth_sendRawTransaction refused for a queue cap (`reason`: max_queued,
    /// max_queued_per_sender, max_queued_per_client).
    void count_transaction_refusal(std::string_view chain, std::string_view reason);

    /// The Prometheus text exposition of every metric.
    std::string render() const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace gateway::metrics
