#include "gateway/metrics/metrics.hpp"

#include "gateway/util/memory.hpp"

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <sys/resource.h>
#include <unistd.h>
#include <algorithm>
#include <array>
#include <atomic>
#include <charconv>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <mutex>
#include <sstream>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace gateway::metrics {
namespace prom = prometheus;

namespace {

double unix_seconds() {
    return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch())
        .count();
}

// The circuit breaker's states, in the order of UpstreamGauges::breaker's numbers.
constexpr const char* kBreakerStates[] = {"closed", "open", "half_open"};
// Blocks a reorg drops.
const prom::Histogram::BucketBoundaries kDepthBuckets{1, 2, 3, 5, 10, 20, 50, 128};
// Answer sizes: 64 bytes (a quantity) to 64 MiB (a large log range), by fours.
const prom::Histogram::BucketBoundaries kSizeBuckets{
    64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864};
const prom::Histogram::BucketBoundaries kLatencyBuckets{
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};

// Every state an upstream can be in, so that the state gauge has one series per state.
constexpr std::array<const char*, 11> kStates{
    "up",           "unknown",           "lagging", "syncing",  "throttled",  "bad_head",
    "breaker_open", "breaker_half_open", "down",    "cordoned", "wrong_chain"};

std::string s(std::string_view v) {
    return std::string(v);
}

prom::Family<prom::Counter>& counter(prom::Registry& r, const char* name, const char* help) {
    return prom::BuildCounter().Name(name).Help(help).Register(r);
}
prom::Family<prom::Gauge>& gauge(prom::Registry& r, const char* name, const char* help) {
    return prom::BuildGauge().Name(name).Help(help).Register(r);
}
prom::Family<prom::Histogram>& histogram(prom::Registry& r, const char* name, const char* help) {
    return prom::BuildHistogram().Name(name).Help(help).Register(r);
}

// A string hash that also takes a string_view: a lookup by a key built on the stack allocates
// nothing.
struct KeyHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view k) const { return std::hash<std::string_view>{}(k); }
};

// The series of the per-call families, looked up by their label values joined: a label map and
// a family lookup per call cost more than the call's own work in the gateway. Each thread keeps
// its own copy of the lookup, filled from the shared one the first time it meets a key, so that a
// call takes no lock and shares no cache line with the other event loops (series are never
// removed: a pointer stays good for the family's life).
template <class T>
class SeriesCache {
public:
    template <class Make>
    T& get(std::string_view key, Make make) {
        Map& mine = this_threads();
        if (auto it = mine.find(key); it != mine.end()) return *it->second;
        T* series = nullptr;
        {
            std::lock_guard lock(mu_);
            auto it = shared_.find(key);
            if (it == shared_.end()) it = shared_.emplace(std::string(key), &make()).first;
            series = it->second;
        }
        mine.emplace(std::string(key), series);
        return *series;
    }

private:
    using Map = std::unordered_map<std::string, T*, KeyHash, std::equal_to<>>;

    // By the cache's number, never reused: a thread's copy for a cache that is gone is never
    // found again (it stays, small, until the thread ends). A vector: the per-call lookups go
    // from cache to cache, and an index costs no hash.
    Map& this_threads() {
        thread_local std::vector<std::unique_ptr<Map>> by_cache;
        if (id_ >= by_cache.size()) by_cache.resize(id_ + 1);
        std::unique_ptr<Map>& mine = by_cache[id_];
        if (!mine) mine = std::make_unique<Map>();
        return *mine;
    }

    static std::size_t next_id() {
        static std::atomic<std::size_t> next{0};
        return next.fetch_add(1, std::memory_order_relaxed);
    }

    const std::size_t id_ = next_id();
    std::mutex mu_;
    Map shared_;  // owned by their families
};

// Label values joined with NULs, on the stack when they fit (the per-call metrics' keys do).
class Key {
public:
    Key(std::string_view a, std::string_view b, std::string_view c = {}) {
        const std::size_t size = a.size() + b.size() + c.size() + 2;
        char* out = small_.data();
        if (size > small_.size()) {
            large_.resize(size);
            out = large_.data();
        }
        char* p = out;
        p = std::copy(a.begin(), a.end(), p);
        *p++ = '\0';
        p = std::copy(b.begin(), b.end(), p);
        *p++ = '\0';
        std::copy(c.begin(), c.end(), p);
        view_ = std::string_view(out, size);
    }
    Key(const Key&) = delete;
    Key& operator=(const Key&) = delete;
    operator std::string_view() const { return view_; }

private:
    std::array<char, 192> small_;
    std::string large_;
    std::string_view view_;
};

// A latency histogram of one chain's upstream, looked up through `cache`.
prom::Histogram& upstream_histogram(SeriesCache<prom::Histogram>& cache,
                                    prom::Family<prom::Histogram>& family, std::string_view chain,
                                    std::string_view upstream) {
    return cache.get(Key(chain, upstream), [&]() -> prom::Histogram& {
        return family.Add({{"chain", s(chain)}, {"upstream", s(upstream)}}, kLatencyBuckets);
    });
}

