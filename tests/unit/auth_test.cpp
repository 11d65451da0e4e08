// Who may call the RPC listener: API keys, bearer JWTs (RS256, ES256) against a fixed key set, a
// counting one and the fetching one in front of a JWKS server, the token cache, rate limits and
// the bounded client labels.

#include "gateway/auth/auth.hpp"

#include "gateway/metrics/metrics.hpp"
#include "support/io_thread.hpp"
#include "support/jwks_server.hpp"
#include "support/jwt_issuer.hpp"
#include "support/raw_server.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <boost/asio/use_future.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <atomic>
#include <functional>
#include <future>
#include <mutex>
#include <random>
#include <thread>

namespace gateway::auth {
namespace {

namespace asio = boost::asio;
namespace json = boost::json;
using namespace std::chrono_literals;
using test::JwtKey;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr std::int64_t kNow = 1'800'000'000;  // the tokens' Unix time
constexpr const char* kIssuer = "https://login.example.test";
constexpr const char* kAudience = "chain-gateway";
constexpr const char* kSenderA = "0x2c7536e3605d9c16a7a3d7b1898e529396a65c23";
constexpr const char* kSenderB = "0x8ba1f109551bd432803012645ac136ddd64dba72";
constexpr const char* kOldKey = "indexer-key-2024-0123456789abcdef";
constexpr const char* kNewKey = "indexer-key-2025-fedcba9876543210";
constexpr const char* kWalletKey = "wallet-key-00112233445566778899";

// RSA keys take a moment to make: one set for the whole suite.
struct Issuer {
    JwtKey rsa{JwtKey::Type::rsa, "rsa-1"};
    JwtKey ec{JwtKey::Type::ec, "ec-1"};
    JwtKey rsa2{JwtKey::Type::rsa, "rsa-2"};
    JwtKey ec2{JwtKey::Type::ec, "ec-2"};
};
const Issuer& issuer() {
    static const Issuer keys;
    return keys;
}

// Valid claims for kNow; `changes` replace members (a null value removes one).
std::string claims(const json::object& changes = {}) {
    json::object c{{"iss", kIssuer},
                   {"aud", kAudience},
                   {"sub", "alice"},
                   {"iat", kNow},
                   {"exp", kNow + 600},
                   {"senders", json::array{"0x2C7536E3605D9C16a7a3D7b1898e529396a65c23"}}};
    for (const auto& [k, v] : changes) {
        if (v.is_null())
            c.erase(k);
        else
            c[k] = v;
    }
    return json::serialize(c);
}

config::AuthConfig auth_config(const std::string& jwks_url = "http://127.0.0.1:9/jwks.json") {
    config::AuthConfig c;
    c.clients.push_back(config::ClientConfig{.id = "indexer",
                                             .keys = {kOldKey, kNewKey},
                                             .methods = {"eth_get*", "eth_blockNumber"},
                                             .max_rps = 200});
    c.clients.push_back(
        config::ClientConfig{.id = "wallet", .keys = {kWalletKey}, .senders = {kSenderA}});
    c.jwt.jwks_url = jwks_url;
    c.jwt.issuer = kIssuer;
    c.jwt.audience = kAudience;
    c.jwt.methods = {"eth_*", "net_version"};
    c.jwt.max_rps = 50;
    return c;
}

// A KeySet that counts what the Authenticator asks of it. A refetch takes what was published
// for it (as a JWKS service publishing a new document would), or keeps the keys.
class CountingKeySet final : public KeySet {
public:
    explicit CountingKeySet(std::shared_ptr<KeySet> keys) : keys_(std::move(keys)) {}

    void start() override {}
    void stop() override {}
    std::optional<bool> verify(std::string_view kid, std::string_view alg,
                               std::string_view signed_part,
                               std::string_view signature) const override {
        ++verifies;
        return current()->verify(kid, alg, signed_part, signature);
    }
    asio::awaitable<bool> refetch_for_unknown_kid() override {
        ++refetches;
        std::lock_guard lock(mu_);
        if (published_) keys_ = std::move(published_);
        co_return true;
    }
    bool has(std::string_view kid) const override { return current()->has(kid); }
    std::shared_ptr<const void> key_handle(std::string_view kid) const override {
        return current()->key_handle(kid);
    }

    /// What the next refetch brings.
    void publish(std::shared_ptr<KeySet> keys) {
        std::lock_guard lock(mu_);
        published_ = std::move(keys);
    }
    /// Replaces the keys now (a periodic refresh happened).
    void replace(std::shared_ptr<KeySet> keys) {
        std::lock_guard lock(mu_);
        keys_ = std::move(keys);
    }

    mutable std::atomic<int> verifies{0};
    std::atomic<int> refetches{0};

private:
    std::shared_ptr<KeySet> current() const {
        std::lock_guard lock(mu_);
        return keys_;
    }
    mutable std::mutex mu_;
    std::shared_ptr<KeySet> keys_;
    std::shared_ptr<KeySet> published_;
};

std::shared_ptr<KeySet> static_keys(const std::vector<const JwtKey*>& keys) {
    return make_static_key_set(test::jwks(keys));
}

// Polls until `condition` holds or `limit` passes; the tests never sleep a fixed time to wait.
bool eventually(const std::function<bool()>& condition, std::chrono::milliseconds limit = 5s) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (!condition()) {
        if (std::chrono::steady_clock::now() > deadline) return false;
        std::this_thread::sleep_for(5ms);
    }
    return true;
}

class Auth : public ::testing::Test {
protected:
    std::unique_ptr<Authenticator> authenticator(std::shared_ptr<KeySet> keys,
                                                 const config::AuthConfig& config = auth_config()) {
        return std::make_unique<Authenticator>(config, std::move(keys), &metrics, clock,
                                               [this] { return now.load(); });
    }
    Verdict check(Authenticator& a, const std::string& credential) {
        return io.run(a.authenticate(credential));
    }
    Outcome outcome(Authenticator& a, const std::string& credential) {
        return check(a, credential).outcome;
    }

