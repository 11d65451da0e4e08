// The configuration file: its shape, defaults, every key, environment variables, and the
// refusals of unknown, repeated, missing and wrong keys (named with their path and line).

#include "gateway/config/config.hpp"

#include "support/config_parse.hpp"
#include "support/process.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>

namespace gateway::config {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

using test::error_of;
using test::parse;

const std::string kMinimal = R"(
chains:
  - name: devnet
    chain_id: 31337
    upstreams:
      - id: node-a
        url: http://127.0.0.1:18545
)";

TEST(Config, TheShapeFromTheIssueParses) {
    Config c = parse(R"(
server:
  listen: 127.0.0.1:8545
  admin_listen: 127.0.0.1:9545
store:
  backend: sqlite
  path: ./data/gateway.db
chains:
  - name: devnet
    chain_id: 31337
    upstreams:
      - id: node-a
        url: http://127.0.0.1:18545
      - id: node-b
        url: http://127.0.0.1:18546
        tier: fallback        # primary (default) | fallback
)");
    EXPECT_EQ(c.server.listen.to_string(), "127.0.0.1:8545");
    EXPECT_EQ(c.server.admin_listen.to_string(), "127.0.0.1:9545");
    EXPECT_EQ(c.store.backend, "sqlite");
    EXPECT_EQ(c.store.path, "./data/gateway.db");
    EXPECT_EQ(c.store.timeout, Millis(5000));
    ASSERT_EQ(c.chains.size(), 1u);
    EXPECT_EQ(c.chains[0].name, "devnet");
    EXPECT_EQ(c.chains[0].chain_id, 31337u);
    ASSERT_EQ(c.chains[0].upstreams.size(), 2u);
    EXPECT_EQ(c.chains[0].upstreams[0].tier, Tier::primary);
    EXPECT_EQ(c.chains[0].upstreams[1].tier, Tier::fallback);
    EXPECT_EQ(c.chains[0].upstreams[1].url, "http://127.0.0.1:18546");
}

