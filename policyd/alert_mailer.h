// SPDX-License-Identifier: Apache-2.0
// alert_mailer.h: alert mails handed to the local Postfix with `sendmail -t -i`, off the loop.
//
// submit() only queues (bounded: a full queue refuses the mail at once, the caller counts the
// drop); one worker thread runs the submissions one after another with runProgram()
// (common/run_program.h: fork/exec of the configured sendmail, no shell, the message on its
// standard input, the first bytes of its standard error kept for the log line). A sendmail still
// running after its timeout is killed (SIGKILL) and counted as failed, like an exit status other
// than 0 or a signal. So a hung or failing sendmail never delays a policy decision: it only fills
// the queue. The report callback runs on the worker thread (it must be thread-safe: metrics and
// logging are).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/status.h"

namespace relaykit::policy {

// Runs argv (argv[0]: sendmail) with `message` on its standard input; waits at most `timeout`,
// then kills it. Returns ok when it exited with status 0; otherwise the reason ("exit 75:
// <first stderr line>", "killed by a signal", "timed out after 30000 ms", "...: not found").
// Blocks the calling thread; never throws.
// `cancel` (may be null): once true, the sendmail is killed ("cancelled").
Status runSendmail(const std::vector<std::string>& argv, const std::string& message,
                   std::chrono::milliseconds timeout, const std::atomic<bool>* cancel = nullptr);

class AlertMailer {
 public:
  struct Job {
    std::string limit;  // for the report (a metric label)
    std::vector<std::string> argv;
    std::string message;
    std::chrono::milliseconds timeout{30000};
  };
  // Called on the worker thread once per job taken from the queue.
  using Report = std::function<void(const Job& job, const Status& result)>;

  explicit AlertMailer(Report report);
  // Stops the worker at once: a running sendmail is killed (reported as failed, "cancelled"),
  // queued jobs are discarded (counted by discarded()).
  ~AlertMailer();
  AlertMailer(const AlertMailer&) = delete;
  AlertMailer& operator=(const AlertMailer&) = delete;

  // Queues `job` unless `capacity` jobs already wait; false (nothing queued) when full.
  bool submit(Job job, std::size_t capacity);
  std::size_t queued() const;
  std::size_t discarded() const { return discarded_; }

 private:
  void run();

  Report report_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<Job> queue_;
  bool stopping_ = false;
  std::atomic<bool> cancel_{false};  // set when stopping: kills a running sendmail
  std::size_t discarded_ = 0;
  std::thread worker_;
};

}  // namespace relaykit::policy
