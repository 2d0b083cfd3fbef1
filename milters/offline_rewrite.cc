// SPDX-License-Identifier: Apache-2.0
// offline_rewrite.cc: `relaykit rewrite`'s message intake (Postfix's sendmail + cleanup rules
// for a message file), rendering, header diff, and the engine run on the result.
#include "milters/offline_rewrite.h"

#include <algorithm>
#include <cctype>
#include <iterator>

#include "milters/dkim_message.h"
#include "milters/edit_plan.h"
#include "milters/header_rules.h"

namespace relaykit::milter {
namespace {

// One input line as Postfix stores it: the line end gone with every CR before it (sendmail's
// sendmail_fix_line_endings=always; smtpd likewise), any other CR a space.
std::string storedLine(std::string_view raw) {
  while (!raw.empty() && raw.back() == '\r') {
    raw.remove_suffix(1);
  }
  std::string line(raw);
  std::replace(line.begin(), line.end(), '\r', ' ');
  return line;
}

std::vector<std::string> lines(std::string_view text) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    size_t end = nl == std::string_view::npos ? text.size() : nl;
    out.push_back(storedLine(text.substr(pos, end - pos)));
    pos = nl == std::string_view::npos ? text.size() : nl + 1;
  }
  return out;
}

// cleanup(8) keeps header text in C strings: each piece of a line (line_length_limit bytes)
// ends at its first NUL.
std::string_view beforeNul(std::string_view piece) {
  return piece.substr(0, piece.find('\0'));
}

// A header as cleanup_out_header() writes it to the queue file: cut at header_size_limit (at the
// last line boundary when that keeps more than 90% of the limit, else exactly at the limit), and
// a TAB before each continuation line that does not start with a blank (a REPLACE or PREPEND
// text whose $n carried a newline).
HeaderField storedHeader(const HeaderField& h) {
  std::string text = h.name + ":" + h.value;
  std::string out;
  size_t start = 0;
  while (true) {
    size_t nl = text.find('\n', start);
    size_t end = nl == std::string::npos ? text.size() : nl;
    if (end > kHeaderSizeLimit) {
      if (start * 10 > kHeaderSizeLimit * 9) {
        break;  // nice cut
      }
      end = kHeaderSizeLimit;  // unkind cut
      nl = std::string::npos;
    }
    if (start > 0) {
      out += '\n';
      if (start == end || (text[start] != ' ' && text[start] != '\t')) {
        out += '\t';
      }
    }
    out.append(text, start, end - start);
    if (nl == std::string::npos) {
      break;
    }
    start = nl + 1;
  }
  size_t colon = out.find(':');
  if (colon == std::string::npos) {  // cannot happen: the limit is far past any name
    return h;
  }
  return HeaderField{out.substr(0, colon), out.substr(colon + 1)};
}

// Builds one header the way mime_state.c does: pieces of kLineLengthLimit bytes, each appended
// only while the header is shorter than kHeaderSizeLimit.
class HeaderBuffer {
 public:
  bool active() const { return active_; }

  void start(std::string_view line, size_t nameLength) {
    active_ = true;
    cut_ = false;
    std::string_view first = beforeNul(line.substr(0, kLineLengthLimit));
    size_t colon = first.find(':', nameLength);
    text_.assign(first.substr(0, nameLength));
    text_.append(first.substr(colon));  // "Name :" is stored as "Name:"
    appendPieces(line);
  }

  void continueWith(std::string_view line) {
    if (text_.size() < kHeaderSizeLimit) {
      text_ += '\n';
      text_.append(beforeNul(line.substr(0, kLineLengthLimit)));
    } else {
      cut_ = true;
    }
    appendPieces(line);
  }

  void flush(ParsedMessage* msg) {
    if (!active_) {
      return;
    }
    size_t colon = text_.find(':');
    std::string name = text_.substr(0, colon);
    if (cut_) {
      msg->notes.push_back("header " + name + " cut at header_size_limit (" +
                           std::to_string(kHeaderSizeLimit) + " bytes), as Postfix stores it");
    }
    msg->headers.push_back(storedHeader({std::move(name), text_.substr(colon + 1)}));
    text_.clear();
    active_ = false;
  }

 private:
  void appendPieces(std::string_view line) {
    for (size_t pos = kLineLengthLimit; pos < line.size(); pos += kLineLengthLimit) {
      if (text_.size() < kHeaderSizeLimit) {
        text_.append(beforeNul(line.substr(pos, kLineLengthLimit)));
      } else {
        cut_ = true;
      }
    }
  }

