// SPDX-License-Identifier: Apache-2.0
// policy_codec.cc: incremental parser and reply formatter for the policy delegation protocol.
#include "policyd/policy_codec.h"

namespace relaykit::policy {

namespace {
constexpr std::size_t kReservedAttributes = 48;  // Postfix 3.7 sends ~30 attributes,
constexpr std::size_t kReservedText = 1024;      // ~600 bytes
}  // namespace

void PolicyRequest::reserveOnFirst() {
  if (spans_.empty()) {
    spans_.reserve(kReservedAttributes);
    text_.reserve(kReservedText);
  }
}

void PolicyRequest::add(std::string_view name, std::string_view value) {
  reserveOnFirst();
  Span span{static_cast<std::uint32_t>(text_.size()), static_cast<std::uint32_t>(name.size()),
            static_cast<std::uint32_t>(text_.size() + name.size()),
            static_cast<std::uint32_t>(value.size())};
  text_.append(name);
  text_.append(value);
  spans_.push_back(span);
}

void PolicyRequest::addLine(std::string_view line, std::size_t eq) {
  reserveOnFirst();
  const auto at = static_cast<std::uint32_t>(text_.size());
  spans_.push_back(Span{at, static_cast<std::uint32_t>(eq), at + static_cast<std::uint32_t>(eq + 1),
                        static_cast<std::uint32_t>(line.size() - eq - 1)});
  text_.append(line);
}

std::string_view PolicyRequest::name(std::size_t i) const {
  return std::string_view(text_).substr(spans_[i].name, spans_[i].nameLength);
}

std::string_view PolicyRequest::value(std::size_t i) const {
  return std::string_view(text_).substr(spans_[i].value, spans_[i].valueLength);
}

// get() and has() run a dozen times per decision over ~30 attributes: lengths are compared
// before bytes, without building a view per attribute.
std::string_view PolicyRequest::get(std::string_view wanted) const {
  const char* text = text_.data();
  for (std::size_t i = spans_.size(); i-- > 0;) {
    const Span& s = spans_[i];
    if (s.nameLength == wanted.size() &&
        std::char_traits<char>::compare(text + s.name, wanted.data(), wanted.size()) == 0) {
      return std::string_view(text + s.value, s.valueLength);
    }
  }
  return {};
}

bool PolicyRequest::has(std::string_view wanted) const {
  const char* text = text_.data();
  for (const Span& s : spans_) {
    if (s.nameLength == wanted.size() &&
        std::char_traits<char>::compare(text + s.name, wanted.data(), wanted.size()) == 0) {
      return true;
    }
  }
  return false;
}

Status PolicyCodec::fail(std::string message) {
  error_ = Status::error(std::move(message));
  line_.clear();
  current_.clear();
  return error_;
}

Status PolicyCodec::endLine(std::string_view line) {
  if (!line.empty() && line.back() == '\r') {
    line.remove_suffix(1);
  }
  if (line.empty()) {
    if (current_.empty()) {
      return fail("empty policy request");
    }
    out_->push_back(std::move(current_));
    current_.clear();
    requestBytes_ = 0;
    return Status::ok();
  }
  const std::size_t eq = line.find('=');
  if (eq == std::string_view::npos) {
    return fail("malformed attribute line (no '=')");
  }
  if (eq == 0) {
    return fail("malformed attribute line (empty name)");
  }
  if (current_.size() >= kMaxAttributeCount) {
    return fail("too many attributes (limit " + std::to_string(kMaxAttributeCount) + ")");
  }
  current_.addLine(line, eq);
  return Status::ok();
}

Status PolicyCodec::feed(std::string_view data, std::vector<PolicyRequest>* out) {
  if (!error_.isOk()) {
    return error_;
  }
  out_ = out;
  std::size_t pos = 0;
  while (pos < data.size()) {
    const std::size_t nl = data.find('\n', pos);
    const std::size_t end = nl == std::string_view::npos ? data.size() : nl;
    const std::size_t chunk = end - pos;
    if (line_.size() + chunk > kMaxLineLength + 1) {  // +1: a '\r' before the '\n'
      return fail("attribute line longer than " + std::to_string(kMaxLineLength) + " bytes");
    }
    requestBytes_ += chunk + (nl == std::string_view::npos ? 0 : 1);
    if (requestBytes_ > kMaxRequestBytes) {
      return fail("policy request larger than " + std::to_string(kMaxRequestBytes) + " bytes");
    }
    if (nl == std::string_view::npos) {
      line_.append(data.substr(pos, chunk));  // the rest of this line comes in a later chunk
      break;
    }
    Status s;
    if (line_.empty()) {  // the whole line is in this chunk: no copy
      s = endLine(data.substr(pos, chunk));
    } else {
      line_.append(data.substr(pos, chunk));
      s = endLine(line_);
      line_.clear();
    }
    if (!s.isOk()) {
      return s;
    }
    pos = nl + 1;
  }
  return Status::ok();
}

std::string formatPolicyReply(std::string_view action) {
  std::string reply;
  reply.reserve(action.size() + 9);
  reply += "action=";
  for (char c : action) {
    const auto u = static_cast<unsigned char>(c);
    reply += (u < 0x20 || u == 0x7f) ? ' ' : c;
  }
  reply += "\n\n";
  return reply;
}

}  // namespace relaykit::policy
