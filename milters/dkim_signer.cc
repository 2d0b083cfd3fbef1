// SPDX-License-Identifier: Apache-2.0
// dkim_signer.cc: DKIM signing (see dkim_signer.h).
#include "milters/dkim_signer.h"

#include <openssl/err.h>
#include <openssl/evp.h>

#include <algorithm>
#include <unordered_map>

namespace relaykit::dkim {
namespace {

std::string lowerAscii(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') {
      c = static_cast<char>(c - 'A' + 'a');
    }
  }
  return out;
}

bool equalsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) {
    return false;
  }
  for (size_t i = 0; i < a.size(); ++i) {
    char x = a[i];
    char y = b[i];
    if (x >= 'A' && x <= 'Z') {
      x = static_cast<char>(x - 'A' + 'a');
    }
    if (y >= 'A' && y <= 'Z') {
      y = static_cast<char>(y - 'A' + 'a');
    }
    if (x != y) {
      return false;
    }
  }
  return true;
}

bool containsName(const std::vector<std::string>& names, std::string_view name) {
  return std::any_of(names.begin(), names.end(),
                     [&](const std::string& n) { return equalsIgnoreCase(n, name); });
}

// Builds a header value folded at kFoldColumn with "\n\t".
class Folder {
 public:
  explicit Folder(size_t startColumn) : column_(startColumn) {}
  // Appends `token`, after a space when `space` and it fits, else on a new line.
  void add(std::string_view token, bool space = true) {
    size_t need = token.size() + (space ? 1 : 0);
    if (column_ + need > kFoldColumn && column_ > 1) {
      out_ += "\n\t";
      column_ = 8;
    } else if (space) {
      out_ += ' ';
      ++column_;
    }
    out_.append(token);
    column_ += token.size();
  }
  // Appends `data` right after the text so far, broken with "\n\t" where a line is full.
  void addData(std::string_view data) {
    while (!data.empty()) {
      if (column_ + 8 > kFoldColumn) {
        out_ += "\n\t";
        column_ = 8;
      }
      size_t n = std::min(kFoldColumn - column_, data.size());
      out_.append(data.substr(0, n));
      column_ += n;
      data.remove_prefix(n);
    }
  }
  const std::string& text() const { return out_; }

 private:
  std::string out_;
  size_t column_;
};

}  // namespace

const std::vector<std::string>& defaultSignedHeaders() {
  static const std::vector<std::string> kHeaders = {"From",
                                                    "Reply-To",
                                                    "Subject",
                                                    "Date",
                                                    "To",
                                                    "Cc",
                                                    "Resent-Date",
                                                    "Resent-From",
                                                    "Resent-To",
                                                    "Resent-Cc",
                                                    "In-Reply-To",
                                                    "References",
                                                    "List-Id",
                                                    "List-Help",
                                                    "List-Unsubscribe",
                                                    "List-Subscribe",
                                                    "List-Post",
                                                    "List-Owner",
                                                    "List-Archive",
                                                    "Message-ID",
                                                    "MIME-Version",
                                                    "Content-Type",
                                                    "Content-Transfer-Encoding"};
  return kHeaders;
}

std::vector<std::string> chooseSignedHeaders(const std::vector<DkimHeader>& headers,
                                             const std::vector<std::string>& names,
                                             const std::vector<std::string>& oversign) {
  std::vector<std::string> out;
  std::vector<std::string> seen;
  for (const std::string& name : names) {
    if (containsName(seen, name)) {
      continue;
    }
    seen.push_back(name);
    size_t count =
        static_cast<size_t>(std::count_if(headers.begin(), headers.end(), [&](const DkimHeader& h) {
          return equalsIgnoreCase(h.name, name);
        }));
    if (count >= kMaxSignedInstances) {
      count = kMaxSignedInstances;  // the bottom ones; the signature header stays bounded
    } else if (containsName(oversign, name)) {
      ++count;
    }
    out.insert(out.end(), count, name);
  }
  return out;
}

std::string headerHashInput(const std::vector<DkimHeader>& headers,
                            const std::vector<std::string>& hList, Canon canon,
                            std::string_view signatureName, std::string_view signatureValue) {
  // Linear: the positions of every instance of each name h= asks for, found in one pass; each
  // h= entry then takes the next one from the bottom.
  struct Instances {
    std::vector<size_t> positions;  // top to bottom
    size_t used = 0;
  };
  std::unordered_map<std::string, Instances> byName;
  for (const std::string& name : hList) {
    byName.emplace(lowerAscii(name), Instances{});
  }
  for (size_t i = 0; i < headers.size(); ++i) {
    auto it = byName.find(lowerAscii(headers[i].name));
    if (it != byName.end()) {
      it->second.positions.push_back(i);
    }
  }
  std::string out;
  for (const std::string& name : hList) {
    Instances& inst = byName[lowerAscii(name)];
    if (inst.used < inst.positions.size()) {
      const DkimHeader& h = headers[inst.positions[inst.positions.size() - 1 - inst.used]];
      out += canonicalizeHeader(canon, h.name, h.value);
    }
    ++inst.used;  // an instance that does not exist contributes nothing (RFC 6376 5.4.2)
  }
  out += canonicalizeHeaderNoCrlf(canon, signatureName, signatureValue);
  return out;
}