  std::string text_;
  bool active_ = false;
  bool cut_ = false;
};

std::string headerLine(const HeaderField& h) {
  return h.name + ":" + h.value;
}

void appendPrefixed(std::string* out, char mark, const std::string& text) {
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t nl = text.find('\n', pos);
    size_t end = nl == std::string::npos ? text.size() : nl;
    out->push_back(mark);
    out->append(text, pos, end - pos);
    out->push_back('\n');
    if (nl == std::string::npos) {
      break;
    }
    pos = nl + 1;
  }
}

}  // namespace

ParsedMessage splitMessage(std::string_view text) {
  ParsedMessage msg;
  std::vector<std::string> ls = lines(text);
  size_t i = 0;
  // sendmail(1) skips a leading mbox "From " line.
  if (!ls.empty() && ls[0].compare(0, 5, "From ") == 0) {
    msg.notes.push_back("mbox \"From \" line skipped, as Postfix's sendmail does");
    i = 1;
  }
  HeaderBuffer header;
  for (; i < ls.size(); ++i) {
    const std::string& line = ls[i];
    if (header.active() && !line.empty() && (line[0] == ' ' || line[0] == '\t')) {
      header.continueWith(line);
      continue;
    }
    header.flush(&msg);
    size_t nameLength = headerNameLength(beforeNul(line.substr(0, kLineLengthLimit)));
    if (nameLength > 0) {
      header.start(line, nameLength);
      continue;
    }
    // Not a header: the header block ends. An empty line (or one that starts with NUL, empty
    // to cleanup) is the separator; any other line starts the body after an inserted empty
    // line, as cleanup does.
    msg.separator = true;
    if (line.empty()) {
      ++i;
    } else if (line[0] == '\0') {
      msg.separator = false;
      msg.body += line + "\n";
      ++i;
    }
    break;
  }
  header.flush(&msg);
  for (; i < ls.size(); ++i) {
    msg.body += ls[i];
    msg.body += '\n';
  }
  if (msg.headers.empty()) {
    msg.notes.push_back(text.empty() ? "empty message"
                                     : "no header found: the whole message is the body");
  }
  return msg;
}

std::string renderMessage(const std::vector<HeaderField>& headers, const std::string& body,
                          bool separator) {
  std::string out;
  for (const HeaderField& h : headers) {
    out += headerLine(h);
    out += '\n';
  }
  if (separator) {
    out += '\n';
  }
  out += body;
  return out;
}

std::string diffHeaders(const std::vector<HeaderField>& before,
                        const std::vector<HeaderField>& after) {
  std::vector<std::string> a;
  std::vector<std::string> b;
  a.reserve(before.size());
  b.reserve(after.size());
  for (const HeaderField& h : before) {
    a.push_back(headerLine(h));
  }
  for (const HeaderField& h : after) {
    b.push_back(headerLine(h));
  }
  // The common first and last headers, then a longest common subsequence of the rest when
  // its table fits in kMaxDiffCells.
  size_t head = 0;
  while (head < a.size() && head < b.size() && a[head] == b[head]) {
    ++head;
  }
  size_t tail = 0;
  while (tail < a.size() - head && tail < b.size() - head &&
         a[a.size() - 1 - tail] == b[b.size() - 1 - tail]) {
    ++tail;
  }
  size_t n = a.size() - head - tail;
  size_t m = b.size() - head - tail;
  std::vector<std::vector<int>> lcs;
  bool minimal = n == 0 || m == 0 || (n + 1) <= kMaxDiffCells / (m + 1);
  if (minimal && n > 0 && m > 0) {
    lcs.assign(n + 1, std::vector<int>(m + 1, 0));
    for (size_t i = n; i-- > 0;) {
      for (size_t j = m; j-- > 0;) {
        lcs[i][j] = a[head + i] == b[head + j] ? lcs[i + 1][j + 1] + 1
                                               : std::max(lcs[i + 1][j], lcs[i][j + 1]);
      }
    }
  }
  std::string out;
  for (size_t k = 0; k < head; ++k) {
    appendPrefixed(&out, ' ', a[k]);
  }
  size_t i = 0;
  size_t j = 0;
  while (i < n || j < m) {
    if (!lcs.empty() && i < n && j < m && a[head + i] == b[head + j]) {
      appendPrefixed(&out, ' ', a[head + i]);
      ++i;
      ++j;
    } else if (i < n && (j == m || lcs.empty() || lcs[i + 1][j] >= lcs[i][j + 1])) {
      appendPrefixed(&out, '-', a[head + i]);  // removals before additions
      ++i;
    } else {
      appendPrefixed(&out, '+', b[head + j]);
      ++j;
    }
  }
  for (size_t k = a.size() - tail; k < a.size(); ++k) {
    appendPrefixed(&out, ' ', a[k]);
  }
  return out;
}