    // Declared before the event loop: whatever still runs on it at the end may use them.
    metrics::Metrics metrics;
    util::ManualClock clock;
    std::atomic<std::int64_t> now{kNow};
    test::IoThread io;
};

// ---------------------------------------------------------------------------------------------
// Client, bearer_token, secret_equals

TEST(AuthClient, SendersCompareWithoutCaseAndOthersAreRefused) {
    const Client c("wallet", {"0x2C7536E3605D9C16a7a3D7b1898e529396a65c23"}, {});
    EXPECT_THAT(c.senders(), ElementsAre(kSenderA));
    EXPECT_TRUE(c.may_send_from("devnet", kSenderA));
    EXPECT_TRUE(c.may_send_from("devnet", "0x2C7536E3605D9C16A7A3D7B1898E529396A65C23"));
    EXPECT_FALSE(c.may_send_from("devnet", kSenderB));
    EXPECT_FALSE(c.may_send_from("devnet", ""));
}

TEST(AuthClient, ASenderNamedWithItsChainIsForThatChainOnly) {
    const Client c("wallet", {"devnet:0x2C7536E3605D9C16a7a3D7b1898e529396a65c23", kSenderB}, {});
    EXPECT_TRUE(c.may_send_from("devnet", kSenderA));
    EXPECT_FALSE(c.may_send_from("mainnet", kSenderA));
    EXPECT_FALSE(c.may_send_from("devnet2", kSenderA));
    EXPECT_TRUE(c.may_send_from("mainnet", kSenderB)) << "a bare address: every chain";
    EXPECT_TRUE(c.may_send_from("devnet", kSenderB));
}

TEST(AuthClient, AnAnonymousClientMayUseEverySender) {
    const Client c("anonymous", {}, {}, true);
    EXPECT_TRUE(c.anonymous());
    EXPECT_TRUE(c.may_send_from("devnet", kSenderA));
    EXPECT_TRUE(c.may_send_from("devnet", kSenderB));
    EXPECT_EQ(c.label(), "anonymous");
}

TEST(AuthClient, MethodPatternsAreExactNamesPrefixesOrAStar) {
    const Client c("indexer", {}, {"eth_get*", "net_version"});
    EXPECT_FALSE(c.method_refusal("eth_getBalance"));
    EXPECT_FALSE(c.method_refusal("eth_get"));
    EXPECT_FALSE(c.method_refusal("net_version"));
    EXPECT_TRUE(c.method_refusal("net_versions"));
    EXPECT_EQ(c.method_refusal("eth_sendTransaction"),
              "method eth_sendTransaction is not allowed for client indexer "
              "(auth.clients[].methods)");
    EXPECT_FALSE(Client("any", {}, {}).method_refusal("debug_traceTransaction"));
    EXPECT_FALSE(Client("star", {}, {"*"}).method_refusal("debug_traceTransaction"));
}

TEST(AuthClient, ARefusalCutsALongMethodNameTo64Characters) {
    const Client c("indexer", {}, {"eth_call"});
    const std::string method(300, 'x');
    auto refusal = c.method_refusal(method);
    ASSERT_TRUE(refusal);
    EXPECT_THAT(*refusal, HasSubstr(std::string(64, 'x') + " is not allowed"));
    EXPECT_THAT(*refusal, Not(HasSubstr(std::string(65, 'x'))));
}

TEST(AuthClient, TheLabelIsTheIdUnlessGiven) {
    EXPECT_EQ(Client("indexer", {}, {}).label(), "indexer");
    EXPECT_EQ(Client("jwt:bob", {}, {}, false, "jwt:other").label(), "jwt:other");
}

TEST(AuthClient, BearerTakesTheSchemeInAnyCaseAndTrimsSpaces) {
    EXPECT_EQ(bearer_token("Bearer abc.def"), "abc.def");
    EXPECT_EQ(bearer_token("bearer   abc  "), "abc");
    EXPECT_EQ(bearer_token("  BEARER\tabc"), "abc");
    EXPECT_EQ(bearer_token("Basic dXNlcjpwYXNz"), "");
    EXPECT_EQ(bearer_token("Bearer"), "");
    EXPECT_EQ(bearer_token("Bearer   "), "");
    EXPECT_EQ(bearer_token("Bearerabc"), "");
    EXPECT_EQ(bearer_token(""), "");
}

TEST(AuthClient, SecretEqualsComparesWholeSecrets) {
    EXPECT_TRUE(secret_equals("s3cret-key", "s3cret-key"));
    EXPECT_FALSE(secret_equals("s3cret-ke", "s3cret-key"));
    EXPECT_FALSE(secret_equals("s3cret-keyy", "s3cret-key"));
    EXPECT_FALSE(secret_equals("", "s3cret-key"));
    EXPECT_TRUE(secret_equals("", ""));
}

// ---------------------------------------------------------------------------------------------
// API keys

TEST_F(Auth, AKeyInTheOldAndTheNewRotationSlotBothWork) {
    auto a = authenticator(nullptr);
    for (const char* key : {kOldKey, kNewKey}) {
        const Verdict v = check(*a, key);
        ASSERT_EQ(v.outcome, Outcome::ok) << v.message;
        EXPECT_EQ(v.client->id(), "indexer");
        EXPECT_EQ(v.client->label(), "indexer");
        EXPECT_FALSE(v.client->anonymous());
    }
    EXPECT_EQ(check(*a, kWalletKey).client->id(), "wallet");
}

TEST_F(Auth, AKeysClientCarriesItsSendersAndMethods) {
    auto a = authenticator(nullptr);
    const Verdict wallet = check(*a, kWalletKey);
    ASSERT_EQ(wallet.outcome, Outcome::ok);
    EXPECT_TRUE(
        wallet.client->may_send_from("devnet", "0x2C7536E3605D9C16a7a3D7b1898e529396a65c23"));
    EXPECT_FALSE(wallet.client->may_send_from("devnet", kSenderB));
    EXPECT_FALSE(wallet.client->method_refusal("eth_sendTransaction"));
    const Verdict indexer = check(*a, kOldKey);
    EXPECT_FALSE(indexer.client->may_send_from("devnet", kSenderA));
    EXPECT_THAT(indexer.client->method_refusal("eth_sendTransaction").value_or(""),
                HasSubstr("not allowed for client indexer"));
    // One Client per configured client, shared by its keys and its requests.
    EXPECT_EQ(indexer.client, check(*a, kNewKey).client);
}

TEST_F(Auth, AnUnknownKeyIsInvalidAndNotRepeatedInTheMessage) {
    auto a = authenticator(nullptr);
    for (const std::string key : {"not-a-key", "indexer-key-2024-0123456789abcde",
                                  "indexer-key-2024-0123456789abcdef0", " indexer-key"}) {
        const Verdict v = check(*a, key);
        EXPECT_EQ(v.outcome, Outcome::invalid) << key;
        EXPECT_FALSE(v.client);
        EXPECT_THAT(v.message, Not(HasSubstr(key)));
        EXPECT_FALSE(v.message.empty());
    }
}

TEST_F(Auth, NothingPresentedIsMissing) {
    auto a = authenticator(nullptr);
    const Verdict v = check(*a, "");
    EXPECT_EQ(v.outcome, Outcome::missing);
    EXPECT_THAT(v.message, HasSubstr("Authorization: Bearer"));
}

TEST_F(Auth, ACredentialOver8KbIsInvalid) {
    auto a = authenticator(static_keys({&issuer().rsa}));
    EXPECT_EQ(outcome(*a, std::string(8 * 1024 + 1, 'a')), Outcome::invalid);
}

TEST_F(Auth, RequiredFollowsTheConfigAndAnonymousMaySendFromAnyone) {
    EXPECT_TRUE(authenticator(nullptr)->required());
    config::AuthConfig none;
    auto open = authenticator(nullptr, none);
    EXPECT_FALSE(open->required());
    ASSERT_TRUE(open->anonymous());
    EXPECT_TRUE(open->anonymous()->anonymous());
    EXPECT_TRUE(open->anonymous()->may_send_from("devnet", kSenderB));
}

TEST_F(Auth, ATokenIsInvalidWhenNoJwtIsConfigured) {
    config::AuthConfig keys_only = auth_config();
    keys_only.jwt = {};
    auto a = authenticator(nullptr, keys_only);
    EXPECT_EQ(outcome(*a, issuer().rsa.sign(claims())), Outcome::invalid);
}

// ---------------------------------------------------------------------------------------------
// Tokens accepted

TEST_F(Auth, AnRs256TokenIsAcceptedWithItsSubSendersAndTheConfiguredMethods) {
    auto a = authenticator(static_keys({&issuer().rsa, &issuer().ec}));
    const std::string token = issuer().rsa.sign(
        claims({{"senders",
                 json::array{"0x2C7536E3605D9C16a7a3D7b1898e529396a65c23", "0x1234", 7,
                             "0xzz7536e3605d9c16a7a3d7b1898e529396a65c23", kSenderB, kSenderA}}}));
    const Verdict v = check(*a, token);
    ASSERT_EQ(v.outcome, Outcome::ok) << v.message;
    EXPECT_EQ(v.client->id(), "jwt:alice");
    EXPECT_EQ(v.client->label(), "jwt");
    EXPECT_THAT(v.client->senders(), ElementsAre(kSenderA, kSenderB));
    EXPECT_TRUE(v.client->may_send_from("devnet", kSenderB));
    EXPECT_FALSE(v.client->method_refusal("eth_getBalance"));
    EXPECT_FALSE(v.client->method_refusal("net_version"));
    EXPECT_EQ(v.client->method_refusal("debug_traceTransaction"),
              "method debug_traceTransaction is not allowed for client jwt:alice "
              "(auth.jwt.methods)");
}

TEST_F(Auth, AnEs256TokenIsAccepted) {
    auto a = authenticator(static_keys({&issuer().rsa, &issuer().ec}));
    const Verdict v = check(*a, issuer().ec.sign(claims({{"sub", "bob"}})));
    ASSERT_EQ(v.outcome, Outcome::ok) << v.message;
    EXPECT_EQ(v.client->id(), "jwt:bob");
    EXPECT_THAT(v.client->senders(), ElementsAre(kSenderA));
}

TEST_F(Auth, ATokenWithoutTheSendersClaimMaySendFromNoSender) {
    auto a = authenticator(static_keys({&issuer().rsa}));
    for (const json::value& senders : {json::value(nullptr), json::value("0x1"), json::value(5)}) {
        const std::string token = senders.is_null()
                                      ? issuer().rsa.sign(claims({{"senders", nullptr}}))
                                      : issuer().rsa.sign(claims({{"senders", senders}}));
        const Verdict v = check(*a, token);
        ASSERT_EQ(v.outcome, Outcome::ok) << v.message;
        EXPECT_TRUE(v.client->senders().empty());
        EXPECT_FALSE(v.client->may_send_from("devnet", kSenderA));
    }
}

TEST_F(Auth, TheSendersClaimIsTheOneTheConfigNames) {
    config::AuthConfig c = auth_config();
    c.jwt.senders_claim = "https://example.test/wallets";
    auto a = authenticator(static_keys({&issuer().rsa}), c);
    const Verdict v = check(
        *a, issuer().rsa.sign(claims({{"https://example.test/wallets", json::array{kSenderB}}})));
    ASSERT_EQ(v.outcome, Outcome::ok) << v.message;
    EXPECT_THAT(v.client->senders(), ElementsAre(kSenderB));
}

TEST_F(Auth, AnAudienceArrayNamingTheGatewayIsAccepted) {
    auto a = authenticator(static_keys({&issuer().rsa}));
    EXPECT_EQ(outcome(*a, issuer().rsa.sign(claims({{"aud", json::array{"other", kAudience}}}))),
              Outcome::ok);
    EXPECT_EQ(outcome(*a, issuer().rsa.sign(claims({{"aud", kAudience}}))), Outcome::ok);
}

// ---------------------------------------------------------------------------------------------
// Tokens refused

TEST_F(Auth, AlgNoneIsInvalid) {
    auto keys = std::make_shared<CountingKeySet>(static_keys({&issuer().rsa}));
    auto a = authenticator(keys);
    const Verdict v = check(*a, test::unsigned_token(claims(), "rsa-1"));
    EXPECT_EQ(v.outcome, Outcome::invalid);
    EXPECT_THAT(v.message, HasSubstr("alg"));
    // Also with the signature of a real token left on it.
    const std::string real = issuer().rsa.sign(claims());
    EXPECT_EQ(
        outcome(*a, test::unsigned_token(claims(), "rsa-1") + real.substr(real.rfind('.') + 1)),
        Outcome::invalid);
    EXPECT_EQ(keys->verifies, 0);
}

TEST_F(Auth, Hs256IsInvalidEvenKeyedWithThePublicKey) {
    auto keys = std::make_shared<CountingKeySet>(static_keys({&issuer().rsa}));
    auto a = authenticator(keys);
    EXPECT_EQ(outcome(*a, test::hs256_token(claims(), issuer().rsa.jwk(), "rsa-1")),
              Outcome::invalid);
    EXPECT_EQ(outcome(*a, test::hs256_token(claims(), "secret", "rsa-1")), Outcome::invalid);
    for (const char* alg : {"HS384", "HS512", "RS512", "PS256", "ES384", "EdDSA", "none", "NONE"})
        EXPECT_EQ(outcome(*a, issuer().rsa.sign(claims(), {{"alg", alg}})), Outcome::invalid)
            << alg;
    EXPECT_EQ(keys->verifies, 0);
    EXPECT_EQ(keys->refetches, 0);
}

TEST_F(Auth, AnRs256HeaderOnAnEcKeyIsInvalidWithoutARefetch) {
    auto keys = std::make_shared<CountingKeySet>(static_keys({&issuer().rsa, &issuer().ec}));
    auto a = authenticator(keys);
    // The EC key's token, its header claiming RS256; and the other way round.
    EXPECT_EQ(outcome(*a, issuer().ec.sign(claims(), {{"alg", "RS256"}})), Outcome::invalid);
    EXPECT_EQ(outcome(*a, issuer().rsa.sign(claims(), {{"alg", "ES256"}})), Outcome::invalid);
    // An RS256 token naming the EC key's kid.
    const Verdict v = check(*a, issuer().rsa.sign(claims(), {{"kid", "ec-1"}}));
    EXPECT_EQ(v.outcome, Outcome::invalid);
    EXPECT_THAT(v.message, HasSubstr("another type"));
    EXPECT_EQ(keys->refetches, 0);
}

TEST_F(Auth, ATamperedPayloadOrSignatureIsInvalid) {
    auto a = authenticator(static_keys({&issuer().rsa, &issuer().ec}));
    for (const JwtKey* key : {&issuer().rsa, &issuer().ec}) {
        const std::string token = key->sign(claims());
        ASSERT_EQ(outcome(*a, token), Outcome::ok);
        const Verdict v =
            check(*a, test::with_payload(token, claims({{"senders", json::array{kSenderB}}})));
        EXPECT_EQ(v.outcome, Outcome::invalid) << key->kid();
        EXPECT_THAT(v.message, HasSubstr("signature"));
        EXPECT_EQ(outcome(*a, test::with_broken_signature(token)), Outcome::invalid) << key->kid();
    }
}

TEST_F(Auth, AnEs256SignatureOfTheWrongLengthIsInvalid) {
    auto a = authenticator(static_keys({&issuer().ec}));
    const std::string token = issuer().ec.sign(claims());
    const std::string signed_part = token.substr(0, token.rfind('.'));
    auto signature = [&](std::size_t n) {
        return signed_part + "." + test::base64url(std::string(n, '\x01'));
    };
    for (std::size_t n : {0u, 1u, 32u, 63u, 65u, 72u, 128u})
        EXPECT_EQ(outcome(*a, signature(n)), Outcome::invalid) << n;
}

TEST_F(Auth, MalformedTokensAreInvalidAndNeverCrash) {
    auto keys = std::make_shared<CountingKeySet>(static_keys({&issuer().rsa, &issuer().ec}));
    auto a = authenticator(keys);
    const std::string token = issuer().rsa.sign(claims());
    const std::string payload = test::base64url(claims());
    const std::string sig = token.substr(token.rfind('.') + 1);
    auto b64 = [](std::string_view s) { return test::base64url(s); };
    const std::string header = b64(R"({"alg":"RS256","kid":"rsa-1"})");
    const std::vector<std::string> shapes{
        ".", "..", "...", "a.b", "a.b.c.d", ".b.c", "a..c", token + ".", "." + token, token + "=",
        token.substr(0, token.size() - 1) + "=", token + " ", "Bearer " + token,
        std::string(token.size(), '.'), std::string("\xff\xfe.\x00\x01.\x80", 7),
        // Headers that are not base64url, not JSON, not an object, or lack what is required.
        "!!!." + payload + "." + sig, b64("{") + "." + payload + "." + sig,
        b64("[1,2]") + "." + payload + "." + sig, b64("null") + "." + payload + "." + sig,
        b64(R"({"alg":"RS256"})") + "." + payload + "." + sig,
        b64(R"({"alg":"RS256","kid":""})") + "." + payload + "." + sig,
        b64(R"({"alg":"RS256","kid":7})") + "." + payload + "." + sig,
        b64(R"({"alg":256,"kid":"rsa-1"})") + "." + payload + "." + sig,
        b64(R"({"kid":"rsa-1"})") + "." + payload + "." + sig,
        b64(R"({"alg":"RS256","kid":"rsa-1","crit":["exp"]})") + "." + payload + "." + sig,
        b64(std::string(R"({"alg":"RS256","kid":")") + std::string(300, 'k') + "\"}") + "." +
            payload + "." + sig,
        b64(R"({"alg":"RS256","kid":"rsa-1")") + "." + payload + "." + sig,
        b64(std::string(5000, '[')) + "." + payload + "." + sig,
        // Payloads and signatures likewise.
        header + ".!!!." + sig, header + "." + b64("[]") + "." + sig,
        header + "." + b64("\"text\"") + "." + sig, header + "." + b64("{") + "." + sig,
        header + "." + payload + ".", header + "." + payload + ".!!", header + "." + payload + ".A",
        header + "." + payload + "." + sig + "A", header + "." + payload + "." + sig.substr(1),
        // base64url with padding, or with bits left over.
        header + "==." + payload + "." + sig,
        header.substr(0, header.size() - 1) + "B." + payload + "." + sig};
    for (const auto& shape : shapes) {
        const Verdict v = check(*a, shape);
        EXPECT_EQ(v.outcome, Outcome::invalid) << shape.substr(0, 120);
        EXPECT_FALSE(v.client);
    }
    // Every prefix of a real token.
    for (std::size_t n = 1; n < token.size(); ++n)
        EXPECT_EQ(outcome(*a, token.substr(0, n)), Outcome::invalid) << n;
    EXPECT_EQ(outcome(*a, token), Outcome::ok);
    EXPECT_EQ(keys->refetches, 0);
}

TEST_F(Auth, RandomBytesAndMutatedTokensAreNeverAccepted) {
    auto keys = std::make_shared<CountingKeySet>(static_keys({&issuer().rsa, &issuer().ec}));
    auto a = authenticator(keys);
    std::mt19937 rng(20240611);
    const std::string alphabet =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.";
    for (int i = 0; i < 500; ++i) {
        std::string s(1 + rng() % 400, '\0');
        for (char& c : s)
            c = i % 2 ? alphabet[rng() % alphabet.size()] : static_cast<char>(rng() % 256);
        EXPECT_NE(outcome(*a, s), Outcome::ok);
    }
    for (const JwtKey* key : {&issuer().rsa, &issuer().ec}) {
        const std::string token = key->sign(claims());
        for (int i = 0; i < 300; ++i) {
            std::string t = token;
            for (int flips = 1 + static_cast<int>(rng() % 3); flips > 0; --flips) {
                char& c = t[rng() % t.size()];
                const char before = c;
                while (c == before) c = alphabet[rng() % alphabet.size()];
            }
            if (t == token) continue;  // two changes that undid each other
            EXPECT_NE(outcome(*a, t), Outcome::ok) << t;
        }
    }
}

TEST_F(Auth, AnExpiredTokenIsExpiredButWithinTheSkewAccepted) {
    auto a = authenticator(static_keys({&issuer().rsa}));
    const Verdict expired = check(*a, issuer().rsa.sign(claims({{"exp", kNow - 31}})));
    EXPECT_EQ(expired.outcome, Outcome::expired);
    EXPECT_THAT(expired.message, HasSubstr("expired"));
    EXPECT_EQ(outcome(*a, issuer().rsa.sign(claims({{"exp", kNow - 29}}))), Outcome::ok);
    EXPECT_EQ(outcome(*a, issuer().rsa.sign(claims({{"exp", kNow - 29.5}}))), Outcome::ok);
}

TEST_F(Auth, ACachedTokenExpiresWhenItsTimeIsUp) {
    auto a = authenticator(static_keys({&issuer().rsa}));
    const std::string token = issuer().rsa.sign(claims({{"exp", kNow + 10}}));
    ASSERT_EQ(outcome(*a, token), Outcome::ok);
    now = kNow + 40;
    EXPECT_EQ(outcome(*a, token), Outcome::ok);
    now = kNow + 41;
    EXPECT_EQ(outcome(*a, token), Outcome::expired);
}

TEST_F(Auth, ATokenNotYetValidBeyondTheSkewIsRefused) {
    auto a = authenticator(static_keys({&issuer().rsa}));
    const Verdict early = check(*a, issuer().rsa.sign(claims({{"nbf", kNow + 31}})));
    EXPECT_EQ(early.outcome, Outcome::expired);
    EXPECT_THAT(early.message, HasSubstr("not valid yet"));
    EXPECT_EQ(outcome(*a, issuer().rsa.sign(claims({{"nbf", kNow + 29}}))), Outcome::ok);
    EXPECT_EQ(outcome(*a, issuer().rsa.sign(claims({{"nbf", "soon"}}))), Outcome::invalid);
}

TEST_F(Auth, ExpMustBePresentAndANumber) {
    auto a = authenticator(static_keys({&issuer().rsa}));
    for (const json::value& exp : {json::value(nullptr), json::value("1900000000"),
                                   json::value(true), json::value(json::array{kNow + 600})}) {
        const std::string token = exp.is_null() ? issuer().rsa.sign(claims({{"exp", nullptr}}))
                                                : issuer().rsa.sign(claims({{"exp", exp}}));
        EXPECT_EQ(outcome(*a, token), Outcome::invalid) << json::serialize(exp);
    }
    // Far in the future, as a float, or beyond int64: accepted, and nothing overflows.
    EXPECT_EQ(outcome(*a, issuer().rsa.sign(claims({{"exp", 1e300}}))), Outcome::ok);
    EXPECT_EQ(outcome(*a, issuer().rsa.sign(claims({{"exp", 18446744073709551615ull}}))),
              Outcome::ok);
    EXPECT_EQ(outcome(*a, issuer().rsa.sign(claims({{"exp", -1e300}}))), Outcome::expired);
}

TEST_F(Auth, AWrongIssuerIsInvalid) {
    auto a = authenticator(static_keys({&issuer().rsa}));
    for (const json::value& iss : {json::value("https://evil.example.test"), json::value(""),
                                   json::value(json::array{kIssuer}), json::value(nullptr)}) {
        const std::string token = iss.is_null() ? issuer().rsa.sign(claims({{"iss", nullptr}}))
                                                : issuer().rsa.sign(claims({{"iss", iss}}));
        const Verdict v = check(*a, token);
        EXPECT_EQ(v.outcome, Outcome::invalid) << json::serialize(iss);
        EXPECT_THAT(v.message, HasSubstr("iss"));
    }
}

TEST_F(Auth, AMissingOrForeignAudienceIsInvalid) {
    auto a = authenticator(static_keys({&issuer().rsa}));
    for (const json::value& aud :
         {json::value(nullptr), json::value("other-service"), json::value(json::array{}),
          json::value(json::array{"other", "another"}), json::value(7)}) {
        const std::string token = aud.is_null() ? issuer().rsa.sign(claims({{"aud", nullptr}}))
                                                : issuer().rsa.sign(claims({{"aud", aud}}));
        const Verdict v = check(*a, token);
        EXPECT_EQ(v.outcome, Outcome::invalid) << json::serialize(aud);
        EXPECT_THAT(v.message, HasSubstr("aud"));
    }
}

TEST_F(Auth, AMissingEmptyOrOverlongSubIsInvalid) {
    auto a = authenticator(static_keys({&issuer().rsa}));
    for (const json::value& sub : {json::value(nullptr), json::value(""), json::value(42),
                                   json::value(std::string(201, 's')), json::value("a\nb")}) {
        const std::string token = sub.is_null() ? issuer().rsa.sign(claims({{"sub", nullptr}}))
                                                : issuer().rsa.sign(claims({{"sub", sub}}));
        EXPECT_EQ(outcome(*a, token), Outcome::invalid) << json::serialize(sub);
    }
    EXPECT_EQ(outcome(*a, issuer().rsa.sign(claims({{"sub", std::string(200, 's')}}))),
              Outcome::ok);
}

// ---------------------------------------------------------------------------------------------
// Unknown kids, the token cache

TEST_F(Auth, AnUnknownKidRefetchesOnceThenAcceptsWhatTheRefetchBrought) {
    auto keys = std::make_shared<CountingKeySet>(static_keys({&issuer().rsa}));
    auto a = authenticator(keys);
    keys->publish(static_keys({&issuer().rsa, &issuer().rsa2}));
    const Verdict v = check(*a, issuer().rsa2.sign(claims()));
    ASSERT_EQ(v.outcome, Outcome::ok) << v.message;
    EXPECT_EQ(keys->refetches, 1);
    // Known now: no more refetches.
    EXPECT_EQ(outcome(*a, issuer().rsa2.sign(claims({{"sub", "carol"}}))), Outcome::ok);
    EXPECT_EQ(keys->refetches, 1);
}

TEST_F(Auth, AKidStillUnknownAfterTheRefetchIsUnknownKey) {
    auto keys = std::make_shared<CountingKeySet>(static_keys({&issuer().rsa}));
    auto a = authenticator(keys);
    const Verdict v = check(*a, issuer().ec2.sign(claims()));
    EXPECT_EQ(v.outcome, Outcome::unknown_key);
    EXPECT_THAT(v.message, HasSubstr("kid"));
    EXPECT_EQ(keys->refetches, 1);
}

TEST_F(Auth, VerifyingTheSameTokenTwiceChecksItsSignatureOnce) {
    auto keys = std::make_shared<CountingKeySet>(static_keys({&issuer().rsa, &issuer().ec}));
    auto a = authenticator(keys);
    const std::string token = issuer().ec.sign(claims());
    const Verdict first = check(*a, token);
    const Verdict second = check(*a, token);
    ASSERT_EQ(first.outcome, Outcome::ok);
    ASSERT_EQ(second.outcome, Outcome::ok);
    EXPECT_EQ(first.client, second.client);
    EXPECT_EQ(keys->verifies, 1);
    // Another token of the same sub is another entry, checked on its own.
    EXPECT_EQ(outcome(*a, issuer().ec.sign(claims({{"iat", kNow + 1}}))), Outcome::ok);
    EXPECT_EQ(keys->verifies, 2);
}

TEST_F(Auth, ACachedTokenWhoseKeyLeftTheSetIsRefused) {
    auto keys = std::make_shared<CountingKeySet>(static_keys({&issuer().rsa, &issuer().ec}));
    auto a = authenticator(keys);
    const std::string token = issuer().rsa.sign(claims());
    ASSERT_EQ(outcome(*a, token), Outcome::ok);
    keys->replace(static_keys({&issuer().ec}));
    EXPECT_EQ(outcome(*a, token), Outcome::unknown_key);
    EXPECT_EQ(keys->verifies, 3);  // once, then twice more: before and after the refetch
}

TEST_F(Auth, ACachedTokenWhoseKidNowNamesAnotherKeyIsCheckedAgain) {
    auto keys = std::make_shared<CountingKeySet>(static_keys({&issuer().rsa}));
    auto a = authenticator(keys);
    const std::string token = issuer().rsa.sign(claims());
    ASSERT_EQ(outcome(*a, token), Outcome::ok);
    // The service rotated under the same kid: the cached token is not taken on trust.
    const test::JwtKey successor(test::JwtKey::Type::rsa, issuer().rsa.kid());
    keys->replace(static_keys({&successor}));
    EXPECT_EQ(outcome(*a, token), Outcome::invalid);
    EXPECT_EQ(outcome(*a, successor.sign(claims())), Outcome::ok);
}

TEST_F(Auth, ManyTokensAtOnceFromSeveralThreadsAreEachCheckedRight) {
    auto a = authenticator(static_keys({&issuer().rsa, &issuer().ec}));
    std::vector<std::string> tokens;
    for (int i = 0; i < 20; ++i)
        tokens.push_back(issuer().ec.sign(claims({{"sub", "user-" + std::to_string(i)}})));
    test::IoThread second;
    std::vector<std::future<Verdict>> verdicts;
    for (int round = 0; round < 5; ++round)
        for (const auto& t : tokens)
            verdicts.push_back(asio::co_spawn(round % 2 ? second.ioc : io.ioc, a->authenticate(t),
                                              asio::use_future));
    for (std::size_t i = 0; i < verdicts.size(); ++i) {
        const Verdict v = verdicts[i].get();
        ASSERT_EQ(v.outcome, Outcome::ok);
        EXPECT_EQ(v.client->id(), "jwt:user-" + std::to_string(i % tokens.size()));
    }
}

TEST_F(Auth, ATokenInTheUrlPathIsRefusedUncheckedAndAKeyThereIsNot) {
    config::AuthConfig c = auth_config();
    c.clients[1].keys.push_back("wallet.key-with.two-dots");  // a key may look like a token
    auto a = authenticator(static_keys({&issuer().rsa}), c);
    const std::string token = issuer().rsa.sign(claims());
    ASSERT_EQ(outcome(*a, token), Outcome::ok);  // in the header: accepted (and now cached)
    const Verdict in_path = io.run(a->authenticate(token, Presented::path));
    EXPECT_EQ(in_path.outcome, Outcome::invalid);
    EXPECT_THAT(in_path.message, HasSubstr("not accepted in the URL path"));
    EXPECT_THAT(in_path.message, HasSubstr("send it as Authorization: Bearer <token>"));
    EXPECT_THAT(in_path.message, Not(HasSubstr(token)));
    EXPECT_EQ(io.run(a->authenticate(kWalletKey, Presented::path)).outcome, Outcome::ok);
    EXPECT_EQ(io.run(a->authenticate("wallet.key-with.two-dots", Presented::path)).outcome,
              Outcome::ok);
}

// ---------------------------------------------------------------------------------------------
// Metrics and labels

TEST_F(Auth, EachCheckCountsItsOutcomeOnce) {
    auto keys = std::make_shared<CountingKeySet>(static_keys({&issuer().rsa}));
    auto a = authenticator(keys);
    check(*a, kOldKey);
    check(*a, issuer().rsa.sign(claims()));
    check(*a, "");
    check(*a, "wrong");
    check(*a, "wrong.again");
    check(*a, issuer().rsa.sign(claims({{"exp", kNow - 100}})));
    check(*a, issuer().ec2.sign(claims()));
    const std::string text = metrics.render();
    EXPECT_THAT(text, HasSubstr(R"(gateway_auth_requests_total{listener="rpc",outcome="ok"} 2)"));
    EXPECT_THAT(text,
                HasSubstr(R"(gateway_auth_requests_total{listener="rpc",outcome="missing"} 1)"));
    EXPECT_THAT(text,
                HasSubstr(R"(gateway_auth_requests_total{listener="rpc",outcome="invalid"} 2)"));
    EXPECT_THAT(text,
                HasSubstr(R"(gateway_auth_requests_total{listener="rpc",outcome="expired"} 1)"));
    EXPECT_THAT(
        text, HasSubstr(R"(gateway_auth_requests_total{listener="rpc",outcome="unknown_key"} 1)"));
}

TEST_F(Auth, TokenClientsShareOneLabelAndConfiguredClientsHaveTheirOwn) {
    auto a = authenticator(static_keys({&issuer().ec}));
    for (int i = 0; i < 3; ++i) {
        const Verdict v =
            check(*a, issuer().ec.sign(claims({{"sub", "user-" + std::to_string(i)}})));
        ASSERT_EQ(v.outcome, Outcome::ok);
        EXPECT_EQ(v.client->id(), "jwt:user-" + std::to_string(i));
        EXPECT_EQ(v.client->label(), "jwt") << "a sub may be personal: never a label";
    }
    EXPECT_EQ(check(*a, kWalletKey).client->label(), "wallet");
}

// ---------------------------------------------------------------------------------------------
// Rate limits

// How long admit() says to wait; nullopt when it admits.
std::optional<std::chrono::milliseconds> wait(Authenticator& a, const Client& c,
                                              std::size_t calls) {
    const auto refused = a.admit(c, calls);
    if (!refused) return std::nullopt;
    return refused->retry_after;
}

TEST_F(Auth, AClientAt200RpsWaitsAbout5MsForThe201stCallOfAnInstant) {
    auto a = authenticator(nullptr);
    const auto indexer = check(*a, kOldKey).client;
    for (int i = 0; i < 200; ++i) ASSERT_FALSE(wait(*a, *indexer, 1)) << i;
    EXPECT_EQ(wait(*a, *indexer, 1), 5ms);
    EXPECT_EQ(wait(*a, *indexer, 1), 5ms);  // a refused call takes nothing
    clock.advance(4ms);
    EXPECT_EQ(wait(*a, *indexer, 1), 1ms);
    clock.advance(1ms);
    EXPECT_FALSE(wait(*a, *indexer, 1));
    EXPECT_TRUE(wait(*a, *indexer, 1));
}

TEST_F(Auth, ABatchTakesOneTokenPerCall) {
    auto a = authenticator(nullptr);
    const auto indexer = check(*a, kNewKey).client;
    EXPECT_FALSE(wait(*a, *indexer, 20));
    EXPECT_FALSE(wait(*a, *indexer, 180));
    EXPECT_EQ(wait(*a, *indexer, 20), 100ms);
    clock.advance(100ms);
    EXPECT_FALSE(wait(*a, *indexer, 20));
    EXPECT_TRUE(wait(*a, *indexer, 1));
}

TEST_F(Auth, ABatchNeedingMoreThanTheBucketHoldsNowIsRefusedWholeAndTakesNothing) {
    auto a = authenticator(nullptr);
    const auto indexer = check(*a, kOldKey).client;  // 200 a second
    EXPECT_FALSE(a->admit(*indexer, 150));
    const auto refused = a->admit(*indexer, 100);  // 50 left
    ASSERT_TRUE(refused);
    EXPECT_FALSE(refused->too_large);
    EXPECT_EQ(refused->retry_after, 250ms);
    EXPECT_EQ(refused->max_calls, 200u);
    // The refused batch took nothing: the 50 are still there, and no more.
    EXPECT_FALSE(a->admit(*indexer, 50));
    EXPECT_TRUE(a->admit(*indexer, 1));
}

TEST_F(Auth, ABatchLargerThanTheBurstIsRefusedEvenOnAFullBucketAndLeavesNoDebt) {
    auto a = authenticator(nullptr);
    const auto indexer = check(*a, kOldKey).client;  // 200 a second: at most 200 calls at once
    const auto refused = a->admit(*indexer, 300);
    ASSERT_TRUE(refused) << "a batch larger than the bucket must not go into debt";
    EXPECT_TRUE(refused->too_large);
    EXPECT_EQ(refused->max_calls, 200u);
    // Nothing taken: a whole burst still goes, and the next call waits for one token only.
    EXPECT_FALSE(a->admit(*indexer, 200));
    EXPECT_EQ(wait(*a, *indexer, 1), 5ms);
    // On an empty bucket a too-large batch is told when the bucket is full again.
    const auto again = a->admit(*indexer, 201);
    ASSERT_TRUE(again);
    EXPECT_TRUE(again->too_large);
    EXPECT_EQ(again->retry_after, 1000ms);
}

TEST_F(Auth, ABucketHoldsAtLeastOneCall) {
    config::AuthConfig c = auth_config();
    c.clients[0].max_rps = 0.5;  // not from a config file (whole numbers), but the bucket copes
    auto a = authenticator(nullptr, c);
    const auto client = check(*a, c.clients[0].keys.front()).client;
    ASSERT_TRUE(client);
    const auto two = a->admit(*client, 2);
    ASSERT_TRUE(two);
    EXPECT_TRUE(two->too_large);
    EXPECT_EQ(two->max_calls, 1u);
    EXPECT_FALSE(a->admit(*client, 1));
    EXPECT_EQ(wait(*a, *client, 1), 2000ms);
}

TEST_F(Auth, AClientWithoutMaxRpsIsAlwaysAdmitted) {
    config::AuthConfig c = auth_config();
    c.jwt.max_rps = 0;
    auto a = authenticator(static_keys({&issuer().ec}), c);
    const auto wallet = check(*a, kWalletKey).client;
    const auto token_client = check(*a, issuer().ec.sign(claims())).client;
    ASSERT_TRUE(wallet && token_client);
    for (int i = 0; i < 1000; ++i) {
        ASSERT_FALSE(wait(*a, *wallet, 100));
        ASSERT_FALSE(wait(*a, *token_client, 100));
        ASSERT_FALSE(a->admit(*a->anonymous(), 100));
    }
    // A client the Authenticator did not make has no bucket either.
    EXPECT_FALSE(a->admit(Client("elsewhere", {}, {}), 1'000'000));
}

TEST_F(Auth, TwoTokenSubsHaveSeparateBuckets) {
    auto a = authenticator(static_keys({&issuer().ec}));
    const auto alice = check(*a, issuer().ec.sign(claims())).client;
    const auto bob = check(*a, issuer().ec.sign(claims({{"sub", "bob"}}))).client;
    ASSERT_TRUE(alice && bob);
    EXPECT_FALSE(wait(*a, *alice, 50));
    EXPECT_EQ(wait(*a, *alice, 1), 20ms);
    EXPECT_FALSE(wait(*a, *bob, 50));
    // Another token of the same sub shares its bucket.
    const auto alice_again = check(*a, issuer().ec.sign(claims({{"iat", 5}}))).client;
    ASSERT_TRUE(alice_again);
    EXPECT_NE(alice_again, alice);
    EXPECT_EQ(wait(*a, *alice_again, 1), 20ms);
}

// ---------------------------------------------------------------------------------------------
// Key sets

TEST(AuthKeySet, AStaticSetHoldsRsaAndP256KeysAndSkipsTheRest) {
    const JwtKey weak(JwtKey::Type::rsa, "weak", 1024);
    json::array list;
    auto with = [](const JwtKey& k, const json::object& changes) {
        json::object o = json::parse(k.jwk()).as_object();
        for (const auto& [name, value] : changes) {
            if (value.is_null())
                o.erase(name);
            else
                o[name] = value;
        }
        return o;
    };
    list.push_back(json::parse(issuer().rsa.jwk()));
    list.push_back(json::parse(issuer().ec.jwk()));
    list.push_back(json::parse(weak.jwk()));                                    // under 2048
    list.push_back(with(issuer().rsa2, {{"use", "enc"}}));                      // not for sig
    list.push_back(with(issuer().rsa2, {{"kid", nullptr}, {"use", nullptr}}));  // no kid
    list.push_back(with(issuer().ec2, {{"crv", "P-384"}}));                     // other curve
    list.push_back(with(issuer().ec2, {{"kid", "rs512"}, {"alg", "ES512"}}));   // other alg
    list.push_back(with(issuer().ec2,
                        {{"kid", "off-curve"}, {"y", test::base64url(std::string(32, '\x07'))}}));
    list.push_back(with(issuer().rsa2, {{"kid", "bad-n"}, {"n", "!!"}}));
    list.push_back(json::object{{"kty", "oct"}, {"kid", "hmac"}, {"k", "c2VjcmV0"}});
    list.push_back(json::value("not a key"));
    list.push_back(with(issuer().ec2, {{"kid", "rsa-1"}}));  // a kid listed twice keeps the first
    auto keys = make_static_key_set(json::serialize(json::object{{"keys", list}}));
    EXPECT_TRUE(keys->has("rsa-1"));
    EXPECT_TRUE(keys->has("ec-1"));
    for (const char* kid : {"weak", "rsa-2", "ec-2", "rs512", "off-curve", "bad-n", "hmac", ""})
        EXPECT_FALSE(keys->has(kid)) << kid;

    // verify(): a result for a kid it has with the alg of its type, nullopt otherwise.
    const std::string token = issuer().rsa.sign(claims());
    const std::size_t dot = token.rfind('.');
    const std::string raw = test::base64url_decode(token.substr(dot + 1));
    EXPECT_EQ(keys->verify("rsa-1", "RS256", token.substr(0, dot), raw), true);
    EXPECT_EQ(keys->verify("rsa-1", "RS256", token.substr(0, dot) + "x", raw), false);
    EXPECT_EQ(keys->verify("rsa-1", "ES256", token.substr(0, dot), raw), std::nullopt);
    EXPECT_EQ(keys->verify("rsa-2", "RS256", token.substr(0, dot), raw), std::nullopt);
}

TEST(AuthKeySet, AStaticSetRefusesADocumentThatIsNotAJwks) {
    for (const char* text : {"", "not json", "[]", "{}", R"({"keys":{}})", R"({"keys":5})"})
        EXPECT_THROW(make_static_key_set(text), std::invalid_argument) << text;
    EXPECT_FALSE(make_static_key_set(R"({"keys":[]})")->has("rsa-1"));
}

// ---------------------------------------------------------------------------------------------
// The fetching key set against a JWKS server

class AuthJwks : public Auth {
protected:
    std::shared_ptr<KeySet> fetching(
        std::chrono::milliseconds refresh, std::chrono::milliseconds min_refetch,
        const util::Clock& fetch_clock = util::SteadyClock::instance()) {
        config::JwtConfig c = auth_config(server.url()).jwt;
        c.refresh = refresh;
        auto keys = make_jwks_key_set(c, io.ioc.get_executor(), &metrics, fetch_clock, min_refetch);
        started_.push_back(keys);
        return keys;
    }
    std::unique_ptr<Authenticator> authenticator(std::shared_ptr<KeySet> keys) {
        return Auth::authenticator(std::move(keys), auth_config(server.url()));
    }
    // The number in a metric line such as `gateway_auth_jwks_keys 2`; -2 when it is absent.
    double metric(const std::string& series) {
        const std::string text = metrics.render();
        const auto at = text.find("\n" + series + " ");
        if (at == std::string::npos) return -2;
        return std::stod(text.substr(at + series.size() + 2));
    }
    void TearDown() override {
        for (auto& k : started_) k->stop();
    }

