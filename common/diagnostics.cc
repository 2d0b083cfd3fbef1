// SPDX-License-Identifier: Apache-2.0
// diagnostics.cc: formatting of configuration problems.
#include "common/diagnostics.h"

namespace relaykit {

std::string Diagnostic::format() const {
  std::string out = where.file.empty() ? std::string("<config>") : where.file;
  out += ':' + std::to_string(where.line) + ':' + std::to_string(where.column) + ": ";
  if (severity == Severity::kWarning) {
    out += "warning: ";
  }
  out += message;
  return out;
}

void Diagnostics::error(const SourceLocation& where, std::string message) {
  items_.push_back(Diagnostic{Diagnostic::Severity::kError, where, std::move(message)});
}

void Diagnostics::warning(const SourceLocation& where, std::string message) {
  items_.push_back(Diagnostic{Diagnostic::Severity::kWarning, where, std::move(message)});
}

bool Diagnostics::hasErrors() const {
  for (const auto& d : items_) {
    if (d.severity == Diagnostic::Severity::kError) {
      return true;
    }
  }
  return false;
}

std::string Diagnostics::formatAll() const {
  std::string out;
  for (const auto& d : items_) {
    out += d.format();
    out += '\n';
  }
  return out;
}

void Diagnostics::append(const Diagnostics& other) {
  items_.insert(items_.end(), other.items_.begin(), other.items_.end());
}

}  // namespace relaykit