// One label of a per-call counter: its name and, for this call, its value.
struct Label {
    const char* name;
    std::string_view value;
};

// The counter of `family` with these labels (one to three), looked up through `cache` by their
// values; the family's own lookup (a lock and a label map) only the first time.
template <class... Labels>
prom::Counter& series_of(SeriesCache<prom::Counter>& cache, prom::Family<prom::Counter>& family,
                         const Labels&... labels) {
    static_assert(sizeof...(Labels) >= 1 && sizeof...(Labels) <= 3);
    const std::array<std::string_view, 3> values{labels.value...};
    return cache.get(Key(values[0], values[1], values[2]), [&]() -> prom::Counter& {
        return family.Add(prom::Labels{{labels.name, std::string(labels.value)}...});
    });
}

}  // namespace

struct Metrics::Impl {
    prom::Registry registry;
    SeriesCache<prom::Counter> request_counters, upstream_counters, http_counters;
    SeriesCache<prom::Histogram> request_histograms, upstream_histograms, http_size_histograms,
        probe_histograms;
    SeriesCache<prom::Counter> rpc_error_counters;
    // Other counters a call may count, each family its own lookup.
    SeriesCache<prom::Counter> cache_request_counters, cache_eviction_counters, coalesced_counters,
        stale_counters, failover_counters, hedge_counters, auth_counters;

