#include "gateway/metrics/metrics.hpp"

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <sstream>

namespace gateway::metrics {
namespace prom = prometheus;

namespace {
const prom::Histogram::BucketBoundaries kLatencyBuckets{
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};
std::string s(std::string_view v) {
    return std::string(v);
}
}  // namespace

struct Metrics::Impl {
    std::shared_ptr<prom::Registry> registry = std::make_shared<prom::Registry>();

    prom::Family<prom::Counter>& requests =
        prom::BuildCounter()
            .Name("gateway_requests_total")
            .Help("JSON-RPC calls answered to clients, by chain, method and outcome")
            .Register(*registry);
    prom::Family<prom::Histogram>& request_seconds =
        prom::BuildHistogram()
            .Name("gateway_request_duration_seconds")
            .Help("Time to answer one JSON-RPC call, by chain and method")
            .Register(*registry);
    prom::Family<prom::Counter>& http =
        prom::BuildCounter()
            .Name("gateway_http_responses_total")
            .Help("HTTP responses written, by listener and status code")
            .Register(*registry);
    prom::Family<prom::Gauge>& in_flight_family =
        prom::BuildGauge()
            .Name("gateway_in_flight_requests")
            .Help("HTTP requests being served by the RPC listener")
            .Register(*registry);
    prom::Gauge& in_flight = in_flight_family.Add({});
    prom::Family<prom::Counter>& upstream_requests =
        prom::BuildCounter()
            .Name("gateway_upstream_requests_total")
            .Help("Requests sent to upstreams, by chain and upstream")
            .Register(*registry);
    prom::Family<prom::Counter>& upstream_errors =
        prom::BuildCounter()
            .Name("gateway_upstream_errors_total")
            .Help("Failed requests to upstreams, by chain, upstream and kind of failure")
            .Register(*registry);
    prom::Family<prom::Histogram>& upstream_seconds =
        prom::BuildHistogram()
            .Name("gateway_upstream_request_duration_seconds")
            .Help("Time of one request to an upstream, by chain and upstream")
            .Register(*registry);
    prom::Family<prom::Gauge>& upstream_up =
        prom::BuildGauge()
            .Name("gateway_upstream_up")
            .Help("1 when the pool sends calls to the upstream, 0 when it is down or excluded")
            .Register(*registry);
    prom::Family<prom::Gauge>& build_info =
        prom::BuildGauge()
            .Name("gateway_build_info")
            .Help("Always 1; the version label says which build runs")
            .Register(*registry);
};

Metrics::Metrics() : impl_(std::make_unique<Impl>()) {
    impl_->build_info.Add({{"version", GATEWAY_VERSION}}).Set(1);
}

Metrics::~Metrics() = default;

void Metrics::observe_call(std::string_view chain, std::string_view method,
                           std::string_view outcome, double seconds) {
    impl_->requests.Add({{"chain", s(chain)}, {"method", s(method)}, {"outcome", s(outcome)}})
        .Increment();
    impl_->request_seconds.Add({{"chain", s(chain)}, {"method", s(method)}}, kLatencyBuckets)
        .Observe(seconds);
}

void Metrics::observe_http(std::string_view listener, unsigned status) {
    impl_->http.Add({{"listener", s(listener)}, {"code", std::to_string(status)}}).Increment();
}

void Metrics::add_in_flight(int delta) {
    impl_->in_flight.Increment(delta);
}

void Metrics::observe_upstream(std::string_view chain, std::string_view upstream,
                               std::string_view error, double seconds) {
    impl_->upstream_requests.Add({{"chain", s(chain)}, {"upstream", s(upstream)}}).Increment();
    impl_->upstream_seconds.Add({{"chain", s(chain)}, {"upstream", s(upstream)}}, kLatencyBuckets)
        .Observe(seconds);
    if (!error.empty())
        impl_->upstream_errors
            .Add({{"chain", s(chain)}, {"upstream", s(upstream)}, {"kind", s(error)}})
            .Increment();
}

void Metrics::set_upstream_up(std::string_view chain, std::string_view upstream, bool up) {
    impl_->upstream_up.Add({{"chain", s(chain)}, {"upstream", s(upstream)}}).Set(up ? 1 : 0);
}

std::string Metrics::render() const {
    std::ostringstream out;
    prom::TextSerializer().Serialize(out, impl_->registry->Collect());
    return out.str();
}

}  // namespace gateway::metrics
