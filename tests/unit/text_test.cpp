// Text helpers: a UTF-8 prefix cut before a character, never inside it.

#include "gateway/util/text.hpp"

#include <gtest/gtest.h>

namespace gateway::util {
namespace {

TEST(Utf8Prefix, CutsBeforeACharacterNeverInsideIt) {
    const std::string text = "a\xc3\xa9\xe2\x9c\x93\xf0\x9f\x98\x80";  // a, é, ✓, 😀: 1+2+3+4 bytes
    EXPECT_EQ(utf8_prefix(text, 100), text);
    EXPECT_EQ(utf8_prefix(text, text.size()), text);
    EXPECT_EQ(utf8_prefix(text, 1), "a");
    EXPECT_EQ(utf8_prefix(text, 2), "a") << "inside é";
    EXPECT_EQ(utf8_prefix(text, 3), "a\xc3\xa9");
    EXPECT_EQ(utf8_prefix(text, 5), "a\xc3\xa9") << "inside ✓";
    EXPECT_EQ(utf8_prefix(text, 9), "a\xc3\xa9\xe2\x9c\x93") << "inside 😀";
    EXPECT_EQ(utf8_prefix(text, 0), "");
    EXPECT_EQ(utf8_prefix("abcdef", 3), "abc");
    // Not UTF-8 to begin with: still at most `max` bytes, and never more than 3 backed off.
    EXPECT_EQ(utf8_prefix("\x80\x80\x80\x80\x80\x80", 5).size(), 2u);
}

// HTTP's optional whitespace (spaces and tabs) around a value goes; what is inside stays.
TEST(TrimOws, DropsSpacesAndTabsAroundAndNothingElse) {
    EXPECT_EQ(trim_ows(" \t gzip ;q=0 \t"), "gzip ;q=0");
    EXPECT_EQ(trim_ows("\t\t"), "");
    EXPECT_EQ(trim_ows(""), "");
    EXPECT_EQ(trim_ows("a b"), "a b");
    EXPECT_EQ(trim_ows("\r\nx\n"), "\r\nx\n");  // only spaces and tabs
}

}  // namespace
}  // namespace gateway::util
