// What every signer shares: how a signer's own words are read, and the outcomes' names.

#include "gateway/custody/signer.hpp"

#include "gateway/util/text.hpp"

#include <algorithm>
#include <array>

namespace gateway::custody {

bool says_not_ready(std::string_view message) {
    const std::string text = util::lower(message);
    const auto has = [&](std::string_view word) { return text.find(word) != std::string::npos; };
    // A no is a no, even when it speaks of approval ("approval denied"): the transaction fails
    // with the signer's reason.
    static constexpr std::array<std::string_view, 8> kNo = {
        "denied",      "reject",   "forbidden", "not permitted",
        "not allowed", "declined", "blocked",   "not approved"};
    if (std::any_of(kNo.begin(), kNo.end(), has)) return false;
    // The signer cannot sign now: its key is not there yet, it is sealed or locked, or a person
    // has yet to approve. Asked again later, never counted against the transaction.
    static constexpr std::array<std::string_view, 12> kNotNow = {
        "not loaded", "locked",   "sealed",   "not ready", "unavailable", "not available",
        "pending",    "awaiting", "approval", "try again", "temporarily", "busy"};
    return std::any_of(kNotNow.begin(), kNotNow.end(), has);
}

bool says_approval_pending(std::string_view message) {
    if (!says_not_ready(message)) return false;
    const std::string text = util::lower(message);
    const auto has = [&](std::string_view word) { return text.find(word) != std::string::npos; };
    // "approval service unavailable, try again" is custody that is away, not a person's hold.
    static constexpr std::array<std::string_view, 6> kAway = {
        "unavailable", "not available", "try again", "temporarily", "busy", "not ready"};
    if (std::any_of(kAway.begin(), kAway.end(), has)) return false;
    return has("approv");
}

const char* to_string(Signed::Outcome outcome) {
    switch (outcome) {
        case Signed::Outcome::signed_ok: return "signed";
        case Signed::Outcome::unavailable: return "unavailable";
        case Signed::Outcome::pending_approval: return "pending_approval";
        case Signed::Outcome::refused: return "refused";
        case Signed::Outcome::malformed: return "malformed";
    }
    return "unknown";
}

}  // namespace gateway::custody
