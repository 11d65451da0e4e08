#include "gateway/config/reload.hpp"

#include <fmt/format.h>

#include <algorithm>

namespace gateway::config {

namespace {

std::string chain_key(const std::string& name, const char* field) {
    return fmt::format("chains[{}].{}", name, field);
}

// The accounts without their policies: who sends and signs, which a reload cannot change.
std::vector<AccountConfig> without_policies(std::vector<AccountConfig> accounts) {
    for (auto& a : accounts) a.policy.reset();
    return accounts;
}

// Whether each sender's policy (its own, or the chain's) stays, the senders matched by address.
bool same_policies(const ChainConfig& a, const ChainConfig& b) {
    if (a.policy != b.policy) return false;
    for (const auto& x : a.accounts)
        for (const auto& y : b.accounts)
            if (x.address == y.address && x.policy != y.policy) return false;
    return true;
}

// The chain's keys that change while serving are copied into `into`; the others are named.
void plan_chain(const ChainConfig& running, const ChainConfig& next, ChainConfig& into,
                ReloadPlan::ChainChanges& changes, ReloadPlan& plan) {
    const auto restart_if = [&](bool changed, const char* field) {
        if (changed) plan.restart.push_back(chain_key(running.name, field));
    };
    restart_if(running.chain_id != next.chain_id, "chain_id");
    restart_if(running.health != next.health, "health");
    restart_if(running.failover != next.failover, "failover");
    restart_if(running.logs != next.logs, "logs");
    restart_if(running.reorgs != next.reorgs, "reorgs");
    restart_if(running.cache != next.cache, "cache");
    restart_if(running.tx != next.tx, "tx");
    const bool accounts_changed =
        without_policies(running.accounts) != without_policies(next.accounts);
    restart_if(accounts_changed, "accounts");

    // Whatever else ChainConfig holds (a field added later) is named rather than ignored.
    ChainConfig rest_a = running, rest_b = next;
    for (ChainConfig* c : {&rest_a, &rest_b}) {
        c->health = {};
        c->failover = {};
        c->logs = {};
        c->reorgs = {};
        c->cache = {};
        c->tx = {};
        c->chain_id = 0;
        c->accounts = without_policies(c->accounts);
        c->upstreams.clear();
        c->methods = {};
        c->policy.reset();
    }
    rest_a.accounts = rest_b.accounts;  // compared above
    if (rest_a != rest_b) plan.restart.push_back(chain_key(running.name, "(other keys)"));

    if (running.upstreams != next.upstreams) {
        plan.applied.push_back(chain_key(running.name, "upstreams"));
        into.upstreams = next.upstreams;
        changes.upstreams = true;
    }
    if (running.methods != next.methods) {
        plan.applied.push_back(chain_key(running.name, "methods"));
        into.methods = next.methods;
        changes.methods = true;
    }
    // Policies follow their accounts: with the accounts themselves changed, the new policies
    // would be the policies of senders that do not run yet.
    if (!same_policies(running, next)) {
        if (accounts_changed) {
            plan.restart.push_back(chain_key(running.name, "policy"));
        } else {
            plan.applied.push_back(chain_key(running.name, "policy"));
            changes.policies = true;
            into.policy = next.policy;
            for (std::size_t i = 0; i < into.accounts.size(); ++i)
                into.accounts[i].policy = next.accounts[i].policy;
        }
    }
}

void plan_server(const ServerConfig& a, const ServerConfig& b, ReloadPlan& plan) {
    const auto restart_if = [&](bool changed, const char* key) {
        if (changed) plan.restart.push_back(fmt::format("server.{}", key));
    };
    restart_if(a.listen != b.listen, "listen");
    restart_if(a.admin_listen != b.admin_listen, "admin_listen");
    restart_if(a.threads != b.threads, "threads");
    restart_if(a.tls != b.tls, "tls");
    restart_if(a.max_body_bytes != b.max_body_bytes, "max_body_bytes");
    restart_if(a.max_body_bytes_in_flight != b.max_body_bytes_in_flight,
               "max_body_bytes_in_flight");
    restart_if(a.max_header_bytes != b.max_header_bytes, "max_header_bytes");
    restart_if(a.max_batch_size != b.max_batch_size, "max_batch_size");
    restart_if(a.batch_concurrency != b.batch_concurrency, "batch_concurrency");
    restart_if(a.max_batch_response_bytes != b.max_batch_response_bytes,
               "max_batch_response_bytes");
    restart_if(a.idle_timeout != b.idle_timeout, "idle_timeout_ms");
    restart_if(a.read_timeout != b.read_timeout, "read_timeout_ms");
    restart_if(a.request_timeout != b.request_timeout, "request_timeout_ms");
    restart_if(a.shutdown_grace != b.shutdown_grace, "shutdown_grace_ms");
    restart_if(a.header_timeout != b.header_timeout, "header_timeout_ms");
    restart_if(a.drain_delay != b.drain_delay, "drain_delay_ms");
    restart_if(a.max_connections != b.max_connections, "max_connections");
    restart_if(a.max_connections_per_ip != b.max_connections_per_ip, "max_connections_per_ip");
    restart_if(a.cors_allowed_origins != b.cors_allowed_origins, "cors_allowed_origins");
    restart_if(a.compression != b.compression, "compression");
    // A field added to ServerConfig and not listed above is still named.
    if (a != b && std::none_of(plan.restart.begin(), plan.restart.end(),
                               [](const std::string& k) { return k.starts_with("server."); }))
        plan.restart.push_back("server");
}

}  // namespace

ReloadPlan plan_reload(const Config& running, const Config& next) {
    ReloadPlan plan;
    plan.result = running;
    Config& into = plan.result;

    plan_server(running.server, next.server, plan);
    if (running.store != next.store) plan.restart.push_back("store");
    if (running.signers != next.signers) plan.restart.push_back("signers");
    if (running.streams != next.streams)
        plan.restart.push_back(
            "streams (POST and DELETE /admin/streams change them while serving)");
    if (running.log.format != next.log.format) plan.restart.push_back("log.format");
    if (running.log.level != next.log.level) {
        plan.applied.push_back("log.level");
        plan.log_level = true;
        into.log.level = next.log.level;
    }

    // Auth: the keys and what each client may do change; tokens (their JWKS fetcher) and turning
    // authentication on or off (the listener checks credentials on the head, or does not) wait.
    const AuthConfig& a = running.auth;
    const AuthConfig& b = next.auth;
    if (a.jwt != b.jwt) plan.restart.push_back("auth.jwt");
    if (a.clients_required() != b.clients_required()) {
        plan.restart.push_back(fmt::format("auth.clients (authentication turned {})",
                                           b.clients_required() ? "on" : "off"));
    } else if (a.clients != b.clients) {
        plan.applied.push_back("auth.clients");
        plan.clients = true;
        into.auth.clients = b.clients;
    }
    if (a.admin_token != b.admin_token) {
        // A token is rotated at once; taking it away waits for a restart, whose checks see the
        // admin listener's address with it (a reload keeps the running one).
        if (!a.admin_token.empty() && b.admin_token.empty()) {
            plan.restart.push_back("auth.admin (the token removed)");
        } else {
            plan.applied.push_back("auth.admin");
            plan.admin_token = true;
            into.auth.admin_token = b.admin_token;
        }
    }
    // Whatever else AuthConfig holds.
    AuthConfig rest_a = a, rest_b = b;
    rest_a.jwt = rest_b.jwt = {};
    rest_a.clients = rest_b.clients = {};
    rest_a.admin_token = rest_b.admin_token = {};
    if (rest_a != rest_b) plan.restart.push_back("auth");

    // Chains by name: added or removed ones wait (a chain is a pool, a write path, a cache, a
    // route); the others are compared key by key.
    // `into` is a copy of `running`: its chains are in the same order.
    plan.chains.resize(running.chains.size());
    for (std::size_t i = 0; i < running.chains.size(); ++i) {
        const ChainConfig& c = running.chains[i];
        const auto it = std::find_if(next.chains.begin(), next.chains.end(),
                                     [&](const ChainConfig& n) { return n.name == c.name; });
        if (it == next.chains.end()) {
            plan.restart.push_back(fmt::format("chains[{}] (removed)", c.name));
            continue;
        }
        plan_chain(c, *it, into.chains[i], plan.chains[i], plan);
    }
    if (!running.chains.empty() && !next.chains.empty() &&
        running.chains[0].name != next.chains[0].name)
        plan.restart.push_back("chains (the first, which serves POST /)");
    for (const auto& n : next.chains)
        if (std::none_of(running.chains.begin(), running.chains.end(),
                         [&](const ChainConfig& c) { return c.name == n.name; }))
            plan.restart.push_back(fmt::format("chains[{}] (added)", n.name));
    return plan;
}

}  // namespace gateway::config
