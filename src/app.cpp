#include "gateway/app.hpp"

#include "gateway/admin/admin_handler.hpp"
#include "gateway/auth/auth.hpp"
#include "gateway/cache/chain_cache.hpp"
#include "gateway/chain/watcher.hpp"
#include "gateway/config/reload.hpp"
#include "gateway/custody/factory.hpp"
#include "gateway/eth/hex.hpp"
#include "gateway/http/listener.hpp"
#include "gateway/log/log.hpp"
#include "gateway/metrics/metrics.hpp"
#include "gateway/rpc/rpc_handler.hpp"
#include "gateway/store/journal_service.hpp"
#include "gateway/store/store.hpp"
#include "gateway/streams/stream_set.hpp"
#include "gateway/txm/managed.hpp"
#include "gateway/txm/tx_manager.hpp"
#include "gateway/upstream/pool.hpp"
#include "gateway/util/nothrow.hpp"
#include "gateway/util/sole_runner.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <map>
#include <mutex>
#include <thread>

namespace gateway {

namespace asio = boost::asio;
using util::use_nothrow;

using ReloadOutcome = Gateway::ReloadOutcome;

struct Gateway::Impl {
    explicit Impl(const config::Config& c)
        : config(c),
          workers(make_workers(c.server.threads)),
          worker_guards(guard(workers)),
          ioc(1),
          control(asio::make_strand(ioc)),
          signals(ioc),
          hangups(ioc),
          running(c) {}

    using WorkGuard = asio::executor_work_guard<asio::io_context::executor_type>;
    static std::vector<std::unique_ptr<asio::io_context>> make_workers(unsigned threads) {
        std::vector<std::unique_ptr<asio::io_context>> out;
        for (unsigned i = 1; i < threads; ++i) out.push_back(std::make_unique<asio::io_context>(1));
        return out;
    }
    // Workers have no work of their own until connections arrive: this keeps them running.
    static std::vector<WorkGuard> guard(const std::vector<std::unique_ptr<asio::io_context>>& w) {
        std::vector<WorkGuard> out;
        for (const auto& ctx : w) out.push_back(asio::make_work_guard(*ctx));
        return out;
    }

    const config::Config config;
    // Before the io_context: coroutines abandoned by a forced stop, which the io_context destroys,
    // still count themselves out of the metrics.
    metrics::Metrics metrics;
    // One event loop per further thread (server.threads - 1), each serving its share of the
    // client connections start to end, as nginx's workers do: a request's work stays on one
    // thread. Destroyed after `ioc`: a forced stop can leave a connection's coroutine owned by
    // work pending on `ioc`, and destroying it closes the connection's socket on its worker.
    std::vector<std::unique_ptr<asio::io_context>> workers;
    std::vector<WorkGuard> worker_guards;
    // Destroyed after everything below, which holds I/O objects of this context. It runs on the
    // first thread: the background work (probes, watchers, transaction managers), the acceptors,
    // and a share of the client connections.
    asio::io_context ioc;
    // Signals and the shutdown sequence run here, one step at a time.
    asio::strand<asio::io_context::executor_type> control;
    // After the io_context: its thread completes operations by posting to the context.
    std::unique_ptr<store::JournalService> journal;
    std::vector<std::unique_ptr<cache::ChainCache>> caches;
    std::vector<std::unique_ptr<upstream::ChainPool>> pools;
    std::vector<std::unique_ptr<txm::TxManager>> txms;
    std::vector<std::unique_ptr<txm::ManagedSenders>> managed;
    std::vector<std::unique_ptr<chain::ChainWatcher>> watchers;
    std::unique_ptr<streams::StreamSet> streams;
    std::vector<std::unique_ptr<custody::Signer>> signers;
    std::shared_ptr<auth::KeySet> jwks;  // auth.jwt's keys, when tokens are accepted
    std::unique_ptr<auth::Authenticator> authenticator;
    std::unique_ptr<rpc::RpcHandler> rpc_handler;
    std::unique_ptr<admin::AdminHandler> admin_handler;
    std::unique_ptr<http::Listener> rpc;
    std::unique_ptr<http::Listener> admin;
    asio::signal_set signals;
    asio::signal_set hangups;  // SIGHUP: reload
    std::atomic<bool> draining{false};
    // The configuration in use: `config` with the changes reloads applied. One reload at a time.
    std::mutex reload_mu;
    config::Config running;
    std::function<config::Config()> config_source;
    std::atomic<bool> clean{true};
    /// Another gateway took the shared journal over from this one: it stops, with exit code 1.
    std::atomic<bool> superseded{false};
    bool drained = false;  // on `control`

