// Managed senders: a request checked into a Request (see managed_request.hpp).

#include "gateway/txm/managed_request.hpp"

#include "gateway/eth/hex.hpp"
#include "gateway/jsonrpc/methods.hpp"

#include <fmt/format.h>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <algorithm>
#include <utility>

namespace gateway::txm {

namespace json = boost::json;

std::optional<eth::Address> parse_address(const json::value& v) {
    const json::string* s = v.if_string();
    if (!s || s->size() != 42) return std::nullopt;
    auto bytes = eth::from_hex(*s);
    if (!bytes || bytes->size() != 20) return std::nullopt;
    eth::Address a;
    std::copy(bytes->begin(), bytes->end(), a.begin());
    return a;
}

namespace {

// A quantity of up to 64 bits, as a hex string (or, leniently, a JSON integer).
std::optional<std::uint64_t> parse_u64(const json::value& v) {
    if (const auto* s = v.if_string()) return jsonrpc::parse_quantity(*s);
    if (v.is_uint64()) return v.get_uint64();
    if (v.is_int64() && v.get_int64() >= 0) return static_cast<std::uint64_t>(v.get_int64());
    return std::nullopt;
}

// A quantity of up to 256 bits, big-endian without leading zeros (empty is zero).
std::optional<eth::Bytes> parse_u256(const json::value& v) {
    if (auto small = v.is_string() ? std::nullopt : parse_u64(v)) {
        eth::Bytes out;
        for (int shift = 56; shift >= 0; shift -= 8)
            if (auto b = static_cast<std::uint8_t>(*small >> shift); b || !out.empty())
                out.push_back(b);
        return out;
    }
    const json::string* s = v.if_string();
    if (!s || s->size() < 3 || s->size() > 66 || (*s)[0] != '0' ||
        ((*s)[1] != 'x' && (*s)[1] != 'X'))
        return std::nullopt;
    std::string digits(s->subview(2));
    if (digits.size() % 2) digits.insert(digits.begin(), '0');
    auto bytes = eth::from_hex("0x" + digits);
    if (!bytes) return std::nullopt;
    auto first = std::find_if(bytes->begin(), bytes->end(), [](std::uint8_t b) { return b != 0; });
    return eth::Bytes(first, bytes->end());
}

}  // namespace

// The gas every transaction costs before it runs (a plain transfer's whole cost).
constexpr std::uint64_t kIntrinsicGas = 21'000;

// The transaction object of eth_sendTransaction, checked field by field; an error says which.
std::variant<Request, std::string> parse_request(const json::object& o, std::uint64_t chain_id) {
    Request r;
    const auto bad = [](std::string_view field, std::string_view what) {
        return fmt::format("invalid transaction object: '{}' {}", field, what);
    };
    const json::value* from = o.if_contains("from");
    if (!from) return std::string("invalid transaction object: 'from' is required");
    auto f = parse_address(*from);
    if (!f) return bad("from", "must be a 0x-prefixed 20-byte address");
    r.from = *f;
    if (const json::value* to = o.if_contains("to"); to && !to->is_null()) {
        auto t = parse_address(*to);
        if (!t) return bad("to", "must be a 0x-prefixed 20-byte address, or null for a creation");
        r.to = *t;
    }
    if (const json::value* v = o.if_contains("value"); v && !v->is_null()) {
        auto value = parse_u256(*v);
        if (!value) return bad("value", "must be a hex quantity of at most 256 bits");
        r.value = std::move(*value);
    }
    const json::value* data = o.if_contains("data");
    const json::value* input = o.if_contains("input");
    if (data && data->is_null()) data = nullptr;
    if (input && input->is_null()) input = nullptr;
    if (data && input && *data != *input)
        return std::string("invalid transaction object: 'data' and 'input' differ; send one");
    if (const json::value* d = input ? input : data) {
        const json::string* s = d->if_string();
        auto bytes = s ? eth::from_hex(*s) : std::nullopt;
        if (!bytes) return bad(input ? "input" : "data", "must be 0x-prefixed hex of even length");
        r.input = std::move(*bytes);
    }
    if (const json::value* g = o.if_contains("gas"); g && !g->is_null()) {
        r.gas = parse_u64(*g);
        if (!r.gas) return bad("gas", "must be a hex quantity of at most 64 bits");
        // Below what any transaction costs, no node takes it (and no estimate replaces it).
        if (*r.gas < kIntrinsicGas)
            return bad("gas", "must be at least 0x5208 (21000), what any transaction costs");
    }
    std::optional<std::uint64_t> gas_price, max_fee, tip;
    for (auto [name, out] : {std::pair{"gasPrice", &gas_price}, std::pair{"maxFeePerGas", &max_fee},
                             std::pair{"maxPriorityFeePerGas", &tip}}) {
        const json::value* v = o.if_contains(name);
        if (!v || v->is_null()) continue;
        *out = parse_u64(*v);
        if (!*out) return bad(name, "must be a hex quantity of at most 64 bits");
    }
    if (gas_price && (max_fee || tip))
        return std::string(
            "invalid transaction object: both 'gasPrice' and 'maxFeePerGas'/"
            "'maxPriorityFeePerGas'; send one kind of fee");
    if (gas_price) r.client_fees = Fees{0, 0, *gas_price, true};
    if (max_fee || tip) r.client_fees = Fees{max_fee.value_or(0), tip.value_or(0), 0, false};
    if (const json::value* c = o.if_contains("chainId"); c && !c->is_null()) {
        auto id = parse_u64(*c);
        if (!id) return bad("chainId", "must be a hex quantity");
        if (*id != chain_id)
            return fmt::format(
                "invalid transaction object: chainId {} is not this chain's ({}); send it to "
                "that chain's endpoint",
                *id, chain_id);
    }
    if (const json::value* t = o.if_contains("type"); t && !t->is_null()) {
        auto type = parse_u64(*t);
        if (!type || (*type != 0 && *type != 2))
            return bad("type",
                       "must be 0x0 or 0x2: managed senders send legacy or EIP-1559 "
                       "transactions");
    }
    if (const json::value* al = o.if_contains("accessList");
        al && !(al->is_null() || (al->is_array() && al->get_array().empty())))
        return std::string(
            "invalid transaction object: access lists are not supported for managed senders");
    for (const char* unsupported :
         {"blobVersionedHashes", "maxFeePerBlobGas", "blobs", "authorizationList"})
        if (const json::value* v = o.if_contains(unsupported); v && !v->is_null())
            return fmt::format(
                "invalid transaction object: '{}' is not supported for managed senders",
                unsupported);
    // 'nonce' is ignored: the gateway's nonce manager owns the nonce of a managed sender.
    if (const json::value* fills = o.if_contains(kFillsField); fills && fills->is_string())
        r.fills = std::string(fills->get_string());
    return r;
}

// A journaled request, parsed again (after a restart, for a retry).
std::variant<Request, std::string> parse_stored(const std::string& text, std::uint64_t chain_id) {
    json::error_code ec;
    json::value v = json::parse(text, ec);
    if (ec || !v.is_object()) return std::string("its request is not a JSON object");
    return parse_request(v.get_object(), chain_id);
}

// The request of a zero-value self-send that fills the nonce of `dead`, with fees at least
// `outbid` (the dead one's, raised: an attempt of it may still be pending somewhere).
std::string filler_request(const std::string& sender, const std::string& dead,
                           const std::optional<Fees>& outbid) {
    json::object o;
    o["from"] = sender;
    o["to"] = sender;
    o["value"] = "0x0";
    o[kFillsField] = dead;
    if (outbid && outbid->legacy) o["gasPrice"] = eth::to_quantity(outbid->gas_price);
    if (outbid && !outbid->legacy) {
        o["maxFeePerGas"] = eth::to_quantity(outbid->max_fee_per_gas);
        o["maxPriorityFeePerGas"] = eth::to_quantity(outbid->max_priority_fee_per_gas);
    }
    return json::serialize(o);
}

}  // namespace gateway::txm
