// SPDX-License-Identifier: Apache-2.0
// run_program.cc: fork/exec with a deadline and captured output; see run_program.h.
#include "common/run_program.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

extern char** environ;

namespace relaykit {

namespace {

// Where Postfix's commands live when PATH does not name them (cron, keepalived and Nagios often
// run checks with a minimal PATH).
const char* const kFallbackDirs[] = {"/usr/sbin", "/usr/bin", "/sbin", "/bin"};
constexpr std::size_t kReadChunk = 65536;
// How often the exit of a child that closed its output is polled for.
constexpr useconds_t kWaitPollMicros = 5000;
// How often the cancel flag is looked at while the program runs.
constexpr std::int64_t kCancelPollMs = 50;

bool isExecutable(const std::string& path) {
  struct stat st {};
  return stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && access(path.c_str(), X_OK) == 0;
}

std::string findProgram(const std::string& name) {
  if (name.find('/') != std::string::npos) {
    return isExecutable(name) ? name : std::string();
  }
  std::string dirs;
  if (const char* path = std::getenv("PATH")) {
    dirs = path;
  }
  std::size_t pos = 0;
  while (pos <= dirs.size() && !dirs.empty()) {
    auto colon = dirs.find(':', pos);
    std::string dir =
        dirs.substr(pos, colon == std::string::npos ? std::string::npos : colon - pos);
    if (!dir.empty() && isExecutable(dir + "/" + name)) {
      return dir + "/" + name;
    }
    if (colon == std::string::npos) {
      break;
    }
    pos = colon + 1;
  }
  for (const char* dir : kFallbackDirs) {
    if (isExecutable(std::string(dir) + "/" + name)) {
      return std::string(dir) + "/" + name;
    }
  }
  return std::string();
}

}  // namespace

std::string ProgramResult::describeFailure() const {
  if (timedOut) {
    return "timed out";
  }
  if (cancelled) {
    return "cancelled";
  }
  std::string first = err.substr(0, err.find('\n'));
  std::string what =
      exitCode >= 0 ? "exit " + std::to_string(exitCode) : std::string("killed by a signal");
  return first.empty() ? what : what + ": " + first;
}

StatusOr<ProgramResult> runProgram(const std::vector<std::string>& argv,
                                   std::chrono::milliseconds timeout,
                                   const std::vector<std::string>& extraEnv,
                                   const std::string* input, const std::atomic<bool>* cancel) {
  if (argv.empty()) {
    return Status::error("no program to run");
  }
  const std::string path = findProgram(argv[0]);
  if (path.empty()) {
    return Status::error(argv[0] + ": not found");
  }
  // Everything the child needs is built before fork (no allocation after it).
  std::vector<char*> args;
  for (const auto& a : argv) {
    args.push_back(const_cast<char*>(a.c_str()));
  }
  args.push_back(nullptr);
  std::vector<std::string> envText;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    envText.emplace_back(*e);
  }
  for (const auto& e : extraEnv) {
    envText.push_back(e);
  }
  std::vector<char*> env;
  for (auto& e : envText) {
    env.push_back(e.data());
  }
  env.push_back(nullptr);

