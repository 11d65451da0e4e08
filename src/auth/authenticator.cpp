// The RPC listener's credential checks: API keys compared in constant time, JWTs verified against
// the KeySet and then cached, per-client rate limits, bounded client labels.

#include "gateway/auth/auth.hpp"

#include "gateway/metrics/metrics.hpp"
#include "gateway/util/text.hpp"
#include "jose.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstring>
#include <limits>
#include <list>
#include <mutex>
#include <unordered_map>

namespace gateway::auth {

namespace asio = boost::asio;
namespace json = boost::json;
using detail::Digest;

namespace {

constexpr std::size_t kMaxCredentialBytes = 8 * 1024;
constexpr std::int64_t kSkewSeconds = 30;
constexpr std::size_t kMaxCachedTokens = 10'000;
constexpr std::size_t kMaxTokenBuckets = 10'000;
constexpr std::size_t kMaxSubBytes = 200;
constexpr std::size_t kMaxKidBytes = 256;
// Token clients share one metric label: /metrics is open to scrapers, and a sub may be a
// person's name or address (and there is no end to them).
constexpr const char* kTokenLabel = "jwt";

Verdict refused(Outcome outcome, std::string message) {
    return Verdict{outcome, nullptr, std::move(message)};
}

Verdict invalid_token(std::string_view why) {
    return refused(Outcome::invalid, "the bearer token is not valid: " + std::string(why));
}

// SHA-256 output is uniform: its first bytes are as good a hash as any.
struct DigestHash {
    std::size_t operator()(const Digest& d) const {
        std::size_t h;
        std::memcpy(&h, d.data(), sizeof h);
        return h;
    }
};

// A token bucket: refills at `rate` a second up to one second's worth (at least one call). A
// request is taken whole or not at all: one larger than the bucket is refused, not let into
// debt (a debt let one request of any size through, and then refused the client's next calls
// for as long as the debt took to pay).
class Bucket {
public:
    Bucket(double rate, util::Clock::time_point now)
        : rate_(rate), capacity_(std::max(rate, 1.0)), tokens_(capacity_), last_(now) {}

    double rate() const { return rate_; }

    std::optional<Throttle> take(std::size_t calls, util::Clock::time_point now) {
        if (now > last_) {
            const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(now - last_);
            tokens_ = std::min(capacity_, tokens_ + static_cast<double>(ns.count()) * rate_ / 1e9);
            last_ = now;
        }
        // Refills land on fractions: a hair under a whole call counts as the call.
        constexpr double kEpsilon = 1e-9;
        const double n = static_cast<double>(calls);
        Throttle refusal;
        refusal.max_calls = static_cast<std::size_t>(std::floor(capacity_ + kEpsilon));
        refusal.too_large = calls > refusal.max_calls;
        if (!refusal.too_large && tokens_ + kEpsilon >= n) {
            tokens_ = std::max(0.0, tokens_ - n);
            return std::nullopt;
        }
        // Too large: it never goes; the client may send up to max_calls once the bucket is full.
        const double needed = refusal.too_large ? capacity_ : n;
        const double wait_ns = std::ceil(std::max(0.0, needed - tokens_) * 1e9 / rate_);
        const auto wait = std::chrono::ceil<std::chrono::milliseconds>(
            std::chrono::nanoseconds(static_cast<std::int64_t>(std::min(wait_ns, 1e18))));
        refusal.retry_after = std::max(wait, std::chrono::milliseconds(1));
        return refusal;
    }

private:
    double rate_;
    double capacity_;
    double tokens_;
    util::Clock::time_point last_;
};

// A configured client's bucket: its own lock, so clients never wait for one another.
struct ClientBucket {
    explicit ClientBucket(Bucket b) : bucket(b) {}
    std::mutex mu;
    Bucket bucket;
};

// One bucket per token sub, the most recently used kept.
class SubBuckets {
public:
    std::optional<Throttle> take(const std::string& id, double rate, std::size_t calls,
                                 util::Clock::time_point now) {
        std::lock_guard lock(mu_);
        auto it = map_.find(id);
        if (it == map_.end()) {
            if (map_.size() >= kMaxTokenBuckets) {
                map_.erase(lru_.back());
                lru_.pop_back();
            }
            lru_.push_front(id);
            it = map_.emplace(id, Slot{Bucket(rate, now), lru_.begin()}).first;
        } else {
            lru_.splice(lru_.begin(), lru_, it->second.used);
        }
        return it->second.bucket.take(calls, now);
    }

private:
    struct Slot {
        Bucket bucket;
        std::list<std::string>::iterator used;
    };
    std::mutex mu_;
    std::list<std::string> lru_;  // most recently used first
    std::unordered_map<std::string, Slot> map_;
};

// Verified tokens by the SHA-256 of their text, each until it expires.
class TokenCache {
public:
    struct Entry {
        std::shared_ptr<const Client> client;
        std::int64_t exp = 0;
        std::string kid;
        std::shared_ptr<const void> key;  // the key that verified it (KeySet::key_handle)
    };

