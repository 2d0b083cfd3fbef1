// SPDX-License-Identifier: Apache-2.0
// http_request.cc: the bounded request-head codec; see http_request.h.
#include "common/server/http_request.h"

#include <cctype>

#include "common/ascii.h"

namespace relaykit {

namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return out;
}

bool isToken(std::string_view s) {
  if (s.empty()) {
    return false;
  }
  for (char c : s) {
    unsigned char u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u >= 0x7f || c == ':' || c == '(' || c == ')' || c == ',' || c == '/' ||
        c == ';' || c == '<' || c == '>' || c == '@' || c == '[' || c == ']' || c == '?' ||
        c == '=' || c == '{' || c == '}' || c == '"' || c == '\\') {
      return false;
    }
  }
  return true;
}

}  // namespace

const char* httpReason(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 400:
      return "Bad Request";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 413:
      return "Payload Too Large";
    case 431:
      return "Request Header Fields Too Large";
    case 501:
      return "Not Implemented";
    case 503:
      return "Service Unavailable";
    case 505:
      return "HTTP Version Not Supported";
    default:
      break;
  }
  return "Error";
}

void HttpRequestParser::reset() {
  state_ = State::kHead;
  buffer_.clear();
  head_ = HttpRequestHead();
  errorStatus_ = 0;
  error_.clear();
}

void HttpRequestParser::fail(int status, std::string why) {
  state_ = State::kError;
  errorStatus_ = status;
  error_ = std::move(why);
}

std::size_t HttpRequestParser::feed(std::string_view data) {
  std::size_t used = 0;
  while (state_ == State::kHead && used < data.size()) {
    const char c = data[used++];
    if (buffer_.empty() && (c == '\r' || c == '\n')) {
      continue;  // RFC 9112 2.2: ignore empty lines before the request line
    }
    buffer_.push_back(c);
    if (buffer_.size() > kMaxHttpHeadBytes) {
      fail(431, "request head longer than " + std::to_string(kMaxHttpHeadBytes) + " bytes");
      break;
    }
    const std::size_t n = buffer_.size();
    const bool end = (n >= 2 && buffer_[n - 1] == '\n' && buffer_[n - 2] == '\n') ||
                     (n >= 4 && buffer_.compare(n - 4, 4, "\r\n\r\n") == 0);
    if (end) {
      parseHead();
    }
  }
  return used;
}

void HttpRequestParser::parseHead() {
  std::vector<std::string_view> lines;
  std::string_view rest(buffer_);
  while (!rest.empty()) {
    std::size_t nl = rest.find('\n');
    std::string_view line = rest.substr(0, nl);
    rest.remove_prefix(nl == std::string_view::npos ? rest.size() : nl + 1);
    if (!line.empty() && line.back() == '\r') {
      line.remove_suffix(1);
    }
    if (line.empty()) {
      break;  // the blank line ending the head
    }
    for (char c : line) {
      unsigned char u = static_cast<unsigned char>(c);
      if ((u < 0x20 && c != '\t') || u == 0x7f) {
        fail(400, "control character in the request head");
        return;
      }
    }
    lines.push_back(line);
  }
  if (lines.empty()) {
    fail(400, "empty request");
    return;
  }
  if (lines.size() - 1 > kMaxHttpHeaderFields) {
    fail(431, "more than " + std::to_string(kMaxHttpHeaderFields) + " header fields");
    return;
  }
  // Request line: METHOD SP TARGET SP HTTP/1.x
  std::string_view requestLine = lines[0];
  std::size_t sp1 = requestLine.find(' ');
  std::size_t sp2 = sp1 == std::string_view::npos ? sp1 : requestLine.find(' ', sp1 + 1);
  if (sp1 == std::string_view::npos || sp2 == std::string_view::npos ||
      requestLine.find(' ', sp2 + 1) != std::string_view::npos) {
    fail(400, "malformed request line");
    return;
  }
  std::string_view method = requestLine.substr(0, sp1);
  std::string_view target = requestLine.substr(sp1 + 1, sp2 - sp1 - 1);
  std::string_view version = requestLine.substr(sp2 + 1);
  if (!isToken(method) || target.empty() || target.find('\t') != std::string_view::npos) {
    fail(400, "malformed request line");
    return;
  }
  if (version.size() != 8 || version.compare(0, 5, "HTTP/") != 0 || version[6] != '.' ||
      !std::isdigit(static_cast<unsigned char>(version[5])) ||
      !std::isdigit(static_cast<unsigned char>(version[7]))) {
    fail(400, "malformed HTTP version");
    return;
  }
  if (version[5] != '1' || (version[7] != '0' && version[7] != '1')) {
    fail(505, "HTTP version not supported");
    return;
  }
  head_.method = std::string(method);
  head_.target = std::string(target);
  head_.minorVersion = version[7] - '0';
  head_.keepAlive = head_.minorVersion == 1;
  for (std::size_t i = 1; i < lines.size(); ++i) {
    std::string_view line = lines[i];
    if (line.front() == ' ' || line.front() == '\t') {
      fail(400, "obsolete header line folding");
      return;
    }
    std::size_t colon = line.find(':');
    if (colon == std::string_view::npos || !isToken(line.substr(0, colon))) {
      fail(400, "malformed header field");
      return;
    }
    const std::string name = lower(line.substr(0, colon));
    const std::string value = lower(trimBlanks(line.substr(colon + 1)));
    if (name == "content-length") {
      if (value.empty() || value.find_first_not_of("0123456789") != std::string::npos) {
        fail(400, "malformed Content-Length");
        return;
      }
      if (value.find_first_not_of('0') != std::string::npos) {
        fail(413, "request bodies are not accepted");
        return;
      }
    } else if (name == "transfer-encoding") {
      fail(501, "Transfer-Encoding is not supported");
      return;
    } else if (name == "connection") {
      if (value.find("close") != std::string::npos) {
        head_.keepAlive = false;
      } else if (value.find("keep-alive") != std::string::npos) {
        head_.keepAlive = true;
      }
    }
  }
  state_ = State::kComplete;
}

}  // namespace relaykit
