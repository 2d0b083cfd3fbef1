// SPDX-License-Identifier: Apache-2.0
// rfc2047_test.cc: encoded-word decoding corner cases and phrase encoding round trips.
#include "milters/rfc2047.h"

#include <gtest/gtest.h>

#include "milters/address_list.h"

namespace relaykit::milter {
namespace {

struct DecodeCase {
  const char* in;
  const char* out;
};

TEST(Rfc2047Test, DecodesTable) {
  const DecodeCase cases[] = {
      {"plain text", "plain text"},
      {"=?UTF-8?B?SsO2cmc=?=", "J\xC3\xB6rg"},
      {"=?utf-8?q?J=C3=B6rg?=", "J\xC3\xB6rg"},
      {"=?ISO-8859-1?Q?J=F6rg?=", "J\xC3\xB6rg"},
      {"=?iso-8859-1?b?SvZyZw==?=", "J\xC3\xB6rg"},
      {"=?ISO-8859-15?Q?=A4?=", "\xE2\x82\xAC"},
      {"=?windows-1252?Q?=80?=", "\xE2\x82\xAC"},
      {"=?UTF-8*en?Q?Hi?=", "Hi"},                 // RFC 2231 language
      {"=?UTF-8?Q?a_b?=", "a b"},                  // underscore is a space
      {"=?UTF-8?Q?a?= =?UTF-8?Q?b?=", "ab"},       // space between words dropped
      {"=?UTF-8?Q?a?=\n =?UTF-8?Q?b?=", "ab"},     // folded too
      {"=?UTF-8?Q?a?= b =?UTF-8?Q?c?=", "a b c"},  // but not around plain text
      {"x =?UTF-8?Q?a?=", "x a"},
      {"=?UTF-8?X?abc?=", "=?UTF-8?X?abc?="},      // unknown encoding kept
      {"=?KOI8-R?Q?abc?=", "=?KOI8-R?Q?abc?="},    // unknown charset kept
      {"=?UTF-8?Q?bad=Z?=", "=?UTF-8?Q?bad=Z?="},  // bad hex kept
      {"=?UTF-8?Q?trunc=", "=?UTF-8?Q?trunc="},    // unterminated kept
      {"=?UTF-8?B?!!!?=", "=?UTF-8?B?!!!?="},      // bad base64 kept
      {"a=?UTF-8?Q?x?=", "a=?UTF-8?Q?x?="},        // must stand alone
      {"\"=?UTF-8?Q?x?=\"", "\"x\""},              // inside quotes (common in the wild)
      {"", ""},
  };
  for (const DecodeCase& c : cases) {
    EXPECT_EQ(decodeEncodedWords(c.in), c.out) << c.in;
  }
}

TEST(Rfc2047Test, HasEncodedWords) {
  EXPECT_TRUE(hasEncodedWords("Hello =?UTF-8?Q?x?="));
  EXPECT_FALSE(hasEncodedWords("Hello =?UTF-8?Q?x"));
  EXPECT_FALSE(hasEncodedWords("=?nope?Z?x?="));
}

TEST(Rfc2047Test, EncodePhraseAsciiForms) {
  EXPECT_EQ(encodePhrase("John Doe"), "John Doe");
  EXPECT_EQ(encodePhrase("Doe, John"), "\"Doe, John\"");
  EXPECT_EQ(encodePhrase("say \"hi\""), "\"say \\\"hi\\\"\"");
  EXPECT_EQ(encodePhrase("J. Doe"), "\"J. Doe\"");
  EXPECT_EQ(encodePhrase(""), "\"\"");
}

TEST(Rfc2047Test, EncodePhraseUtf8RoundTrips) {
  std::string name = "J\xC3\xB6rg M\xC3\xBCller";
  std::string enc = encodePhrase(name);
  EXPECT_EQ(enc.rfind("=?UTF-8?B?", 0), 0u);
  EXPECT_EQ(decodeEncodedWords(enc), name);
}

// The display text of "PHRASE <a@example.com>" (what a reader of the header sees).
std::string displayTextOf(const std::string& phrase) {
  auto boxes = parseAddressList(phrase + " <a@example.com>");
  EXPECT_TRUE(boxes.isOk() && boxes->size() == 1u) << phrase;
  return boxes.isOk() && boxes->size() == 1u ? (*boxes)[0].displayText() : std::string("?");
}

TEST(Rfc2047Test, EncodeThenDecodeGivesTheTextBack) {
  // Fuzz findings: ASCII that looks like an encoded-word passed through unchanged (and so
  // decoded to "a"), and '"' or '\\' inside encoded text were lost when taking the display text.
  const std::string texts[] = {"=?utf-8?q?a?=",
                               "x =?UTF-8?B?YQ==?= y",
                               "\xC3\xA9 \"q\" \\x",
                               "J\xC3\xB6rg \"the boss\" M\xC3\xBCller",
                               "a\r\nb",
                               "tab\there",
                               "Doe, John",
                               "say \"hi\"",
                               "back\\slash",
                               ""};
  for (const std::string& text : texts) {
    std::string phrase = encodePhrase(text);
    EXPECT_EQ(displayTextOf(phrase), text) << phrase;
  }
  EXPECT_EQ(encodePhrase("=?utf-8?q?a?=").rfind("=?UTF-8?B?", 0), 0u);
  EXPECT_EQ(encodePhrase("a\r\nb").rfind("=?UTF-8?B?", 0), 0u);
  EXPECT_EQ(encodePhrase("a=b?c"), "a=b?c");
}

TEST(Rfc2047Test, LongUtf8SplitsIntoShortWordsOnCharacterBoundaries) {
  std::string name;
  for (int i = 0; i < 60; ++i) {
    name += "\xC3\xA9";  // é, two bytes each: 120 bytes
  }
  std::string enc = encodePhrase(name);
  size_t start = 0;
  int words = 0;
  while (start < enc.size()) {
    size_t end = enc.find(' ', start);
    if (end == std::string::npos) {
      end = enc.size();
    }
    EXPECT_LE(end - start, kMaxEncodedWordLength);
    ++words;
    start = end + 1;
  }
  EXPECT_GE(words, 3);
  EXPECT_EQ(decodeEncodedWords(enc), name);
}

TEST(Rfc2047Test, Latin1ToUtf8) {
  EXPECT_EQ(latin1ToUtf8("caf\xE9"), "caf\xC3\xA9");
}

}  // namespace
}  // namespace relaykit::milter
