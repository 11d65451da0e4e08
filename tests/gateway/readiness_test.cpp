// /readyz of the whole gateway, in-process (and the parsing of its ?require= query): ready means
// the process can take work; every node down (catalog row B2) and a journal that refuses writes are
// in the body, and conditions only for a caller that asks
// (?require=upstreams,journal); a query it cannot read is a 400 that says why.

#include "gateway/admin/readiness.hpp"
#include "support/gateway_fixture.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <thread>

namespace gateway {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;
namespace json = boost::json;
using admin::ReadinessRequirements;
using test::FakeUpstream;
using test::GatewayTest;
using test::http_get;

class ReadinessTest : public GatewayTest {
protected:
    json::value readyz(const std::string& query, unsigned expect_status) {
        const test::HttpReply r = http_get(admin_port(), "/readyz" + query);
        EXPECT_EQ(r.status, expect_status) << query << ": " << r.body;
        return json::parse(r.body);
    }
};

TEST(ReadinessRequirements, AreReadFromTheQueryAndAnythingUnknownIsRefusedByName) {
    const auto none = admin::parse_readiness_requirements("/readyz");
    ASSERT_TRUE(std::holds_alternative<ReadinessRequirements>(none));
    EXPECT_FALSE(std::get<ReadinessRequirements>(none).upstreams);
    EXPECT_FALSE(std::get<ReadinessRequirements>(none).journal);
    for (const char* target :
         {"/readyz?require=upstreams,journal", "/readyz?require=journal&require=upstreams",
          "/readyz?require=upstreams%2C%20journal"}) {
        const auto both = admin::parse_readiness_requirements(target);
        ASSERT_TRUE(std::holds_alternative<ReadinessRequirements>(both)) << target;
        EXPECT_TRUE(std::get<ReadinessRequirements>(both).upstreams) << target;
        EXPECT_TRUE(std::get<ReadinessRequirements>(both).journal) << target;
    }
    const auto bad = admin::parse_readiness_requirements("/readyz?require=upstreams,disk");
    ASSERT_TRUE(std::holds_alternative<std::string>(bad));
    EXPECT_THAT(std::get<std::string>(bad), HasSubstr("unknown readiness condition 'disk'"));
    EXPECT_THAT(std::get<std::string>(bad), HasSubstr("require=upstreams,journal"));
    const auto misspelt = admin::parse_readiness_requirements("/readyz?requires=upstreams");
    ASSERT_TRUE(std::holds_alternative<std::string>(misspelt));
    EXPECT_THAT(std::get<std::string>(misspelt), HasSubstr("unknown parameter 'requires'"));
}

// A chain still reading its unfinished transactions from the journal refuses writes: it is in
// the body, and not ready for a caller that requires the journal.
TEST(Readiness, AChainStillLoadingItsTransactionsIsNotReadyForWritesAndSaysWhich) {
    admin::ReadinessFacts facts;
    facts.chains.push_back({"mainnet", true, false});
    facts.chains.push_back({"base", true, true});
    facts.chains.push_back({"other", true, std::nullopt});

    const admin::Readiness plain = admin::readiness(facts, {});
    EXPECT_EQ(plain.status, 200u);
    EXPECT_EQ(plain.body.at("chains").at("mainnet").at("transactions_loaded"), false);
    EXPECT_EQ(plain.body.at("chains").at("base").at("transactions_loaded"), true);
    EXPECT_FALSE(plain.body.at("chains").at("other").as_object().contains("transactions_loaded"));

    const admin::Readiness strict = admin::readiness(facts, {.journal = true});
    EXPECT_EQ(strict.status, 503u);
    const std::string why = json::serialize(strict.body.at("not_ready"));
    EXPECT_THAT(why, HasSubstr("chain mainnet: its unfinished transactions are still loading"));
    EXPECT_THAT(why, ::testing::Not(HasSubstr("chain base")));
    EXPECT_EQ(admin::readiness(facts, {.upstreams = true}).status, 200u);

    facts.chains[0].transactions_loaded = true;
    EXPECT_EQ(admin::readiness(facts, {.journal = true}).status, 200u);
}

TEST_F(ReadinessTest, B2_WithEveryUpstreamDownTheGatewayStaysReadyUnlessAskedAndSaysSo) {
    start({"http://127.0.0.1:" + std::to_string(test::closed_port())});
    ASSERT_TRUE(wait_state("node-0", "down"));

    const json::value plain = readyz("", 200);
    EXPECT_EQ(plain.at("ready"), true);
    EXPECT_EQ(plain.at("chains").at("devnet").at("upstream_answers"), false);
    EXPECT_EQ(plain.at("chains").at("devnet").at("reason"), "no upstream known to answer");
    EXPECT_EQ(plain.at("journal").at("writable"), true);

    const json::value strict = readyz("?require=upstreams", 503);
    EXPECT_EQ(strict.at("ready"), false);
    EXPECT_THAT(json::serialize(strict.at("not_ready")),
                HasSubstr("chain devnet: no upstream known to answer"));
    readyz("?require=journal", 200);

    const json::value bad = readyz("?require=upstream", 400);
    EXPECT_THAT(std::string(bad.at("error").as_string()),
                HasSubstr("unknown readiness condition 'upstream'"));
}

TEST_F(ReadinessTest, WithAnUpstreamAnsweringEveryConditionHolds) {
    FakeUpstream node;
    start({node.url()});
    wait_ready();
    // The chain's transactions load from the journal once it starts: ready for writes after.
    json::value v;
    for (int i = 0; i < 1000; ++i) {  // up to 10 s: a sanitizer build on a busy machine
        const test::HttpReply r = http_get(admin_port(), "/readyz?require=upstreams,journal");
        v = json::parse(r.body);
        if (r.status == 200) break;
        std::this_thread::sleep_for(10ms);
    }
    EXPECT_EQ(v.at("ready"), true) << json::serialize(v);
    EXPECT_EQ(v.at("chains").at("devnet").at("upstream_answers"), true);
    EXPECT_EQ(v.at("chains").at("devnet").at("transactions_loaded"), true);
    EXPECT_EQ(v.at("required"), (json::array{"upstreams", "journal"}));
    EXPECT_FALSE(v.as_object().contains("not_ready"));
}

TEST_F(ReadinessTest, AJournalThatRefusesWritesKeepsThePodInServiceUnlessAsked) {
    FakeUpstream node;
    const std::string dir = test::make_temp_dir("readiness-journal");
    test::write_file(dir + "/file", "x");  // a file where the journal's folder should be
    start({node.url()}, [&](config::Config& c) { c.store.path = dir + "/file/gateway.db"; });
    wait_ready();

    const json::value plain = readyz("", 200);
    EXPECT_EQ(plain.at("journal").at("writable"), false);
    EXPECT_FALSE(plain.at("journal").at("reason").as_string().empty());

    const json::value strict = readyz("?require=journal", 503);
    EXPECT_THAT(json::serialize(strict.at("not_ready")), HasSubstr("journal: "));
    // Nothing was read from it: the chain's writes are refused too.
    EXPECT_EQ(plain.at("chains").at("devnet").at("transactions_loaded"), false);
    EXPECT_THAT(json::serialize(strict.at("not_ready")),
                HasSubstr("chain devnet: its unfinished transactions are still loading"));
    readyz("?require=upstreams", 200);
    readyz("?require=upstreams,journal", 503);
}

}  // namespace
}  // namespace gateway
