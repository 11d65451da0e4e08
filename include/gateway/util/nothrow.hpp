#pragma once
// `co_await op(use_nothrow)`: an asynchronous operation's error comes back as a value (a tuple of
// the error code and the results) instead of an exception, as the request path wants.

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace gateway::util {

inline constexpr auto use_nothrow = boost::asio::as_tuple(boost::asio::use_awaitable);

}  // namespace gateway::util