OfflineReport rewriteOffline(const MilterConfig& config, const Envelope& envelope,
                             std::string_view message, const OfflineSigning& signing) {
  OfflineReport report;
  ParsedMessage parsed = splitMessage(message);
  report.newSender = envelope.sender;
  report.outcome.notes = parsed.notes;
  // What the milter gets: the headers cleanup keeps, within relaykit-milter's bounds
  // (message_rewriter.h: past them the live milter passes the message unchanged).
  std::vector<HeaderField> seen;
  size_t seenBytes = 0;
  for (const HeaderField& h : parsed.headers) {
    if (isDroppedHeader(h.name)) {
      report.outcome.notes.push_back("header " + h.name +
                                     " dropped by Postfix's cleanup (message_drop_headers) "
                                     "before any milter");
    } else {
      seen.push_back(h);
      seenBytes += h.name.size() + h.value.size();
    }
  }
  std::vector<HeaderField> after = seen;
  if (seen.size() > kMaxMessageHeaders || seenBytes > kMaxMessageHeaderBytes) {
    report.outcome.notes.push_back(
        "more than " + std::to_string(kMaxMessageHeaders) + " headers or " +
        std::to_string(kMaxMessageHeaderBytes) +
        " bytes of headers: relaykit-milter passes the message unchanged");
  } else {
    RewriteOutcome outcome = rewriteMessage(config, envelope, seen);
    outcome.notes.insert(outcome.notes.begin(), report.outcome.notes.begin(),
                         report.outcome.notes.end());
    report.outcome = std::move(outcome);
    if (report.outcome.error) {
      report.message = renderMessage(parsed.headers, parsed.body, parsed.separator);
      return report;
    }
    after = report.outcome.plan.size() <= kMaxPlanSimulation / (seen.size() + 1)
                ? applyEditPlan(seen, report.outcome.plan)
                : report.outcome.headers;
    for (HeaderField& h : after) {
      h = storedHeader(h);
    }
    for (const EditOp& op : report.outcome.plan) {
      if (op.kind == EditOp::Kind::kChangeFrom) {
        report.newSender = op.value;
      }
    }
  }
  if (config.dkim) {
    DkimResult dkim = signWholeMessage(*config.dkim, dkimContext(envelope, signing.nonSmtpd),
                                       report.newSender, after, parsed.body, signing.now);
    if (!dkim.error.empty()) {
      report.dkimNote = "dkim: signing failed: " + dkim.error;
    } else if (dkim.outcome == dkim::PlanOutcome::kSign) {
      for (size_t i = dkim.removed.size(); i-- > 0;) {
        after.erase(after.begin() + static_cast<std::ptrdiff_t>(dkim.removed[i]));
      }
      std::vector<HeaderField> added;
      for (const std::string& value : dkim.signatures) {
        added.push_back(HeaderField{dkim::kSignatureHeaderName, value});
      }
      after.insert(after.begin(), added.begin(), added.end());
      report.dkimSignatures = dkim.signatures;
      report.dkimNote = "dkim: signed for " + dkim.domain + " (" +
                        std::to_string(dkim.signatures.size()) + " signature" +
                        (dkim.signatures.size() == 1 ? "" : "s") + ")";
    } else {
      report.dkimNote = std::string("dkim: not signed: ") + dkim::planOutcomeName(dkim.outcome) +
                        (dkim.domain.empty() ? "" : " (domain " + dkim.domain + ")");
    }
  }
  report.message = renderMessage(after, parsed.body, parsed.separator);
  if (report.newSender != envelope.sender) {
    report.diff += "-MAIL FROM:<" + envelope.sender + ">\n+MAIL FROM:<" + report.newSender + ">\n";
  }
  report.diff += diffHeaders(parsed.headers, after);
  report.logLine = formatRewriteLog(envelope.queueId, report.outcome.changes);
  return report;
}

}  // namespace relaykit::milter
