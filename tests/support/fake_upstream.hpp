#pragma once
// A scriptable JSON-RPC node for tests: exact answers, HTTP errors, slow answers, garbage.
// Runs the gateway's own HTTP listener on its own thread.

#include <boost/json/value.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace gateway::test {

/// What the fake node does with one call.
struct FakeReply {
    unsigned status = 200;
    std::optional<std::string> result;  ///< JSON text of the result, answered with the request's id
    std::optional<std::pair<int, std::string>>
        error;                            ///< a JSON-RPC error, answered with the request's id
    std::optional<std::string> raw_body;  ///< exactly this body instead
    std::chrono::milliseconds delay{0};
    std::vector<std::pair<std::string, std::string>> headers;

    static FakeReply ok(std::string result_json) {
        return FakeReply{.result = std::move(result_json)};
    }
    static FakeReply rpc_error(int code, std::string message) {
        return FakeReply{.error = std::make_pair(code, std::move(message))};
    }
    static FakeReply http(unsigned status, std::string body) {
        return FakeReply{.status = status, .raw_body = std::move(body)};
    }
};

class FakeUpstream {
public:
    /// Decides the reply to a call; nullopt for the default (eth_chainId answers the chain id,
    /// eth_blockNumber "0x10", eth_syncing false, eth_getBlockByNumber a block up to the head the
    /// script or the default gives, null past it, anything else "method not found").
    using Script = std::function<std::optional<FakeReply>(const std::string& method,
                                                          const boost::json::value& request)>;

    explicit FakeUpstream(std::uint64_t chain_id = 31337, Script script = {});
    ~FakeUpstream();

    std::uint16_t port() const;
    std::string url() const { return "http://127.0.0.1:" + std::to_string(port()); }

    void set_script(Script script);
    /// Calls received, all methods together or of one method.
    std::size_t calls() const;
    std::size_t calls(const std::string& method) const;
    /// Calls other than the gateway's health probes (eth_chainId, eth_syncing, eth_blockNumber).
    std::size_t forwarded_calls() const;
    /// The requests received for a method, in order.
    std::vector<boost::json::value> received(const std::string& method) const;
    /// The most calls (probes aside) it was answering at the same time.
    std::size_t max_in_flight() const;
    /// Whether a batch (a JSON array) is answered element by element (each call counted and
    /// scripted as if alone). Off by default: a batch gets HTTP 400. Either way it is counted
    /// under the method "(batch)".
    void set_batches(bool on);
    /// Every request's body as it came, with the value of its header `name` (set with
    /// watch_header; "" when it had none), in order.
    void watch_header(std::string name);
    std::vector<std::pair<std::string, std::string>> raw_requests() const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

/// A script answering one method with a fixed reply and leaving the rest to the default.
inline FakeUpstream::Script on(const std::string& method, FakeReply reply) {
    return [=](const std::string& m, const boost::json::value&) -> std::optional<FakeReply> {
        if (m == method) return reply;
        return std::nullopt;
    };
}

}  // namespace gateway::test