    prom::Family<prom::Counter>& requests =
        counter(registry, "gateway_requests_total",
                "JSON-RPC calls answered to clients, by chain, method and outcome");
    prom::Family<prom::Histogram>& request_seconds =
        histogram(registry, "gateway_request_duration_seconds",
                  "Time to answer one JSON-RPC call, by chain and method");
    prom::Family<prom::Counter>& http =
        counter(registry, "gateway_http_responses_total",
                "HTTP responses written, by listener and status code");
    prom::Family<prom::Histogram>& http_size =
        histogram(registry, "gateway_http_response_size_bytes",
                  "Bodies of HTTP responses as written (compressed when they were), by listener");
    prom::Family<prom::Counter>& rpc_errors =
        counter(registry, "gateway_rpc_errors_total",
                "JSON-RPC error answers, by chain and error code (codes outside the standard "
                "and EIP-1193/1474 ones count as \"other\")");
    prom::Gauge& in_flight = gauge(registry, "gateway_in_flight_requests",
                                   "HTTP requests being served by the RPC listener")
                                 .Add({});
    prom::Family<prom::Counter>& upstream_requests =
        counter(registry, "gateway_upstream_requests_total",
                "Requests sent to upstreams (not probes), by chain, upstream and method");
    prom::Family<prom::Counter>& upstream_errors =
        counter(registry, "gateway_upstream_errors_total",
                "Failed requests to upstreams, by chain, upstream and kind");
    prom::Family<prom::Histogram>& upstream_seconds =
        histogram(registry, "gateway_upstream_request_duration_seconds",
                  "Time of one request to an upstream");
    prom::Family<prom::Gauge>& upstream_up =
        gauge(registry, "gateway_upstream_up", "1 when the upstream gets calls now, 0 otherwise");
    prom::Family<prom::Gauge>& upstream_state =
        gauge(registry, "gateway_upstream_state",
              "1 for the state the upstream is in (up, lagging, down, ...), else 0");
    prom::Family<prom::Gauge>& upstream_lag = gauge(
        registry, "gateway_upstream_lag_blocks", "Blocks the upstream is behind the chain's head");
    prom::Family<prom::Gauge>& upstream_score = gauge(
        registry, "gateway_upstream_score", "The upstream's selection score (lower is better)");
    prom::Family<prom::Gauge>& upstream_breaker_states =
        gauge(registry, "gateway_upstream_breaker",
              "1 for the state the upstream's circuit breaker is in (closed, open, half_open), "
              "else 0");
    prom::Family<prom::Histogram>& probe_seconds =
        histogram(registry, "gateway_upstream_probe_duration_seconds",
                  "Time an upstream took to answer a health probe's eth_blockNumber");
    prom::Family<prom::Gauge>& upstream_head =
        gauge(registry, "gateway_upstream_head_block", "The latest block the upstream reported");
    prom::Family<prom::Gauge>& chain_head =
        gauge(registry, "gateway_chain_head_block",
              "The chain's head: the highest among answering upstreams");
    prom::Family<prom::Counter>& failovers =
        counter(registry, "gateway_failovers_total",
                "Calls that moved away from an upstream, by chain, upstream and reason");
    prom::Family<prom::Counter>& hedges = counter(registry, "gateway_hedged_requests_total",
                                                  "Slow reads also sent to a second upstream");
    prom::Family<prom::Counter>& wrong_chain =
        counter(registry, "gateway_upstream_wrong_chain_total",
                "Probes in which an upstream reported another chain id");
    prom::Family<prom::Counter>& logs_split =
        counter(registry, "gateway_logs_split_parts_total",
                "Requests made by splitting eth_getLogs ranges");
    prom::Family<prom::Counter>& transactions =
        counter(registry, "gateway_transactions_total",
                "Raw transactions entering each state, by chain and state");
    prom::Family<prom::Counter>& reorgs =
        counter(registry, "gateway_reorgs_total", "Reorgs seen on each chain's canonical chain");
    prom::Family<prom::Histogram>& reorg_depth =
        histogram(registry, "gateway_reorg_depth_blocks", "Blocks dropped by each reorg");
    prom::Family<prom::Counter>& managed = counter(
        registry, "gateway_managed_transactions_total",
        "Managed transactions (eth_sendTransaction) entering each state, by chain and state");
    prom::Family<prom::Counter>& approvals =
        counter(registry, "gateway_managed_approvals_total",
                "Managed transactions held for a person's approval and what became of them, by "
                "chain, by whom held (policy: the gateway's, before a nonce; signer: the "
                "signer's own, with its nonce; service: the policy service's answer) and outcome "
                "(held, approved, rejected, expired, denied)");
    prom::Family<prom::Gauge>& stream_lag =
        gauge(registry, "gateway_stream_lag_blocks",
              "Confirmed blocks an event stream has not yet had acknowledged, by stream");
    prom::Family<prom::Counter>& stream_deliveries =
        counter(registry, "gateway_stream_deliveries_total",
                "Batches an event stream posted to its webhook, by stream and outcome "
                "(acknowledged, failed)");
    prom::Family<prom::Counter>& stream_events =
        counter(registry, "gateway_stream_events_total",
                "Events an event stream's webhook acknowledged, by stream");
    prom::Family<prom::Counter>& stream_reorgs =
        counter(registry, "gateway_stream_reorgs_total",
                "Reorgs that dropped blocks a log stream had sent, undone (their events sent "
                "again as removed), by stream");
    prom::Family<prom::Counter>& signing =
        counter(registry, "gateway_signing_requests_total",
                "Signing requests to custody, by signer and outcome (signed, unavailable, "
                "pending_approval, refused, malformed)");
    prom::Family<prom::Gauge>& signer_ready =
        gauge(registry, "gateway_signer_ready",
              "1 when the signer answered its latest signing request, 0 when it could not sign "
              "(unreachable, timing out, a key not loaded; a hold for approval is an answer)");
    prom::Family<prom::Counter>& replacements =
        counter(registry, "gateway_replacements_total",
                "Managed transactions signed again with higher fees because they were not mined");
    prom::Family<prom::Gauge>& stuck_at_cap =
        gauge(registry, "gateway_stuck_at_fee_cap",
              "Managed transactions not mined whose fees are at the configured cap, by sender");
    prom::Family<prom::Gauge>& held =
        gauge(registry, "gateway_transactions_held", "Unfinished transactions the gateway holds");
    prom::Family<prom::Gauge>& chain_safe = gauge(
        registry, "gateway_chain_safe_block",
        "The chain's safe block: the nodes' safe tag, or the head less reorgs.finality_depth");
    prom::Family<prom::Gauge>& chain_finalized =
        gauge(registry, "gateway_chain_finalized_block",
              "The chain's finalized block: the nodes' finalized tag, or the head less "
              "reorgs.finality_depth");
    prom::Histogram& journal_commit =
        histogram(registry, "gateway_journal_commit_duration_seconds",
                  "Time of one commit of the journal (the COMMIT with its sync to disk; callers' "
                  "operations are committed together)")
            .Add({}, prom::Histogram::BucketBoundaries{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                                       0.05, 0.1, 0.25, 0.5, 1, 2.5, 5});
    // The process, read from /proc at each scrape (the names every Prometheus exporter uses).
    prom::Counter& process_cpu =
        counter(registry, "process_cpu_seconds_total", "CPU time the process used, user and system")
            .Add({});
    double process_cpu_seen = 0;  // scrape_mu
    prom::Gauge& process_rss =
        gauge(registry, "process_resident_memory_bytes", "Resident memory of the process").Add({});
    prom::Gauge& process_vsz =
        gauge(registry, "process_virtual_memory_bytes", "Virtual memory of the process").Add({});
    prom::Gauge& process_fds =
        gauge(registry, "process_open_fds", "File descriptors the process has open").Add({});
    prom::Gauge& process_max_fds =
        gauge(registry, "process_max_fds", "The process's limit of file descriptors").Add({});
    prom::Gauge& process_start =
        gauge(registry, "process_start_time_seconds", "When the process started, Unix seconds")
            .Add({});
    prom::Family<prom::Gauge>& oldest_unfinished =
        gauge(registry, "gateway_oldest_unfinished_transaction_timestamp_seconds",
              "When the oldest transaction the chain's queue holds unfinished was accepted (Unix "
              "seconds; 0: none): its age is time() minus this");
    prom::Family<prom::Gauge>& unfinalized =
        gauge(registry, "gateway_transactions_unfinalized",
              "Mined transactions kept open to a reorg until their block is final");
    prom::Family<prom::Counter>& stale = counter(registry, "gateway_stale_answers_total",
                                                 "Reads answered from the cache, marked stale");
    prom::Family<prom::Counter>& cache_requests =
        counter(registry, "gateway_cache_requests_total",
                "Reads looked up in the chain's cache, by method and result (hit, miss)");
    prom::Family<prom::Counter>& cache_evictions =
        counter(registry, "gateway_cache_evictions_total",
                "Cache entries dropped to stay within cache.max_bytes, by method");
    prom::Family<prom::Counter>& cache_invalidations =
        counter(registry, "gateway_cache_invalidations_total",
                "Cache entries removed because a reorg dropped the block they depend on");
    prom::Family<prom::Gauge>& cache_entries =
        gauge(registry, "gateway_cache_entries", "Answers held in the chain's cache");
    prom::Family<prom::Gauge>& cache_bytes =
        gauge(registry, "gateway_cache_bytes",
              "Bytes the chain's cache holds (keys, answers and bookkeeping)");
    prom::Family<prom::Counter>& coalesced =
        counter(registry, "gateway_coalesced_requests_total",
                "Reads answered by an identical call already in flight, by method");
    prom::Family<prom::Counter>& auth =
        counter(registry, "gateway_auth_requests_total",
                "Credential checks, one per request, by listener and outcome (ok, missing, "
                "invalid, expired, unknown_key)");
    prom::Gauge& jwks_age = gauge(registry, "gateway_auth_jwks_age_seconds",
                                  "Seconds since the JWKS was last fetched successfully, as of the "
                                  "scrape; -1 before the first")
                                .Add({});
    std::mutex scrape_mu;  // guards jwks_age_source
    std::function<double()> jwks_age_source;
    prom::Gauge& jwks_keys =
        gauge(registry, "gateway_auth_jwks_keys", "Keys in the JWKS the gateway holds").Add({});
    prom::Family<prom::Counter>& jwks_fetches =
        counter(registry, "gateway_auth_jwks_fetches_total",
                "Fetches of the JWKS, by outcome (ok, failed)");
    SeriesCache<prom::Counter> client_counters;
    prom::Family<prom::Counter>& client_calls =
        counter(registry, "gateway_client_requests_total",
                "JSON-RPC calls answered to authenticated clients, by client and outcome");
    prom::Family<prom::Counter>& connections_closed = counter(
        registry, "gateway_connections_closed_total",
        "Connections closed by a listener to stay within its limits, by reason "
        "(max_connections, max_per_ip at accept; evicted: idle or slow to send its request, "
        "to make room)");
    prom::Family<prom::Gauge>& open_connections =
        gauge(registry, "gateway_open_connections", "Client connections a listener holds");
    prom::Gauge& journal_up =
        gauge(registry, "gateway_journal_up",
              "1 while the transaction journal works, 0 from a failure until it works again")
            .Add({});
    prom::Gauge& journal_standby =
        gauge(registry, "gateway_journal_standby",
              "1 while another gateway owns the shared journal (PostgreSQL) and dispatches it: "
              "this one takes writes, hands them over, and takes over when that one goes; else 0")
            .Add({});
    prom::Family<prom::Counter>& journal_refusals =
        counter(registry, "gateway_journal_refusals_total",
                "Journal operations refused, by reason (timeout: not done within "
                "store.timeout_ms; queue_full; unavailable: the journal is closed or failed)");
    prom::Family<prom::Counter>& config_reloads = counter(
        registry, "gateway_config_reloads_total",
        "Configuration reloads (SIGHUP, POST /admin/reload) by outcome: applied or refused");
    prom::Gauge& config_reload_ok =
        gauge(registry, "gateway_config_last_reload_successful",
              "1 when the last reload was applied (or none was asked), 0 when it was refused")
            .Add({});
    prom::Gauge& config_reload_time =
        gauge(registry, "gateway_config_last_reload_success_timestamp_seconds",
              "When the configuration was last loaded (the start, or an applied reload)")
            .Add({});
    prom::Gauge& config_restart_pending =
        gauge(registry, "gateway_config_restart_required",
              "1 when the configuration read last has changes only a restart applies")
            .Add({});
    prom::Family<prom::Counter>& journal_reopens =
        counter(registry, "gateway_journal_reopens_total",
                "Openings of the journal after it failed at run time, by outcome (ok, failed)");
    prom::Family<prom::Counter>& journal_pruned =
        counter(registry, "gateway_journal_pruned_total",
                "Finished transactions deleted from the journal past store.retention_ms, with "
                "their histories, by kind (transaction: raw transactions and managed ones' "
                "attempts; managed)");
    prom::Family<prom::Counter>& transaction_refusals =
        counter(registry, "gateway_transaction_refusals_total",
                "eth_sendRawTransaction calls refused for a queue cap, by chain and reason "
                "(max_queued, max_queued_per_sender, max_queued_per_client)");
    prom::Family<prom::Gauge>& build_info =
        gauge(registry, "gateway_build_info",
              "Always 1; the labels say which build runs: its version and the allocator "
              "malloc goes to (jemalloc, or system: glibc's or a sanitizer's)");
};

