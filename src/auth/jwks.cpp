// The key sets tokens are checked against: one JWKS document given once, or auth.jwt.jwks_url
// fetched at start, every refresh_ms and when a token names a kid the set does not have.

#include "gateway/auth/auth.hpp"

#include "gateway/metrics/metrics.hpp"
#include "gateway/upstream/http_client.hpp"
#include "gateway/util/nothrow.hpp"
#include "jose.hpp"

#include <fmt/format.h>
#include <openssl/evp.h>
#include <spdlog/spdlog.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <atomic>
#include <limits>
#include <mutex>
#include <stdexcept>

namespace gateway::auth {

namespace asio = boost::asio;
using util::use_nothrow;

namespace {

constexpr std::chrono::seconds kFetchTimeout{5};
constexpr std::size_t kMaxJwksBytes = 1024 * 1024;

// Keys by kid, swapped whole when new ones arrive: a reader takes the current map under a short
// lock and then uses it without one, so a swap never waits for a signature check.
class KeyMapSet : public KeySet {
public:
    std::optional<bool> verify(std::string_view kid, std::string_view alg,
                               std::string_view signed_part,
                               std::string_view signature) const override {
        const auto keys = snapshot();
        const auto it = keys->find(kid);
        if (it == keys->end() || detail::algorithm_of(it->second.type) != alg) return std::nullopt;
        return detail::verify_signature(it->second, alg, signed_part, signature);
    }

    bool has(std::string_view kid) const override { return snapshot()->contains(kid); }

    std::shared_ptr<const void> key_handle(std::string_view kid) const override {
        const auto keys = snapshot();
        const auto it = keys->find(kid);
        if (it == keys->end()) return nullptr;
        return it->second.key;
    }

protected:
    std::shared_ptr<const detail::KeyMap> snapshot() const {
        std::lock_guard lock(mu_);
        return keys_;
    }
    void replace(std::shared_ptr<const detail::KeyMap> keys) {
        std::lock_guard lock(mu_);
        keys_.swap(keys);
        // The old map (and its keys) is released outside the lock, by `keys`' destructor.
    }

private:
    mutable std::mutex mu_;
    std::shared_ptr<const detail::KeyMap> keys_ = std::make_shared<const detail::KeyMap>();
};

class StaticKeySet final : public KeyMapSet {
public:
    explicit StaticKeySet(detail::KeyMap keys) {
        replace(std::make_shared<const detail::KeyMap>(std::move(keys)));
    }
    void start() override {}
    void stop() override {}
    asio::awaitable<bool> refetch_for_unknown_kid() override { co_return false; }
};

config::UpstreamConfig jwks_upstream(const config::JwtConfig& c) {
    config::UpstreamConfig u;
    u.id = "jwks";
    u.url = c.jwks_url;
    u.timeout = kFetchTimeout;
    u.max_idle_connections = 1;
    u.max_response_bytes = kMaxJwksBytes;
    u.ca_file = c.ca_file;
    return u;
}

// "a, b, c" for a log line: kids are not secrets, but they come from outside, so each is cut.
std::string kid_list(const detail::KeyMap& keys) {
    std::string out;
    std::size_t n = 0;
    for (const auto& [kid, key] : keys) {
        if (!out.empty()) out += ", ";
        if (++n > 20) return out + "...";
        out += kid.substr(0, 64);
    }
    return out.empty() ? "none" : out;
}

// Everything about fetching runs on one strand: the periodic loop, the fetches, the callers
// waiting for a fetch. The key map itself is read from any thread (KeyMapSet).
class JwksKeySet final : public KeyMapSet, public std::enable_shared_from_this<JwksKeySet> {
public:
    JwksKeySet(const config::JwtConfig& config, asio::any_io_executor executor,
               metrics::Metrics* metrics, const util::Clock& clock,
               std::chrono::milliseconds min_refetch)
        : strand_(asio::make_strand(executor)),
          timer_(strand_),
          client_(upstream::make_http_client(jwks_upstream(config), upstream::HttpMethod::get)),
          refresh_(config.refresh),
          min_refetch_(min_refetch),
          metrics_(metrics),
          clock_(clock) {}