TEST(Config, DefaultsWhenSectionsAreLeftOut) {
    Config c = parse(kMinimal);
    EXPECT_EQ(c.server.listen.to_string(), "127.0.0.1:8545");
    EXPECT_EQ(c.server.max_body_bytes, 5u * 1024 * 1024);
    EXPECT_EQ(c.server.max_batch_size, 1000u);
    EXPECT_EQ(c.log.level, "info");
    EXPECT_EQ(c.log.format, LogConfig::Format::json);
    EXPECT_EQ(c.store.backend, "sqlite");
    EXPECT_EQ(c.chains[0].health.interval, Millis(1000));
    EXPECT_EQ(c.chains[0].upstreams[0].timeout, Millis(10'000));
    EXPECT_EQ(c.server.drain_delay, Millis(0)) << "SIGTERM drains at once unless asked";
    EXPECT_EQ(c.server.compression.min_bytes, 1024u) << "answers of 1 KB or more compressed";
    EXPECT_EQ(c.server.compression.level, 1);
    EXPECT_FALSE(c.chains[0].upstreams[0].accept_gzip) << "decided by the host";
}

TEST(Config, EveryKeyIsRead) {
    Config c = parse(R"(
server:
  listen: "[::1]:1"
  admin_listen: 0.0.0.0:2
  threads: 4
  max_body_bytes: 1000
  max_header_bytes: 2000
  max_batch_size: 50
  batch_concurrency: 3
  max_batch_response_bytes: 4096
  idle_timeout_ms: 11
  read_timeout_ms: 12
  request_timeout_ms: 13
  shutdown_grace_ms: 0
  drain_delay_ms: 5000
  compression: {min_bytes: 2048, level: 6}
auth: {admin: {token_env: ADMIN_TOKEN}}   # the admin listener is not loopback
log: {level: debug, format: text}
store: {backend: sqlite, path: /var/lib/gw.db, timeout_ms: 250}
chains:
  - name: main_net-1
    chain_id: 1
    health: {interval_ms: 100, timeout_ms: 50, healthy_threshold: 3, unhealthy_threshold: 4}
    upstreams:
      - {id: a.b-c_d, url: "https://user:pw@rpc.example.com/v3/key?x=1", tier: primary, timeout_ms: 99,
         max_idle_connections: 7, max_response_bytes: 4096, accept_gzip: false}
)",
                     {{"ADMIN_TOKEN", "an-admin-token-of-some-length"}});
    EXPECT_EQ(c.server.listen.host, "::1");
    EXPECT_EQ(c.server.listen.to_string(), "[::1]:1");
    EXPECT_EQ(c.server.admin_listen.port, 2);
    EXPECT_EQ(c.server.threads, 4u);
    EXPECT_EQ(c.server.max_body_bytes, 1000u);
    EXPECT_EQ(c.server.max_header_bytes, 2000u);
    EXPECT_EQ(c.server.max_batch_size, 50u);
    EXPECT_EQ(c.server.batch_concurrency, 3u);
    EXPECT_EQ(c.server.max_batch_response_bytes, 4096u);
    EXPECT_EQ(c.server.idle_timeout, Millis(11));
    EXPECT_EQ(c.server.read_timeout, Millis(12));
    EXPECT_EQ(c.server.request_timeout, Millis(13));
    EXPECT_EQ(c.server.shutdown_grace, Millis(0));
    EXPECT_EQ(c.server.drain_delay, Millis(5000));
    EXPECT_EQ(c.server.compression.min_bytes, 2048u);
    EXPECT_EQ(c.server.compression.level, 6);
    EXPECT_EQ(c.log.level, "debug");
    EXPECT_EQ(c.log.format, LogConfig::Format::text);
    EXPECT_EQ(c.store.path, "/var/lib/gw.db");
    EXPECT_EQ(c.store.timeout, Millis(250));
    const auto& h = c.chains[0].health;
    EXPECT_EQ(h.interval, Millis(100));
    EXPECT_EQ(h.timeout, Millis(50));
    EXPECT_EQ(h.healthy_threshold, 3u);
    EXPECT_EQ(h.unhealthy_threshold, 4u);
    const auto& u = c.chains[0].upstreams[0];
    EXPECT_EQ(u.id, "a.b-c_d");
    EXPECT_EQ(u.timeout, Millis(99));
    EXPECT_EQ(u.max_idle_connections, 7u);
    EXPECT_EQ(u.max_response_bytes, 4096u);
    EXPECT_EQ(u.accept_gzip, false);
}

TEST(Config, ThePoolKeys) {
    Config c = parse(R"(
chains:
  - name: devnet
    chain_id: 1
    health: {max_lag_blocks: 12}
    failover: {max_attempts: 4, backoff_ms: 0, hedge_after_ms: 250, breaker_threshold: 3, breaker_cooldown_ms: 900}
    methods:
      allow: [debug_traceTransaction]
      deny: [debug_*, "*"]
    logs: {split: false, concurrency: 2}
    upstreams:
      - {id: a, url: "http://127.0.0.1:1", max_rps: 25, max_concurrency: 8, max_logs_range: 2000}
)");
    const ChainConfig& ch = c.chains[0];
    EXPECT_EQ(ch.health.max_lag_blocks, 12u);
    EXPECT_EQ(ch.failover.max_attempts, 4u);
    EXPECT_EQ(ch.failover.backoff, Millis(0));
    EXPECT_EQ(ch.failover.hedge_after, Millis(250));
    EXPECT_EQ(ch.failover.breaker_threshold, 3u);
    EXPECT_EQ(ch.failover.breaker_cooldown, Millis(900));
    EXPECT_EQ(ch.methods.allow, std::vector<std::string>{"debug_traceTransaction"});
    EXPECT_EQ(ch.methods.deny, (std::vector<std::string>{"debug_*", "*"}));
    EXPECT_FALSE(ch.logs.split);
    EXPECT_EQ(ch.logs.concurrency, 2u);
    EXPECT_EQ(ch.upstreams[0].max_rps, 25.0);
    EXPECT_EQ(ch.upstreams[0].max_concurrency, 8u);
    EXPECT_EQ(ch.upstreams[0].max_logs_range, 2000u);

    // Defaults: the dangerous namespaces denied, splitting on, no hedging.
    Config d = parse(kMinimal);
    EXPECT_EQ(d.chains[0].methods.deny,
              (std::vector<std::string>{"admin_*", "debug_*", "personal_*", "miner_*", "engine_*",
                                        "txpool_*", "anvil_*", "hardhat_*", "evm_*"}));
    EXPECT_TRUE(d.chains[0].logs.split);
    EXPECT_EQ(d.chains[0].failover.hedge_after, Millis(0));
    EXPECT_EQ(d.chains[0].health.max_lag_blocks, 5u);
    // An empty deny list allows everything.
    EXPECT_TRUE(parse("chains:\n  - name: x\n    chain_id: 1\n    methods: {deny: []}\n    "
                      "upstreams: [{id: a, url: 'http://127.0.0.1:1'}]\n")
                    .chains[0]
                    .methods.deny.empty());
}

TEST(Config, ThePoolKeysAreChecked) {
    const std::string head = "chains:\n  - name: x\n    chain_id: 1\n";
    const std::string ups = "    upstreams: [{id: a, url: 'http://127.0.0.1:1'}]\n";
    EXPECT_THAT(error_of(head + "    failover: {max_attempts: 0}\n" + ups),
                HasSubstr("chains[0].failover.max_attempts: 0 is out of range"));
    EXPECT_THAT(error_of(head + "    failover: {retries: 2}\n" + ups),
                HasSubstr("chains[0].failover.retries: unknown key"));
    EXPECT_THAT(error_of(head + "    methods: {deny: [\"debug traces\"]}\n" + ups),
                HasSubstr("chains[0].methods.deny[0]: 'debug traces' is not a method name or a "
                          "prefix ending in *"));
    EXPECT_THAT(error_of(head + "    methods: {allow: debug_*}\n" + ups),
                HasSubstr("chains[0].methods.allow: must be a list"));
    EXPECT_THAT(error_of(head + "    logs: {split: maybe}\n" + ups),
                HasSubstr("chains[0].logs.split: 'maybe' is not one of: true, false"));
    EXPECT_THAT(error_of(head + "    health: {max_lag: 3}\n" + ups),
                HasSubstr("chains[0].health.max_lag: unknown key"));
    EXPECT_THAT(
        error_of(head + "    upstreams: [{id: a, url: 'http://127.0.0.1:1', max_rps: -1}]\n"),
        HasSubstr("chains[0].upstreams[0].max_rps: '-1' is not a whole number"));
}

TEST(Config, EnvironmentVariablesAreSubstituted) {
    Config c = parse(R"(
server:
  listen: ${HOST}:${PORT:-8600}
chains:
  - name: devnet
    chain_id: ${CHAIN_ID}
    upstreams:
      - id: node-a
        url: https://rpc.example.com/v3/${API_KEY}
store:
  path: /data/$${literal}/gw.db
)",
                     {{"HOST", "127.0.0.2"}, {"CHAIN_ID", "5"}, {"API_KEY", "s3cret"}});
    EXPECT_EQ(c.server.listen.to_string(), "127.0.0.2:8600");
    EXPECT_EQ(c.chains[0].chain_id, 5u);
    EXPECT_EQ(c.chains[0].upstreams[0].url, "https://rpc.example.com/v3/s3cret");
    EXPECT_EQ(c.store.path, "/data/${literal}/gw.db");
}

// A PostgreSQL journal's URL takes its password from the environment (or libpq's own PGPASSWORD,
// which the URL need not name).
TEST(Config, APostgresStoresUrlTakesItsPasswordFromTheEnvironment) {
    Config c = parse(
        "store:\n  backend: postgres\n  url: postgresql://gw:${DB_PASSWORD}@db:5432/"
        "gateway?sslmode=verify-full\n" +
            kMinimal,
        {{"DB_PASSWORD", "pa55word"}});
    EXPECT_EQ(c.store.backend, "postgres");
    EXPECT_EQ(c.store.url, "postgresql://gw:pa55word@db:5432/gateway?sslmode=verify-full");
}

TEST(Config, AnUnsetVariableNamesTheKeyAndLine) {
    std::string e = error_of(R"(chains:
  - name: devnet
    chain_id: 1
    upstreams:
      - id: node-a
        url: https://rpc.example.com/${API_KEY}
)");
    EXPECT_THAT(e, HasSubstr("test.yaml:6:"));
    EXPECT_THAT(e, HasSubstr("chains[0].upstreams[0].url"));
    EXPECT_THAT(e, HasSubstr("API_KEY is not set"));
}

TEST(Config, UnknownKeysAreRejectedWithPathAndLine) {
    std::string e = error_of(R"(chains:
  - name: devnet
    chain_id: 1
    upstreams:
      - id: node-a
        url: http://127.0.0.1:1
        weight: 3
)");
    EXPECT_THAT(e, HasSubstr("test.yaml:7:9"));
    EXPECT_THAT(e, HasSubstr("chains[0].upstreams[0].weight: unknown key"));
    EXPECT_THAT(e, HasSubstr("known here: id, url, url_file, tier"));

    EXPECT_THAT(error_of("servr:\n  listen: 127.0.0.1:1\n" + kMinimal),
                HasSubstr("test.yaml:1:1: servr: unknown key"));
    EXPECT_THAT(error_of("server:\n  listn: 127.0.0.1:1\n" + kMinimal),
                HasSubstr("server.listn: unknown key"));
    EXPECT_THAT(error_of("log:\n  colour: red\n" + kMinimal), HasSubstr("log.colour: unknown key"));
}

