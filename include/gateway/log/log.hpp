#pragma once
// Logging: spdlog's default logger, writing JSON lines (or plain text) to stdout.

#include "gateway/config/config.hpp"

#include <spdlog/formatter.h>

#include <memory>

namespace gateway::log {

/// A formatter that writes one JSON object per line: {"ts","level","msg"}. The message is escaped,
/// so a value that came from a client or a node cannot break the line apart.
std::unique_ptr<spdlog::formatter> make_json_formatter();

/// Points spdlog's default logger at stdout with the configured level and format.
/// Call once at start-up, before other threads log.
void init(const config::LogConfig& config);

/// Changes the default logger's level (a configuration reload). Thread-safe.
void set_level(const std::string& level);

}  // namespace gateway::log
