// offline_rewrite.cc: message splitting, rendering and header diff for `relaykit rewrite`.
#include "milters/offline_rewrite.h"

#include <algorithm>

#include "milters/edit_plan.h"
#include "milters/header_rules.h"

namespace relaykit::milter {
namespace {

std::vector<std::string> lines(std::string_view text) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    size_t end = nl == std::string_view::npos ? text.size() : nl;
    std::string line(text.substr(pos, end - pos));
    if (!line.empty() && line.back() == '\r') {
      line.pop_back();
    }
    out.push_back(std::move(line));
    pos = nl == std::string_view::npos ? text.size() : nl + 1;
  }
  return out;
}

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
  for (; i < ls.size(); ++i) {
    const std::string& line = ls[i];
    if (line.empty()) {
      ++i;
      break;
    }
    if ((line[0] == ' ' || line[0] == '\t') && !msg.headers.empty()) {
      msg.headers.back().value += "\n" + line;
    } else if (isHeaderLine(line)) {
      size_t colon = line.find(':');
      msg.headers.push_back({line.substr(0, colon), line.substr(colon + 1)});
    } else {
      break;  // not a header: the body starts here
    }
  }
  for (; i < ls.size(); ++i) {
    msg.body += ls[i];
    if (i + 1 < ls.size() || (!text.empty() && text.back() == '\n')) {
      msg.body += '\n';
    }
  }
  return msg;
}

std::string renderMessage(const std::vector<HeaderField>& headers, const std::string& body) {
  std::string out;
  for (const HeaderField& h : headers) {
    out += headerLine(h);
    out += '\n';
  }
  out += '\n';
  out += body;
  return out;
}

std::string diffHeaders(const std::vector<HeaderField>& before,
                        const std::vector<HeaderField>& after) {
  // Longest common subsequence over whole header lines (header blocks are small).
  size_t n = before.size();
  size_t m = after.size();
  std::vector<std::vector<int>> lcs(n + 1, std::vector<int>(m + 1, 0));
  for (size_t i = n; i-- > 0;) {
    for (size_t j = m; j-- > 0;) {
      lcs[i][j] = headerLine(before[i]) == headerLine(after[j])
                      ? lcs[i + 1][j + 1] + 1
                      : std::max(lcs[i + 1][j], lcs[i][j + 1]);
    }
  }
  std::string out;
  size_t i = 0;
  size_t j = 0;
  while (i < n || j < m) {
    if (i < n && j < m && headerLine(before[i]) == headerLine(after[j])) {
      appendPrefixed(&out, ' ', headerLine(before[i]));
      ++i;
      ++j;
    } else if (i < n && (j == m || lcs[i + 1][j] >= lcs[i][j + 1])) {
      appendPrefixed(&out, '-', headerLine(before[i]));  // removals before additions
      ++i;
    } else {
      appendPrefixed(&out, '+', headerLine(after[j]));
      ++j;
    }
  }
  return out;
}

OfflineReport rewriteOffline(const MilterConfig& config, const Envelope& envelope,
                             std::string_view message) {
  OfflineReport report;
  ParsedMessage parsed = splitMessage(message);
  report.outcome = rewriteMessage(config, envelope, parsed.headers);
  report.newSender = envelope.sender;
  if (report.outcome.error) {
    report.message = std::string(message);
    return report;
  }
  std::vector<HeaderField> after = applyEditPlan(parsed.headers, report.outcome.plan);
  for (const EditOp& op : report.outcome.plan) {
    if (op.kind == EditOp::Kind::kChangeFrom) {
      report.newSender = op.value;
    }
  }
  report.message = renderMessage(after, parsed.body);
  if (report.newSender != envelope.sender) {
    report.diff += "-MAIL FROM:<" + envelope.sender + ">\n+MAIL FROM:<" + report.newSender + ">\n";
  }
  report.diff += diffHeaders(parsed.headers, after);
  report.logLine = formatRewriteLog(envelope.queueId, report.outcome.changes);
  return report;
}

}  // namespace relaykit::milter
