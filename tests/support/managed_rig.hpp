#pragma once
// A chain's managed senders (and the raw write path under them) in-process against their
// neighbours' fakes: the nodes (a gmock Forwarder answering from a small scripted chain that
// mines whatever is sent at block 0x10) and custody (a gmock Signer that signs with the custody
// stub's keys unless a test says otherwise). The journal is the real one, in a temporary folder.

#include "gateway/custody/custody_stub.hpp"
#include "gateway/eth/hex.hpp"
#include "gateway/eth/transaction.hpp"
#include "gateway/store/store.hpp"
#include "gateway/txm/managed.hpp"
#include "gateway/txm/tx_manager.hpp"
#include "gateway/util/clock.hpp"
#include "support/io_thread.hpp"
#include "support/mock_forwarder.hpp"
#include "support/mock_signer.hpp"
#include "support/process.hpp"
#include "support/tx_signer.hpp"

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <boost/json/parse.hpp>

#include <functional>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace gateway::test {

namespace json = boost::json;
using namespace std::chrono_literals;

inline const std::string kManagedSender = address_of(kKey0);
inline constexpr std::uint64_t kPendingNonce = 5;
inline constexpr unsigned kMaxAttempts = 2;

inline custody::Signed answer_of(custody::Signed::Outcome outcome, std::string detail) {
    custody::Signed s;
    s.outcome = outcome;
    s.detail = std::move(detail);
    return s;
}

/// `signer`'s answer for `tx`, which this coroutine owns (sign() takes it by reference and runs
/// after the caller's copy may have gone).
inline boost::asio::awaitable<custody::Signed> sign_owned(
    custody::Signer& signer, eth::UnsignedTx tx, eth::Address from,
    std::chrono::steady_clock::time_point deadline) {
    co_return co_await signer.sign(tx, from, deadline);
}

/// What a test may change in a ManagedRig.
struct RigOptions {
    std::optional<config::PolicyConfig> policy;  ///< the chain's policy
    const util::Clock* clock = nullptr;          ///< the senders' clock; unset: the real one
    std::string dir;  ///< the journal's folder (another rig's, for a restart); unset: a new one
    metrics::Metrics* metrics = nullptr;
    std::size_t max_queued_per_sender = 64;
    /// The managed sender's own policy, in place of the chain's; unset: the chain's.
    std::optional<config::PolicyConfig> account_policy;
};

/// Everything a chain's managed senders need, faked where it is a neighbour: the pool answers
/// from a small chain that mines whatever is sent at block 0x10; the signer signs.
class ManagedRig {
public:
    explicit ManagedRig(RigOptions options = {})
        : dir(options.dir.empty() ? make_temp_dir("managed-senders") : options.dir),
          keys_("keys", std::vector<eth::Bytes>{*eth::from_hex(kKey0)}),
          journal_([d = dir] {
              return std::unique_ptr<store::Journal>(
                  store::open_store(config::StoreConfig{"sqlite", d + "/j.db"}));
          }) {
        using ::testing::_;
        auto& c = pool.chain_config;
        c.name = "devnet";
        c.chain_id = 31337;
        c.tx.poll_interval = 10ms;
        c.tx.confirmations = 1;
        c.tx.retry.max_attempts = kMaxAttempts;
        c.tx.retry.backoff = 2ms;
        c.accounts.push_back(config::AccountConfig{kManagedSender, "mock"});
        c.accounts.back().policy = options.account_policy;
        c.policy = options.policy;
        c.tx.max_queued_per_sender = options.max_queued_per_sender;
        ON_CALL(pool, ready()).WillByDefault(::testing::Return(true));
        ON_CALL(pool, head()).WillByDefault(::testing::Return(std::optional<std::uint64_t>(16)));
        ON_CALL(pool, forward(_, _, _, _, _))
            .WillByDefault([this](std::string method, json::value params, auto&&...) {
                return ready_awaitable(answer(method, params));
            });
        ON_CALL(pool, forward_to(_, _, _, _, _, _, _))
            .WillByDefault([this](std::string method, json::value params, auto&&...) {
                return ready_awaitable(answer(method, params));
            });
        ON_CALL(pool, forward_at_least(_, _, _, _))
            .WillByDefault([this](std::string method, json::value params, auto&&...) {
                return ready_awaitable(answer(method, params));
            });
        ON_CALL(pool, broadcast(_, _, _, _))
            .WillByDefault([this](std::string, json::value params, auto&&...) {
                return ready_awaitable(take(params));
            });
        ON_CALL(signer, sign(_, _, _))
            .WillByDefault([this](const eth::UnsignedTx& tx, const eth::Address& from,
                                  auto deadline) { return keys_.sign(tx, from, deadline); });
        txm_.emplace(pool.chain_config, pool, journal_, nullptr, io.ioc.get_executor());
        senders_.emplace(pool.chain_config, pool, journal_, *txm_,
                         std::map<std::string, custody::Signer*>{{kManagedSender, &signer}},
                         std::map<std::string, std::chrono::milliseconds>{{kManagedSender, 2s}},
                         options.metrics, io.ioc.get_executor(),
                         options.clock ? *options.clock : util::SteadyClock::instance());
    }
    ~ManagedRig() { shutdown(); }

