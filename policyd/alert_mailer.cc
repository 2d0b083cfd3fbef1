// SPDX-License-Identifier: Apache-2.0
// alert_mailer.cc: the bounded queue and worker thread of alert mails; see alert_mailer.h.
#include "policyd/alert_mailer.h"

#include "common/run_program.h"
#include "policyd/alert.h"

namespace relaykit::policy {

Status runSendmail(const std::vector<std::string>& argv, const std::string& message,
                   std::chrono::milliseconds timeout, const std::atomic<bool>* cancel) {
  StatusOr<ProgramResult> result = runProgram(argv, timeout, {}, &message, cancel);
  if (!result.isOk()) {
    return result.status();
  }
  if (result->timedOut) {
    return Status::error("timed out after " + std::to_string(timeout.count()) + " ms (killed)");
  }
  if (result->cancelled) {
    return Status::error("cancelled: relaykit-policyd is stopping (killed)");
  }
  if (result->exitCode != 0) {
    return Status::error(sanitizeAlertValue(result->describeFailure()));
  }
  return Status::ok();
}

AlertMailer::AlertMailer(Report report) : report_(std::move(report)) {
  worker_ = std::thread([this] { run(); });
}

AlertMailer::~AlertMailer() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
    cancel_ = true;
    discarded_ += queue_.size();
    queue_.clear();
  }
  wake_.notify_all();
  worker_.join();
}

bool AlertMailer::submit(Job job, std::size_t capacity) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (stopping_ || queue_.size() >= capacity) {
      return false;
    }
    queue_.push_back(std::move(job));
  }
  wake_.notify_one();
  return true;
}

std::size_t AlertMailer::queued() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return queue_.size();
}

void AlertMailer::run() {
  while (true) {
    Job job;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (stopping_) {
        return;
      }
      job = std::move(queue_.front());
      queue_.pop_front();
    }
    const Status result = runSendmail(job.argv, job.message, job.timeout, &cancel_);
    if (report_) {
      report_(job, result);
    }
  }
}

}  // namespace relaykit::policy
