#pragma once
// Private to the managed senders (src/txm/managed*.cpp): the state of a managed transaction and of
// its sender, and the helpers and constants the files of ManagedSenders share.

#include "gateway/txm/managed.hpp"
#include "gateway/txm/managed_request.hpp"

#include "gateway/eth/hex.hpp"
#include "gateway/eth/transaction.hpp"
#include "gateway/jsonrpc/jsonrpc.hpp"
#include "gateway/store/journal_service.hpp"
#include "gateway/txm/fees.hpp"
#include "gateway/txm/policy.hpp"
#include "gateway/txm/policy_service.hpp"
#include "gateway/util/backoff.hpp"
#include "gateway/util/nothrow.hpp"
#include "gateway/util/text.hpp"
#include "gateway/util/wall_time.hpp"

#include "handoffs.hpp"
#include "replies.hpp"

#include <openssl/rand.h>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace gateway::txm {

namespace asio = boost::asio;
namespace json = boost::json;
using store::TxState;
using util::unix_ms;
using Clock = std::chrono::steady_clock;

// File-local in each file that includes it, as they were in one file.
namespace {

using util::use_nothrow;
constexpr std::uint64_t kGwei = 1'000'000'000;
constexpr std::uint64_t kTransferGas = 21'000;
constexpr int kServerError = -32000;
// The event reason that records an operator's cancel (load() looks for it after a restart).
constexpr std::string_view kCancelRequested = "cancel requested by an operator";
// The event reason that records the start of a signer's hold for approval (load() looks for it
// after a restart: its time to live counts from then).
constexpr std::string_view kSignerHold = "held for approval by its signer";
// The reason of a transaction the rules let through, held until the policy service answers (load()
// looks for it after a restart: the service is asked again).
constexpr std::string_view kAwaitingService = "waiting for the policy service's answer";

inline std::string new_id() {
    unsigned char bytes[12];
    if (RAND_bytes(bytes, sizeof bytes) != 1)
        throw std::runtime_error("no randomness for a transaction id");
    return "gtx-" + eth::to_hex(bytes).substr(2);
}

using detail::error_reply;
using detail::journal_unavailable;
using detail::journal_unreadable;
using detail::journal_unsure;
using detail::journal_unwritable;

// The wait before trying again after `failures` in a row: tx.retry.backoff_ms doubled each time,
// at most a minute.
inline std::chrono::milliseconds retry_delay(const config::ChainConfig& config, unsigned failures) {
    return util::doubling_backoff(config.tx.retry.backoff, failures, 6, std::chrono::seconds(60));
}

// A managed transaction's request as JSON, or as the text it is kept as when that does not parse.
inline json::value request_json(const std::string& text) {
    json::error_code ec;
    json::value parsed = json::parse(text, ec);
    if (ec) return json::value(text);
    return parsed;
}

// Whether a managed transaction in `state` has no nonce of its own yet (one it took before, on an
// earlier try, is given back or replaced when it takes one).
inline bool has_no_nonce(TxState state) {
    return state == TxState::queued || state == TxState::preparing ||
           state == TxState::pending_approval;
}

// Who held a transaction in PENDING_APPROVAL, for gateway_managed_approvals_total{held_by}.
template <class T>
const char* held_by(const T& tx) {
    return tx.awaiting_service || tx.held_by_service ? "service" : "policy";
}

inline bool is_revert(const jsonrpc::Error& e) {
    return e.code == 3 || util::lower(e.message).find("revert") != std::string::npos;
}

// Whether an attempt is a zero-value self-send standing in for a request that is not one: the
// operator's cancel.
inline bool is_cancel(const store::TxRecord& attempt, const Request& req,
                      const eth::Address& sender) {
    if (req.to == sender && req.value.empty() && req.input.empty()) return false;
    const auto tx = eth::parse_transaction(attempt.raw);
    return tx && tx->to == sender && (tx->value.empty() || tx->value == "0x0") && tx->input.empty();
}

inline bool is_mined(const store::TxRecord& a) {
    return a.state == TxState::confirming || a.state == TxState::completed ||
           (a.state == TxState::failed && a.block_hash.has_value());
}

inline Fees capped(Fees f, const FeeCaps& caps) {
    if (caps.max_fee_per_gas) {
        f.max_fee_per_gas = std::min(f.max_fee_per_gas, caps.max_fee_per_gas);
        f.gas_price = std::min(f.gas_price, caps.max_fee_per_gas);
    }
    if (caps.max_priority_fee_per_gas)
        f.max_priority_fee_per_gas =
            std::min(f.max_priority_fee_per_gas, caps.max_priority_fee_per_gas);
    f.max_priority_fee_per_gas = std::min(f.max_priority_fee_per_gas, f.max_fee_per_gas);
    return f;
}

// Gives a sender back (Sender::busy) when an admin action ends, however it ends.
template <class S>
class Release {
public:
    explicit Release(S& s) : s_(s) {}
    ~Release() { s_.busy = false; }
    Release(const Release&) = delete;
    Release& operator=(const Release&) = delete;

private:
    S& s_;
};

}  // namespace

