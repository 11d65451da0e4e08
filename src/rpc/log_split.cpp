// eth_getLogs over more blocks than the chain's upstreams serve at once: split into ranges,
// fetched a few at a time, merged in order, with the work and the answer bounded.

#include "node_calls.hpp"

#include "gateway/jsonrpc/methods.hpp"
#include "gateway/metrics/metrics.hpp"

#include <fmt/format.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/experimental/parallel_group.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <cctype>
#include <limits>
#include <vector>

namespace gateway::rpc {

namespace asio = boost::asio;
namespace json = boost::json;
using Clock = std::chrono::steady_clock;
using upstream::AnswerBudget;
using upstream::Forwarded;

namespace {

// Concatenates JSON arrays given as texts, in order.
std::string merge_arrays(const std::vector<std::string>& arrays) {
    std::string out = "[";
    for (const auto& a : arrays) {
        const auto open = a.find('[');
        const auto close = a.rfind(']');
        if (open == std::string::npos || close == std::string::npos || close <= open) continue;
        std::string_view inner(a.data() + open + 1, close - open - 1);
        while (!inner.empty() && std::isspace(static_cast<unsigned char>(inner.front())))
            inner.remove_prefix(1);
        if (inner.empty()) continue;
        if (out.size() > 1) out.push_back(',');
        out.append(inner);
    }
    out.push_back(']');
    return out;
}

}  // namespace

// eth_getLogs over more blocks than an upstream serves: split into ranges of max_logs_range,
// fetched a few at a time, merged in order. nullopt when the request needs no splitting. Parts are
// made as they are fetched, at most logs.max_parts of them; the answer stops growing at the
// smallest max_response_bytes of the upstreams that served parts, and at `budget`.
asio::awaitable<std::optional<Forwarded>> NodeCalls::split_logs(
    const json::value& params, Clock::time_point deadline, std::shared_ptr<AnswerBudget> budget) {
    const json::array* a = params.if_array();
    const json::object* filter = a && a->size() == 1 ? a->at(0).if_object() : nullptr;
    if (!filter || filter->contains("blockHash")) co_return std::nullopt;
    const std::uint64_t limit = pool_.max_logs_range();
    if (!limit) co_return std::nullopt;

    const std::optional<std::uint64_t> head_now = pool_.head();
    auto resolve = [&](const char* key) -> std::optional<std::uint64_t> {
        const json::value* v = filter->if_contains(key);
        if (!v || v->is_null()) return head_now;
        if (!v->is_string()) return std::nullopt;
        if (v->get_string() == "earliest") return 0;
        if (auto n = jsonrpc::parse_quantity(v->get_string())) return n;
        return head_now;  // latest, safe, finalized, pending
    };
    const auto from = resolve("fromBlock");
    const auto to = resolve("toBlock");
    // (to - from) / limit, not the span: a range of 2^64 blocks must not overflow.
    if (!from || !to || *from > *to || *to - *from < limit) co_return std::nullopt;
    const std::uint64_t count = (*to - *from) / limit + 1;

    const auto refuse = [&](std::string message) {
        Forwarded refused;
        refused.outcome = Forwarded::Outcome::answered;
        refused.reply.error =
            jsonrpc::Error(jsonrpc::ErrorCode::limit_exceeded, std::move(message));
        return refused;
    };
    const std::string range = fmt::format("{}..{}", *from, *to);
    if (!config_.logs.split)
        co_return refuse(fmt::format(
            "eth_getLogs over blocks {} is more than this chain's upstreams serve at once "
            "(max_logs_range {}); ask for ranges of at most {} blocks (splitting is off: "
            "logs.split)",
            range, limit, limit));
    if (count > config_.logs.max_parts)
        co_return refuse(fmt::format(
            "eth_getLogs over blocks {} would take {} requests of {} blocks (max_logs_range), more "
            "than logs.max_parts {}: ask for at most {} blocks at once",
            range, count, limit, config_.logs.max_parts, limit * config_.logs.max_parts));

    struct Split {
        std::uint64_t from = 0, to = 0, limit = 0, count = 0;
        const json::object* filter = nullptr;
        std::vector<std::string> answers;  // each part's result (a JSON array), by index
        std::optional<Forwarded> failure;  // the first part that failed, or the size refusal
        std::vector<std::string> served_by;
        std::size_t bytes = 0;  // of the answers so far
        std::size_t max_bytes = std::numeric_limits<std::size_t>::max();
        std::uint64_t next = 0;
    } split{*from, *to, limit, count, filter, std::vector<std::string>(count)};

    // Workers share the caller's strand: Split and the budget need no lock.
    auto worker = [](upstream::Forwarder* pool, Split* s, std::shared_ptr<AnswerBudget> budget,
                     Clock::time_point dl) -> asio::awaitable<void> {
        while (s->next < s->count && !s->failure) {
            const std::uint64_t i = s->next++;
            const std::uint64_t start = s->from + i * s->limit;
            const std::uint64_t end = s->to - start < s->limit - 1 ? s->to : start + s->limit - 1;
            json::object part = *s->filter;
            part["fromBlock"] = fmt::format("0x{:x}", start);
            part["toBlock"] = fmt::format("0x{:x}", end);
            // (A named array: GCC 12 miscompiles a braced json::array inside a coroutine.)
            json::array part_params;
            part_params.push_back(std::move(part));
            Forwarded r = co_await pool->forward_to(
                "eth_getLogs", std::move(part_params),
                jsonrpc::BlockNeed{jsonrpc::BlockNeed::Kind::number, end}, false, dl, budget);
            if (s->failure) co_return;
            if (r.outcome != Forwarded::Outcome::answered || r.reply.is_error()) {
                s->failure = std::move(r);  // one part failed: the whole request fails
                co_return;
            }
            s->max_bytes = std::min(s->max_bytes, pool->max_response_bytes(r.upstream));
            if (std::find(s->served_by.begin(), s->served_by.end(), r.upstream) ==
                s->served_by.end())
                s->served_by.push_back(r.upstream);
            const std::size_t size = r.reply.result->size();
            s->bytes += size;
            if (budget) budget->used += size;
            if (s->bytes > s->max_bytes) {
                Forwarded refused;
                refused.outcome = Forwarded::Outcome::answered;
                refused.reply.error = jsonrpc::Error(
                    jsonrpc::ErrorCode::limit_exceeded,
                    fmt::format("eth_getLogs over blocks {}..{}: the logs pass {} bytes (the "
                                "max_response_bytes of the upstreams serving them); ask for a "
                                "smaller range or fewer addresses and topics",
                                s->from, s->to, s->max_bytes));
                s->failure = std::move(refused);
                co_return;
            }
            if (budget && budget->used > budget->limit) {
                budget->spent = true;
                s->failure = upstream::over_budget(budget->limit);
                co_return;
            }
            s->answers[i] = std::move(*r.reply.result);
        }
    };
    auto ex = co_await asio::this_coro::executor;
    using Op =
        decltype(asio::co_spawn(ex, worker(&pool_, &split, budget, deadline), asio::deferred));
    std::vector<Op> ops;
    for (std::size_t w = 0; w < std::min<std::uint64_t>(config_.logs.concurrency, count); ++w)
        ops.push_back(asio::co_spawn(ex, worker(&pool_, &split, budget, deadline), asio::deferred));
    co_await asio::experimental::make_parallel_group(std::move(ops))
        .async_wait(asio::experimental::wait_for_all(), asio::use_awaitable);
    // The parts counted against the batch while they arrived; its caller counts the answer.
    if (budget) budget->used -= std::min(budget->used, split.bytes);
    if (metrics_) metrics_->count_logs_split(config_.name, split.next);
    if (split.failure) co_return std::move(*split.failure);

    Forwarded merged;
    merged.outcome = Forwarded::Outcome::answered;
    merged.reply.result = merge_arrays(split.answers);
    for (const auto& s : split.served_by)
        merged.upstream += (merged.upstream.empty() ? "" : ",") + s;
    co_return merged;
}

}  // namespace gateway::rpc
