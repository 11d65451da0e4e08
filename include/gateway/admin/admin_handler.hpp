#pragma once
// The admin listener's endpoints: /healthz, /readyz, /metrics, /admin/... and the operator page
// (/ui/, operator_page.hpp).

#include "gateway/http/listener.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/json/object.hpp>

#include <atomic>
#include <cstddef>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace gateway::metrics {
class Metrics;
}
namespace gateway::upstream {
class ChainPool;
}
namespace gateway::store {
class JournalService;
enum class TxState;
}  // namespace gateway::store
namespace gateway::txm {
class ManagedSenders;
}
namespace gateway::custody {
class Signer;
}
namespace gateway::chain {
class ChainWatcher;
}
namespace gateway::cache {
class ChainCache;
}

namespace gateway::streams {
class StreamSet;
}

namespace gateway::admin {

class AdminHandler {
public:
    /// `draining` turns /readyz to 503 while the gateway shuts down; the chains' upstreams and
    /// `journal` are in its body, and conditions only when the caller asks (readiness.hpp).
    /// Everything referenced must outlive the handler.
    AdminHandler(std::vector<upstream::ChainPool*> chains, metrics::Metrics* metrics,
                 const std::atomic<bool>* draining, store::JournalService* journal = nullptr);

    /// The managed senders of each chain and the signers, for /admin/transactions/<id>/retry,
    /// /cancel, /admin/senders/<address>/resync, /admin/approvals and /admin/signers.
    void set_managed(std::vector<txm::ManagedSenders*> managed,
                     std::vector<custody::Signer*> signers);

    /// The event streams, for /admin/streams.
    void set_streams(streams::StreamSet* streams) { streams_ = streams; }

    /// Whether each chain (in the same order) has loaded its unfinished transactions from the
    /// journal, for /readyz; called on the admin listener's thread, so it must be thread-safe.
    void set_transactions_loaded(std::vector<std::function<bool()>> loaded) {
        transactions_loaded_ = std::move(loaded);
    }

    /// Each chain's head watcher and cache (in the same order), for /admin/chains and /metrics.
    void set_watchers(std::vector<chain::ChainWatcher*> watchers,
                      std::vector<cache::ChainCache*> caches = {}) {
        watchers_ = std::move(watchers);
        caches_ = std::move(caches);
    }

    /// Every request but /healthz, /readyz and /metrics (for probes and scrapers) and a GET of
    /// the operator page's files (/ui/, which hold no data) must then carry
    /// `Authorization: Bearer <token>`; others get 401. Empty: no token asked (loopback only).
    /// Thread-safe: a reload rotates the token; a request already checked is not affected.
    void require_token(std::string token);

    /// What POST /admin/reload answers: an HTTP status and a JSON body.
    struct ReloadAnswer {
        unsigned status = 200;
        boost::json::object body;
    };
    /// POST /admin/reload re-reads the configuration through `reload` (run on the listener's
    /// loop: it reads a file and swaps a few tables). Without it, the endpoint answers 501.
    void set_reload(std::function<ReloadAnswer()> reload) { reload_ = std::move(reload); }

    /// The admin listener's head check (http::HeadCheck): the token of require_token() on the
    /// request's head, so that a stranger's body is never read; the 401 is answered at once and
    /// the connection closed. Counts gateway_auth_requests_total{listener="admin"} once per
    /// request (operator() does not count again what it checked). Never throws.
    boost::asio::awaitable<std::optional<http::Response>> check_head(http::Request& request) const;

    /// Answers one HTTP request (checking the token itself when check_head() has not). Never
    /// throws.
    boost::asio::awaitable<http::Response> operator()(http::Request& request);

    /// The body of a refusal by the listener itself: {"error": message}.
    static std::string refusal_body(unsigned status, std::string_view message);

private:
    /// A 401 when the request needs the token and does not carry it; else nullopt, and the
    /// request is marked as checked (its principal set).
    std::optional<http::Response> check_token(http::Request& request) const;
    http::Response readyz(const http::Request& request) const;
    /// Why the journal refuses writes now; nullopt while it takes them.
    std::optional<std::string> journal_problem() const;
    http::Response upstreams() const;
    http::Response cordon(std::string_view rest, const std::string& body) const;
    boost::asio::awaitable<http::Response> transactions(const http::Request& request) const;
    boost::asio::awaitable<http::Response> managed_list(std::optional<store::TxState> state,
                                                        std::optional<std::string> idempotency_key,
                                                        std::size_t limit) const;
    boost::asio::awaitable<http::Response> managed_action(std::string_view rest) const;
    boost::asio::awaitable<http::Response> resync(std::string_view rest) const;
    /// POST /admin/approvals/<id>/approve or /reject with {"by": "...", "reason": "..."}.
    boost::asio::awaitable<http::Response> decide(std::string_view rest,
                                                  const std::string& body) const;
    http::Response approvals() const;
    boost::asio::awaitable<http::Response> streams_view() const;
    boost::asio::awaitable<http::Response> stream_create_or_delete(
        const http::Request& request) const;
    /// POST /admin/streams/<id>/pause, /resume, or /reset with {"from_block": n}.
    boost::asio::awaitable<http::Response> stream_action(std::string_view rest,
                                                         const std::string& body) const;
    http::Response signers() const;
    http::Response chains_view() const;
    http::Response signer_faults(std::string_view rest, const std::string& body) const;

    std::vector<txm::ManagedSenders*> managed_;
    std::vector<chain::ChainWatcher*> watchers_;
    std::vector<cache::ChainCache*> caches_;
    std::vector<custody::Signer*> signers_;
    streams::StreamSet* streams_ = nullptr;
    std::vector<std::function<bool()>> transactions_loaded_;

    std::vector<upstream::ChainPool*> chains_;
    std::shared_ptr<const std::string> token() const;
    mutable std::mutex token_mu_;
    std::shared_ptr<const std::string> token_ = std::make_shared<const std::string>();  // secret
    std::function<ReloadAnswer()> reload_;
    metrics::Metrics* metrics_;
    const std::atomic<bool>* draining_;
    store::JournalService* journal_;
};

}  // namespace gateway::admin
