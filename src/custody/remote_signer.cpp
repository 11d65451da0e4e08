#include "gateway/custody/remote_signer.hpp"

#include "gateway/eth/transaction.hpp"
#include "gateway/upstream/http_client.hpp"

#include <spdlog/spdlog.h>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/url/parse.hpp>

#include <algorithm>
#include <atomic>
#include <stdexcept>

namespace gateway::custody {

namespace asio = boost::asio;
namespace json = boost::json;
using Outcome = Signed::Outcome;

namespace {

// A message from the service goes into `detail` as it is, but not without bound.
constexpr std::size_t kMaxMessageChars = 300;

Signed fail(Outcome outcome, std::string detail) {
    Signed out;
    out.outcome = outcome;
    out.detail = std::move(detail);
    return out;
}

std::string clip(std::string_view text) {
    if (text.size() <= kMaxMessageChars) return std::string(text);
    return std::string(text.substr(0, kMaxMessageChars)) + "...";
}

/// What differs between the transaction asked for and the one the service signed; empty if
/// nothing does.
std::string mismatch(const eth::UnsignedTx& want, const eth::Address& from,
                     const eth::Transaction& got) {
    if (got.sender != from)
        return "it is signed by " + eth::to_checksum_address(got.sender) + ", not " +
               eth::to_checksum_address(from);
    if (got.type != want.type)
        return "its type is " + std::to_string(static_cast<int>(got.type)) + ", not " +
               std::to_string(static_cast<int>(want.type));
    if (got.chain_id != want.chain_id)
        return "its chain id is " + (got.chain_id ? std::to_string(*got.chain_id) : "absent") +
               ", not " + std::to_string(want.chain_id);
    if (got.nonce != want.nonce)
        return "its nonce is " + std::to_string(got.nonce) + ", not " + std::to_string(want.nonce);
    if (got.gas != want.gas) return "its gas limit differs";
    if (got.to != want.to) return "its recipient differs";
    if (got.value != eth::to_quantity(want.value)) return "its value differs";
    if (got.input != want.input) return "its data differs";
    if (want.type == eth::TxType::legacy) {
        if (got.gas_price != eth::to_quantity(want.gas_price)) return "its gas price differs";
    } else {
        if (got.max_fee_per_gas != eth::to_quantity(want.max_fee_per_gas))
            return "its max fee per gas differs";
        if (got.max_priority_fee_per_gas != eth::to_quantity(want.max_priority_fee_per_gas))
            return "its max priority fee per gas differs";
        if (got.access_list.is_array() && !got.access_list.get_array().empty())
            return "it added an access list";
    }
    return {};
}

class RemoteSigner final : public Signer {
public:
    RemoteSigner(std::string id, std::unique_ptr<upstream::HttpClient> client,
                 std::vector<eth::Address> addresses, std::chrono::milliseconds timeout)
        : id_(std::move(id)),
          client_(std::move(client)),
          addresses_(std::move(addresses)),
          timeout_(timeout) {}

    const std::string& id() const override { return id_; }
    std::vector<eth::Address> addresses() const override { return addresses_; }

