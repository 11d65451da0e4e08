#include "gateway/txm/nonce_proof.hpp"

#include "gateway/jsonrpc/methods.hpp"

#include <fmt/format.h>
#include <boost/json/parse.hpp>

#include <algorithm>
#include <chrono>
#include <optional>

namespace gateway::txm {

namespace asio = boost::asio;
namespace json = boost::json;
using Clock = std::chrono::steady_clock;

namespace {

// The sender's transaction count as of `block`, from a node at or above `head`.
asio::awaitable<std::optional<std::uint64_t>> count_at(upstream::Forwarder& pool,
                                                       const std::string& sender,
                                                       std::uint64_t block, std::uint64_t head) {
    json::array params;
    params.emplace_back(sender);
    params.emplace_back(fmt::format("0x{:x}", block));
    auto v = co_await read_at(pool, "eth_getTransactionCount", std::move(params), head);
    if (!v || !v->is_string()) co_return std::nullopt;
    co_return jsonrpc::parse_quantity(v->get_string());
}

}  // namespace

asio::awaitable<std::optional<json::value>> read_at(upstream::Forwarder& pool, const char* method,
                                                    json::array params, std::uint64_t min_block) {
    // Real time, not clock_: a deadline for the nodes' call (asio timers, the HTTP client).
    upstream::Forwarded f = co_await pool.forward_at_least(method, std::move(params), min_block,
                                                           Clock::now() + std::chrono::seconds(10));
    co_return f.result_json();
}

asio::awaitable<NonceUse> nonce_use(upstream::Forwarder& pool, const std::string& sender,
                                    std::uint64_t nonce, const std::vector<std::string>& hashes,
                                    unsigned confirmations) {
    NonceUse out;
    const std::optional<std::uint64_t> head = pool.head();
    if (!head) co_return out;
    const auto at_head = co_await count_at(pool, sender, *head, *head);
    if (!at_head) co_return out;
    if (*at_head <= nonce) {
        out.kind = NonceUse::Kind::unused;
        co_return out;
    }
    // Used at the head. One of ours? A receipt from a node at the head is the chain's word.
    for (const auto& hash : hashes) {
        json::array params;
        params.emplace_back(hash);
        auto receipt =
            co_await read_at(pool, "eth_getTransactionReceipt", std::move(params), *head);
        if (!receipt) co_return out;  // cannot tell now
        if (receipt->is_object()) {
            out.kind = NonceUse::Kind::ours;
            out.hash = hash;
            out.receipt = std::move(*receipt);
            co_return out;
        }
    }
    // Another's, once the use is `confirmations` deep (a reorg may still undo a shallower one).
    const std::uint64_t depth = std::max(1u, confirmations) - 1;
    if (*head < depth) co_return out;
    const std::uint64_t deep = *head - depth;
    if (deep != *head) {
        const auto then = co_await count_at(pool, sender, deep, *head);
        if (!then || *then <= nonce) co_return out;  // not deep enough yet: asked again later
    }
    out.kind = NonceUse::Kind::another;
    out.seen_at = deep;
    co_return out;
}

}  // namespace gateway::txm
