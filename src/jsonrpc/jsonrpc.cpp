#include "gateway/jsonrpc/jsonrpc.hpp"
#include "gateway/jsonrpc/json_text.hpp"

#include "gateway/util/text.hpp"

#include <algorithm>
#include <boost/json/basic_parser_impl.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/serializer.hpp>
#include <boost/json/value_stack.hpp>
#include <charconv>
#include <cmath>
#include <cstring>

#include <fmt/format.h>

#include <iterator>
#include <limits>
#include <memory>
#include <optional>

namespace gateway::jsonrpc {
namespace json = boost::json;

namespace {

// Reads a request body as Boost.JSON's parser walks it, into calls, without a tree of the whole
// body: of each call object only "jsonrpc", "id", "method" and "params" are kept, and only the
// params become a tree (in the heap, where the call keeps them). A numeric id keeps its exact
// text: a number's value alone is not enough (1.50 would come back as 1.5E0, and a 30-digit id
// would lose digits), and a client matches answers to calls by id. A member given twice counts
// as its last, as in a Boost.JSON object; members of other names are read past, unkept.
class CallReader {
public:
    static constexpr std::size_t max_object_size = json::object::max_size();
    static constexpr std::size_t max_array_size = json::array::max_size();
    static constexpr std::size_t max_key_size = json::string::max_size();
    static constexpr std::size_t max_string_size = json::string::max_size();

    /// Elements of a top-level array beyond this stop the parser (batch_too_large is set): a
    /// batch over the limit costs no more than the limit to read.
    std::size_t max_batch = std::numeric_limits<std::size_t>::max();
    bool batch_too_large = false;
    /// A number Boost.JSON reads as infinity or NaN (1e999, 0e999999) stopped the parser: no
    /// JSON text can hold it, so a call with it could not be sent on (it would be written as
    /// "Infinity" or "NaN").
    bool number_out_of_range = false;

    /// What the body is: nothing yet, one call object, a batch, or a scalar (not a request).
    enum class Top { none, object, array, scalar };
    Top top = Top::none;
    /// The calls read so far, in the body's order.
    std::vector<Entry> entries;

    /// Ready for the next body (a parser kept from request to request).
    void restart(std::size_t batch_limit) {
        max_batch = batch_limit;
        batch_too_large = false;
        number_out_of_range = false;
        top = Top::none;
        entries.clear();
        depth_ = skip_ = capture_ = 0;
        batch_count_ = 0;
        member_ = Member::other;
        text_.clear();
        number_.clear();
        params_.reset();
    }

    bool on_document_begin(json::error_code&) { return true; }
    bool on_document_end(json::error_code&) { return true; }

