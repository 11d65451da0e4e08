#include "gateway/txm/managed.hpp"
#include "gateway/txm/nonce_proof.hpp"
#include "managed_internal.hpp"

#include "gateway/custody/signer.hpp"
#include "gateway/eth/hex.hpp"
#include "gateway/eth/transaction.hpp"
#include "gateway/eth/unsigned_tx.hpp"
#include "gateway/metrics/metrics.hpp"
#include "gateway/rpc/methods.hpp"
#include "gateway/txm/nonce.hpp"
#include "gateway/txm/tx_manager.hpp"
#include "gateway/upstream/pool.hpp"
#include "gateway/util/text.hpp"
#include "gateway/util/wall_time.hpp"

#include <fmt/chrono.h>
#include <fmt/format.h>
#include <openssl/rand.h>
#include <spdlog/spdlog.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <algorithm>
#include <set>

namespace gateway::txm {

namespace {

// Fees of a signed attempt, read back from its bytes (after a restart).
std::optional<Fees> fees_of(const eth::Transaction& tx) {
    if (tx.gas_price) {
        auto gp = rpc::parse_quantity(*tx.gas_price);
        if (!gp) return std::nullopt;
        return Fees{0, 0, *gp, true};
    }
    if (!tx.max_fee_per_gas || !tx.max_priority_fee_per_gas) return std::nullopt;
    auto mf = rpc::parse_quantity(*tx.max_fee_per_gas);
    auto tip = rpc::parse_quantity(*tx.max_priority_fee_per_gas);
    if (!mf || !tip) return std::nullopt;
    return Fees{*mf, *tip, 0, false};
}

// What a signed attempt came to, for its managed transaction's reason.
std::string attempt_reason(bool cancel, std::size_t number, std::uint64_t nonce, const Fees& fees,
                           const SubmitResult& sent) {
    std::string fee_text;
    if (fees.legacy)
        fee_text = fmt::format("gasPrice {}", fees.gas_price);
    else
        fee_text = fmt::format("maxFeePerGas {}, maxPriorityFeePerGas {}", fees.max_fee_per_gas,
                               fees.max_priority_fee_per_gas);
    std::string outcome;
    if (sent.reply && sent.reply->is_error())
        outcome = "refused by the nodes: " + sent.reply->error.message;
    else if (sent.queued)
        outcome = "journaled, waiting for a node";
    else
        outcome = "sent to " + sent.upstream;
    return fmt::format("{} {} signed (nonce {}, {}): {}", cancel ? "cancel" : "attempt", number,
                       nonce, fee_text, outcome);
}

// Caps combined: 0 is "no cap".
std::uint64_t min_cap(std::uint64_t a, std::uint64_t b) {
    if (!a) return b;
    if (!b) return a;
    return std::min(a, b);
}

}  // namespace

ManagedSenders::ManagedSenders(const config::ChainConfig& chain, upstream::ChainPool& pool,
                               store::JournalService& journal, TxManager& txm,
                               std::map<std::string, custody::Signer*> signers,
                               std::map<std::string, std::chrono::milliseconds> sign_timeouts,
                               metrics::Metrics* metrics, asio::any_io_executor executor)
    : config_(chain),
      pool_(pool),
      journal_(journal),
      txm_(txm),
      metrics_(metrics),
      executor_(executor) {
    // Called on the raw layer's strand: the work goes to the sender's.
    txm_.on_reopened([this](std::string parent, std::string sender) {
        if (!stopped_) reopen(std::move(parent), sender);
    });
    for (const auto& account : config_.accounts) {
        const std::string address = util::lower(account.address);
        auto it = signers.find(address);
        auto bytes = eth::from_hex(address);
        if (it == signers.end() || !it->second || !bytes || bytes->size() != 20)
            throw std::runtime_error(fmt::format("chain {}: managed sender {} has no signer",
                                                 config_.name, account.address));
        eth::Address a;
        std::copy(bytes->begin(), bytes->end(), a.begin());
        FeeCaps caps{config_.tx.fee.max_fee_per_gas_gwei * kGwei,
                     config_.tx.fee.max_priority_fee_gwei * kGwei};
        if (account.max_fee_per_gas_gwei)
            caps.max_fee_per_gas =
                min_cap(caps.max_fee_per_gas, *account.max_fee_per_gas_gwei * kGwei);
        if (account.max_priority_fee_gwei)
            caps.max_priority_fee_per_gas =
                min_cap(caps.max_priority_fee_per_gas, *account.max_priority_fee_gwei * kGwei);
        const auto timeout = sign_timeouts.count(address) ? sign_timeouts.at(address)
                                                          : std::chrono::milliseconds(10'000);
        senders_.emplace(
            address, std::make_shared<Sender>(address, a, it->second, timeout, caps, executor_));
    }
}

ManagedSenders::~ManagedSenders() = default;

bool ManagedSenders::manages(std::string_view address) const {
    return sender_of(address) != nullptr;
}

ManagedSenders::Sender* ManagedSenders::sender_of(std::string_view address) const {
    auto it = senders_.find(util::lower(address));
    return it == senders_.end() ? nullptr : it->second.get();
}

std::shared_ptr<ManagedSenders::Tx> ManagedSenders::find(std::string_view id) const {
    std::lock_guard lock(mu_);
    auto it = by_id_.find(std::string(id));
    return it == by_id_.end() ? nullptr : it->second;
}

std::size_t ManagedSenders::held() const {
    std::lock_guard lock(mu_);
    return by_id_.size();
}

void ManagedSenders::start() {
    if (senders_.empty()) {
        loaded_ = true;
        return;
    }
    asio::co_spawn(executor_, start_senders(), asio::detached);
}

asio::awaitable<void> ManagedSenders::start_senders() {
    asio::steady_timer timer(co_await asio::this_coro::executor);
    while (!stopped_) {
        const bool ok = co_await load();  // (not in the loop condition: GCC 12)
        if (ok) break;
        timer.expires_after(config_.tx.poll_interval);
        co_await timer.async_wait(use_nothrow);
    }
    if (stopped_) co_return;
    for (auto& [address, s] : senders_) {
        asio::co_spawn(s->strand, run(s), [this, a = address](std::exception_ptr e) {
            if (e) {
                try {
                    std::rethrow_exception(e);
                } catch (const std::exception& ex) {
                    spdlog::critical("chain {}: sender {}: the nonce manager stopped: {}",
                                     config_.name, a, ex.what());
                }
            }
        });
    }
}

void ManagedSenders::stop() {
    stopped_ = true;
    for (auto& [address, s] : senders_) wake(*s);
    std::lock_guard lock(mu_);
    for (auto& [id, tx] : by_id_)
        for (auto& w : tx->waiters) asio::post(w->get_executor(), [w] { w->cancel(); });
}

void ManagedSenders::wake(Sender& s) {
    s.wake_pending = true;
    asio::post(s.strand, [&s] { s.timer.cancel(); });
}

void ManagedSenders::notify(Tx& tx) {
    // Called with mu_ held.
    for (auto& w : tx.waiters) asio::post(w->get_executor(), [w] { w->cancel(); });
}

void ManagedSenders::wait(Tx& tx, std::string reason) {
    std::lock_guard lock(mu_);
    if (tx.rec.reason != reason)
        spdlog::info("chain {}: {} ({} from {}): waits: {}", config_.name, tx.rec.id,
                     store::to_string(tx.rec.state), tx.rec.sender, reason);
    tx.rec.reason = std::move(reason);
}

asio::awaitable<bool> ManagedSenders::load() {
    std::vector<store::ManagedRecord> records;
    std::map<std::string, std::vector<store::TxRecord>> attempts;
    std::set<std::string> cancels;  // ids an operator asked to cancel
    std::vector<store::ManagedRef> reopened;
    try {
        store::JournalService::Operation op = [&](store::Journal& j) {
            reopened = j.reopened_managed();
            for (auto& r : j.unfinished_managed())
                if (r.chain == config_.name) {
                    attempts[r.id] = j.attempts(r.id);
                    for (const auto& ev : j.managed_history(r.id))
                        if (ev.reason.starts_with(kCancelRequested)) cancels.insert(r.id);
                    records.push_back(std::move(r));
                }
        };
        co_await journal_.run(std::move(op));
    } catch (const std::exception& e) {
        spdlog::error(
            "chain {}: cannot load managed transactions from the journal: {}; "
            "eth_sendTransaction is refused until it loads",
            config_.name, e.what());
        co_return false;
    }
    std::vector<std::shared_ptr<Tx>> adopted;
    {
        std::lock_guard lock(mu_);
        for (auto& r : records) {
            if (by_id_.count(r.id)) continue;
            Sender* s = sender_of(r.sender);
            const bool has_nonce =
                r.nonce && r.state != TxState::queued && r.state != TxState::preparing;
            auto parsed = parse_stored(r.request, config_.chain_id);
            if (!s || std::holds_alternative<std::string>(parsed)) {
                std::string why = "the sender is no longer configured";
                if (s) why = std::get<std::string>(parsed);
                spdlog::error(
                    "chain {}: managed transaction {} of {} cannot carry on ({}); "
                    "left as it is",
                    config_.name, r.id, r.sender, why);
                if (s && has_nonce) s->orphan_max = std::max(s->orphan_max.value_or(0), *r.nonce);
                continue;
            }
            auto tx = std::make_shared<Tx>();
            tx->req = std::move(std::get<Request>(parsed));
            if (!has_nonce) {
                // Its nonce (if any) and hash are from an earlier try: it takes new ones.
                r.nonce.reset();
                r.hash.reset();
            }
            tx->rec = std::move(r);
            if (has_nonce) adopt_attempts(*tx, *s, attempts[tx->rec.id]);
            if (tx->rec.state == TxState::signing && !tx->attempts.empty()) adopted.push_back(tx);
            if (cancels.count(tx->rec.id)) tx->cancel_requested = true;
            s->txs.push_back(tx);
            by_id_[tx->rec.id] = tx;
        }
    }
    for (auto& tx : adopted) {
        // Signed and journaled before the restart, its managed state not yet moved on.
        co_await update(tx, TxState::broadcasting,
                        "signed before a restart: its attempt carries on", std::nullopt,
                        tx->attempts.back());
    }
    loaded_ = true;
    if (!records.empty())
        spdlog::info("chain {}: {} managed transaction(s) from the journal carry on", config_.name,
                     held());
    // Finished, but a reorg reopened their attempt when they could not follow (a stop, a crash,
    // a journal fault in between): reopened now.
    for (auto& r : reopened)
        if (r.chain == config_.name) reopen(std::move(r.id), r.sender);
    co_return true;
}

void ManagedSenders::adopt_attempts(Tx& tx, const Sender& s,
                                    const std::vector<store::TxRecord>& attempts) {
    for (const auto& a : attempts) {
        if (a.nonce != tx.rec.nonce) continue;  // an earlier try's attempt
        tx.attempts.push_back(a.hash);
        try {
            const auto decoded = eth::decode_transaction(a.raw);
            tx.fees = fees_of(decoded);
            tx.gas = decoded.gas;
            if (is_cancel(a, tx.req, s.addr)) {
                tx.cancel_requested = true;
                if (!tx.cancel_hash) tx.cancel_hash = a.hash;
            }
        } catch (const std::exception&) {
        }
    }
}

void ManagedSenders::reopen(std::string id, std::string_view sender) {
    // Read once its sender is held (reopen_owned).
    if (Sender* s = sender_of(sender))
        asio::co_spawn(s->strand, reopen_owned(s, std::move(id)), asio::detached);
}

asio::awaitable<void> ManagedSenders::reopen_owned(Sender* s, std::string id) {
    co_await acquire(*s);
    Release<Sender> hold(*s);
    if (auto held = find(id)) {
        // Still held and unfinished: follow() sees its attempt reopened. Finished this round
        // (not yet let go): let go now, and reopened from its record.
        if (!store::is_final(held->rec.state)) {
            wake(*s);
            co_return;
        }
        std::lock_guard lock(mu_);
        std::erase(s->txs, held);
        by_id_.erase(id);
    }
    // Read now that the sender is held: nothing finishes it meanwhile.
    std::optional<store::ManagedRecord> found;
    std::vector<store::TxRecord> attempts;
    try {
        store::JournalService::Operation op = [&](store::Journal& j) {
            found = j.find_managed(id);
            if (found) attempts = j.attempts(id);
        };
        co_await journal_.run(std::move(op));
    } catch (const std::exception& e) {
        spdlog::error(
            "chain {}: {}: a reorg reopened its attempt, but the journal cannot be "
            "read ({}): its state stays as it is until the next start",
            config_.name, id, e.what());
        co_return;
    }
    if (!found || !store::is_final(found->state) || !found->nonce) co_return;  // nothing mined
    store::ManagedRecord rec = std::move(*found);
    auto parsed = parse_stored(rec.request, config_.chain_id);
    if (auto* error = std::get_if<std::string>(&parsed)) {
        spdlog::error("chain {}: {}: a reorg reopened its attempt, but it cannot carry on ({})",
                      config_.name, rec.id, *error);
        co_return;
    }
    auto tx = std::make_shared<Tx>();
    tx->req = std::move(std::get<Request>(parsed));
    tx->rec = std::move(rec);
    adopt_attempts(*tx, *s, attempts);
    const std::string was = fmt::format("{} by attempt {}", store::to_string(tx->rec.state),
                                        tx->rec.hash.value_or("?"));
    {
        std::lock_guard lock(mu_);
        s->txs.push_back(tx);
        by_id_[tx->rec.id] = tx;
    }
    const bool ok = co_await update(
        tx, TxState::broadcasting,
        fmt::format("a reorg before its block was final dropped it ({}): waiting to be mined "
                    "again",
                    was));
    if (!ok) {
        std::lock_guard lock(mu_);
        std::erase(s->txs, tx);
        by_id_.erase(tx->rec.id);
        co_return;
    }
    spdlog::warn("chain {}: {} (sender {}, nonce {}) was {}: a reorg reopened it", config_.name,
                 tx->rec.id, s->address, tx->rec.nonce.value_or(0), was);
    wake(*s);
}

asio::awaitable<void> ManagedSenders::acquire(Sender& s) {
    asio::steady_timer t(s.strand);
    while (s.busy) {
        t.expires_after(std::chrono::milliseconds(5));
        co_await t.async_wait(use_nothrow);
    }
    s.busy = true;
}

asio::awaitable<void> ManagedSenders::run(std::shared_ptr<Sender> s) {
    while (!stopped_) {
        s->wake_pending = false;
        co_await acquire(*s);
        co_await round(*s);
        s->busy = false;
        if (stopped_ || s->wake_pending) continue;
        s->timer.expires_after(config_.tx.poll_interval);
        co_await s->timer.async_wait(use_nothrow);
    }
}

asio::awaitable<void> ManagedSenders::round(Sender& s) {
    std::vector<std::shared_ptr<Tx>> txs;
    {
        std::lock_guard lock(mu_);
        txs = s.txs;
    }
    // Nonces are taken in the order transactions came: while an earlier one cannot take its
    // nonce, later ones wait.
    bool blocked = false;
    bool signer_down = false;  // one unanswered signing request a round: the others wait
    std::size_t stuck = 0;
    for (auto& tx : txs) {
        if (stopped_) co_return;
        TxState st;
        {
            std::lock_guard lock(mu_);
            st = tx->rec.state;
        }
        if (store::is_final(st)) continue;
        if (tx->cancel_requested && (st == TxState::queued || st == TxState::preparing)) {
            co_await finish(s, tx, TxState::cancelled,
                            "cancelled by an operator before it had a nonce");
            continue;
        }
        if (st == TxState::queued || st == TxState::preparing ||
            (st == TxState::signing && (!tx->gas || !tx->fees))) {
            const bool needs_nonce = st != TxState::signing;
            if ((needs_nonce && blocked) || Clock::now() < tx->not_before) {
                blocked = blocked || needs_nonce;
                continue;
            }
            const Step step = co_await prepare(s, tx);
            if (step == Step::wait) {
                blocked = blocked || needs_nonce;
                continue;
            }
            std::lock_guard lock(mu_);
            st = tx->rec.state;
        }
        if (st == TxState::signing) {
            if (signer_down || Clock::now() < tx->not_before || !tx->fees) continue;
            const Fees fees = *tx->fees;
            const Step step = co_await sign_and_send(s, tx, fees, tx->cancel_requested);
            if (step == Step::wait && tx->waits > 0) signer_down = true;
            continue;
        }
        if (st == TxState::broadcasting || st == TxState::confirming) {
            co_await follow(s, tx);
            if (tx->at_cap) ++stuck;
        }
    }
    if (stuck != s.stuck) {
        s.stuck = stuck;
        if (metrics_)
            metrics_->set_stuck_at_cap(config_.name, s.address, static_cast<double>(stuck));
    }
    std::lock_guard lock(mu_);
    std::erase_if(s.txs, [&](const std::shared_ptr<Tx>& tx) {
        if (!store::is_final(tx->rec.state)) return false;
        notify(*tx);
        by_id_.erase(tx->rec.id);
        return true;
    });
}

asio::awaitable<std::optional<std::uint64_t>> ManagedSenders::nonce_count(
    const std::string& address, const char* block) {
    json::array params;
    params.emplace_back(address);
    params.emplace_back(block);
    upstream::Forwarded f = co_await pool_.forward("eth_getTransactionCount", std::move(params),
                                                   false, Clock::now() + std::chrono::seconds(10));
    if (f.outcome != upstream::Forwarded::Outcome::answered || f.reply.is_error())
        co_return std::nullopt;
    json::error_code ec;
    json::value v = json::parse(*f.reply.result, ec);
    if (ec || !v.is_string()) co_return std::nullopt;
    co_return rpc::parse_quantity(v.get_string());
}

asio::awaitable<std::optional<Fees>> ManagedSenders::estimate_fees(std::string& why) {
    // Caps are applied by the caller's sender; here the chain's.
    const FeeCaps caps{config_.tx.fee.max_fee_per_gas_gwei * kGwei,
                       config_.tx.fee.max_priority_fee_gwei * kGwei};
    constexpr auto kLegacyFor = std::chrono::minutes(5);
    bool legacy = false;
    {
        std::lock_guard lock(legacy_mu_);
        legacy = legacy_until_ && Clock::now() < *legacy_until_;
    }
    const auto deadline = Clock::now() + std::chrono::seconds(10);
    if (!legacy) {
        json::array percentiles;
        percentiles.emplace_back(50);
        json::array params;
        params.emplace_back("0x5");
        params.emplace_back("latest");
        params.emplace_back(std::move(percentiles));
        upstream::Forwarded f =
            co_await pool_.forward("eth_feeHistory", std::move(params), false, deadline);
        if (f.outcome != upstream::Forwarded::Outcome::answered) {
            why = "waiting for a node to estimate fees: " + f.error.message;
            co_return std::nullopt;
        }
        // An error answer: legacy fees for this estimate; remembered only when no node serves
        // the method.
        bool no_base_fee = f.reply.is_error() && f.reply.error.code == -32601;
        if (!f.reply.is_error()) {
            json::error_code ec;
            json::value v = json::parse(*f.reply.result, ec);
            const json::array* base = !ec && v.is_object()
                                          ? v.get_object().if_contains("baseFeePerGas")
                                                ? v.at("baseFeePerGas").if_array()
                                                : nullptr
                                          : nullptr;
            no_base_fee = !base || base->empty() ||
                          std::all_of(base->begin(), base->end(),
                                      [](const json::value& b) { return b == "0x0"; });
            if (!no_base_fee) {
                try {
                    const std::uint64_t floor =
                        std::min<std::uint64_t>(kGwei, caps.max_priority_fee_per_gas);
                    Fees fees = estimate_from_history(v, floor, caps);
                    std::lock_guard lock(legacy_mu_);
                    legacy_until_.reset();
                    co_return fees;
                } catch (const std::exception& e) {
                    why = std::string("the nodes' eth_feeHistory cannot be read: ") + e.what();
                    co_return std::nullopt;
                }
            }
        }
        if (no_base_fee) {
            std::lock_guard lock(legacy_mu_);
            legacy_until_ = Clock::now() + kLegacyFor;
        }
    }
    json::array params;
    upstream::Forwarded f =
        co_await pool_.forward("eth_gasPrice", std::move(params), false, deadline);
    if (f.outcome != upstream::Forwarded::Outcome::answered || f.reply.is_error()) {
        why = "waiting for a node to estimate fees: " +
              (f.reply.is_error() ? f.reply.error.message : f.error.message);
        co_return std::nullopt;
    }
    json::error_code ec;
    json::value v = json::parse(*f.reply.result, ec);
    auto gp = !ec && v.is_string() ? rpc::parse_quantity(v.get_string()) : std::nullopt;
    if (!gp) {
        why = "the nodes' eth_gasPrice is not a quantity";
        co_return std::nullopt;
    }
    co_return estimate_legacy(*gp, caps);
}

asio::awaitable<ManagedSenders::Step> ManagedSenders::prepare(Sender& s, std::shared_ptr<Tx> tx) {
    const bool self_send = tx->cancel_requested || tx->req.fills;
    bool has_nonce;
    {
        std::lock_guard lock(mu_);
        has_nonce = tx->rec.state == TxState::signing;
        if (tx->rec.state == TxState::queued) tx->rec.state = TxState::preparing;
    }
    // Gas: the estimate with the margin, or the client's gas when that is enough.
    if (self_send) {
        tx->gas = kTransferGas;
    } else {
        json::object call;
        call["from"] = s.address;
        if (tx->req.to) call["to"] = eth::to_hex(*tx->req.to);
        if (!tx->req.value.empty()) call["value"] = eth::to_quantity(tx->req.value);
        if (!tx->req.input.empty()) call["data"] = eth::to_hex(tx->req.input);
        json::array params;
        params.emplace_back(std::move(call));
        upstream::Forwarded f = co_await pool_.forward("eth_estimateGas", std::move(params), false,
                                                       Clock::now() + std::chrono::seconds(10));
        if (f.outcome != upstream::Forwarded::Outcome::answered) {
            wait(*tx, "waiting for a node to estimate gas: " + f.error.message);
            co_return Step::wait;
        }
        const bool revert = f.reply.is_error() && is_revert(f.reply.error);
        if (revert && tx->req.gas && !has_nonce) {
            // The client set its gas: the estimate's state may not be the one it will run in
            // (a dependent transaction before it); sent as asked, as a node would.
            tx->gas = *tx->req.gas;
        } else if (f.reply.is_error()) {
            const jsonrpc::Error node = f.reply.error;
            if (revert && !has_nonce) {
                {
                    std::lock_guard lock(mu_);
                    tx->refusal = node;
                    ++tx->refusals;
                }
                co_await finish(
                    s, tx, TxState::failed,
                    "eth_estimateGas: " + std::string(util::utf8_prefix(node.message, 300)) +
                        ": it would revert, so it was not sent");
                co_return Step::done;
            }
            co_await step_failed(
                s, tx, "eth_estimateGas: " + std::string(util::utf8_prefix(node.message, 300)),
                node);
            co_return Step::wait;
        }
        if (!tx->gas) {
            json::error_code ec;
            json::value v = json::parse(*f.reply.result, ec);
            std::optional<std::uint64_t> estimate;
            if (!ec && v.is_string()) estimate = rpc::parse_quantity(v.get_string());
            if (!estimate) {
                wait(*tx, "the node's eth_estimateGas answer is not a quantity; asking again");
                co_return Step::wait;
            }
            tx->gas = gas_limit(*estimate, config_.tx.gas_margin_percent, tx->req.gas);
        }
    }
    // Fees: the estimate, or the client's where higher.
    std::string why;
    auto estimate = co_await estimate_fees(why);
    if (!estimate) {
        tx->gas = 0;
        wait(*tx, why);
        co_return Step::wait;
    }
    // A client's fees are the starting point where higher, within the caps. A filler may carry
    // fees above them: it must replace an attempt that may still be pending (21,000 gas at most).
    if (tx->req.fills)
        tx->fees = start_fees(*estimate, tx->req.client_fees);
    else if (self_send)
        tx->fees = capped(*estimate, s.caps);
    else
        tx->fees = capped(start_fees(*estimate, tx->req.client_fees), s.caps);

    TxState st;
    {
        std::lock_guard lock(mu_);
        st = tx->rec.state;
    }
    if (st == TxState::signing) co_return Step::done;  // it has its nonce already

    // The nonce: taken late, in the journal operation that records it.
    auto pending = co_await nonce_count(s.address, "pending");
    if (!pending) {
        tx->gas = 0;
        wait(*tx, "waiting for a node to read the sender's pending nonce");
        co_return Step::wait;
    }
    std::optional<std::uint64_t> held_max = s.orphan_max;
    {
        std::lock_guard lock(mu_);
        for (const auto& other : s.txs) {
            if (other == tx || !other->rec.nonce) continue;
            const TxState os = other->rec.state;
            if (os == TxState::signing || os == TxState::broadcasting || os == TxState::confirming)
                held_max = std::max(held_max.value_or(0), *other->rec.nonce);
        }
    }
    std::uint64_t nonce = 0;
    std::optional<std::uint64_t> lowered_from;
    const std::int64_t now = unix_ms();
    std::string reason;
    try {
        store::JournalService::Operation op = [&](store::Journal& j) {
            // Lowered only when the chain says the range is empty and the gateway holds nothing
            // in it: a nonce it took and never got mined (a dead letter, a crash) is handed out
            // again.
            const auto next = j.next_nonce(config_.name, s.address);
            const NonceStart start = reconcile_nonce(next, *pending, held_max);
            if (start.lowered) {
                j.set_next_nonce(config_.name, s.address, start.next);
                lowered_from = next;
            }
            // Never at or below a nonce the gateway still holds, whatever the journal says.
            const std::uint64_t floor = held_max ? std::max(start.next, *held_max + 1) : start.next;
            nonce = j.take_nonce(config_.name, s.address, floor);
            reason = fmt::format("nonce {} taken (chain pending count {}); gas {}; signing", nonce,
                                 *pending, tx->gas);
            j.update_managed(store::ManagedUpdate{tx->rec.id, TxState::signing, reason, now, nonce,
                                                  std::nullopt, std::nullopt});
        };
        co_await journal_.run(std::move(op));
    } catch (const std::exception& e) {
        tx->gas = 0;
        wait(*tx, fmt::format("the journal cannot be written ({}); trying again", e.what()));
        co_return Step::wait;
    }
    if (lowered_from)
        spdlog::warn(
            "chain {}: sender {}: next nonce lowered from {} to {}: the chain has "
            "nothing pending in between and the gateway holds nothing there",
            config_.name, s.address, *lowered_from, *pending);
    {
        std::lock_guard lock(mu_);
        tx->rec.state = TxState::signing;
        tx->rec.nonce = nonce;
        tx->rec.reason = reason;
        tx->rec.updated_ms = now;
    }
    if (metrics_) metrics_->count_managed(config_.name, "SIGNING");
    co_return Step::done;
}

asio::awaitable<ManagedSenders::Step> ManagedSenders::sign_and_send(Sender& s,
                                                                    std::shared_ptr<Tx> tx,
                                                                    Fees fees, bool cancel) {
    std::uint64_t nonce;
    bool replacing;
    {
        std::lock_guard lock(mu_);
        nonce = *tx->rec.nonce;
        replacing = tx->rec.state == TxState::broadcasting;
    }
    eth::UnsignedTx u;
    u.type = fees.legacy ? eth::TxType::legacy : eth::TxType::dynamic_fee;
    u.chain_id = config_.chain_id;
    u.nonce = nonce;
    u.gas_price = fees.gas_price;
    u.max_fee_per_gas = fees.max_fee_per_gas;
    u.max_priority_fee_per_gas = fees.max_priority_fee_per_gas;
    const bool self_send = cancel || tx->req.fills;
    u.gas = self_send ? kTransferGas : tx->gas;
    if (self_send)
        u.to = s.addr;
    else
        u.to = tx->req.to;
    if (!self_send) {
        u.value = tx->req.value;
        u.input = tx->req.input;
    }
    const auto deadline = Clock::now() + s.sign_timeout;
    custody::Signed r = co_await s.signer->sign(u, s.addr, deadline);
    using Outcome = custody::Signed::Outcome;

    std::optional<eth::Transaction> signed_tx;
    if (r.outcome == Outcome::signed_ok) {
        try {
            signed_tx = eth::decode_transaction(r.raw);
        } catch (const std::exception& e) {
            r.outcome = Outcome::malformed;
            r.detail = std::string("its answer is not a valid transaction: ") + e.what();
        }
        // Exactly the transaction asked for, signed by the sender: re-encoding it with the
        // signature gives the same bytes.
        bool same = false;
        if (signed_tx) {
            try {
                same =
                    signed_tx->sender == s.addr &&
                    eth::encode_signed(u, signed_tx->y_parity, signed_tx->r, signed_tx->s) == r.raw;
            } catch (const std::exception&) {
            }
        }
        if (signed_tx && !same) {
            r.outcome = Outcome::malformed;
            r.detail = "it answered a transaction other than the one asked for";
        }
    }
    if (metrics_) {
        metrics_->count_signing(s.signer->id(), custody::to_string(r.outcome));
        metrics_->set_signer_ready(s.signer->id(), r.outcome != Outcome::unavailable);
    }
    if (r.outcome != Outcome::signed_ok) {
        const std::string what = fmt::format("signer {} {}: {}", s.signer->id(),
                                             custody::to_string(r.outcome), r.detail);
        if (replacing) {
            // An attempt is out there: the replacement waits for the next bump.
            spdlog::warn("chain {}: {}: replacement not signed: {}", config_.name, tx->rec.id,
                         what);
            co_return Step::wait;
        }
        if (r.outcome == Outcome::unavailable) {
            // Custody down, slow or not ready (a key not loaded, an approval pending): the
            // transaction waits, with its nonce, and asks again for as long as it takes. Never
            // counted toward retry.max_attempts: custody that is away queues, never skips (C1).
            ++tx->waits;
            const auto delay = std::min<std::chrono::milliseconds>(
                config_.tx.retry.backoff * (1u << std::min(tx->waits - 1, 6u)),
                std::chrono::seconds(60));
            tx->not_before = Clock::now() + delay;
            wait(*tx, fmt::format("{}; nonce {} kept; asking again in {} ms", what, nonce,
                                  delay.count()));
            co_return Step::wait;
        }
        tx->waits = 0;
        if (r.outcome == Outcome::refused && !tx->req.fills) {
            // The signer's no (its policy): the transaction fails with its reason and its nonce
            // is released. A filler is never given up: later nonces wait on it.
            {
                std::lock_guard lock(mu_);
                tx->refusal = jsonrpc::Error(kServerError, what);
                ++tx->refusals;
            }
            co_await finish(s, tx, TxState::failed, what);
            co_return Step::done;
        }
        // An answer that cannot be used: a failed try, a dead letter once they run out.
        co_await step_failed(s, tx, what, jsonrpc::Error(kServerError, what));
        co_return Step::wait;
    }
    tx->waits = 0;

    SubmitResult sent = co_await txm_.submit_attempt(r.raw, tx->rec.id, tx->rec.client);
    if (!sent.journaled) {
        // Not on disk, so never sent: signed again (the same bytes) next round.
        std::string why = "the journal cannot be written";
        if (sent.reply && sent.reply->is_error()) why = sent.reply->error.message;
        tx->not_before = Clock::now() + config_.tx.retry.backoff;
        wait(*tx, "the signed attempt was not journaled (" + why + "); trying again");
        co_return Step::wait;
    }
    const std::string hash = eth::to_hex(signed_tx->hash);
    if (std::find(tx->attempts.begin(), tx->attempts.end(), hash) == tx->attempts.end())
        tx->attempts.push_back(hash);
    tx->fees = fees;
    tx->attempt_head = pool_.head().value_or(0);
    if (cancel && !tx->cancel_hash) tx->cancel_hash = hash;
    if (replacing && metrics_) metrics_->count_replacement(config_.name);
    const bool refused = sent.reply && sent.reply->is_error();
    std::string reason = attempt_reason(cancel, tx->attempts.size(), nonce, fees, sent);
    if (refused) {
        // Before the hash is known to waiting clients: they hear of the refusal.
        std::lock_guard lock(mu_);
        tx->refusal = sent.reply->error;
        ++tx->refusals;
    }
    co_await update(tx, TxState::broadcasting, std::move(reason), std::nullopt, hash);
    co_return Step::done;
}

asio::awaitable<void> ManagedSenders::follow(Sender& s, std::shared_ptr<Tx> tx) {
    // The attempts' states: from the raw layer while it holds them, else from the journal.
    std::vector<store::TxRecord> records;
    bool from_journal = false;
    for (const auto& h : tx->attempts) {
        auto r = txm_.held_record(h);
        if (!r) {
            from_journal = true;
            break;
        }
        records.push_back(std::move(*r));
    }
    if (from_journal) {
        records.clear();
        try {
            store::JournalService::Operation op = [&](store::Journal& j) {
                records = j.attempts(tx->rec.id);
            };
            co_await journal_.run(std::move(op));
        } catch (const std::exception& e) {
            wait(*tx, fmt::format("the journal cannot be read ({})", e.what()));
            co_return;
        }
    }
    // Only this nonce's attempts: an earlier try's (before a retry or a new nonce) are history.
    std::optional<std::uint64_t> nonce;
    {
        std::lock_guard lock(mu_);
        nonce = tx->rec.nonce;
    }
    std::erase_if(records, [&](const store::TxRecord& a) { return a.nonce != nonce; });
    if (records.empty()) co_return;
    const store::TxRecord* mined = nullptr;
    bool all_final = true;
    for (const auto& a : records) {
        if (is_mined(a)) mined = &a;
        if (!store::is_final(a.state)) all_final = false;
    }
    if (mined) {
        const bool cancelled = is_cancel(*mined, tx->req, s.addr);
        const std::string where = fmt::format("block {} ({})", mined->block_number.value_or(0),
                                              mined->block_hash.value_or("?"));
        TxState st;
        std::optional<std::string> current;
        {
            std::lock_guard lock(mu_);
            st = tx->rec.state;
            current = tx->rec.hash;
        }
        if (mined->state == TxState::confirming) {
            if (st != TxState::confirming || current != mined->hash)
                co_await update(tx, TxState::confirming,
                                fmt::format("{} {} mined in {}", cancelled ? "cancel" : "attempt",
                                            mined->hash, where),
                                std::nullopt, mined->hash);
        } else if (mined->state == TxState::completed) {
            co_await finish(
                s, tx, cancelled ? TxState::cancelled : TxState::completed,
                fmt::format("{} {} mined in {}: {}", cancelled ? "cancelled: self-send" : "attempt",
                            mined->hash, where, mined->reason),
                mined->hash, true);
        } else {
            co_await finish(s, tx, TxState::failed,
                            fmt::format("attempt {} reverted in {}", mined->hash, where),
                            mined->hash, true);
        }
        co_return;
    }
    if (all_final) {
        co_await dead_attempts(s, tx);
        co_return;
    }
    {
        TxState st;
        {
            std::lock_guard lock(mu_);
            st = tx->rec.state;
        }
        if (st == TxState::confirming)
            co_await update(tx, TxState::broadcasting,
                            "its block is no longer in the chain (a reorg): waiting to be mined "
                            "again");
    }
    // None mined yet. A cancel goes out at once; otherwise a replacement with higher fees once
    // tx.fee.bump_after_blocks blocks went by without it.
    const std::uint64_t head = pool_.head().value_or(0);
    const bool cancel_now = tx->cancel_requested && !tx->cancel_hash;
    if (!cancel_now) {
        if (!head) co_return;
        if (!tx->attempt_head || head < tx->attempt_head) {
            tx->attempt_head = head;
            co_return;
        }
        if (head < tx->attempt_head + config_.tx.fee.bump_after_blocks) co_return;
    }
    if (!tx->fees) co_return;
    // A cancel may pass the caps: it costs 21,000 gas at most, and must outbid the original.
    FeeCaps caps = s.caps;
    if (tx->cancel_requested) caps = FeeCaps{};
    const Bump b = bump(*tx->fees, config_.tx.fee.bump_percent, caps);
    Fees next = b.fees;
    if (!b.at_cap) {
        // Re-estimated: a spike may call for more than the minimum raise.
        std::string why;
        std::optional<Fees> fresh = co_await estimate_fees(why);
        if (fresh && fresh->legacy == next.legacy) {
            const Fees f = capped(*fresh, caps);
            next.max_fee_per_gas = std::max(next.max_fee_per_gas, f.max_fee_per_gas);
            next.max_priority_fee_per_gas =
                std::max(next.max_priority_fee_per_gas, f.max_priority_fee_per_gas);
            next.gas_price = std::max(next.gas_price, f.gas_price);
        }
    } else {
        tx->attempt_head = head;
        if (!tx->at_cap) {
            tx->at_cap = true;
            spdlog::warn(
                "chain {}: {} (sender {}, nonce {}) is not mined and its fees are at the "
                "cap (tx.fee.max_fee_per_gas_gwei {}, max_priority_fee_gwei {}): it "
                "stays as it is; raise the cap or cancel it",
                config_.name, tx->rec.id, s.address, tx->rec.nonce.value_or(0),
                config_.tx.fee.max_fee_per_gas_gwei, config_.tx.fee.max_priority_fee_gwei);
            wait(*tx,
                 "not mined, fees at the cap: stuck until the base fee falls or the cap rises");
        }
        if (!cancel_now) co_return;
    }
    if (!b.at_cap) tx->at_cap = false;
    if (!cancel_now) {
        // Mined since the raw layer last looked? Then no replacement is needed.
        for (const auto& a : records) {
            json::array params;
            params.emplace_back(a.hash);
            upstream::Forwarded f =
                co_await pool_.forward("eth_getTransactionReceipt", std::move(params), false,
                                       Clock::now() + std::chrono::seconds(10));
            if (f.outcome != upstream::Forwarded::Outcome::answered || f.reply.is_error() ||
                *f.reply.result != "null")
                co_return;  // mined, or cannot tell: the next round looks again
        }
    }
    if (!cancel_now)
        spdlog::info("chain {}: {} not mined after {} block(s): replacing it with higher fees",
                     config_.name, tx->rec.id, head - tx->attempt_head);
    tx->attempt_head = head;
    co_await sign_and_send(s, tx, next, tx->cancel_requested);
}

asio::awaitable<void> ManagedSenders::dead_attempts(Sender& s, std::shared_ptr<Tx> tx) {
    // Every attempt is final and none was mined: its nonce was used by another party, or the
    // nodes refused it. Only nodes at the chain's head are believed, and another party's use
    // only once it is confirmations deep: a null receipt from a node behind proves nothing, and
    // signing again with the next nonce would pay twice.
    const std::uint64_t nonce = tx->rec.nonce.value_or(0);
    const NonceUse use =
        co_await nonce_use(pool_, s.address, nonce, tx->attempts, config_.tx.confirmations);
    if (use.kind == NonceUse::Kind::unknown) co_return;  // asked again next round
    if (use.kind == NonceUse::Kind::ours) {
        // An attempt given up on one node's word was mined after all.
        const bool ok = use.receipt.is_object() && use.receipt.as_object().contains("status") &&
                        use.receipt.at("status") == "0x1";
        co_await finish(s, tx, ok ? TxState::completed : TxState::failed,
                        fmt::format("attempt {} was mined after all ({})", use.hash,
                                    ok ? "success" : "reverted"),
                        use.hash, true);
        co_return;
    }
    if (use.kind == NonceUse::Kind::another) {
        if (tx->req.fills || tx->cancel_requested) {
            const TxState end = tx->cancel_requested ? TxState::cancelled : TxState::failed;
            const char* what = tx->cancel_requested ? "cancel" : "fill";
            co_await finish(s, tx, end,
                            fmt::format("nonce {} was used by another transaction: nothing "
                                        "left to {}",
                                        nonce, what),
                            std::nullopt, true);
            co_return;
        }
        spdlog::warn(
            "chain {}: {}: nonce {} of {} was used by another transaction, not one of "
            "the gateway's: signing it again with the next nonce",
            config_.name, tx->rec.id, nonce, s.address);
        const bool ok =
            co_await update(tx, TxState::preparing,
                            fmt::format("nonce {} was used by another transaction, not one of the "
                                        "gateway's: signing again with the next nonce",
                                        nonce));
        if (!ok) co_return;
        tx->gas = 0;
        tx->attempt_head = 0;
        {
            std::lock_guard lock(mu_);
            tx->rec.nonce.reset();
        }
        wake(s);
        co_return;
    }
    std::string why = "every attempt was refused";
    {
        // The newest attempt's reason says what the nodes said.
        std::vector<store::TxRecord> records;
        try {
            store::JournalService::Operation op = [&](store::Journal& j) {
                records = j.attempts(tx->rec.id);
            };
            co_await journal_.run(std::move(op));
            if (!records.empty()) why = records.back().reason;
        } catch (const std::exception&) {
        }
    }
    co_await step_failed(s, tx, "not mined: " + why, jsonrpc::Error(kServerError, why));
}

asio::awaitable<void> ManagedSenders::step_failed(Sender& s, std::shared_ptr<Tx> tx,
                                                  std::string reason,
                                                  std::optional<jsonrpc::Error> error) {
    ++tx->failures;
    const unsigned max = std::max(1u, config_.tx.retry.max_attempts);
    {
        std::lock_guard lock(mu_);
        if (error) tx->refusal = std::move(error);
        ++tx->refusals;
    }
    if (!tx->req.fills && tx->failures >= max) {
        co_await finish(s, tx, TxState::dead_letter,
                        fmt::format("{} (failure {} of {}: retries exhausted; POST "
                                    "/admin/transactions/{}/retry to try again)",
                                    reason, tx->failures, max, tx->rec.id));
        co_return;
    }
    const auto delay = std::min<std::chrono::milliseconds>(
        config_.tx.retry.backoff * (1u << std::min(tx->failures - 1, 6u)),
        std::chrono::seconds(60));
    tx->not_before = Clock::now() + delay;
    TxState st;
    {
        std::lock_guard lock(mu_);
        st = tx->rec.state;
    }
    // With its nonce it is signed again; without, its nonce is still to take.
    const TxState next =
        tx->rec.nonce && st != TxState::queued && st != TxState::preparing ? TxState::signing : st;
    spdlog::warn("chain {}: {}: {} (failure {} of {}; trying again in {} ms)", config_.name,
                 tx->rec.id, reason, tx->failures, max, delay.count());
    co_await update(tx, next,
                    fmt::format("{} (failure {} of {}; trying again in {} ms)", reason,
                                tx->failures, max, delay.count()));
    std::lock_guard lock(mu_);
    notify(*tx);
}

asio::awaitable<void> ManagedSenders::finish(Sender& s, std::shared_ptr<Tx> tx, TxState state,
                                             std::string reason, std::optional<std::string> hash,
                                             bool nonce_used) {
    // A transaction that ends without using the nonce it took releases it: handed out again when
    // it was the last one taken and no attempt ever reached a node, else filled with a zero-value
    // self-send (outbidding any attempt still pending somewhere) so later nonces are not stuck.
    std::optional<std::uint64_t> nonce;
    TxState before;
    {
        std::lock_guard lock(mu_);
        before = tx->rec.state;
        nonce = tx->rec.nonce;
    }
    const bool releases = !nonce_used && state != TxState::completed && !tx->req.fills && nonce &&
                          before != TxState::queued && before != TxState::preparing;
    const auto attempts = static_cast<std::uint32_t>(tx->attempts.size());
    std::optional<Fees> outbid;
    if (tx->fees) outbid = bump(*tx->fees, config_.tx.fee.bump_percent, FeeCaps{}).fees;
    const std::int64_t now = unix_ms();
    std::optional<store::ManagedRecord> filler;
    bool released = false;
    try {
        store::JournalService::Operation op = [&](store::Journal& j) {
            j.update_managed(
                store::ManagedUpdate{tx->rec.id, state, reason, now, std::nullopt, hash, attempts});
            if (!releases) return;
            bool reached_a_node = false;
            for (const auto& a : j.attempts(tx->rec.id))
                if (a.nonce == *nonce && a.broadcasts > 0) reached_a_node = true;
            const auto next = j.next_nonce(config_.name, s.address);
            if (!reached_a_node && next && *next == *nonce + 1) {
                j.set_next_nonce(config_.name, s.address, *nonce);
                released = true;
                return;
            }
            store::ManagedRecord f;
            f.id = new_id();
            f.chain = config_.name;
            f.sender = s.address;
            f.request = filler_request(s.address, tx->rec.id, outbid);
            f.nonce = *nonce;
            f.state = TxState::signing;
            f.reason = fmt::format(
                "fills nonce {} of {} (a dead letter) so later transactions "
                "are not stuck",
                *nonce, tx->rec.id);
            f.created_ms = f.updated_ms = now;
            filler = j.insert_managed(f).first;
        };
        co_await journal_.run(std::move(op));
    } catch (const std::exception& e) {
        wait(*tx, fmt::format("the journal cannot be written ({}); trying again", e.what()));
        co_return;
    }
    // The nonce is used by the attempt `hash`: the others will never be mined.
    if (hash && nonce_used) co_await txm_.replace_attempts(tx->rec.id, *hash);
    std::string nonce_text;
    if (nonce) nonce_text = fmt::format(", nonce {}", *nonce);
    spdlog::log(state == TxState::completed || state == TxState::confirming ? spdlog::level::info
                                                                            : spdlog::level::warn,
                "chain {}: {} (sender {}{}): {} -> {}: {}", config_.name, tx->rec.id, s.address,
                nonce_text, store::to_string(before), store::to_string(state), reason);
    if (released)
        spdlog::info("chain {}: sender {}: nonce {} is handed out again", config_.name, s.address,
                     *nonce);
    {
        std::lock_guard lock(mu_);
        tx->rec.state = state;
        tx->rec.reason = std::move(reason);
        tx->rec.updated_ms = now;
        if (hash) tx->rec.hash = hash;
        notify(*tx);
        if (filler) {
            auto f = std::make_shared<Tx>();
            f->rec = *filler;
            f->req = std::get<Request>(parse_stored(filler->request, config_.chain_id));
            s.txs.push_back(f);
            by_id_[f->rec.id] = f;
            spdlog::warn("chain {}: sender {}: {} fills nonce {} of {}", config_.name, s.address,
                         f->rec.id, *nonce, tx->rec.id);
        }
    }
    if (metrics_) metrics_->count_managed(config_.name, store::to_string(state));
}

asio::awaitable<bool> ManagedSenders::update(std::shared_ptr<Tx> tx, TxState state,
                                             std::string reason, std::optional<std::uint64_t> nonce,
                                             std::optional<std::string> hash) {
    TxState before;
    {
        std::lock_guard lock(mu_);
        before = tx->rec.state;
        if (reason.empty()) reason = tx->rec.reason;
    }
    const store::ManagedUpdate u{tx->rec.id,
                                 state,
                                 reason,
                                 unix_ms(),
                                 nonce,
                                 hash,
                                 static_cast<std::uint32_t>(tx->attempts.size())};
    try {
        store::JournalService::Operation op = [&](store::Journal& j) { j.update_managed(u); };
        co_await journal_.run(std::move(op));
    } catch (const std::exception& e) {
        wait(*tx, fmt::format("the journal cannot be written ({}); trying again", e.what()));
        co_return false;
    }
    if (before != state)
        spdlog::info("chain {}: {} (sender {}): {} -> {}: {}", config_.name, tx->rec.id,
                     tx->rec.sender, store::to_string(before), store::to_string(state), reason);
    std::lock_guard lock(mu_);
    tx->rec.state = state;
    tx->rec.reason = std::move(reason);
    tx->rec.updated_ms = u.at_ms;
    tx->rec.attempts = *u.attempts;
    if (nonce) tx->rec.nonce = nonce;
    if (hash) tx->rec.hash = hash;
    notify(*tx);
    if (before != state && metrics_) metrics_->count_managed(config_.name, store::to_string(state));
    co_return true;
}

}  // namespace gateway::txm
