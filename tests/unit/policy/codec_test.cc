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

// The codec as the protocol defines it, one line at a time with no cleverness: what the codec,
// which scans 64 bytes at a time and copies runs of lines, must agree with on every input.
struct ReferenceResult {
  std::vector<std::vector<std::pair<std::string, std::string>>> requests;
  std::string error;  // empty: no error
};

ReferenceResult referenceParse(const std::string& stream) {
  ReferenceResult result;
  std::vector<std::pair<std::string, std::string>> current;
  std::size_t requestBytes = 0;
  std::size_t pos = 0;
  while (pos < stream.size()) {
    const std::size_t nl = stream.find('\n', pos);
    const std::size_t end = nl == std::string::npos ? stream.size() : nl;
    std::string line = stream.substr(pos, end - pos);
    if (line.size() > kMaxLineLength + 1) {
      result.error = "attribute line longer than " + std::to_string(kMaxLineLength) + " bytes";
      return result;
    }
    requestBytes += line.size() + (nl == std::string::npos ? 0 : 1);
    if (requestBytes > kMaxRequestBytes) {
      result.error = "policy request larger than " + std::to_string(kMaxRequestBytes) + " bytes";
      return result;
    }
    if (nl == std::string::npos) {
      break;  // incomplete: not delivered
    }
    pos = nl + 1;
    if (!line.empty() && line.back() == '\r') {
      line.pop_back();
    }
    if (line.empty()) {
      if (current.empty()) {
        result.error = "empty policy request";
        return result;
      }
      result.requests.push_back(std::move(current));
      current.clear();
      requestBytes = 0;
      continue;
    }
    const std::size_t eq = line.find('=');
    if (eq == std::string::npos) {
      result.error = "malformed attribute line (no '=')";
      return result;
    }
    if (eq == 0) {
      result.error = "malformed attribute line (empty name)";
      return result;
    }
    if (current.size() >= kMaxAttributeCount) {
      result.error = "too many attributes (limit " + std::to_string(kMaxAttributeCount) + ")";
      return result;
    }
    current.emplace_back(line.substr(0, eq), line.substr(eq + 1));
  }
  return result;
}

