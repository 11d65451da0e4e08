#include "gateway/admin/admin_handler.hpp"

#include "gateway/admin/operator_page.hpp"
#include "gateway/admin/readiness.hpp"
#include "gateway/auth/auth.hpp"
#include "gateway/cache/chain_cache.hpp"
#include "gateway/chain/watcher.hpp"
#include "gateway/custody/custody_stub.hpp"
#include "gateway/eth/hex.hpp"
#include "gateway/metrics/metrics.hpp"
#include "gateway/store/journal_service.hpp"
#include "gateway/streams/stream_set.hpp"
#include "gateway/txm/managed.hpp"
#include "gateway/txm/tx_manager.hpp"
#include "gateway/upstream/pool.hpp"
#include "gateway/util/text.hpp"

#include <boost/url/parse.hpp>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

#include <algorithm>
#include <charconv>
#include <variant>

namespace gateway::admin {

namespace json = boost::json;

namespace {

http::Response json_response(unsigned status, const json::value& body) {
    http::Response r;
    r.status = status;
    r.body = json::serialize(body);
    r.body.push_back('\n');
    return r;
}

http::Response error_json(unsigned status, std::string message) {
    return json_response(status, json::object{{"error", std::move(message)}});
}

http::Response not_found_managed(const std::string& id) {
    return json_response(
        404, json::object{{"error", "no managed transaction '" + id.substr(0, 80) + "'"}});
}

const char* tier_name(config::Tier tier) {
    return tier == config::Tier::primary ? "primary" : "fallback";
}

}  // namespace

AdminHandler::AdminHandler(std::vector<upstream::ChainPool*> chains, metrics::Metrics* metrics,
                           const std::atomic<bool>* draining, store::JournalService* journal)
    : chains_(std::move(chains)), metrics_(metrics), draining_(draining), journal_(journal) {}

void AdminHandler::set_managed(std::vector<txm::ManagedSenders*> managed,
                               std::vector<custody::Signer*> signers) {
    managed_ = std::move(managed);
    signers_ = std::move(signers);
}

namespace {

// The HTTP status of an operator action's result.
unsigned status_of(txm::ActionResult::Outcome outcome) {
    switch (outcome) {
        case txm::ActionResult::Outcome::done: return 200;
        case txm::ActionResult::Outcome::accepted: return 202;
        case txm::ActionResult::Outcome::not_found: return 404;
        case txm::ActionResult::Outcome::conflict: return 409;
        case txm::ActionResult::Outcome::unavailable: return 503;
    }
    return 500;
}

// "<id>/<action>" of an admin path: the id, and the action ("" without a slash).
struct ActionTarget {
    std::string_view id;
    std::string_view action;
};

ActionTarget split_target(std::string_view rest) {
    const auto slash = rest.rfind('/');
    if (slash == std::string_view::npos) return {rest, {}};
    return {rest.substr(0, slash), rest.substr(slash + 1)};
}

}  // namespace

// POST /admin/transactions/<id>/retry or /cancel.
boost::asio::awaitable<http::Response> AdminHandler::managed_action(std::string_view rest) const {
    const ActionTarget target = split_target(rest);
    const std::string_view id = target.id;
    const std::string_view action = target.action;
    if (action != "retry" && action != "cancel")
        co_return error_json(404, "use POST /admin/transactions/<id>/retry or /cancel");
    const std::string key(id);
    for (auto* m : managed_) {
        // (Plain statements: GCC 12 mishandles co_await inside a conditional expression.)
        txm::ActionResult a;
        if (action == "retry")
            a = co_await m->retry(key);
        else
            a = co_await m->cancel(key);
        if (a.outcome != txm::ActionResult::Outcome::not_found)
            co_return json_response(status_of(a.outcome), a.body);
    }
    co_return not_found_managed(key);
}

// POST /admin/approvals/<id>/approve or /reject, with {"by": "...", "reason": "..."}: `by` (who
// decides) is required, for the transaction's history.
boost::asio::awaitable<http::Response> AdminHandler::decide(std::string_view rest,
                                                            const std::string& body) const {
    const ActionTarget target = split_target(rest);
    const std::string_view id = target.id;
    const std::string_view action = target.action;
    if (action != "approve" && action != "reject")
        co_return error_json(404, "use POST /admin/approvals/<id>/approve or /reject");
    json::error_code ec;
    json::value v = json::parse(body, ec);
    const json::object* o = ec ? nullptr : v.if_object();
    const json::value* by = o ? o->if_contains("by") : nullptr;
    const json::value* reason = o ? o->if_contains("reason") : nullptr;
    const auto printable = [](std::string_view text) {
        return std::none_of(text.begin(), text.end(), [](char c) {
            return static_cast<unsigned char>(c) < 0x20 || c == 0x7f;
        });
    };
    if (!by || !by->is_string() || by->as_string().empty() || by->as_string().size() > 128 ||
        !printable(by->as_string()) || (reason && !reason->is_string()) ||
        (reason && (reason->as_string().size() > 1000 || !printable(reason->as_string()))))
        co_return error_json(400,
                             "the body must be {\"by\": \"<who decides, 1-128 characters>\", "
                             "\"reason\": \"<optional, up to 1000 characters>\"}, without "
                             "control characters");
    const std::string who(by->as_string());
    std::string why;
    if (reason) why = std::string(reason->as_string());
    const std::string key = util::lower(id);
    for (auto* m : managed_) {
        txm::ActionResult a = co_await m->decide(key, action == "approve", who, why);
        if (a.outcome != txm::ActionResult::Outcome::not_found)
            co_return json_response(status_of(a.outcome), a.body);
    }
    co_return not_found_managed(key);
}

// GET /admin/approvals: the managed transactions held for approval, every chain's, oldest first.
http::Response AdminHandler::approvals() const {
    json::array list;
    for (auto* m : managed_)
        for (auto& held : m->approvals()) list.push_back(std::move(held));
    // heldSince is ISO 8601 in UTC, the same width everywhere: its text sorts as its time.
    std::stable_sort(list.begin(), list.end(), [](const json::value& a, const json::value& b) {
        return a.at("heldSince").as_string() < b.at("heldSince").as_string();
    });
    json::object body;
    body["approvals"] = std::move(list);
    return json_response(200, body);
}

// POST /admin/streams/<id>/pause, /resume, or /reset with {"from_block": n}: the next block to
// deliver from (its events are delivered again: at least once).
boost::asio::awaitable<http::Response> AdminHandler::stream_action(std::string_view rest,
                                                                   const std::string& body) const {
    const ActionTarget target = split_target(rest);
    const std::string_view id = target.id;
    const std::string_view action = target.action;
    if (action != "pause" && action != "resume" && action != "reset")
        co_return error_json(404, "use POST /admin/streams/<id>/pause, /resume or /reset");
    std::optional<std::uint64_t> from_block;
    if (action == "reset") {
        json::error_code ec;
        json::value v = json::parse(body, ec);
        const json::object* o = ec ? nullptr : v.if_object();
        const json::value* from = o ? o->if_contains("from_block") : nullptr;
        if (from && from->is_uint64()) from_block = from->get_uint64();
        if (from && from->is_int64() && from->get_int64() >= 0)
            from_block = static_cast<std::uint64_t>(from->get_int64());
        if (!from_block)
            co_return error_json(400, "reset takes {\"from_block\": <the block to deliver from>}");
    }
    if (!streams_) co_return error_json(404, "no stream '" + std::string(id.substr(0, 64)) + "'");
    std::string stream(id);
    std::string what(action);
    streams::StreamAnswer a =
        co_await streams_->act(std::move(stream), std::move(what), from_block);
    co_return json_response(a.status, a.body);
}

// GET /admin/streams: every stream, then those the journal keeps a checkpoint of that the config
// no longer names (paused while they are out of it; back in it, they resume there).
boost::asio::awaitable<http::Response> AdminHandler::streams_view() const {
    if (!streams_) co_return json_response(200, json::object{{"streams", json::array{}}});
    streams::StreamAnswer a = co_await streams_->view();
    co_return json_response(a.status, a.body);
}

// POST /admin/streams with a definition: a new stream; DELETE /admin/streams/<id>: one made that
// way (or the checkpoint of one the config no longer names).
boost::asio::awaitable<http::Response> AdminHandler::stream_create_or_delete(
    const http::Request& request) const {
    if (!streams_) co_return error_json(503, "streams are not available here");
    streams::StreamAnswer a;
    if (request.method == "POST") {
        a = co_await streams_->create(request.body);
    } else {
        constexpr std::string_view kStreams = "/admin/streams/";
        std::string id(request.path().substr(kStreams.size()));
        a = co_await streams_->remove(std::move(id));
    }
    co_return json_response(a.status, a.body);
}

// POST /admin/senders/<address>/resync.
boost::asio::awaitable<http::Response> AdminHandler::resync(std::string_view rest) const {
    constexpr std::string_view kSuffix = "/resync";
    if (rest.size() <= kSuffix.size() || rest.substr(rest.size() - kSuffix.size()) != kSuffix)
        co_return error_json(404, "use POST /admin/senders/<address>/resync");
    const std::string address = util::lower(rest.substr(0, rest.size() - kSuffix.size()));
    json::array done;
    for (auto* m : managed_) {
        if (!m->manages(address)) continue;
        txm::ActionResult a = co_await m->resync(address);
        if (a.outcome != txm::ActionResult::Outcome::done)
            co_return json_response(status_of(a.outcome), a.body);
        done.push_back(std::move(a.body));
    }
    if (done.empty()) co_return error_json(404, address.substr(0, 64) + " is not a managed sender");
    json::object body;
    body["resynced"] = std::move(done);
    co_return json_response(200, body);
}

// GET /admin/chains: each chain's head and the reorgs seen.
http::Response AdminHandler::chains_view() const {
    json::array list;
    for (std::size_t i = 0; i < watchers_.size(); ++i) {
        json::object chain = watchers_[i]->view();
        if (i < caches_.size()) chain["cache"] = caches_[i]->view();
        list.push_back(std::move(chain));
    }
    json::object body;
    body["chains"] = std::move(list);
    return json_response(200, body);
}

// GET /admin/signers: each signer, its addresses, and a custody stub's counters and faults.
http::Response AdminHandler::signers() const {
    json::array list;
    for (auto* s : signers_) {
        json::array addresses;
        for (const auto& a : s->addresses()) addresses.push_back(json::string(eth::to_hex(a)));
        json::object o{{"id", s->id()}, {"addresses", std::move(addresses)}};
        if (auto* stub = dynamic_cast<custody::CustodyStub*>(s)) {
            o["type"] = "custody-stub";
            o["signRequests"] = stub->sign_requests();
            o["signatures"] = stub->signatures();
            json::array nonces;
            for (const auto& n : stub->signed_nonces())
                nonces.push_back(json::object{{"from", eth::to_hex(n.from)}, {"nonce", n.nonce}});
            o["signed"] = std::move(nonces);
        }
        list.push_back(std::move(o));
    }
    return json_response(200, json::object{{"signers", std::move(list)}});
}

// POST /admin/signers/<id>/faults {"unreachable": bool, "timeout": bool, "latency_ms": n,
// "refuse_next": n, "approval_pending": bool}: a custody stub's faults, for tests and rehearsals.
http::Response AdminHandler::signer_faults(std::string_view rest, const std::string& body) const {
    constexpr std::string_view kSuffix = "/faults";
    if (rest.size() <= kSuffix.size() || rest.substr(rest.size() - kSuffix.size()) != kSuffix)
        return json_response(404, json::object{{"error", "use POST /admin/signers/<id>/faults"}});
    const std::string_view id = rest.substr(0, rest.size() - kSuffix.size());
    custody::CustodyStub* stub = nullptr;
    for (auto* s : signers_)
        if (s->id() == id) stub = dynamic_cast<custody::CustodyStub*>(s);
    if (!stub)
        return json_response(404, json::object{{"error", "no custody-stub signer '" +
                                                             std::string(id.substr(0, 64)) + "'"}});
    json::error_code ec;
    json::value v = json::parse(body, ec);
    const json::object* o = !ec ? v.if_object() : nullptr;
    const auto flag = [&](const char* key) -> std::optional<bool> {
        const json::value* f = o ? o->if_contains(key) : nullptr;
        return f && f->is_bool() ? std::optional<bool>(f->get_bool()) : std::nullopt;
    };
    const auto count = [&](const char* key) -> std::optional<std::uint64_t> {
        const json::value* f = o ? o->if_contains(key) : nullptr;
        if (!f) return std::nullopt;
        if (f->is_uint64()) return f->get_uint64();
        if (f->is_int64() && f->get_int64() >= 0) return static_cast<std::uint64_t>(f->get_int64());
        return std::nullopt;
    };
    if (!o) return json_response(400, json::object{{"error", "the body must be a JSON object"}});
    for (const auto& [key, value] : *o) {
        const bool known = (key == "unreachable" || key == "timeout" || key == "approval_pending")
                               ? value.is_bool()
                           : (key == "latency_ms" || key == "refuse_next")
                               ? count(key.data()).has_value()
                               : false;
        if (!known)
            return json_response(400, json::object{{"error",
                                                    "fields: unreachable (bool), timeout (bool), "
                                                    "latency_ms (integer), refuse_next (integer), "
                                                    "approval_pending (bool)"}});
    }
    if (auto f = flag("unreachable")) stub->set_unreachable(*f);
    if (auto f = flag("timeout")) stub->set_timeout_mode(*f);
    if (auto n = count("latency_ms")) stub->set_latency(std::chrono::milliseconds(*n));
    if (auto n = count("refuse_next")) stub->refuse_next(*n);
    if (auto f = flag("approval_pending")) stub->set_approval_pending(*f);
    return json_response(200, json::object{{"id", stub->id()}, {"applied", *o}});
}

// GET /admin/transactions[?state=QUEUED&limit=100] (signed transactions: raw ones and managed
// ones' attempts), ?kind=managed[&state=...] or ?idempotency_key=<key> (managed transactions), and
// /admin/transactions/<hash|id>.
boost::asio::awaitable<http::Response> AdminHandler::transactions(
    const http::Request& request) const {
    if (!journal_)
        co_return json_response(404, json::object{{"error", "this gateway keeps no journal"}});
    const std::string_view path = request.path();
    constexpr std::string_view kPrefix = "/admin/transactions";
    std::string_view hash = path.substr(kPrefix.size());
    if (!hash.empty() && hash.front() == '/') hash.remove_prefix(1);

    std::optional<store::TxState> state;
    std::size_t limit = 100;
    bool managed = false;
    bool signed_asked = false;
    std::optional<std::string> idempotency_key;
    if (auto url = boost::urls::parse_origin_form(request.target)) {
        for (const auto& p : url->params()) {
            if (p.key == "state") {
                std::string upper(p.value);
                for (auto& c : upper) c = static_cast<char>(std::toupper(c));
                state = store::parse_tx_state(upper);
                if (!state)
                    co_return json_response(
                        400, json::object{{"error",
                                           "state must be one of QUEUED, PREPARING, SIGNING, "
                                           "PENDING_APPROVAL, BROADCASTING, CONFIRMING, "
                                           "COMPLETED, FAILED, DEAD_LETTER, CANCELLED, "
                                           "REPLACED"}});
            } else if (p.key == "kind") {
                if (p.value != "managed" && p.value != "signed")
                    co_return error_json(400, "kind must be managed or signed");
                managed = p.value == "managed";
                signed_asked = !managed;
            } else if (p.key == "idempotency_key") {
                // As long as a send takes (ManagedSenders::send).
                if (p.value.empty() || p.value.size() > 256)
                    co_return error_json(400, "idempotency_key must have 1 to 256 characters");
                idempotency_key = std::string(p.value);
            } else if (p.key == "limit") {
                std::size_t asked = 0;
                const auto* end = p.value.data() + p.value.size();
                const auto parsed = std::from_chars(p.value.data(), end, asked);
                if (parsed.ec != std::errc{} || parsed.ptr != end || p.value.empty())
                    co_return json_response(
                        400, json::object{{"error", "limit must be a number (1 to 10000)"}});
                limit = std::clamp<std::size_t>(asked, 1, 10'000);
            }
        }
    }
    if (idempotency_key) {
        // Only managed transactions have keys.
        if (signed_asked) co_return error_json(400, "idempotency_key is for kind=managed");
        managed = true;
    }
    const std::string key = util::lower(hash);
    if (key.substr(0, 4) == "gtx-") {
        for (auto* m : managed_) {
            jsonrpc::Reply r = co_await m->describe(key);
            if (r.is_error())
                co_return json_response(503, json::object{{"error", r.error.message}});
            if (*r.result != "null") {
                http::Response out;
                out.body = *r.result + "\n";
                co_return out;
            }
        }
        co_return json_response(
            404, json::object{{"error", "no managed transaction " + key.substr(0, 80)}});
    }
    if (managed && key.empty())
        co_return co_await managed_list(state, std::move(idempotency_key), limit);
    std::vector<store::TxRecord> records;
    std::vector<store::TxEvent> history;
    store::JournalService::Operation op = [&](store::RawJournal& j) {
        if (!key.empty()) {
            if (auto r = j.find(key)) {
                records.push_back(std::move(*r));
                history = j.history(key);
            }
        } else {
            records = j.list(state, limit);
        }
    };
    const auto read = co_await journal_->run(std::move(op));
    if (!read) {
        co_return json_response(
            503,
            json::object{{"error", std::string("the journal cannot be read: ") + read.error()}});
    }
    if (!key.empty()) {
        if (records.empty())
            co_return json_response(
                404,
                json::object{{"error", "no transaction " + key.substr(0, 80) + " in the journal"}});
        co_return json_response(200, txm::record_json(records.front(), &history));
    }
    json::array list;
    for (const auto& r : records) list.push_back(txm::record_json(r, nullptr));
    co_return json_response(200, json::object{{"transactions", std::move(list)}});
}

// The managed transactions of /admin/transactions?kind=managed or ?idempotency_key=.
boost::asio::awaitable<http::Response> AdminHandler::managed_list(
    std::optional<store::TxState> state, std::optional<std::string> idempotency_key,
    std::size_t limit) const {
    std::vector<store::ManagedRecord> records;
    store::JournalService::Operation op = [&](store::ManagedJournal& j) {
        std::optional<std::string_view> key;
        if (idempotency_key) key = *idempotency_key;
        records = j.list_managed(state, key, limit);
    };
    const auto read = co_await journal_->run(std::move(op));
    if (!read)
        co_return error_json(503, std::string("the journal cannot be read: ") + read.error());
    json::array list;
    for (const auto& r : records) list.push_back(txm::managed_json(r));
    co_return json_response(200, json::object{{"transactions", std::move(list)}});
}

std::string AdminHandler::refusal_body(unsigned, std::string_view message) {
    return json::serialize(json::object{{"error", message}});
}

// GET /readyz[?require=upstreams,journal]: see readiness.hpp.
http::Response AdminHandler::readyz(const http::Request& request) const {
    const auto required = parse_readiness_requirements(request.target);
    if (const auto* why = std::get_if<std::string>(&required)) return error_json(400, *why);
    ReadinessFacts facts;
    facts.draining = draining_->load();
    for (std::size_t i = 0; i < chains_.size(); ++i) {
        facts.chains.push_back({chains_[i]->config().name, chains_[i]->ready(), std::nullopt});
        if (i < transactions_loaded_.size() && transactions_loaded_[i])
            facts.chains.back().transactions_loaded = transactions_loaded_[i]();
    }
    facts.journal_problem = journal_problem();
    Readiness r = readiness(facts, std::get<ReadinessRequirements>(required));
    return json_response(r.status, r.body);
}

// The one question readiness asks of the journal: does it take writes now? The outcome of its
// latest operation (or attempt to open it), as the journal service keeps it: answering costs
// nothing and never waits behind a slow disk.
std::optional<std::string> AdminHandler::journal_problem() const {
    if (!journal_) return std::string("this gateway keeps no journal");
    std::string failure = journal_->failure();
    if (failure.empty()) return std::nullopt;
    return failure;
}

static json::object upstream_json(const std::string& chain, const upstream::UpstreamView& v) {
    using namespace std::chrono;
    const auto now = steady_clock::now();
    const auto& st = v.status;
    json::object o{
        {"chain", chain},
        {"id", st.id},
        {"tier", tier_name(st.tier)},
        {"state", v.state},
        {"reason", v.reason},
        {"score", v.score},
        {"score_explained", v.score_explained},
        {"health", to_string(st.health)},
        {"health_since_ms", duration_cast<milliseconds>(now - st.since).count()},
        {"syncing", st.syncing},
        {"cordoned", st.cordoned},
        {"breaker", to_string(st.breaker)},
        {"consecutive_failures", st.consecutive_failures},
        {"latency_ms", json::object{{"ewma", st.latency_ewma_ms}, {"p90", st.latency_p90_ms}}},
        {"error_rate", st.error_rate},
        {"throttle_rate", st.throttle_rate},
        {"in_flight", st.in_flight},
        {"requests", st.requests},
        {"failures", st.failures},
    };
    o["head"] = st.head ? json::value(*st.head) : json::value(nullptr);
    o["claimed_head"] = st.claimed_head ? json::value(*st.claimed_head) : json::value(nullptr);
    o["head_age_ms"] = st.head
                           ? json::value(duration_cast<milliseconds>(now - st.head_changed).count())
                           : json::value(nullptr);
    o["lag_blocks"] = v.lag ? json::value(*v.lag) : json::value(nullptr);
    o["throttled_for_ms"] =
        st.throttled_until
            ? json::value(duration_cast<milliseconds>(*st.throttled_until - now).count())
            : json::value(nullptr);
    return o;
}

http::Response AdminHandler::upstreams() const {
    json::array list;
    json::object chains;
    for (auto* c : chains_) {
        const auto head = c->head();
        chains[c->config().name] =
            json::object{{"head", head ? json::value(*head) : json::value(nullptr)}};
        for (const auto& v : c->view()) list.push_back(upstream_json(c->config().name, v));
    }
    return json_response(
        200, json::object{{"chains", std::move(chains)}, {"upstreams", std::move(list)}});
}

// POST /admin/upstreams/<id>/cordon or /uncordon, with an optional {"reason": "..."} body.
http::Response AdminHandler::cordon(std::string_view rest, const std::string& body) const {
    const auto slash = rest.rfind('/');
    if (slash == std::string_view::npos)
        return json_response(404, json::object{{"error", "not found"}});
    const std::string_view id = rest.substr(0, slash);
    const std::string_view action = rest.substr(slash + 1);
    if (action != "cordon" && action != "uncordon")
        return json_response(
            404, json::object{{"error", "use /admin/upstreams/<id>/cordon or /uncordon"}});
    std::string reason = "cordoned by an operator";
    if (!body.empty()) {
        json::error_code ec;
        json::value v = json::parse(body, ec);
        if (ec || !v.is_object() ||
            (v.as_object().contains("reason") && !v.at("reason").is_string()))
            return json_response(
                400, json::object{{"error", "the body must be {\"reason\": \"...\"} or empty"}});
        if (const auto* r = v.as_object().if_contains("reason"))
            reason = std::string(r->as_string());
    }
    for (auto* c : chains_) {
        if (!c->cordon(id, action == "cordon", reason)) continue;
        for (const auto& v : c->view())
            if (v.status.id == id) return json_response(200, upstream_json(c->config().name, v));
    }
    return json_response(404, json::object{{"error", "no upstream with id '" +
                                                         std::string(id.substr(0, 64)) + "'"}});
}

std::optional<http::Response> AdminHandler::check_token(http::Request& request) const {
    // What a checked request carries as its principal: the operator (there is one token).
    static const auto kOperator = std::make_shared<const std::string>("operator");
    const std::string_view path = request.path();
    // The operator page's files hold no data: the page sends the token to the admin API itself.
    const bool page = is_operator_page(path);
    const bool open = path == "/healthz" || path == "/readyz" || path == "/metrics" ||
                      (request.method == "GET" && page);
    if (open) {
        // What answers without the token takes no body: a stranger's is refused on its head,
        // never read.
        const std::string_view length = request.header("content-length");
        if ((!length.empty() && length != "0") || !request.header("transfer-encoding").empty()) {
            http::Response r = error_json(400, "this endpoint takes no body");
            if (page) add_page_headers(r);
            return r;
        }
        return std::nullopt;
    }
    const std::shared_ptr<const std::string> token = this->token();
    if (token->empty()) return std::nullopt;
    const std::string_view presented = auth::bearer_token(request.header("authorization"));
    const bool ok = !presented.empty() && auth::secret_equals(presented, *token);
    if (metrics_)
        metrics_->count_auth("admin", presented.empty() ? "missing" : ok ? "ok" : "invalid");
    if (ok) {
        request.principal = kOperator;
        return std::nullopt;
    }
    http::Response r = error_json(
        401, presented.empty() ? "the admin API needs Authorization: Bearer <token> (auth.admin)"
                               : "the admin token is not valid (auth.admin)");
    r.headers.emplace_back("WWW-Authenticate", "Bearer realm=\"chain-gateway admin\"");
    if (page) add_page_headers(r);
    return r;
}

boost::asio::awaitable<std::optional<http::Response>> AdminHandler::check_head(
    http::Request& request) const {
    co_return check_token(request);
}

void AdminHandler::require_token(std::string token) {
    auto next = std::make_shared<const std::string>(std::move(token));
    std::lock_guard lock(token_mu_);
    token_ = std::move(next);
}

std::shared_ptr<const std::string> AdminHandler::token() const {
    std::lock_guard lock(token_mu_);
    return token_;
}

boost::asio::awaitable<http::Response> AdminHandler::operator()(http::Request& request) {
    const std::string_view path = request.path();
    // Checked on the head already when the listener has the head check (principal set).
    if (!request.principal)
        if (auto refused = check_token(request)) co_return std::move(*refused);
    if (is_operator_page(path)) co_return operator_page(request.method, path);
    constexpr std::string_view kUpstreams = "/admin/upstreams/";
    if (path.substr(0, kUpstreams.size()) == kUpstreams) {
        if (request.method != "POST")
            co_return json_response(405, json::object{{"error", "cordon and uncordon take POST"}});
        co_return cordon(path.substr(kUpstreams.size()), request.body);
    }
    constexpr std::string_view kTransactions = "/admin/transactions/";
    constexpr std::string_view kSenders = "/admin/senders/";
    constexpr std::string_view kSigners = "/admin/signers/";
    constexpr std::string_view kApprovals = "/admin/approvals/";
    constexpr std::string_view kStreams = "/admin/streams/";
    if ((request.method == "POST" && path == "/admin/streams") ||
        (request.method == "DELETE" && path.substr(0, kStreams.size()) == kStreams &&
         path.find('/', kStreams.size()) == std::string_view::npos))
        co_return co_await stream_create_or_delete(request);
    if (request.method == "POST" && path == "/admin/reload") {
        if (!reload_)
            co_return json_response(
                501, json::object{{"error", "this gateway was not started from a config file"}});
        ReloadAnswer answer = reload_();
        co_return json_response(answer.status, std::move(answer.body));
    }
    if (request.method == "POST") {
        if (path.substr(0, kStreams.size()) == kStreams)
            co_return co_await stream_action(path.substr(kStreams.size()), request.body);
        if (path.substr(0, kApprovals.size()) == kApprovals)
            co_return co_await decide(path.substr(kApprovals.size()), request.body);
        if (path.substr(0, kTransactions.size()) == kTransactions)
            co_return co_await managed_action(path.substr(kTransactions.size()));
        if (path.substr(0, kSenders.size()) == kSenders)
            co_return co_await resync(path.substr(kSenders.size()));
        if (path.substr(0, kSigners.size()) == kSigners)
            co_return signer_faults(path.substr(kSigners.size()), request.body);
    }
    if (request.method != "GET")
        co_return json_response(405, json::object{{"error", "this admin endpoint answers GET"}});
    if (path == "/healthz") co_return json_response(200, json::object{{"status", "ok"}});
    if (path == "/readyz") co_return readyz(request);
    if (path == "/admin/upstreams") co_return upstreams();
    if (path == "/admin/signers") co_return signers();
    if (path == "/admin/chains") co_return chains_view();
    if (path == "/admin/approvals") co_return approvals();
    if (path == "/admin/streams") co_return co_await streams_view();
    if (path.substr(0, 19) == "/admin/transactions") co_return co_await transactions(request);
    if (path == "/metrics") {
        // The pool's gauges as of now, not as of the last probe.
        for (auto* c : chains_) c->publish_metrics();
        for (auto* c : caches_) c->publish_metrics();
        http::Response r;
        r.content_type = "text/plain; version=0.0.4; charset=utf-8";
        r.body = metrics_->render();
        co_return r;
    }
    co_return json_response(
        404, json::object{{"error", "not found"},
                          {"endpoints", json::array{"/ui/ (the operator page)",
                                                    "/healthz",
                                                    "/readyz",
                                                    "/metrics",
                                                    "/admin/upstreams",
                                                    "/admin/upstreams/<id>/cordon",
                                                    "/admin/upstreams/<id>/uncordon",
                                                    "/admin/transactions?state=&limit=",
                                                    "/admin/transactions?kind=managed&state=",
                                                    "/admin/transactions?idempotency_key=",
                                                    "/admin/transactions/<hash|id>",
                                                    "POST /admin/transactions/<id>/retry",
                                                    "POST /admin/transactions/<id>/cancel",
                                                    "POST /admin/senders/<address>/resync",
                                                    "/admin/signers",
                                                    "/admin/chains",
                                                    "POST /admin/signers/<id>/faults",
                                                    "/admin/approvals",
                                                    "POST /admin/approvals/<id>/approve",
                                                    "POST /admin/approvals/<id>/reject",
                                                    "/admin/streams",
                                                    "POST /admin/streams",
                                                    "DELETE /admin/streams/<id>",
                                                    "POST /admin/streams/<id>/pause",
                                                    "POST /admin/streams/<id>/resume",
                                                    "POST /admin/streams/<id>/reset",
                                                    "POST /admin/reload"}}});
}

}  // namespace gateway::admin
