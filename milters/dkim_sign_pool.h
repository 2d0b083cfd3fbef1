// SPDX-License-Identifier: Apache-2.0
// dkim_sign_pool.h: a small fixed pool of threads that computes DKIM signatures off the event
// loop (docs/dkim.md, "Cost, and where signing runs").
//
// The loop thread hashes the body inline (MessageSigner::feedBody, cheap and linear), and at end
// of message hands the finished MessageSigner, the final headers and the specs to submit(). A
// worker signs and calls `done` ON THE WORKER THREAD with the DKIM-Signature values or the
// signing error; `done` must only post the result back to the loop (an eventfd, a libevent
// event_active on a thread-safe base) and must not throw. Jobs run in submission order per
// worker; with several workers, results come back in any order (each carries its own `done`).
// Bounded: submit() refuses a job (returns false, `done` never called) when maxQueued jobs are
// waiting; the caller then applies back-pressure or answers per on_error. Destruction stops
// the workers after the running jobs; jobs still queued get `done` with an error.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/status.h"
#include "milters/dkim_signer.h"

namespace relaykit::dkim {

inline constexpr int kMaxSignWorkers = 64;

struct SignJob {
  std::unique_ptr<MessageSigner> signer;  // finishBody() already called
  std::vector<SignatureSpec> specs;
  std::vector<DkimHeader> headers;  // final, as delivered (dkim_signer.h contract)
  std::shared_ptr<const void> pin;  // keeps the configuration snapshot (keys) alive
};

using SignDone = std::function<void(StatusOr<std::vector<std::string>>)>;

class SignPool {
 public:
  // `workers` threads (1..kMaxSignWorkers), at most `maxQueued` jobs waiting (>= 1).
  SignPool(int workers, std::size_t maxQueued);
  ~SignPool();
  SignPool(const SignPool&) = delete;
  SignPool& operator=(const SignPool&) = delete;

  // Queues `job`; false (and `done` is not called) when maxQueued jobs are already waiting.
  bool submit(SignJob job, SignDone done);
  // Jobs waiting (not yet taken by a worker).
  std::size_t queued() const;

 private:
  struct Item {
    SignJob job;
    SignDone done;
  };
  void run();

  const std::size_t maxQueued_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<Item> queue_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace relaykit::dkim