    asio::awaitable<void> wait_for_signals();
    asio::awaitable<void> reload_on_hangup();
    ReloadOutcome reload();
    void start_drain();
    asio::awaitable<void> drain();
    void force_stop(const char* why);
};

Gateway::Gateway(const config::Config& config, const util::Clock& clock)
    : impl_(std::make_unique<Impl>(config)) {
    Impl& g = *impl_;
    // The journal opens on its own thread. A store that cannot be opened does not stop the
    // gateway: reads go on, writes are refused (503) until it opens.
    store::JournalOptions journal_options;
    journal_options.timeout = config.store.timeout;
    g.metrics.declare_journal({"timeout", "queue_full", "unavailable"});
    {
        // The states each kind enters: a raw transaction (or a managed one's attempt) is never
        // preparing, signing, held or cancelled; a managed one never replaced.
        using S = store::TxState;
        std::vector<std::string_view> raw, managed;
        for (S s : {S::queued, S::broadcasting, S::confirming, S::completed, S::failed,
                    S::dead_letter, S::replaced})
            raw.push_back(store::to_string(s));
        for (S s : {S::queued, S::preparing, S::signing, S::pending_approval, S::broadcasting,
                    S::confirming, S::completed, S::failed, S::dead_letter, S::cancelled})
            managed.push_back(store::to_string(s));
        for (const auto& chain : config.chains) {
            std::vector<std::string> senders;
            for (const auto& a : chain.accounts) senders.push_back(a.address);
            g.metrics.declare_chain(chain.name, raw, managed, senders);
        }
    }
    journal_options.on_commit = [m = &g.metrics](std::chrono::nanoseconds took) {
        m->observe_journal_commit(std::chrono::duration<double>(took).count());
    };
    journal_options.on_event = [m = &g.metrics, &g](store::JournalEvent e) {
        switch (e) {
            case store::JournalEvent::timed_out: m->count_journal_refusal("timeout"); break;
            case store::JournalEvent::queue_full: m->count_journal_refusal("queue_full"); break;
            case store::JournalEvent::unavailable: m->count_journal_refusal("unavailable"); break;
            case store::JournalEvent::down: m->set_journal_up(false); break;
            case store::JournalEvent::up: m->set_journal_up(true); break;
            case store::JournalEvent::reopened: m->count_journal_reopen("ok"); break;
            case store::JournalEvent::reopen_failed: m->count_journal_reopen("failed"); break;
            case store::JournalEvent::standby: m->set_journal_standby(true); break;
            case store::JournalEvent::standby_over: m->set_journal_standby(false); break;
            case store::JournalEvent::superseded:
                // What it holds in memory (unfinished transactions, nonces) may be out of date,
                // and its journal stays closed: it stops, so that a restart (the orchestrator's)
                // loads it afresh, as a standby or as the owner.
                spdlog::critical(
                    "another gateway took the journal over from this one: stopping (exit code 1) "
                    "to start again with what the journal holds now");
                g.superseded = true;
                asio::post(g.control, [&g] { g.start_drain(); });
                break;
        }
    };
    // Finished transactions go after store.retention_ms, a batch at a time on the journal's own
    // thread, so that the file stops growing.
    journal_options.retention = config.store.retention;
    journal_options.on_pruned = [m = &g.metrics](const store::Pruned& p) {
        if (p.transactions) m->count_journal_pruned("transaction", p.transactions);
        if (p.managed) m->count_journal_pruned("managed", p.managed);
    };
    g.journal = std::make_unique<store::JournalService>(
        [store_config = config.store] {
            auto store = store::open_store(store_config);
            spdlog::info("store {} at schema version {}", store->describe(),
                         store->schema_version());
            return std::unique_ptr<store::Journal>(std::move(store));
        },
        std::move(journal_options), clock);
    try {
        g.journal->run_blocking([](store::JournalView&) {});
    } catch (const std::exception& e) {
        spdlog::error(
            "the transaction journal is unusable ({}): serving reads; writes are "
            "refused until it opens",
            e.what());
    }

    // Signers load their keys now: a key that cannot be loaded stops the start, naming the
    // signer (never the key). Every managed account must be one its signer can sign for.
    g.signers = custody::make_signers(config);
    for (std::size_t i = 0; i < g.signers.size(); ++i)
        spdlog::info("signer {} ({}): {} address(es)", config.signers[i].id, config.signers[i].type,
                     g.signers[i]->addresses().size());

    std::vector<upstream::ChainPool*> chains;
    std::vector<rpc::ChainRoute> routes;
    for (const auto& chain : config.chains) {
        g.pools.push_back(
            std::make_unique<upstream::ChainPool>(chain, g.ioc.get_executor(), &g.metrics, clock));
        g.txms.push_back(std::make_unique<txm::TxManager>(chain, *g.pools.back(), *g.journal,
                                                          &g.metrics, g.ioc.get_executor(), clock));
        chains.push_back(g.pools.back().get());
        std::map<std::string, custody::Signer*> account_signers;
        std::map<std::string, std::chrono::milliseconds> sign_timeouts;
        for (const auto& account : chain.accounts)
            for (std::size_t i = 0; i < g.signers.size(); ++i)
                if (g.signers[i]->id() == account.signer) {
                    account_signers[account.address] = g.signers[i].get();
                    sign_timeouts[account.address] = config.signers[i].timeout;
                }
        g.caches.push_back(
            std::make_unique<cache::ChainCache>(chain.name, chain.cache, &g.metrics));
        g.watchers.push_back(std::make_unique<chain::ChainWatcher>(
            chain, *g.pools.back(), &g.metrics, g.ioc.get_executor()));
        // The cache drops what a reorg dropped, learns each canonical block's hash and which
        // blocks are final.
        cache::ChainCache* cache = g.caches.back().get();
        g.watchers.back()->subscribe(chain::ChainEvents{
            .reorg = [cache](const chain::Reorg& r) { cache->note_reorg(r); },
            .blocks = [cache](const std::vector<chain::BlockRef>& b) { cache->note_blocks(b); },
            .finalized = [cache](std::uint64_t n) { cache->note_finalized(n); },
        });
        // A reorg may have dropped a block holding a journaled transaction: look now. Mined
        // transactions stay open to reorgs until the watcher takes their block as final.
        g.watchers.back()->subscribe(chain::ChainEvents{
            .reorg = [t = g.txms.back().get()](const chain::Reorg&) { t->reorged(); },
        });
        g.txms.back()->set_finality([w = g.watchers.back().get()] { return w->finalized(); });
        g.managed.push_back(std::make_unique<txm::ManagedSenders>(
            chain, *g.pools.back(), *g.journal, *g.txms.back(), std::move(account_signers),
            std::move(sign_timeouts), &g.metrics, g.ioc.get_executor(), clock));
        routes.push_back(rpc::ChainRoute{g.pools.back().get(), g.txms.back().get(),
                                         g.managed.back().get(), g.caches.back().get()});
        spdlog::info("chain {} (id {}): {} upstream(s)", chain.name, chain.chain_id,
                     chain.upstreams.size());
    }
    // Who may call: keys, tokens (their JWKS is fetched from the start, on the first loop), or,
    // with neither, anyone who can reach the loopback listener (the configuration refuses the
    // rest).
    if (config.auth.jwt.enabled())
        g.jwks = auth::make_jwks_key_set(config.auth.jwt, g.ioc.get_executor(), &g.metrics,
                                         util::SteadyClock::instance());
    g.authenticator = std::make_unique<auth::Authenticator>(config.auth, g.jwks, &g.metrics);
    bool managed_senders = false;
    for (const auto& chain : config.chains)
        managed_senders = managed_senders || !chain.accounts.empty();
    if (!g.authenticator->required() && managed_senders)
        spdlog::warn(
            "no auth configured: anyone who can reach {} may send from the managed senders "
            "(a loopback address: the processes of this host or pod only)",
            config.server.listen.to_string());
    // Event streams, each on its chain's pool: the config's, and those made through the admin API.
    {
        std::vector<streams::StreamSet::Chain> stream_chains;
        for (std::size_t i = 0; i < config.chains.size(); ++i)
            stream_chains.push_back({config.chains[i].name, config.chains[i].chain_id,
                                     g.pools[i].get(), config.chains[i].tx.poll_interval});
        g.streams = std::make_unique<streams::StreamSet>(config.streams, std::move(stream_chains),
                                                         *g.journal, &g.metrics,
                                                         g.ioc.get_executor(), clock);
    }
    g.rpc_handler =
        std::make_unique<rpc::RpcHandler>(config.server, routes, *g.authenticator, &g.metrics);
    g.admin_handler =
        std::make_unique<admin::AdminHandler>(chains, &g.metrics, &g.draining, g.journal.get());
    g.admin_handler->require_token(config.auth.admin_token);
    // On the admin listener's loop, the first thread's, as SIGHUP's reload and the /metrics
    // scrape that publishes the upstreams' gauges a reload may drop.
    g.admin_handler->set_reload([&g] {
        const ReloadOutcome r = g.reload();
        admin::AdminHandler::ReloadAnswer answer;
        answer.status = r.ok ? 200 : r.no_source ? 501 : 400;
        answer.body["reloaded"] = r.ok;
        if (!r.ok) answer.body["error"] = r.error;
        boost::json::array applied, restart;
        for (const auto& k : r.applied) applied.emplace_back(k);
        for (const auto& k : r.restart) restart.emplace_back(k);
        answer.body["applied"] = std::move(applied);
        answer.body["restart_required"] = std::move(restart);
        answer.body["note"] =
            "values from environment variables (${VAR}, *_env) are those the process started "
            "with: they change with a restart only; files (*_file, url_file) are read again";
        return answer;
    });
    {
        std::vector<txm::ManagedSenders*> managed;
        for (auto& m : g.managed) managed.push_back(m.get());
        std::vector<custody::Signer*> signers;
        for (auto& s : g.signers) signers.push_back(s.get());
        g.admin_handler->set_managed(std::move(managed), std::move(signers));
        g.admin_handler->set_streams(g.streams.get());
        std::vector<std::function<bool()>> loaded;
        for (std::size_t i = 0; i < g.txms.size(); ++i)
            loaded.emplace_back([t = g.txms[i].get(), m = g.managed[i].get(), j = g.journal.get()] {
                // A standby of a shared journal loads nothing: it takes writes and hands them
                // over.
                return (t->loaded() && m->loaded()) || j->standby();
            });
        g.admin_handler->set_transactions_loaded(std::move(loaded));
        std::vector<chain::ChainWatcher*> watchers;
        for (auto& w : g.watchers) watchers.push_back(w.get());
        std::vector<cache::ChainCache*> caches;
        for (auto& c : g.caches) caches.push_back(c.get());
        g.admin_handler->set_watchers(std::move(watchers), std::move(caches));
    }

    const auto& s = config.server;
    std::vector<asio::io_context*> session_contexts{&g.ioc};
    for (auto& w : g.workers) session_contexts.push_back(w.get());
    // Client connections get half of the descriptors, split between the two listeners (at most
    // http::kMaxDefaultConnections each); the rest is for upstream connections, the store and the
    // logs.
    const std::size_t descriptors = http::raise_descriptor_limit();
    const std::size_t max_connections =
        s.max_connections ? s.max_connections : http::default_max_connections(descriptors);
    spdlog::info("file descriptor limit {}: at most {} connections per listener", descriptors,
                 max_connections);
    // What both listeners share.
    const auto listener_options = [&](const char* name, const config::Endpoint& endpoint,
                                      std::size_t max_body, auto refusal_body) {
        http::ListenerOptions o{name,           endpoint,       max_body,    s.max_header_bytes,
                                s.idle_timeout, s.read_timeout, refusal_body};
        o.header_timeout = s.header_timeout;
        o.max_connections = max_connections;
        return o;
    };
    http::ListenerOptions rpc_options =
        listener_options("rpc", s.listen, s.max_body_bytes, &rpc::RpcHandler::refusal_body);
    rpc_options.max_connections_per_ip = s.max_connections_per_ip;
    rpc_options.max_body_bytes_in_flight =
        s.max_body_bytes_in_flight
            ? s.max_body_bytes_in_flight
            : std::max<std::size_t>(std::size_t{256} << 20, s.max_body_bytes);
    rpc_options.allowed_origins = s.cors_allowed_origins;
    rpc_options.compress_min_bytes = s.compression.min_bytes;
    rpc_options.compress_level = s.compression.level;
    for (auto header : {rpc::kUpstreamHeader, rpc::kQueuedHeader, rpc::kCacheHeader,
                        rpc::kStaleHeader, rpc::kDataAgeHeader, rpc::kReplacedByHeader})
        rpc_options.cors_expose_headers.emplace_back(header);
    rpc_options.tls = s.tls;
    rpc_options.loops_run_alone = true;  // see Gateway::run
    // Credentials are checked on the head: a stranger's body is never read. Without auth there is
    // nothing to check (and no coroutine to run for each request).
    if (g.authenticator->required())
        rpc_options.head_check = [h = g.rpc_handler.get()](http::Request& r) {
            return h->check_head(r);
        };
    g.rpc = http::make_listener(
        g.ioc, std::move(rpc_options),
        [h = g.rpc_handler.get()](http::Request& r) { return (*h)(r); }, &g.metrics,
        std::move(session_contexts));
    // The admin listener: its own origin only, no TLS, no cap per address.
    http::ListenerOptions admin_options =
        listener_options("admin", s.admin_listen, 64 * 1024, &admin::AdminHandler::refusal_body);
    // The admin token is checked on the head too: a stranger's body is never read.
    admin_options.head_check = [h = g.admin_handler.get()](http::Request& r) {
        return h->check_head(r);
    };
    admin_options.own_origin_only = true;
    g.admin = http::make_listener(
        g.ioc, std::move(admin_options),
        [h = g.admin_handler.get()](http::Request& r) { return (*h)(r); }, &g.metrics);
}

Gateway::~Gateway() = default;

config::Endpoint Gateway::rpc_endpoint() const {
    return impl_->rpc->local_endpoint();
}
config::Endpoint Gateway::admin_endpoint() const {
    return impl_->admin->local_endpoint();
}
bool Gateway::clean_exit() const {
    return impl_->clean;
}

int Gateway::run(bool handle_signals) {
    Impl& g = *impl_;
    if (handle_signals) {
        g.signals.add(SIGINT);
        g.signals.add(SIGTERM);
        asio::co_spawn(g.control, g.wait_for_signals(), asio::detached);
        g.hangups.add(SIGHUP);
        asio::co_spawn(g.control, g.reload_on_hangup(), asio::detached);
    }
    for (auto& p : g.pools) p->start();
    for (auto& t : g.txms) t->start();
    for (auto& m : g.managed) m->start();
    g.streams->start();
    for (auto& w : g.watchers) w->start();
    if (g.jwks) g.jwks->start();
    g.admin->start();
    g.rpc->start();
    spdlog::info("chain-gateway {} serving JSON-RPC on {} (admin on {})", GATEWAY_VERSION,
                 g.rpc->local_endpoint().to_string(), g.admin->local_endpoint().to_string());

    // One thread per loop, each the loop's only runner: the sessions on it need no strand.
    std::vector<std::thread> threads;
    for (auto& w : g.workers)
        threads.emplace_back([&ctx = *w] {
            util::SoleRunner alone(ctx);
            ctx.run();
        });
    {
        util::SoleRunner alone(g.ioc);
        g.ioc.run();
    }
    // The main loop ran out of work (a drain) or was stopped: the workers follow.
    for (auto& guard : g.worker_guards) guard.reset();
    for (auto& w : g.workers) {
        if (!g.clean) w->stop();
    }
    for (auto& t : threads) t.join();
    return g.superseded ? 1 : 0;
}

void Gateway::set_config_source(std::function<config::Config()> load) {
    std::lock_guard lock(impl_->reload_mu);
    impl_->config_source = std::move(load);
}

ReloadOutcome Gateway::Impl::reload() {
    std::lock_guard lock(reload_mu);
    ReloadOutcome out;
    if (!config_source) {
        out.no_source = true;
        out.error = "this gateway was not started from a config file";
        return out;
    }
    config::Config next;
    try {
        next = config_source();
    } catch (const std::exception& e) {
        // The same message as at start (file, line, key; never a secret); the running
        // configuration stays.
        out.error = e.what();
        spdlog::error("configuration reload refused, the running one kept: {}", out.error);
        metrics.config_loaded(false, false);
        return out;
    }
    config::ReloadPlan plan = config::plan_reload(running, next);
    // What the changes need is made first, and only then put in use: a part that cannot be made
    // (a ca_file that is not PEM, a policy service that cannot be set up) refuses the reload
    // before anything changed, rather than leaving it half done.
    const std::size_t n = running.chains.size();
    std::vector<std::shared_ptr<upstream::ChainPool::Staged>> upstreams(n);
    std::vector<std::shared_ptr<txm::ManagedSenders::StagedPolicies>> policies(n);
    try {
        for (std::size_t i = 0; i < n; ++i) {
            const config::ChainConfig& chain = plan.result.chains[i];
            if (plan.chains[i].upstreams) upstreams[i] = pools[i]->stage(chain.upstreams);
            if (plan.chains[i].policies) policies[i] = managed[i]->stage_policies(chain);
        }
    } catch (const std::exception& e) {
        out.error = fmt::format("the configuration loads but cannot be applied: {}", e.what());
        spdlog::error("configuration reload refused, the running one kept: {}", out.error);
        metrics.config_loaded(false, false);
        return out;
    }
    for (std::size_t i = 0; i < n; ++i) {
        const config::ChainConfig& chain = plan.result.chains[i];
        if (upstreams[i]) pools[i]->reconfigure(std::move(upstreams[i]));
        if (plan.chains[i].methods) rpc_handler->reconfigure_methods(chain.name, chain.methods);
        if (policies[i]) managed[i]->reconfigure_policies(std::move(policies[i]));
    }
    if (plan.clients) authenticator->reconfigure(plan.result.auth.clients);
    if (plan.admin_token) admin_handler->require_token(plan.result.auth.admin_token);
    if (plan.log_level) log::set_level(plan.result.log.level);
    running = std::move(plan.result);
    out.ok = true;
    out.applied = std::move(plan.applied);
    out.restart = std::move(plan.restart);
    metrics.config_loaded(true, !out.restart.empty());
    spdlog::info("configuration reloaded: {} change(s) applied{}{}; {} waiting for a restart{}{}",
                 out.applied.size(), out.applied.empty() ? "" : ": ",
                 fmt::format("{}", fmt::join(out.applied, ", ")), out.restart.size(),
                 out.restart.empty() ? "" : ": ", fmt::format("{}", fmt::join(out.restart, ", ")));
    return out;
}

asio::awaitable<void> Gateway::Impl::reload_on_hangup() {
    for (;;) {
        auto [ec, signo] = co_await hangups.async_wait(use_nothrow);
        if (ec || drained) co_return;
        spdlog::info("received SIGHUP: reloading the configuration");
        try {
            reload();
        } catch (const std::exception& e) {
            // Out of memory and the like: this reload is lost, the next SIGHUP is heard.
            spdlog::error("configuration reload failed: {}", e.what());
        }
    }
}

void Gateway::shutdown() {
    asio::post(impl_->control, [&g = *impl_] { g.start_drain(); });
}

void Gateway::Impl::start_drain() {
    if (draining.exchange(true)) return;
    asio::co_spawn(control, drain(), asio::detached);
}

asio::awaitable<void> Gateway::Impl::wait_for_signals() {
    auto [ec, signo] = co_await signals.async_wait(use_nothrow);
    if (ec || drained) co_return;
    spdlog::info("received {}: shutting down", signo == SIGTERM ? "SIGTERM" : "SIGINT");
    // A second signal forces the stop. This wait and the drain's final cancel() both run on
    // `control`, so the cancel always finds it.
    signals.async_wait(asio::bind_executor(control, [this](boost::system::error_code ec, int) {
        if (!ec) force_stop("second signal");
    }));
    start_drain();
}

void Gateway::Impl::force_stop(const char* why) {
    spdlog::warn("{}: stopping now, abandoning {} open connection(s)", why,
                 rpc->open_connections());
    clean = false;
    ioc.stop();
    for (auto& w : workers) w->stop();
}

// The order of a graceful shutdown. Once it is done nothing is left to do, so the event loop
// runs out of work and run() returns.
asio::awaitable<void> Gateway::Impl::drain() {
    asio::steady_timer tick(ioc);
    // /readyz says 503 from now on (`draining`), but endpoint controllers take a while to hear it
    // and stop sending: until then, work that arrives is accepted and served as before.
    if (const auto delay = config.server.drain_delay; delay.count() > 0) {
        spdlog::info("not ready; still serving for {} ms (server.drain_delay_ms)", delay.count());
        tick.expires_after(delay);
        co_await tick.async_wait(use_nothrow);
    }
    const auto grace = config.server.shutdown_grace;
    spdlog::info("no new connections; {} open connection(s) get up to {} ms to finish",
                 rpc->open_connections(), grace.count());
    rpc->shutdown();
    // Clients waiting for a signature hear now that their transaction stays queued.
    for (auto& m : managed) m->stop();
    const auto deadline = std::chrono::steady_clock::now() + grace;
    while (rpc->open_connections() > 0 && std::chrono::steady_clock::now() < deadline) {
        tick.expires_after(std::chrono::milliseconds(20));
        co_await tick.async_wait(use_nothrow);
    }
    if (rpc->open_connections() > 0) {
        // What is left waits on upstreams and would hold the loop up to their own timeouts.
        force_stop("shutdown grace period over");
        co_return;
    }
    for (auto& p : pools) p->stop();
    for (auto& t : txms) t->stop();
    streams->stop();
    for (auto& w : watchers) w->stop();
    if (jwks) jwks->stop();
    admin->shutdown();
    admin->close_all();
    drained = true;
    boost::system::error_code ignored;
    signals.cancel(ignored);
    hangups.cancel(ignored);
    spdlog::info("shutdown complete");
}

}  // namespace gateway