TEST(Config, RepeatedKeysAreRejected) {
    EXPECT_THAT(error_of("server:\n  threads: 1\n  threads: 2\n" + kMinimal),
                HasSubstr("server.threads: key appears twice"));
}

TEST(Config, MissingRequiredKeys) {
    EXPECT_THAT(error_of("server:\n  threads: 1\n"), HasSubstr("chains: is required"));
    EXPECT_THAT(error_of("chains: []\n"), HasSubstr("chains: must be a non-empty list"));
    EXPECT_THAT(
        error_of("chains:\n  - chain_id: 1\n    upstreams: [{id: a, url: 'http://127.0.0.1:1'}]\n"),
        HasSubstr("chains[0].name: is required"));
    EXPECT_THAT(
        error_of("chains:\n  - name: x\n    upstreams: [{id: a, url: 'http://127.0.0.1:1'}]\n"),
        HasSubstr("chains[0].chain_id: is required"));
    EXPECT_THAT(error_of("chains:\n  - name: x\n    chain_id: 1\n"),
                HasSubstr("chains[0].upstreams: is required"));
    EXPECT_THAT(error_of("chains:\n  - name: x\n    chain_id: 1\n    upstreams: [{id: a}]\n"),
                HasSubstr("chains[0].upstreams[0]: takes exactly one of url and url_file"));
    EXPECT_THAT(error_of("chains:\n  - name: x\n    chain_id: 1\n    upstreams: [{url: "
                         "'http://127.0.0.1:1'}]\n"),
                HasSubstr("chains[0].upstreams[0].id: is required"));
}

TEST(Config, WrongValuesNameTheKey) {
    EXPECT_THAT(error_of("server:\n  threads: 0\n" + kMinimal),
                HasSubstr("test.yaml:2:12: server.threads: 0 is out of range"));
    EXPECT_THAT(error_of("server:\n  threads: two\n" + kMinimal),
                HasSubstr("server.threads: 'two' is not a whole number"));
    EXPECT_THAT(error_of("server:\n  threads: -1\n" + kMinimal),
                HasSubstr("server.threads: '-1' is not a whole number"));
    EXPECT_THAT(error_of("server:\n  threads: [1]\n" + kMinimal),
                HasSubstr("server.threads: must be a single value"));
    EXPECT_THAT(error_of("server:\n  listen: localhost\n" + kMinimal),
                HasSubstr("server.listen: 'localhost': expected host:port"));
    EXPECT_THAT(error_of("server:\n  listen: 127.0.0.1:70000\n" + kMinimal),
                HasSubstr("server.listen"));
    EXPECT_THAT(error_of("server:\n  listen: example.com:80\n" + kMinimal),
                HasSubstr("is not an IP address"));
    EXPECT_THAT(error_of("server:\n  listen: 127.0.0.1:9545\n" + kMinimal),
                HasSubstr("server.admin_listen: must differ"));
    EXPECT_THAT(error_of("server: 5\n" + kMinimal), HasSubstr("server: must be a mapping"));
    EXPECT_THAT(error_of("server:\n  drain_delay_ms: 3600000\n" + kMinimal),
                HasSubstr("server.drain_delay_ms: 3600000 is out of range [0, 600000]"));
    EXPECT_THAT(error_of("server:\n  compression: {level: 10}\n" + kMinimal),
                HasSubstr("server.compression.level: 10 is out of range [1, 9]"));
    EXPECT_THAT(error_of("server:\n  compression: {min_byte: 10}\n" + kMinimal),
                HasSubstr("min_byte"));
    EXPECT_THAT(error_of("server:\n  drain_delay_ms: 5s\n" + kMinimal),
                HasSubstr("server.drain_delay_ms: '5s' is not a whole number"));
    EXPECT_THAT(error_of("log:\n  level: loud\n" + kMinimal),
                HasSubstr("log.level: 'loud' is not one of"));
    EXPECT_THAT(error_of("store:\n  backend: mysql\n" + kMinimal),
                HasSubstr("store.backend: 'mysql' is not one of: sqlite, postgres"));
    EXPECT_THAT(error_of("store:\n  backend: postgres\n" + kMinimal),
                HasSubstr("store.url: is required with backend postgres"));
    EXPECT_THAT(
        error_of("store:\n  backend: postgres\n  url: mysql://u:hunter2@db/x\n" + kMinimal),
        AllOf(HasSubstr("store.url: must start with postgresql://"), Not(HasSubstr("hunter2"))));
    for (const char* odd : {"postgresql://gw:se/cret@db:5432/x", "postgresql://gw:ab%zzcd@db/x"})
        EXPECT_THAT(
            error_of(std::string("store:\n  backend: postgres\n  url: ") + odd + "\n" + kMinimal),
            AllOf(HasSubstr("store.url: is not a valid URL"), Not(HasSubstr("cret")),
                  Not(HasSubstr("zzcd"))));
    EXPECT_THAT(error_of("store:\n  url: postgresql://db/x\n" + kMinimal),
                HasSubstr("store.url: is for backend postgres"));
    EXPECT_THAT(error_of("store:\n  timeout_ms: 0\n" + kMinimal),
                HasSubstr("store.timeout_ms: 0 is out of range"));
    EXPECT_THAT(error_of("store:\n  timeout_ms: soon\n" + kMinimal),
                HasSubstr("store.timeout_ms: 'soon' is not a whole number"));
    EXPECT_THAT(error_of("chains:\n  - name: Dev Net\n    chain_id: 1\n    upstreams: [{id: a, "
                         "url: 'http://127.0.0.1:1'}]\n"),
                HasSubstr("chains[0].name: 'Dev Net' must be"));
    EXPECT_THAT(error_of("chains:\n  - name: x\n    chain_id: 0\n    upstreams: [{id: a, url: "
                         "'http://127.0.0.1:1'}]\n"),
                HasSubstr("chains[0].chain_id: 0 is out of range"));
    EXPECT_THAT(error_of("chains:\n  - name: x\n    chain_id: 1\n    upstreams: [{id: a, url: "
                         "'http://127.0.0.1:1', tier: gold}]\n"),
                HasSubstr("chains[0].upstreams[0].tier: 'gold' is not one of: primary, fallback"));
    EXPECT_THAT(error_of("chains:\n  - name: x\n    chain_id: 1\n    upstreams: [{id: a, url: "
                         "'http://127.0.0.1:1', timeout_ms: 0}]\n"),
                HasSubstr("chains[0].upstreams[0].timeout_ms: 0 is out of range"));
    EXPECT_THAT(error_of("chains:\n  - name: x\n    chain_id: 1\n    health: {interval_ms: 1}\n    "
                         "upstreams: [{id: a, url: 'http://127.0.0.1:1'}]\n"),
                HasSubstr("chains[0].health.interval_ms: 1 is out of range"));
    EXPECT_THAT(error_of("chains:\n  - name: x\n    chain_id: 1\n    upstreams: [{id: a, url: "
                         "'http://127.0.0.1:1', ca_file: /nonexistent/ca.pem}]\n"),
                HasSubstr("chains[0].upstreams[0].ca_file: cannot read"));
}

