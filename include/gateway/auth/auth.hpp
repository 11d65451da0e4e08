#pragma once
// Who is calling the RPC listener, and what they may do: API keys (auth.clients), bearer tokens
// issued by an authentication service (auth.jwt, checked against its JWKS), each client's
// managed senders, method allowlist and rate limit. Secrets are never logged and never part of a
// message.

#include "gateway/config/config.hpp"
#include "gateway/util/clock.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace gateway::metrics {
class Metrics;
}

namespace gateway::auth {

/// Unix time in seconds (tokens' exp and nbf are read against it). Injected for tests.
using UnixClock = std::function<std::int64_t()>;
/// The system's wall clock.
UnixClock system_unix_clock();

/// What an authenticated caller may do. Immutable once made; shared between requests.
class Client {
public:
    /// `senders` 0x addresses (kept lowercase); `methods` an allowlist of names and `prefix*`
    /// patterns (empty: every method the chain serves). `label`: see label(); empty: the id.
    Client(std::string id, std::vector<std::string> senders, std::vector<std::string> methods,
           bool anonymous = false, std::string label = {});

    /// A configured client's id, or "jwt:<sub>" for a token's client, or "anonymous".
    const std::string& id() const { return id_; }
    /// The client as a metric label, from a bounded set: a configured client's id, "anonymous",
    /// or "jwt" for every token client (a sub may be personal; /metrics is open to scrapers).
    const std::string& label() const { return label_; }
    /// No auth is configured: the listener is trusted (loopback only), every managed sender may
    /// be used.
    bool anonymous() const { return anonymous_; }
    /// Whether this client may use a managed sender (any case) on a chain. A listed sender is
    /// an address (on every chain that manages it) or "<chain>:<address>" (on that chain only).
    bool may_send_from(std::string_view chain, std::string_view sender) const;
    /// Empty when the client may call the method; else why not, naming the client.
    std::optional<std::string> method_refusal(std::string_view method) const;
    /// The managed senders it lists (lowercase).
    const std::vector<std::string>& senders() const { return senders_; }

private:
    std::string id_;
    std::string label_;
    std::vector<std::string> senders_;
    std::vector<std::string> methods_;
    bool anonymous_ = false;
};

/// How a credential check ended. The names are the metric's outcome labels.
enum class Outcome {
    ok,
    missing,      ///< no credential presented
    invalid,      ///< not a known key, a malformed token, a bad signature, wrong iss/aud, no sub
    expired,      ///< a token past exp (or before nbf), with the clock skew allowed
    unknown_key,  ///< a token signed with a kid the JWKS does not have (or no JWKS yet)
};
std::string_view to_string(Outcome outcome);

struct Verdict {
    Outcome outcome = Outcome::missing;
    std::shared_ptr<const Client> client;  ///< set when ok
    std::string message;                   ///< for the client; never holds the credential
};

/// The JWKS of auth.jwt: keys by kid, fetched at start and every refresh_ms, and at once (at
/// most every `min_refetch`) when a token names a kid it does not have. While the service is
/// unreachable the keys already fetched stay in use; before the first fetch there are none.
/// Thread-safe.
class KeySet {
public:
    virtual ~KeySet() = default;
    /// Starts fetching (on the executor given at construction). Returns at once.
    virtual void start() = 0;
    /// Stops fetching; a fetch in flight ends within its timeout.
    virtual void stop() = 0;
    /// Verifies `signature` over `signed_part` with the key `kid` and algorithm `alg` ("RS256" or
    /// "ES256"; ES256 signatures are the JOSE form, r || s, 64 bytes). nullopt when the set has
    /// no such kid (or its key is of another type than alg names); else whether it verifies.
    virtual std::optional<bool> verify(std::string_view kid, std::string_view alg,
                                       std::string_view signed_part,
                                       std::string_view signature) const = 0;
    /// A kid was not found: fetch again now unless the last fetch started less than
    /// `min_refetch` ago. Completes when that fetch is done (or at once); true when it ran.
    virtual boost::asio::awaitable<bool> refetch_for_unknown_kid() = 0;
    /// Whether the set holds a kid now.
    virtual bool has(std::string_view kid) const = 0;
    /// The key the set holds under a kid now (null when none), as a handle for the token cache:
    /// the same handle while that key stays; another once the kid names another key (the
    /// service rotated under the same kid) or none. A handle held keeps its key alive, so two
    /// keys never share one.
    virtual std::shared_ptr<const void> key_handle(std::string_view kid) const = 0;
};

/// Fetches auth.jwt.jwks_url with GET over HTTP(S) (its ca_file honoured). `min_refetch`: 30 s
/// outside tests. Metrics: gateway_auth_jwks_age_seconds (read at each scrape, through `clock`:
/// Metrics::set_jwks_age_source), _keys, _fetches_total. An answer that
/// is not HTTP 200 with a JWKS is a failed fetch (the keys held stay); a JWKS with no usable key
/// is not: it replaces them. Throws std::invalid_argument when the URL or ca_file cannot be used
/// (start-up only).
std::shared_ptr<KeySet> make_jwks_key_set(
    const config::JwtConfig& config, boost::asio::any_io_executor executor,
    metrics::Metrics* metrics, const util::Clock& clock,
    std::chrono::milliseconds min_refetch = std::chrono::seconds(30));

/// A key set that never fetches: the keys of one JWKS document (RFC 7517: RSA keys with n and e,
/// P-256 keys with x and y, each with a kid; other keys are skipped). For tests, and for
/// checking a document. Throws std::invalid_argument when the text is not a JWKS.
std::shared_ptr<KeySet> make_static_key_set(std::string_view jwks_json);

/// Why Authenticator::admit() refused a request (it took nothing from the bucket).
struct Throttle {
    /// How long until a request of as many calls would be admitted; for one larger than
    /// `max_calls`, until the bucket is full again (a request of `max_calls` then goes).
    std::chrono::milliseconds retry_after{0};
    /// The most calls one request of this client can have: its bucket's whole content.
    std::size_t max_calls = 0;
    /// The request has more calls than `max_calls`: it is refused however long it waits.
    bool too_large = false;
};

/// Where a credential was presented: a token is taken in the header only (a URL ends up in
/// proxies' and servers' access logs), an API key in either.
enum class Presented { header, path };

/// The RPC listener's credential checks. Thread-safe.
class Authenticator {
public:
    /// `keys` may be null when auth.jwt is not configured.
    Authenticator(const config::AuthConfig& config, std::shared_ptr<KeySet> keys,
                  metrics::Metrics* metrics,
                  const util::Clock& clock = util::SteadyClock::instance(),
                  UnixClock unix_clock = system_unix_clock());
    ~Authenticator();

