#include "gateway/txm/fees.hpp"

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/string.hpp>

#include <algorithm>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace gateway::txm {
namespace {

namespace json = boost::json;

constexpr std::uint64_t kMax = std::numeric_limits<std::uint64_t>::max();

std::uint64_t add(std::uint64_t a, std::uint64_t b) {
    return a > kMax - b ? kMax : a + b;
}

std::uint64_t mul(std::uint64_t a, std::uint64_t b) {
    return b != 0 && a > kMax / b ? kMax : a * b;
}

// ceil(x * percent / 100), saturating. Split as x = 100q + r so that nothing overflows before
// the saturating multiply: r * percent < 100 * 2^32.
std::uint64_t percent_up(std::uint64_t x, unsigned percent) {
    const std::uint64_t q = x / 100;
    const std::uint64_t r = x % 100;
    const std::uint64_t p = percent;
    return add(mul(q, p), (r * p + 99) / 100);
}

std::uint64_t cap(std::uint64_t value, std::uint64_t limit) {
    return limit == 0 ? value : std::min(value, limit);
}

// What is wrong with an eth_feeHistory result, said as the error of estimate_from_history.
std::string malformed(const std::string& what) {
    return "eth_feeHistory result: " + what;
}

// A JSON-RPC quantity ("0x1a"), or nullopt. Values past 64 bits saturate, like every fee here.
std::optional<std::uint64_t> quantity(const json::value& v) {
    if (v.is_uint64()) return v.get_uint64();
    if (v.is_int64() && v.get_int64() >= 0) return static_cast<std::uint64_t>(v.get_int64());
    if (!v.is_string()) return std::nullopt;
    const std::string_view s = v.get_string();
    if (s.size() < 3 || s[0] != '0' || (s[1] != 'x' && s[1] != 'X')) return std::nullopt;
    std::uint64_t out = 0;
    for (const char c : s.substr(2)) {
        unsigned digit = 0;
        if (c >= '0' && c <= '9') {
            digit = static_cast<unsigned>(c - '0');
        } else if (c >= 'a' && c <= 'f') {
            digit = static_cast<unsigned>(c - 'a' + 10);
        } else if (c >= 'A' && c <= 'F') {
            digit = static_cast<unsigned>(c - 'A' + 10);
        } else {
            return std::nullopt;
        }
        out = out > (kMax - digit) / 16 ? kMax : out * 16 + digit;
    }
    return out;
}

// Why `v`, found at `where`, is not a quantity.
std::string not_a_quantity(const json::value& v, const std::string& where) {
    if (!v.is_string()) return malformed(where + " is not a hex quantity");
    return malformed(where + " is not a hex quantity: \"" + std::string(v.get_string()) + "\"");
}

// The array at `key`, or nullptr with `why` set.
const json::array* array_field(const json::object& o, std::string_view key, std::string& why) {
    const json::value* v = o.if_contains(key);
    if (v == nullptr) {
        why = malformed("no " + std::string(key));
        return nullptr;
    }
    if (!v->is_array()) {
        why = malformed(std::string(key) + " is not an array");
        return nullptr;
    }
    return &v->get_array();
}

// The median, the upper one rounded up between two middles (a tip a little high is cheap; one
// a little low waits).
std::uint64_t median(std::vector<std::uint64_t> values) {
    std::sort(values.begin(), values.end());
    const std::size_t mid = values.size() / 2;
    if (values.size() % 2 == 1) return values[mid];
    const std::uint64_t low = values[mid - 1];
    const std::uint64_t high = values[mid];
    return low + (high - low + 1) / 2;
}

// Raises one fee by max(bump_percent %, 10 % + 1 wei) under `limit`; nullopt when the limit (or
// UINT64_MAX) leaves less than the 10 % + 1 wei minimum.
std::optional<std::uint64_t> raise(std::uint64_t fee, unsigned bump_percent, std::uint64_t limit) {
    const std::uint64_t minimum = add(percent_up(fee, 10), 1);
    const std::uint64_t wanted = std::max(minimum, percent_up(fee, bump_percent));
    const std::uint64_t raised = cap(add(fee, wanted), limit);
    if (raised < fee || raised - fee < minimum) return std::nullopt;
    return raised;
}

}  // namespace

