// session_runner.cc: one thread serves one libmilter session from option negotiation to QUIT
// (libmilter's classic model), in place of the "workers pool" Debian builds libmilter with.
//
// Debian compiles libmilter with _FFR_WORKERS_POOL: a controller thread polls every idle session
// and hands each burst of commands to a worker thread (condition variable); the worker hands the
// session back through a pipe as soon as no byte is waiting. Measured with bench/milter's load
// (strace -c -f, 20 sessions, 1 KiB messages): per message 67 poll, 21 futex, 40 read, 4 pipe
// writes and one thread created and destroyed; ~0.5 ms of CPU per message in the milter, on a
// machine where Postfix alone spends ~2 ms per message. docs/milter-performance.md has the numbers.
//
// The listener's call to mi_start_session() is wrapped (-Wl,--wrap=mi_start_session, see
// milters/CMakeLists.txt): the session goes to a thread of ours, which calls libmilter's own
// engine, mi_engine() (it decodes commands, calls our callbacks, writes replies), until the
// session ends. Built for the pool, the engine returns MI_CONTINUE whenever no command is waiting;
// socket_wrap.cc makes that check block on our session threads (up to the session timeout), so
// the engine returns only when the session ends or has been idle for the timeout. Threads that
// finish a session wait (up to kIdleWait, at most kMaxIdleThreads of them) for the next one. At
// most milter.max_sessions threads exist; beyond that new sessions wait in a queue for the next
// thread to finish (Postfix's own milter timeouts then decide, with milter_default_action).
// When the wrapped libmilter has no pool (a build without _FFR_WORKERS_POOL), its listener never
// calls mi_start_session and this file is simply unused.
#include "milters/session_runner.h"

#include <libmilter/mfapi.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <string>
#include <system_error>
#include <thread>

#include "common/server/logging.h"
#include "milters/milter_callbacks.h"
#include "milters/milter_config.h"
#include "milters/socket_wrap.h"

extern "C" {
// libmilter internals (engine.c): the pool build's engine and the context destructor.
int mi_engine(SMFICTX* ctx);
void mi_clr_ctx(SMFICTX* ctx);
int __wrap_mi_start_session(SMFICTX* ctx);
}

namespace relaykit::milter {
namespace {

constexpr int kMiContinue = 1;  // libmilter.h, _FFR_WORKERS_POOL: "no command waiting"
constexpr int kMaxIdleThreads = 64;
constexpr auto kIdleWait = std::chrono::seconds(30);

std::atomic<int> gTimeoutSeconds{7210};  // libmilter's default until setSessionTimeout
std::atomic<int> gActive{0};

void serve(SMFICTX* ctx) {
  gActive.fetch_add(1);
  beginSessionThread(gTimeoutSeconds.load());
  int r;
  do {
    r = mi_engine(ctx);
  } while (r == kMiContinue && !sessionWaitFailed());
  if (r == kMiContinue) {
    // Idle past the timeout: the engine did not end the session, so do what libmilter's pool
    // controller does for an old session: the close callback, then free the context.
    smfiDesc* desc = milterDescription();
    if (desc->xxfi_close) {
      (void)desc->xxfi_close(ctx);
    }
  }
  mi_clr_ctx(ctx);  // closes the socket, frees macros and the context
  gActive.fetch_sub(1);
}

class Runner {
 public:
  void setLimit(int sessions) {
    std::lock_guard<std::mutex> lock(mu_);
    limit_ = sessions;
  }

  int start(SMFICTX* ctx) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (static_cast<int>(queue_.size()) < idle_ || threads_ >= limit_) {
        queue_.push_back(ctx);  // an idle thread takes it, or the next one to finish a session
        cv_.notify_one();
        if (threads_ >= limit_) {
          warnFull();
        }
        return MI_SUCCESS;
      }
      ++threads_;
    }
    try {
      std::thread([this, ctx] { loop(ctx); }).detach();
      return MI_SUCCESS;
    } catch (const std::exception& e) {
      std::lock_guard<std::mutex> lock(mu_);
      --threads_;
      logError(std::string("cannot start a session thread: ") + e.what());
      return MI_FAILURE;  // libmilter's listener closes the connection: Postfix applies
                          // milter_default_action
    }
  }

 private:
  void loop(SMFICTX* ctx) {
    for (;;) {
      serve(ctx);
      std::unique_lock<std::mutex> lock(mu_);
      if (queue_.empty()) {
        if (idle_ >= kMaxIdleThreads) {
          --threads_;
          return;
        }
        ++idle_;
        const bool got = cv_.wait_for(lock, kIdleWait, [this] { return !queue_.empty(); });
        --idle_;
        if (!got) {
          --threads_;
          return;
        }
      }
      ctx = queue_.front();
      queue_.pop_front();
    }
  }

  // Called with mu_ held; at most one line per kFullLogInterval.
  void warnFull() {
    const auto now = std::chrono::steady_clock::now();
    if (now - lastFullLog_ >= kFullLogInterval) {
      lastFullLog_ = now;
      logWarning("milter: " + std::to_string(limit_) +
                 " sessions busy (max_sessions): new Postfix connections wait; " +
                 std::to_string(queue_.size()) + " waiting");
    }
  }

  static constexpr auto kFullLogInterval = std::chrono::seconds(10);
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<SMFICTX*> queue_;
  int idle_ = 0;     // threads waiting for a session
  int threads_ = 0;  // session threads alive (serving or idle)
  int limit_ = kDefaultMilterSessions;
  std::chrono::steady_clock::time_point lastFullLog_{};
};

Runner& runner() {
  static Runner* r = new Runner();  // never destroyed: detached threads use it until exit
  return *r;
}

}  // namespace

void setSessionTimeout(int seconds) {
  gTimeoutSeconds.store(seconds);
}

void setSessionLimit(int sessions) {
  runner().setLimit(sessions);
}

int activeSessions() {
  return gActive.load();
}

}  // namespace relaykit::milter

extern "C" int __wrap_mi_start_session(SMFICTX* ctx) {
  return relaykit::milter::runner().start(ctx);
}