TEST(Config, BadUrlsAreRejectedWithoutRepeatingThem) {
    // An upstream URL often carries an API key: the message names the key path, never the value.
    const std::string e = error_of(
        "chains:\n  - name: x\n    chain_id: 1\n    upstreams: [{id: a, url: "
        "'ws://host/SECRETKEY'}]\n");
    EXPECT_THAT(e, HasSubstr("chains[0].upstreams[0].url: must start with http:// or https://"));
    EXPECT_THAT(e, Not(HasSubstr("SECRETKEY")));
    EXPECT_THAT(error_of("chains:\n  - name: x\n    chain_id: 1\n    upstreams: [{id: a, url: 'not "
                         "a url SECRETKEY'}]\n"),
                AllOf(HasSubstr("is not a valid absolute URL"), Not(HasSubstr("SECRETKEY"))));
}

TEST(Config, AnUpstreamUrlIsReadFromAFileNamedByUrlFile) {
    // A provider URL with its key, mounted from a Secret: read from the file, trimmed, checked
    // like `url`, and never repeated in a message.
    const std::string dir = test::make_temp_dir("config-url-file");
    test::write_file(dir + "/url", "https://eth.example.com/v2/SECRETKEY\n");
    test::write_file(dir + "/bad", "ws://eth.example.com/SECRETKEY\n");
    test::write_file(dir + "/empty", " \n");
    const auto upstream = [&](const std::string& fields) {
        return "chains:\n  - name: x\n    chain_id: 1\n    upstreams: [{id: a, " + fields + "}]\n";
    };
    const config::Config c = test::parse(upstream("url_file: " + dir + "/url"));
    EXPECT_EQ(c.chains[0].upstreams[0].url, "https://eth.example.com/v2/SECRETKEY");
    EXPECT_THAT(error_of(upstream("url_file: " + dir + "/bad")),
                AllOf(HasSubstr("chains[0].upstreams[0].url_file: must start with http://"),
                      Not(HasSubstr("SECRETKEY"))));
    EXPECT_THAT(error_of(upstream("url_file: " + dir + "/empty")),
                HasSubstr("chains[0].upstreams[0].url_file: '" + dir + "/empty' is empty"));
    EXPECT_THAT(error_of(upstream("url_file: " + dir + "/missing")),
                HasSubstr("chains[0].upstreams[0].url_file: cannot read"));
    EXPECT_THAT(error_of(upstream("url: 'http://127.0.0.1:1', url_file: " + dir + "/url")),
                HasSubstr("chains[0].upstreams[0]: takes exactly one of url and url_file"));
    EXPECT_THAT(error_of(upstream("tier: primary")),
                HasSubstr("chains[0].upstreams[0]: takes exactly one of url and url_file"));
}

TEST(Config, DuplicatesAreRejected) {
    EXPECT_THAT(error_of(kMinimal + R"(  - name: devnet
    chain_id: 2
    upstreams:
      - id: other
        url: http://127.0.0.1:2
)"),
                HasSubstr("chains[1].name: chain 'devnet' is configured twice"));
    EXPECT_THAT(error_of(kMinimal + R"(  - name: second
    chain_id: 2
    upstreams:
      - id: node-a
        url: http://127.0.0.1:2
)"),
                HasSubstr("chains[1].upstreams[0].id: upstream id 'node-a' is used twice"));
}

TEST(Config, InvalidYamlGivesTheLine) {
    EXPECT_THAT(error_of("chains:\n  - name: [unclosed\n"), HasSubstr("test.yaml:3:"));
    EXPECT_THAT(error_of("chains:\n  - name: [unclosed\n"), HasSubstr("invalid YAML"));
    EXPECT_THAT(error_of(""), HasSubstr("the configuration is empty"));
    EXPECT_THAT(error_of("- a\n- b\n"), HasSubstr("must be a mapping"));
}

TEST(Config, LoadFileReportsAMissingFile) {
    try {
        load_config_file("/nonexistent/gateway.yaml");
        FAIL() << "no error";
    } catch (const ConfigError& e) {
        EXPECT_THAT(e.what(), HasSubstr("/nonexistent/gateway.yaml: cannot read"));
    }
    const std::string dir = test::make_temp_dir("config-test");
    test::write_file(dir + "/gw.yaml", kMinimal);
    EXPECT_EQ(load_config_file(dir + "/gw.yaml").chains[0].name, "devnet");
}

TEST(Config, ATextOverOneMebibyteIsRefusedBeforeTheYamlParserSeesIt) {
    std::string padded = kMinimal + "# ";
    padded += std::string(kMaxConfigBytes - padded.size() - 1, 'x') + "\n";
    ASSERT_EQ(padded.size(), kMaxConfigBytes);
    EXPECT_EQ(parse(padded).chains[0].name, "devnet") << "the limit itself is allowed";
    padded += "\n";
    EXPECT_THAT(error_of(padded),
                HasSubstr("test.yaml: the configuration is over 1048576 bytes (1 MiB)"));
}

TEST(Config, LoadFileReadsNoMoreThanTheLimit) {
    const std::string dir = test::make_temp_dir("config-size-test");
    test::write_file(dir + "/big.yaml", kMinimal + "# " + std::string(kMaxConfigBytes, 'x'));
    try {
        load_config_file(dir + "/big.yaml");
        FAIL() << "no error";
    } catch (const ConfigError& e) {
        EXPECT_THAT(e.what(), HasSubstr("big.yaml: the configuration is over 1048576 bytes"));
    }
    // A file without an end is refused after the limit, not read until memory runs out.
    try {
        load_config_file("/dev/zero");
        FAIL() << "no error";
    } catch (const ConfigError& e) {
        EXPECT_THAT(e.what(), HasSubstr("/dev/zero: the configuration is over 1048576 bytes"));
    }
}

