#pragma once
// Comparing JSON documents in the fuzz targets. Boost.JSON 1.81 reads a number's text to doubles
// that can differ in the last bit depending on where the text ends in the buffer
// ("-510616588724.333330" alone and inside an array), so doubles are compared with a tolerance;
// everything else must be equal.

#include <boost/json/value.hpp>

#include <algorithm>
#include <cmath>

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

}  // namespace gateway::fuzz