Metrics::Metrics() : impl_(std::make_unique<Impl>()) {
    impl_->build_info
        .Add({{"version", GATEWAY_VERSION}, {"allocator", std::string(util::allocator_name())}})
        .Set(1);
    impl_->jwks_age.Set(-1);
    // The configuration the process started with; reloads counted from zero, for rate().
    for (const char* outcome : {"applied", "refused"})
        impl_->config_reloads.Add({{"outcome", outcome}});
    impl_->config_reload_ok.Set(1);
    impl_->config_reload_time.Set(unix_seconds());
}

Metrics::~Metrics() = default;

void Metrics::observe_call(std::string_view chain, std::string_view method,
                           std::string_view outcome, double seconds, std::size_t calls) {
    if (calls == 0) return;
    Impl& m = *impl_;
    series_of(m.request_counters, m.requests, Label{"chain", chain}, Label{"method", method},
              Label{"outcome", outcome})
        .Increment(static_cast<double>(calls));
    prom::Histogram& h = m.request_histograms.get(Key(chain, method), [&]() -> prom::Histogram& {
        return m.request_seconds.Add({{"chain", s(chain)}, {"method", s(method)}}, kLatencyBuckets);
    });
    if (calls == 1) {
        h.Observe(seconds);
        return;
    }
    // Calls that took the same time (a batch's, answered together): once, with their count in
    // the bucket of that time (the last one: +Inf).
    std::vector<double> increments(kLatencyBuckets.size() + 1, 0.0);
    const auto bucket = std::lower_bound(kLatencyBuckets.begin(), kLatencyBuckets.end(), seconds);
    increments[static_cast<std::size_t>(bucket - kLatencyBuckets.begin())] =
        static_cast<double>(calls);
    h.ObserveMultiple(increments, seconds * static_cast<double>(calls));
}