// GCC 12 destroys some temporaries of a conditional expression twice inside coroutines: the
// coroutines of ManagedSenders build such values with plain statements or in helpers.

struct ManagedSenders::Tx {
    // Shared with request coroutines: guarded by ManagedSenders::mu_.
    store::ManagedRecord rec;
    std::optional<jsonrpc::Error> refusal;  // the last counted failure, for waiting clients
    std::uint64_t refusals = 0;             // how many so far
    std::vector<std::shared_ptr<asio::steady_timer>> waiters;

    // The sender's strand only.
    Request req;
    std::optional<Fees> fees;           // of the newest attempt (or the first to sign)
    std::uint64_t gas = 0;              // 0: not estimated yet
    std::vector<std::string> attempts;  // hashes, oldest first
    std::uint64_t attempt_head = 0;     // the chain head when the newest attempt was sent
    unsigned failures = 0;              // counted failures since the last retry
    unsigned waits = 0;                 // signer unavailable in a row (for the backoff)
    Clock::time_point not_before{};
    bool at_cap = false;
    bool cancel_requested = false;
    std::optional<std::string> cancel_hash;  // the first self-send that cancels it
    // Held by the policy (PENDING_APPROVAL): since when (Unix ms), and until when on clock_.
    // The times are atomic: approvals() reads them from the admin API's thread.
    std::atomic<std::int64_t> held_since_ms{0};
    Clock::time_point approval_deadline{};
    // Held by its signer's own policy (SIGNING, with its nonce): since when (Unix ms; 0: not
    // held), and until when on clock_. The sender's later transactions wait behind it.
    std::atomic<std::int64_t> signer_held_since_ms{0};
    Clock::time_point signer_hold_deadline{};
    // PENDING_APPROVAL until the policy service answers (written under ManagedSenders::mu_ on
    // the strand), or held by the service's answer (the strand only): for the metrics' held_by.
    bool awaiting_service = false;
    bool held_by_service = false;
};

// A sender's policy (chains[].policy, or its own): what holds a transaction for approval, how
// long a hold lasts, and the service asked. A reload replaces it whole.
struct SenderPolicy {
    std::optional<PolicyRules> rules;  // unset: none
    std::chrono::milliseconds approval_ttl{86'400'000};
    std::shared_ptr<PolicyService> service;  // unset: none; asked on the sender's strand
};

struct ManagedSenders::Sender {
    Sender(std::string a, const eth::Address& bytes, custody::Signer* sg,
           std::chrono::milliseconds timeout, FeeCaps c, std::shared_ptr<const SenderPolicy> p,
           asio::any_io_executor ex)
        : address(std::move(a)),
          addr(bytes),
          signer(sg),
          sign_timeout(timeout),
          caps(c),
          strand(asio::make_strand(ex)),
          timer(strand),
          policy_(std::move(p)) {}
    std::string address;  // lowercase hex
    eth::Address addr;
    custody::Signer* signer;
    std::chrono::milliseconds sign_timeout;
    FeeCaps caps;
    // The policy now; a decision holds the one it started with.
    std::shared_ptr<const SenderPolicy> policy() const {
        std::lock_guard lock(policy_mu_);
        return policy_;
    }
    void set_policy(std::shared_ptr<const SenderPolicy> p) {
        std::lock_guard lock(policy_mu_);
        policy_ = std::move(p);
    }
    // The strand only: one backoff for the service, whichever transaction asked it last, so a
    // service that is down is asked once a round at most.
    unsigned service_failures = 0;
    Clock::time_point service_not_before{};
    asio::strand<asio::any_io_executor> strand;
    asio::steady_timer timer;
    std::atomic<bool> wake_pending{false};
    std::vector<std::shared_ptr<Tx>> txs;  // unfinished, oldest first; guarded by mu_
    std::size_t stuck = 0;                 // reported at the cap; strand only
    // Strand only. A round and an admin action each take the sender whole: a strand alone would
    // let one run while the other waits on I/O in the middle of a step.
    bool busy = false;
    // The highest nonce of unfinished transactions load() could not carry on: never handed out.
    std::optional<std::uint64_t> orphan_max;

private:
    mutable std::mutex policy_mu_;
    std::shared_ptr<const SenderPolicy> policy_;
};

struct ManagedSenders::StagedPolicies {
    std::vector<std::pair<Sender*, std::shared_ptr<const SenderPolicy>>> next;
};

}  // namespace gateway::txm
