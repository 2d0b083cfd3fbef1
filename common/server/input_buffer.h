// SPDX-License-Identifier: Apache-2.0
// input_buffer.h: the flat input buffer of one connection of the daemon skeleton
// (common/server/connection.h), with its per-thread list of spare blocks.
#pragma once

#include <cstddef>
#include <memory>
#include <string_view>

namespace relaykit {

// The unconsumed input of one connection, contiguous. The skeleton read(2)s straight into its free
// tail; a handler looks at view() and consume()s what it handled, leaving an incomplete request in
// place. Room is made by moving the unconsumed bytes to the front only when the consumed prefix is
// at least as long as they are, else by doubling, so every byte is moved O(1) times on average;
// the size is bounded by the caller (ServerLimits::maxInputBytes plus one read).
class InputBuffer {
 public:
  // The first block's size, and what the skeleton reads per readable event at most: blocks of
  // this size are kept per thread for the next connection.
  static constexpr std::size_t kBlockBytes = 16 * 1024;

  InputBuffer() = default;
  InputBuffer(const InputBuffer&) = delete;
  InputBuffer& operator=(const InputBuffer&) = delete;

  const char* data() const { return buf_.get() + begin_; }
  std::size_t size() const { return end_ - begin_; }
  bool empty() const { return begin_ == end_; }
  std::string_view view() const { return std::string_view(data(), size()); }
  // Drops the first `n` bytes (at most size()).
  void consume(std::size_t n);
  // The memory held (for tests; released by release()).
  std::size_t capacity() const { return capacity_; }

  // Used by the skeleton: a tail of at least `minRoom` free bytes (allocated on first use), to
  // read into; commit(n) appends the `n` bytes written there.
  char* prepare(std::size_t minRoom);
  void commit(std::size_t n) { end_ += n; }
  // Frees the memory when nothing is buffered and more than `keep` bytes are held.
  void release(std::size_t keep);
  ~InputBuffer();

 private:
  void freeStorage();

  std::unique_ptr<char[]> buf_;
  std::size_t capacity_ = 0;
  std::size_t begin_ = 0;
  std::size_t end_ = 0;
};

}  // namespace relaykit