void Metrics::observe_http(std::string_view listener, unsigned status, std::size_t body_bytes) {
    Impl& m = *impl_;
    m.http_size_histograms
        .get(Key(listener, {}),
             [&]() -> prom::Histogram& {
                 return m.http_size.Add({{"listener", s(listener)}}, kSizeBuckets);
             })
        .Observe(static_cast<double>(body_bytes));
    char code[12];
    auto [end, ec] = std::to_chars(code, code + sizeof code, status);
    (void)ec;
    const std::string_view code_text(code, static_cast<std::size_t>(end - code));
    series_of(m.http_counters, m.http, Label{"listener", listener}, Label{"code", code_text})
        .Increment();
}

void Metrics::add_in_flight(int delta) {
    impl_->in_flight.Increment(delta);
}

void Metrics::observe_upstream(std::string_view chain, std::string_view upstream,
                               std::string_view method, std::string_view error, double seconds) {
    Impl& m = *impl_;
    series_of(m.upstream_counters, m.upstream_requests, Label{"chain", chain},
              Label{"upstream", upstream}, Label{"method", method})
        .Increment();
    upstream_histogram(m.upstream_histograms, m.upstream_seconds, chain, upstream).Observe(seconds);
    if (!error.empty())
        impl_->upstream_errors
            .Add({{"chain", s(chain)}, {"upstream", s(upstream)}, {"kind", s(error)}})
            .Increment();
}

void Metrics::set_upstream(std::string_view chain, std::string_view upstream,
                           const UpstreamGauges& g) {
    const prom::Labels labels{{"chain", s(chain)}, {"upstream", s(upstream)}};
    impl_->upstream_up.Add(labels).Set(g.up ? 1 : 0);
    for (const char* state : kStates) {
        prom::Labels l = labels;
        l["state"] = state;
        impl_->upstream_state.Add(l).Set(g.state == state ? 1 : 0);
    }
    impl_->upstream_lag.Add(labels).Set(g.lag);
    impl_->upstream_score.Add(labels).Set(g.score);
    // A state set, as Prometheus users read a state: one series per state.
    for (int i = 0; i < 3; ++i) {
        prom::Labels l = labels;
        l["state"] = kBreakerStates[i];
        impl_->upstream_breaker_states.Add(l).Set(static_cast<int>(g.breaker) == i ? 1 : 0);
    }
    impl_->upstream_head.Add(labels).Set(g.head);
}

