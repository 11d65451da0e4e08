#pragma once
// Reading the JSON values of answers in tests: a quantity ("0x1b4") as a number, any value as
// text.

#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

#include <cstdint>
#include <string>

namespace gateway::test {

/// A 0x-prefixed hex quantity as a number; throws on anything else (the test then fails).
inline std::uint64_t quantity_of(const boost::json::value& v) {
    return std::stoull(std::string(v.as_string()), nullptr, 16);
}

/// A string as it is, any other value as JSON text.
inline std::string str(const boost::json::value& v) {
    return v.is_string() ? std::string(v.as_string()) : boost::json::serialize(v);
}

}  // namespace gateway::test
