// SPDX-License-Identifier: Apache-2.0
// netstring_test.cc: the netstring codec fed whole, byte by byte, malformed and oversized.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "common/netstring.h"

namespace relaykit {
namespace {

// Feeds `input` in chunks of `chunk` bytes; returns the messages, and the error if any.
std::vector<std::string> decodeAll(const std::string& input, std::size_t chunk, std::string* error,
                                   std::size_t max = kMaxNetstringBytes) {
  NetstringDecoder d(max);
  std::vector<std::string> out;
  std::size_t pos = 0;
  while (pos < input.size()) {
    std::string_view piece(input.data() + pos, std::min(chunk, input.size() - pos));
    std::size_t used = 0;
    while (used < piece.size() || d.state() == NetstringDecoder::State::kMessage) {
      used += d.feed(piece.substr(used));
      if (d.state() == NetstringDecoder::State::kMessage) {
        out.push_back(d.takeMessage());
        continue;
      }
      if (d.state() == NetstringDecoder::State::kError) {
        *error = d.error();
        return out;
      }
      break;
    }
    pos += piece.size();
  }
  error->clear();
  return out;
}

TEST(NetstringTest, Encode) {
  EXPECT_EQ(encodeNetstring("hello world!"), "12:hello world!,");
  EXPECT_EQ(encodeNetstring(""), "0:,");
  std::string out = "x";
  appendNetstring("ab", &out);
  EXPECT_EQ(out, "x2:ab,");
}

TEST(NetstringTest, DecodesWholeAndByteByByte) {
  const std::string input = "12:hello world!,0:,3:a,b,";
  for (std::size_t chunk : {1u, 2u, 3u, 5u, 100u}) {
    std::string error;
    auto msgs = decodeAll(input, chunk, &error);
    EXPECT_EQ(error, "") << chunk;
    ASSERT_EQ(msgs.size(), 3u) << chunk;
    EXPECT_EQ(msgs[0], "hello world!");
    EXPECT_EQ(msgs[1], "");
    EXPECT_EQ(msgs[2], "a,b");
  }
}

TEST(NetstringTest, BinaryAndSpacesInData) {
  std::string payload("generic \"a b\"@x\0\n", 17);
  std::string error;
  auto msgs = decodeAll(encodeNetstring(payload), 1, &error);
  ASSERT_EQ(msgs.size(), 1u);
  EXPECT_EQ(msgs[0], payload);
}

TEST(NetstringTest, StopsAfterOneMessage) {
  NetstringDecoder d;
  std::string input = "1:a,1:b,";
  EXPECT_EQ(d.feed(input), 4u);
  EXPECT_EQ(d.state(), NetstringDecoder::State::kMessage);
  EXPECT_EQ(d.takeMessage(), "a");
  EXPECT_FALSE(d.inProgress());
  EXPECT_EQ(d.feed(std::string_view(input).substr(4, 2)), 2u);
  EXPECT_TRUE(d.inProgress());
  EXPECT_EQ(d.state(), NetstringDecoder::State::kNeedMore);
}

TEST(NetstringTest, Malformed) {
  struct Case {
    std::string input;
    std::string error;
  };
  const std::vector<Case> cases = {
      {":abc,", "bad length: expected a digit"},
      {"x:abc,", "bad length: expected a digit"},
      {"3x:abc,", "bad length: expected a digit or ':'"},
      {"03:abc,", "bad length: leading zero"},
      {"00:,", "bad length: leading zero"},
      {"3:abc;", "missing ',' after netstring data"},
      {"3:abcd,", "missing ',' after netstring data"},
      {"-1:a,", "bad length: expected a digit"},
      {" 1:a,", "bad length: expected a digit"},
  };
  for (const auto& c : cases) {
    for (std::size_t chunk : {1u, 100u}) {
      std::string error;
      auto msgs = decodeAll(c.input, chunk, &error);
      EXPECT_TRUE(msgs.empty()) << c.input;
      EXPECT_EQ(error, c.error) << c.input;
    }
  }
}

TEST(NetstringTest, Oversized) {
  std::string error;
  decodeAll("100001:", 1, &error);
  EXPECT_EQ(error, "netstring too long: more than 100000 bytes");
  decodeAll("9999999999999999999999:", 1, &error);
  EXPECT_EQ(error, "netstring too long: more than 100000 bytes");
  decodeAll("11:hello world,", 1, &error, 10);
  EXPECT_EQ(error, "netstring too long: more than 10 bytes");
  auto msgs = decodeAll(encodeNetstring(std::string(100000, 'x')), 4096, &error);
  EXPECT_EQ(error, "");
  ASSERT_EQ(msgs.size(), 1u);
  EXPECT_EQ(msgs[0].size(), 100000u);
}

TEST(NetstringTest, ErrorKinds) {
  const std::vector<std::pair<std::string, NetstringDecoder::Error>> cases = {
      {"100001:", NetstringDecoder::Error::kTooLong},
      {"03:abc,", NetstringDecoder::Error::kBadLength},
      {"x:", NetstringDecoder::Error::kBadLength},
      {"3:abc;", NetstringDecoder::Error::kMissingComma},
  };
  for (const auto& [input, kind] : cases) {
    NetstringDecoder d;
    d.feed(input);
    EXPECT_EQ(d.state(), NetstringDecoder::State::kError) << input;
    EXPECT_EQ(d.errorKind(), kind) << input;
  }
  NetstringDecoder ok;
  ok.feed("1:a,");
  EXPECT_EQ(ok.errorKind(), NetstringDecoder::Error::kNone);
}

TEST(NetstringTest, ErrorIsSticky) {
  NetstringDecoder d;
  d.feed("x");
  EXPECT_EQ(d.state(), NetstringDecoder::State::kError);
  EXPECT_EQ(d.feed("1:a,"), 0u);
  EXPECT_EQ(d.state(), NetstringDecoder::State::kError);
}

}  // namespace
}  // namespace relaykit