// std::regex matches recursively, a stack frame or more per character: values are bounded before
// they are matched, or a long one (well within the size limit) overflows the stack.
TEST(Config, LongValuesAreRefusedWithoutOverflowingTheStack) {
    const std::string longer(200'000, 'a');
    const std::string url = R"(
chains:
  - name: devnet
    chain_id: 31337
    upstreams:
      - id: node-a
        url: http://127.0.0.1:18545/${)" +
                            longer + "}\n";
    EXPECT_THAT(error_of(url), HasSubstr("is not a valid variable name"));
    EXPECT_THAT(error_of("server:\n  cors:\n    allowed_origins: [\"https://" + longer + "\"]\n" +
                         kMinimal),
                HasSubstr("is not an origin"));
    EXPECT_THAT(error_of(kMinimal + "    methods:\n      deny: [" + longer + "]\n"),
                HasSubstr("is not a method name"));
    EXPECT_THAT(error_of(kMinimal + "    accounts: [{address: \"0x" + longer + "\", signer: a}]\n"),
                HasSubstr("is not an address"));
}

TEST(Config, WritesAndCacheKeys) {
    const Config d = parse(kMinimal);
    EXPECT_EQ(d.chains[0].tx.confirmations, 1u);
    EXPECT_EQ(d.chains[0].tx.broadcast_fanout, 2u);
    EXPECT_TRUE(d.chains[0].cache.enabled);
    EXPECT_TRUE(d.chains[0].cache.coalesce);
    EXPECT_EQ(d.chains[0].cache.max_bytes, 64u * 1024 * 1024);
    EXPECT_TRUE(d.chains[0].cache.methods.empty());
    const Config c = parse(R"(
chains:
  - name: devnet
    chain_id: 31337
    cache: {enabled: false, coalesce: false, max_bytes: 1000, max_stale_ms: 60000,
            methods: {eth_call: off, eth_getLogs: final, eth_blockNumber: on}}
    tx: {confirmations: 3, max_queued_per_sender: 4, max_queued: 40, poll_interval_ms: 250,
             rebroadcast_after_ms: 9000, broadcast_fanout: 1}
    upstreams:
      - {id: node-a, url: "http://127.0.0.1:18545"}
)");
    const auto& w = c.chains[0].tx;
    EXPECT_EQ(w.confirmations, 3u);
    EXPECT_EQ(w.max_queued_per_sender, 4u);
    EXPECT_EQ(w.max_queued, 40u);
    EXPECT_EQ(w.poll_interval, std::chrono::milliseconds(250));
    EXPECT_EQ(w.rebroadcast_after, std::chrono::milliseconds(9000));
    EXPECT_EQ(w.broadcast_fanout, 1u);
    const auto& cache = c.chains[0].cache;
    EXPECT_FALSE(cache.enabled);
    EXPECT_FALSE(cache.coalesce);
    EXPECT_EQ(cache.max_bytes, 1000u);
    EXPECT_EQ(cache.max_stale, std::chrono::milliseconds(60000));
    EXPECT_EQ(cache.methods.at("eth_call"), CacheMode::off);
    EXPECT_EQ(cache.methods.at("eth_getLogs"), CacheMode::final);
    EXPECT_EQ(cache.methods.at("eth_blockNumber"), CacheMode::on);
    EXPECT_THAT(error_of(R"(
chains:
  - name: devnet
    chain_id: 1
    tx: {confirmations: 0}
    upstreams: [{id: a, url: "http://127.0.0.1:1"}]
)"),
                HasSubstr("chains[0].tx.confirmations: 0 is out of range"));
    EXPECT_THAT(error_of("cache: {max_bytes: 1}\n" + kMinimal),
                HasSubstr("cache: is set per chain now: chains[].cache"));
    const std::string chain_head = R"(
chains:
  - name: devnet
    chain_id: 1
    upstreams: [{id: a, url: "http://127.0.0.1:1"}]
)";
    EXPECT_THAT(error_of(chain_head + "    cache: {ttl: 1}\n"),
                HasSubstr("chains[0].cache.ttl: unknown key"));
    EXPECT_THAT(error_of(chain_head + "    cache: {methods: {eth_sendRawTransaction: on}}\n"),
                HasSubstr("chains[0].cache.methods.eth_sendRawTransaction: not a read"));
    EXPECT_THAT(error_of(chain_head + "    cache: {methods: {eth_call: sometimes}}\n"),
                HasSubstr("chains[0].cache.methods.eth_call"));
}

// Junk that can never be sent expires, each client has its own cap, and finished transactions
// leave the journal: the defaults, the keys, and a retention too short for what relies on it.
TEST(Config, ExpiryCapsAndRetention) {
    const Config d = parse(kMinimal);
    EXPECT_EQ(d.chains[0].tx.expire_after, std::chrono::hours(1));
    EXPECT_EQ(d.chains[0].tx.max_queued_per_client, 1000u);
    EXPECT_EQ(d.store.retention, std::chrono::hours(7 * 24));
    const Config c = parse(R"(
store: {retention_ms: 172800000}
chains:
  - name: devnet
    chain_id: 31337
    tx: {expire_after_ms: 0, max_queued_per_client: 7}
    upstreams:
      - {id: node-a, url: "http://127.0.0.1:18545"}
)");
    EXPECT_EQ(c.store.retention, std::chrono::hours(48));
    EXPECT_EQ(c.chains[0].tx.expire_after, Millis(0)) << "0: never";
    EXPECT_EQ(c.chains[0].tx.max_queued_per_client, 7u);

    for (const char* short_one : {"0", "1000", "172799999"})
        EXPECT_THAT(error_of(std::string("store: {retention_ms: ") + short_one + "}\n" + kMinimal),
                    HasSubstr("store.retention_ms: " + std::string(short_one) +
                              " is less than 172800000 (48 hours)"));
    const std::string chain_head = R"(
chains:
  - name: devnet
    chain_id: 1
    upstreams: [{id: a, url: "http://127.0.0.1:1"}]
)";
    EXPECT_THAT(error_of(chain_head + "    tx: {max_queued_per_client: 0}\n"),
                HasSubstr("chains[0].tx.max_queued_per_client: 0 is out of range"));
    EXPECT_THAT(error_of(chain_head + "    tx: {expire_after_ms: soon}\n"),
                HasSubstr("chains[0].tx.expire_after_ms: 'soon' is not a whole number"));
}

