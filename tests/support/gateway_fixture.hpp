#pragma once
// The gateway in-process (the same wiring as the binary) in front of scripted fake nodes.

#include "gateway/app.hpp"

#include "support/fake_upstream.hpp"
#include "support/http_test_client.hpp"
#include "support/process.hpp"

#include <gtest/gtest.h>
#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>

#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace gateway::test {

/// Makes the first upstream the only primary, so that it is tried first whatever the scores.
inline void first_is_primary(config::Config& c) {
    for (std::size_t i = 1; i < c.chains[0].upstreams.size(); ++i)
        c.chains[0].upstreams[i].tier = config::Tier::fallback;
}

class GatewayTest : public ::testing::Test {
protected:
    /// Starts a gateway with one chain "devnet" whose upstreams are `urls` (ids node-0, node-1,
    /// ...), probed every 50 ms, 1 s per attempt, 3 s per call.
    void start(const std::vector<std::string>& urls,
               std::function<void(config::Config&)> tweak = {}) {
        using namespace std::chrono_literals;
        config::Config c;
        c.server.listen = {"127.0.0.1", 0};
        c.server.admin_listen = {"127.0.0.1", 0};
        c.server.request_timeout = 3s;
        c.server.shutdown_grace = 2s;
        c.store.path = make_temp_dir("gateway-test") + "/gateway.db";
        config::ChainConfig chain;
        chain.name = "devnet";
        chain.chain_id = 31337;
        chain.health.interval = 50ms;
        chain.health.timeout = 500ms;
        // The head watcher's block reads would count among the calls these tests assert on;
        // the tests of reorg tracking turn it on.
        chain.reorgs.track = false;
        // Served from the cache or from another call's answer, a read would reach no node: these
        // tests assert on which node answers what. The cache tests turn both on.
        chain.cache.enabled = false;
        chain.cache.coalesce = false;
        for (std::size_t i = 0; i < urls.size(); ++i) {
            config::UpstreamConfig u;
            u.id = "node-" + std::to_string(i);
            u.url = urls[i];
            u.timeout = 1s;
            chain.upstreams.push_back(u);
        }
        c.chains.push_back(chain);
        if (tweak) tweak(c);
        started_with = c;
        if (manual_time)
            gw = std::make_unique<Gateway>(c, clock);
        else
            gw = std::make_unique<Gateway>(c);
        runner = std::thread([this] { gw->run(false); });
    }

    void TearDown() override {
        if (!gw) return;
        gw->shutdown();
        runner.join();
        EXPECT_TRUE(gw->clean_exit());
    }

    std::uint16_t port() const { return gw->rpc_endpoint().port; }
    std::uint16_t admin_port() const { return gw->admin_endpoint().port; }
    HttpReply post(const std::string& body, const std::string& path = "/") {
        return http_post(port(), path, body);
    }

    /// Waits until the first probes have answered (/readyz?require=upstreams says ready).
    void wait_ready() {
        using namespace std::chrono_literals;
        const auto deadline = std::chrono::steady_clock::now() + 10s;  // a sanitizer build, busy
        while (std::chrono::steady_clock::now() < deadline) {
            if (http_get(admin_port(), "/readyz?require=upstreams").status == 200) return;
            std::this_thread::sleep_for(10ms);
        }
        FAIL() << "gateway never became ready";
    }

    /// The Prometheus text of /metrics.
    std::string http_metrics() { return http_get(admin_port(), "/metrics").body; }

    /// /admin/upstreams, parsed.
    boost::json::value upstreams() {
        return boost::json::parse(http_get(admin_port(), "/admin/upstreams").body);
    }

    /// The /admin/upstreams entry of one upstream.
    boost::json::value upstream(const std::string& id) {
        const boost::json::value all = upstreams();
        for (const auto& u : all.at("upstreams").as_array())
            if (u.at("id") == id.c_str()) return u;
        return nullptr;
    }

    /// Waits until an upstream is in `state`; false on timeout.
    bool wait_state(const std::string& id, const std::string& state,
                    std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
        const auto deadline = std::chrono::steady_clock::now() + timeout;
        while (std::chrono::steady_clock::now() < deadline) {
            if (upstream(id).at("state") == state.c_str()) return true;
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        return false;
    }

    /// The configuration of the last start(), for a test's reload to change.
    config::Config started_with;

    /// Set before start(): the gateway's own decisions (breakers, rests, retry waits) run on
    /// `clock`, which stands still until the test advances it. Probes and I/O keep real time.
    bool manual_time = false;
    util::ManualClock clock;

    std::unique_ptr<Gateway> gw;
    std::thread runner;
};

}  // namespace gateway::test
