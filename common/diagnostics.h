// SPDX-License-Identifier: Apache-2.0
// diagnostics.h: problems found while loading configuration, each tied to FILE:LINE:COL.
// Loaders report every problem they find (not just the first) into a Diagnostics sink;
// a config with any error is refused as a whole.
#pragma once

#include <string>
#include <vector>

namespace relaykit {

// A position in a configuration source. line and column are 1-based; 0 means unknown.
struct SourceLocation {
  std::string file;
  int line = 0;
  int column = 0;
};

struct Diagnostic {
  enum class Severity { kError, kWarning };
  Severity severity = Severity::kError;
  SourceLocation where;
  std::string message;

  // "FILE:LINE:COL: message" for errors, "FILE:LINE:COL: warning: message" for warnings.
  std::string format() const;
};

class Diagnostics {
 public:
  void error(const SourceLocation& where, std::string message);
  void warning(const SourceLocation& where, std::string message);
  bool hasErrors() const;
  const std::vector<Diagnostic>& all() const { return items_; }
  // Every diagnostic formatted, one per line.
  std::string formatAll() const;
  void append(const Diagnostics& other);

 private:
  std::vector<Diagnostic> items_;
};

}  // namespace relaykit
