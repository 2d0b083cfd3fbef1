// SPDX-License-Identifier: Apache-2.0
// lookup_result.h: the tri-state answer of every table (found / not found / error).
// Each daemon maps it to its wire answer in exactly one place (socketmap OK/NOTFOUND/TEMP/PERM,
// policy action, milter result).
#pragma once

#include <string>
#include <utility>

namespace relaykit {

class LookupResult {
 public:
  enum class Kind { kFound, kNotFound, kTempError, kPermError };

  static LookupResult found(std::string value) {
    return LookupResult(Kind::kFound, std::move(value));
  }
  static LookupResult notFound() { return LookupResult(Kind::kNotFound, std::string()); }
  static LookupResult tempError(std::string reason) {
    return LookupResult(Kind::kTempError, std::move(reason));
  }
  static LookupResult permError(std::string reason) {
    return LookupResult(Kind::kPermError, std::move(reason));
  }

  Kind kind() const { return kind_; }
  bool isFound() const { return kind_ == Kind::kFound; }
  bool isNotFound() const { return kind_ == Kind::kNotFound; }
  bool isError() const { return kind_ == Kind::kTempError || kind_ == Kind::kPermError; }
  // The value when found; the reason when an error; empty when not found.
  const std::string& value() const { return text_; }
  const std::string& reason() const { return text_; }

 private:
  LookupResult(Kind kind, std::string text) : kind_(kind), text_(std::move(text)) {}
  Kind kind_;
  std::string text_;
};

}  // namespace relaykit
