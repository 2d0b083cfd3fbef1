// SPDX-License-Identifier: Apache-2.0
// dkim_canon_test.cc: RFC 6376 canonicalization byte for byte (section 3.4.5's example, the
// RFC 6376 / RFC 8463 example body hashes), the edge cases (empty body, no final CRLF, trailing
// whitespace and blank lines, 8-bit, long and folded headers), and chunk-boundary independence
// against a plain line-by-line reference written from the RFC text.
#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "milters/dkim_canon.h"
#include "milters/dkim_key.h"
#include "milters/dkim_signer.h"

namespace relaykit::dkim {
namespace {

// RFC 6376 section 3.4.5.
TEST(DkimCanonTest, Rfc6376ExampleHeadersRelaxed) {
  EXPECT_EQ(canonicalizeHeader(Canon::kRelaxed, "A", " X"), "a:X\r\n");
  EXPECT_EQ(canonicalizeHeader(Canon::kRelaxed, "B ", " Y\t\r\n\tZ  "), "b:Y Z\r\n");
}

TEST(DkimCanonTest, Rfc6376ExampleHeadersSimple) {
  EXPECT_EQ(canonicalizeHeader(Canon::kSimple, "A", " X"), "A: X\r\n");
  EXPECT_EQ(canonicalizeHeader(Canon::kSimple, "B ", " Y\t\r\n\tZ  "), "B : Y\t\r\n\tZ  \r\n");
  // The milter/queue form joins continuation lines with a bare LF: the same bytes come out.
  EXPECT_EQ(canonicalizeHeader(Canon::kSimple, "B ", " Y\t\n\tZ  "), "B : Y\t\r\n\tZ  \r\n");
}

const char kRfcBody[] = " C \r\nD \t E\r\n\r\n\r\n";

TEST(DkimCanonTest, Rfc6376ExampleBody) {
  EXPECT_EQ(canonicalizeBody(Canon::kRelaxed, kRfcBody), " C\r\nD E\r\n");
  EXPECT_EQ(canonicalizeBody(Canon::kSimple, kRfcBody), " C \r\nD \t E\r\n");
}

// The body of RFC 6376 Appendix A / RFC 8463 A.3 and its published hashes.
const char kExampleBody[] = "Hi.\r\n\r\nWe lost the game.  Are you hungry yet?\r\n\r\nJoe.\r\n";

std::string bodyHashB64(Canon canon, std::string_view body) {
  return base64Encode(sha256(canonicalizeBody(canon, body)));
}

TEST(DkimCanonTest, ExampleBodyHashes) {
  // RFC 8463 A.3, c=relaxed/relaxed.
  EXPECT_EQ(bodyHashB64(Canon::kRelaxed, kExampleBody),
            "2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=");
  // The same body, simple (dkimpy's RFC 6376 example signatures, c=simple/simple); the extra
  // empty line at the end changes nothing.
  EXPECT_EQ(bodyHashB64(Canon::kSimple, std::string(kExampleBody) + "\r\n"),
            "4bLNXImK9drULnmePzZNEBleUanJCX5PIsDIFoH4KTQ=");
}

TEST(DkimCanonTest, EmptyBody) {
  EXPECT_EQ(canonicalizeBody(Canon::kSimple, ""), "\r\n");
  EXPECT_EQ(canonicalizeBody(Canon::kRelaxed, ""), "");
  // RFC 6376 3.4.3 / 3.4.4 (errata 1384): the well-known hashes of an empty body.
  EXPECT_EQ(bodyHashB64(Canon::kSimple, ""), "frcCV1k9oG9oKj3dpUqdJg1PxRT2RSN/XKdLCPjaYaY=");
  EXPECT_EQ(bodyHashB64(Canon::kRelaxed, ""), "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=");
  // Only empty lines is an empty body too.
  EXPECT_EQ(canonicalizeBody(Canon::kSimple, "\r\n\r\n\n"), "\r\n");
  EXPECT_EQ(canonicalizeBody(Canon::kRelaxed, "\r\n \t\r\n\n"), "");
}

TEST(DkimCanonTest, BodyWithoutFinalCrlf) {
  EXPECT_EQ(canonicalizeBody(Canon::kSimple, "abc"), "abc\r\n");
  EXPECT_EQ(canonicalizeBody(Canon::kRelaxed, "abc  "), "abc\r\n");
  EXPECT_EQ(canonicalizeBody(Canon::kSimple, "a\r\nb"), "a\r\nb\r\n");
  EXPECT_EQ(canonicalizeBody(Canon::kSimple, "x"), "x\r\n");  // a 1-byte body
}

TEST(DkimCanonTest, TrailingWhitespaceAndBlankLines) {
  std::string body = "a \r\n\r\n b\t\r\n \t\r\n\r\n";
  EXPECT_EQ(canonicalizeBody(Canon::kSimple, body), "a \r\n\r\n b\t\r\n \t\r\n");
  EXPECT_EQ(canonicalizeBody(Canon::kRelaxed, body), "a\r\n\r\n b\r\n");
  // Blank lines inside the body stay; only the trailing ones go.
  EXPECT_EQ(canonicalizeBody(Canon::kRelaxed, "a\r\n\r\n\r\nb\r\n\r\n"), "a\r\n\r\n\r\nb\r\n");
}

TEST(DkimCanonTest, LineEndsAndBareCr) {
  // A bare LF (message file, queue form) is the same line end as CRLF.
  EXPECT_EQ(canonicalizeBody(Canon::kSimple, "a\nb\n\n"), "a\r\nb\r\n");
  // A CR not followed by LF is data.
  EXPECT_EQ(canonicalizeBody(Canon::kSimple, "a\rb\r\n"), "a\rb\r\n");
  EXPECT_EQ(canonicalizeBody(Canon::kSimple, "a\r"), "a\r\r\n");
  EXPECT_EQ(canonicalizeBody(Canon::kRelaxed, "a \r b\r\n"), "a \r b\r\n");
}

TEST(DkimCanonTest, EightBitAndLongHeaders) {
  std::string eight = " J\xc3\xb6rg  \xe2\x82\xac\t";
  EXPECT_EQ(canonicalizeHeader(Canon::kRelaxed, "Subject", eight),
            "subject:J\xc3\xb6rg \xe2\x82\xac\r\n");
  EXPECT_EQ(canonicalizeHeader(Canon::kSimple, "Subject", eight), "Subject:" + eight + "\r\n");
  // A 100 KB header folded every 70 bytes.
  std::string value;
  std::string expectRelaxed = "x-long:";
  for (int i = 0; i < 1500; ++i) {
    std::string word = "w" + std::to_string(i) + std::string(60, 'a');
    value += (i == 0 ? " " : "\n\t") + word;
    expectRelaxed += (i == 0 ? "" : " ") + word;
  }
  EXPECT_EQ(canonicalizeHeader(Canon::kRelaxed, "X-Long", value), expectRelaxed + "\r\n");
  std::string simple = canonicalizeHeader(Canon::kSimple, "X-Long", value);
  EXPECT_EQ(simple.find("\n\t"), simple.find("\r\n\t") + 1);
  EXPECT_EQ(simple.size(), 7 + value.size() + 1499 + 2);  // one CR added per fold
}

TEST(DkimCanonTest, FoldedHeaderRelaxed) {
  EXPECT_EQ(canonicalizeHeader(Canon::kRelaxed, "To", " a@example.com,\r\n  b@example.com\r\n"),
            "to:a@example.com, b@example.com\r\n");
  EXPECT_EQ(canonicalizeHeader(Canon::kRelaxed, "SUBJECT", ""), "subject:\r\n");
  EXPECT_EQ(canonicalizeHeader(Canon::kRelaxed, "Subject", " \t "), "subject:\r\n");
}

TEST(DkimCanonTest, ParseCanonicalization) {
  ASSERT_TRUE(parseCanonicalization("relaxed/simple"));
  EXPECT_EQ(canonicalizationTag(*parseCanonicalization("relaxed/simple")), "relaxed/simple");
  EXPECT_FALSE(parseCanonicalization("relaxed"));
  EXPECT_FALSE(parseCanonicalization("nowsp/simple"));
}

// ---- Reference implementation, line by line, straight from RFC 6376 3.4.3 and 3.4.4. ----
std::vector<std::string> referenceLines(const std::string& body, bool* lastHasEnd) {
  std::vector<std::string> lines;
  std::string cur;
  *lastHasEnd = true;
  for (size_t i = 0; i < body.size(); ++i) {
    if (body[i] == '\n') {
      if (!cur.empty() && cur.back() == '\r') {
        cur.pop_back();
      }
      lines.push_back(cur);
      cur.clear();
    } else {
      cur.push_back(body[i]);
    }
  }
  if (!cur.empty()) {
    lines.push_back(cur);
  }
  return lines;
}

std::string reference(Canon canon, const std::string& body) {
  bool unused = true;
  std::vector<std::string> lines = referenceLines(body, &unused);
  if (canon == Canon::kRelaxed) {
    for (std::string& line : lines) {
      std::string out;
      bool ws = false;
      for (char c : line) {
        if (c == ' ' || c == '\t') {
          ws = true;
        } else {
          if (ws) {
            out.push_back(' ');
          }
          ws = false;
          out.push_back(c);
        }
      }
      line = out;  // trailing WSP dropped
    }
  }
  while (!lines.empty() && lines.back().empty()) {
    lines.pop_back();
  }
  std::string out;
  for (const std::string& line : lines) {
    out += line + "\r\n";
  }
  if (out.empty() && canon == Canon::kSimple) {
    out = "\r\n";
  }
  return out;
}

std::string chunked(Canon canon, const std::string& body, const std::vector<size_t>& cuts) {
  StringSink sink;
  BodyCanonicalizer c(canon, &sink);
  size_t pos = 0;
  for (size_t cut : cuts) {
    c.feed(std::string_view(body).substr(pos, cut - pos));
    pos = cut;
  }
  c.feed(std::string_view(body).substr(pos));
  c.finish();
  return sink.text();
}

TEST(DkimCanonTest, ChunkBoundariesEverywhereMatchTheReference) {
  std::mt19937 rng(20260);
  const char alphabet[] = {' ', '\t', '\r', '\n', 'a', 'b', '\xe9'};
  for (int round = 0; round < 3000; ++round) {
    size_t len = rng() % 40;
    std::string body;
    for (size_t i = 0; i < len; ++i) {
      body.push_back(alphabet[rng() % sizeof alphabet]);
    }
    for (Canon canon : {Canon::kSimple, Canon::kRelaxed}) {
      std::string want = reference(canon, body);
      ASSERT_EQ(canonicalizeBody(canon, body), want) << "body [" << body << "]";
      std::vector<size_t> everyByte;
      for (size_t i = 1; i < body.size(); ++i) {
        everyByte.push_back(i);
      }
      ASSERT_EQ(chunked(canon, body, everyByte), want) << "byte by byte [" << body << "]";
      std::vector<size_t> random;
      for (size_t i = 1; i < body.size(); ++i) {
        if (rng() % 3 == 0) {
          random.push_back(i);
        }
      }
      ASSERT_EQ(chunked(canon, body, random), want);
    }
  }
}

TEST(DkimCanonTest, LargeBodyStreamsInBoundedPieces) {
  // 10 MiB of lines, then a million trailing empty lines: the sink never gets a piece larger
  // than the flush bound plus one line, and the trailing lines are dropped without buffering.
  class MaxSink : public ByteSink {
   public:
    void append(std::string_view b) override {
      max = std::max(max, b.size());
      total += b.size();
    }
    size_t max = 0;
    size_t total = 0;
  } sink;
  BodyCanonicalizer c(Canon::kRelaxed, &sink);
  std::string line(1022, 'x');
  line += "\r\n";
  for (int i = 0; i < 10 * 1024; ++i) {
    c.feed(line);
  }
  std::string empties(2 * 1000 * 1000, '\n');
  c.feed(empties);
  c.finish();
  EXPECT_EQ(sink.total, 10u * 1024 * 1024);
  EXPECT_LE(sink.max, kCanonFlushBytes + 1024);
}

}  // namespace
}  // namespace relaykit::dkim
