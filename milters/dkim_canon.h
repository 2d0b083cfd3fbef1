// SPDX-License-Identifier: Apache-2.0
// dkim_canon.h: RFC 6376 section 3.4 canonicalization ("simple" and "relaxed"), header and body.
//
// Headers are canonicalized one at a time from the form relaykit carries them in (HeaderField):
// the name without the colon, and the value exactly as it will be delivered after the colon,
// INCLUDING the space that usually follows the colon, continuation lines joined with "\n" (the
// milter and queue form) or "\r\n" (wire form); both give the same result.
//
// The body is canonicalized by a BodyCanonicalizer fed the body in chunks of any size (one byte at
// a time gives the same output as one call with everything). Line ends may be CRLF (the milter
// protocol's and SMTP's form) or a bare LF (a message file, Postfix's queue form); both are taken
// as the delivered CRLF. A CR not followed by LF is data. Memory is constant whatever the body
// size: trailing empty lines are held as a count, never as bytes, and output goes to a ByteSink in
// pieces of at most kCanonFlushBytes. Nothing here fails.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/status.h"

namespace relaykit::dkim {

enum class Canon { kSimple, kRelaxed };

struct Canonicalization {
  Canon header = Canon::kRelaxed;
  Canon body = Canon::kRelaxed;
};

// "simple" / "relaxed".
const char* canonName(Canon canon);
// The c= tag value: "relaxed/relaxed", "simple/simple", ...
std::string canonicalizationTag(const Canonicalization& c);
// Parses "header/body" (each simple or relaxed). A single word is refused on purpose: RFC 6376
// reads "relaxed" as relaxed/simple, which surprises; the configuration asks for both halves.
StatusOr<Canonicalization> parseCanonicalization(std::string_view text);

// Output of the body canonicalizer (a hash, or a string in tests).
class ByteSink {
 public:
  virtual ~ByteSink() = default;
  virtual void append(std::string_view bytes) = 0;
};

class StringSink : public ByteSink {
 public:
  void append(std::string_view bytes) override { text_.append(bytes); }
  const std::string& text() const { return text_; }

 private:
  std::string text_;
};

// One header field canonicalized, with its final CRLF: "From: a\r\n" (simple) or "from:a\r\n"
// (relaxed: name lower-cased, folding removed, runs of SP/HTAB one SP, no space around the colon
// or at the end).
std::string canonicalizeHeader(Canon canon, std::string_view name, std::string_view value);
// The same without the final CRLF: the form in which the DKIM-Signature header itself is hashed.
std::string canonicalizeHeaderNoCrlf(Canon canon, std::string_view name, std::string_view value);

// Largest piece of canonical output buffered before it is handed to the sink.
inline constexpr std::size_t kCanonFlushBytes = 16 * 1024;

class BodyCanonicalizer {
 public:
  // `sink` must outlive the canonicalizer.
  BodyCanonicalizer(Canon canon, ByteSink* sink);
  // Feeds the next piece of the body (any size, any boundary).
  void feed(std::string_view chunk);
  // Ends the body: supplies the final CRLF of a last line without one, drops trailing empty lines
  // (simple: an empty body becomes one CRLF; relaxed: nothing). Call once; feed() after it is a
  // programming error and is ignored.
  void finish();
  // Canonical bytes handed to the sink so far (the l= value a signer would use; relaykit never
  // writes l=).
  std::uint64_t outputBytes() const { return outputBytes_; }

 private:
  void dataByte(char c);
  void dataRun(std::string_view run);  // bytes that are neither line ends nor (relaxed) WSP
  void endOfLine();
  void emit(std::string_view bytes);
  void flushEmptyLines();
  void flush();

  Canon canon_;
  ByteSink* sink_;
  std::string buffer_;
  std::uint64_t emptyLines_ = 0;  // empty lines held back (they vanish if nothing follows)
  std::uint64_t outputBytes_ = 0;
  bool pendingCr_ = false;   // a CR whose meaning depends on the next byte
  bool pendingWsp_ = false;  // relaxed: SP/HTAB seen since the last other byte of the line
  bool lineHasData_ = false;
  bool anyOutput_ = false;
  bool finished_ = false;
};

// Convenience for tests and small bodies: the whole body canonicalized.
std::string canonicalizeBody(Canon canon, std::string_view body);

}  // namespace relaykit::dkim
