#include "node_calls.hpp"

#include "gateway/jsonrpc/methods.hpp"

#include <fmt/format.h>
#include <boost/json/parse.hpp>

#include <algorithm>

namespace gateway::rpc {

namespace asio = boost::asio;
namespace json = boost::json;
using Clock = std::chrono::steady_clock;
using upstream::Forwarded;

NodeCalls::NodeCalls(upstream::Forwarder& pool, metrics::Metrics* metrics)
    : pool_(pool), config_(pool.config()), metrics_(metrics) {}

namespace {

bool makes_filter(std::string_view method) {
    return method == "eth_newFilter" || method == "eth_newBlockFilter" ||
           method == "eth_newPendingTransactionFilter";
}

bool uses_filter(std::string_view method) {
    return method == "eth_getFilterChanges" || method == "eth_getFilterLogs" ||
           method == "eth_uninstallFilter";
}

}  // namespace

asio::awaitable<Forwarded> NodeCalls::forward(std::string method, json::value params, bool write,
                                              Clock::time_point deadline,
                                              std::shared_ptr<upstream::AnswerBudget> budget) {
    if (method == "eth_getLogs" || method == "eth_blockNumber" || makes_filter(method))
        return forward_kept(std::move(method), std::move(params), write, deadline,
                            std::move(budget));
    // Not a coroutine: the pool's frame is the call's (its arguments are copied into it).
    const jsonrpc::BlockNeed need = jsonrpc::block_need(method, params);
    std::string home;
    if (uses_filter(method)) home = filter_home(params);
    return pool_.forward_to(std::move(method), std::move(params), need, write, deadline,
                            std::move(budget), std::move(home));
}

asio::awaitable<Forwarded> NodeCalls::forward_kept(std::string method, json::value params,
                                                   bool write, Clock::time_point deadline,
                                                   std::shared_ptr<upstream::AnswerBudget> budget) {
    if (method == "eth_getLogs") {
        if (auto split = co_await split_logs(params, deadline, budget)) co_return std::move(*split);
    }
    const jsonrpc::BlockNeed need = jsonrpc::block_need(method, params);
    Forwarded f = co_await pool_.forward_to(method, std::move(params), need, write, deadline,
                                            std::move(budget), std::string());
    if (makes_filter(method) && f.outcome == Forwarded::Outcome::answered) {
        const std::optional<json::value> v = f.result_json();
        if (v && v->is_string()) remember_filter(std::string(v->get_string()), f.upstream);
    }
    if (method == "eth_blockNumber") floor_block_number(f);
    co_return f;
}

void NodeCalls::floor_block_number(upstream::Forwarded& f) {
    auto n = f.result_quantity();
    if (!n) return;
    // A node may be ahead of the last probes (blocks come faster than probes on some
    // chains), by health.max_lag_blocks at most: a higher answer is not believed (nor
    // given out, since what is given out never goes back).
    const std::uint64_t said = *n;
    const std::optional<std::uint64_t> believed = pool_.head();
    std::uint64_t served = served_head_.load();
    // With no head believed now, the last one given out (once one was).
    const std::uint64_t ahead = std::max<std::uint64_t>(1, config_.health.max_lag_blocks);
    if (believed ? *n > *believed + ahead : served > 0) *n = believed.value_or(served);
    while (believed && *n > served && !served_head_.compare_exchange_weak(served, *n)) {
    }
    const std::uint64_t answer = std::max(*n, served);
    if (answer != said) f.reply.result = fmt::format("\"0x{:x}\"", answer);
}

void NodeCalls::remember_filter(const std::string& filter_id, const std::string& upstream_id) {
    // Nodes drop a filter nobody polled for 5 minutes (geth's default); twice that here.
    constexpr auto kForget = std::chrono::minutes(10);
    constexpr std::size_t kMaxFilters = 100'000;
    const auto now = Clock::now();
    std::lock_guard lock(filters_mu_);
    if (filters_.size() >= kMaxFilters) {
        std::erase_if(filters_, [&](const auto& f) { return now - f.second.last_used > kForget; });
        if (filters_.size() >= kMaxFilters) filters_.clear();  // a flood: start over
    }
    filters_[filter_id] = FilterHome{upstream_id, now};
}

std::string NodeCalls::filter_home(const json::value& params) {
    const json::array* a = params.if_array();
    const json::string* id = a && !a->empty() ? a->at(0).if_string() : nullptr;
    if (!id) return {};
    std::lock_guard lock(filters_mu_);
    auto it = filters_.find(std::string(*id));
    if (it == filters_.end()) return {};  // made before a restart, or not through us
    it->second.last_used = Clock::now();
    return it->second.upstream;
}

}  // namespace gateway::rpc