    // The client of a token verified before, while it has not expired and the key that verified
    // it is still the set's key for its kid (a key dropped from the JWKS, or replaced under the
    // same kid, stops its tokens at once).
    std::shared_ptr<const Client> find(const Digest& digest, std::int64_t now, const KeySet& keys) {
        Entry entry;
        {
            std::lock_guard lock(mu_);
            auto it = map_.find(digest);
            if (it == map_.end()) return nullptr;
            if (now > it->second.entry.exp + kSkewSeconds) {
                erase(it);
                return nullptr;
            }
            entry = it->second.entry;
        }
        return entry.key && keys.key_handle(entry.kid) == entry.key ? entry.client : nullptr;
    }

    void insert(const Digest& digest, Entry entry, std::int64_t now) {
        std::lock_guard lock(mu_);
        if (auto it = map_.find(digest); it != map_.end()) {
            it->second.entry = std::move(entry);
            return;
        }
        if (map_.size() >= kMaxCachedTokens) make_room(now);
        earliest_exp_ = std::min(earliest_exp_, entry.exp);
        order_.push_back(digest);
        map_.emplace(digest, Slot{std::move(entry), std::prev(order_.end())});
    }

private:
    struct Slot {
        Entry entry;
        std::list<Digest>::iterator order;
    };
    using Map = std::unordered_map<Digest, Slot, DigestHash>;

    void erase(Map::iterator it) {
        order_.erase(it->second.order);
        map_.erase(it);
    }

    // Expired tokens go first, then the oldest. The sweep runs only once something can have
    // expired (earliest_exp_), so a cache full of live tokens costs no scan per insert.
    void make_room(std::int64_t now) {
        if (now > earliest_exp_ + kSkewSeconds) {
            earliest_exp_ = std::numeric_limits<std::int64_t>::max();
            for (auto it = map_.begin(); it != map_.end();) {
                if (now > it->second.entry.exp + kSkewSeconds) {
                    order_.erase(it->second.order);
                    it = map_.erase(it);
                } else {
                    earliest_exp_ = std::min(earliest_exp_, it->second.entry.exp);
                    ++it;
                }
            }
        }
        while (map_.size() >= kMaxCachedTokens) erase(map_.find(order_.front()));
    }

