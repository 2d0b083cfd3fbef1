// SPDX-License-Identifier: Apache-2.0
// dkim_canon.cc: RFC 6376 canonicalization (see dkim_canon.h).
#include "milters/dkim_canon.h"

namespace relaykit::dkim {
namespace {

bool isWsp(char c) {
  return c == ' ' || c == '\t';
}

char lowerAscii(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

// Appends `text` with every LF that has no CR before it turned into CRLF.
void appendWithCrlf(std::string* out, std::string_view text) {
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '\n' && (i == 0 || text[i - 1] != '\r')) {
      out->push_back('\r');
    }
    out->push_back(text[i]);
  }
}

}  // namespace

const char* canonName(Canon canon) {
  return canon == Canon::kSimple ? "simple" : "relaxed";
}

std::string canonicalizationTag(const Canonicalization& c) {
  return std::string(canonName(c.header)) + "/" + canonName(c.body);
}

StatusOr<Canonicalization> parseCanonicalization(std::string_view text) {
  auto one = [](std::string_view word, Canon* out) {
    if (word == "simple") {
      *out = Canon::kSimple;
    } else if (word == "relaxed") {
      *out = Canon::kRelaxed;
    } else {
      return false;
    }
    return true;
  };
  size_t slash = text.find('/');
  Canonicalization c;
  if (slash == std::string_view::npos || !one(text.substr(0, slash), &c.header) ||
      !one(text.substr(slash + 1), &c.body)) {
    return Status::error(
        "canonicalization must be HEADER/BODY, each simple or relaxed "
        "(relaxed/relaxed, simple/simple, relaxed/simple, simple/relaxed), not \"" +
        std::string(text) + "\"");
  }
  return c;
}

std::string canonicalizeHeaderNoCrlf(Canon canon, std::string_view name, std::string_view value) {
  std::string out;
  out.reserve(name.size() + value.size() + 2);
  if (canon == Canon::kSimple) {
    out.append(name);
    out.push_back(':');
    appendWithCrlf(&out, value);
    return out;
  }
  while (!name.empty() && isWsp(name.back())) {
    name.remove_suffix(1);
  }
  for (char c : name) {
    out.push_back(lowerAscii(c));
  }
  out.push_back(':');
  bool pendingWsp = false;
  bool started = false;  // WSP before the first value byte is dropped (no WSP after the colon)
  for (char c : value) {
    if (c == '\r' || c == '\n') {
      continue;  // unfolding: line breaks vanish, the WSP after them stays (then collapses)
    }
    if (isWsp(c)) {
      pendingWsp = started;
      continue;
    }
    if (pendingWsp) {
      out.push_back(' ');
      pendingWsp = false;
    }
    out.push_back(c);
    started = true;
  }
  return out;  // trailing WSP never written
}

std::string canonicalizeHeader(Canon canon, std::string_view name, std::string_view value) {
  std::string out = canonicalizeHeaderNoCrlf(canon, name, value);
  out += "\r\n";
  return out;
}

BodyCanonicalizer::BodyCanonicalizer(Canon canon, ByteSink* sink) : canon_(canon), sink_(sink) {}

void BodyCanonicalizer::emit(std::string_view bytes) {
  outputBytes_ += bytes.size();
  anyOutput_ = anyOutput_ || !bytes.empty();
  if (buffer_.size() + bytes.size() > kCanonFlushBytes) {
    flush();
    while (bytes.size() > kCanonFlushBytes) {
      sink_->append(bytes.substr(0, kCanonFlushBytes));
      bytes.remove_prefix(kCanonFlushBytes);
    }
  }
  buffer_.append(bytes);
}

void BodyCanonicalizer::flush() {
  if (!buffer_.empty()) {
    sink_->append(buffer_);
    buffer_.clear();
  }
}

void BodyCanonicalizer::flushEmptyLines() {
  while (emptyLines_ > 0) {
    --emptyLines_;
    emit("\r\n");
  }
}

void BodyCanonicalizer::dataByte(char c) {
  if (canon_ == Canon::kRelaxed && isWsp(c)) {
    pendingWsp_ = true;  // written as one SP only if something else follows on this line
    return;
  }
  flushEmptyLines();
  if (pendingWsp_) {
    emit(" ");
    pendingWsp_ = false;
  }
  emit(std::string_view(&c, 1));
  lineHasData_ = true;
}

void BodyCanonicalizer::endOfLine() {
  pendingWsp_ = false;  // relaxed: trailing WSP of the line is dropped
  if (lineHasData_) {
    emit("\r\n");
    lineHasData_ = false;
  } else {
    ++emptyLines_;  // written only if a non-empty line follows
  }
}

void BodyCanonicalizer::dataRun(std::string_view run) {
  flushEmptyLines();
  if (pendingWsp_) {
    emit(" ");
    pendingWsp_ = false;
  }
  emit(run);
  lineHasData_ = true;
}

void BodyCanonicalizer::feed(std::string_view chunk) {
  if (finished_) {
    return;
  }
  bool relaxed = canon_ == Canon::kRelaxed;
  auto special = [relaxed](char c) { return c == '\r' || c == '\n' || (relaxed && isWsp(c)); };
  size_t i = 0;
  while (i < chunk.size()) {
    char c = chunk[i];
    if (!special(c)) {
      // Fast path: a run of ordinary bytes is copied as one piece.
      size_t j = i + 1;
      while (j < chunk.size() && !special(chunk[j])) {
        ++j;
      }
      if (pendingCr_) {
        pendingCr_ = false;
        dataByte('\r');  // a CR not followed by LF is data
      }
      dataRun(chunk.substr(i, j - i));
      i = j;
      continue;
    }
    ++i;
    if (c == '\n') {
      pendingCr_ = false;  // CRLF or bare LF: one line end
      endOfLine();
      continue;
    }
    if (pendingCr_) {
      pendingCr_ = false;
      dataByte('\r');
    }
    if (c == '\r') {
      pendingCr_ = true;
      continue;
    }
    dataByte(c);
  }
  flush();
}

void BodyCanonicalizer::finish() {
  if (finished_) {
    return;
  }
  if (pendingCr_) {
    pendingCr_ = false;
    dataByte('\r');
  }
  if (lineHasData_) {
    endOfLine();  // a last line without CRLF gets one
  }
  if (canon_ == Canon::kSimple && !anyOutput_) {
    emit("\r\n");  // simple: an empty body is one CRLF
  }
  emptyLines_ = 0;
  flush();
  finished_ = true;
}

std::string canonicalizeBody(Canon canon, std::string_view body) {
  StringSink sink;
  BodyCanonicalizer canonicalizer(canon, &sink);
  canonicalizer.feed(body);
  canonicalizer.finish();
  return sink.text();
}

}  // namespace relaykit::dkim