    /// Stops the senders and the write path and lets the loop run out: what ran on it is over,
    /// and objects with timers on it may go (before the loop itself does). Once is enough.
    void shutdown() {
        if (shut_down_) return;
        shut_down_ = true;
        senders_->stop();
        txm_->stop();
        for (int i = 0; i < 300 && !txm_->stopped(); ++i) std::this_thread::sleep_for(10ms);
        io.finish();
    }

    /// Starts the senders and the raw write path once the test has set its expectations.
    void start() {
        txm_->start();
        senders_->start();
        ASSERT_TRUE(wait_for([&] { return txm_->loaded() && senders_->loaded(); }));
    }

    /// The params of eth_sendTransaction of `value` wei (1 by default) from the managed sender to
    /// 0x…dEaD.
    static json::array request(std::string_view value = "0x1") {
        json::object tx;
        tx["from"] = kManagedSender;
        tx["to"] = "0x000000000000000000000000000000000000dEaD";
        tx["value"] = value;
        return json::array{tx};
    }

    /// eth_sendTransaction of 1 wei to 0x…dEaD, waiting (at most 10 s) for its first signed
    /// attempt's hash.
    jsonrpc::Reply send_and_wait() {
        return io.run(senders_->send(request(), "", true, std::chrono::steady_clock::now() + 10s))
            .reply;
    }
    /// gateway_sendTransaction of `value` wei (with an Idempotency-Key when `key` is not empty):
    /// answered at once with the new transaction's id.
    std::string send_queued(std::string_view value = "0x1", std::string key = "") {
        const auto r = io.run(senders_->send(request(value), std::move(key), false,
                                             std::chrono::steady_clock::now() + 10s));
        EXPECT_FALSE(r.reply.is_error()) << r.reply.error.message;
        if (r.reply.is_error()) return "";
        return std::string(json::parse(*r.reply.result).at("id").as_string());
    }
    /// gateway_getTransaction's view of `id`.
    json::value describe(const std::string& id) {
        const auto r = io.run(senders_->describe(id));
        EXPECT_FALSE(r.is_error());
        return r.is_error() ? json::value() : json::parse(*r.result);
    }
    /// Waits until `done`, or 10 s; false then.
    static bool wait_for(const std::function<bool()>& done) {
        const auto deadline = std::chrono::steady_clock::now() + 10s;
        while (std::chrono::steady_clock::now() < deadline) {
            if (done()) return true;
            std::this_thread::sleep_for(2ms);
        }
        return done();
    }
    txm::ManagedSenders& senders() { return *senders_; }
    store::JournalService& journal() { return journal_; }

    /// The raw transactions the nodes were sent, in order.
    std::vector<std::string> sent() const {
        std::lock_guard lock(mu_);
        return sent_;
    }

    const std::string dir;  ///< the journal's folder
    IoThread io;
    ::testing::NiceMock<MockForwarder> pool;
    ::testing::NiceMock<MockSigner> signer;
    custody::CustodyStub keys_;  ///< what the signer signs with unless a test says otherwise

private:
    upstream::Forwarded answer(const std::string& method, const json::value& params) {
        if (method == "eth_estimateGas") return answered("\"0x5208\"");
        if (method == "eth_gasPrice") return answered("\"0x3b9aca00\"");
        if (method == "eth_feeHistory") return answered_error(-32601, "method not found");
        if (method == "eth_getTransactionCount")
            return answered(fmt::format("\"0x{:x}\"", kPendingNonce));
        if (method == "eth_getBlockByNumber")
            return answered(fmt::format(R"({{"number":"0x10","hash":"0x{:064x}"}})", 16));
        if (method == "eth_getTransactionByHash") return answered("null");
        if (method == "eth_getTransactionReceipt") {
            const std::string hash(params.at(0).as_string());
            std::lock_guard lock(mu_);
            if (!mined_.count(hash)) return answered("null");
            return answered(fmt::format(
                R"({{"transactionHash":"{}","blockNumber":"0x10","blockHash":"0x{:064x}","status":"0x1"}})",
                hash, 16));
        }
        return unavailable("not in this chain's script: " + method);
    }

    std::vector<upstream::Delivery> take(const json::value& params) {
        const std::string raw(params.at(0).as_string());
        const auto tx = eth::parse_transaction(*eth::from_hex(raw));
        upstream::Delivery d;
        d.upstream = "mock";
        d.attempt.kind = upstream::Attempt::Kind::answered;
        d.attempt.reply = jsonrpc::Reply::success("\"" + eth::to_hex(tx->hash) + "\"");
        std::lock_guard lock(mu_);
        sent_.push_back(raw);
        mined_.insert(eth::to_hex(tx->hash));
        return {d};
    }

    store::JournalService journal_;
    std::optional<txm::TxManager> txm_;
    std::optional<txm::ManagedSenders> senders_;
    bool shut_down_ = false;
    mutable std::mutex mu_;
    std::vector<std::string> sent_;
    std::set<std::string> mined_;
};

}  // namespace gateway::test