void Metrics::observe_probe(std::string_view chain, std::string_view upstream, double seconds) {
    Impl& m = *impl_;
    upstream_histogram(m.probe_histograms, m.probe_seconds, chain, upstream).Observe(seconds);
}

void Metrics::count_rpc_error(std::string_view chain, std::int64_t code) {
    // A node may answer any number: the label takes the codes clients act on, and "other", so
    // that a node cannot make series without end.
    const bool known = (code >= -32099 && code <= -32000) || code == -32700 || code == -32600 ||
                       code == -32601 || code == -32602 || code == -32603 || code == 3 ||
                       code == 4001 || code == 4100 || code == 4200 || code == 4900 ||
                       code == 4901 || code == 4902;
    char text[24] = "other";
    std::string_view label = "other";
    if (known) {
        auto [end, ec] = std::to_chars(text, text + sizeof text, code);
        (void)ec;
        label = std::string_view(text, static_cast<std::size_t>(end - text));
    }
    Impl& m = *impl_;
    series_of(m.rpc_error_counters, m.rpc_errors, Label{"chain", chain}, Label{"code", label})
        .Increment();
}

void Metrics::forget_upstream(std::string_view chain, std::string_view upstream) {
    const prom::Labels labels{{"chain", s(chain)}, {"upstream", s(upstream)}};
    const auto drop = [](prom::Family<prom::Gauge>& family, const prom::Labels& l) {
        if (family.Has(l)) family.Remove(&family.Add(l));
    };
    const auto with = [&](const char* key, const char* value) {
        prom::Labels l = labels;
        l[key] = value;
        return l;
    };
    Impl& m = *impl_;
    for (auto* family : {&m.upstream_up, &m.upstream_lag, &m.upstream_score, &m.upstream_head})
        drop(*family, labels);
    for (const char* state : kStates) drop(m.upstream_state, with("state", state));
    for (const char* state : kBreakerStates) drop(m.upstream_breaker_states, with("state", state));
}

void Metrics::count_transaction(std::string_view chain, std::string_view state) {
    impl_->transactions.Add({{"chain", s(chain)}, {"state", s(state)}}).Increment();
}

void Metrics::declare_chain(std::string_view chain, const std::vector<std::string_view>& raw_states,
                            const std::vector<std::string_view>& managed_states,
                            const std::vector<std::string>& managed_senders) {
    for (auto state : raw_states)
        impl_->transactions.Add({{"chain", s(chain)}, {"state", s(state)}});
    if (!managed_senders.empty())
        for (auto state : managed_states)
            impl_->managed.Add({{"chain", s(chain)}, {"state", s(state)}});
    impl_->reorgs.Add({{"chain", s(chain)}});
    impl_->reorg_depth.Add({{"chain", s(chain)}}, kDepthBuckets);
    series_of(impl_->stale_counters, impl_->stale, Label{"chain", chain});
    impl_->replacements.Add({{"chain", s(chain)}});
    for (const auto& sender : managed_senders) set_stuck_at_cap(chain, sender, 0);
}

void Metrics::declare_journal(const std::vector<std::string_view>& refusal_reasons) {
    for (auto reason : refusal_reasons) impl_->journal_refusals.Add({{"reason", s(reason)}});
}

void Metrics::count_reorg(std::string_view chain, std::uint64_t depth) {
    impl_->reorgs.Add({{"chain", s(chain)}}).Increment();
    impl_->reorg_depth.Add({{"chain", s(chain)}}, kDepthBuckets)
        .Observe(static_cast<double>(depth));
}

void Metrics::count_managed(std::string_view chain, std::string_view state) {
    impl_->managed.Add({{"chain", s(chain)}, {"state", s(state)}}).Increment();
}

void Metrics::count_approval(std::string_view chain, std::string_view held_by,
                             std::string_view outcome) {
    impl_->approvals.Add({{"chain", s(chain)}, {"held_by", s(held_by)}, {"outcome", s(outcome)}})
        .Increment();
}

void Metrics::set_stream_lag(std::string_view stream, double blocks) {
    impl_->stream_lag.Add({{"stream", s(stream)}}).Set(blocks);
}

void Metrics::count_stream_delivery(std::string_view stream, std::string_view outcome) {
    impl_->stream_deliveries.Add({{"stream", s(stream)}, {"outcome", s(outcome)}}).Increment();
}

void Metrics::forget_stream(std::string_view stream) {
    const prom::Labels labels{{"stream", s(stream)}};
    impl_->stream_lag.Remove(&impl_->stream_lag.Add(labels));
    impl_->stream_events.Remove(&impl_->stream_events.Add(labels));
    impl_->stream_reorgs.Remove(&impl_->stream_reorgs.Add(labels));
    for (const char* outcome : {"acknowledged", "failed"}) {
        prom::Labels with = labels;
        with["outcome"] = outcome;
        impl_->stream_deliveries.Remove(&impl_->stream_deliveries.Add(with));
    }
}

