#include "gateway/jsonrpc/jsonrpc.hpp"
#include "gateway/jsonrpc/json_text.hpp"

#include "gateway/util/text.hpp"

#include <algorithm>
#include <boost/json/basic_parser_impl.hpp>
#include <boost/json/monotonic_resource.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/serializer.hpp>
#include <boost/json/value_stack.hpp>
#include <charconv>
#include <cmath>
#include <cstring>

#include <fmt/format.h>

#include <limits>
#include <memory>
#include <optional>

namespace gateway::jsonrpc {
namespace json = boost::json;

namespace {

// Boost.JSON's own parser, plus one thing it cannot do: keep the exact text of a numeric "id" of
// each request object. A number's value alone is not enough (1.50 would come back as 1.5E0, and a
// 30-digit id would lose digits), and a client matches answers to calls by id.
class RequestHandler {
public:
    static constexpr std::size_t max_object_size = json::object::max_size();
    static constexpr std::size_t max_array_size = json::array::max_size();
    static constexpr std::size_t max_key_size = json::string::max_size();
    static constexpr std::size_t max_string_size = json::string::max_size();

    json::value_stack st;
    /// Elements of a top-level array beyond this stop the parser (batch_too_large is set): a
    /// batch over the limit costs no more than the limit to read.
    std::size_t max_batch = std::numeric_limits<std::size_t>::max();
    bool batch_too_large = false;
    /// A number Boost.JSON reads as infinity or NaN (1e999, 0e999999) stopped the parser: no
    /// JSON text can hold it, so a call with it could not be sent on (it would be written as
    /// "Infinity" or "NaN").
    bool number_out_of_range = false;

    /// Exact id texts of numeric ids, by request index (0 for a single request object).
    std::vector<std::pair<std::size_t, std::string>> number_ids;

    /// Ready for the next body (a parser kept from request to request).
    void restart(std::size_t batch_limit, json::storage_ptr tree) {
        st.reset(std::move(tree));
        max_batch = batch_limit;
        batch_too_large = false;
        number_out_of_range = false;
        number_ids.clear();
        frames_.clear();
        batch_count_ = 0;
        key_.clear();
        number_.clear();
    }

    bool on_document_begin(json::error_code&) { return true; }
    bool on_document_end(json::error_code&) { return true; }

    bool on_object_begin(json::error_code& ec) {
        if (!begin_value(ec)) return false;
        frames_.push_back({true, false});
        return true;
    }
    bool on_object_end(std::size_t n, json::error_code&) {
        frames_.pop_back();
        st.push_object(n);
        return true;
    }
    bool on_array_begin(json::error_code& ec) {
        if (!begin_value(ec)) return false;
        frames_.push_back({false, false});
        return true;
    }
    bool on_array_end(std::size_t n, json::error_code&) {
        frames_.pop_back();
        st.push_array(n);
        return true;
    }
    bool on_key_part(json::string_view s, std::size_t, json::error_code&) {
        key_.append(s.data(), s.size());
        st.push_chars(s);
        return true;
    }
    bool on_key(json::string_view s, std::size_t, json::error_code&) {
        key_.append(s.data(), s.size());
        frames_.back().key_is_id = key_ == "id";
        key_.clear();
        st.push_key(s);
        return true;
    }
    bool on_string_part(json::string_view s, std::size_t, json::error_code&) {
        st.push_chars(s);
        return true;
    }
    bool on_string(json::string_view s, std::size_t, json::error_code& ec) {
        if (!begin_value(ec)) return false;
        st.push_string(s);
        return true;
    }
    bool on_number_part(json::string_view s, json::error_code&) {
        number_.append(s.data(), s.size());
        return true;
    }
    bool on_int64(std::int64_t i, json::string_view s, json::error_code& ec) {
        if (!end_number(s, ec)) return false;
        st.push_int64(i);
        return true;
    }
    bool on_uint64(std::uint64_t u, json::string_view s, json::error_code& ec) {
        if (!end_number(s, ec)) return false;
        st.push_uint64(u);
        return true;
    }
    bool on_double(double d, json::string_view s, json::error_code& ec) {
        if (!std::isfinite(d)) {
            number_out_of_range = true;
            ec = json::error::exception;  // stops the parser; parse_request says why
            return false;
        }
        if (!end_number(s, ec)) return false;
        st.push_double(d);
        return true;
    }
    bool on_bool(bool b, json::error_code& ec) {
        if (!begin_value(ec)) return false;
        st.push_bool(b);
        return true;
    }
    bool on_null(json::error_code& ec) {
        if (!begin_value(ec)) return false;
        st.push_null();
        return true;
    }
    bool on_comment_part(json::string_view, json::error_code&) { return true; }
    bool on_comment(json::string_view, json::error_code&) { return true; }

private:
    struct Frame {
        bool is_object;
        bool key_is_id;  // the member being read is "id"
    };