    /// Whether callers must present a credential (auth.clients or auth.jwt configured).
    /// Replaces the API keys and their clients (a configuration reload): a client whose id and
    /// max_rps stay keeps what it used of its rate; calls already authenticated carry on with
    /// the client they were given. Whether credentials are required does not change.
    void reconfigure(const std::vector<config::ClientConfig>& clients);

    bool required() const;
    /// The caller when nothing is required: anonymous, every managed sender.
    std::shared_ptr<const Client> anonymous() const;

    /// Checks a credential: an API key (from `Authorization: Bearer <key>` or the URL path) or a
    /// JWT (`Authorization: Bearer <jwt>`). Keys are compared in constant time. A JWT is verified
    /// (RS256 or ES256 only; `none` and HS* refused; exp, nbf, iss, aud with 30 s of skew; sub
    /// required) and then cached until it expires, so a keep-alive client pays the signature
    /// check once. A token whose kid is unknown waits for one refetch of the JWKS (bounded by
    /// its timeout) before it is refused. A credential presented in the URL path that is not an
    /// API key and looks like a token is refused unchecked (`invalid`, the message says to send
    /// it in the Authorization header). Counts gateway_auth_requests_total{listener="rpc"}.
    /// Never throws. `credential` must stay valid until the returned awaitable completes.
    boost::asio::awaitable<Verdict> authenticate(std::string_view credential,
                                                 Presented where = Presented::header);

    /// Takes `calls` calls from the client's max_rps bucket: a configured client's own bucket,
    /// one bucket per sub for token clients (the 10,000 most recently used). The bucket refills
    /// at max_rps a second and holds one second's worth (at least one call): that is the most
    /// calls one request (a batch) can have. A request is admitted whole or refused whole, and
    /// a refused one takes nothing: the bucket never goes into debt. nullopt: admitted; else why
    /// not (Throttle). Clients without a limit are always admitted.
    std::optional<Throttle> admit(const Client& client, std::size_t calls);

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

/// `Authorization: Bearer <token>` → the token; "" when the header is absent or another scheme.
std::string_view bearer_token(std::string_view authorization_header);

/// Compares a presented secret with the expected one in time independent of where they differ
/// (both are hashed first, so lengths leak nothing either).
bool secret_equals(std::string_view presented, std::string_view expected);

}  // namespace gateway::auth
