#pragma once
// Fees for the transactions the gateway sends for managed senders: the first estimate (from
// eth_feeHistory or eth_gasPrice), the client's own fees as a floor, replacement bumps that
// nodes accept, and the gas limit. Pure functions; amounts in wei.
//
// Every sum and product saturates at UINT64_MAX (18.4 ether per gas, far above any real fee)
// instead of wrapping, so no input can turn a large fee into a tiny one.

#include <boost/json/value.hpp>
#include <boost/system/result.hpp>

#include <cstdint>
#include <optional>
#include <string>

namespace gateway::txm {

/// The fees of one transaction. EIP-1559 (legacy false): max_fee_per_gas and
/// max_priority_fee_per_gas, gas_price 0. Legacy (legacy true): gas_price, the other two 0.
struct Fees {
    std::uint64_t max_fee_per_gas = 0, max_priority_fee_per_gas = 0, gas_price = 0;
    bool legacy = false;

    friend bool operator==(const Fees&, const Fees&) = default;
};

/// The most an operator lets a managed sender pay per gas; 0 means no cap. A legacy gas price is
/// capped by max_fee_per_gas (it is the most paid per gas, as a max fee is).
struct FeeCaps {
    std::uint64_t max_fee_per_gas = 0, max_priority_fee_per_gas = 0;
};

/// EIP-1559 fees from an eth_feeHistory result ({"baseFeePerGas": [...], "reward": [[...], ...],
/// ...}), asked for with one reward percentile (with several, the first column is used). The tip
/// is the median of the reward column, at least `priority_floor`; the max fee is twice the next
/// block's base fee (the last baseFeePerGas entry) plus the tip, so the transaction stays
/// includable through several full blocks. Both are capped, and the tip never exceeds the max
/// fee. A result of another shape (no baseFeePerGas, no reward, an entry that is not a hex
/// quantity) is an error saying what is wrong.
boost::system::result<Fees, std::string> estimate_from_history(
    const boost::json::value& fee_history, std::uint64_t priority_floor, const FeeCaps& caps);

/// Legacy fees from eth_gasPrice, capped.
Fees estimate_legacy(std::uint64_t gas_price, const FeeCaps& caps);

/// The fees to send first: field by field, the client's fees where they are above the estimate,
/// the estimate elsewhere. The result has the estimate's type; a client's legacy gas price counts
/// as both its max fee and its tip, a client's max fee as its gas price. Not capped: a client
/// that pays more than the caps asked to.
Fees start_fees(const Fees& estimate, const std::optional<Fees>& client);

/// A replacement's fees, or the verdict that the caps leave no room for one.
struct Bump {
    Fees fees;    ///< the raised fees; the current ones when at_cap
    bool at_cap;  ///< the caps (or UINT64_MAX) leave less than the minimum raise
};

/// Raises each fee (both EIP-1559 fields, or the gas price) by the larger of bump_percent % and
/// 10 % + 1 wei, rounding up: geth and Besu refuse a replacement that raises either field by
/// less than 10 % ("replacement transaction underpriced"), and the extra wei keeps clear of
/// their rounding. Capped; when a capped field would rise by less than that minimum, the bump is
/// useless, so the result keeps `current` and says at_cap.
Bump bump(const Fees& current, unsigned bump_percent, const FeeCaps& caps);

/// The gas limit to send: the estimate plus margin_percent %, rounded up; or the client's gas
/// when it is at least the estimate (the client may know of a path the estimate did not take).
std::uint64_t gas_limit(std::uint64_t estimate, unsigned margin_percent,
                        std::optional<std::uint64_t> client_gas);

}  // namespace gateway::txm