    bool on_object_begin(json::error_code& ec) {
        if (capture_) return ++capture_, true;
        if (skip_) return ++skip_, true;
        if (!begin_value(ec)) return false;
        if (depth_ == 0 || (depth_ == 1 && top == Top::array)) {
            if (depth_ == 0) top = Top::object;
            call_ = CallState{};
            ++depth_;
            return true;
        }
        member_container();
        return true;
    }
    bool on_object_end(std::size_t n, json::error_code&) {
        if (capture_) {
            params_.push_object(n);
            if (--capture_ == 0) take_params();
            return true;
        }
        if (skip_) return --skip_, true;
        --depth_;  // a call object ends
        entries.push_back(call_entry());
        return true;
    }
    bool on_array_begin(json::error_code& ec) {
        if (capture_) return ++capture_, true;
        if (skip_) return ++skip_, true;
        if (!begin_value(ec)) return false;
        if (depth_ == 0) {
            top = Top::array;
            ++depth_;
            return true;
        }
        if (depth_ == 1 && top == Top::array) {
            not_an_object();
            skip_ = 1;
            return true;
        }
        member_container();
        return true;
    }
    bool on_array_end(std::size_t n, json::error_code&) {
        if (capture_) {
            params_.push_array(n);
            if (--capture_ == 0) take_params();
            return true;
        }
        if (skip_) return --skip_, true;
        --depth_;  // the batch ends
        return true;
    }
    bool on_key_part(json::string_view s, std::size_t, json::error_code&) {
        if (capture_) {
            params_.push_chars(s);
        } else if (!skip_) {
            text_.append(s.data(), s.size());
        }
        return true;
    }
    bool on_key(json::string_view s, std::size_t, json::error_code&) {
        if (capture_) {
            params_.push_key(s);
            return true;
        }
        if (skip_) return true;
        std::string_view name(s.data(), s.size());
        if (!text_.empty()) name = text_.append(s.data(), s.size());  // a key in parts
        // Views: their lengths are compared first (std::string == "..." measures the literal
        // and compares bytes every time).
        using namespace std::string_view_literals;
        member_ = name == "id"sv        ? Member::id
                  : name == "jsonrpc"sv ? Member::version
                  : name == "method"sv  ? Member::method
                  : name == "params"sv  ? Member::params
                                        : Member::other;
        text_.clear();
        return true;
    }
    bool on_string_part(json::string_view s, std::size_t, json::error_code&) {
        if (capture_) {
            params_.push_chars(s);
        } else if (!skip_) {
            text_.append(s.data(), s.size());
        }
        return true;
    }
    bool on_string(json::string_view s, std::size_t, json::error_code& ec) {
        if (capture_) {
            params_.push_string(s);
            return true;
        }
        if (skip_) return true;
        if (!begin_value(ec)) return false;
        std::string_view text(s.data(), s.size());
        if (!text_.empty()) text = text_.append(s.data(), s.size());  // a string in parts
        if (at_member()) {
            switch (member_) {
                case Member::id:
                    call_.id = json::serialize(json::string_view(text.data(), text.size()));
                    call_.id_state = Field::ok;
                    break;
                case Member::version:
                    call_.version = text == std::string_view("2.0") ? Field::ok : Field::wrong;
                    break;
                case Member::method:
                    call_.method_state = text.empty() ? Field::wrong : Field::ok;
                    call_.method = text;
                    break;
                case Member::params: wrong_value(); break;
                case Member::other: break;
            }
        } else {
            scalar();
        }
        text_.clear();
        return true;
    }
    bool on_number_part(json::string_view s, json::error_code&) {
        if (!capture_ && !skip_) number_.append(s.data(), s.size());
        return true;
    }
    bool on_int64(std::int64_t i, json::string_view s, json::error_code& ec) {
        if (capture_) return params_.push_int64(i), true;
        return number(s, ec);
    }
    bool on_uint64(std::uint64_t u, json::string_view s, json::error_code& ec) {
        if (capture_) return params_.push_uint64(u), true;
        return number(s, ec);
    }
    bool on_double(double d, json::string_view s, json::error_code& ec) {
        if (!std::isfinite(d)) {
            number_out_of_range = true;
            ec = json::error::exception;  // stops the parser; parse_request says why
            return false;
        }
        if (capture_) return params_.push_double(d), true;
        return number(s, ec);
    }
    bool on_bool(bool b, json::error_code& ec) {
        if (capture_) return params_.push_bool(b), true;
        if (skip_) return true;
        if (!begin_value(ec)) return false;
        if (at_member()) {
            wrong_value();
        } else {
            scalar();
        }
        return true;
    }
    bool on_null(json::error_code& ec) {
        if (capture_) return params_.push_null(), true;
        if (skip_) return true;
        if (!begin_value(ec)) return false;
        if (!at_member()) {
            scalar();
        } else if (member_ == Member::id) {
            call_.id = std::string(kNullId);
            call_.id_state = Field::ok;
        } else if (member_ == Member::params) {
            call_.params = nullptr;  // as if there were none
            call_.params_state = Field::ok;
        } else if (member_ != Member::other) {
            wrong_value();
        }
        return true;
    }
    bool on_comment_part(json::string_view, json::error_code&) { return true; }
    bool on_comment(json::string_view, json::error_code&) { return true; }

private:
    enum class Member { id, version, method, params, other };
    enum class Field { absent, ok, wrong };
    struct CallState {
        Field id_state = Field::absent;
        std::string id;
        Field version = Field::absent;
        Field method_state = Field::absent;
        std::string method;
        Field params_state = Field::absent;
        json::value params;
    };

    bool begin_value(json::error_code& ec) {
        if (depth_ == 1 && top == Top::array && ++batch_count_ > max_batch) {
            batch_too_large = true;
            ec = json::error::exception;  // stops the parser; parse_request says why
            return false;
        }
        return true;
    }

    // A value that is a direct member of a call object (and not inside params).
    bool at_member() const {
        return (depth_ == 1 && top == Top::object) || (depth_ == 2 && top == Top::array);
    }

    // A scalar where a call or the body should be: the body itself, or an element of a batch.
    void scalar() {
        if (depth_ == 0)
            top = Top::scalar;
        else
            not_an_object();
    }

    void not_an_object() {
        entries.push_back(InvalidCall{
            std::string(kNullId),
            {ErrorCode::invalid_request, "invalid request: a call must be a JSON object"}});
    }

    // A member's value that is an object or an array: params become a tree (in the heap: the
    // call keeps them); any other is read past.
    void member_container() {
        if (member_ == Member::params) {
            params_.reset();
            capture_ = 1;
        } else {
            wrong_value();
            skip_ = 1;
        }
    }

    // A member's value of a type it cannot have (an array or object read past, or a scalar).
    void wrong_value() {
        switch (member_) {
            case Member::id: call_.id_state = Field::wrong; break;
            case Member::version: call_.version = Field::wrong; break;
            case Member::method: call_.method_state = Field::wrong; break;
            case Member::params: call_.params_state = Field::wrong; break;
            case Member::other: break;
        }
    }

    bool number(json::string_view last, json::error_code& ec) {
        if (skip_) return true;
        if (!begin_value(ec)) return false;
        number_.append(last.data(), last.size());
        if (!at_member()) {
            scalar();
        } else if (member_ == Member::id) {
            call_.id = number_;
            call_.id_state = Field::ok;
        } else if (member_ != Member::other) {
            wrong_value();
        }
        number_.clear();
        return true;
    }

