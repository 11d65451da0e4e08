#pragma once
// On a journal several gateways share, the standbys journal what they accept and hand it to the
// gateway that dispatches (store::HandoffJournal): how often that one looks, how many it takes at
// a time, and how often a standby looks in the journal for what became of one it accepted.

#include "gateway/store/journal_service.hpp"

#include <chrono>
#include <cstddef>
#include <memory>
#include <vector>

namespace gateway::txm {

constexpr std::chrono::milliseconds kHandoffPoll{100};
constexpr std::size_t kHandoffBatch = 1000;
constexpr std::chrono::milliseconds kStandbyPoll{100};

/// The operation that hands `handoffs` back to the journal, to be taken again: what a take whose
/// commit failed or came too late took (its caller dropped what it read), or what the taker
/// cannot carry on yet. Taken twice is harmless; never taken is not.
inline store::JournalService::Operation hand_back(
    std::shared_ptr<const std::vector<store::Handoff>> handoffs) {
    return [handoffs = std::move(handoffs)](store::JournalView& j) {
        for (const auto& h : *handoffs) j.hand_off(h);
    };
}

}  // namespace gateway::txm
