#include "support/fake_upstream.hpp"

#include "gateway/http/listener.hpp"
#include "gateway/jsonrpc/methods.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <thread>

namespace gateway::test {

namespace asio = boost::asio;
namespace json = boost::json;

struct FakeUpstream::Impl {
    std::uint64_t chain_id;
    asio::io_context ioc;
    std::unique_ptr<http::Listener> listener;
    std::thread thread;

    mutable std::mutex mu;
    Script script;
    std::map<std::string, std::size_t> counts;
    std::map<std::string, std::vector<json::value>> received;
    std::string watched;  // a header's name, lower case
    std::vector<std::pair<std::string, std::string>> raw;
    std::size_t in_flight = 0;
    std::size_t max_in_flight = 0;

    // The default eth_getBlockByNumber (with mu held): a block with a number, hash and parent for
    // every number up to the node's head (its eth_blockNumber), null past it.
    std::optional<FakeReply> block_by_number(const json::value& request) {
        std::uint64_t head = 0x10;
        if (script)
            if (auto r = script("eth_blockNumber", request); r && r->result) {
                const std::string_view quoted = *r->result;  // "0x..."
                if (quoted.size() > 2)
                    if (auto h = jsonrpc::parse_quantity(quoted.substr(1, quoted.size() - 2)))
                        head = *h;
            }
        const json::value* params = request.as_object().if_contains("params");
        const json::value* tag =
            params && params->is_array() && !params->get_array().empty() ? &params->at(0) : nullptr;
        std::uint64_t number = head;
        if (tag && tag->is_string())
            if (auto n = jsonrpc::parse_quantity(tag->get_string())) number = *n;
        if (number > head) return FakeReply::ok("null");
        char text[200];
        std::snprintf(
            text, sizeof text, R"({"number":"0x%llx","hash":"0x%064llx","parentHash":"0x%064llx"})",
            static_cast<unsigned long long>(number), static_cast<unsigned long long>(number + 1),
            static_cast<unsigned long long>(number));
        return FakeReply::ok(text);
    }

    bool batches = false;

    asio::awaitable<http::Response> handle(http::Request& request) {
        http::Response response;
        {
            std::lock_guard lock(mu);
            raw.emplace_back(request.body, watched.empty() ? std::string()
                                                           : std::string(request.header(watched)));
        }
        json::error_code ec;
        json::value body = json::parse(request.body, ec);
        if (!ec && body.is_array()) {
            bool answer = false;
            {
                std::lock_guard lock(mu);
                ++counts["(batch)"];
                answer = batches;
            }
            if (answer) {
                // Each call as if alone; an HTTP-level reply to one (a status, a raw body) is the
                // answer to the whole batch.
                std::string out = "[";
                for (const auto& call : body.get_array()) {
                    http::Request one;
                    one.body = json::serialize(call);
                    http::Response r = co_await handle(one);
                    if (r.status != 200 || !r.body.starts_with("{")) co_return r;
                    if (out.size() > 1) out.push_back(',');
                    out += r.body;
                }
                response.body = out + "]";
                co_return response;
            }
        }
        if (ec || !body.is_object()) {
            response.status = 400;
            response.body =
                R"({"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"fake: not a single call"}})";
            co_return response;
        }
        const std::string method =
            body.as_object().contains("method") && body.at("method").is_string()
                ? std::string(body.at("method").get_string())
                : std::string();
        const std::string id =
            body.as_object().contains("id") ? json::serialize(body.at("id")) : "null";
        std::optional<FakeReply> reply;
        bool probe = false;
        {
            std::lock_guard lock(mu);
            ++counts[method];
            received[method].push_back(body);
            probe =
                method == "eth_chainId" || method == "eth_syncing" || method == "eth_blockNumber";
            if (!probe) max_in_flight = std::max(max_in_flight, ++in_flight);
            if (script) reply = script(method, body);
            if (!reply && method == "eth_getBlockByNumber") reply = block_by_number(body);
        }
        struct Leave {
            Impl* self;
            bool probe;
            ~Leave() {
                std::lock_guard lock(self->mu);
                if (!probe) --self->in_flight;
            }
        } leave{this, probe};
        if (!reply) {
            if (method == "eth_chainId")
                reply = FakeReply::ok("\"0x" + [this] {
                    char buf[32];
                    std::snprintf(buf, sizeof buf, "%llx",
                                  static_cast<unsigned long long>(chain_id));
                    return std::string(buf);
                }() + "\"");
            else if (method == "eth_blockNumber")
                reply = FakeReply::ok("\"0x10\"");
            else if (method == "eth_syncing")
                reply = FakeReply::ok("false");
            else
                reply = FakeReply::rpc_error(
                    -32601, "the method " + method + " does not exist/is not available");
        }
        if (reply->delay.count() > 0) {
            asio::steady_timer timer(co_await asio::this_coro::executor, reply->delay);
            co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
        }
        response.status = reply->status;
        response.headers = reply->headers;
        if (reply->raw_body) {
            response.body = *reply->raw_body;
        } else if (reply->error) {
            json::object e{{"code", reply->error->first}, {"message", reply->error->second}};
            response.body =
                R"({"jsonrpc":"2.0","id":)" + id + R"(,"error":)" + json::serialize(e) + "}";
        } else {
            response.body = R"({"jsonrpc":"2.0","id":)" + id + R"(,"result":)" +
                            reply->result.value_or("null") + "}";
        }
        co_return response;
    }
};

