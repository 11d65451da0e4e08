// bench_fake_node: a fast JSON-RPC node for the benchmarks. It answers at once, with the request's
// id, what the gateway and the load need: eth_chainId, eth_syncing, eth_blockNumber, blocks by
// number or hash (a fixed chain, so no reorgs), eth_getBalance, eth_call (an answer of
// --call-bytes bytes), eth_sendRawTransaction (the transaction's hash), eth_getTransactionCount,
// receipts (null: never mined), fees. Batches are answered as batches (nginx and HAProxy pass
// them through). HTTP/1.1 keep-alive, Beast, one io_context on --threads threads.
//
//   bench_fake_node [--port N] [--threads N] [--call-bytes N] [--logs N]
// eth_getLogs answers --logs (100) transfer logs of one token, about 500 bytes each.
// Prints "listening on <port>" once it accepts connections.

#include "gateway/eth/hex.hpp"
#include "gateway/eth/keccak.hpp"

#include <fmt/format.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <cstdio>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace json = boost::json;
using tcp = asio::ip::tcp;

namespace {

constexpr std::uint64_t kHead = 0x100;
std::string g_call_answer;  // set once before serving

std::string block_hash(std::uint64_t n) {
    return gateway::eth::to_hex(gateway::eth::keccak256("bench block " + std::to_string(n)));
}

std::string block_json(std::uint64_t n) {
    return fmt::format(
        R"({{"number":"0x{:x}","hash":"{}","parentHash":"{}","timestamp":"0x{:x}",)"
        R"("baseFeePerGas":"0x3b9aca00","gasLimit":"0x1c9c380","gasUsed":"0x0","transactions":[]}})",
        n, block_hash(n), block_hash(n == 0 ? 0 : n - 1), 1'700'000'000 + n * 12);
}

std::string g_logs_answer;  // eth_getLogs: --logs logs of an ERC-20's Transfer events

// What a log range of a token's transfers looks like on a real chain: a few addresses and one
// topic repeated, hashes and amounts that are not (what gzip can and cannot shrink).
std::string logs_json(std::size_t count) {
    auto hash = [](const std::string& seed) {
        return gateway::eth::to_hex(gateway::eth::keccak256(seed));
    };
    auto word_of_address = [&](std::size_t i) {
        return "0x000000000000000000000000" + hash("holder " + std::to_string(i % 50)).substr(26);
    };
    std::string out = "[";
    for (std::size_t i = 0; i < count; ++i) {
        const std::uint64_t block = kHead - 100 + i / 10;
        out += fmt::format(
            R"({}{{"address":"0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48","topics":[)"
            R"("0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef","{}","{}"],)"
            R"("data":"0x{:064x}","blockNumber":"0x{:x}","blockHash":"{}",)"
            R"("transactionHash":"{}","transactionIndex":"0x{:x}","logIndex":"0x{:x}","removed":false}})",
            i ? "," : "", word_of_address(i), word_of_address(i * 7 + 3),
            (i * 982451653ull) % 100'000'000'000ull, block, block_hash(block),
            hash("tx " + std::to_string(i)), i % 10, i);
    }
    return out + "]";
}

// The result (JSON text) for one call.
std::string result_of(const std::string& method, const json::value& params) {
    const json::array* p = params.if_array();
    const json::string* first = p && !p->empty() ? p->at(0).if_string() : nullptr;
    if (method == "eth_chainId") return "\"0x7a69\"";
    if (method == "net_version") return "\"31337\"";
    if (method == "eth_syncing") return "false";
    if (method == "eth_blockNumber") return fmt::format("\"0x{:x}\"", kHead);
    if (method == "eth_getBalance") return "\"0xde0b6b3a7640000\"";
    if (method == "eth_call") return g_call_answer;
    if (method == "eth_getTransactionCount") return "\"0x0\"";
    if (method == "eth_gasPrice") return "\"0x3b9aca00\"";
    if (method == "eth_maxPriorityFeePerGas") return "\"0x3b9aca00\"";
    if (method == "eth_estimateGas") return "\"0x5208\"";
    if (method == "eth_getTransactionReceipt" || method == "eth_getTransactionByHash")
        return "null";
    if (method == "eth_sendRawTransaction" && first) {
        auto raw = gateway::eth::from_hex(*first);
        if (!raw) return "null";
        return "\"" + gateway::eth::to_hex(gateway::eth::keccak256(*raw)) + "\"";
    }
    if (method == "eth_getBlockByNumber" && first) {
        if (*first == "latest" || *first == "pending") return block_json(kHead);
        if (*first == "safe") return block_json(kHead - 32);
        if (*first == "finalized") return block_json(kHead - 64);
        if (*first == "earliest") return block_json(0);
        std::uint64_t n = std::stoull(std::string(first->subview(2)), nullptr, 16);
        return n <= kHead ? block_json(n) : "null";
    }
    if (method == "eth_getLogs") return g_logs_answer;
    if (method == "eth_getBlockByHash" && first) {
        for (std::uint64_t n = kHead + 1; n-- > 0;)
            if (block_hash(n) == *first) return block_json(n);
        return "null";
    }
    return "null";
}

std::string answer_one(const json::value& call) {
    const json::object* o = call.if_object();
    if (!o) return R"({"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"invalid"}})";
    const json::value* id = o->if_contains("id");
    const json::value* method = o->if_contains("method");
    const json::value* params = o->if_contains("params");
    std::string id_text = id ? json::serialize(*id) : "null";
    if (!method || !method->is_string())
        return R"({"jsonrpc":"2.0","id":)" + id_text +
               R"(,"error":{"code":-32600,"message":"invalid"}})";
    std::string result;
    try {
        result = result_of(std::string(method->get_string()), params ? *params : json::value());
    } catch (const std::exception&) {
        result = "null";
    }
    return R"({"jsonrpc":"2.0","id":)" + id_text + R"(,"result":)" + result + "}";
}

