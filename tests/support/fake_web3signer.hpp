#pragma once
// A fake remote signing service (the Web3Signer shape: eth_signTransaction answered with the
// signed raw transaction), to run in a FakeUpstream; it signs with a custody stub's keys.

#include "gateway/custody/custody_stub.hpp"
#include "support/fake_upstream.hpp"

#include <boost/json/object.hpp>

#include <functional>
#include <memory>

namespace gateway::test {

/// Awaits sign() on a private io_context on this thread (for a fake service's script, which
/// must answer synchronously).
custody::Signed sign_now(custody::Signer& signer, const eth::UnsignedTx& tx,
                         const eth::Address& from);

/// The UnsignedTx an eth_signTransaction request's transaction object describes (what a
/// Web3Signer would sign).
eth::UnsignedTx unsigned_from_request(const boost::json::object& t);

/// Alters what the fake signs (another nonce, another sender), to test the checks on answers.
using SignTamper = std::function<void(eth::UnsignedTx&, eth::Address&)>;

/// A fake Web3Signer: answers eth_signTransaction by signing with `keys`, after `tamper` had its
/// way with the transaction; a refusal of `keys` is a JSON-RPC error with its detail. Other
/// methods are left to the FakeUpstream's default.
FakeUpstream::Script web3signer(std::shared_ptr<custody::CustodyStub> keys, SignTamper tamper = {});

}  // namespace gateway::test
