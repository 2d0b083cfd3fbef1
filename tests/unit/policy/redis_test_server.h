// SPDX-License-Identifier: Apache-2.0
// redis_test_server.h: starts a private redis-server on a free loopback port for a test and
// stops it afterwards. Tests skip (GTEST_SKIP) when /usr/bin/redis-server is absent.
#pragma once

#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>

namespace relaykit::policy::testing {

inline constexpr const char* kRedisServerPath = "/usr/bin/redis-server";

inline bool redisAvailable() {
  return access(kRedisServerPath, X_OK) == 0;
}

inline int freeLoopbackPort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&sin), sizeof(sin));
  socklen_t len = sizeof(sin);
  getsockname(fd, reinterpret_cast<sockaddr*>(&sin), &len);
  close(fd);
  return ntohs(sin.sin_port);
}

class RedisTestServer {
 public:
  RedisTestServer() : port_(freeLoopbackPort()) {}
  ~RedisTestServer() { stop(); }

  // Starts (or restarts on the same port) and waits until it answers PING (at most 5 s).
  // `cluster`: as a Redis Cluster node (cluster-enabled yes, its nodes file under /tmp).
  bool start(bool cluster = false) {
    const std::string port = std::to_string(port_);
    nodesFile_ = cluster ? "/tmp/relaykit-test-nodes-" + port + ".conf" : "";
    pid_ = fork();
    if (pid_ == 0) {
      if (cluster) {
        execl(kRedisServerPath, kRedisServerPath, "--port", port.c_str(), "--bind", "127.0.0.1",
              "--save", "", "--appendonly", "no", "--loglevel", "warning", "--cluster-enabled",
              "yes", "--cluster-config-file", nodesFile_.c_str(), static_cast<char*>(nullptr));
      } else {
        execl(kRedisServerPath, kRedisServerPath, "--port", port.c_str(), "--bind", "127.0.0.1",
              "--save", "", "--appendonly", "no", "--loglevel", "warning",
              static_cast<char*>(nullptr));
      }
      _exit(127);
    }
    for (int i = 0; i < 500; ++i) {
      if (ping()) {
        return true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  }
  void stop() {
    if (pid_ > 0) {
      kill(pid_, SIGCONT);
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
      pid_ = -1;
    }
    if (!nodesFile_.empty()) {
      unlink(nodesFile_.c_str());
    }
  }
  void pause() { kill(pid_, SIGSTOP); }
  void resume() { kill(pid_, SIGCONT); }
  int port() const { return port_; }

  // Runs one command synchronously; returns the reply as text ("" on error).
  std::string command(const std::string& cmd) {
    timeval tv{1, 0};
    redisContext* c = redisConnectWithTimeout("127.0.0.1", port_, tv);
    std::string out;
    if (c != nullptr && c->err == 0) {
      auto* r = static_cast<redisReply*>(redisCommand(c, cmd.c_str()));
      if (r != nullptr) {
        if (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS ||
            r->type == REDIS_REPLY_ERROR) {
          out.assign(r->str, r->len);
        } else if (r->type == REDIS_REPLY_INTEGER) {
          out = std::to_string(r->integer);
        } else if (r->type == REDIS_REPLY_ARRAY) {
          for (size_t i = 0; i < r->elements; ++i) {
            out += (i ? " " : "") + std::string(r->element[i]->str ? r->element[i]->str : "");
          }
        }
        freeReplyObject(r);
      }
    }
    if (c != nullptr) {
      redisFree(c);
    }
    return out;
  }

 private:
  bool ping() { return command("PING") == "PONG"; }
  int port_;
  pid_t pid_ = -1;
  std::string nodesFile_;
};

}  // namespace relaykit::policy::testing