void Metrics::count_stream_reorg(std::string_view stream) {
    impl_->stream_reorgs.Add({{"stream", s(stream)}}).Increment();
}

void Metrics::count_stream_events(std::string_view stream, std::size_t events) {
    impl_->stream_events.Add({{"stream", s(stream)}}).Increment(static_cast<double>(events));
}

void Metrics::count_signing(std::string_view signer, std::string_view outcome) {
    impl_->signing.Add({{"signer", s(signer)}, {"outcome", s(outcome)}}).Increment();
}

void Metrics::set_signer_ready(std::string_view signer, bool ready) {
    impl_->signer_ready.Add({{"signer", s(signer)}}).Set(ready ? 1 : 0);
}

void Metrics::count_replacement(std::string_view chain) {
    impl_->replacements.Add({{"chain", s(chain)}}).Increment();
}

void Metrics::set_stuck_at_cap(std::string_view chain, std::string_view sender, double count) {
    impl_->stuck_at_cap.Add({{"chain", s(chain)}, {"sender", s(sender)}}).Set(count);
}

void Metrics::set_transactions_held(std::string_view chain, double count) {
    impl_->held.Add({{"chain", s(chain)}}).Set(count);
}

void Metrics::set_oldest_unfinished(std::string_view chain, std::int64_t created_ms) {
    impl_->oldest_unfinished.Add({{"chain", s(chain)}})
        .Set(static_cast<double>(created_ms) / 1000.0);
}

void Metrics::set_transactions_unfinalized(std::string_view chain, double count) {
    impl_->unfinalized.Add({{"chain", s(chain)}}).Set(count);
}

void Metrics::count_stale_answer(std::string_view chain) {
    Impl& m = *impl_;
    series_of(m.stale_counters, m.stale, Label{"chain", chain}).Increment();
}

void Metrics::count_cache(std::string_view chain, std::string_view method, bool hit) {
    Impl& m = *impl_;
    const std::string_view result = hit ? "hit" : "miss";
    series_of(m.cache_request_counters, m.cache_requests, Label{"chain", chain},
              Label{"method", method}, Label{"result", result})
        .Increment();
}

void Metrics::count_cache_eviction(std::string_view chain, std::string_view method) {
    Impl& m = *impl_;
    series_of(m.cache_eviction_counters, m.cache_evictions, Label{"chain", chain},
              Label{"method", method})
        .Increment();
}

void Metrics::count_cache_invalidations(std::string_view chain, std::size_t entries) {
    impl_->cache_invalidations.Add({{"chain", s(chain)}}).Increment(static_cast<double>(entries));
}

void Metrics::set_cache_size(std::string_view chain, double entries, double bytes) {
    impl_->cache_entries.Add({{"chain", s(chain)}}).Set(entries);
    impl_->cache_bytes.Add({{"chain", s(chain)}}).Set(bytes);
}

void Metrics::count_coalesced(std::string_view chain, std::string_view method) {
    Impl& m = *impl_;
    series_of(m.coalesced_counters, m.coalesced, Label{"chain", chain}, Label{"method", method})
        .Increment();
}

void Metrics::set_chain_head(std::string_view chain, double head) {
    impl_->chain_head.Add({{"chain", s(chain)}}).Set(head);
}

void Metrics::count_failover(std::string_view chain, std::string_view upstream,
                             std::string_view reason) {
    Impl& m = *impl_;
    series_of(m.failover_counters, m.failovers, Label{"chain", chain}, Label{"upstream", upstream},
              Label{"reason", reason})
        .Increment();
}

void Metrics::count_hedge(std::string_view chain) {
    Impl& m = *impl_;
    series_of(m.hedge_counters, m.hedges, Label{"chain", chain}).Increment();
}

void Metrics::count_wrong_chain(std::string_view chain, std::string_view upstream) {
    impl_->wrong_chain.Add({{"chain", s(chain)}, {"upstream", s(upstream)}}).Increment();
}

void Metrics::count_logs_split(std::string_view chain, std::size_t parts) {
    impl_->logs_split.Add({{"chain", s(chain)}}).Increment(static_cast<double>(parts));
}

void Metrics::count_auth(std::string_view listener, std::string_view outcome) {
    Impl& m = *impl_;
    series_of(m.auth_counters, m.auth, Label{"listener", listener}, Label{"outcome", outcome})
        .Increment();
}

void Metrics::set_jwks_keys(double keys) {
    impl_->jwks_keys.Set(keys);
}

void Metrics::set_jwks_age_source(std::function<double()> age_seconds) {
    std::lock_guard lock(impl_->scrape_mu);
    impl_->jwks_age_source = std::move(age_seconds);
}

void Metrics::count_jwks_fetch(std::string_view outcome) {
    impl_->jwks_fetches.Add({{"outcome", s(outcome)}}).Increment();
}