// Random streams of Postfix-like, odd and malformed lines, fed in random chunks; each request
// is handed back to the codec (recycle) before the next chunk, as the daemon does, so buffers
// are reused. Every request, every attribute, get() and has() for each name, and the error
// must be those of the reference.
TEST(PolicyCodec, AgreesWithTheLineByLineReference) {
  const std::vector<std::string> pieces = {"request=smtpd_access_policy\n",
                                           "protocol_state=RCPT\n",
                                           "sender=a@b.example\n",
                                           "sender=second@b.example\n",
                                           "recipient=\n",
                                           "size=1234\n",
                                           "instance=1.2\r\n",
                                           "client_address=10.0.0.1\n",
                                           "x=y=z\n",
                                           "queue_id=ABC\n",
                                           "sasl_username=u\n",
                                           "recipient_count=3\n",
                                           "protocol_name=ESMTP\n",
                                           "ccert_subject=CN=a=b\n",
                                           "\n",
                                           "\r\n",
                                           "noequals\n",
                                           "=empty-name\n",
                                           "a\rb=c\n",
                                           std::string("nul=\0x\n", 7),
                                           "\r",
                                           "long=" + std::string(kMaxLineLength - 5, 'v') + "\n",
                                           "toolong=" + std::string(kMaxLineLength, 'v') + "\n"};
  std::mt19937 rng(7);
  for (int round = 0; round < 3000; ++round) {
    std::string stream;
    const int lines = 1 + static_cast<int>(rng() % 60);
    for (int i = 0; i < lines; ++i) {
      // Mostly well-formed: malformed pieces (the last ones) are rarer.
      const std::size_t n = pieces.size();
      const std::size_t pick = rng() % 8 == 0 ? rng() % n : rng() % (n - 8);
      stream += pieces[pick];
    }
    if (round % 7 == 0) {
      stream += manyAttributes(kMaxAttributeCount - 1 + rng() % 3);
    }
    const ReferenceResult want = referenceParse(stream);
    PolicyCodec codec;
    std::vector<std::vector<std::pair<std::string, std::string>>> got;
    std::string error;
    std::size_t pos = 0;
    while (pos < stream.size() && error.empty()) {
      const std::size_t max = round % 3 == 0 ? 3 : round % 3 == 1 ? 70 : 5000;
      const std::size_t n = std::min<std::size_t>(1 + rng() % max, stream.size() - pos);
      std::vector<PolicyRequest> out;
      Status s = codec.feed(std::string_view(stream).substr(pos, n), &out);
      pos += n;
      for (PolicyRequest& r : out) {
        std::vector<std::pair<std::string, std::string>> attributes;
        for (std::size_t i = 0; i < r.size(); ++i) {
          attributes.emplace_back(r.name(i), r.value(i));
          // get() finds the last attribute of a name, by index or by scan alike.
          std::string last;
          for (std::size_t j = 0; j < r.size(); ++j) {
            if (r.name(j) == r.name(i)) {
              last = std::string(r.value(j));
            }
          }
          ASSERT_EQ(r.get(r.name(i)), last);
          ASSERT_TRUE(r.has(r.name(i)));
        }
        for (const char* name :
             {"sender", "recipient", "instance", "size", "queue_id", "client_address",
              "protocol_state", "sasl_username", "recipient_count"}) {
          std::string last;
          bool present = false;
          for (const auto& [n, v] : attributes) {
            if (n == name) {
              last = v;
              present = true;
            }
          }
          ASSERT_EQ(r.get(attributeOf(name)), last) << name;
          ASSERT_EQ(r.has(name), present) << name;
        }
        got.push_back(std::move(attributes));
        codec.recycle(std::move(r));
      }
      if (!s.isOk()) {
        error = s.message();
      }
    }
    // Which of two limits a long partial line hits first may depend on where the chunks split
    // (the line or the request may pass its bound first); any other error must be the same.
    const std::string line = "attribute line longer than";
    const std::string request = "policy request larger than";
    auto isSize = [&](const std::string& e) {
      return e.rfind(line, 0) == 0 || e.rfind(request, 0) == 0;
    };
    if (!(isSize(error) && isSize(want.error))) {
      ASSERT_EQ(error, want.error) << "round " << round;
    }
    ASSERT_EQ(got, want.requests) << "round " << round;
  }
}

TEST(PolicyCodec, IndexedAttributesAndAdd) {
  EXPECT_EQ(attributeOf("sender"), Attribute::kSender);
  EXPECT_EQ(attributeOf("recipient_count"), Attribute::kRecipientCount);
  EXPECT_EQ(attributeOf("senderx"), Attribute::kCount);
  EXPECT_EQ(attributeOf("stress"), Attribute::kCount);  // same length as "sender"
  EXPECT_EQ(attributeOf(""), Attribute::kCount);
  PolicyRequest r;
  r.add("sender", "a@b");
  r.add("client_name", "x");
  r.add("sender", "c@d");
  EXPECT_EQ(r.get(Attribute::kSender), "c@d");
  EXPECT_EQ(r.get("sender"), "c@d");
  EXPECT_EQ(r.get("client_name"), "x");
  EXPECT_EQ(r.get(Attribute::kRecipient), "");
  EXPECT_FALSE(r.has("recipient"));
  r.clear();
  EXPECT_EQ(r.get(Attribute::kSender), "");
  EXPECT_FALSE(r.has("sender"));
}

TEST(PolicyCodec, ReplyIntoAReusedBuffer) {
  std::string out = "leftover from a longer reply";
  formatPolicyReply("DUNNO", &out);
  EXPECT_EQ(out, "action=DUNNO\n\n");
  formatPolicyReply("FILTER smtp:[a]:25\x7f", &out);
  EXPECT_EQ(out, "action=FILTER smtp:[a]:25 \n\n");
}

TEST(PolicyCodec, ReplyIsOneLineAndBlank) {
  EXPECT_EQ(formatPolicyReply("DUNNO"), "action=DUNNO\n\n");
  EXPECT_EQ(formatPolicyReply("450 4.7.1 a\nb\r"), "action=450 4.7.1 a b \n\n");
}

}  // namespace
}  // namespace relaykit::policy