    std::mutex mu_;
    Map map_;
    std::list<Digest> order_;  // oldest first
    std::int64_t earliest_exp_ = std::numeric_limits<std::int64_t>::max();
};

// A token's parts, checked for shape but not yet for signature or claims.
struct ParsedToken {
    std::string alg;
    std::string kid;
    json::object claims;
    std::string signature;
    std::string_view signed_part;  // header.payload, as sent
};

std::optional<json::object> decode_object(std::string_view part) {
    auto text = detail::base64url_decode(part);
    if (!text) return std::nullopt;
    json::error_code ec;
    json::value v = json::parse(*text, ec);
    if (ec || !v.is_object()) return std::nullopt;
    return std::move(v.get_object());
}

boost::system::result<ParsedToken, std::string> parse_token(std::string_view token) {
    using Result = boost::system::result<ParsedToken, std::string>;
    auto fail = [](const char* why) { return Result(boost::system::in_place_error, why); };
    const std::size_t dot1 = token.find('.');
    const std::size_t dot2 = token.find('.', dot1 + 1);
    ParsedToken t;
    t.signed_part = token.substr(0, dot2);
    auto header = decode_object(token.substr(0, dot1));
    if (!header) return fail("its header is not a base64url JSON object");
    const json::value* alg = header->if_contains("alg");
    if (!alg || !alg->is_string()) return fail("its header has no alg");
    // Only the asymmetric algorithms the JWKS can hold: `none` and HS* (which would take a public
    // key as a shared secret) are refused before anything else is looked at.
    if (alg->get_string() != "RS256" && alg->get_string() != "ES256")
        return fail("its alg must be RS256 or ES256");
    t.alg = alg->get_string();
    // RFC 7515 §4.1.11: extensions marked critical must be understood; the gateway knows none.
    if (header->contains("crit")) return fail("its header lists crit extensions");
    const json::value* kid = header->if_contains("kid");
    if (!kid || !kid->is_string() || kid->get_string().empty() ||
        kid->get_string().size() > kMaxKidBytes)
        return fail("its header has no kid");
    t.kid = kid->get_string();
    auto claims = decode_object(token.substr(dot1 + 1, dot2 - dot1 - 1));
    if (!claims) return fail("its payload is not a base64url JSON object");
    t.claims = std::move(*claims);
    auto signature = detail::base64url_decode(token.substr(dot2 + 1));
    if (!signature) return fail("its signature is not base64url");
    t.signature = std::move(*signature);
    return t;
}

// A NumericDate (RFC 7519 §2), within a range where adding the skew cannot overflow.
std::optional<std::int64_t> numeric_date(const json::value& v, bool round_up) {
    constexpr std::int64_t kLimit = std::int64_t{1} << 50;
    if (v.is_int64()) return std::clamp(v.get_int64(), -kLimit, kLimit);
    if (v.is_uint64()) return kLimit;  // above int64: far in the future
    if (v.is_double() && std::isfinite(v.get_double())) {
        const double d =
            std::clamp(v.get_double(), -static_cast<double>(kLimit), static_cast<double>(kLimit));
        return static_cast<std::int64_t>(round_up ? std::ceil(d) : std::floor(d));
    }
    return std::nullopt;
}

bool is_address(std::string_view s) {
    if (s.size() != 42 || s[0] != '0' || (s[1] != 'x' && s[1] != 'X')) return false;
    return std::all_of(s.begin() + 2, s.end(),
                       [](char c) { return std::isxdigit(static_cast<unsigned char>(c)); });
}

// A sender as a token lists it: an address, or "<chain>:<address>" (a chain's name: lowercase
// letters, digits, '_' and '-').
bool is_sender(std::string_view s) {
    const auto colon = s.find(':');
    if (colon == std::string_view::npos) return is_address(s);
    const auto chain = s.substr(0, colon);
    return !chain.empty() && chain.size() <= 63 &&
           std::all_of(chain.begin(), chain.end(),
                       [](char c) {
                           return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
                                  c == '-';
                       }) &&
           is_address(s.substr(colon + 1));
}

bool printable(std::string_view s) {
    return std::none_of(s.begin(), s.end(), [](char c) {
        const auto u = static_cast<unsigned char>(c);
        return u < 0x20 || u == 0x7f;
    });
}

}  // namespace

struct Authenticator::Impl {
    struct ApiKey {
        Digest digest;
        std::shared_ptr<const Client> client;
    };
    // The configured clients: their keys and rate limits. A reload makes a new set; a check
    // holds the set it started with.
    struct Clients {
        std::vector<ApiKey> api_keys;
        std::unordered_map<std::string, std::shared_ptr<ClientBucket>> buckets;
    };

    bool required = false;
    config::JwtConfig jwt;
    std::shared_ptr<KeySet> keys;
    metrics::Metrics* metrics;
    const util::Clock& clock;
    UnixClock unix_clock;
    std::shared_ptr<const Client> anonymous;
    mutable std::mutex clients_mu;
    std::shared_ptr<const Clients> clients;
    TokenCache cache;
    SubBuckets sub_buckets;

    Impl(const config::AuthConfig& config, std::shared_ptr<KeySet> key_set, metrics::Metrics* m,
         const util::Clock& c, UnixClock unix_now)
        : required(config.clients_required()),
          jwt(config.jwt),
          keys(std::move(key_set)),
          metrics(m),
          clock(c),
          unix_clock(std::move(unix_now)),
          anonymous(std::make_shared<const Client>("anonymous", std::vector<std::string>{},
                                                   std::vector<std::string>{}, true)),
          clients(make_clients(config.clients, nullptr)) {}