  int outPipe[2];
  int errPipe[2];
  if (pipe2(outPipe, O_CLOEXEC) != 0) {
    return Status::error(std::string("pipe: ") + std::strerror(errno));
  }
  if (pipe2(errPipe, O_CLOEXEC) != 0) {
    close(outPipe[0]);
    close(outPipe[1]);
    return Status::error(std::string("pipe: ") + std::strerror(errno));
  }
  // The input goes through a socket pair, not a pipe: send(MSG_NOSIGNAL) to a program that
  // exited early fails with EPIPE instead of raising SIGPIPE in the caller.
  int inPair[2] = {-1, -1};
  if (input != nullptr &&
      socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, inPair) != 0) {
    const int saved = errno;
    for (int fd : {outPipe[0], outPipe[1], errPipe[0], errPipe[1]}) {
      close(fd);
    }
    return Status::error(std::string("socketpair: ") + std::strerror(saved));
  }
  const pid_t pid = fork();
  if (pid < 0) {
    const int saved = errno;
    for (int fd : {outPipe[0], outPipe[1], errPipe[0], errPipe[1], inPair[0], inPair[1]}) {
      if (fd >= 0) {
        close(fd);
      }
    }
    return Status::error(std::string("fork: ") + std::strerror(saved));
  }
  if (pid == 0) {
    if (inPair[1] >= 0) {
      const int flags = fcntl(inPair[1], F_GETFL);
      fcntl(inPair[1], F_SETFL, flags & ~O_NONBLOCK);
      dup2(inPair[1], 0);
    } else {
      const int devNull = open("/dev/null", O_RDONLY);
      if (devNull >= 0) {
        dup2(devNull, 0);
      }
    }
    dup2(outPipe[1], 1);
    dup2(errPipe[1], 2);
    // The caller may ignore or block signals (a daemon ignores SIGPIPE and SIGHUP): the program
    // starts with the defaults.
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    signal(SIGPIPE, SIG_DFL);
    signal(SIGHUP, SIG_DFL);
    execve(path.c_str(), args.data(), env.data());
    _exit(127);
  }
  close(outPipe[1]);
  close(errPipe[1]);
  if (inPair[1] >= 0) {
    close(inPair[1]);
  }

  ProgramResult result;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  pollfd fds[3] = {{outPipe[0], POLLIN, 0}, {errPipe[0], POLLIN, 0}, {inPair[0], POLLOUT, 0}};
  int open = 2;
  std::size_t written = 0;
  if (inPair[0] >= 0 && input->empty()) {
    close(inPair[0]);
    fds[2].fd = -1;
  }
  std::string chunk(kReadChunk, '\0');
  while (open > 0) {
    if (cancel != nullptr && cancel->load()) {
      result.cancelled = true;
      break;
    }
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      result.timedOut = true;
      break;
    }
    const int ready = poll(
        fds, 3,
        static_cast<int>(cancel == nullptr ? left.count()
                                           : std::min<std::int64_t>(left.count(), kCancelPollMs)));
    if ((ready < 0 && errno == EINTR) || (ready == 0 && cancel != nullptr)) {
      continue;  // (the deadline and the cancel flag are checked above)
    }
    if (ready <= 0) {
      result.timedOut = ready == 0;
      break;
    }
    if (fds[2].fd >= 0 && fds[2].revents != 0) {
      const ssize_t n = send(fds[2].fd, input->data() + written, input->size() - written,
                             MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n > 0) {
        written += static_cast<std::size_t>(n);
      }
      if (written == input->size() || (n < 0 && errno != EINTR && errno != EAGAIN)) {
        close(fds[2].fd);  // end of input (or the program stopped reading)
        fds[2].fd = -1;
      }
    }
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) {
        continue;
      }
      const ssize_t n = read(fds[i].fd, chunk.data(), chunk.size());
      if (n > 0) {
        std::string& sink = i == 0 ? result.out : result.err;
        const std::size_t cap = i == 0 ? kMaxProgramOutputBytes : kMaxProgramStderrBytes;
        const std::size_t room = cap > sink.size() ? cap - sink.size() : 0;
        sink.append(chunk.data(), std::min(room, static_cast<std::size_t>(n)));
        if (i == 0 && static_cast<std::size_t>(n) > room) {
          result.truncated = true;
        }
      } else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
        close(fds[i].fd);
        fds[i].fd = -1;
        --open;
      }
    }
    if (result.truncated) {
      break;
    }
  }
  for (auto& p : fds) {
    if (p.fd >= 0) {
      close(p.fd);
    }
  }
  if (result.timedOut || result.cancelled || result.truncated || open > 0) {
    kill(pid, SIGKILL);
  }
  // The child may outlive its output: wait for it until the deadline, then kill it.
  int status = 0;
  while (true) {
    const pid_t done = waitpid(pid, &status, WNOHANG);
    if (done == pid || (done < 0 && errno != EINTR)) {
      break;
    }
    const bool cancelled = cancel != nullptr && cancel->load();
    if (done == 0 && (std::chrono::steady_clock::now() >= deadline || cancelled)) {
      result.timedOut = !cancelled;
      result.cancelled = cancelled;
      kill(pid, SIGKILL);
      while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
      }
      break;
    }
    if (done == 0) {
      usleep(kWaitPollMicros);
    }
  }
  if (WIFEXITED(status)) {
    result.exitCode = WEXITSTATUS(status);
  }
  if (result.exitCode == 127 && result.out.empty() && result.err.empty()) {
    return Status::error(argv[0] + ": cannot be executed");
  }
  return result;
}

std::string postfixConfigDir(const std::string& explicitDir) {
  if (!explicitDir.empty()) {
    return explicitDir;
  }
  const char* env = std::getenv("MAIL_CONFIG");
  if (env != nullptr && *env != '\0') {
    return env;
  }
  return "/etc/postfix";
}

}  // namespace relaykit