TEST(Config, SignersAccountsAndFees) {
    const Config c = parse(R"(
signers:
  - {id: hot, type: local, key_env: HOT_KEY}
  - {id: vault, type: remote, url: "https://signer.internal/", addresses: ["0x70997970C51812dc3A010C7d01b50e0d17dc79C8"], timeout_ms: 2500}
  - {id: mpc, type: custody-stub, stub_keys_env: [K1, K2]}
  - {id: ks, type: local, keystore: /etc/keys/a.json, passphrase_env: PASS}
chains:
  - name: devnet
    chain_id: 31337
    accounts:
      - {address: "0xF39Fd6e51aad88F6F4ce6aB8827279cffFb92266", signer: hot}
      - {address: "0x70997970C51812dc3A010C7d01b50e0d17dc79C8", signer: vault, max_fee_per_gas_gwei: 40, max_priority_fee_gwei: 2}
    tx:
      gas_margin_percent: 25
      fee: {max_fee_per_gas_gwei: 300, max_priority_fee_gwei: 3, bump_percent: 20, bump_after_blocks: 2}
      retry: {max_attempts: 4, backoff_ms: 200}
    upstreams:
      - {id: node-a, url: "http://127.0.0.1:18545"}
)");
    ASSERT_EQ(c.signers.size(), 4u);
    EXPECT_EQ(c.signers[0].key_env, "HOT_KEY");
    EXPECT_EQ(c.signers[1].addresses[0], "0x70997970c51812dc3a010c7d01b50e0d17dc79c8");
    EXPECT_EQ(c.signers[1].timeout, std::chrono::milliseconds(2500));
    EXPECT_EQ(c.signers[2].stub_keys_env, (std::vector<std::string>{"K1", "K2"}));
    ASSERT_EQ(c.chains[0].accounts.size(), 2u);
    EXPECT_EQ(c.chains[0].accounts[0].address, "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266");
    EXPECT_FALSE(c.chains[0].accounts[0].max_fee_per_gas_gwei.has_value());
    EXPECT_EQ(c.chains[0].accounts[1].max_fee_per_gas_gwei, 40u);
    EXPECT_EQ(c.chains[0].accounts[1].max_priority_fee_gwei, 2u);
    const auto& tx = c.chains[0].tx;
    EXPECT_EQ(tx.gas_margin_percent, 25u);
    EXPECT_EQ(tx.fee.max_fee_per_gas_gwei, 300u);
    EXPECT_EQ(tx.fee.bump_percent, 20u);
    EXPECT_EQ(tx.fee.bump_after_blocks, 2u);
    EXPECT_EQ(tx.retry.max_attempts, 4u);
    EXPECT_EQ(tx.retry.backoff, std::chrono::milliseconds(200));

    const std::string chain = R"(
chains:
  - name: devnet
    chain_id: 31337
    accounts: [{address: "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266", signer: nobody}]
    upstreams: [{id: a, url: "http://127.0.0.1:1"}]
)";
    EXPECT_THAT(error_of(chain), HasSubstr("chains[0].accounts[0].signer: no signer 'nobody'"));
    EXPECT_THAT(error_of("signers: [{id: x, type: local}]\n" + kMinimal),
                HasSubstr("exactly one of key_file, key_env, keystore"));
    EXPECT_THAT(error_of("signers: [{id: x, type: local, keystore: k.json}]\n" + kMinimal),
                HasSubstr("passphrase_env: is required with a keystore"));
    EXPECT_THAT(error_of("signers: [{id: x, type: hsm}]\n" + kMinimal),
                HasSubstr("signers[0].type"));
    EXPECT_THAT(error_of("signers: [{id: x, type: remote, url: 'http://a'}]\n" + kMinimal),
                HasSubstr("needs url and addresses"));
    EXPECT_THAT(
        error_of("signers: [{id: x, type: local, key_env: A}, {id: x, type: local, key_env: "
                 "B}]\n" +
                 kMinimal),
        HasSubstr("signer id 'x' is used twice"));
    EXPECT_THAT(error_of(R"(
chains:
  - name: devnet
    chain_id: 31337
    accounts: [{address: "0x1234", signer: x}]
    upstreams: [{id: a, url: "http://127.0.0.1:1"}]
)"),
                HasSubstr("is not an address"));
    EXPECT_THAT(error_of(R"(
chains:
  - name: devnet
    chain_id: 1
    tx: {fee: {bump_percent: 5}}
    upstreams: [{id: a, url: "http://127.0.0.1:1"}]
)"),
                HasSubstr("chains[0].tx.fee.bump_percent: 5 is out of range [10, 1000]"));
}

// Catalog row C2: a chain's policy, and a sender's own in its place.
TEST(Config, PolicyRulesForTheChainAndASender) {
    const Config c = parse(R"(
signers:
  - {id: hot, type: local, key_env: HOT_KEY}
chains:
  - name: devnet
    chain_id: 31337
    policy:
      max_value_wei: "1000000000000000000"
      daily_value_wei: "5000000000000000000"
      allowed_to: ["0x000000000000000000000000000000000000dEaD"]
      allowed_selectors: ["0xA9059CBB"]
      approval_ttl_ms: 3600000
    accounts:
      - {address: "0xF39Fd6e51aad88F6F4ce6aB8827279cffFb92266", signer: hot, policy: {max_value_wei: "0"}}
      - {address: "0x70997970C51812dc3A010C7d01b50e0d17dc79C8", signer: hot}
    upstreams:
      - {id: node-a, url: "http://127.0.0.1:18545"}
)");
    const auto& chain = c.chains[0];
    ASSERT_TRUE(chain.policy);
    EXPECT_EQ(chain.policy->max_value_wei, "1000000000000000000");
    EXPECT_EQ(chain.policy->daily_value_wei, "5000000000000000000");
    EXPECT_EQ(chain.policy->allowed_to,
              (std::vector<std::string>{"0x000000000000000000000000000000000000dead"}));
    EXPECT_EQ(chain.policy->allowed_selectors, (std::vector<std::string>{"0xa9059cbb"}));
    EXPECT_EQ(chain.policy->approval_ttl, std::chrono::milliseconds(3'600'000));
    // The sender's own rules replace the chain's whole: nothing of the chain's is merged in.
    ASSERT_TRUE(chain.accounts[0].policy);
    EXPECT_EQ(chain.accounts[0].policy->max_value_wei, "0");
    EXPECT_FALSE(chain.accounts[0].policy->daily_value_wei);
    EXPECT_FALSE(chain.accounts[0].policy->allowed_to);
    EXPECT_EQ(chain.accounts[0].policy->approval_ttl, std::chrono::milliseconds(86'400'000));
    EXPECT_FALSE(chain.accounts[1].policy);
    EXPECT_FALSE(parse(kMinimal).chains[0].policy);

    const auto with_policy = [](const std::string& policy) {
        return "chains:\n  - name: devnet\n    chain_id: 1\n    policy: " + policy +
               "\n    upstreams: [{id: a, url: \"http://127.0.0.1:1\"}]\n";
    };
    EXPECT_THAT(error_of(with_policy("{max_value_wei: \"1e18\"}")),
                HasSubstr("chains[0].policy.max_value_wei: '1e18' is not an amount of wei"));
    EXPECT_THAT(error_of(with_policy("{daily_value_wei: \"-1\"}")),
                HasSubstr("is not an amount of wei"));
    EXPECT_THAT(error_of(with_policy(
                    "{max_value_wei: \"115792089237316195423570985008687907853269984665640564039457"
                    "584007913129639936\"}")),
                HasSubstr("at most 2^256 - 1"));
    EXPECT_THAT(error_of(with_policy("{allowed_to: [\"0x1234\"]}")),
                HasSubstr("chains[0].policy.allowed_to[0]"));
    EXPECT_THAT(
        error_of(with_policy("{allowed_to: \"0x000000000000000000000000000000000000dead\"}")),
        HasSubstr("must be a list of addresses"));
    EXPECT_THAT(error_of(with_policy("{allowed_selectors: [\"transfer(address,uint256)\"]}")),
                HasSubstr("is not a function selector"));
    EXPECT_THAT(error_of(with_policy("{approval_ttl_ms: 10}")), HasSubstr("out of range"));
    EXPECT_THAT(error_of(with_policy("{service: {timeout_ms: 5}}")),
                HasSubstr("chains[0].policy.service.url: is required"));
    EXPECT_THAT(error_of(with_policy("{service: {url: \"ftp://user:secret@policy/\"}}")),
                HasSubstr("must be an http:// or https:// URL"));
    EXPECT_EQ(
        error_of(with_policy("{service: {url: \"ftp://user:secret@policy/\"}}")).find("secret"),
        std::string::npos);
    EXPECT_THAT(error_of(with_policy("{service: {url: \"http://policy/\", timeout_ms: 0}}")),
                HasSubstr("out of range"));
    EXPECT_THAT(error_of(with_policy("{service: {url: \"http://policy/\", retries: 3}}")),
                HasSubstr("unknown key"));
    const Config with_service =
        parse(with_policy("{service: {url: \"https://policy.internal/check\", timeout_ms: 1500}}"));
    ASSERT_TRUE(with_service.chains[0].policy->service);
    EXPECT_EQ(with_service.chains[0].policy->service->url, "https://policy.internal/check");
    EXPECT_EQ(with_service.chains[0].policy->service->timeout, std::chrono::milliseconds(1500));
}