std::string sha256(std::string_view data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), digest, &len, EVP_sha256(), nullptr) != 1) {
    ERR_clear_error();
    return std::string();
  }
  return std::string(reinterpret_cast<const char*>(digest), len);
}

class BodyHasher::Sink : public ByteSink {
 public:
  Sink() : ctx_(EVP_MD_CTX_new()) {
    ok_ = ctx_ != nullptr && EVP_DigestInit_ex(ctx_, EVP_sha256(), nullptr) == 1;
  }
  ~Sink() override { EVP_MD_CTX_free(ctx_); }
  void append(std::string_view bytes) override {
    ok_ = ok_ && EVP_DigestUpdate(ctx_, bytes.data(), bytes.size()) == 1;
  }
  std::string digest() {
    unsigned char out[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    ok_ = ok_ && EVP_DigestFinal_ex(ctx_, out, &len) == 1;
    ERR_clear_error();
    return ok_ ? std::string(reinterpret_cast<const char*>(out), len) : std::string();
  }

 private:
  EVP_MD_CTX* ctx_;
  bool ok_ = false;
};

BodyHasher::BodyHasher(Canon canon)
    : canon_(canon), sink_(std::make_unique<Sink>()), canonicalizer_(canon, sink_.get()) {}

BodyHasher::~BodyHasher() = default;

void BodyHasher::feed(std::string_view chunk) {
  canonicalizer_.feed(chunk);
}

const std::string& BodyHasher::finish() {
  if (digest_.empty()) {
    canonicalizer_.finish();
    digest_ = sink_->digest();
  }
  return digest_;
}

StatusOr<std::string> signHeaders(const SignatureSpec& spec, const std::vector<DkimHeader>& headers,
                                  std::string_view bodyDigest) {
  if (!spec.key || !spec.key->hasPrivate()) {
    return Status::error("no private key to sign with");
  }
  if (bodyDigest.size() != kSha256Bytes) {
    return Status::error("body hash missing");
  }
  std::vector<std::string> hList = chooseSignedHeaders(headers, spec.headers, spec.oversign);
  Folder f(sizeof(kSignatureHeaderName));  // "DKIM-Signature:" is the start of the line
  f.add("v=1;");
  f.add(std::string("a=") + algorithmName(spec.key->algorithm()) + ";");
  f.add("c=" + canonicalizationTag(spec.canon) + ";");
  f.add("d=" + spec.domain + ";");
  f.add("s=" + spec.selector + ";");
  f.add("t=" + std::to_string(spec.timestamp) + ";");
  if (spec.expirySeconds > 0) {
    f.add("x=" + std::to_string(spec.timestamp + spec.expirySeconds) + ";");
  }
  for (size_t i = 0; i < hList.size(); ++i) {
    std::string token = (i == 0 ? "h=" : "") + hList[i] + (i + 1 == hList.size() ? ";" : ":");
    f.add(token, i == 0);
  }
  f.add("bh=" + base64Encode(bodyDigest) + ";");
  f.add("b=");
  std::string unsignedValue = f.text();
  std::string digest = sha256(
      headerHashInput(headers, hList, spec.canon.header, kSignatureHeaderName, unsignedValue));
  StatusOr<std::string> signature = spec.key->signDigest(digest);
  if (!signature) {
    return signature.status();
  }
  // The b= data folded in pieces: verifiers ignore whitespace inside b= and empty the whole b=
  // value (with that whitespace) before hashing, so `unsignedValue` stays what they hash.
  f.addData(base64Encode(*signature));
  return f.text();
}

MessageSigner::MessageSigner(const std::vector<Canon>& bodyCanons) {
  for (Canon c : bodyCanons) {
    bool known = std::any_of(hashers_.begin(), hashers_.end(),
                             [c](const auto& h) { return h->canon() == c; });
    if (!known) {
      hashers_.push_back(std::make_unique<BodyHasher>(c));
    }
  }
}

void MessageSigner::feedBody(std::string_view chunk) {
  for (auto& h : hashers_) {
    h->feed(chunk);
  }
}

void MessageSigner::finishBody() {
  for (auto& h : hashers_) {
    h->finish();
  }
  finished_ = true;
}

StatusOr<std::vector<std::string>> MessageSigner::sign(const std::vector<SignatureSpec>& specs,
                                                       const std::vector<DkimHeader>& headers) {
  if (!finished_) {
    return Status::error("body not finished");
  }
  std::vector<std::string> out;
  for (const SignatureSpec& spec : specs) {
    auto it = std::find_if(hashers_.begin(), hashers_.end(),
                           [&](const auto& h) { return h->canon() == spec.canon.body; });
    if (it == hashers_.end()) {
      return Status::error(std::string("no body hash for ") + canonName(spec.canon.body));
    }
    StatusOr<std::string> value = signHeaders(spec, headers, (*it)->finish());
    if (!value) {
      return value.status();
    }
    out.push_back(std::move(*value));
  }
  return out;
}

}  // namespace relaykit::dkim
