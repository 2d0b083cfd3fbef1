// SPDX-License-Identifier: Apache-2.0
// logical_lines.cc: readllines(3) semantics over a string (see logical_lines.h).
#include "common/logical_lines.h"

namespace relaykit {
namespace {

bool isSpace(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

}  // namespace

SourceLocation LogicalLine::locate(const SourceLocation& origin, size_t offset) const {
  SourceLocation where = origin;
  const Piece* piece = pieces.empty() ? nullptr : &pieces.front();
  for (const Piece& p : pieces) {
    if (p.offset <= offset) {
      piece = &p;
    }
  }
  if (piece == nullptr) {
    return where;
  }
  const int baseLine = origin.line > 0 ? origin.line : 1;
  const int baseColumn = (piece->line == 0 && origin.column > 0) ? origin.column : 1;
  where.line = baseLine + piece->line;
  where.column = baseColumn + piece->column + static_cast<int>(offset - piece->offset);
  return where;
}

std::vector<LogicalLine> readLogicalLines(std::string_view text, const SourceLocation& origin,
                                          Diagnostics* diags) {
  std::vector<LogicalLine> lines;
  bool haveCurrent = false;
  int lineIndex = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) {
      end = text.size();
    }
    std::string_view physical = text.substr(pos, end - pos);
    size_t first = 0;
    while (first < physical.size() && (isSpace(physical[first]))) {
      ++first;
    }
    const bool skip = first == physical.size() || physical[first] == '#';
    if (!skip) {
      if (first == 0) {
        lines.emplace_back();
        haveCurrent = true;
        lines.back().pieces.push_back({0, lineIndex, 0});
        lines.back().text.assign(physical);
      } else if (haveCurrent) {
        LogicalLine& cur = lines.back();
        cur.pieces.push_back({cur.text.size(), lineIndex, 0});
        cur.text.append(physical);
      } else if (diags != nullptr) {
        LogicalLine tmp;
        tmp.pieces.push_back({0, lineIndex, 0});
        std::string shown(physical.substr(0, 30));
        diags->warning(tmp.locate(origin, 0), "logical line must not start with whitespace: \"" +
                                                  shown + (physical.size() > 30 ? "...\"" : "\""));
      }
    }
    pos = end + 1;
    ++lineIndex;
  }
  return lines;
}

}  // namespace relaykit
