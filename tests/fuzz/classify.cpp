// Fuzz target: what an upstream answered, through classify() (errors.cpp), which decides whether
// the answer goes back to the client, another node is tried, or the node is throttled. The input
// is one line "<HTTP status> <call id> [<transport error> [<Retry-After seconds>]]" and then the
// body, e.g. "200 1\n{...}"; without that line the whole input is a body of a 200 answer to id 1.
// Checked: parse_reply against a document of the body (reference_reply.hpp), the kinds and labels
// against the rules of errors.hpp, the rule tables' case-insensitivity, and that what a client or
// a log may see (the detail, an error passed on) is valid UTF-8 and valid JSON.

#include "check.hpp"
#include "reference_reply.hpp"

#include "gateway/jsonrpc/jsonrpc.hpp"
#include "gateway/upstream/errors.hpp"
#include "gateway/upstream/http_client.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace {

using gateway::fuzz::check;
using namespace gateway::upstream;
namespace jsonrpc = gateway::jsonrpc;

constexpr int kTransportErrors = static_cast<int>(TransportError::over_budget) + 1;

// Reads the unsigned numbers of the first line, in order; a missing or unreadable one keeps its
// default.
template <class... T>
void read_numbers(std::string_view line, T&... out) {
    const auto next = [&](auto& value) {
        while (!line.empty() && line.front() == ' ') line.remove_prefix(1);
        auto [end, ec] = std::from_chars(line.data(), line.data() + line.size(), value);
        if (ec == std::errc()) line.remove_prefix(static_cast<std::size_t>(end - line.data()));
    };
    (next(out), ...);
}

bool valid_utf8(std::string_view s) {
    for (std::size_t i = 0; i < s.size();) {
        const auto c = static_cast<unsigned char>(s[i]);
        if (c < 0x80) {
            ++i;
            continue;
        }
        std::size_t more = 0;  // continuation bytes
        std::uint32_t cp = 0;
        if ((c & 0xe0) == 0xc0) {
            more = 1;
            cp = c & 0x1f;
        } else if ((c & 0xf0) == 0xe0) {
            more = 2;
            cp = c & 0x0f;
        } else if ((c & 0xf8) == 0xf0) {
            more = 3;
            cp = c & 0x07;
        } else {
            return false;
        }
        if (s.size() - i <= more) return false;  // cut off
        for (std::size_t k = 1; k <= more; ++k) {
            const auto cc = static_cast<unsigned char>(s[i + k]);
            if ((cc & 0xc0) != 0x80) return false;
            cp = cp << 6 | (cc & 0x3f);
        }
        // Overlong forms, surrogates and code points past U+10FFFF.
        if ((more == 1 && cp < 0x80) || (more == 2 && cp < 0x800) || (more == 3 && cp < 0x10000) ||
            (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
            return false;
        i += more + 1;
    }
    return true;
}

bool valid_label(std::string_view label) {
    return std::all_of(label.begin(), label.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
    });
}

std::string upper(std::string_view s) {
    std::string out(s);
    for (char& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    return out;
}

// The rule tables match case-insensitively, on any bytes.
void check_rules(int code, std::string_view message) {
    const std::string loud = upper(message);
    check(classify_rpc_error(code, message) == classify_rpc_error(code, loud),
          "the error rules ignore case");
    check(classify_write_refusal(code, message) == classify_write_refusal(code, loud),
          "the write rules ignore case");
    check(!to_string(classify_rpc_error(code, message)).empty(), "an error class has a name");
    check(!to_string(classify_write_refusal(code, message)).empty(), "a verdict has a name");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view input(reinterpret_cast<const char*>(data), size);
    HttpResult r;
    r.status = 200;
    std::uint64_t id = 1;
    std::string_view body = input;
    if (const auto newline = input.find('\n'); newline != std::string_view::npos) {
        unsigned transport = 0;
        unsigned retry_after = 0;
        read_numbers(input.substr(0, newline), r.status, id, transport, retry_after);
        r.error = static_cast<TransportError>(transport % kTransportErrors);
        if (retry_after) r.retry_after = std::chrono::seconds(retry_after);
        body = input.substr(newline + 1);
    }
    r.body = std::string(body);
    if (!r.ok()) {
        r.detail = "connection reset by peer";
        r.maybe_delivered = r.error != TransportError::connect_failed;
    }

    const Attempt a = classify(r, id);
    check(valid_label(a.label), "a label is a metric label");
    check(valid_utf8(a.detail), "the detail is UTF-8 (it reaches logs and clients)");

    if (!r.ok()) {
        check(a.kind == Attempt::Kind::transport, "no HTTP answer is a transport failure");
        check(a.label == to_string(r.error), "a transport failure is labelled by its error");
        check(a.maybe_delivered == r.maybe_delivered, "delivery as the client said");
        check(!a.reply, "no reply without an answer");
        return 0;
    }

    gateway::fuzz::check_reply(body, id);
    const auto reply = jsonrpc::parse_reply(body, id);
    switch (a.kind) {
        case Attempt::Kind::transport:
            check(false, "an HTTP answer is no transport failure");
            break;
        case Attempt::Kind::http_error:
            check(!a.reply, "an HTTP error passes no reply on");
            check(r.status != 200 || !reply, "a 200 answer is an HTTP error only when malformed");
            check(a.throttled == (r.status == 429), "a 429 throttles");
            {
                // A 4xx other than 429/401/403/404 is about the request: the node works.
                const bool about_request = r.status >= 400 && r.status < 500 && r.status != 429 &&
                                           r.status != 401 && r.status != 403 && r.status != 404;
                check(a.node_fault == (!a.throttled && !about_request),
                      "an HTTP error is the node's fault unless a 429 or about the request");
                check(!about_request || !a.maybe_delivered, "a request refused was not acted on");
            }
            break;
        case Attempt::Kind::rpc_error:
            check(a.reply && a.reply->is_error(), "an RPC error has the node's error");
            check(a.error_class != ErrorClass::deterministic &&
                      a.error_class ==
                          classify_rpc_error(a.reply->error.code, a.reply->error.message),
                  "an RPC error is of a class that tries another node");
            check(a.throttled == (a.error_class == ErrorClass::rate_limited),
                  "a rate limit throttles");
            check(!a.node_fault, "a node that answered in JSON-RPC works, whatever it said");
            break;
        case Attempt::Kind::answered:
            check(a.reply.has_value() && reply.has_value(), "an answer has the node's reply");
            check(a.label.empty(), "an answer has no failure label");
            if (a.reply->is_error()) {
                check(classify_rpc_error(a.reply->error.code, a.reply->error.message) ==
                          ErrorClass::deterministic,
                      "an error answered to the client is deterministic");
            }
            break;
    }

    if (a.reply && a.reply->is_error()) {
        const jsonrpc::Error& e = a.reply->error;
        check(valid_utf8(e.message), "a node's message is UTF-8");
        check_rules(e.code, e.message);
        // The gateway passes deterministic errors on to the client as they came.
        bool deep = false;
        const auto answer =
            gateway::fuzz::reference_parse(jsonrpc::error_response(jsonrpc::kNullId, e), deep);
        check(answer.has_value() || deep, "an error passed on is valid JSON");
    }
    check_rules(static_cast<int>(id), body);
    return 0;
}
