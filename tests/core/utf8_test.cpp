// core/utf8: validation by Unicode's Table 3-7, lossy repair with the
// maximal-subpart rule (expected strings are Python's
// bytes.decode("utf-8", "replace")), surrogateescape round trips and counting.
#include <gtest/gtest.h>

#include "core/utf8.h"

namespace lmlab::test {
namespace {

TEST(Utf8, ValidityFollowsTheWellFormednessTable) {
  EXPECT_TRUE(utf8::is_valid(""));
  EXPECT_TRUE(utf8::is_valid("h\xC3\xA9llo \xF0\x9F\xA6\x80"));   // é, 🦀
  EXPECT_FALSE(utf8::is_valid("\xC0\xAF"));                      // overlong '/'
  EXPECT_FALSE(utf8::is_valid("\xED\xA0\x80"));                  // surrogate D800
  EXPECT_FALSE(utf8::is_valid("\xF4\x90\x80\x80"));              // past U+10FFFF
  EXPECT_FALSE(utf8::is_valid("\xE2\x82"));                      // cut
  EXPECT_EQ(utf8::first_invalid("ab\xFF" "c"), 2u);
  EXPECT_EQ(utf8::first_invalid("\xC3\xA9\xE2\x82"), 2u);
  EXPECT_EQ(utf8::first_invalid("ok"), utf8::npos);
}

TEST(Utf8, LossyReplacesEachMaximalSubpartOnce) {
  // Python: b"a\xe2\x82b".decode("utf-8", "replace") == "a\ufffdb"
  EXPECT_EQ(utf8::lossy("a\xE2\x82" "b"), "a\xEF\xBF\xBD" "b");
  // b"\xf0\x80\x80" -> three replacements (F0 80 is not a valid prefix)
  EXPECT_EQ(utf8::lossy("\xF0\x80\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");
  // b"\xed\xa0\x80" (a surrogate) -> three replacements
  EXPECT_EQ(utf8::lossy("\xED\xA0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(utf8::lossy("h\xC3\xA9"), "h\xC3\xA9");
}

TEST(Utf8, IncompleteTailCountsOnlyAWaitingSequence) {
  EXPECT_EQ(utf8::incomplete_tail("ab\xF0\x9F\xA6"), 3u);
  EXPECT_EQ(utf8::incomplete_tail("ab\xC3"), 1u);
  EXPECT_EQ(utf8::incomplete_tail("ab\xC3\xA9"), 0u);
  EXPECT_EQ(utf8::incomplete_tail("ab\xFF"), 0u);  // invalid, not waiting
}

TEST(Utf8, NextAndAppendRoundTripEveryPlane) {
  for (char32_t cp : {U'a', U'\u00E9', U'\u20AC', U'\U0001F980', U'\U0010FFFF'}) {
    std::string s;
    utf8::append(s, cp);
    size_t i = 0;
    EXPECT_EQ(utf8::next(s, i), cp);
    EXPECT_EQ(i, s.size());
  }
}

TEST(Utf8, SurrogateEscapeKeepsAnyBytes) {
  const std::string raw = "a\xFF\xC3\xA9\xE2\x82" "z\x80";
  std::u32string cps = utf8::decode_escaped(raw);
  // Python: raw.decode("utf-8", "surrogateescape")
  EXPECT_EQ(cps, (std::u32string{U'a', 0xDCFF, U'\u00E9', 0xDCE2, 0xDC82, U'z', 0xDC80}));
  EXPECT_EQ(utf8::encode_escaped(cps), raw);
}

TEST(Utf8, LengthAndPrefixCountCodePoints) {
  EXPECT_EQ(utf8::length("h\xC3\xA9\xF0\x9F\xA6\x80"), 3u);
  EXPECT_EQ(utf8::prefix("h\xC3\xA9\xF0\x9F\xA6\x80", 2), "h\xC3\xA9");
  EXPECT_EQ(utf8::prefix("ab", 5), "ab");
}

}  // namespace
}  // namespace lmlab::test