// Catalog rows I1 and I2: event streams, and what they must say.
TEST(Config, EventStreams) {
    const std::string head = kMinimal + "streams:\n";
    const std::map<std::string, std::string> env{{"HOOK_SECRET", "0123456789abcdef-secret"}};
    const Config c = parse(head + R"(  - id: transfers
    chain: devnet
    addresses: ["0x5FbDB2315678afecb367f032d93F642f64180aa3"]
    topics: [["0xDDF252AD1BE2C89B69C2B068FC378DAA952BA7F163C4A11628F55A4DF523B3EF"], null]
    from_block: 100
    confirmations: 3
    batch_size: 50
    webhook: {url: "http://127.0.0.1:8080/events", timeout_ms: 2500, secret_env: HOOK_SECRET}
  - id: latest
    chain: devnet
    from_block: latest
    webhook: {url: "https://app.internal/hook", secret_env: HOOK_SECRET}
)",
                           env);
    ASSERT_EQ(c.streams.size(), 2u);
    const auto& s = c.streams[0];
    EXPECT_EQ(s.id, "transfers");
    EXPECT_EQ(s.addresses,
              (std::vector<std::string>{"0x5fbdb2315678afecb367f032d93f642f64180aa3"}));
    ASSERT_EQ(s.topics.size(), 2u);
    EXPECT_EQ(s.topics[0][0], "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef");
    EXPECT_TRUE(s.topics[1].empty());
    EXPECT_EQ(s.from_block, 100u);
    EXPECT_EQ(s.confirmations, 3u);
    EXPECT_EQ(s.batch_size, 50u);
    EXPECT_EQ(s.webhook.timeout, std::chrono::milliseconds(2500));
    EXPECT_EQ(s.webhook.secret, "0123456789abcdef-secret");
    EXPECT_FALSE(c.streams[1].from_block);
    EXPECT_EQ(c.streams[1].confirmations, 12u);

    const auto one = [&](const std::string& fields) {
        return head + "  - {id: s, chain: devnet, " + fields + "}\n";
    };
    const std::string hook = "webhook: {url: \"http://127.0.0.1:1/\", secret_env: HOOK_SECRET}";
    EXPECT_THAT(error_of(head + "  - {id: s, chain: nowhere, " + hook + "}\n", env),
                HasSubstr("streams[0].chain: no chain 'nowhere'"));
    EXPECT_THAT(error_of(one("webhook: {url: \"http://127.0.0.1:1/\"}"), env),
                HasSubstr("secret_env: is required"));
    EXPECT_THAT(error_of(one(hook), {}), HasSubstr("HOOK_SECRET is not set"));
    EXPECT_THAT(error_of(one(hook), {{"HOOK_SECRET", "short"}}),
                HasSubstr("shorter than 16 bytes (it is not shown)"));
    EXPECT_EQ(error_of(one(hook), {{"HOOK_SECRET", "short"}}).find("short\""), std::string::npos);
    EXPECT_THAT(error_of(one("topics: [\"0x12\"], " + hook), env),
                HasSubstr("streams[0].topics[0]: '0x12' is not a topic"));
    EXPECT_THAT(error_of(one("webhook: {url: \"ftp://h/\", secret_env: HOOK_SECRET}"), env),
                HasSubstr("must be an http:// or https:// URL"));
    EXPECT_THAT(error_of(head + "  - {id: s, chain: devnet, " + hook +
                             "}\n  - {id: s, chain: "
                             "devnet, " +
                             hook + "}\n",
                         env),
                HasSubstr("stream id 's' is used twice"));
    EXPECT_THAT(error_of(head + "  - {id: \"S!\", chain: devnet, " + hook + "}\n", env),
                HasSubstr("must be 1-63 lowercase letters"));

    // kind: transactions, for chosen senders; the log filter is not for it, nor senders for logs.
    const Config t = parse(
        one("kind: transactions, senders: [\"0xF39Fd6e51aad88F6F4ce6aB8827279cffFb92266\"], " +
            hook),
        env);
    EXPECT_EQ(t.streams[0].kind, StreamConfig::Kind::transactions);
    EXPECT_EQ(t.streams[0].senders,
              (std::vector<std::string>{"0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266"}));
    EXPECT_EQ(t.streams[0].confirmations, 0u);
    EXPECT_EQ(c.streams[0].kind, StreamConfig::Kind::logs);
    EXPECT_THAT(error_of(one("kind: transactions, topics: [], " + hook), env),
                HasSubstr("streams[0].topics: is for kind logs"));
    EXPECT_THAT(error_of(one("senders: [], " + hook), env),
                HasSubstr("streams[0].senders: is for kind transactions"));
    EXPECT_THAT(error_of(one("kind: blocks, " + hook), env),
                HasSubstr("must be logs or transactions"));
}

