// SPDX-License-Identifier: Apache-2.0
// http_request_test.cc: the metrics endpoint's request-head codec, whole and one byte at a time,
// with the malformed and oversized heads it must refuse (and the status it answers with).
#include <gtest/gtest.h>

#include <string>

#include "common/server/http_request.h"

namespace relaykit {
namespace {

using State = HttpRequestParser::State;

// Feeds `text` (one byte at a time when `bytewise`); returns the parser.
HttpRequestParser parse(const std::string& text, bool bytewise = false,
                        std::size_t* used = nullptr) {
  HttpRequestParser p;
  std::size_t n = 0;
  if (bytewise) {
    for (char c : text) {
      if (p.state() != State::kHead) {
        break;
      }
      n += p.feed(std::string_view(&c, 1));
    }
  } else {
    n = p.feed(text);
  }
  if (used != nullptr) {
    *used = n;
  }
  return p;
}

TEST(HttpRequestTest, ParsesRequestHeads) {
  for (bool bytewise : {false, true}) {
    std::size_t used = 0;
    auto p = parse("GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n\r\nGET /next", bytewise, &used);
    ASSERT_EQ(p.state(), State::kComplete) << p.error();
    EXPECT_EQ(p.head().method, "GET");
    EXPECT_EQ(p.head().target, "/metrics?x=1");
    EXPECT_EQ(p.head().minorVersion, 1);
    EXPECT_TRUE(p.head().keepAlive);
    EXPECT_EQ(used, std::string("GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n\r\n").size());
  }
  auto p = parse("GET / HTTP/1.0\n\n");
  ASSERT_EQ(p.state(), State::kComplete);
  EXPECT_FALSE(p.head().keepAlive);
  p = parse("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n");
  EXPECT_TRUE(p.head().keepAlive);
  p = parse("GET / HTTP/1.1\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
  ASSERT_EQ(p.state(), State::kComplete);
  EXPECT_FALSE(p.head().keepAlive);
  p = parse("\r\n\r\nHEAD /health HTTP/1.1\r\n\r\n");
  ASSERT_EQ(p.state(), State::kComplete);
  EXPECT_EQ(p.head().method, "HEAD");
  p = parse("GET / HTTP/1.1\r\nHost: a");
  EXPECT_EQ(p.state(), State::kHead);
  EXPECT_TRUE(p.inProgress());
  p.reset();
  EXPECT_FALSE(p.inProgress());
}

TEST(HttpRequestTest, RefusesWhatTheEndpointNeverTakes) {
  struct Case {
    std::string text;
    int status;
  };
  const Case cases[] = {
      {"GET /\r\n\r\n", 400},
      {"GET  / HTTP/1.1\r\n\r\n", 400},
      {"GET / HTTP/1.1 x\r\n\r\n", 400},
      {"G(T / HTTP/1.1\r\n\r\n", 400},
      {"GET / HTTP/2.0\r\n\r\n", 505},
      {"GET / HTTP/1.9\r\n\r\n", 505},
      {"GET / HTTX/1.1\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nNoColon\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nA: b\r\n folded\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nA: b\x01\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nA: b\rc\r\n\r\n", 400},
      {"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n", 413},
      {"GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n", 413},
      {"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 501},
      {"GET / HTTP/1.1\r\nX: " + std::string(kMaxHttpHeadBytes, 'a') + "\r\n\r\n", 431},
  };
  for (const auto& c : cases) {
    for (bool bytewise : {false, true}) {
      auto p = parse(c.text, bytewise);
      EXPECT_EQ(p.state(), State::kError) << c.text;
      EXPECT_EQ(p.errorStatus(), c.status) << c.text << ": " << p.error();
    }
  }
  std::string many = "GET / HTTP/1.1\r\n";
  for (std::size_t i = 0; i <= kMaxHttpHeaderFields; ++i) {
    many += "A: b\r\n";
  }
  EXPECT_EQ(parse(many + "\r\n").errorStatus(), 431);
  // An endless head stops being consumed at the bound.
  std::size_t used = 0;
  auto p = parse(std::string(3 * kMaxHttpHeadBytes, 'a'), false, &used);
  EXPECT_EQ(p.state(), State::kError);
  EXPECT_LE(used, kMaxHttpHeadBytes + 1);
}

}  // namespace
}  // namespace relaykit
