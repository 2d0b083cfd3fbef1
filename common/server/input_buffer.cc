// SPDX-License-Identifier: Apache-2.0
// input_buffer.cc: see input_buffer.h.
#include "common/server/input_buffer.h"

#include <cstring>
#include <utility>
#include <vector>

namespace relaykit {
namespace {

// Input blocks of kBlockBytes (every connection's first) are kept for the next connection, up
// to this many per thread (connections live on their loop's thread): a connection per SMTP
// session (the milter) would otherwise allocate and free 16 KiB each time, a slow path of malloc.
constexpr std::size_t kSpareInputBlocks = 32;

// Set once the thread's spare list is destroyed (a trivially destructible flag stays readable):
// an input buffer freed after that frees its block.
thread_local bool spareGone = false;

struct SpareBlocks {
  std::vector<std::unique_ptr<char[]>> blocks;
  ~SpareBlocks() { spareGone = true; }
};

SpareBlocks& spareBlocks() {
  static thread_local SpareBlocks spare;
  return spare;
}

std::unique_ptr<char[]> takeBlock(std::size_t size) {
  if (size != InputBuffer::kBlockBytes || spareGone) {
    return std::unique_ptr<char[]>(new char[size]);  // not zeroed: only written bytes are read
  }
  auto& blocks = spareBlocks().blocks;
  if (!blocks.empty()) {
    std::unique_ptr<char[]> block = std::move(blocks.back());
    blocks.pop_back();
    return block;
  }
  return std::unique_ptr<char[]>(new char[size]);  // not zeroed: only written bytes are read
}

void giveBlock(std::unique_ptr<char[]> block, std::size_t size) {
  if (size != InputBuffer::kBlockBytes || spareGone) {
    return;  // freed here
  }
  auto& blocks = spareBlocks().blocks;
  if (blocks.size() < kSpareInputBlocks) {
    if (blocks.capacity() == 0) {
      blocks.reserve(kSpareInputBlocks);
    }
    blocks.push_back(std::move(block));
  }
}

}  // namespace

void InputBuffer::consume(std::size_t n) {
  begin_ += n < size() ? n : size();
  if (begin_ == end_) {
    begin_ = end_ = 0;  // empty: the next read starts at the front, no move needed
  }
}

char* InputBuffer::prepare(std::size_t minRoom) {
  if (capacity_ - end_ >= minRoom) {
    return buf_.get() + end_;
  }
  const std::size_t live = size();
  if (begin_ >= live && capacity_ - live >= minRoom) {
    // The consumed prefix is at least as long as what is left: moving it costs no more than the
    // bytes already consumed, so each byte is moved O(1) times on average.
    std::memmove(buf_.get(), buf_.get() + begin_, live);
  } else {
    std::size_t grown = capacity_ * 2;
    if (grown < live + minRoom) {
      grown = live + minRoom;
    }
    std::unique_ptr<char[]> bigger = takeBlock(grown);
    if (live > 0) {
      std::memcpy(bigger.get(), buf_.get() + begin_, live);
    }
    freeStorage();
    buf_ = std::move(bigger);
    capacity_ = grown;
  }
  begin_ = 0;
  end_ = live;
  return buf_.get() + end_;
}

void InputBuffer::release(std::size_t keep) {
  if (empty() && capacity_ > keep) {
    freeStorage();
    capacity_ = begin_ = end_ = 0;
  }
}

void InputBuffer::freeStorage() {
  if (buf_) {
    giveBlock(std::move(buf_), capacity_);
  }
}

InputBuffer::~InputBuffer() {
  freeStorage();
}

}  // namespace relaykit