    void start() override {
        if (started_.exchange(true)) return;
        asio::co_spawn(strand_, run(shared_from_this()), asio::detached);
    }

    void stop() override {
        asio::post(strand_, [self = shared_from_this()] {
            self->stopped_ = true;
            self->timer_.cancel();
            if (self->in_flight_) self->in_flight_->cancel();
        });
    }

    /// Seconds since the last successful fetch, now; -1 before the first. Any thread.
    double age_seconds() const {
        const auto ticks = last_ok_ticks_.load();
        if (ticks == kNever) return -1;
        const util::Clock::time_point ok{util::Clock::duration(ticks)};
        return std::chrono::duration<double>(clock_.now() - ok).count();
    }

    asio::awaitable<bool> refetch_for_unknown_kid() override {
        co_return co_await asio::co_spawn(strand_, refetch(shared_from_this()),
                                          asio::use_awaitable);
    }

private:
    // The parameter keeps the set alive while the coroutine runs (it lives in the frame).
    asio::awaitable<void> run(std::shared_ptr<JwksKeySet> /*self*/) {
        while (!stopped_) {
            co_await fetch_or_join();
            if (stopped_) break;
            timer_.expires_after(refresh_);
            co_await timer_.async_wait(use_nothrow);
        }
    }

    asio::awaitable<bool> refetch(std::shared_ptr<JwksKeySet> /*self*/) {
        if (stopped_) co_return false;
        // A fetch in flight answers for this caller too; else one at most every min_refetch,
        // so that tokens naming made-up kids cannot make the gateway hammer the JWKS.
        if (!fetch_done_ && last_start_ && clock_.now() - *last_start_ < min_refetch_)
            co_return false;
        co_await fetch_or_join();
        co_return true;
    }

    // Fetches now, or waits for the fetch in flight. On the strand.
    asio::awaitable<void> fetch_or_join() {
        if (auto done = fetch_done_) {
            co_await done->async_wait(use_nothrow);  // cancelled when that fetch ends
            co_return;
        }
        auto done =
            std::make_shared<asio::steady_timer>(strand_, asio::steady_timer::time_point::max());
        fetch_done_ = done;
        in_flight_ = std::make_shared<upstream::CancelSignal>();
        last_start_ = clock_.now();
        // A named PostOptions: GCC 12 destroys an aggregate temporary in a co_await expression
        // twice (its shared_ptr would be released once too often).
        upstream::PostOptions options;
        options.deadline = std::chrono::steady_clock::now() + kFetchTimeout;
        options.cancel = in_flight_;
        upstream::HttpResult r = co_await client_->post(std::string(), std::move(options));
        in_flight_.reset();
        std::string failure;
        if (!r.ok()) {
            failure = r.detail;
        } else if (r.status != 200) {
            failure = fmt::format("HTTP status {}", r.status);
        } else if (auto jwks = detail::parse_jwks(r.body); !jwks) {
            failure = "the answer is " + jwks.error();
        } else {
            take(std::move(*jwks));
        }
        record(failure);
        fetch_done_.reset();
        done->cancel();
    }

