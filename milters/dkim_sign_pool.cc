// SPDX-License-Identifier: Apache-2.0
// dkim_sign_pool.cc: the signing worker pool (see dkim_sign_pool.h).
#include "milters/dkim_sign_pool.h"

#include <algorithm>
#include <utility>

namespace relaykit::dkim {

SignPool::SignPool(int workers, std::size_t maxQueued)
    : maxQueued_(std::max<std::size_t>(maxQueued, 1)) {
  int n = std::clamp(workers, 1, kMaxSignWorkers);
  threads_.reserve(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) {
    threads_.emplace_back([this] { run(); });
  }
}

SignPool::~SignPool() {
  std::deque<Item> left;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
    left.swap(queue_);
  }
  wake_.notify_all();
  for (std::thread& t : threads_) {
    t.join();
  }
  for (Item& item : left) {
    item.done(Status::error("signing pool stopped"));
  }
}

bool SignPool::submit(SignJob job, SignDone done) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (stopping_ || queue_.size() >= maxQueued_) {
      return false;
    }
    queue_.push_back(Item{std::move(job), std::move(done)});
  }
  wake_.notify_one();
  return true;
}

std::size_t SignPool::queued() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return queue_.size();
}

void SignPool::run() {
  while (true) {
    Item item;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (stopping_) {
        return;
      }
      item = std::move(queue_.front());
      queue_.pop_front();
    }
    StatusOr<std::vector<std::string>> result =
        item.job.signer ? item.job.signer->sign(item.job.specs, item.job.headers)
                        : StatusOr<std::vector<std::string>>(Status::error("no signer"));
    item.done(std::move(result));
  }
}

}  // namespace relaykit::dkim
