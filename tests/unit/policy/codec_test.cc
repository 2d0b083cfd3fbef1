// SPDX-License-Identifier: Apache-2.0
// codec_test.cc: the policy codec fed whole, byte by byte, in random chunks, and with garbage.
#include <gtest/gtest.h>

#include <random>

#include "policyd/policy_codec.h"

namespace relaykit::policy {
namespace {

const std::string kRequest =
    "request=smtpd_access_policy\nprotocol_state=RCPT\nsender=a@b.c\nrecipient=x@y.z\n"
    "client_address=10.1.2.3\ninstance=1a2b.3c\n\n";

TEST(PolicyCodec, WholeRequest) {
  PolicyCodec codec;
  std::vector<PolicyRequest> out;
  ASSERT_TRUE(codec.feed(kRequest, &out).isOk());
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].get("protocol_state"), "RCPT");
  EXPECT_EQ(out[0].get("sender"), "a@b.c");
  EXPECT_EQ(out[0].get("missing"), "");
  EXPECT_EQ(out[0].size(), 6u);
  EXPECT_FALSE(codec.midRequest());
}

TEST(PolicyCodec, ByteByByteAndTwoRequests) {
  PolicyCodec codec;
  std::vector<PolicyRequest> out;
  const std::string two = kRequest + kRequest;
  for (char c : two) {
    ASSERT_TRUE(codec.feed(std::string_view(&c, 1), &out).isOk());
  }
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[1].get("client_address"), "10.1.2.3");
}

TEST(PolicyCodec, RandomChunks) {
  std::mt19937 rng(42);
  for (int round = 0; round < 200; ++round) {
    PolicyCodec codec;
    std::vector<PolicyRequest> out;
    const std::string three = kRequest + kRequest + kRequest;
    std::size_t pos = 0;
    while (pos < three.size()) {
      const std::size_t n = std::min<std::size_t>(1 + rng() % 17, three.size() - pos);
      ASSERT_TRUE(codec.feed(std::string_view(three).substr(pos, n), &out).isOk());
      pos += n;
    }
    ASSERT_EQ(out.size(), 3u);
    EXPECT_EQ(out[2].get("instance"), "1a2b.3c");
  }
}

TEST(PolicyCodec, EmptyValueAndEqualsInValueAndCrLf) {
  PolicyCodec codec;
  std::vector<PolicyRequest> out;
  ASSERT_TRUE(codec.feed("sender=\r\nccert_subject=CN=x=y\n\r\n", &out).isOk());
  ASSERT_EQ(out.size(), 1u);
  EXPECT_TRUE(out[0].has("sender"));
  EXPECT_EQ(out[0].get("sender"), "");
  EXPECT_EQ(out[0].get("ccert_subject"), "CN=x=y");
}

TEST(PolicyCodec, PartialRequestIsNotDelivered) {
  PolicyCodec codec;
  std::vector<PolicyRequest> out;
  ASSERT_TRUE(codec.feed("sender=a@b\nrecipient=c@d\n", &out).isOk());
  EXPECT_TRUE(out.empty());
  EXPECT_TRUE(codec.midRequest());
  ASSERT_TRUE(codec.feed("\n", &out).isOk());
  EXPECT_EQ(out.size(), 1u);
}

struct MalformedCase {
  const char* name;
  std::string input;
};

class PolicyCodecMalformed : public ::testing::TestWithParam<MalformedCase> {};

TEST_P(PolicyCodecMalformed, IsStickyError) {
  PolicyCodec codec;
  std::vector<PolicyRequest> out;
  Status s = codec.feed(GetParam().input, &out);
  EXPECT_FALSE(s.isOk()) << GetParam().name;
  EXPECT_FALSE(codec.feed(kRequest, &out).isOk()) << "error must stay";
  EXPECT_TRUE(out.empty());
}

std::string manyAttributes(std::size_t n) {
  std::string s;
  for (std::size_t i = 0; i < n; ++i) {
    s += "a" + std::to_string(i) + "=v\n";
  }
  return s + "\n";
}

std::string bigRequest() {
  std::string s;
  while (s.size() <= kMaxRequestBytes) {
    s += "x=" + std::string(kMaxLineLength - 10, 'y') + "\n";
  }
  return s;
}

INSTANTIATE_TEST_SUITE_P(
    All, PolicyCodecMalformed,
    ::testing::Values(MalformedCase{"no equals", "garbage\n\n"},
                      MalformedCase{"empty name", "=value\n\n"},
                      MalformedCase{"empty request", "\n"},
                      MalformedCase{"binary junk", std::string("\x01\x02\x03\n\n", 5)},
                      MalformedCase{"line too long",
                                    "sender=" + std::string(kMaxLineLength, 'a') + "\n\n"},
                      MalformedCase{"line too long without newline",
                                    "sender=" + std::string(kMaxLineLength + 10, 'a')},
                      MalformedCase{"too many attributes", manyAttributes(kMaxAttributeCount + 1)},
                      MalformedCase{"request too big", bigRequest()}),
    [](const auto& info) {
      std::string n = info.param.name;
      for (char& c : n) {
        c = std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
      }
      return n;
    });

TEST(PolicyCodec, AtTheLimitsIsFine) {
  PolicyCodec codec;
  std::vector<PolicyRequest> out;
  ASSERT_TRUE(codec.feed(manyAttributes(kMaxAttributeCount), &out).isOk());
  ASSERT_TRUE(codec.feed("s=" + std::string(kMaxLineLength - 2, 'a') + "\n\n", &out).isOk());
  EXPECT_EQ(out.size(), 2u);
}

TEST(PolicyCodec, ReplyIsOneLineAndBlank) {
  EXPECT_EQ(formatPolicyReply("DUNNO"), "action=DUNNO\n\n");
  EXPECT_EQ(formatPolicyReply("450 4.7.1 a\nb\r"), "action=450 4.7.1 a b \n\n");
}

}  // namespace
}  // namespace relaykit::policy