    // A client whose id and max_rps stay keeps its bucket (what it has used of its rate).
    std::shared_ptr<const Clients> make_clients(const std::vector<config::ClientConfig>& config,
                                                const Clients* before) const {
        auto out = std::make_shared<Clients>();
        for (const auto& cc : config) {
            auto client =
                std::make_shared<const Client>(cc.id, cc.senders, cc.methods, false, cc.id);
            for (const auto& key : cc.keys) {
                auto digest = detail::sha256(key);
                if (!digest) throw std::runtime_error("auth: cannot hash the keys (OpenSSL)");
                out->api_keys.push_back(ApiKey{*digest, client});
            }
            if (cc.max_rps <= 0) continue;
            std::shared_ptr<ClientBucket> bucket;
            if (before) {
                // The rate is fixed at construction: read without the bucket's lock.
                const auto was = before->buckets.find(cc.id);
                if (was != before->buckets.end() && was->second->bucket.rate() == cc.max_rps)
                    bucket = was->second;
            }
            if (!bucket) bucket = std::make_shared<ClientBucket>(Bucket(cc.max_rps, clock.now()));
            out->buckets.emplace(cc.id, std::move(bucket));
        }
        return out;
    }

    std::shared_ptr<const Clients> current() const {
        std::lock_guard lock(clients_mu);
        return clients;
    }

    asio::awaitable<Verdict> check(std::string_view credential, Presented where) {
        if (credential.empty())
            co_return refused(Outcome::missing,
                              "a credential is required: send Authorization: Bearer <API key or "
                              "token>");
        if (credential.size() > kMaxCredentialBytes)
            co_return refused(Outcome::invalid, "the credential is longer than 8 KB");
        const auto digest = detail::sha256(credential);
        if (!digest) co_return refused(Outcome::invalid, "the credential could not be checked");
        // Every key, every time: how long this takes says nothing about which key came close.
        std::shared_ptr<const Client> match;
        const std::shared_ptr<const Clients> known = current();
        for (const auto& key : known->api_keys)
            if (detail::digest_equals(key.digest, *digest)) match = key.client;
        if (match) co_return Verdict{Outcome::ok, std::move(match), {}};
        // The issue allows API keys only in the path: a URL ends up in proxies' and servers'
        // access logs, and a token there is a bearer credential anyone reading them can use
        // until it expires. Refused before any check, so that it never works by accident.
        if (where == Presented::path && detail::looks_like_jws(credential))
            co_return refused(Outcome::invalid,
                              "a bearer token is not accepted in the URL path (URLs end up in "
                              "access logs): send it as Authorization: Bearer <token>");
        if (!detail::looks_like_jws(credential) || !keys)
            co_return refused(Outcome::invalid,
                              keys ? "the credential is not a known API key or a bearer token"
                                   : "the credential is not a known API key");
        if (auto client = cache.find(*digest, unix_clock(), *keys))
            co_return Verdict{Outcome::ok, std::move(client), {}};
        co_return co_await check_token(credential, *digest);
    }

    asio::awaitable<Verdict> check_token(std::string_view token, Digest digest) {
        auto parsed = parse_token(token);
        if (!parsed) co_return invalid_token(parsed.error());
        const ParsedToken& t = *parsed;
        // The key as it is before the check: the cache keeps the token with it.
        std::shared_ptr<const void> key = keys->key_handle(t.kid);
        std::optional<bool> verified = keys->verify(t.kid, t.alg, t.signed_part, t.signature);
        if (!verified && !keys->has(t.kid)) {
            // The service may have rotated to a key fetched since: one refetch, shared with other
            // callers and at most every min_refetch, then a second look.
            co_await keys->refetch_for_unknown_kid();
            key = keys->key_handle(t.kid);
            verified = keys->verify(t.kid, t.alg, t.signed_part, t.signature);
        }
        if (!verified) {
            if (keys->has(t.kid))
                co_return invalid_token("its kid names a key of another type than its alg");
            co_return refused(Outcome::unknown_key,
                              "the bearer token's key (kid) is not in the JWKS of auth.jwt");
        }
        if (!*verified) co_return invalid_token("its signature does not verify");
        co_return check_claims(t, digest, std::move(key));
    }

