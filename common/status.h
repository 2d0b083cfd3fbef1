// SPDX-License-Identifier: Apache-2.0
// status.h: errors as values on the data path (no exceptions across callbacks).
// Status is ok or carries a kind and a message; StatusOr<T> holds a value or a non-ok Status.
// Callers branch on kind(), never on the message's words (the message is for people).
#pragma once

#include <cassert>
#include <optional>
#include <string>
#include <utility>

namespace relaykit {

// What went wrong, for callers that act on it (a metric label, a retry, a different answer).
enum class ErrorKind {
  kNone,              // ok
  kInvalid,           // malformed or refused input (the default)
  kTooLarge,          // over a named limit (a file, a request, a key)
  kNotFound,          // no such file, user or entry
  kPermissionDenied,  // the OS refused access
  kNotRegularFile,    // a FIFO, directory, device or socket where a file was expected
  kIo,                // a read or write failed
};

class Status {
 public:
  Status() = default;
  static Status ok() { return Status(); }
  static Status error(std::string message, ErrorKind kind = ErrorKind::kInvalid) {
    Status s;
    s.kind_ = kind == ErrorKind::kNone ? ErrorKind::kInvalid : kind;
    s.message_ = std::move(message);
    return s;
  }
  bool isOk() const { return kind_ == ErrorKind::kNone; }
  explicit operator bool() const { return isOk(); }
  ErrorKind kind() const { return kind_; }
  const std::string& message() const { return message_; }

 private:
  ErrorKind kind_ = ErrorKind::kNone;
  std::string message_;
};

template <typename T>
class StatusOr {
 public:
  StatusOr(T value) : value_(std::move(value)) {}         // NOLINT: implicit by design
  StatusOr(Status status) : status_(std::move(status)) {  // NOLINT
    assert(!status_.isOk());
  }
  bool isOk() const { return value_.has_value(); }
  explicit operator bool() const { return isOk(); }
  const Status& status() const { return status_; }
  const T& value() const& { return *value_; }
  T& value() & { return *value_; }
  T&& value() && { return std::move(*value_); }
  const T& operator*() const& { return *value_; }
  T& operator*() & { return *value_; }
  const T* operator->() const { return &*value_; }
  T* operator->() { return &*value_; }

 private:
  std::optional<T> value_;
  Status status_;
};

}  // namespace relaykit
