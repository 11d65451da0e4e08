#pragma once
// A managed transaction's request: the transaction object of eth_sendTransaction checked field by
// field (as a client sent it, or as journaled and read again after a restart, for a retry or a
// reorg), and the request of the zero-value self-send that fills the nonce of a dead transaction.

#include "gateway/eth/hex.hpp"
#include "gateway/txm/fees.hpp"

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

namespace gateway::txm {

/// The internal mark of a zero-value self-send that fills the nonce of a dead transaction.
inline constexpr std::string_view kFillsField = "gatewayFills";

/// What a client asked for, checked.
struct Request {
    eth::Address from{};
    std::optional<eth::Address> to;
    eth::Bytes value;
    eth::Bytes input;
    std::optional<std::uint64_t> gas;
    std::optional<Fees> client_fees;
    std::optional<std::string> fills;  // a filler: the id of the dead transaction whose nonce
};

/// A 0x-prefixed 20-byte address; nullopt for anything else.
std::optional<eth::Address> parse_address(const boost::json::value& v);

/// The transaction object of eth_sendTransaction, checked field by field; an error says which.
std::variant<Request, std::string> parse_request(const boost::json::object& o,
                                                 std::uint64_t chain_id);

/// A journaled request, parsed again (after a restart, for a retry).
std::variant<Request, std::string> parse_stored(const std::string& text, std::uint64_t chain_id);

/// The request of a zero-value self-send that fills the nonce of `dead`, with fees at least
/// `outbid` (the dead one's, raised: an attempt of it may still be pending somewhere).
std::string filler_request(const std::string& sender, const std::string& dead,
                           const std::optional<Fees>& outbid);

}  // namespace gateway::txm