boost::system::result<Fees, std::string> estimate_from_history(const json::value& fee_history,
                                                               std::uint64_t priority_floor,
                                                               const FeeCaps& caps) {
    if (!fee_history.is_object()) return malformed("not an object");
    const json::object& result = fee_history.get_object();

    std::string why;
    const json::array* base_fees = array_field(result, "baseFeePerGas", why);
    if (!base_fees) return why;
    if (base_fees->empty()) return malformed("baseFeePerGas is empty");
    const auto next_base_fee = quantity(base_fees->back());
    if (!next_base_fee) return not_a_quantity(base_fees->back(), "baseFeePerGas entry");

    // No reward at all means the call asked for no percentile: a caller's mistake. An empty
    // reward (a range of no blocks) leaves the floor as the tip.
    const json::array* rewards = array_field(result, "reward", why);
    if (!rewards) return why;
    std::vector<std::uint64_t> tips;
    tips.reserve(rewards->size());
    for (std::size_t i = 0; i < rewards->size(); ++i) {
        const std::string where = "reward[" + std::to_string(i) + "]";
        const json::value& reward = (*rewards)[i];
        if (!reward.is_array() || reward.get_array().empty())
            return malformed(where + " is not an array with a percentile");
        const auto tip = quantity(reward.get_array().front());
        if (!tip) return not_a_quantity(reward.get_array().front(), where + "[0]");
        tips.push_back(*tip);
    }

    Fees fees;
    const std::uint64_t tip = tips.empty() ? 0 : median(std::move(tips));
    fees.max_priority_fee_per_gas =
        cap(std::max(tip, priority_floor), caps.max_priority_fee_per_gas);
    fees.max_fee_per_gas =
        cap(add(mul(*next_base_fee, 2), fees.max_priority_fee_per_gas), caps.max_fee_per_gas);
    // Nodes refuse a tip above the max fee ("max priority fee per gas higher than max fee").
    fees.max_priority_fee_per_gas = std::min(fees.max_priority_fee_per_gas, fees.max_fee_per_gas);
    return fees;
}

Fees estimate_legacy(std::uint64_t gas_price, const FeeCaps& caps) {
    Fees fees;
    fees.legacy = true;
    fees.gas_price = cap(gas_price, caps.max_fee_per_gas);
    return fees;
}

Fees start_fees(const Fees& estimate, const std::optional<Fees>& client) {
    if (!client) return estimate;
    Fees out = estimate;
    if (estimate.legacy) {
        const std::uint64_t client_price =
            client->legacy ? client->gas_price : client->max_fee_per_gas;
        out.gas_price = std::max(estimate.gas_price, client_price);
        return out;
    }
    const std::uint64_t client_max = client->legacy ? client->gas_price : client->max_fee_per_gas;
    const std::uint64_t client_tip =
        client->legacy ? client->gas_price : client->max_priority_fee_per_gas;
    out.max_fee_per_gas = std::max(estimate.max_fee_per_gas, client_max);
    // Each side has tip <= max fee, so the larger tip is at most the larger max fee; the min
    // guards a client whose own fees broke that rule.
    out.max_priority_fee_per_gas =
        std::min(std::max(estimate.max_priority_fee_per_gas, client_tip), out.max_fee_per_gas);
    return out;
}

Bump bump(const Fees& current, unsigned bump_percent, const FeeCaps& caps) {
    Fees next = current;
    if (current.legacy) {
        const auto price = raise(current.gas_price, bump_percent, caps.max_fee_per_gas);
        if (!price) return {current, true};
        next.gas_price = *price;
        return {next, false};
    }
    const auto max_fee = raise(current.max_fee_per_gas, bump_percent, caps.max_fee_per_gas);
    // The tip may not pass the new max fee either.
    const std::uint64_t tip_limit = max_fee
                                        ? (caps.max_priority_fee_per_gas == 0
                                               ? *max_fee
                                               : std::min(*max_fee, caps.max_priority_fee_per_gas))
                                        : 0;
    const auto tip =
        max_fee ? raise(current.max_priority_fee_per_gas, bump_percent, tip_limit) : std::nullopt;
    if (!max_fee || !tip) return {current, true};
    next.max_fee_per_gas = *max_fee;
    next.max_priority_fee_per_gas = *tip;
    return {next, false};
}

std::uint64_t gas_limit(std::uint64_t estimate, unsigned margin_percent,
                        std::optional<std::uint64_t> client_gas) {
    if (client_gas && *client_gas >= estimate) return *client_gas;
    return add(estimate, percent_up(estimate, margin_percent));
}

}  // namespace gateway::txm
