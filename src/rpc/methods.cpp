#include "gateway/rpc/methods.hpp"

#include <algorithm>
#include <array>

namespace gateway::rpc {
namespace {

struct Method {
    std::string_view name;
    MethodKind kind;
};

using enum MethodKind;

// Sorted by name, so lookups are a binary search.
constexpr auto kMethods = std::to_array<Method>({
    {"debug_getBadBlocks", read},
    {"debug_getRawBlock", read},
    {"debug_getRawHeader", read},
    {"debug_getRawReceipts", read},
    {"debug_getRawTransaction", read},
    {"debug_traceBlock", read},
    {"debug_traceBlockByHash", read},
    {"debug_traceBlockByNumber", read},
    {"debug_traceCall", read},
    {"debug_traceCallMany", read},
    {"debug_traceTransaction", read},
    {"eth_accounts", read},
    {"eth_blobBaseFee", read},
    {"eth_blockNumber", read},
    {"eth_call", read},
    {"eth_chainId", local},
    {"eth_coinbase", read},
    {"eth_createAccessList", read},
    {"eth_estimateGas", read},
    {"eth_feeHistory", read},
    {"eth_gasPrice", read},
    {"eth_getBalance", read},
    {"eth_getBlockByHash", read},
    {"eth_getBlockByNumber", read},
    {"eth_getBlockReceipts", read},
    {"eth_getBlockTransactionCountByHash", read},
    {"eth_getBlockTransactionCountByNumber", read},
    {"eth_getCode", read},
    {"eth_getFilterChanges", read},
    {"eth_getFilterLogs", read},
    {"eth_getHeaderByHash", read},
    {"eth_getHeaderByNumber", read},
    {"eth_getLogs", read},
    {"eth_getProof", read},
    {"eth_getRawTransactionByHash", read},
    {"eth_getStorageAt", read},
    {"eth_getTransactionByBlockHashAndIndex", read},
    {"eth_getTransactionByBlockNumberAndIndex", read},
    {"eth_getTransactionByHash", read},
    {"eth_getTransactionCount", read},
    {"eth_getTransactionReceipt", read},
    {"eth_getUncleByBlockHashAndIndex", read},
    {"eth_getUncleByBlockNumberAndIndex", read},
    {"eth_getUncleCountByBlockHash", read},
    {"eth_getUncleCountByBlockNumber", read},
    {"eth_maxPriorityFeePerGas", read},
    {"eth_mining", read},
    {"eth_newBlockFilter", read},
    {"eth_newFilter", read},
    {"eth_newPendingTransactionFilter", read},
    {"eth_protocolVersion", read},
    {"eth_sendBundle", write},
    {"eth_sendPrivateTransaction", write},
    {"eth_sendRawTransaction", write},
    {"eth_sendRawTransactionConditional", write},
    {"eth_sendRawTransactionSync", write},
    {"eth_sendTransaction", write},
    {"eth_sign", read},
    {"eth_signTransaction", read},
    {"eth_signTypedData_v4", read},
    {"eth_simulateV1", read},
    {"eth_submitHashrate", write},
    {"eth_submitWork", write},
    {"eth_subscribe", read},
    {"eth_syncing", read},
    {"eth_uninstallFilter", read},
    {"eth_unsubscribe", read},
    {"net_listening", read},
    {"net_peerCount", read},
    {"net_version", read},
    {"personal_sendTransaction", write},
    {"trace_block", read},
    {"trace_call", read},
    {"trace_filter", read},
    {"trace_get", read},
    {"trace_replayBlockTransactions", read},
    {"trace_replayTransaction", read},
    {"trace_transaction", read},
    {"txpool_content", read},
    {"txpool_inspect", read},
    {"txpool_status", read},
    {"web3_clientVersion", read},
    {"web3_sha3", read},
});

static_assert(std::is_sorted(kMethods.begin(), kMethods.end(),
                             [](const Method& a, const Method& b) { return a.name < b.name; }),
              "kMethods must stay sorted by name");

const Method* find(std::string_view name) {
    auto it = std::lower_bound(kMethods.begin(), kMethods.end(), name,
                               [](const Method& m, std::string_view n) { return m.name < n; });
    return it != kMethods.end() && it->name == name ? &*it : nullptr;
}

}  // namespace

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

}  // namespace gateway::rpc
