#pragma once
// Comparing JSON documents in the fuzz targets. Boost.JSON 1.81 reads a number's text to doubles
// that can differ in the last bit depending on where the text ends in the buffer
// ("-510616588724.333330" alone and inside an array), so doubles are compared with a tolerance;
// everything else must be equal.

#include <boost/json/basic_parser_impl.hpp>
#include <boost/json/value.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace gateway::fuzz {

namespace json = boost::json;

inline bool same_json(const json::value& a, const json::value& b) {
    if (a.is_double() && b.is_double()) {
        const double x = a.get_double();
        const double y = b.get_double();
        if (std::isnan(x) || std::isnan(y)) return std::isnan(x) && std::isnan(y);
        return x == y || std::fabs(x - y) <= 1e-12 * std::max(std::fabs(x), std::fabs(y));
    }
    if (a.kind() != b.kind()) return false;
    if (const json::array* x = a.if_array()) {
        const json::array& y = b.get_array();
        return x->size() == y.size() && std::equal(x->begin(), x->end(), y.begin(), same_json);
    }
    if (const json::object* x = a.if_object()) {
        const json::object& y = b.get_object();
        if (x->size() != y.size()) return false;
        for (const auto& member : *x) {
            const json::value* other = y.if_contains(member.key());
            if (!other || !same_json(member.value(), *other)) return false;
        }
        return true;
    }
    return a == b;
}

/// Whether every number in `v` is finite (Boost.JSON reads 1e999 as infinity, 0e999999 as NaN).
inline bool all_finite(const json::value& v) {
    if (v.is_double()) return std::isfinite(v.get_double());
    if (const json::array* a = v.if_array())
        return std::all_of(a->begin(), a->end(),
                           [](const json::value& e) { return all_finite(e); });
    if (const json::object* o = v.if_object())
        return std::all_of(o->begin(), o->end(),
                           [](const json::key_value_pair& m) { return all_finite(m.value()); });
    return true;
}

namespace detail {

// Reads a text only to see its numbers.
struct NumberScan {
    static constexpr std::size_t max_object_size = std::size_t(-1);
    static constexpr std::size_t max_array_size = std::size_t(-1);
    static constexpr std::size_t max_key_size = std::size_t(-1);
    static constexpr std::size_t max_string_size = std::size_t(-1);
    bool out_of_range = false;
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
    bool on_double(double d, json::string_view, json::error_code&) {
        out_of_range = out_of_range || !std::isfinite(d);
        return true;
    }
    bool on_bool(bool, json::error_code&) { return true; }
    bool on_null(json::error_code&) { return true; }
    bool on_comment_part(json::string_view, json::error_code&) { return true; }
    bool on_comment(json::string_view, json::error_code&) { return true; }
};

}  // namespace detail

/// Whether `text` holds a number Boost.JSON reads as infinity or NaN anywhere, also where its
/// document drops it (the first of a repeated key). The scan goes as far as the text is JSON.
inline bool has_number_out_of_range(std::string_view text, std::size_t max_depth) {
    json::parse_options options;
    options.max_depth = max_depth;
    json::basic_parser<detail::NumberScan> parser(options);
    json::error_code ec;
    parser.write_some(false, text.data(), text.size(), ec);
    return parser.handler().out_of_range;
}

}  // namespace gateway::fuzz
