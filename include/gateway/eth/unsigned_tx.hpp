#pragma once
// Transactions the gateway builds for managed senders, before and after signing: the signing
// payload and hash a signer signs, and the signed encoding nodes accept.

#include "gateway/eth/hex.hpp"
#include "gateway/eth/transaction.hpp"

#include <boost/json/object.hpp>

#include <cstdint>
#include <optional>
#include <string>

namespace gateway::eth {

/// A transaction ready to be signed: legacy (EIP-155) or EIP-1559. Fees in wei.
/// The functions below are pure and safe from any thread. The gateway builds these from its own
/// configuration, so a value outside the model is a programming error: they throw
/// std::invalid_argument for another type, a legacy chain id whose v would not fit in 64 bits,
/// or a y_parity other than 0 or 1.
struct UnsignedTx {
    TxType type = TxType::dynamic_fee;  ///< legacy or dynamic_fee
    std::uint64_t chain_id = 0;
    std::uint64_t nonce = 0;
    std::uint64_t gas_price = 0;                 ///< legacy only
    std::uint64_t max_fee_per_gas = 0;           ///< EIP-1559 only
    std::uint64_t max_priority_fee_per_gas = 0;  ///< EIP-1559 only
    std::uint64_t gas = 0;
    std::optional<Address> to;  ///< absent: contract creation
    Bytes value;                ///< big-endian, no leading zeros (empty is zero)
    Bytes input;
};

/// The bytes whose Keccak-256 is signed: EIP-155's rlp([nonce, gasPrice, gas, to, value, data,
/// chainId, 0, 0]) or EIP-1559's 0x02 || rlp([chainId, nonce, maxPriorityFeePerGas,
/// maxFeePerGas, gas, to, value, data, accessList]) with an empty access list.
Bytes signing_payload(const UnsignedTx& tx);
Hash signing_hash(const UnsignedTx& tx);

/// The signed transaction as eth_sendRawTransaction takes it. `y_parity` is 0 or 1 (legacy v is
/// derived from it and the chain id); r and s big-endian 32 bytes.
Bytes encode_signed(const UnsignedTx& tx, std::uint8_t y_parity, const Scalar& r, const Scalar& s);

/// The transaction object of an eth_signTransaction request (the Web3Signer shape): from, to,
/// gas, nonce, value, data, chainId, and gasPrice or maxFeePerGas/maxPriorityFeePerGas, all as
/// quantities or hex.
boost::json::object sign_request_json(const UnsignedTx& tx, const Address& from);

}  // namespace gateway::eth