    Verdict check_claims(const ParsedToken& t, const Digest& digest,
                         std::shared_ptr<const void> key) {
        const json::object& c = t.claims;
        const json::value* exp_value = c.if_contains("exp");
        const auto exp = exp_value ? numeric_date(*exp_value, false) : std::nullopt;
        if (!exp) return invalid_token("its exp is missing or not a number");
        std::optional<std::int64_t> nbf;
        if (const json::value* v = c.if_contains("nbf")) {
            nbf = numeric_date(*v, true);
            if (!nbf) return invalid_token("its nbf is not a number");
        }
        const json::value* iss = c.if_contains("iss");
        if (!iss || !iss->is_string() || iss->get_string() != jwt.issuer)
            return invalid_token("its iss is not the issuer of auth.jwt");
        const json::value* aud = c.if_contains("aud");
        bool for_us = false;
        if (aud && aud->is_string()) {
            for_us = aud->get_string() == jwt.audience;
        } else if (aud && aud->is_array()) {
            for_us = std::any_of(aud->get_array().begin(), aud->get_array().end(),
                                 [&](const json::value& a) {
                                     return a.is_string() && a.get_string() == jwt.audience;
                                 });
        }
        if (!for_us) return invalid_token("its aud does not name the audience of auth.jwt");
        const json::value* sub = c.if_contains("sub");
        if (!sub || !sub->is_string() || sub->get_string().empty() ||
            sub->get_string().size() > kMaxSubBytes || !printable(sub->get_string()))
            return invalid_token("its sub is missing, empty, longer than 200 bytes or not text");
        const std::int64_t now = unix_clock();
        if (now > *exp + kSkewSeconds)
            return refused(Outcome::expired, "the bearer token has expired: get a new one");
        if (nbf && *nbf > now + kSkewSeconds)
            return refused(Outcome::expired, "the bearer token is not valid yet (nbf)");

        std::vector<std::string> senders;
        if (const json::value* list = c.if_contains(jwt.senders_claim); list && list->is_array()) {
            for (const json::value& s : list->get_array()) {
                if (!s.is_string() || !is_sender(s.get_string())) continue;
                std::string address = util::lower(s.get_string());
                if (std::find(senders.begin(), senders.end(), address) == senders.end())
                    senders.push_back(std::move(address));
            }
        }
        const std::string subject(sub->get_string());
        auto client = std::make_shared<const Client>("jwt:" + subject, std::move(senders),
                                                     jwt.methods, false, kTokenLabel);
        cache.insert(digest, TokenCache::Entry{client, *exp, t.kid, std::move(key)}, now);
        return Verdict{Outcome::ok, std::move(client), {}};
    }
};

Authenticator::Authenticator(const config::AuthConfig& config, std::shared_ptr<KeySet> keys,
                             metrics::Metrics* metrics, const util::Clock& clock,
                             UnixClock unix_clock)
    : impl_(
          std::make_unique<Impl>(config, std::move(keys), metrics, clock, std::move(unix_clock))) {}

Authenticator::~Authenticator() = default;

void Authenticator::reconfigure(const std::vector<config::ClientConfig>& clients) {
    auto next = impl_->make_clients(clients, impl_->current().get());
    std::lock_guard lock(impl_->clients_mu);
    impl_->clients = std::move(next);
}

bool Authenticator::required() const {
    return impl_->required;
}

std::shared_ptr<const Client> Authenticator::anonymous() const {
    return impl_->anonymous;
}

asio::awaitable<Verdict> Authenticator::authenticate(std::string_view credential, Presented where) {
    Verdict verdict;
    try {
        verdict = co_await impl_->check(credential, where);
    } catch (const std::exception&) {
        // Out of memory and the like: the caller is refused, the listener keeps serving.
        verdict = refused(Outcome::invalid, "the credential could not be checked");
    }
    if (impl_->metrics) impl_->metrics->count_auth("rpc", to_string(verdict.outcome));
    co_return verdict;
}

std::optional<Throttle> Authenticator::admit(const Client& client, std::size_t calls) {
    if (client.anonymous() || calls == 0) return std::nullopt;
    // Configured ids cannot contain ':' (config), so "jwt:..." is always a token's client.
    const auto known = impl_->current();
    if (auto it = known->buckets.find(client.id()); it != known->buckets.end()) {
        std::lock_guard lock(it->second->mu);
        return it->second->bucket.take(calls, impl_->clock.now());
    }
    if (impl_->jwt.max_rps > 0 && client.id().starts_with("jwt:"))
        return impl_->sub_buckets.take(client.id(), impl_->jwt.max_rps, calls, impl_->clock.now());
    return std::nullopt;
}

}  // namespace gateway::auth