void Metrics::count_client_call(std::string_view client, std::string_view outcome,
                                std::size_t calls) {
    Impl& m = *impl_;
    series_of(m.client_counters, m.client_calls, Label{"client", client}, Label{"outcome", outcome})
        .Increment(static_cast<double>(calls));
}

void Metrics::count_connection_closed(std::string_view listener, std::string_view reason) {
    impl_->connections_closed.Add({{"listener", s(listener)}, {"reason", s(reason)}}).Increment();
}

void Metrics::set_open_connections(std::string_view listener, double count) {
    impl_->open_connections.Add({{"listener", s(listener)}}).Set(count);
}

void Metrics::set_journal_standby(bool standby) {
    impl_->journal_standby.Set(standby ? 1 : 0);
}

void Metrics::set_journal_up(bool up) {
    impl_->journal_up.Set(up ? 1 : 0);
}

void Metrics::count_journal_refusal(std::string_view reason) {
    impl_->journal_refusals.Add({{"reason", s(reason)}}).Increment();
}

void Metrics::config_loaded(bool ok, bool restart_required) {
    if (ok) {
        impl_->config_reloads.Add({{"outcome", "applied"}}).Increment();
        impl_->config_reload_time.Set(unix_seconds());
        impl_->config_restart_pending.Set(restart_required ? 1 : 0);
    } else {
        impl_->config_reloads.Add({{"outcome", "refused"}}).Increment();
    }
    impl_->config_reload_ok.Set(ok ? 1 : 0);
}

void Metrics::count_journal_reopen(std::string_view outcome) {
    impl_->journal_reopens.Add({{"outcome", s(outcome)}}).Increment();
}

void Metrics::count_journal_pruned(std::string_view kind, std::size_t count) {
    impl_->journal_pruned.Add({{"kind", s(kind)}}).Increment(static_cast<double>(count));
}

void Metrics::count_transaction_refusal(std::string_view chain, std::string_view reason) {
    impl_->transaction_refusals.Add({{"chain", s(chain)}, {"reason", s(reason)}}).Increment();
}

namespace {

// /proc/self/stat's fields after the command (which may hold spaces): state is the first.
std::vector<std::string> proc_stat_fields() {
    std::ifstream in("/proc/self/stat");
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::vector<std::string> fields;
    const auto close = text.rfind(')');
    if (close == std::string::npos) return fields;
    std::istringstream rest(text.substr(close + 1));
    for (std::string f; rest >> f;) fields.push_back(f);
    return fields;
}

}  // namespace

void Metrics::set_chain_tags(std::string_view chain, std::uint64_t safe, std::uint64_t finalized) {
    impl_->chain_safe.Add({{"chain", s(chain)}}).Set(static_cast<double>(safe));
    impl_->chain_finalized.Add({{"chain", s(chain)}}).Set(static_cast<double>(finalized));
}

void Metrics::observe_journal_commit(double seconds) {
    impl_->journal_commit.Observe(seconds);
}

std::string Metrics::render() const {
    {
        std::lock_guard lock(impl_->scrape_mu);
        if (impl_->jwks_age_source) impl_->jwks_age.Set(impl_->jwks_age_source());
        Impl& m = *impl_;
        // utime and stime are fields 14 and 15 of the stat line (11 and 12 after the state),
        // starttime 22 (19), in clock ticks; vsize 23 (20) in bytes, rss 24 (21) in pages.
        const auto f = proc_stat_fields();
        if (f.size() > 21) {
            const double tick = static_cast<double>(::sysconf(_SC_CLK_TCK));
            const double cpu = (std::stod(f[11]) + std::stod(f[12])) / tick;
            if (cpu > m.process_cpu_seen) m.process_cpu.Increment(cpu - m.process_cpu_seen);
            m.process_cpu_seen = std::max(cpu, m.process_cpu_seen);
            m.process_vsz.Set(std::stod(f[20]));
            m.process_rss.Set(std::stod(f[21]) * static_cast<double>(::sysconf(_SC_PAGESIZE)));
            // Boot time (btime of /proc/stat) plus the ticks since boot at its start.
            std::ifstream stat("/proc/stat");
            for (std::string key; stat >> key;) {
                if (key != "btime") continue;
                double boot = 0;
                stat >> boot;
                m.process_start.Set(boot + std::stod(f[19]) / tick);
                break;
            }
        }
        std::error_code ec;
        std::size_t fds = 0;
        for (auto it = std::filesystem::directory_iterator("/proc/self/fd", ec);
             !ec && it != std::filesystem::directory_iterator(); it.increment(ec))
            ++fds;
        m.process_fds.Set(static_cast<double>(fds));
        rlimit limit{};
        if (::getrlimit(RLIMIT_NOFILE, &limit) == 0)
            m.process_max_fds.Set(static_cast<double>(limit.rlim_cur));
    }
    std::ostringstream out;
    prom::TextSerializer().Serialize(out, impl_->registry.Collect());
    return out.str();
}

}  // namespace gateway::metrics