std::string answer(const std::string& body) {
    json::error_code ec;
    json::value v = json::parse(body, ec);
    if (ec) return R"({"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"parse"}})";
    if (const json::array* batch = v.if_array()) {
        std::string out = "[";
        for (std::size_t i = 0; i < batch->size(); ++i) {
            if (i) out += ',';
            out += answer_one(batch->at(i));
        }
        return out + "]";
    }
    return answer_one(v);
}

asio::awaitable<void> session(tcp::socket socket) {
    beast::tcp_stream stream(std::move(socket));
    beast::flat_buffer buffer;
    for (;;) {
        http::request<http::string_body> req;
        auto [ec, n] =
            co_await http::async_read(stream, buffer, req, asio::as_tuple(asio::use_awaitable));
        if (ec) co_return;
        http::response<http::string_body> res{http::status::ok, req.version()};
        res.set(http::field::content_type, "application/json");
        res.keep_alive(req.keep_alive());
        res.body() = answer(req.body());
        res.prepare_payload();
        auto [wec, w] =
            co_await http::async_write(stream, res, asio::as_tuple(asio::use_awaitable));
        if (wec || !res.keep_alive()) co_return;
    }
}

asio::awaitable<void> listen(tcp::acceptor& acceptor) {
    for (;;) {
        auto [ec, socket] = co_await acceptor.async_accept(
            asio::make_strand(acceptor.get_executor()), asio::as_tuple(asio::use_awaitable));
        if (ec) co_return;
        socket.set_option(tcp::no_delay(true));
        auto ex = socket.get_executor();
        asio::co_spawn(ex, session(std::move(socket)), asio::detached);
    }
}

}  // namespace

int main(int argc, char** argv) {
    unsigned short port = 0;
    unsigned threads = 1;
    std::size_t call_bytes = 32;
    std::size_t logs = 100;
    for (int i = 1; i + 1 < argc; i += 2) {
        const std::string a = argv[i];
        const std::string v = argv[i + 1];
        if (a == "--port")
            port = static_cast<unsigned short>(std::stoul(v));
        else if (a == "--threads")
            threads = static_cast<unsigned>(std::stoul(v));
        else if (a == "--call-bytes")
            call_bytes = std::stoul(v);
        else if (a == "--logs")
            logs = std::stoul(v);
        else {
            std::cerr << "usage: bench_fake_node [--port N] [--threads N] [--call-bytes N] "
                         "[--logs N]\n";
            return 2;
        }
    }
    // An ABI-looking answer: 0x and call_bytes bytes of hex.
    g_call_answer = "\"0x";
    for (std::size_t i = 0; i < call_bytes; ++i) g_call_answer += "ab";
    g_call_answer += "\"";
    g_logs_answer = logs_json(logs);

    asio::io_context ioc(static_cast<int>(threads));
    tcp::acceptor acceptor(ioc, tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
    std::printf("listening on %u\n", acceptor.local_endpoint().port());
    std::fflush(stdout);
    asio::co_spawn(ioc, listen(acceptor), asio::detached);
    asio::signal_set signals(ioc, SIGINT, SIGTERM);
    signals.async_wait([&](auto, auto) { ioc.stop(); });
    std::vector<std::thread> pool;
    for (unsigned t = 1; t < threads; ++t) pool.emplace_back([&] { ioc.run(); });
    ioc.run();
    for (auto& t : pool) t.join();
    return 0;
}
