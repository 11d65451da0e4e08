// The handler's transaction routes: sends from managed senders, raw sends (and their Sync
// variants, EIP-7966), and gateway_getTransaction.

#include "handler_internal.hpp"

#include "gateway/txm/managed.hpp"
#include "gateway/txm/tx_manager.hpp"

#include <fmt/format.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/serialize.hpp>

#include <algorithm>

namespace gateway::rpc {

// eth_sendTransaction, gateway_sendTransaction, eth_sendTransactionSync: managed senders only;
// the gateway builds and signs, and never forwards them to a node.
asio::awaitable<void> RpcHandler::managed_send(CallContext& c) {
    const ChainRoute& route = c.route;
    const jsonrpc::Call& call = c.call;
    const auth::Client& client = c.client;
    Outcome& out = c.out;
    std::string_view& outcome = c.outcome;
    const std::string& chain_name = route.pool->config().name;
    const auto t0 = c.t0;
    const std::string_view idempotency_key = c.idempotency_key;
    if (!route.managed) {
        outcome = "rpc_error";
        out.response = jsonrpc::error_response(
            call.id, jsonrpc::Error(-32000, fmt::format("chain {} has no managed senders: "
                                                        "sign the transaction yourself and "
                                                        "use eth_sendRawTransaction",
                                                        chain_name)));
    } else {
        const std::string key(idempotency_key);
        const bool sync = call.method == "eth_sendTransactionSync";
        const bool wait = call.method != "gateway_sendTransaction";
        const auto deadline = t0 + server_.request_timeout;
        const auto timeout = sync ? sync_params(call.params) : std::nullopt;
        txm::ManagedReply r;
        if (sync && !timeout) {
            r.reply = jsonrpc::Reply::failure(
                jsonrpc::Error(jsonrpc::ErrorCode::invalid_params,
                               "eth_sendTransactionSync takes the transaction object and "
                               "optionally a timeout in milliseconds"));
        } else {
            // Named, not temporaries in the co_await: GCC 12 destroys those twice.
            json::value params = call.params;
            if (sync) params = first_param(call.params);
            std::string sender_client = recorded_client(client);
            r = co_await route.managed->send(params, key, wait, deadline, std::move(sender_client));
        }
        out.queued = r.queued;
        out.store_failed = r.store_failed;
        if (r.store_failed) outcome = "unavailable";
        if (r.reply.is_error()) {
            if (!r.store_failed) outcome = "rpc_error";
            out.response = jsonrpc::error_response(call.id, r.reply.error);
        } else if (sync) {
            co_await await_receipt(c, *r.reply.result, *timeout);
        } else {
            out.response = jsonrpc::result_response(call.id, *r.reply.result);
        }
    }
}

// gateway_getTransaction: a managed transaction by its id (gtx-...), or a raw one, or an attempt
// (with its managed transaction), by hash.
asio::awaitable<void> RpcHandler::get_transaction(CallContext& c) {
    const ChainRoute& route = c.route;
    const jsonrpc::Call& call = c.call;
    const auth::Client& client = c.client;
    Outcome& out = c.out;
    std::string_view& outcome = c.outcome;
    if (route.managed && call.params.is_array() && call.params.get_array().size() == 1 &&
        call.params.get_array()[0].is_string() &&
        call.params.get_array()[0].get_string().starts_with("gtx-")) {
        const std::string id(call.params.get_array()[0].get_string());
        jsonrpc::Reply r = co_await route.managed->describe(id, owner_of(client));
        if (r.is_error()) outcome = "rpc_error";
        out.response = reply_response(call.id, r);
        co_return;
    }
    if (!route.txm) {
        co_await forward(c);
        co_return;
    }
    jsonrpc::Reply r = co_await route.txm->describe(call.params, owner_of(client));
    if (route.managed && !r.is_error()) co_await add_managed(route, r, out, client);
    if (r.is_error()) outcome = "rpc_error";
    out.response = reply_response(call.id, r);
}

// eth_sendRawTransaction: into the journal, then to the nodes; without a transaction manager for
// the chain, passed on to the nodes as it is.
asio::awaitable<void> RpcHandler::raw_send(CallContext& c) {
    const jsonrpc::Call& call = c.call;
    if (!c.route.txm) {
        co_await forward(c);
        co_return;
    }
    const txm::SubmitResult r = co_await intake(c, call.params);
    if (r.reply && !r.reply->is_error())
        c.out.response = jsonrpc::result_response(call.id, *r.reply->result);
}

// eth_sendRawTransactionSync: the journal's intake, as eth_sendRawTransaction; then the receipt.
asio::awaitable<void> RpcHandler::raw_send_sync(CallContext& c) {
    const ChainRoute& route = c.route;
    const jsonrpc::Call& call = c.call;
    Outcome& out = c.out;
    std::string_view& outcome = c.outcome;
    if (!route.txm) {
        co_await forward(c);
        co_return;
    }
    const auto timeout = sync_params(call.params);
    if (!timeout) {
        outcome = "rpc_error";
        out.response = jsonrpc::error_response(
            call.id, jsonrpc::Error(jsonrpc::ErrorCode::invalid_params,
                                    "eth_sendRawTransactionSync takes the signed transaction and "
                                    "optionally a timeout in milliseconds"));
        co_return;
    }
    const json::value raw = first_param(call.params);
    const txm::SubmitResult r = co_await intake(c, raw);
    if (r.reply && r.reply->is_error()) co_return;  // answered by intake()
    if (!r.reply) {
        if (!r.store_failed) outcome = "rpc_error";
        out.response = jsonrpc::error_response(call.id, jsonrpc::Error());
        co_return;
    }
    co_await await_receipt(c, *r.reply->result, *timeout);
}

// The journal's intake of a raw transaction (eth_sendRawTransaction and its Sync variant): what it
// did goes into the call's outcome, and a refusal is answered. The result, for the answer.
asio::awaitable<txm::SubmitResult> RpcHandler::intake(CallContext& c, const json::value& raw) {
    std::string sender_client = recorded_client(c.client);
    txm::SubmitResult r =
        co_await c.route.txm->submit(raw, std::move(sender_client), std::string(c.source));
    c.out.queued = r.queued;
    c.out.store_failed = r.store_failed;
    c.out.upstream = std::move(r.upstream);
    if (r.store_failed) c.outcome = "unavailable";
    if (r.reply && r.reply->is_error()) {
        if (!r.store_failed) c.outcome = "rpc_error";
        c.out.response = jsonrpc::error_response(c.call.id, r.reply->error);
    }
    co_return r;
}

// The Sync variants' answer once their transaction is in the journal: its receipt when it is
// mined within the client's timeout (at most server.request_timeout_ms), else error 4 with the
// hash (EIP-7966); the gateway goes on with it either way.
asio::awaitable<void> RpcHandler::await_receipt(CallContext& c, std::string hash_json,
                                                std::optional<std::uint64_t> timeout_ms) {
    const ChainRoute& route = c.route;
    const jsonrpc::Call& call = c.call;
    Outcome& out = c.out;
    const auto t0 = c.t0;
    auto deadline = t0 + server_.request_timeout;
    if (timeout_ms)
        deadline = std::min(deadline, t0 + std::chrono::milliseconds(std::min<std::uint64_t>(
                                               *timeout_ms, 24ull * 3600 * 1000)));
    json::error_code ec;
    json::value hash = json::parse(hash_json, ec);
    asio::steady_timer pause(co_await asio::this_coro::executor);
    // Named values, not braced temporaries: GCC 12 mishandles those inside coroutines.
    json::array receipt_params;
    receipt_params.push_back(hash);
    const std::string receipt_method = "eth_getTransactionReceipt";
    // Receipts are asked for every 250 ms: blocks are seconds apart on every chain worth the name.
    while (!ec && Clock::now() < deadline) {
        upstream::Forwarded f =
            co_await route.pool->forward(receipt_method, receipt_params, false, deadline);
        if (f.outcome == upstream::Forwarded::Outcome::answered && !f.reply.is_error() &&
            *f.reply.result != "null") {
            out.queued = false;
            out.response = jsonrpc::result_response(call.id, *f.reply.result);
            co_return;
        }
        pause.expires_at(std::min(deadline, Clock::now() + std::chrono::milliseconds(250)));
        co_await pause.async_wait(asio::as_tuple(asio::use_awaitable));
    }
    c.outcome = "rpc_error";
    out.response = jsonrpc::error_response(
        call.id,
        jsonrpc::Error(kNotMinedInTime, std::string(kNotMinedInTimeMessage), std::move(hash)));
}

// gateway_getTransaction for an attempt of a managed transaction: the managed transaction too, and
// the hash that was mined instead when another attempt was (X-Gateway-Replaced-By).
asio::awaitable<void> RpcHandler::add_managed(const ChainRoute& route, jsonrpc::Reply& reply,
                                              Outcome& out, const auth::Client& client) {
    json::error_code ec;
    json::value v = json::parse(*reply.result, ec);
    json::object* o = ec ? nullptr : v.if_object();
    const json::value* parent = o ? o->if_contains("transaction") : nullptr;
    if (!parent || !parent->is_string()) co_return;
    const std::string id(parent->get_string());
    jsonrpc::Reply m = co_await route.managed->describe(id, owner_of(client));
    if (m.is_error()) co_return;
    json::value managed = json::parse(*m.result, ec);
    if (ec || !managed.is_object()) co_return;
    const json::value* mined = managed.get_object().if_contains("minedHash");
    if (mined && mined->is_string() && *mined != o->at("hash")) {
        out.replaced_by = std::string(mined->get_string());
        (*o)["replacedBy"] = *mined;
    }
    (*o)["managed"] = std::move(managed);
    reply.result = json::serialize(v);
}

}  // namespace gateway::rpc
