// SPDX-License-Identifier: Apache-2.0
// dkim_signer.h: RFC 6376 / RFC 8463 DKIM signatures over a message: body hash streamed, header
// selection (h=, oversigning), the DKIM-Signature value; pure logic on OpenSSL, no I/O, no clock.
//
// CONTRACT for a caller (relaykit-milter, `relaykit rewrite`):
//  - Body: feed MessageSigner::feedBody() every body chunk in order, exactly as Postfix will
//    deliver it (the milter's SMFIC_BODY chunks: CRLF line ends; a message file's LF line ends are
//    taken as CRLF too), then finishBody() once. Memory stays constant whatever the body size
//    (one SHA-256 state and one small buffer per body canonicalization in use).
//  - Headers: at end of message, hand the FINAL header block as Postfix will queue and deliver it,
//    top to bottom: after relaykit's own edits (header rules, From rewriting) and after removing
//    any DKIM-Signature the configuration replaces. Each DkimHeader is the name without the colon
//    and the value exactly as delivered after the colon, WITH its leading space (" Joe
//    <joe@corp.com>"), continuation lines joined by "\n" (or "\r\n"). A milter that does not
//    negotiate SMFIP_HDR_LEADSPC receives values without that space (Postfix strips one): it must
//    negotiate the flag, or "simple" header canonicalization will not verify (relaxed would).
//    Postfix's own Received: header is invisible to a milter and must not be added here (it is
//    not in the default h= list, and a signature never covers it).
//  - Output: one DKIM-Signature value per SignatureSpec, each starting with a space and folded
//    with "\n\t" (the milter form). Deliver it as the header "DKIM-Signature:" + value, prepended
//    above the other headers: with SMFIP_HDR_LEADSPC negotiated pass the value as is; without it,
//    pass value.substr(1) (Postfix adds the space back). Any other byte change breaks "simple".
//  - The time (t=) comes from the caller (SignatureSpec::timestamp); x= = t= + expiry when set.
//    l= is never written: the whole body is always signed.
// Errors: signing returns a Status only when OpenSSL fails (out of memory, a broken key).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "milters/dkim_canon.h"
#include "milters/dkim_key.h"

namespace relaykit::dkim {

inline constexpr char kSignatureHeaderName[] = "DKIM-Signature";
// Longest line of a folded signature header (RFC 5322 recommends 78).
inline constexpr std::size_t kFoldColumn = 78;
// Most instances of one header name listed in h= (the bottom ones; a message with more of them
// keeps the rest unsigned and is not oversigned for that name). Keeps the DKIM-Signature header
// far below Postfix's header_size_limit whatever the message.
inline constexpr std::size_t kMaxSignedInstances = 50;

struct DkimHeader {
  std::string name;
  std::string value;
};

// Any vector of {name, value} structs (milter::HeaderField) as DkimHeaders.
template <typename Field>
std::vector<DkimHeader> toDkimHeaders(const std::vector<Field>& fields) {
  std::vector<DkimHeader> out;
  out.reserve(fields.size());
  for (const Field& f : fields) {
    out.push_back(DkimHeader{f.name, f.value});
  }
  return out;
}

// RFC 6376 section 5.4.1's list of header fields a signer should sign (From, Reply-To, Subject,
// Date, To, Cc, Resent-Date, Resent-From, Resent-To, Resent-Cc, In-Reply-To, References, List-Id,
// List-Help, List-Unsubscribe, List-Subscribe, List-Post, List-Owner, List-Archive), then
// Message-ID and the MIME header fields (MIME-Version, Content-Type, Content-Transfer-Encoding),
// which section 5.4 suggests and OpenDKIM signs by default.
const std::vector<std::string>& defaultSignedHeaders();

struct SignatureSpec {
  std::shared_ptr<const DkimKey> key;  // private; its type gives a=
  std::string domain;                  // d=
  std::string selector;                // s=
  Canonicalization canon;
  std::vector<std::string> headers = defaultSignedHeaders();  // candidates for h=
  std::vector<std::string> oversign = {"From"};               // signed once more than present
  std::int64_t timestamp = 0;                                 // t= (seconds since the epoch)
  std::int64_t expirySeconds = 0;                             // x= = t= + this; 0: no x=
};

// The h= list for `headers`: each name of `names` (first spelling kept, duplicates ignored,
// compared case-insensitively) once per instance present, plus once more when it is in
// `oversign` (so nobody can add another one, RFC 6376 section 8.15). A name neither present nor
// oversigned is left out. At most kMaxSignedInstances entries per name.
std::vector<std::string> chooseSignedHeaders(const std::vector<DkimHeader>& headers,
                                             const std::vector<std::string>& names,
                                             const std::vector<std::string>& oversign);

// The exact bytes hashed for the header part (RFC 6376 section 3.7): the fields named by
// `hList`, each name taking the next instance from the bottom (absent instances contribute
// nothing), canonicalized with CRLF, then the signature header `signatureName` with
// `signatureValue` (its b= already empty) canonicalized WITHOUT a final CRLF. Linear in the
// number of headers plus the length of hList.
std::string headerHashInput(const std::vector<DkimHeader>& headers,
                            const std::vector<std::string>& hList, Canon canon,
                            std::string_view signatureName, std::string_view signatureValue);

// SHA-256 of the body canonicalized one way, streamed.
class BodyHasher {
 public:
  explicit BodyHasher(Canon canon);
  ~BodyHasher();
  BodyHasher(const BodyHasher&) = delete;
  BodyHasher& operator=(const BodyHasher&) = delete;
  void feed(std::string_view chunk);
  // Ends the body; returns the raw 32-byte digest (the same on later calls).
  const std::string& finish();
  Canon canon() const { return canon_; }

 private:
  class Sink;
  Canon canon_;
  std::unique_ptr<Sink> sink_;
  BodyCanonicalizer canonicalizer_;
  std::string digest_;
};

// The SHA-256 digest of `data`.
std::string sha256(std::string_view data);

// One complete DKIM-Signature value (leading space, "\n\t" folding) for `spec` over `headers`
// and a body whose canonical SHA-256 (spec.canon.body) is `bodyDigest`.
StatusOr<std::string> signHeaders(const SignatureSpec& spec, const std::vector<DkimHeader>& headers,
                                  std::string_view bodyDigest);

// Several signatures over one message, body streamed once per body canonicalization in use.
class MessageSigner {
 public:
  // `bodyCanons`: the body canonicalizations the later specs will use (one or both).
  explicit MessageSigner(const std::vector<Canon>& bodyCanons);
  void feedBody(std::string_view chunk);
  void finishBody();
  // One value per spec, in order. A spec whose body canonicalization was not announced, or a
  // call before finishBody(), is an error.
  StatusOr<std::vector<std::string>> sign(const std::vector<SignatureSpec>& specs,
                                          const std::vector<DkimHeader>& headers);

 private:
  std::vector<std::unique_ptr<BodyHasher>> hashers_;
  bool finished_ = false;
};

}  // namespace relaykit::dkim