    bool begin_value(json::error_code& ec) {
        if (frames_.size() == 1 && !frames_[0].is_object && ++batch_count_ > max_batch) {
            batch_too_large = true;
            ec = json::error::exception;  // stops the parser; parse_request says why
            return false;
        }
        return true;
    }

    // True while reading a direct member of a request object: the top-level object, or an object
    // that is an element of a top-level array.
    bool in_request_object() const {
        return (frames_.size() == 1 && frames_[0].is_object) ||
               (frames_.size() == 2 && !frames_[0].is_object && frames_[1].is_object);
    }

    bool end_number(json::string_view last, json::error_code& ec) {
        if (!begin_value(ec)) return false;
        number_.append(last.data(), last.size());
        if (in_request_object() && frames_.back().key_is_id) {
            std::size_t index = frames_.size() == 1 ? 0 : batch_count_ - 1;
            if (!number_ids.empty() && number_ids.back().first == index)
                number_ids.back().second = number_;  // duplicate "id" keys: the last one counts
            else
                number_ids.emplace_back(index, number_);
        }
        number_.clear();
        return true;
    }

    std::vector<Frame> frames_;
    std::size_t batch_count_ = 0;
    std::string key_;
    std::string number_;
};

// Reads one entry of a request (the body itself, or one element of a batch). `number_id` is the
// exact text of the entry's id when that id is a number.
// `v` gives up its params to the call.
Entry read_entry(json::value& v, const std::string* number_id) {
    json::object* obj = v.if_object();
    if (!obj)
        return InvalidCall{
            std::string(kNullId),
            {ErrorCode::invalid_request, "invalid request: a call must be a JSON object"}};

    Call call;
    bool id_ok = true;
    if (const json::value* id = obj->if_contains("id")) {
        if (id->is_string() || id->is_null()) {
            call.id = json::serialize(*id);
        } else if (id->is_number()) {
            call.id = number_id ? *number_id : json::serialize(*id);
        } else {
            id_ok = false;
        }
    } else {
        call.notification = true;
    }
    auto invalid = [&](std::string message) -> Entry {
        return InvalidCall{call.notification ? std::string(kNullId) : call.id,
                           {ErrorCode::invalid_request, "invalid request: " + std::move(message)}};
    };
    if (!id_ok) {
        call.id = std::string(kNullId);
        return invalid("\"id\" must be a string, a number or null");
    }

    const json::value* version = obj->if_contains("jsonrpc");
    if (!version || !version->is_string() || version->get_string() != "2.0")
        return invalid("\"jsonrpc\" must be \"2.0\"");

    const json::value* method = obj->if_contains("method");
    if (!method || !method->is_string() || method->get_string().empty())
        return invalid("\"method\" must be a non-empty string");
    call.method = std::string(method->get_string());

    if (json::value* params = obj->if_contains("params")) {
        if (!params->is_array() && !params->is_object() && !params->is_null())
            return invalid("\"params\" must be an array or an object");
        // Into the default storage: the tree's may be the thread's, released after the parse.
        call.params = json::value(std::move(*params), json::storage_ptr());
    }
    return call;
}

}  // namespace

namespace {

json::parse_options request_options() {
    json::parse_options options;
    options.max_depth = 64;
    return options;
}

// Bodies up to this size are read by a parser each thread keeps, with the stacks it grew (a fresh
// one allocated its value stack anew for every request), into a tree in space the thread keeps
// too (a heap block for every object, key and long string before). A larger body gets a parser of
// its own and the heap, so that one huge request does not leave a thread holding its stacks.
constexpr std::size_t kKeptParserBodyBytes = 64 * 1024;

struct KeptParser {
    // Where a small body's tree is built, anew for each body (only the calls' params leave it,
    // copied). What does not fit comes from the heap until the next body. Made anew, not
    // released: Boost.JSON's release() keeps the grown size of its next block, which doubled
    // with every body that did not fit until an allocation failed.
    alignas(std::max_align_t) unsigned char space[16 * 1024];
    std::optional<json::monotonic_resource> tree;
    json::basic_parser<RequestHandler> parser{request_options()};

