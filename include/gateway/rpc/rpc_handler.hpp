#pragma once
// The JSON-RPC endpoint: routes a request to its chain, decodes it, runs every call (a batch's
// calls concurrently, answered in the client's order) and encodes the answer.

#include "gateway/config/config.hpp"
#include "gateway/http/listener.hpp"
#include "gateway/jsonrpc/jsonrpc.hpp"

#include <boost/asio/awaitable.hpp>

#include <string>
#include <string_view>
#include <vector>

namespace gateway::metrics {
class Metrics;
}
namespace gateway::upstream {
class ChainPool;
}

namespace gateway::rpc {

/// Response header naming the upstream(s) that answered.
inline constexpr std::string_view kUpstreamHeader = "X-Gateway-Upstream";

class RpcHandler {
public:
    /// `chains[0]` serves `POST /`; every chain serves `POST /<name>`. The pools and metrics must
    /// outlive the handler.
    RpcHandler(const config::ServerConfig& server, std::vector<upstream::ChainPool*> chains,
               metrics::Metrics* metrics);

    /// Answers one HTTP request. Never throws.
    boost::asio::awaitable<http::Response> operator()(http::Request& request);

    /// The body of a refusal by the listener itself (413, 431, ...): a JSON-RPC error, id null.
    static std::string refusal_body(unsigned status, std::string_view message);

    /// What running one entry produced.
    struct Outcome {
        std::string response;      ///< the JSON-RPC response object (empty for a notification)
        std::string upstream;      ///< the upstream that answered, if one did
        bool unavailable = false;  ///< no upstream could answer
    };

private:
    struct Batch;
    boost::asio::awaitable<Outcome> execute(upstream::ChainPool& chain,
                                            const jsonrpc::Entry& entry);
    static boost::asio::awaitable<void> batch_worker(RpcHandler* self, Batch* batch);

    config::ServerConfig server_;
    std::vector<upstream::ChainPool*> chains_;
    metrics::Metrics* metrics_;
};

}  // namespace gateway::rpc
