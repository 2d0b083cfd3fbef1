// SPDX-License-Identifier: Apache-2.0
// dkim_verify.cc: DKIM signature checks against given keys (see dkim_verify.h).
#include "milters/dkim_verify.h"

#include <algorithm>

#include "common/yaml_util.h"

namespace relaykit::dkim {
namespace {

bool isFws(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

std::string_view trimFws(std::string_view s) {
  while (!s.empty() && isFws(s.front())) {
    s.remove_prefix(1);
  }
  while (!s.empty() && isFws(s.back())) {
    s.remove_suffix(1);
  }
  return s;
}

std::string withoutFws(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (!isFws(c)) {
      out.push_back(c);
    }
  }
  return out;
}

bool isSignatureHeader(std::string_view name) {
  std::string_view want = kSignatureHeaderName;
  if (name.size() != want.size()) {
    return false;
  }
  for (size_t i = 0; i < name.size(); ++i) {
    char a = name[i];
    char b = want[i];
    if (a >= 'A' && a <= 'Z') {
      a = static_cast<char>(a - 'A' + 'a');
    }
    if (b >= 'A' && b <= 'Z') {
      b = static_cast<char>(b - 'A' + 'a');
    }
    if (a != b) {
      return false;
    }
  }
  return true;
}

StatusOr<std::int64_t> number(const std::map<std::string, std::string>& tags, const char* tag) {
  StatusOr<std::int64_t> n = parseInteger(withoutFws(tags.at(tag)));
  if (!n || *n < 0) {
    return Status::error(std::string(tag) + "= is not a number");
  }
  return n;
}

}  // namespace

StatusOr<ParsedSignature> parseSignature(std::string_view value) {
  ParsedSignature sig;
  size_t pos = 0;
  while (pos <= value.size()) {
    size_t semi = value.find(';', pos);
    size_t end = semi == std::string_view::npos ? value.size() : semi;
    std::string_view spec = trimFws(value.substr(pos, end - pos));
    pos = end + 1;
    if (spec.empty()) {
      continue;
    }
    size_t eq = spec.find('=');
    if (eq == std::string_view::npos) {
      return Status::error("malformed tag \"" + std::string(spec) + "\"");
    }
    std::string tag(trimFws(spec.substr(0, eq)));
    if (sig.tags.count(tag) != 0) {
      return Status::error("duplicate tag " + tag + "=");
    }
    sig.tags[tag] = std::string(trimFws(spec.substr(eq + 1)));
  }
  for (const char* required : {"v", "a", "b", "bh", "d", "h", "s"}) {
    if (sig.tags.count(required) == 0) {
      return Status::error(std::string("missing required tag ") + required + "=");
    }
  }
  if (sig.tags["v"] != "1") {
    return Status::error("v= is not 1");
  }
  StatusOr<DkimAlgorithm> alg = parseAlgorithm(sig.tags["a"]);
  if (!alg || (sig.tags["a"] != "rsa-sha256" && sig.tags["a"] != "ed25519-sha256")) {
    return Status::error("unsupported a=" + sig.tags["a"]);
  }
  sig.algorithm = *alg;
  if (sig.tags.count("c") != 0) {
    std::string c = withoutFws(sig.tags["c"]);
    if (c.find('/') == std::string::npos) {
      c += "/simple";  // RFC 6376: a lone header canonicalization means body "simple"
    }
    StatusOr<Canonicalization> canon = parseCanonicalization(c);
    if (!canon) {
      return Status::error("unsupported c=" + sig.tags["c"]);
    }
    sig.canon = *canon;
  }
  sig.domain = withoutFws(sig.tags["d"]);
  sig.selector = withoutFws(sig.tags["s"]);
  std::string h = sig.tags["h"];
  size_t start = 0;
  while (start <= h.size()) {
    size_t colon = h.find(':', start);
    size_t end = colon == std::string::npos ? h.size() : colon;
    std::string name(trimFws(std::string_view(h).substr(start, end - start)));
    if (!name.empty()) {
      sig.hList.push_back(name);
    }
    start = end + 1;
  }
  bool signsFrom = std::any_of(sig.hList.begin(), sig.hList.end(), [](const std::string& n) {
    return n.size() == 4 && (n[0] == 'f' || n[0] == 'F') && (n[1] == 'r' || n[1] == 'R') &&
           (n[2] == 'o' || n[2] == 'O') && (n[3] == 'm' || n[3] == 'M');
  });
  if (!signsFrom) {
    return Status::error("h= does not include From");
  }
  StatusOr<std::string> bh = base64Decode(sig.tags["bh"]);
  StatusOr<std::string> b = base64Decode(sig.tags["b"]);
  if (!bh || !b) {
    return Status::error("bh= or b= is not base64");
  }
  sig.bodyHash = *bh;
  sig.signature = *b;
  if (sig.tags.count("l") != 0) {
    StatusOr<std::int64_t> l = number(sig.tags, "l");
    if (!l) {
      return l.status();
    }
    sig.hasLength = true;
    sig.length = static_cast<std::uint64_t>(*l);
  }
  if (sig.tags.count("t") != 0) {
    StatusOr<std::int64_t> t = number(sig.tags, "t");
    if (!t) {
      return t.status();
    }
    sig.timestamp = *t;
  }
  if (sig.tags.count("x") != 0) {
    StatusOr<std::int64_t> x = number(sig.tags, "x");
    if (!x) {
      return x.status();
    }
    sig.expiry = *x;
  }
  return sig;
}

std::string withEmptyB(std::string_view value) {
  size_t pos = 0;
  while (pos < value.size()) {
    size_t semi = value.find(';', pos);
    size_t end = semi == std::string_view::npos ? value.size() : semi;
    std::string_view spec = value.substr(pos, end - pos);
    size_t eq = spec.find('=');
    if (eq != std::string_view::npos && trimFws(spec.substr(0, eq)) == "b") {
      return std::string(value.substr(0, pos + eq + 1)) + std::string(value.substr(end));
    }
    pos = end + 1;
  }
  return std::string(value);
}

namespace {

// Canonical body hashing with an optional l= cut.
class LimitedSink : public ByteSink {
 public:
  LimitedSink(ByteSink* inner, bool limited, std::uint64_t limit)
      : inner_(inner), limited_(limited), left_(limit) {}
  void append(std::string_view bytes) override {
    if (limited_) {
      bytes = bytes.substr(0, static_cast<size_t>(std::min<std::uint64_t>(bytes.size(), left_)));
      left_ -= bytes.size();
    }
    inner_->append(bytes);
  }

