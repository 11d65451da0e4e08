#pragma once
// A stand-in for a custody service, for tests and rehearsals: it signs with keys it holds in
// memory, and a test sets at run time how it misbehaves (slow, unreachable, timing out,
// refusing) and reads back what it was asked and what it signed.

#include "gateway/custody/signer.hpp"

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace gateway::custody {

namespace detail {
class PrivateKey;
}

class CustodyStub final : public Signer {
public:
    /// One signature it made.
    struct SignedNonce {
        eth::Address from{};
        std::uint64_t nonce = 0;
        bool operator==(const SignedNonce&) const = default;
    };

    /// `private_keys` are 32-byte secp256k1 keys; the caller wipes its copies. Throws
    /// std::runtime_error (naming the position, never the key) on one that is not valid.
    CustodyStub(std::string id, const std::vector<eth::Bytes>& private_keys);
    ~CustodyStub() override;

    const std::string& id() const override { return id_; }
    std::vector<eth::Address> addresses() const override;

    /// Waits on a steady_timer on the caller's executor (no thread is blocked), then, in order:
    /// timeout mode: waits until `deadline` and answers unavailable "signing timed out";
    /// unreachable: answers unavailable after a short delay (at most until `deadline`);
    /// latency: waits that long first, or until `deadline` and answers "signing timed out";
    /// refuse_next: answers refused; approval pending: answers pending_approval (its own policy
    /// holds it for a person); an address it holds no key for: refused; otherwise signs.
    /// Cancelling the awaiting operation ends the wait with unavailable "cancelled".
    boost::asio::awaitable<Signed> sign(const eth::UnsignedTx& tx, const eth::Address& from,
                                        std::chrono::steady_clock::time_point deadline) override;

    // Faults; thread-safe, effective for sign() calls that start afterwards.
    void set_latency(std::chrono::milliseconds latency);
    void set_unreachable(bool unreachable);
    void set_timeout_mode(bool timeout_mode);
    /// The next `n` sign() calls are refused (after any latency).
    void refuse_next(std::size_t n);
    /// While set, sign() answers pending_approval (after any latency and refusals).
    void set_approval_pending(bool pending);

    /// sign() calls so far, whatever came of them.
    std::size_t sign_requests() const;
    /// signed_ok answers so far.
    std::size_t signatures() const;
    /// Every signature made, in order.
    std::vector<SignedNonce> signed_nonces() const;

    /// How long "unreachable" takes to say so.
    static constexpr std::chrono::milliseconds kUnreachableDelay{20};

private:
    std::string id_;
    std::map<eth::Address, std::unique_ptr<detail::PrivateKey>> keys_;

    mutable std::mutex mu_;
    std::chrono::milliseconds latency_{0};
    bool unreachable_ = false;
    bool timeout_mode_ = false;
    std::size_t refuse_next_ = 0;
    bool approval_pending_ = false;
    std::size_t requests_ = 0;
    std::vector<SignedNonce> signed_;
};

}  // namespace gateway::custody
