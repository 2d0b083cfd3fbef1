// SPDX-License-Identifier: Apache-2.0
// logical_lines.h: Postfix's readllines(3) over in-memory text, with positions.
//
// A logical line is a line that starts with non-whitespace, plus the lines that follow it and
// start with whitespace (continuation lines, appended as they are, without the newline).
// Empty lines, all-whitespace lines and lines whose first non-blank byte is '#' are skipped
// anywhere, even between continuation lines. Text that would start a logical line with
// whitespace is reported (Postfix warns and skips it). Never fails otherwise.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/diagnostics.h"

namespace relaykit {

struct LogicalLine {
  std::string text;
  // One physical line contributing to `text`: its bytes start at `offset` in `text`, and it is
  // line `line` (0-based index into the input) at byte column `column` (0-based).
  struct Piece {
    size_t offset;
    int line;
    int column;
  };
  std::vector<Piece> pieces;

  int firstLine() const { return pieces.empty() ? 0 : pieces.front().line; }
  // The location of byte `offset` of `text`, relative to `origin` (origin.line is line 0;
  // origin.column applies to line 0 only). Columns are 1-based in the result.
  SourceLocation locate(const SourceLocation& origin, size_t offset) const;
};

// Splits `text` into logical lines. Continuation text with no line to continue is reported as
// a warning at its place in `diags` (when not null) and skipped.
std::vector<LogicalLine> readLogicalLines(std::string_view text, const SourceLocation& origin,
                                          Diagnostics* diags);

}  // namespace relaykit