    void take_params() {
        call_.params = params_.release();
        call_.params_state = Field::ok;
    }

    // The call as read_entry made it from a tree, its checks in the same order.
    Entry call_entry() {
        Call call;
        if (call_.id_state == Field::absent) call.notification = true;
        if (call_.id_state == Field::ok) call.id = std::move(call_.id);
        auto invalid = [&](std::string message) -> Entry {
            return InvalidCall{
                call.notification ? std::string(kNullId) : call.id,
                {ErrorCode::invalid_request, "invalid request: " + std::move(message)}};
        };
        if (call_.id_state == Field::wrong)
            return invalid("\"id\" must be a string, a number or null");
        if (call_.version != Field::ok) return invalid("\"jsonrpc\" must be \"2.0\"");
        if (call_.method_state != Field::ok)
            return invalid("\"method\" must be a non-empty string");
        if (call_.params_state == Field::wrong)
            return invalid("\"params\" must be an array or an object");
        call.method = std::move(call_.method);
        call.params = std::move(call_.params);
        return call;
    }

    std::size_t depth_ = 0;    // the body's and the call's own containers open
    std::size_t skip_ = 0;     // containers open in a value read past
    std::size_t capture_ = 0;  // containers open in the params being built
    std::size_t batch_count_ = 0;
    Member member_ = Member::other;
    CallState call_;
    std::string text_;    // a key or string in parts
    std::string number_;  // a number in parts
    json::value_stack params_;
};

json::parse_options request_options() {
    json::parse_options options;
    options.max_depth = 64;
    return options;
}

// Bodies up to this size are read by a parser each thread keeps, with the stacks it grew (a fresh
// one allocated its stacks anew for every request). A larger body gets a parser of its own, so
// that one huge request does not leave a thread holding its stacks.
constexpr std::size_t kKeptParserBodyBytes = 64 * 1024;

boost::system::result<Request, Error> read_request(json::basic_parser<CallReader>& parser,
                                                   std::string_view body,
                                                   const ParseLimits& limits);

}  // namespace

boost::system::result<Request, Error> parse_request(std::string_view body,
                                                    const ParseLimits& limits) {
    if (body.size() > kKeptParserBodyBytes) {
        json::basic_parser<CallReader> own(request_options());
        own.handler().restart(limits.max_batch_size);
        return read_request(own, body, limits);
    }
    // On the heap, made by a thread's first request: a thread_local object would be in every
    // thread's static TLS, the journal's and the logger's too.
    thread_local std::unique_ptr<json::basic_parser<CallReader>> kept_here;
    if (!kept_here) kept_here = std::make_unique<json::basic_parser<CallReader>>(request_options());
    json::basic_parser<CallReader>& kept = *kept_here;
    kept.reset();
    kept.handler().restart(limits.max_batch_size);
    return read_request(kept, body, limits);
}

namespace {

boost::system::result<Request, Error> read_request(json::basic_parser<CallReader>& parser,
                                                   std::string_view body,
                                                   const ParseLimits& limits) {
    json::error_code ec;
    std::size_t used = parser.write_some(false, body.data(), body.size(), ec);
    CallReader& reader = parser.handler();
    if (reader.batch_too_large)
        return Error{ErrorCode::limit_exceeded,
                     fmt::format("batch too large: more than {} calls (server.max_batch_size)",
                                 limits.max_batch_size)};
    if (reader.number_out_of_range)
        return Error{ErrorCode::parse_error,
                     fmt::format("parse error: the number before byte {} is out of range", used)};
    if (!ec && used < body.size()) ec = json::error::extra_data;
    if (ec)
        return Error{ErrorCode::parse_error,
                     fmt::format("parse error: {} at byte {}", ec.message(), used)};
    if (reader.top == CallReader::Top::scalar)
        return Error{ErrorCode::invalid_request,
                     "invalid request: the body must be a JSON object or array"};
    Request request;
    request.batch = reader.top == CallReader::Top::array;
    if (request.batch && reader.entries.empty())
        return Error{ErrorCode::invalid_request, "invalid request: empty batch"};
    // Moved into a vector of their number: the reader's grew as they came (six allocations for
    // 20), and keeps its room for the thread's next body (a kept parser's is at most
    // server.max_batch_size entries).
    request.entries.reserve(reader.entries.size());
    std::move(reader.entries.begin(), reader.entries.end(), std::back_inserter(request.entries));
    reader.entries.clear();
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

std::optional<std::int64_t> error_code_of(std::string_view response) {
    constexpr std::string_view kMarker = "\"error\":{\"code\":";
    const std::size_t at = response.find(kMarker);
    if (at == std::string_view::npos) return std::nullopt;
    std::int64_t code = 0;
    const char* first = response.data() + at + kMarker.size();
    const auto [end, ec] = std::from_chars(first, response.data() + response.size(), code);
    if (ec != std::errc() || end == first) return std::nullopt;
    return code;
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