    json::storage_ptr fresh_tree() {
        tree.reset();
        tree.emplace(space, sizeof space);
        return json::storage_ptr(&*tree);
    }
};

boost::system::result<Request, Error> read_request(json::basic_parser<RequestHandler>& parser,
                                                   std::string_view body,
                                                   const ParseLimits& limits);

}  // namespace

boost::system::result<Request, Error> parse_request(std::string_view body,
                                                    const ParseLimits& limits) {
    if (body.size() > kKeptParserBodyBytes) {
        json::basic_parser<RequestHandler> own(request_options());
        own.handler().restart(limits.max_batch_size, json::storage_ptr());
        return read_request(own, body, limits);
    }
    // On the heap, made by a thread's first request: a thread_local object would be in every
    // thread's static TLS, the journal's and the logger's too.
    thread_local std::unique_ptr<KeptParser> kept_here;
    if (!kept_here) kept_here = std::make_unique<KeptParser>();
    KeptParser& kept = *kept_here;
    // What a body that stopped half-way left goes first, while its space is still there.
    kept.parser.handler().st.reset();
    json::storage_ptr tree = kept.fresh_tree();
    kept.parser.reset();
    kept.parser.handler().restart(limits.max_batch_size, std::move(tree));
    auto request = read_request(kept.parser, body, limits);
    // The tree is gone (read_request's); what it took from the heap goes now.
    kept.parser.handler().st.reset();
    kept.fresh_tree();
    return request;
}

namespace {

boost::system::result<Request, Error> read_request(json::basic_parser<RequestHandler>& parser,
                                                   std::string_view body,
                                                   const ParseLimits& limits) {
    json::error_code ec;
    std::size_t used = parser.write_some(false, body.data(), body.size(), ec);
    if (parser.handler().batch_too_large)
        return Error{ErrorCode::limit_exceeded,
                     fmt::format("batch too large: more than {} calls (server.max_batch_size)",
                                 limits.max_batch_size)};
    if (parser.handler().number_out_of_range)
        return Error{ErrorCode::parse_error,
                     fmt::format("parse error: the number before byte {} is out of range", used)};
    if (!ec && used < body.size()) ec = json::error::extra_data;
    if (ec)
        return Error{ErrorCode::parse_error,
                     fmt::format("parse error: {} at byte {}", ec.message(), used)};
    json::value root = parser.handler().st.release();
    const auto& number_ids = parser.handler().number_ids;

    Request request;
    if (json::array* batch = root.if_array()) {
        if (batch->empty())
            return Error{ErrorCode::invalid_request, "invalid request: empty batch"};
        request.batch = true;
        request.entries.reserve(batch->size());
        auto next_id = number_ids.begin();  // in entry order
        for (std::size_t i = 0; i < batch->size(); ++i) {
            const std::string* id = nullptr;
            if (next_id != number_ids.end() && next_id->first == i) id = &(next_id++)->second;
            request.entries.push_back(read_entry((*batch)[i], id));
        }
        return request;
    }
    if (!root.is_object())
        return Error{ErrorCode::invalid_request,
                     "invalid request: the body must be a JSON object or array"};
    request.entries.push_back(
        read_entry(root, number_ids.empty() ? nullptr : &number_ids.front().second));
    return request;
}

}  // namespace

namespace {
constexpr std::string_view kResultHead = R"({"jsonrpc":"2.0","id":)";
constexpr std::string_view kResultMiddle = R"(,"result":)";
}  // namespace

std::string result_response(std::string_view id, std::string_view result_json) {
    std::string out;
    out.reserve(result_response_size(id, result_json));
    out.append(kResultHead).append(id).append(kResultMiddle).append(result_json).append("}");
    return out;
}

std::size_t result_response_size(std::string_view id, std::string_view result_json) {
    return kResultHead.size() + id.size() + kResultMiddle.size() + result_json.size() + 1;
}

std::string error_response(std::string_view id, const Error& error) {
    json::object e;
    e["code"] = error.code;
    e["message"] = error.message;
    if (error.data) e["data"] = *error.data;
    std::string out(R"({"jsonrpc":"2.0","id":)");
    out.append(id).append(R"(,"error":)").append(json::serialize(e)).append("}");
    return out;
}

std::string batch_response(const std::vector<std::string>& responses) {
    std::size_t size = 2;
    for (const auto& r : responses) size += r.size() + 1;
    std::string out;
    out.reserve(size);
    out.push_back('[');
    for (std::size_t i = 0; i < responses.size(); ++i) {
        if (i) out.push_back(',');
        out.append(responses[i]);
    }
    out.push_back(']');
    return out;
}

namespace {

// One serializer per thread, kept from call to call with the stack it grew. Each use resets it
// and drains it before it returns, so no two uses overlap.
json::serializer& thread_serializer() {
    thread_local json::serializer sr;
    return sr;
}

// Appends what `sr` writes to `out`.
void append_serialized(std::string& out, json::serializer& sr) {
    char buffer[1024];
    while (!sr.done()) {
        const json::string_view written = sr.read(buffer, sizeof buffer);
        out.append(written.data(), written.size());
    }
}

}  // namespace

void append_json(std::string& out, const json::value& v) {
    json::serializer& sr = thread_serializer();
    sr.reset(&v);
    append_serialized(out, sr);
}

void append_json(std::string& out, std::string_view s) {
    json::serializer& sr = thread_serializer();
    sr.reset(json::string_view(s.data(), s.size()));
    append_serialized(out, sr);
}

std::string upstream_request(std::uint64_t id, std::string_view method, const json::value& params) {
    std::string out;
    out.reserve(64 + method.size() + 192);
    append_upstream_request(out, id, method, params);
    return out;
}

void append_upstream_request(std::string& out, std::uint64_t id, std::string_view method,
                             const json::value& params) {
    out.append(R"({"jsonrpc":"2.0","id":)");
    char digits[24];
    const auto [end, ec] = std::to_chars(digits, digits + sizeof digits, id);
    (void)ec;
    out.append(digits, static_cast<std::size_t>(end - digits));
    out.append(R"(,"method":)");
    append_json(out, method);
    out.append(R"(,"params":)");
    if (params.is_null())
        out.append("[]");
    else
        append_json(out, params);
    out.push_back('}');
}

namespace {

// Whether every number in `v` is finite. Boost.JSON reads 1e999 as infinity and 0e999999 as NaN,
// and would write them as "Infinity" and "NaN", which are not JSON.
bool all_finite(const json::value& v) {
    if (v.is_double()) return std::isfinite(v.get_double());
    if (const json::array* a = v.if_array())
        return std::all_of(a->begin(), a->end(),
                           [](const json::value& e) { return all_finite(e); });
    if (const json::object* o = v.if_object())
        return std::all_of(o->begin(), o->end(),
                           [](const json::key_value_pair& m) { return all_finite(m.value()); });
    return true;
}

boost::system::result<Reply, std::string> bad_reply(std::string why) {
    return boost::system::result<Reply, std::string>(boost::system::in_place_error, std::move(why));
}

// Checks that a text is JSON without building it: a node's answer can be deep (call traces) and
// large, and it is passed on as it came.
struct ValidatingHandler {
    static constexpr std::size_t max_object_size = std::size_t(-1);
    static constexpr std::size_t max_array_size = std::size_t(-1);
    static constexpr std::size_t max_key_size = std::size_t(-1);
    static constexpr std::size_t max_string_size = std::size_t(-1);
    bool on_document_begin(json::error_code&) { return true; }
    bool on_document_end(json::error_code&) { return true; }
    bool on_object_begin(json::error_code&) { return true; }
    bool on_object_end(std::size_t, json::error_code&) { return true; }
    bool on_array_begin(json::error_code&) { return true; }
    bool on_array_end(std::size_t, json::error_code&) { return true; }
    bool on_key_part(json::string_view, std::size_t, json::error_code&) { return true; }
    bool on_key(json::string_view, std::size_t, json::error_code&) { return true; }
    bool on_string_part(json::string_view, std::size_t, json::error_code&) { return true; }
    bool on_string(json::string_view, std::size_t, json::error_code&) { return true; }
    bool on_number_part(json::string_view, json::error_code&) { return true; }
    bool on_int64(std::int64_t, json::string_view, json::error_code&) { return true; }
    bool on_uint64(std::uint64_t, json::string_view, json::error_code&) { return true; }
    bool on_double(double, json::string_view, json::error_code&) { return true; }
    bool on_bool(bool, json::error_code&) { return true; }
    bool on_null(json::error_code&) { return true; }
    bool on_comment_part(json::string_view, json::error_code&) { return true; }
    bool on_comment(json::string_view, json::error_code&) { return true; }
};

json::error_code validate_json(std::string_view text) {
    json::parse_options options;
    options.max_depth =
        std::size_t(-1);  // the parser keeps its own stack: depth costs no recursion
    json::basic_parser<ValidatingHandler> parser(options);
    json::error_code ec;
    const std::size_t used = parser.write_some(false, text.data(), text.size(), ec);
    if (!ec && used < text.size()) ec = json::error::extra_data;
    return ec;
}

bool is_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

std::size_t skip_space(std::string_view s, std::size_t pos) {
    while (pos < s.size() && is_space(s[pos])) ++pos;
    return pos;
}

// `s[pos]` opens a string; the position after its closing quote. Jumps from quote to quote
// (memchr: a 10 KB hex answer is one string); a quote after an odd run of backslashes is escaped.
std::size_t skip_string(std::string_view s, std::size_t pos) {
    std::size_t from = pos + 1;
    while (from < s.size()) {
        const void* q = std::memchr(s.data() + from, '"', s.size() - from);
        if (!q) break;
        const std::size_t at = static_cast<std::size_t>(static_cast<const char*>(q) - s.data());
        std::size_t backslashes = 0;
        while (at - backslashes > from && s[at - backslashes - 1] == '\\') ++backslashes;
        if (backslashes % 2 == 0) return at + 1;
        from = at + 1;
    }
    return s.size();  // unterminated (not in valid JSON)
}

// The end of the value that starts at `pos`, in text already known to be valid JSON.
std::size_t skip_value(std::string_view s, std::size_t pos) {
    if (pos >= s.size()) return s.size();
    if (s[pos] == '"') return skip_string(s, pos);
    if (s[pos] != '{' && s[pos] != '[') {
        while (pos < s.size() && !is_space(s[pos]) && s[pos] != ',' && s[pos] != '}' &&
               s[pos] != ']')
            ++pos;
        return pos;
    }
    std::size_t depth = 0;
    while (pos < s.size()) {
        const char c = s[pos];
        if (c == '"') {
            pos = skip_string(s, pos);
            continue;
        }
        ++pos;
        if (c == '{' || c == '[') ++depth;
        if ((c == '}' || c == ']') && --depth == 0) break;
    }
    return pos;
}

// A member's name as JSON means it, from its text with the quotes: "\u0069d" is "id". Escapes in
// names are rare, so only a name that has one is decoded.
std::string member_name(std::string_view quoted) {
    const std::string_view inner = quoted.substr(1, quoted.size() - 2);
    if (inner.find('\\') == std::string_view::npos) return std::string(inner);
    json::error_code ec;
    const json::value v = json::parse(json::string_view(quoted.data(), quoted.size()), ec);
    return !ec && v.is_string() ? std::string(v.get_string()) : std::string(inner);
}

// Calls `each(name, value)` for the members of a JSON object, names decoded and values as raw
// texts, in their order (a repeated name is met as often as it is written), for text already
// known to be valid JSON. False when the text is not an object.
template <class Each>
bool for_each_member(std::string_view s, Each each) {
    std::size_t pos = skip_space(s, 0);
    if (pos >= s.size() || s[pos] != '{') return false;
    pos = skip_space(s, pos + 1);
    while (pos < s.size() && s[pos] == '"') {
        const std::size_t key_end = skip_string(s, pos);
        const std::string key = member_name(s.substr(pos, key_end - pos));
        pos = skip_space(s, skip_space(s, key_end) + 1);  // past the ':'
        if (pos >= s.size()) return false;  // cut short: not JSON (callers pass valid JSON)
        const std::size_t value_end = skip_value(s, pos);
        each(std::string_view(key), s.substr(pos, value_end - pos));
        pos = skip_space(s, value_end);
        if (pos < s.size() && s[pos] == ',') pos = skip_space(s, pos + 1);
    }
    return true;
}

// A JSON id text (valid JSON) as the integer the gateway gave a node: only a plain run of digits
// (or -0) can be one; a JSON number with a fraction or an exponent, or a string, is not an
// integer id, and a negative one never was ours.
std::optional<std::uint64_t> integer_id(std::string_view text) {
    if (text == "-0") return 0;  // an integer too, as JSON reads it
    if (text.empty() || text.size() > 20) return std::nullopt;
    std::uint64_t n = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
    if (ec != std::errc() || end != text.data() + text.size() || text[0] < '0' || text[0] > '9')
        return std::nullopt;
    return n;
}

}  // namespace

std::optional<std::vector<BatchElement>> split_batch_reply(std::string_view body) {
    if (validate_json(body)) return std::nullopt;
    std::size_t pos = skip_space(body, 0);
    if (pos >= body.size() || body[pos] != '[') return std::nullopt;
    std::vector<BatchElement> out;
    pos = skip_space(body, pos + 1);
    while (pos < body.size() && body[pos] != ']') {
        const std::size_t end = skip_value(body, pos);
        BatchElement e;
        e.text = body.substr(pos, end - pos);
        // The last "id" counts, as in a parsed document; one that is no integer leaves the
        // element without one.
        for_each_member(e.text, [&](std::string_view key, std::string_view value) {
            if (key == "id") e.id = integer_id(value);
        });
        out.push_back(e);
        pos = skip_space(body, end);
        if (pos < body.size() && body[pos] == ',') pos = skip_space(body, pos + 1);
    }
    return out;
}

boost::system::result<Reply, std::string> parse_reply(std::string_view body,
                                                      std::uint64_t expected_id) {
    if (json::error_code ec = validate_json(body))
        return bad_reply(fmt::format("not JSON ({})", ec.message()));
    return parse_valid_reply(body, expected_id);
}

boost::system::result<Reply, std::string> parse_valid_reply(std::string_view body,
                                                            std::uint64_t expected_id) {
    std::optional<std::string_view> id, result, error;
    const bool object = for_each_member(body, [&](std::string_view key, std::string_view value) {
        if (key == "id") id = value;
        if (key == "result") result = value;
        if (key == "error") error = value;
    });
    if (!object) return bad_reply("not a JSON-RPC response object");

    json::error_code ec;
    const bool id_matches = id && integer_id(*id) == expected_id;
    if (!id_matches)
        return bad_reply(fmt::format("response id {} does not match request id {}",
                                     id ? std::string(util::utf8_prefix(*id, 64)) : "(none)",
                                     expected_id));

    Reply reply;
    if (result) {
        if (error) return bad_reply("response has both result and error");
        reply.result = std::string(*result);  // exactly as the node wrote it
        return reply;
    }
    if (!error) return bad_reply("response has neither result nor error");
    json::parse_options options;
    options.max_depth = 256;
    const json::value e =
        json::parse(json::string_view(error->data(), error->size()), ec, {}, options);
    if (ec || !e.is_object()) return bad_reply("the error is not an object");
    const json::value* code = e.as_object().if_contains("code");
    const json::value* message = e.as_object().if_contains("message");
    if (!code || !(code->is_int64() || code->is_uint64()))
        return bad_reply("error without an integer code");
    reply.error.code = code->is_int64() ? static_cast<int>(code->get_int64())
                                        : static_cast<int>(code->get_uint64());
    if (message && message->is_string()) reply.error.message = std::string(message->get_string());
    if (const json::value* data = e.as_object().if_contains("data")) {
        // The error goes back to the client as JSON: data it cannot hold makes the answer unusable.
        if (!all_finite(*data)) return bad_reply("the error's data holds a number out of range");
        reply.error.data = *data;
    }
    return reply;
}

}  // namespace gateway::jsonrpc
