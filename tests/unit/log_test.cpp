// The JSON log: one escaped object per line.

#include "gateway/log/log.hpp"

#include <gtest/gtest.h>
#include <spdlog/details/log_msg.h>
#include <boost/json/parse.hpp>

namespace gateway::log {
namespace {

TEST(JsonLog, OneEscapedObjectPerLine) {
    auto formatter = make_json_formatter();
    const std::string nasty = "a \"quoted\"\nnew line\ttab \\ back \x01 ctl";
    spdlog::details::log_msg msg(spdlog::source_loc{}, "gateway", spdlog::level::warn, nasty);
    spdlog::memory_buf_t out;
    formatter->format(msg, out);
    std::string line(out.data(), out.size());
    ASSERT_FALSE(line.empty());
    EXPECT_EQ(line.back(), '\n');
    EXPECT_EQ(line.find('\n'), line.size() - 1) << "the message's newline must be escaped";
    boost::json::value v = boost::json::parse(line);
    EXPECT_EQ(v.at("level"), "warning");
    EXPECT_EQ(v.at("msg").as_string(), nasty);
    const std::string ts(v.at("ts").as_string());
    EXPECT_EQ(ts.size(), 24u) << ts;  // 2026-11-26T23:05:44.123Z
    EXPECT_EQ(ts.back(), 'Z');
}

}  // namespace
}  // namespace gateway::log
