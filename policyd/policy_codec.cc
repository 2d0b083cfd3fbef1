// policy_codec.cc: incremental parser and reply formatter for the policy delegation protocol.
#include "policyd/policy_codec.h"

namespace relaykit::policy {

std::string_view PolicyRequest::get(std::string_view name) const {
  for (auto it = attributes_.rbegin(); it != attributes_.rend(); ++it) {
    if (it->first == name) {
      return it->second;
    }
  }
  return {};
}

bool PolicyRequest::has(std::string_view name) const {
  for (const auto& [key, value] : attributes_) {
    if (key == name) {
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

Status PolicyCodec::endLine() {
  if (!line_.empty() && line_.back() == '\r') {
    line_.pop_back();
  }
  if (line_.empty()) {
    if (current_.empty()) {
      return fail("empty policy request");
    }
    out_->push_back(std::move(current_));
    current_.clear();
    requestBytes_ = 0;
    return Status::ok();
  }
  const std::size_t eq = line_.find('=');
  if (eq == std::string::npos) {
    return fail("malformed attribute line (no '=')");
  }
  if (eq == 0) {
    return fail("malformed attribute line (empty name)");
  }
  if (current_.attributes().size() >= kMaxAttributeCount) {
    return fail("too many attributes (limit " + std::to_string(kMaxAttributeCount) + ")");
  }
  current_.add(line_.substr(0, eq), line_.substr(eq + 1));
  line_.clear();
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
    line_.append(data.substr(pos, chunk));
    if (nl == std::string_view::npos) {
      break;
    }
    if (Status s = endLine(); !s.isOk()) {
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
