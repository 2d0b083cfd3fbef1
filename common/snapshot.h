// SPDX-License-Identifier: Apache-2.0
// snapshot.h: the current immutable snapshot of some compiled state (a Config, a service's rules),
// swapped whole on reload.
//
// get() returns a shared_ptr the caller keeps for as long as it needs a consistent view (one
// request, one connection); set() publishes a new snapshot, and the old one lives on until its last
// reader drops it. Thread-safe (a mutex held only to copy a pointer).
#pragma once

#include <memory>
#include <mutex>
#include <utility>

namespace relaykit {

template <typename T>
class SnapshotHolder {
 public:
  SnapshotHolder() = default;
  explicit SnapshotHolder(std::shared_ptr<const T> initial) : current_(std::move(initial)) {}

  std::shared_ptr<const T> get() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return current_;
  }
  void set(std::shared_ptr<const T> next) {
    std::shared_ptr<const T> old;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      old = std::exchange(current_, std::move(next));
    }
    // `old` is released here, outside the lock.
  }

 private:
  mutable std::mutex mutex_;
  std::shared_ptr<const T> current_;
};

}  // namespace relaykit
