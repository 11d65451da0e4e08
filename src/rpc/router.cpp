// Which member answers a method: the gateway's own answers, its transactions, and the nodes for
// everything else. Also the calls the gateway answers itself (eth_accounts, eth_chainId).

#include "handler_internal.hpp"

#include "gateway/eth/hex.hpp"

#include <fmt/format.h>
#include <boost/json/serialize.hpp>

#include <algorithm>
#include <array>
#include <utility>

namespace gateway::rpc {

RpcHandler::Route RpcHandler::route_of(std::string_view method) {
    // Sorted by name: a binary search. Every method the gateway answers other than by passing it
    // on is here; what a route does without the chain's part (no transaction manager, no
    // managed senders) is up to the route.
    static constexpr auto kRoutes = std::to_array<std::pair<std::string_view, Route>>({
        {"eth_accounts", &RpcHandler::accounts},
        {"eth_chainId", &RpcHandler::chain_id},
        {"eth_sendRawTransaction", &RpcHandler::raw_send},
        {"eth_sendRawTransactionSync", &RpcHandler::raw_send_sync},
        {"eth_sendTransaction", &RpcHandler::managed_send},
        {"eth_sendTransactionSync", &RpcHandler::managed_send},
        {"gateway_getTransaction", &RpcHandler::get_transaction},
        {"gateway_sendTransaction", &RpcHandler::managed_send},
    });
    static_assert(std::is_sorted(kRoutes.begin(), kRoutes.end(),
                                 [](const auto& a, const auto& b) { return a.first < b.first; }));
    const auto it = std::lower_bound(kRoutes.begin(), kRoutes.end(), method,
                                     [](const auto& r, std::string_view m) { return r.first < m; });
    if (it != kRoutes.end() && it->first == method) return it->second;
    return &RpcHandler::forward;
}

asio::awaitable<void> RpcHandler::accounts(CallContext& c) {
    const std::string& chain_name = c.route.pool->config().name;
    // The senders the gateway signs for on this chain that this client may use; a node's own
    // accounts are not offered through the gateway.
    json::array accounts;
    for (const auto& a : c.route.pool->config().accounts)
        if (auto bytes = eth::from_hex(a.address);
            bytes && bytes->size() == 20 && c.client.may_send_from(chain_name, a.address)) {
            eth::Address address;
            std::copy(bytes->begin(), bytes->end(), address.begin());
            accounts.emplace_back(eth::to_checksum_address(address));
        }
    c.out.response = jsonrpc::result_response(c.call.id, json::serialize(accounts));
    co_return;
}

asio::awaitable<void> RpcHandler::chain_id(CallContext& c) {
    // The configured chain id, which the health probes hold every upstream to.
    c.out.response = jsonrpc::result_response(
        c.call.id, fmt::format("\"0x{:x}\"", c.route.pool->config().chain_id));
    co_return;
}

}  // namespace gateway::rpc
