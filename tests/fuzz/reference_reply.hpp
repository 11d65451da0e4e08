#pragma once
// What parse_reply must make of a node's answer, worked out the slow way: the whole text parsed by
// Boost.JSON into a document, then read as JSON-RPC 2.0 says. parse_reply reads the raw text
// instead (it passes results on byte for byte); the fuzz targets check that both agree.

#include "check.hpp"
#include "json_compare.hpp"

#include "gateway/jsonrpc/jsonrpc.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>

#include <cstdint>
#include <optional>
#include <string_view>

namespace gateway::fuzz {

namespace json = boost::json;

// Deeper answers are left unchecked: the document's own destructor recurses.
inline constexpr std::size_t kReferenceDepth = 1000;

/// The document of `text`, or nullopt when it is not JSON; `too_deep` when it may be JSON nested
/// deeper than the reference reads.
inline std::optional<json::value> reference_parse(std::string_view text, bool& too_deep) {
    json::parse_options options;
    options.max_depth = kReferenceDepth;
    json::error_code ec;
    json::value v = json::parse(json::string_view(text.data(), text.size()), ec, {}, options);
    too_deep = ec == json::error::too_deep;
    if (ec) return std::nullopt;
    return v;
}

inline std::size_t depth_of(const json::value& v) {
    std::size_t deepest = 0;
    if (const json::array* a = v.if_array()) {
        for (const json::value& e : *a) deepest = std::max(deepest, depth_of(e));
        return deepest + 1;
    }
    if (const json::object* o = v.if_object()) {
        for (const auto& member : *o) deepest = std::max(deepest, depth_of(member.value()));
        return deepest + 1;
    }
    return 0;
}

/// A non-negative integer id as a node writes the gateway's ids.
inline std::optional<std::uint64_t> integer_id(const json::value& id) {
    if (id.is_uint64()) return id.get_uint64();
    if (id.is_int64() && id.get_int64() >= 0) return static_cast<std::uint64_t>(id.get_int64());
    return std::nullopt;
}

/// Checks parse_reply(text, expected_id) against the document of `text`.
inline void check_reply(std::string_view text, std::uint64_t expected_id) {
    const auto reply = jsonrpc::parse_reply(text, expected_id);
    if (!reply) check(!reply.error().empty(), "a refused answer says why");

    bool too_deep = false;
    const std::optional<json::value> doc = reference_parse(text, too_deep);
    if (too_deep) return;
    if (!doc || !doc->is_object()) {
        check(!reply, "an answer that is no JSON object is refused");
        return;
    }
    // Valid JSON: what the pool reads a batch's elements with, without validating again, says
    // the same.
    const auto valid = jsonrpc::parse_valid_reply(text, expected_id);
    check(
        static_cast<bool>(valid) == static_cast<bool>(reply) &&
            (!reply || (reply->result == valid->result && reply->error.code == valid->error.code &&
                        reply->error.message == valid->error.message)),
        "parse_valid_reply reads valid JSON as parse_reply does");
    const json::object& o = doc->as_object();
    const json::value* id = o.if_contains("id");
    if (!id || integer_id(*id) != expected_id) {
        check(!reply, "an answer with another id is refused");
        return;
    }
    const json::value* result = o.if_contains("result");
    const json::value* error = o.if_contains("error");
    if (result && error) {
        check(!reply, "an answer with result and error is refused");
        return;
    }
    if (result) {
        check(reply && !reply->is_error(), "an answer with a result is a result");
        bool deep = false;
        const auto passed_on = reference_parse(*reply->result, deep);
        check(passed_on && same_json(*passed_on, *result),
              "the result is passed on as the node sent it");
        return;
    }
    if (!error) {
        check(!reply, "an answer with neither result nor error is refused");
        return;
    }
    if (depth_of(*error) >= 256) return;  // parse_reply reads errors up to 256 levels
    const json::object* e = error->if_object();
    const json::value* code = e ? e->if_contains("code") : nullptr;
    if (!code || !(code->is_int64() || code->is_uint64())) {
        check(!reply, "an error without an integer code is refused");
        return;
    }
    const json::value* data = e->if_contains("data");
    if (data && !all_finite(*data)) {
        check(!reply, "an error whose data JSON cannot hold is refused");
        return;
    }
    check(reply && reply->is_error(), "an error answer is an error");
    check(reply->error.code == (code->is_int64() ? static_cast<int>(code->get_int64())
                                                 : static_cast<int>(code->get_uint64())),
          "the error's code is the node's");
    const json::value* message = e->if_contains("message");
    check(reply->error.message ==
              (message && message->is_string() ? std::string_view(message->get_string()) : ""),
          "the error's message is the node's");
    check(data ? reply->error.data && same_json(*reply->error.data, *data) : !reply->error.data,
          "the error's data is the node's");
}

}  // namespace gateway::fuzz