 private:
  ByteSink* inner_;
  bool limited_;
  std::uint64_t left_;
};

std::string bodyDigest(Canon canon, std::string_view body, bool limited, std::uint64_t limit) {
  StringSink all;
  LimitedSink cut(&all, limited, limit);
  BodyCanonicalizer canonicalizer(canon, &cut);
  canonicalizer.feed(body);
  canonicalizer.finish();
  return sha256(all.text());
}

}  // namespace

std::vector<VerifyResult> verifyMessage(const std::vector<DkimHeader>& headers,
                                        std::string_view body, const KeyLookup& lookup,
                                        std::int64_t now) {
  std::vector<VerifyResult> results;
  for (const DkimHeader& header : headers) {
    if (!isSignatureHeader(header.name)) {
      continue;
    }
    VerifyResult r;
    StatusOr<ParsedSignature> sig = parseSignature(header.value);
    if (!sig) {
      r.reason = "unusable signature: " + sig.status().message();
      results.push_back(r);
      continue;
    }
    r.domain = sig->domain;
    r.selector = sig->selector;
    r.algorithm = algorithmName(sig->algorithm);
    if (now >= 0 && sig->expiry >= 0 && sig->expiry < now) {
      r.reason = "signature expired (x=" + std::to_string(sig->expiry) + ")";
      results.push_back(r);
      continue;
    }
    StatusOr<std::shared_ptr<const DkimKey>> key =
        lookup(sig->domain, sig->selector, sig->algorithm);
    if (!key) {
      r.reason = key.status().message();
      results.push_back(r);
      continue;
    }
    if ((*key)->algorithm() != sig->algorithm) {
      r.reason = std::string("key type ") + keyTypeName((*key)->algorithm()) +
                 " does not match a=" + r.algorithm;
      results.push_back(r);
      continue;
    }
    if (bodyDigest(sig->canon.body, body, sig->hasLength, sig->length) != sig->bodyHash) {
      r.reason = "body hash mismatch (bh=): the body changed";
      results.push_back(r);
      continue;
    }
    std::string data = headerHashInput(headers, sig->hList, sig->canon.header, header.name,
                                       withEmptyB(header.value));
    if (!(*key)->verifyDigest(sha256(data), sig->signature)) {
      r.reason = "signature mismatch (b=): signed headers changed or wrong key";
      results.push_back(r);
      continue;
    }
    r.pass = true;
    r.reason = "pass";
    results.push_back(r);
  }
  return results;
}

}  // namespace relaykit::dkim
