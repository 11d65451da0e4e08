#pragma once
// A gmock fake of custody::Signer. sign() is a coroutine: its action returns an awaitable, e.g.
// test::ready_awaitable(signed) (from support/mock_forwarder.hpp). Without an action, id() is
// `signer_id`, addresses() empty and sign() answers "unavailable".

#include "gateway/custody/signer.hpp"
#include "support/mock_forwarder.hpp"

#include <gmock/gmock.h>
#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <string>
#include <utility>
#include <vector>

namespace gateway::test {

class MockSigner : public custody::Signer {
public:
    MockSigner() {
        using ::testing::_;
        ON_CALL(*this, id()).WillByDefault(::testing::ReturnRef(signer_id));
        ON_CALL(*this, sign(_, _, _)).WillByDefault([](auto&&...) {
            custody::Signed s;
            s.outcome = custody::Signed::Outcome::unavailable;
            s.detail = "no answer set (mock)";
            return ready_awaitable(std::move(s));
        });
    }

    MOCK_METHOD(const std::string&, id, (), (const, override));
    MOCK_METHOD(std::vector<eth::Address>, addresses, (), (const, override));
    MOCK_METHOD(boost::asio::awaitable<custody::Signed>, sign,
                (const eth::UnsignedTx& tx, const eth::Address& from,
                 std::chrono::steady_clock::time_point deadline),
                (override));

    /// What id() returns unless told otherwise.
    std::string signer_id = "mock-signer";
};

}  // namespace gateway::test
