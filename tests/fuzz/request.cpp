// Fuzz target: a client's HTTP body through parse_request. Checked against Boost.JSON's own
// parser (the request parser's handler must accept and refuse the same texts, and read each
// entry's id as the document has it), then every call is sent on as the upstream request and
// answered, and those texts must parse again to the same call.

#include "check.hpp"
#include "json_compare.hpp"

#include "gateway/jsonrpc/jsonrpc.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace {

namespace json = boost::json;
using namespace gateway::jsonrpc;
using gateway::fuzz::check;
using gateway::fuzz::same_json;

// Small, so that the fuzzer reaches the limit without huge inputs.
constexpr ParseLimits kLimits{.max_batch_size = 16};
constexpr std::uint64_t kUpstreamId = 42;

json::value parse_valid(std::string_view text, std::string_view what) {
    json::error_code ec;
    json::parse_options options;
    options.max_depth = 256;
    json::value v = json::parse(json::string_view(text.data(), text.size()), ec, {}, options);
    check(!ec, what);
    return v;
}

// The "id" of a response text the gateway wrote.
json::value id_of_response(std::string_view response) {
    const json::value v = parse_valid(response, "a response is valid JSON");
    check(v.is_object() && v.as_object().contains("id"), "a response has an id");
    return v.as_object().at("id");
}

void check_call(const Call& call, const json::object& entry) {
    check(!call.method.empty(), "a call has a method");
    const json::value* method = entry.if_contains("method");
    check(method && method->is_string() && method->get_string() == call.method,
          "the method is the entry's");
    const json::value* params = entry.if_contains("params");
    check(params ? same_json(call.params, *params) : call.params.is_null(),
          "params are the entry's");
    const json::value* id = entry.if_contains("id");
    check(call.notification == !id, "a notification is an entry without id");
    if (call.notification) {
        check(call.id == kNullId, "a notification's id is null");
    } else {
        check(same_json(parse_valid(call.id, "the id text is JSON"), *id), "the id is the entry's");
    }

    // Sent on under the gateway's id: the node must read the same method and params.
    const std::string up = upstream_request(kUpstreamId, call.method, call.params);
    const auto again = parse_request(up, kLimits);
    check(again && !again->batch && again->entries.size() == 1 &&
              std::holds_alternative<Call>(again->entries[0]),
          "the upstream request is one valid call");
    const Call& sent = std::get<Call>(again->entries[0]);
    check(sent.id == std::to_string(kUpstreamId), "the upstream request has the gateway's id");
    check(sent.method == call.method, "the upstream request has the method");
    check(same_json(sent.params, call.params.is_null() ? json::value(json::array()) : call.params),
          "the upstream request has the params");

    // Answered with the client's id, exactly as sent.
    const std::string params_text = json::serialize(call.params);
    const std::string answer = result_response(call.id, params_text);
    check(answer.size() == result_response_size(call.id, params_text), "result_response_size");
    check(same_json(id_of_response(answer), parse_valid(call.id, "the id text is JSON")),
          "a result answers with the call's id");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view body(reinterpret_cast<const char*>(data), size);
    const auto request = parse_request(body, kLimits);

    json::parse_options options;
    options.max_depth = 64;  // as parse_request
    json::error_code ec;
    const json::value doc =
        json::parse(json::string_view(body.data(), body.size()), ec, {}, options);

    if (!request) {
        const Error& e = request.error();
        check(!e.message.empty(), "a refusal says why");
        check(id_of_response(error_response(kNullId, e)).is_null(),
              "a refusal is answered with id null");
        if (e.code == static_cast<int>(ErrorCode::limit_exceeded)) {
            check(ec || (doc.is_array() && doc.as_array().size() > kLimits.max_batch_size),
                  "only a batch over the limit is refused for its size");
        } else if (e.code == static_cast<int>(ErrorCode::parse_error)) {
            check(ec || gateway::fuzz::has_number_out_of_range(body, options.max_depth),
                  "only text that is not JSON, or holds a number out of range, is a parse error");
        } else {
            check(e.code == static_cast<int>(ErrorCode::invalid_request), "refusal code");
            check(!ec && (!(doc.is_object() || doc.is_array()) ||
                          (doc.is_array() && doc.as_array().empty())),
                  "only a body that is no object nor a non-empty array is an invalid request");
        }
        return 0;
    }

    check(!ec && !gateway::fuzz::has_number_out_of_range(body, options.max_depth),
          "what parse_request takes is JSON it can write");
    std::vector<const json::value*> entries;
    if (doc.is_array()) {
        for (const json::value& v : doc.as_array()) entries.push_back(&v);
    } else {
        entries.push_back(&doc);
    }
    check(request->batch == doc.is_array(), "a batch is an array");
    check(request->entries.size() == entries.size(), "one entry per element");
    check(entries.size() <= kLimits.max_batch_size, "a batch within the limit");

    std::vector<std::string> answers;
    for (std::size_t i = 0; i < entries.size(); ++i) {
        const json::value& entry = *entries[i];
        if (const Call* call = std::get_if<Call>(&request->entries[i])) {
            check(entry.is_object(), "a call is an object");
            check_call(*call, entry.as_object());
            answers.push_back(result_response(call->id, "null"));
            continue;
        }
        const InvalidCall& invalid = std::get<InvalidCall>(request->entries[i]);
        check(invalid.error.code == static_cast<int>(ErrorCode::invalid_request),
              "an invalid entry is an invalid request");
        const json::value answered_id = parse_valid(invalid.id, "the id text is JSON");
        if (entry.is_object()) {
            const json::value* id = entry.as_object().if_contains("id");
            check(answered_id.is_null() || (id && same_json(answered_id, *id)),
                  "an invalid entry is answered with its own id or null");
        } else {
            check(answered_id.is_null(), "an entry that is no object is answered with id null");
        }
        answers.push_back(error_response(invalid.id, invalid.error));
        check(same_json(id_of_response(answers.back()), answered_id),
              "an error keeps the entry's id");
    }
    const json::value batch = parse_valid(batch_response(answers), "a batch answer is JSON");
    check(batch.is_array() && batch.as_array().size() == answers.size(),
          "a batch answer has every answer");
    return 0;
}
