#include "gateway/jsonrpc/methods.hpp"

#include "gateway/util/text.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <charconv>

namespace gateway::jsonrpc {
namespace {

// Where a method's block is: the index of its block parameter, or one of these.
constexpr int kNoState = -2;    // needs no chain state
constexpr int kHead = -1;       // needs the head, has no block parameter
constexpr int kLogFilter = -3;  // eth_getLogs: a filter object with fromBlock/toBlock/blockHash

struct Method {
    std::string_view name;
    MethodKind kind;
    int block;
};

using enum MethodKind;

// Sorted by name, so lookups are a binary search.
constexpr auto kMethods = std::to_array<Method>({
    {"debug_getBadBlocks", read, kHead},
    {"debug_getRawBlock", read, 0},
    {"debug_getRawHeader", read, 0},
    {"debug_getRawReceipts", read, 0},
    {"debug_getRawTransaction", read, kHead},
    {"debug_traceBlock", read, kNoState},
    {"debug_traceBlockByHash", read, kHead},
    {"debug_traceBlockByNumber", read, 0},
    {"debug_traceCall", read, 1},
    {"debug_traceCallMany", read, kHead},
    {"debug_traceTransaction", read, kHead},
    {"eth_accounts", local, kNoState},  // the chain's managed senders, never a node's accounts
    {"eth_blobBaseFee", read, kHead},
    {"eth_blockNumber", read, kHead},
    {"eth_call", read, 1},
    {"eth_chainId", local, kNoState},
    {"eth_coinbase", read, kNoState},
    {"eth_createAccessList", read, 1},
    {"eth_estimateGas", read, 1},
    {"eth_feeHistory", read, 1},
    {"eth_gasPrice", read, kHead},
    {"eth_getBalance", read, 1},
    {"eth_getBlockByHash", read, kHead},
    {"eth_getBlockByNumber", read, 0},
    {"eth_getBlockReceipts", read, 0},
    {"eth_getBlockTransactionCountByHash", read, kHead},
    {"eth_getBlockTransactionCountByNumber", read, 0},
    {"eth_getCode", read, 1},
    {"eth_getFilterChanges", read, kHead},
    {"eth_getFilterLogs", read, kHead},
    {"eth_getHeaderByHash", read, kHead},
    {"eth_getHeaderByNumber", read, 0},
    {"eth_getLogs", read, kLogFilter},
    {"eth_getProof", read, 2},
    {"eth_getRawTransactionByHash", read, kHead},
    {"eth_getStorageAt", read, 2},
    {"eth_getTransactionByBlockHashAndIndex", read, kHead},
    {"eth_getTransactionByBlockNumberAndIndex", read, 0},
    {"eth_getTransactionByHash", read, kHead},
    {"eth_getTransactionCount", read, 1},
    {"eth_getTransactionReceipt", read, kHead},
    {"eth_getUncleByBlockHashAndIndex", read, kHead},
    {"eth_getUncleByBlockNumberAndIndex", read, 0},
    {"eth_getUncleCountByBlockHash", read, kHead},
    {"eth_getUncleCountByBlockNumber", read, 0},
    {"eth_maxPriorityFeePerGas", read, kHead},
    {"eth_mining", read, kNoState},
    {"eth_newBlockFilter", read, kHead},
    {"eth_newFilter", read, kHead},
    {"eth_newPendingTransactionFilter", read, kHead},
    {"eth_protocolVersion", read, kNoState},
    {"eth_sendBundle", write, kHead},
    {"eth_sendPrivateTransaction", write, kHead},
    {"eth_sendRawTransaction", write, kHead},
    {"eth_sendRawTransactionConditional", write, kHead},
    {"eth_sendRawTransactionSync", write, kHead},
    {"eth_sendTransaction", write, kHead},
    {"eth_sendTransactionSync", write, kHead},
    {"eth_sign", read, kNoState},
    {"eth_signTransaction", read, kNoState},
    {"eth_signTypedData_v4", read, kNoState},
    {"eth_simulateV1", read, 1},
    {"eth_submitHashrate", write, kHead},
    {"eth_submitWork", write, kHead},
    {"eth_subscribe", read, kHead},
    {"eth_syncing", read, kNoState},
    {"eth_uninstallFilter", read, kHead},
    {"eth_unsubscribe", read, kHead},
    {"net_listening", read, kNoState},
    {"net_peerCount", read, kNoState},
    {"net_version", read, kNoState},
    {"personal_sendTransaction", write, kHead},
    {"trace_block", read, 0},
    {"trace_call", read, 2},
    {"trace_filter", read, kHead},
    {"trace_get", read, kHead},
    {"trace_replayBlockTransactions", read, 0},
    {"trace_replayTransaction", read, kHead},
    {"trace_transaction", read, kHead},
    {"txpool_content", read, kNoState},
    {"txpool_inspect", read, kNoState},
    {"txpool_status", read, kNoState},
    {"web3_clientVersion", read, kNoState},
    {"web3_sha3", read, kNoState},
});

static_assert(std::is_sorted(kMethods.begin(), kMethods.end(),
                             [](const Method& a, const Method& b) { return a.name < b.name; }),
              "kMethods must stay sorted by name");

const Method* find(std::string_view name) {
    // A thread asks about the same method several times for each call (its kind, its label,
    // its block), and a batch's calls mostly share one: the last one found is looked at first.
    thread_local const Method* last = nullptr;
    if (last && last->name == name) return last;
    auto it = std::lower_bound(kMethods.begin(), kMethods.end(), name,
                               [](const Method& m, std::string_view n) { return m.name < n; });
    if (it == kMethods.end() || it->name != name) return nullptr;
    last = &*it;
    return last;
}

// A block parameter: a tag, a quantity, or an EIP-1898 object.
BlockNeed read_block(const boost::json::value* v) {
    using Kind = BlockNeed::Kind;
    if (!v || v->is_null()) return {Kind::latest};  // absent: nodes default to latest
    if (const auto* s = v->if_string()) {
        if (*s == "earliest") return {Kind::number, 0};
        if (auto n = parse_quantity(*s)) return {Kind::number, *n};
        return {Kind::latest};  // latest, pending, safe, finalized
    }
    if (const auto* o = v->if_object()) {
        if (o->contains("blockHash")) return {Kind::hash};
        if (const auto* n = o->if_contains("blockNumber")) return read_block(n);
    }
    return {Kind::latest};
}

BlockNeed read_log_filter(const boost::json::value& params) {
    using Kind = BlockNeed::Kind;
    const auto* a = params.if_array();
    const auto* filter = a && !a->empty() ? a->at(0).if_object() : nullptr;
    if (!filter) return {Kind::latest};
    if (filter->contains("blockHash")) return {Kind::hash};
    // The range ends at toBlock; a missing one means latest.
    const BlockNeed to = read_block(filter->if_contains("toBlock"));
    const BlockNeed from = read_block(filter->if_contains("fromBlock"));
    if (to.kind == Kind::number && from.kind == Kind::number)
        return {Kind::number, std::max(to.number, from.number)};
    return {Kind::latest};
}

}  // namespace

std::optional<std::uint64_t> parse_quantity(std::string_view text) {
    if (text.size() < 3 || text.size() > 18 || text[0] != '0' || (text[1] != 'x' && text[1] != 'X'))
        return std::nullopt;
    std::uint64_t value = 0;
    auto [end, ec] = std::from_chars(text.data() + 2, text.data() + text.size(), value, 16);
    if (ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
    return value;
}

namespace {

// The sends and signing methods the gateway answers itself (src/rpc/router.cpp routes them to the
// journal and the managed senders); the name pattern below would refuse them otherwise.
constexpr std::array<std::string_view, 5> kRoutedSends{
    "eth_sendRawTransaction", "eth_sendRawTransactionSync", "eth_sendTransaction",
    "eth_sendTransactionSync", "gateway_sendTransaction"};

// Without a copy: every call is checked, and a method name is as long as a client makes it.
bool starts_with_ascii_nocase(std::string_view s, std::string_view lower_prefix) {
    return s.size() >= lower_prefix.size() &&
           std::equal(lower_prefix.begin(), lower_prefix.end(), s.begin(),
                      [](char p, char c) { return p == util::ascii_lower(c); });
}

bool contains_ascii_nocase(std::string_view s, std::string_view lower_part) {
    for (std::size_t i = 0; i + lower_part.size() <= s.size(); ++i)
        if (starts_with_ascii_nocase(s.substr(i), lower_part)) return true;
    return false;
}

}  // namespace

std::optional<std::string> unserved_reason(std::string_view method) {
    if (std::find(kRoutedSends.begin(), kRoutedSends.end(), method) != kRoutedSends.end())
        return std::nullopt;
    // Deny by default: new send and signing methods keep appearing (eth_sendMegabundle,
    // eth_sendUserOperation, vendors' *_submitBundle), and an unknown method is forwarded as a
    // write, past the journal and the chain-id check. So a name that, after its namespace
    // ("eth_"), starts with send or sign, or that mentions a bundle anywhere, is refused unless
    // the gateway routes it itself (above).
    const std::size_t underscore = method.find('_');
    const std::string_view local_name =
        underscore == std::string_view::npos ? method : method.substr(underscore + 1);
    const bool signs = starts_with_ascii_nocase(local_name, "sign");
    // Cancelling a private transaction is the one send-style name the pattern does not catch.
    const bool sends = starts_with_ascii_nocase(local_name, "send") ||
                       contains_ascii_nocase(method, "bundle") ||
                       method == "eth_cancelPrivateTransaction";
    // A node's own accounts, whatever the method: personal_* (unlock, sign, send), wallet_*
    // (EIP-3326 and kin), and dev nodes' impersonation, which lets any address send.
    const bool node_accounts = method.starts_with("personal_") || method.starts_with("wallet_") ||
                               method.ends_with("_impersonateAccount") ||
                               method.ends_with("_autoImpersonateAccount") ||
                               method == "eth_sendUnsignedTransaction";
    // A client names the method: quoted at most 64 bytes long, as the method lists quote it.
    const std::string_view quoted = util::utf8_prefix(method, 64);
    if (node_accounts || signs)
        return fmt::format(
            "{} is not served: a node would use its own accounts (unlocked or impersonated) for "
            "anyone who asks. Sign in the client, or use eth_sendTransaction from a managed "
            "sender (eth_accounts lists the ones you may use)",
            quoted);
    if (sends)
        return fmt::format(
            "{} is not served: the gateway keeps and sends every transaction itself, after "
            "checking it; use eth_sendRawTransaction (or eth_sendRawTransactionSync)",
            quoted);
    return std::nullopt;
}

MethodKind method_kind(std::string_view method) {
    const Method* m = find(method);
    // A method the table does not know may change state (anvil_mine, evm_increaseTime, vendor
    // bundle methods): it is never sent twice.
    return m ? m->kind : MethodKind::write;
}

std::string_view method_label(std::string_view method) {
    const Method* m = find(method);
    return m ? m->name : std::string_view("other");
}

std::optional<std::size_t> block_param_index(std::string_view method) {
    const Method* m = find(method);
    if (!m || m->block < 0) return std::nullopt;
    return static_cast<std::size_t>(m->block);
}

BlockNeed block_need(std::string_view method, const boost::json::value& params) {
    const Method* m = find(method);
    if (!m || m->block == kHead) return {BlockNeed::Kind::latest};
    if (m->block == kNoState) return {BlockNeed::Kind::none};
    if (m->block == kLogFilter) return read_log_filter(params);
    const auto* a = params.if_array();
    const auto index = static_cast<std::size_t>(m->block);
    return read_block(a && a->size() > index ? &a->at(index) : nullptr);
}

}  // namespace gateway::jsonrpc
