#include "support/fake_web3signer.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/json/value.hpp>

#include <chrono>
#include <stdexcept>
#include <string>

namespace gateway::test {

namespace asio = boost::asio;
namespace json = boost::json;

namespace {

std::uint64_t quantity(const json::value& v) {
    return std::stoull(std::string(v.as_string()).substr(2), nullptr, 16);
}

eth::Bytes quantity_bytes(const json::value& v) {
    std::string digits = std::string(v.as_string()).substr(2);
    if (digits == "0") return {};
    if (digits.size() % 2) digits.insert(0, "0");
    return *eth::from_hex("0x" + digits);
}

eth::Address address(const json::value& v) {
    const auto bytes = eth::from_hex(v.as_string());
    if (!bytes || bytes->size() != 20) throw std::invalid_argument("not an address");
    eth::Address a{};
    std::copy(bytes->begin(), bytes->end(), a.begin());
    return a;
}

}  // namespace

custody::Signed sign_now(custody::Signer& signer, const eth::UnsignedTx& tx,
                         const eth::Address& from) {
    asio::io_context ctx;
    auto f = asio::co_spawn(
        ctx, signer.sign(tx, from, std::chrono::steady_clock::now() + std::chrono::seconds(5)),
        asio::use_future);
    ctx.run();
    return f.get();
}

eth::UnsignedTx unsigned_from_request(const json::object& t) {
    eth::UnsignedTx tx;
    tx.type = t.contains("maxFeePerGas") ? eth::TxType::dynamic_fee : eth::TxType::legacy;
    tx.chain_id = quantity(t.at("chainId"));
    tx.nonce = quantity(t.at("nonce"));
    if (tx.type == eth::TxType::legacy) {
        tx.gas_price = quantity(t.at("gasPrice"));
    } else {
        tx.max_fee_per_gas = quantity(t.at("maxFeePerGas"));
        tx.max_priority_fee_per_gas = quantity(t.at("maxPriorityFeePerGas"));
    }
    tx.gas = quantity(t.at("gas"));
    if (t.contains("to")) tx.to = address(t.at("to"));
    tx.value = quantity_bytes(t.at("value"));
    tx.input = *eth::from_hex(t.at("data").as_string());
    return tx;
}

FakeUpstream::Script web3signer(std::shared_ptr<custody::CustodyStub> keys, SignTamper tamper) {
    return [keys, tamper](const std::string& method,
                          const json::value& request) -> std::optional<FakeReply> {
        if (method != "eth_signTransaction") return std::nullopt;
        const json::object& t = request.at("params").at(0).as_object();
        eth::UnsignedTx tx = unsigned_from_request(t);
        eth::Address from = address(t.at("from"));
        if (tamper) tamper(tx, from);
        const custody::Signed s = sign_now(*keys, tx, from);
        if (s.outcome != custody::Signed::Outcome::signed_ok)
            return FakeReply::rpc_error(-32000, s.detail);
        return FakeReply::ok("\"" + eth::to_hex(s.raw) + "\"");
    };
}

}  // namespace gateway::test