    asio::awaitable<Signed> sign(const eth::UnsignedTx& tx, const eth::Address& from,
                                 std::chrono::steady_clock::time_point deadline) override {
        if (std::find(addresses_.begin(), addresses_.end(), from) == addresses_.end())
            co_return fail(Outcome::refused, "signer " + id_ + " is not configured for " +
                                                 eth::to_checksum_address(from));
        const auto now = std::chrono::steady_clock::now();
        if (deadline <= now) co_return fail(Outcome::unavailable, "signing timed out");

        std::string body;
        try {
            json::object request{{"jsonrpc", "2.0"},
                                 {"id", next_id_.fetch_add(1, std::memory_order_relaxed)},
                                 {"method", "eth_signTransaction"},
                                 {"params", json::array{eth::sign_request_json(tx, from)}}};
            body = json::serialize(request);
        } catch (const std::exception& e) {
            co_return fail(Outcome::refused, std::string("cannot build the request: ") + e.what());
        }

        upstream::PostOptions options;
        options.deadline = std::min(deadline, now + timeout_);
        // Signing the same transaction twice consumes nothing: both copies carry one nonce.
        options.idempotent = true;
        const upstream::HttpResult res = co_await client_->post(std::move(body), options);
        co_return check(res, tx, from);
    }

private:
    Signed check(const upstream::HttpResult& res, const eth::UnsignedTx& tx,
                 const eth::Address& from) const {
        if (!res.ok()) {
            if (res.error == upstream::TransportError::timeout)
                return fail(Outcome::unavailable, "signer " + id_ + " did not answer in time");
            return fail(Outcome::unavailable, "signer " + id_ + " unreachable: " +
                                                  std::string(upstream::to_string(res.error)) +
                                                  (res.detail.empty() ? "" : ": " + res.detail));
        }
        // Down, overloaded, or not letting us in yet (credentials being rotated, a key's path
        // not mounted): nothing was signed, and custody that is not there is waited for.
        if (res.status >= 500 || res.status == 408 || res.status == 429 || res.status == 401 ||
            res.status == 403 || res.status == 404)
            return fail(Outcome::unavailable,
                        "signer " + id_ + " answered HTTP " + std::to_string(res.status));

        json::error_code ec;
        const json::value answer = json::parse(res.body, ec);
        if (ec || !answer.is_object())
            return fail(Outcome::malformed, "signer " + id_ + " answered HTTP " +
                                                std::to_string(res.status) +
                                                " with something that is not JSON-RPC");
        const json::object& object = answer.get_object();
        if (const json::value* error = object.if_contains("error");
            error != nullptr && !error->is_null()) {
            std::string message = "no message";
            if (error->is_object()) {
                const json::value* m = error->get_object().if_contains("message");
                if (m != nullptr && m->is_string()) message = clip(m->get_string());
            }
            if (says_approval_pending(message))
                return fail(Outcome::pending_approval,
                            "signer " + id_ + " holds it for approval: " + message);
            if (says_not_ready(message))
                return fail(Outcome::unavailable, "signer " + id_ + " is not ready: " + message);
            return fail(Outcome::refused, "signer " + id_ + " refused: " + message);
        }
        if (res.status != 200)
            return fail(Outcome::malformed,
                        "signer " + id_ + " answered HTTP " + std::to_string(res.status));

        // Web3Signer answers the raw transaction as a string; geth's shape is {raw, tx}.
        const json::value* result = object.if_contains("result");
        const json::string* raw_hex = nullptr;
        if (result != nullptr && result->is_string()) {
            raw_hex = &result->get_string();
        } else if (result != nullptr && result->is_object()) {
            const json::value* raw = result->get_object().if_contains("raw");
            if (raw != nullptr && raw->is_string()) raw_hex = &raw->get_string();
        }
        if (raw_hex == nullptr)
            return fail(Outcome::malformed,
                        "signer " + id_ + " answered no signed transaction in its result");
        std::optional<eth::Bytes> raw = eth::from_hex(*raw_hex);
        if (!raw)
            return fail(Outcome::malformed,
                        "signer " + id_ + " answered a signed transaction that is not hex");
        const auto decoded = eth::parse_transaction(*raw);
        if (!decoded)
            return fail(Outcome::malformed,
                        "signer " + id_ + " answered an unusable transaction: " + decoded.error());
        if (std::string why = mismatch(tx, from, *decoded); !why.empty()) {
            spdlog::warn("signer {} answered a transaction other than the one asked for: {}", id_,
                         why);
            return fail(Outcome::malformed, "signer " + id_ +
                                                " signed a transaction other than the one " +
                                                "asked for: " + why);
        }
        Signed out;
        out.outcome = Outcome::signed_ok;
        out.raw = std::move(*raw);
        return out;
    }

    std::string id_;
    std::unique_ptr<upstream::HttpClient> client_;
    std::vector<eth::Address> addresses_;
    std::chrono::milliseconds timeout_;
    std::atomic<std::uint64_t> next_id_{1};
};

}  // namespace

std::unique_ptr<Signer> make_remote_signer(std::string id, std::string url,
                                           std::vector<eth::Address> addresses,
                                           std::chrono::milliseconds timeout) {
    // Checked here so that the message names a signer, not an upstream, and never the URL.
    auto parsed = boost::urls::parse_absolute_uri(url);
    if (!parsed || (parsed->scheme() != "http" && parsed->scheme() != "https") ||
        parsed->host().empty())
        throw std::runtime_error("signer " + id + ": the url is not an http(s) URL");
    if (addresses.empty()) throw std::runtime_error("signer " + id + ": no addresses");
    if (timeout.count() <= 0) throw std::runtime_error("signer " + id + ": timeout must be > 0");
    config::UpstreamConfig cfg;
    cfg.id = id;
    cfg.url = std::move(url);
    cfg.timeout = timeout;
    cfg.max_idle_connections = 8;
    cfg.max_response_bytes = 1024 * 1024;  // a signed transaction is at most ~128 KiB of hex
    std::unique_ptr<upstream::HttpClient> client;
    try {
        client = upstream::make_http_client(cfg);
    } catch (const std::exception& e) {
        throw std::runtime_error("signer " + id + ": " + e.what());
    }
    return std::make_unique<RemoteSigner>(std::move(id), std::move(client), std::move(addresses),
                                          timeout);
}

}  // namespace gateway::custody
