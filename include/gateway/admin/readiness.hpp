#pragma once
// What /readyz answers. Ready means "this process can take work": its listeners are up (it
// answers) and it is not draining. Whether each chain has an upstream that answers and whether
// the journal takes writes are in the body; a caller that wants either as a condition asks for
// it (`/readyz?require=upstreams,journal`). By default neither is: with every node down, writes
// queue and reads are served stale (catalog row B2), and a journal that refuses writes still
// serves reads, so a sidecar's pod stays in its Service.

#include <boost/json/object.hpp>

#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace gateway::admin {

/// The conditions a caller added to readiness.
struct ReadinessRequirements {
    bool upstreams = false;  ///< every chain has an upstream known to answer
    /// The journal takes writes and every chain has loaded its unfinished transactions from it
    /// (until then a chain refuses writes: many unfinished, or a slow disk, take a while to read)
    bool journal = false;
};

/// Reads `require` from a request target's query: comma-separated, the parameter may repeat;
/// values `upstreams` and `journal`. Otherwise a message for people naming the unknown value.
std::variant<ReadinessRequirements, std::string> parse_readiness_requirements(
    std::string_view target);

/// What readiness looks at, as of now.
struct ReadinessFacts {
    struct Chain {
        std::string name;
        bool upstream_answers = false;  ///< some upstream is known to answer
        /// Its unfinished transactions are loaded from the journal (writes are taken); nullopt
        /// for a chain whose loading is not known.
        std::optional<bool> transactions_loaded;
    };
    bool draining = false;
    std::vector<Chain> chains;
    /// Why the journal refuses writes; nullopt while it takes them.
    std::optional<std::string> journal_problem;
};

struct Readiness {
    unsigned status = 200;  ///< 200 or 503
    boost::json::object body;
};

/// The answer: 503 while draining or while a required condition does not hold; the body says
/// every fact and, under `not_ready`, each reason for a 503.
Readiness readiness(const ReadinessFacts& facts, const ReadinessRequirements& required);

}  // namespace gateway::admin
