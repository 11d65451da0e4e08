// Hot reload of the real binary: SIGHUP while a client reads without pause. Upstreams are
// swapped back and forth and the client sees no error; a broken file changes nothing and is
// reported as at start (file, line, key), in the log and in the metrics.

#include "integration/devnet.hpp"
#include "support/fake_upstream.hpp"
#include "support/http_test_client.hpp"

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <boost/json/parse.hpp>

#include <atomic>
#include <csignal>
#include <regex>
#include <thread>

namespace gateway::test {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;
namespace json = boost::json;

std::string chains(const std::vector<std::pair<std::string, std::string>>& upstreams) {
    // No cache: every read goes to a node, so that the test sees which one.
    std::string out =
        "  - name: devnet\n    chain_id: 31337\n    health: {interval_ms: 100}\n"
        "    cache: {enabled: false, coalesce: false}\n    upstreams:\n";
    for (const auto& [id, url] : upstreams)
        out += fmt::format("      - {{id: {}, url: \"{}\"}}\n", id, url);
    return out;
}

// The upstream ids /admin/upstreams lists, in order.
std::string listed(std::uint16_t admin_port) {
    const json::value v = json::parse(http_get(admin_port, "/admin/upstreams").body);
    std::string out;
    for (const auto& u : v.at("upstreams").as_array())
        out += (out.empty() ? "" : ",") + std::string(u.at("id").as_string());
    return out;
}

TEST(Reload, ReadsUnderLoadSeeNoErrorWhileSighupSwapsUpstreams) {
    const std::string dir = make_temp_dir("gateway-reload");
    FakeUpstream a(31337, on("eth_gasPrice", FakeReply::ok("\"0xa\"")));
    FakeUpstream b(31337, on("eth_gasPrice", FakeReply::ok("\"0xb\"")));
    GatewayProcess gw(dir, chains({{"node-a", a.url()}}));
    ASSERT_TRUE(gw.wait_ready()) << gw.process().output();
    // The file as the gateway wrote it, with its chains swapped for each round.
    std::string text = read_file(gw.config_path());
    const std::string head = text.substr(0, text.find("chains:\n") + 8);

    std::atomic<bool> stop{false};
    std::atomic<int> ok{0}, from_b{0};
    std::vector<std::string> errors;
    std::thread client([&] {
        const std::string body = R"({"jsonrpc":"2.0","id":1,"method":"eth_gasPrice"})";
        HttpConnection keep_alive(gw.port());
        for (int i = 0; !stop; ++i) {
            // Most on one kept connection, some on new ones.
            const HttpReply r =
                i % 8 == 0 ? http_post(gw.port(), "/", body) : keep_alive.post("/", body);
            if (r.status == 200 && r.body.find("\"result\"") != std::string::npos) {
                ++ok;
                if (r.body.find("0xb") != std::string::npos) ++from_b;
            } else if (errors.size() < 5) {
                errors.push_back(fmt::format("HTTP {}: {}", r.status, r.body));
            }
        }
    });

    const auto reload_to = [&](const std::vector<std::pair<std::string, std::string>>& upstreams,
                               const std::string& expected) {
        write_file(gw.config_path(), head + chains(upstreams));
        gw.process().signal(SIGHUP);
        const auto deadline = std::chrono::steady_clock::now() + 10s;
        while (listed(gw.admin_port()) != expected && std::chrono::steady_clock::now() < deadline)
            std::this_thread::sleep_for(10ms);
        EXPECT_EQ(listed(gw.admin_port()), expected);
        // Reads through the new set: counted, not timed (a sanitizer build on a busy machine).
        const int before = ok;
        while (ok < before + 20 && std::chrono::steady_clock::now() < deadline)
            std::this_thread::sleep_for(5ms);
    };
    for (int round = 0; round < 3; ++round) {
        reload_to({{"node-b", b.url()}}, "node-b");
        reload_to({{"node-a", a.url()}, {"node-b", b.url()}}, "node-a,node-b");
        reload_to({{"node-a", a.url()}}, "node-a");
    }
    const std::size_t a_calls = a.calls("eth_gasPrice");

    // A broken file: refused with its place and key, the running configuration kept.
    write_file(gw.config_path(), head + chains({{"node-b", "ftp://" + b.url().substr(7)}}));
    gw.process().signal(SIGHUP);
    const auto refused = gw.process().wait_for_output(
        std::regex("configuration reload refused, the running one kept: ([^\"]*)"), 10s);
    ASSERT_TRUE(refused) << gw.process().output();
    EXPECT_THAT(*refused, HasSubstr(gw.config_path() + ":"));
    EXPECT_THAT(*refused, HasSubstr("chains[0].upstreams[0].url: must start with http://"));
    const int before = ok;
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (ok < before + 20 && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(5ms);
    stop = true;
    client.join();

    EXPECT_EQ(listed(gw.admin_port()), "node-a");
    EXPECT_GT(a.calls("eth_gasPrice"), a_calls);  // still served, by node-a
    EXPECT_TRUE(errors.empty()) << errors.front();
    EXPECT_GE(ok.load(), 10 * 20);
    EXPECT_GT(from_b.load(), 0);
    const std::string metrics = http_get(gw.admin_port(), "/metrics").body;
    EXPECT_THAT(metrics, HasSubstr(R"(gateway_config_reloads_total{outcome="applied"} 9)"));
    EXPECT_THAT(metrics, HasSubstr(R"(gateway_config_reloads_total{outcome="refused"} 1)"));
    EXPECT_THAT(metrics, HasSubstr("gateway_config_last_reload_successful 0"));
}

}  // namespace
}  // namespace gateway::test
