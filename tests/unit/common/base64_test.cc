// SPDX-License-Identifier: Apache-2.0
// base64_test.cc: common/base64.h against RFC 4648's test vectors, round trips of every length,
// and the strict (DKIM) and lenient (RFC 2047) decoders on malformed input.
#include "common/base64.h"

#include <gtest/gtest.h>

#include <string>

namespace relaykit {
namespace {

TEST(Base64Test, Rfc4648Vectors) {
  const std::pair<const char*, const char*> kVectors[] = {{"", ""},
                                                          {"f", "Zg=="},
                                                          {"fo", "Zm8="},
                                                          {"foo", "Zm9v"},
                                                          {"foob", "Zm9vYg=="},
                                                          {"fooba", "Zm9vYmE="},
                                                          {"foobar", "Zm9vYmFy"}};
  for (const auto& [plain, encoded] : kVectors) {
    EXPECT_EQ(base64Encode(plain), encoded);
    auto strict = base64Decode(encoded);
    ASSERT_TRUE(strict) << encoded;
    EXPECT_EQ(*strict, plain);
    auto lenient = base64DecodeLenient(encoded);
    ASSERT_TRUE(lenient.has_value()) << encoded;
    EXPECT_EQ(*lenient, plain);
  }
}

TEST(Base64Test, RoundTripOfEveryByteAndLength) {
  std::string bytes;
  for (int i = 0; i < 300; ++i) {
    bytes.push_back(static_cast<char>(i * 37));
    auto back = base64Decode(base64Encode(bytes));
    ASSERT_TRUE(back);
    EXPECT_EQ(*back, bytes);
  }
}

TEST(Base64Test, StrictDecoderSkipsFoldingWhitespaceAndRefusesTheRest) {
  EXPECT_EQ(*base64Decode(" Zm9v\r\n\tYmFy "), "foobar");
  EXPECT_FALSE(base64Decode("Zm9"));       // not a multiple of four
  EXPECT_FALSE(base64Decode("Zm9v!"));     // outside the alphabet
  EXPECT_FALSE(base64Decode("Zg==Zg=="));  // data after padding
  EXPECT_FALSE(base64Decode("Z==="));      // three padding characters
}

TEST(Base64Test, LenientDecoderStopsAtPaddingAndAcceptsItMissing) {
  EXPECT_EQ(*base64DecodeLenient("Zm8"), "fo");
  EXPECT_EQ(*base64DecodeLenient("Zm8=ignored"), "fo");
  EXPECT_FALSE(base64DecodeLenient("Zm 8").has_value());
}

}  // namespace
}  // namespace relaykit