FakeUpstream::FakeUpstream(std::uint64_t chain_id, Script script)
    : impl_(std::make_unique<Impl>()) {
    impl_->chain_id = chain_id;
    impl_->script = std::move(script);
    http::ListenerOptions options;
    options.name = "fake-upstream";
    options.endpoint = config::Endpoint{"127.0.0.1", 0};
    impl_->listener = http::make_listener(
        impl_->ioc, options, [impl = impl_.get()](http::Request& r) { return impl->handle(r); },
        nullptr);
    impl_->listener->start();
    impl_->thread = std::thread([impl = impl_.get()] { impl->ioc.run(); });
}

FakeUpstream::~FakeUpstream() {
    impl_->ioc.stop();
    impl_->thread.join();
}

std::uint16_t FakeUpstream::port() const {
    return impl_->listener->local_endpoint().port;
}

void FakeUpstream::set_batches(bool on) {
    std::lock_guard lock(impl_->mu);
    impl_->batches = on;
}

void FakeUpstream::set_script(Script script) {
    std::lock_guard lock(impl_->mu);
    impl_->script = std::move(script);
}

std::size_t FakeUpstream::calls() const {
    std::lock_guard lock(impl_->mu);
    std::size_t n = 0;
    for (auto& [m, c] : impl_->counts) n += c;
    return n;
}

void FakeUpstream::watch_header(std::string name) {
    std::lock_guard lock(impl_->mu);
    impl_->watched = std::move(name);
}

std::vector<std::pair<std::string, std::string>> FakeUpstream::raw_requests() const {
    std::lock_guard lock(impl_->mu);
    return impl_->raw;
}

std::vector<boost::json::value> FakeUpstream::received(const std::string& method) const {
    std::lock_guard lock(impl_->mu);
    auto it = impl_->received.find(method);
    return it == impl_->received.end() ? std::vector<boost::json::value>{} : it->second;
}

std::size_t FakeUpstream::max_in_flight() const {
    std::lock_guard lock(impl_->mu);
    return impl_->max_in_flight;
}

std::size_t FakeUpstream::forwarded_calls() const {
    std::lock_guard lock(impl_->mu);
    std::size_t n = 0;
    for (auto& [m, c] : impl_->counts)
        if (m != "eth_chainId" && m != "eth_syncing" && m != "eth_blockNumber") n += c;
    return n;
}

std::size_t FakeUpstream::calls(const std::string& method) const {
    std::lock_guard lock(impl_->mu);
    auto it = impl_->counts.find(method);
    return it == impl_->counts.end() ? 0 : it->second;
}

}  // namespace gateway::test