// A stream made through the admin API: the same checks, from JSON, with its own secret (or none:
// the gateway makes one), and nothing from the gateway's environment.
TEST(Config, AStreamDefinitionFromTheApi) {
    const StreamConfig s = parse_stream_definition(
        R"({"id":"mine","chain":"devnet","topics":[null],"from_block":7,"confirmations":1,)"
        R"("webhook":{"url":"http://127.0.0.1:9/hook","timeout_ms":1000,"secret":"0123456789abcdef"}})");
    EXPECT_EQ(s.id, "mine");
    EXPECT_EQ(s.from_block, 7u);
    EXPECT_EQ(s.confirmations, 1u);
    EXPECT_EQ(s.webhook.timeout, std::chrono::milliseconds(1000));
    EXPECT_EQ(s.webhook.secret, "0123456789abcdef");
    EXPECT_TRUE(
        parse_stream_definition(R"({"id":"m","chain":"devnet","webhook":{"url":"http://a/"}})")
            .webhook.secret.empty());
    auto refused = [](const std::string& json) {
        try {
            parse_stream_definition(json);
        } catch (const ConfigError& e) {
            return std::string(e.what());
        }
        return std::string("accepted");
    };
    EXPECT_THAT(refused("[1]"), HasSubstr("must be a JSON object"));
    EXPECT_THAT(
        refused(R"({"id":"m","chain":"devnet","webhook":{"url":"http://a/","secret_env":"HOME"}})"),
        HasSubstr("unknown key"));
    // As written: ${NAME}, ${NAME:-default} and $${ are not read from anywhere.
    EXPECT_EQ(
        parse_stream_definition(
            R"({"id":"m","chain":"${HOME}","webhook":{"url":"http://a/","secret":"${X:-0123456789abcdef}$${"}})")
            .webhook.secret,
        "${X:-0123456789abcdef}$${");
    EXPECT_THAT(refused(R"({"id":"m","chain":"devnet","webhook":{"url":"http://${HOME}/"}})"),
                HasSubstr("webhook.url"));
    EXPECT_THAT(
        refused(R"({"id":"m","chain":"devnet","webhook":{"url":"http://a/","secret":"x"}})"),
        HasSubstr("16 to 256 bytes"));
    EXPECT_THAT(
        refused(R"({"id":"m","chain":"devnet","batch_size":0,"webhook":{"url":"http://a/"}})"),
        HasSubstr("batch_size"));
    std::string deep = R"({"id":"m","chain":"devnet","topics":)";
    for (int i = 0; i < 20; ++i) deep += "[";
    for (int i = 0; i < 20; ++i) deep += "]";
    EXPECT_THAT(refused(deep + R"(,"webhook":{"url":"http://a/"}})"),
                HasSubstr("nested too deeply"));
}

TEST(Config, TheShippedFilesAreValid) {
    // config/example.yaml shows every key; it must stay loadable as the code changes.
    const auto env = [](std::string_view name) -> std::optional<std::string> {
        return "from-env-" + std::string(name);
    };
    const Config example = load_config_file(GATEWAY_SOURCE_DIR "/config/example.yaml", env);
    ASSERT_EQ(example.chains.size(), 2u);
    EXPECT_EQ(example.chains[0].health.max_lag_blocks, 5u);
    EXPECT_EQ(example.chains[0].upstreams[1].max_logs_range, 2000u);
    EXPECT_EQ(example.chains[0].upstreams[1].max_rps, 25);
    EXPECT_EQ(example.chains[0].methods.deny.size(), 9u);
    ASSERT_EQ(example.signers.size(), 2u);
    EXPECT_EQ(example.chains[0].accounts.size(), 2u);
    EXPECT_EQ(example.chains[0].tx.fee.bump_percent, 12u);
    EXPECT_EQ(example.chains[0].reorgs.depth, 128u);
    EXPECT_EQ(example.chains[1].reorgs.depth, 128u) << "the default";
    EXPECT_EQ(example.auth.clients.size(), 2u);
    EXPECT_TRUE(example.auth.jwt.enabled());
    EXPECT_FALSE(example.auth.admin_token.empty());
    const Config devnet = load_config_file(GATEWAY_SOURCE_DIR "/config/gateway.yaml", env);
    EXPECT_EQ(devnet.chains[0].chain_id, 31337u);
    EXPECT_EQ(devnet.chains[0].accounts.size(), 1u);
    // The image's default: the node and the admin token from the environment, the rest defaults.
    const auto container_env = [](std::string_view name) -> std::optional<std::string> {
        if (name == "UPSTREAM_URL") return "http://10.0.0.5:8545";
        if (name == "GATEWAY_ADMIN_TOKEN") return "an-admin-token-of-the-pod";
        return std::nullopt;
    };
    const Config container =
        load_config_file(GATEWAY_SOURCE_DIR "/config/container.yaml", container_env);
    EXPECT_EQ(container.chains[0].name, "mainnet");
    EXPECT_EQ(container.chains[0].chain_id, 1u);
    EXPECT_EQ(container.store.path, "/var/lib/chain-gateway/gateway.db");
    EXPECT_EQ(container.server.admin_listen.port, 9545);
    try {
        load_config_file(GATEWAY_SOURCE_DIR "/config/container.yaml",
                         [](std::string_view name) -> std::optional<std::string> {
                             if (name == "GATEWAY_ADMIN_TOKEN") return "an-admin-token-of-the-pod";
                             return std::nullopt;
                         });
        ADD_FAILURE() << "loaded without UPSTREAM_URL";
    } catch (const ConfigError& e) {
        EXPECT_THAT(e.what(), HasSubstr("UPSTREAM_URL"));
    }
}

TEST(Config, ParseEndpoint) {
    EXPECT_EQ(parse_endpoint("127.0.0.1:0").port, 0);
    EXPECT_EQ(parse_endpoint("[::]:8545").host, "::");
    EXPECT_THROW(parse_endpoint("127.0.0.1"), std::invalid_argument);
    EXPECT_THROW(parse_endpoint("127.0.0.1:"), std::invalid_argument);
    EXPECT_THROW(parse_endpoint("127.0.0.1:x"), std::invalid_argument);
    EXPECT_THROW(parse_endpoint("::1:80"), std::invalid_argument);
    EXPECT_THROW(parse_endpoint("[::1]80"), std::invalid_argument);
}

}  // namespace
}  // namespace gateway::config