    test::JwksServer server{test::jwks({&issuer().rsa, &issuer().ec})};
    std::vector<std::shared_ptr<KeySet>> started_;
};

const std::string kFetchedOk = R"(gateway_auth_jwks_fetches_total{outcome="ok"})";
const std::string kFetchFailed = R"(gateway_auth_jwks_fetches_total{outcome="failed"})";

TEST_F(AuthJwks, TheJwksIsFetchedWithGetAtStartAndItsTokensAccepted) {
    auto keys = fetching(60s, 50ms);
    auto a = authenticator(keys);
    EXPECT_EQ(metric("gateway_auth_jwks_age_seconds"), -1);  // never fetched
    keys->start();
    ASSERT_TRUE(eventually([&] { return keys->has("rsa-1") && keys->has("ec-1"); }));
    EXPECT_EQ(outcome(*a, issuer().rsa.sign(claims())), Outcome::ok);
    EXPECT_EQ(outcome(*a, issuer().ec.sign(claims())), Outcome::ok);
    EXPECT_EQ(server.answered(), 1u);  // the server answers GET only
    EXPECT_EQ(metric(kFetchedOk), 1);
    EXPECT_EQ(metric("gateway_auth_jwks_keys"), 2);
    EXPECT_GE(metric("gateway_auth_jwks_age_seconds"), 0);
    EXPECT_LT(metric("gateway_auth_jwks_age_seconds"), 5);
}

TEST_F(Auth, TheJwksRequestIsAPlainGetOfTheUrlsPath) {
    std::mutex mu;
    std::string request;
    test::RawServer raw([&](asio::ip::tcp::socket& s, std::size_t) {
        std::string r = test::RawServer::read_request(s);
        {
            std::lock_guard lock(mu);
            request = r;
        }
        test::RawServer::write(s, test::RawServer::ok_response(test::jwks({&issuer().ec})));
    });
    config::JwtConfig c = auth_config().jwt;
    c.jwks_url = "http://127.0.0.1:" + std::to_string(raw.port()) + "/keys/jwks.json?v=2";
    auto keys = make_jwks_key_set(c, io.ioc.get_executor(), nullptr, util::SteadyClock::instance());
    keys->start();
    ASSERT_TRUE(eventually([&] { return keys->has("ec-1"); }));
    keys->stop();
    std::lock_guard lock(mu);
    EXPECT_TRUE(request.starts_with("GET /keys/jwks.json?v=2 HTTP/1.1\r\n")) << request;
    EXPECT_THAT(request, HasSubstr("\r\nHost: 127.0.0.1:" + std::to_string(raw.port()) + "\r\n"));
    EXPECT_THAT(request, HasSubstr("\r\nAccept: application/json\r\n"));
    EXPECT_THAT(request, Not(HasSubstr("Content-")));
    EXPECT_TRUE(request.ends_with("\r\n\r\n"));
}

TEST_F(AuthJwks, TheJwksIsFetchedAgainEveryRefreshInterval) {
    auto keys = fetching(100ms, 50ms);
    keys->start();
    ASSERT_TRUE(eventually([&] { return server.answered() >= 3; }));
    server.set_body(test::jwks({&issuer().rsa2}));
    ASSERT_TRUE(eventually([&] { return keys->has("rsa-2"); }));
    EXPECT_FALSE(keys->has("rsa-1"));
}

TEST_F(AuthJwks, AKeyFetchedAgainUnchangedKeepsItsHandleSoItsTokensStayCached) {
    auto keys = fetching(100ms, 50ms);
    keys->start();
    ASSERT_TRUE(eventually([&] { return keys->has("rsa-1"); }));
    const auto before = keys->key_handle("rsa-1");
    ASSERT_NE(before, nullptr);
    const std::size_t fetched = server.answered();
    ASSERT_TRUE(eventually([&] { return server.answered() >= fetched + 2; }));
    EXPECT_EQ(keys->key_handle("rsa-1"), before);
    // Replaced under the same kid: another handle.
    const test::JwtKey successor(test::JwtKey::Type::rsa, "rsa-1");
    server.set_body(test::jwks({&successor}));
    ASSERT_TRUE(eventually([&] { return keys->key_handle("rsa-1") != before; }));
    EXPECT_NE(keys->key_handle("rsa-1"), nullptr);
}

TEST_F(AuthJwks, CachedKeysKeepWorkingWhileTheServiceIsDown) {
    auto keys = fetching(100ms, 50ms);
    auto a = authenticator(keys);
    keys->start();
    ASSERT_TRUE(eventually([&] { return keys->has("rsa-1"); }));
    server.down();
    ASSERT_TRUE(eventually([&] { return metric(kFetchFailed) >= 1; }));
    // A token never seen before, of a key fetched before the outage.
    EXPECT_EQ(outcome(*a, issuer().rsa.sign(claims({{"sub", "during-outage"}}))), Outcome::ok);
    EXPECT_EQ(outcome(*a, issuer().ec.sign(claims())), Outcome::ok);
    // A kid not fetched before cannot be learnt now.
    EXPECT_EQ(outcome(*a, issuer().rsa2.sign(claims())), Outcome::unknown_key);
    EXPECT_EQ(metric("gateway_auth_jwks_keys"), 2);
}

TEST_F(AuthJwks, TheJwksAgeIsItsAgeAtEachScrapeAndGrowsWhileTheServiceIsDown) {
    // The fixture's manual clock: the age moves only when the test moves it.
    auto keys = fetching(60s, 50ms, clock);
    auto a = authenticator(keys);
    keys->start();
    ASSERT_TRUE(eventually([&] { return metric(kFetchedOk) == 1; }));
    EXPECT_EQ(metric("gateway_auth_jwks_age_seconds"), 0);
    // No fetch is due for a minute: the age is as of the scrape, not as of the last fetch.
    clock.advance(10s);
    EXPECT_EQ(metric("gateway_auth_jwks_age_seconds"), 10);
    // The service goes down; a refetch for an unknown kid fails. The keys held are as old as
    // before, and keep getting older.
    server.down();
    EXPECT_EQ(outcome(*a, issuer().rsa2.sign(claims())), Outcome::unknown_key);
    EXPECT_EQ(metric(kFetchFailed), 1);
    EXPECT_EQ(metric("gateway_auth_jwks_age_seconds"), 10);
    clock.advance(20s);
    EXPECT_EQ(metric("gateway_auth_jwks_age_seconds"), 30);
    // Up again: the next fetch makes it new.
    server.up();
    clock.advance(1s);  // past min_refetch
    EXPECT_EQ(outcome(*a, issuer().rsa2.sign(claims())), Outcome::unknown_key);
    EXPECT_EQ(metric(kFetchedOk), 2);
    EXPECT_EQ(metric("gateway_auth_jwks_age_seconds"), 0);
}

TEST_F(AuthJwks, AGatewayThatCouldNotFetchAtStartRefusesTokensUntilTheServiceIsUp) {
    server.down();
    auto keys = fetching(60s, 50ms);
    auto a = authenticator(keys);
    keys->start();
    ASSERT_TRUE(eventually([&] { return metric(kFetchFailed) >= 1; }));
    const std::string token = issuer().rsa.sign(claims());
    EXPECT_EQ(outcome(*a, token), Outcome::unknown_key);
    EXPECT_EQ(outcome(*a, issuer().ec.sign(claims())), Outcome::unknown_key);
    EXPECT_EQ(metric("gateway_auth_jwks_age_seconds"), -1);
    server.up();
    // No restart: the next token past min_refetch fetches the keys.
    EXPECT_TRUE(eventually([&] { return outcome(*a, token) == Outcome::ok; }));
    EXPECT_EQ(metric("gateway_auth_jwks_keys"), 2);
}

TEST_F(AuthJwks, ANewKeyIsUsedAfterARefetchAndARemovedKeyStopsItsCachedTokens) {
    auto keys = fetching(60s, 50ms);
    auto a = authenticator(keys);
    keys->start();
    ASSERT_TRUE(eventually([&] { return keys->has("rsa-1"); }));
    const std::string old_token = issuer().rsa.sign(claims());
    ASSERT_EQ(outcome(*a, old_token), Outcome::ok);  // now cached

    // The service rotates: rsa-2 in, rsa-1 out.
    server.set_body(test::jwks({&issuer().rsa2, &issuer().ec}));
    std::this_thread::sleep_for(60ms);  // past min_refetch since the fetch at start
    const Verdict fresh = check(*a, issuer().rsa2.sign(claims()));
    EXPECT_EQ(fresh.outcome, Outcome::ok) << fresh.message;
    EXPECT_EQ(server.answered(), 2u);
    EXPECT_FALSE(keys->has("rsa-1"));
    EXPECT_EQ(outcome(*a, old_token), Outcome::unknown_key);
}

TEST_F(AuthJwks, ASecondUnknownKidWithinMinRefetchDoesNotFetchAgain) {
    auto keys = fetching(60s, 500ms);
    auto a = authenticator(keys);
    keys->start();
    ASSERT_TRUE(eventually([&] { return keys->has("rsa-1"); }));
    // Right after the fetch at start: too soon to fetch again.
    EXPECT_EQ(outcome(*a, issuer().rsa2.sign(claims())), Outcome::unknown_key);
    EXPECT_EQ(server.answered(), 1u);
    std::this_thread::sleep_for(550ms);
    EXPECT_EQ(outcome(*a, issuer().rsa2.sign(claims())), Outcome::unknown_key);
    EXPECT_EQ(server.answered(), 2u);
    EXPECT_EQ(outcome(*a, issuer().ec2.sign(claims())), Outcome::unknown_key);
    EXPECT_EQ(server.answered(), 2u);
}

TEST_F(AuthJwks, ConcurrentUnknownKidsShareOneFetch) {
    auto keys = fetching(60s, 50ms);
    auto a = authenticator(keys);
    keys->start();
    ASSERT_TRUE(eventually([&] { return keys->has("rsa-1"); }));
    server.set_body(test::jwks({&issuer().rsa, &issuer().ec2}));
    std::this_thread::sleep_for(60ms);
    std::vector<std::string> tokens;
    for (int i = 0; i < 8; ++i)
        tokens.push_back(issuer().ec2.sign(claims({{"sub", "user-" + std::to_string(i)}})));
    std::vector<std::future<Verdict>> verdicts;
    for (const auto& t : tokens)
        verdicts.push_back(asio::co_spawn(io.ioc, a->authenticate(t), asio::use_future));
    for (auto& v : verdicts) EXPECT_EQ(v.get().outcome, Outcome::ok);
    EXPECT_EQ(server.answered(), 2u);
}

TEST_F(AuthJwks, AnErrorStatusOrAnUnparsableAnswerKeepsTheKeysHeld) {
    auto keys = fetching(60s, 50ms);
    auto a = authenticator(keys);
    keys->start();
    ASSERT_TRUE(eventually([&] { return keys->has("rsa-1"); }));
    server.set_status(503);
    std::this_thread::sleep_for(60ms);
    EXPECT_EQ(outcome(*a, issuer().rsa2.sign(claims())), Outcome::unknown_key);
    EXPECT_EQ(server.answered(), 2u);
    EXPECT_EQ(metric(kFetchFailed), 1);
    server.set_status(200);
    server.set_body(R"({"keys": [)");
    std::this_thread::sleep_for(60ms);
    EXPECT_EQ(outcome(*a, issuer().rsa2.sign(claims())), Outcome::unknown_key);
    EXPECT_EQ(server.answered(), 3u);
    EXPECT_EQ(metric(kFetchFailed), 2);
    EXPECT_EQ(outcome(*a, issuer().rsa.sign(claims())), Outcome::ok);
    EXPECT_EQ(metric("gateway_auth_jwks_keys"), 2);
    EXPECT_EQ(metric(kFetchedOk), 1);
}

TEST_F(AuthJwks, StopEndsThePeriodicFetches) {
    auto keys = fetching(100ms, 50ms);
    keys->start();
    ASSERT_TRUE(eventually([&] { return server.answered() >= 2; }));
    keys->stop();
    std::this_thread::sleep_for(50ms);  // a fetch in flight may still end
    const std::size_t answered = server.answered();
    std::this_thread::sleep_for(300ms);
    EXPECT_EQ(server.answered(), answered);
    EXPECT_TRUE(keys->has("rsa-1"));
}

}  // namespace
}  // namespace gateway::auth