    void take(detail::Jwks jwks) {
        // A key fetched again unchanged keeps its handle, so the tokens cached with it stay.
        const auto before = snapshot();
        for (auto& [kid, key] : jwks.keys)
            if (auto it = before->find(kid); it != before->end() && it->second.type == key.type &&
                                             EVP_PKEY_eq(it->second.key.get(), key.key.get()) == 1)
                key.key = it->second.key;
        const std::string kids = kid_list(jwks.keys);
        const std::size_t count = jwks.keys.size();
        // An empty set is an answer too: the service revoked every key.
        replace(std::make_shared<const detail::KeyMap>(std::move(jwks.keys)));
        last_ok_ = clock_.now();
        last_ok_ticks_ = last_ok_->time_since_epoch().count();
        if (kids != last_kids_ || failing_) {
            spdlog::info("auth.jwt: {}the JWKS holds {} usable key(s): {}{}",
                         failing_ ? "fetched again: " : "", count, kids,
                         jwks.skipped ? fmt::format(" ({} skipped: not RSA >= 2048 bits or P-256, "
                                                    "no kid, or not for signatures)",
                                                    jwks.skipped)
                                      : "");
            last_kids_ = kids;
        }
        failing_ = false;
        count_ = count;
    }

    // Metrics after every attempt (the age is read at each scrape: age_seconds()); a warning
    // when fetching starts failing, not at each failure.
    void record(const std::string& failure) {
        if (!failure.empty() && !failing_) {
            failing_ = true;
            if (last_ok_) {
                spdlog::warn(
                    "auth.jwt: cannot fetch the JWKS from auth.jwt.jwks_url: {}; the {} key(s) "
                    "fetched before stay in use (tried again every {} ms)",
                    failure, count_, refresh_.count());
            } else {
                spdlog::warn(
                    "auth.jwt: cannot fetch the JWKS from auth.jwt.jwks_url: {}; every token is "
                    "refused until it can (tried again every {} ms)",
                    failure, refresh_.count());
            }
        }
        if (!metrics_) return;
        metrics_->count_jwks_fetch(failure.empty() ? "ok" : "failed");
        metrics_->set_jwks_keys(static_cast<double>(count_));
    }

    asio::strand<asio::any_io_executor> strand_;
    asio::steady_timer timer_;  // the wait until the next periodic fetch
    std::unique_ptr<upstream::HttpClient> client_;
    std::chrono::milliseconds refresh_;
    std::chrono::milliseconds min_refetch_;
    metrics::Metrics* metrics_;
    const util::Clock& clock_;

    std::atomic<bool> started_{false};
    // On the strand only.
    bool stopped_ = false;
    std::shared_ptr<asio::steady_timer> fetch_done_;     // set while a fetch runs
    std::shared_ptr<upstream::CancelSignal> in_flight_;  // that fetch's, for stop()
    std::optional<util::Clock::time_point> last_start_;  // of the last fetch
    std::optional<util::Clock::time_point> last_ok_;     // of the last successful one
    // last_ok_ for the scrapes, which read it from any thread.
    static constexpr util::Clock::duration::rep kNever =
        std::numeric_limits<util::Clock::duration::rep>::min();
    std::atomic<util::Clock::duration::rep> last_ok_ticks_{kNever};
    bool failing_ = false;
    std::size_t count_ = 0;
    std::string last_kids_;
};

}  // namespace

std::shared_ptr<KeySet> make_static_key_set(std::string_view jwks_json) {
    auto jwks = detail::parse_jwks(jwks_json);
    if (!jwks) throw std::invalid_argument("not a JWKS: " + jwks.error());
    return std::make_shared<StaticKeySet>(std::move(jwks->keys));
}

std::shared_ptr<KeySet> make_jwks_key_set(const config::JwtConfig& config,
                                          asio::any_io_executor executor, metrics::Metrics* metrics,
                                          const util::Clock& clock,
                                          std::chrono::milliseconds min_refetch) {
    auto keys =
        std::make_shared<JwksKeySet>(config, std::move(executor), metrics, clock, min_refetch);
    // The age is read at each scrape; a scrape after the set is gone reads "never fetched".
    if (metrics)
        metrics->set_jwks_age_source([weak = std::weak_ptr<JwksKeySet>(keys)] {
            const auto set = weak.lock();
            return set ? set->age_seconds() : -1.0;
        });
    return keys;
}

}  // namespace gateway::auth
