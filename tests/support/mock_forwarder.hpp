#pragma once
// A gmock fake of upstream::Forwarder, the pool as the rooms above it see it. Its coroutine
// methods are mocked like any other: an action returns an awaitable, most simply one made by
// test::ready_awaitable(value), which hands the value back when awaited:
//
//   ON_CALL(pool, forward).WillByDefault([&](std::string method, boost::json::value params,
//                                            bool, auto, auto) {
//       return test::ready_awaitable(answer_for(method, params));
//   });
//
// Without an action, forward(), forward_to() and forward_at_least() answer "unavailable",
// forward_batch() nullopt and broadcast() no delivery; config() is `chain_config`.

#include "gateway/upstream/forwarder.hpp"

#include <gmock/gmock.h>
#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace gateway::test {

/// An awaitable that completes at once with `value`.
template <class T>
boost::asio::awaitable<T> ready_awaitable(T value) {
    co_return value;
}

/// A Forwarded for a node's result (`result_json`, JSON text).
inline upstream::Forwarded answered(std::string result_json, std::string upstream = "mock") {
    upstream::Forwarded f;
    f.outcome = upstream::Forwarded::Outcome::answered;
    f.reply = jsonrpc::Reply::success(std::move(result_json));
    f.upstream = std::move(upstream);
    return f;
}

/// A Forwarded for a node's JSON-RPC error.
inline upstream::Forwarded answered_error(int code, std::string message,
                                          std::string upstream = "mock") {
    upstream::Forwarded f;
    f.outcome = upstream::Forwarded::Outcome::answered;
    f.reply = jsonrpc::Reply::failure(jsonrpc::Error(code, std::move(message)));
    f.upstream = std::move(upstream);
    return f;
}

/// No node could answer.
inline upstream::Forwarded unavailable(std::string why = "no node (mock)") {
    upstream::Forwarded f;
    f.outcome = upstream::Forwarded::Outcome::unavailable;
    f.error = jsonrpc::Error(jsonrpc::ErrorCode::internal_error, std::move(why));
    return f;
}

class MockForwarder : public upstream::Forwarder {
public:
    using TimePoint = std::chrono::steady_clock::time_point;

    MockForwarder() {
        using ::testing::_;
        ON_CALL(*this, config()).WillByDefault(::testing::ReturnRef(chain_config));
        ON_CALL(*this, forward(_, _, _, _, _)).WillByDefault([](auto&&...) {
            return ready_awaitable(unavailable());
        });
        ON_CALL(*this, forward_to(_, _, _, _, _, _, _)).WillByDefault([](auto&&...) {
            return ready_awaitable(unavailable());
        });
        ON_CALL(*this, forward_at_least(_, _, _, _)).WillByDefault([](auto&&...) {
            return ready_awaitable(unavailable());
        });
        ON_CALL(*this, forward_batch(_, _, _)).WillByDefault([](auto&&...) {
            return ready_awaitable(std::optional<upstream::BatchForwarded>{});
        });
        ON_CALL(*this, broadcast(_, _, _, _)).WillByDefault([](auto&&...) {
            return ready_awaitable(std::vector<upstream::Delivery>{});
        });
    }

    MOCK_METHOD(const config::ChainConfig&, config, (), (const, override));
    MOCK_METHOD(bool, ready, (), (const, override));
    MOCK_METHOD(std::optional<std::uint64_t>, head, (), (const, override));
    MOCK_METHOD(boost::asio::awaitable<upstream::Forwarded>, forward,
                (std::string method, boost::json::value params, bool write, TimePoint deadline,
                 std::shared_ptr<upstream::AnswerBudget> budget),
                (override));
    MOCK_METHOD(boost::asio::awaitable<upstream::Forwarded>, forward_to,
                (std::string method, boost::json::value params, jsonrpc::BlockNeed need, bool write,
                 TimePoint deadline, std::shared_ptr<upstream::AnswerBudget> budget,
                 std::string pinned),
                (override));
    MOCK_METHOD(boost::asio::awaitable<upstream::Forwarded>, forward_at_least,
                (std::string method, boost::json::value params, std::uint64_t min_block,
                 TimePoint deadline),
                (override));
    MOCK_METHOD((boost::asio::awaitable<std::optional<upstream::BatchForwarded>>), forward_batch,
                (std::vector<upstream::BatchCall> calls, TimePoint deadline,
                 std::shared_ptr<upstream::AnswerBudget> budget),
                (override));
    MOCK_METHOD(boost::asio::awaitable<std::vector<upstream::Delivery>>, broadcast,
                (std::string method, boost::json::value params, std::size_t fanout,
                 TimePoint deadline),
                (override));
    MOCK_METHOD(std::uint64_t, max_logs_range, (), (const, override));
    MOCK_METHOD(std::size_t, max_response_bytes, (std::string_view upstream), (const, override));

    /// What config() returns unless told otherwise.
    config::ChainConfig chain_config;
};

}  // namespace gateway::test
