#pragma once
// A fault-injectable stand-in for an outside policy service (README, "The policy service"),
// served on loopback by a FakeUpstream: it answers each POST with the decision a test sets, or
// by a rule on the transaction, and can be made slow, down (HTTP 503) or to answer nonsense.

#include "support/fake_upstream.hpp"

#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

namespace gateway::test {

class FakePolicyService {
public:
    /// A decision, "allow", "hold" or "deny", with its reason; or nullopt for the default.
    struct Decision {
        std::string decision = "allow";
        std::string reason;
    };
    /// Decides on one request ({id, chain, chainId, from, transaction, client, idempotencyKey}).
    using Rule = std::function<Decision(const boost::json::object& request)>;

    FakePolicyService() : state_(std::make_shared<State>()) {
        upstream_.set_script(
            [state = state_](const std::string&,
                             const boost::json::value& body) -> std::optional<FakeReply> {
                std::lock_guard lock(state->mu);
                ++state->asked;
                FakeReply reply;
                reply.delay = state->delay;
                if (state->down) {
                    reply.status = 503;
                    reply.raw_body = "policy service down (test fault)";
                    return reply;
                }
                if (state->nonsense) {
                    reply.raw_body = R"({"verdict":"yes"})";
                    return reply;
                }
                Decision d = state->decision;
                if (state->rule && body.is_object()) d = state->rule(body.get_object());
                boost::json::object answer{{"decision", d.decision}};
                if (!d.reason.empty()) answer["reason"] = d.reason;
                reply.raw_body = boost::json::serialize(answer);
                return reply;
            });
    }

    std::string url() const { return upstream_.url() + "/check"; }

    void decide(std::string decision, std::string reason = {}) {
        std::lock_guard lock(state_->mu);
        state_->decision = Decision{std::move(decision), std::move(reason)};
        state_->rule = nullptr;
    }
    void set_rule(Rule rule) {
        std::lock_guard lock(state_->mu);
        state_->rule = std::move(rule);
    }
    /// HTTP 503 to every request while set.
    void set_down(bool down) {
        std::lock_guard lock(state_->mu);
        state_->down = down;
    }
    /// An answer without a decision while set.
    void set_nonsense(bool nonsense) {
        std::lock_guard lock(state_->mu);
        state_->nonsense = nonsense;
    }
    void set_delay(std::chrono::milliseconds delay) {
        std::lock_guard lock(state_->mu);
        state_->delay = delay;
    }
    std::size_t asked() const {
        std::lock_guard lock(state_->mu);
        return state_->asked;
    }
    /// The requests received, in order.
    std::vector<boost::json::value> requests() const { return upstream_.received(""); }

private:
    struct State {
        mutable std::mutex mu;
        Decision decision;
        Rule rule;
        bool down = false;
        bool nonsense = false;
        std::chrono::milliseconds delay{0};
        std::size_t asked = 0;
    };
    std::shared_ptr<State> state_;
    FakeUpstream upstream_;
};

}  // namespace gateway::test
