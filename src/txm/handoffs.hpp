#pragma once
// On a journal several gateways share, the standbys journal what they accept and hand it to the
// gateway that dispatches (store::HandoffJournal): how often that one looks, how many it takes at
// a time, and how often a standby looks in the journal for what became of one it accepted.

#include <chrono>
#include <cstddef>

namespace gateway::txm {

constexpr std::chrono::milliseconds kHandoffPoll{100};
constexpr std::size_t kHandoffBatch = 1000;
constexpr std::chrono::milliseconds kStandbyPoll{100};

}  // namespace gateway::txm
