#pragma once
// The transaction states as SQL lists, for the queries of every SQL backend (SQLite,
// PostgreSQL): a migration spells its own lists, as its text never changes.

#include "gateway/store/journal.hpp"

#include <fmt/format.h>

#include <iterator>
#include <string>
#include <vector>

namespace gateway::store::sql {

/// `states` as an SQL list: ('A', 'B').
inline std::string list(const std::vector<TxState>& states) {
    std::string out = "(";
    for (TxState s : states)
        fmt::format_to(std::back_inserter(out), "{}'{}'", out.size() > 1 ? ", " : "", to_string(s));
    return out + ")";
}

/// The states from queued to replaced whose store::is_final is `final`, as an SQL list.
inline std::string states(bool final) {
    std::vector<TxState> out;
    for (int i = 0; i <= static_cast<int>(TxState::replaced); ++i)
        if (is_final(static_cast<TxState>(i)) == final) out.push_back(static_cast<TxState>(i));
    return list(out);
}

/// store::is_final as SQL: every state a transaction, raw or managed, ends in.
inline const std::string kFinal = states(true);
/// Every state not final, as SQL: what is unfinished is asked for as `state IN` this list, which
/// an index by state answers, where `NOT IN` the final ones reads every row of the table.
inline const std::string kUnfinished = states(false);
/// The final states a mined transaction can be in: final for good only once its block is.
inline const std::string kMined = list({TxState::completed, TxState::failed});

}  // namespace gateway::store::sql
