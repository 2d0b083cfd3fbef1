// SPDX-License-Identifier: Apache-2.0
// http_request.h: a bounded HTTP/1.x request-head codec for the /metrics and /health endpoint,
// fed bytes as they arrive (STYLE.md: one codec per wire format, a state machine).
//
// It takes a request line and header fields up to the blank line, at most kMaxHttpHeadBytes in
// all, and refuses what that endpoint never needs: a request body (Content-Length other than 0,
// any Transfer-Encoding), HTTP versions other than 1.0 and 1.1, malformed lines (bare CR, control
// bytes, a missing colon, obs-fold continuation lines). An error carries the HTTP status to
// answer with (400, 413, 431, 501, 505), after which the connection is closed; nothing throws.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace relaykit {

// Request line plus header fields, bytes (libevent's evhttp default is unbounded).
inline constexpr std::size_t kMaxHttpHeadBytes = 8 * 1024;
// Header fields in one request.
inline constexpr std::size_t kMaxHttpHeaderFields = 64;

struct HttpRequestHead {
  std::string method;     // as sent ("GET")
  std::string target;     // "/metrics?x" (the query is the caller's to strip)
  int minorVersion = 1;   // HTTP/1.0 -> 0, HTTP/1.1 -> 1
  bool keepAlive = true;  // 1.1 unless "Connection: close"; 1.0 only with "Connection: keep-alive"
};

class HttpRequestParser {
 public:
  enum class State { kHead, kComplete, kError };

  // Consumes bytes of `data` up to the end of one request head. Returns how many were consumed;
  // stop feeding when state() is not kHead (the rest belongs to the next request or is ignored).
  std::size_t feed(std::string_view data);
  State state() const { return state_; }
  // Bytes of a request head received so far (0 between requests).
  bool inProgress() const { return state_ == State::kHead && !buffer_.empty(); }
  // kComplete: the request. kError: the status to answer and why.
  const HttpRequestHead& head() const { return head_; }
  int errorStatus() const { return errorStatus_; }
  const std::string& error() const { return error_; }
  // Ready for the next request on the same connection (after kComplete).
  void reset();

 private:
  void fail(int status, std::string why);
  void parseHead();

  State state_ = State::kHead;
  std::string buffer_;
  HttpRequestHead head_;
  int errorStatus_ = 0;
  std::string error_;
};

// The reason phrase of the statuses the endpoint answers with ("OK", "Not Found", ...).
const char* httpReason(int status);

}  // namespace relaykit
