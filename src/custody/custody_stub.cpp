#include "gateway/custody/custody_stub.hpp"

#include "key.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <stdexcept>

namespace gateway::custody {

namespace asio = boost::asio;
using Outcome = Signed::Outcome;
using Clock = std::chrono::steady_clock;

namespace {

Signed fail(Outcome outcome, std::string detail) {
    Signed out;
    out.outcome = outcome;
    out.detail = std::move(detail);
    return out;
}

/// Waits until `until` on the current coroutine's executor. False if the wait was cancelled.
asio::awaitable<bool> wait_until(Clock::time_point until) {
    asio::steady_timer timer(co_await asio::this_coro::executor, until);
    auto [ec] = co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
    co_return !ec;
}

}  // namespace

CustodyStub::CustodyStub(std::string id, const std::vector<eth::Bytes>& private_keys)
    : id_(std::move(id)) {
    for (std::size_t i = 0; i < private_keys.size(); ++i) {
        std::optional<detail::PrivateKey> key = detail::PrivateKey::from_bytes(private_keys[i]);
        if (!key)
            throw std::runtime_error("custody stub " + id_ + ": key " + std::to_string(i + 1) +
                                     " is not a secp256k1 private key");
        const eth::Address address = key->address();
        keys_.emplace(address, std::make_unique<detail::PrivateKey>(std::move(*key)));
    }
}

CustodyStub::~CustodyStub() = default;

std::vector<eth::Address> CustodyStub::addresses() const {
    std::vector<eth::Address> out;
    out.reserve(keys_.size());
    for (const auto& [address, key] : keys_) out.push_back(address);
    return out;
}

asio::awaitable<Signed> CustodyStub::sign(const eth::UnsignedTx& tx, const eth::Address& from,
                                          Clock::time_point deadline) {
    std::chrono::milliseconds latency;
    bool unreachable = false;
    bool timeout_mode = false;
    bool refuse = false;
    bool approval_pending = false;
    {
        std::lock_guard lock(mu_);
        ++requests_;
        latency = latency_;
        unreachable = unreachable_;
        timeout_mode = timeout_mode_;
        approval_pending = approval_pending_;
        // Decided when the request arrives, so that concurrent requests take the refusals in
        // the order they came.
        if (!timeout_mode && !unreachable && refuse_next_ > 0) {
            --refuse_next_;
            refuse = true;
        }
    }

    if (timeout_mode) {
        if (!co_await wait_until(deadline)) co_return fail(Outcome::unavailable, "cancelled");
        co_return fail(Outcome::unavailable, "signing timed out");
    }
    if (unreachable) {
        const auto until = std::min(deadline, Clock::now() + kUnreachableDelay);
        if (!co_await wait_until(until)) co_return fail(Outcome::unavailable, "cancelled");
        co_return fail(Outcome::unavailable, "custody " + id_ + " unreachable (test fault)");
    }
    if (latency.count() > 0) {
        const auto ready = Clock::now() + latency;
        if (ready > deadline) {
            if (!co_await wait_until(deadline)) co_return fail(Outcome::unavailable, "cancelled");
            co_return fail(Outcome::unavailable, "signing timed out");
        }
        if (!co_await wait_until(ready)) co_return fail(Outcome::unavailable, "cancelled");
    }
    if (refuse)
        co_return fail(Outcome::refused, "custody " + id_ + " refused to sign (test fault)");
    if (approval_pending)
        co_return fail(Outcome::pending_approval,
                       "custody " + id_ + " holds it for approval (test fault)");

    auto it = keys_.find(from);
    if (it == keys_.end())
        co_return fail(Outcome::refused,
                       "custody " + id_ + " holds no key for " + eth::to_checksum_address(from));
    Signed out = it->second->sign(tx);
    if (out.outcome == Outcome::signed_ok) {
        std::lock_guard lock(mu_);
        signed_.push_back(SignedNonce{from, tx.nonce});
    }
    co_return out;
}

void CustodyStub::set_latency(std::chrono::milliseconds latency) {
    std::lock_guard lock(mu_);
    latency_ = latency;
}

void CustodyStub::set_unreachable(bool unreachable) {
    std::lock_guard lock(mu_);
    unreachable_ = unreachable;
}

void CustodyStub::set_timeout_mode(bool timeout_mode) {
    std::lock_guard lock(mu_);
    timeout_mode_ = timeout_mode;
}

void CustodyStub::set_approval_pending(bool pending) {
    std::lock_guard lock(mu_);
    approval_pending_ = pending;
}

void CustodyStub::refuse_next(std::size_t n) {
    std::lock_guard lock(mu_);
    refuse_next_ = n;
}

std::size_t CustodyStub::sign_requests() const {
    std::lock_guard lock(mu_);
    return requests_;
}

std::size_t CustodyStub::signatures() const {
    std::lock_guard lock(mu_);
    return signed_.size();
}

std::vector<CustodyStub::SignedNonce> CustodyStub::signed_nonces() const {
    std::lock_guard lock(mu_);
    return signed_;
}

}  // namespace gateway::custody
