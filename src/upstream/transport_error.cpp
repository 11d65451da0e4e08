// The labels of transport failures, apart from the client that produces them: classify()
// (errors.cpp) names failures with them, and the fuzz build compiles it without the HTTP client.
#include "gateway/upstream/http_client.hpp"

namespace gateway::upstream {

std::string_view to_string(TransportError error) {
    switch (error) {
        case TransportError::none: return "none";
        case TransportError::connect_failed: return "connect_failed";
        case TransportError::tls_failed: return "tls_failed";
        case TransportError::timeout: return "timeout";
        case TransportError::send_failed: return "send_failed";
        case TransportError::receive_failed: return "receive_failed";
        case TransportError::response_too_large: return "response_too_large";
        case TransportError::bad_http: return "bad_http";
        case TransportError::cancelled: return "cancelled";
        case TransportError::over_budget: return "over_budget";
    }
    return "unknown";
}

}  // namespace gateway::upstream
