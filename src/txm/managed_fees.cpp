// Managed senders: the fees the sender loop starts from, estimated from the chain's nodes
// (eth_feeHistory, or eth_gasPrice where the chain has no base fee).

#include "gateway/txm/managed.hpp"
#include "managed_internal.hpp"

#include "gateway/jsonrpc/methods.hpp"
#include "gateway/upstream/forwarder.hpp"

#include <boost/json/array.hpp>
#include <boost/json/parse.hpp>

#include <algorithm>

namespace gateway::txm {

asio::awaitable<std::optional<Fees>> ManagedSenders::estimate_fees(std::string& why) {
    // Caps are applied by the caller's sender; here the chain's.
    const FeeCaps caps{config_.tx.fee.max_fee_per_gas_gwei * kGwei,
                       config_.tx.fee.max_priority_fee_gwei * kGwei};
    constexpr auto kLegacyFor = std::chrono::minutes(5);
    bool legacy = false;
    {
        std::lock_guard lock(legacy_mu_);
        legacy = legacy_until_ && clock_.now() < *legacy_until_;
    }
    // Real time, not clock_: a deadline for the nodes' calls (asio timers, the HTTP client).
    const auto deadline = Clock::now() + std::chrono::seconds(10);
    if (!legacy) {
        json::array percentiles;
        percentiles.emplace_back(50);
        json::array params;
        params.emplace_back("0x5");
        params.emplace_back("latest");
        params.emplace_back(std::move(percentiles));
        upstream::Forwarded f =
            co_await pool_.forward("eth_feeHistory", std::move(params), false, deadline);
        if (f.outcome != upstream::Forwarded::Outcome::answered) {
            why = "waiting for a node to estimate fees: " + f.error.message;
            co_return std::nullopt;
        }
        // An error answer: legacy fees for this estimate; remembered only when no node serves
        // the method.
        bool no_base_fee = f.reply.is_error() && f.reply.error.code == -32601;
        if (!f.reply.is_error()) {
            const std::optional<json::value> v = f.result_json();
            const json::array* base = v && v->is_object()
                                          ? v->get_object().if_contains("baseFeePerGas")
                                                ? v->at("baseFeePerGas").if_array()
                                                : nullptr
                                          : nullptr;
            no_base_fee = !base || base->empty() ||
                          std::all_of(base->begin(), base->end(),
                                      [](const json::value& b) { return b == "0x0"; });
            if (!no_base_fee) {
                const std::uint64_t floor =
                    std::min<std::uint64_t>(kGwei, caps.max_priority_fee_per_gas);
                auto fees = estimate_from_history(*v, floor, caps);
                if (!fees) {
                    why = "the nodes' eth_feeHistory cannot be read: " + fees.error();
                    co_return std::nullopt;
                }
                std::lock_guard lock(legacy_mu_);
                legacy_until_.reset();
                co_return *fees;
            }
        }
        if (no_base_fee) {
            std::lock_guard lock(legacy_mu_);
            legacy_until_ = clock_.now() + kLegacyFor;
        }
    }
    json::array params;
    upstream::Forwarded f =
        co_await pool_.forward("eth_gasPrice", std::move(params), false, deadline);
    if (f.outcome != upstream::Forwarded::Outcome::answered || f.reply.is_error()) {
        why = "waiting for a node to estimate fees: " + f.failure();
        co_return std::nullopt;
    }
    const auto gp = f.result_quantity();
    if (!gp) {
        why = "the nodes' eth_gasPrice is not a quantity";
        co_return std::nullopt;
    }
    co_return estimate_legacy(*gp, caps);
}

}  // namespace gateway::txm
