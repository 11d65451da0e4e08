#pragma once
// Prometheus metrics of the gateway. Label values are bounded: chains and upstreams come from the
// configuration, methods from a fixed table (anything else is "other"), outcomes from fixed sets.

#include <memory>
#include <string>
#include <string_view>

namespace gateway::metrics {

/// Thread-safe; every method may be called from any thread.
class Metrics {
public:
    Metrics();
    ~Metrics();
    Metrics(const Metrics&) = delete;
    Metrics& operator=(const Metrics&) = delete;

    /// A call answered to a client. `method` must already be a bounded label (rpc::method_label).
    /// `outcome`: ok, rpc_error, invalid, unavailable, rejected.
    void observe_call(std::string_view chain, std::string_view method, std::string_view outcome,
                      double seconds);

    /// An HTTP response written by a listener ("rpc" or "admin").
    void observe_http(std::string_view listener, unsigned status);

    /// HTTP requests being served by the RPC listener.
    void add_in_flight(int delta);

    /// One attempt against an upstream; `error` is empty on success (a JSON-RPC error answer is a
    /// success for the transport) or the error kind (connect_failed, timeout, http_5xx, ...).
    void observe_upstream(std::string_view chain, std::string_view upstream, std::string_view error,
                          double seconds);

    /// Whether the pool currently sends calls to an upstream.
    void set_upstream_up(std::string_view chain, std::string_view upstream, bool up);

    /// The Prometheus text exposition of every metric.
    std::string render() const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace gateway::metrics
