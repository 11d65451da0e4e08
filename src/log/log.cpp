#include "gateway/log/log.hpp"

#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <ctime>

namespace gateway::log {
namespace {

void append_escaped(spdlog::memory_buf_t& out, std::string_view s) {
    static constexpr char kHex[] = "0123456789abcdef";
    for (unsigned char c : s) {
        switch (c) {
            case '"': out.append(std::string_view("\\\"")); break;
            case '\\': out.append(std::string_view("\\\\")); break;
            case '\n': out.append(std::string_view("\\n")); break;
            case '\r': out.append(std::string_view("\\r")); break;
            case '\t': out.append(std::string_view("\\t")); break;
            default:
                if (c < 0x20) {
                    const char esc[] = {'\\', 'u', '0', '0', kHex[c >> 4], kHex[c & 15]};
                    out.append(esc, esc + sizeof esc);
                } else {
                    out.push_back(static_cast<char>(c));
                }
        }
    }
}

class JsonFormatter final : public spdlog::formatter {
public:
    void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
        using namespace std::chrono;
        const auto since_epoch = msg.time.time_since_epoch();
        const std::time_t secs = duration_cast<seconds>(since_epoch).count();
        const auto millis = duration_cast<milliseconds>(since_epoch).count() % 1000;
        std::tm tm{};
        gmtime_r(&secs, &tm);
        char ts[40];
        const std::size_t n = std::strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
        dest.append(std::string_view(R"({"ts":")"));
        dest.append(ts, ts + n);
        fmt::format_to(std::back_inserter(dest), ".{:03}Z\",\"level\":\"", millis);
        const auto& level = spdlog::level::to_string_view(msg.level);
        dest.append(level.data(), level.data() + level.size());
        dest.append(std::string_view(R"(","msg":")"));
        append_escaped(dest, std::string_view(msg.payload.data(), msg.payload.size()));
        dest.append(std::string_view("\"}\n"));
    }
    std::unique_ptr<spdlog::formatter> clone() const override {
        return std::make_unique<JsonFormatter>();
    }
};

}  // namespace

std::unique_ptr<spdlog::formatter> make_json_formatter() {
    return std::make_unique<JsonFormatter>();
}

void init(const config::LogConfig& config) {
    spdlog::drop("gateway");
    auto logger = spdlog::stdout_logger_mt("gateway");
    if (config.format == config::LogConfig::Format::json)
        logger->set_formatter(make_json_formatter());
    else
        logger->set_pattern("%Y-%m-%dT%H:%M:%S.%eZ %^%-5l%$ %v", spdlog::pattern_time_type::utc);
    logger->set_level(spdlog::level::from_str(config.level));
    // Nothing is logged per request at info and above, so flushing each line costs little and a
    // supervisor (or a test) sees "listening" the moment it happens.
    logger->flush_on(spdlog::level::info);
    spdlog::set_default_logger(std::move(logger));
    spdlog::flush_every(std::chrono::seconds(1));
}

void set_level(const std::string& level) {
    spdlog::default_logger()->set_level(spdlog::level::from_str(level));
}

}  // namespace gateway::log
