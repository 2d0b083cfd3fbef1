// SPDX-License-Identifier: Apache-2.0
// policy_load.cc: load generator for Postfix policy servers (relaykit-policyd, postfwd,
// policyd-rate-limit): N persistent connections, each strictly sequential like Postfix's smtpd
// (send one request, wait for the whole reply), replaying a realistic stream: per message 1..R
// RCPT-stage requests then one END-OF-MESSAGE request, clients/senders/SASL users drawn from
// pools of many principals, full Postfix 3.7 attribute sets. One epoll thread drives every
// connection. Prints one JSON line: requests/s, p50/p99/max latency (µs), refusals, errors.
// Exit 1 when a connection fails or a reply is malformed.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;
constexpr int kMaxConnections = 2000;

struct Options {
  std::string host = "127.0.0.1";
  int port = 10043;
  int connections = 1;
  double seconds = 3.0;
  int principals = 10000;
  int maxRecipients = 3;
  double rate = 0;  // total requests/s offered (open loop); 0: each connection as fast as it can
  std::string label;
};

struct Conn {
  int fd = -1;
  std::mt19937 rng;
  std::string out;
  std::size_t sent = 0;
  std::string in;
  Clock::time_point started;  // when the request was due (open loop) or sent
  bool parked = false;        // waiting for its due time (open loop)
  Clock::time_point sentAt;   // when its first byte was written
  int rcptLeft = 0;
  int rcptTotal = 0;
  int client = 0;
  int sender = 0;
  unsigned long long messageSeq = 0;
};

std::string request(const Conn& c, bool eom, int connIndex) {
  char client[32];
  std::snprintf(client, sizeof(client), "10.%d.%d.%d", (c.client >> 16) & 255,
                (c.client >> 8) & 255, c.client & 255);
  const std::string sender =
      "app" + std::to_string(c.sender) + "@srv" + std::to_string(c.sender % 97) + ".corp.example";
  const std::string instance = std::to_string(connIndex) + "." + std::to_string(c.messageSeq);
  std::string r;
  r.reserve(800);
  r += "request=smtpd_access_policy\nprotocol_state=";
  r += eom ? "END-OF-MESSAGE" : "RCPT";
  r += "\nprotocol_name=ESMTP\nclient_address=";
  r += client;
  r += "\nclient_name=unknown\nclient_port=40000\nreverse_client_name=unknown\nserver_address=127."
       "0.0.1\n"
       "server_port=25\nhelo_name=srv.corp.example\nsender=";
  r += sender;
  r += "\nrecipient=";
  r += eom && c.rcptTotal > 1 ? ""
                              : "user" + std::to_string(c.rcptLeft) + "@partner" +
                                    std::to_string(c.sender % 13) + ".example";
  r += "\nrecipient_count=";
  r += eom ? std::to_string(c.rcptTotal) : "0";
  r += "\nqueue_id=";
  r += eom ? "4Xyz" + std::to_string(c.messageSeq % 100000) : "";
  r += "\ninstance=" + instance;
  r += "\nsize=";
  r += std::to_string(eom ? 4000 + (c.messageSeq % 50000) : 0);
  r += "\netrn_domain=\nstress=\nsasl_method=\nsasl_username=\nsasl_sender=\nccert_subject=\n"
       "ccert_issuer=\nccert_fingerprint=\nccert_pubkey_fingerprint=\nencryption_protocol=\n"
       "encryption_cipher=\nencryption_keysize=0\npolicy_context=\ncompatibility_level=3.6\n"
       "mail_version=3.7.11\n\n";
  return r;
}

void nextRequest(Conn& c, int index, const Options& opt) {
  if (c.rcptLeft == 0 && c.rcptTotal == 0) {  // new message
    ++c.messageSeq;
    c.client = static_cast<int>(c.rng() % static_cast<unsigned>(opt.principals));
    c.sender = static_cast<int>(c.rng() % static_cast<unsigned>(opt.principals));
    c.rcptTotal = 1 + static_cast<int>(c.rng() % static_cast<unsigned>(opt.maxRecipients));
    c.rcptLeft = c.rcptTotal;
  }
  bool eom = false;
  if (c.rcptLeft > 0) {
    --c.rcptLeft;
  } else {
    eom = true;
  }
  c.out = request(c, eom, index);
  if (eom) {
    c.rcptTotal = 0;
  }
  c.sent = 0;
  c.in.clear();
  c.started = Clock::now();
  c.sentAt = c.started;
}

int connectTo(const Options& opt) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_port = htons(static_cast<uint16_t>(opt.port));
  inet_pton(AF_INET, opt.host.c_str(), &sin.sin_addr);
  if (connect(fd, reinterpret_cast<sockaddr*>(&sin), sizeof(sin)) != 0) {
    std::perror("connect");
    std::exit(1);
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  return fd;
}

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    const char* v = argv[i + 1];
    if (a == "--host") {
      opt.host = v;
    } else if (a == "--port") {
      opt.port = std::atoi(v);
    } else if (a == "--connections") {
      opt.connections = std::clamp(std::atoi(v), 1, kMaxConnections);
    } else if (a == "--seconds") {
      opt.seconds = std::atof(v);
    } else if (a == "--principals") {
      opt.principals = std::max(1, std::atoi(v));
    } else if (a == "--max-recipients") {
      opt.maxRecipients = std::max(1, std::atoi(v));
    } else if (a == "--rate") {
      opt.rate = std::atof(v);
    } else if (a == "--label") {
      opt.label = v;
    } else {
      std::fprintf(stderr,
                   "usage: policy_load [--host H] [--port P] [--connections N] [--seconds S] "
                   "[--principals K] [--max-recipients R] [--rate RPS] [--label TEXT]\n");
      return 2;
    }
  }
  const int ep = epoll_create1(0);
  std::vector<Conn> conns(static_cast<std::size_t>(opt.connections));
  for (int i = 0; i < opt.connections; ++i) {
    Conn& c = conns[static_cast<std::size_t>(i)];
    c.fd = connectTo(opt);
    c.rng.seed(static_cast<unsigned>(1000 + i));
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLOUT | EPOLLET;
    ev.data.u32 = static_cast<uint32_t>(i);
    epoll_ctl(ep, EPOLL_CTL_ADD, c.fd, &ev);
    nextRequest(c, i, opt);
  }
  // Open loop: connection i sends every `interval`, offset so the load is spread evenly; latency
  // counts from the due time, so a server falling behind is not hidden (no coordinated omission).
  const auto interval =
      opt.rate > 0
          ? std::chrono::nanoseconds(static_cast<long long>(1e9 * opt.connections / opt.rate))
          : std::chrono::nanoseconds(0);
  {
    const auto t0 = Clock::now();
    for (int i = 0; i < opt.connections; ++i) {
      Conn& c = conns[static_cast<std::size_t>(i)];
      c.started = t0 + interval * i / opt.connections;
      c.parked = opt.rate > 0;
    }
  }
  const int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
  {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u32 = UINT32_MAX;
    epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &ev);
  }
  std::vector<uint32_t> latencies;  // from when each request was due
  latencies.reserve(1 << 20);
  std::vector<uint32_t> serviceTimes;  // from when it was actually written
  serviceTimes.reserve(1 << 20);
  unsigned long long refused = 0;
  unsigned long long errors = 0;
  const auto start = Clock::now();
  const auto end = start + std::chrono::microseconds(static_cast<long long>(opt.seconds * 1e6));
  std::vector<epoll_event> events(static_cast<std::size_t>(opt.connections) + 1);
  char buf[8192];
  bool done = false;
  while (!done) {
    if (opt.rate > 0) {  // wake up exactly when the next parked connection is due
      Clock::time_point next = end;
      for (const Conn& c : conns) {
        if (c.parked) {
          next = std::min(next, c.started);
        }
      }
      const auto ns =
          std::chrono::duration_cast<std::chrono::nanoseconds>(next.time_since_epoch()).count();
      itimerspec its{};
      its.it_value.tv_sec = ns / 1000000000;
      its.it_value.tv_nsec = ns % 1000000000;
      if (its.it_value.tv_sec == 0 && its.it_value.tv_nsec == 0) {
        its.it_value.tv_nsec = 1;
      }
      timerfd_settime(tfd, TFD_TIMER_ABSTIME, &its, nullptr);
    }
    const int n = epoll_wait(ep, events.data(), opt.connections + 1, 100);
    const auto now = Clock::now();
    if (now >= end) {
      done = true;
    }
    if (opt.rate > 0) {
      for (Conn& c : conns) {
        if (c.parked && c.started <= now) {
          c.parked = false;
          c.sentAt = Clock::now();
          const ssize_t w = write(c.fd, c.out.data(), c.out.size());
          c.sent = w > 0 ? static_cast<std::size_t>(w) : 0;
        }
      }
    }
    for (int k = 0; k < n && !done; ++k) {
      if (events[static_cast<std::size_t>(k)].data.u32 == UINT32_MAX) {
        uint64_t expirations = 0;
        ssize_t ignored = read(tfd, &expirations, sizeof(expirations));
        (void)ignored;
        continue;
      }
      const int i = static_cast<int>(events[static_cast<std::size_t>(k)].data.u32);
      Conn& c = conns[static_cast<std::size_t>(i)];
      bool progress = !c.parked;
      while (progress) {
        progress = false;
        if (c.sent < c.out.size()) {
          const ssize_t w = write(c.fd, c.out.data() + c.sent, c.out.size() - c.sent);
          if (w > 0) {
            c.sent += static_cast<std::size_t>(w);
            progress = true;
          } else if (w < 0 && errno != EAGAIN) {
            std::fprintf(stderr, "write failed: %s\n", std::strerror(errno));
            return 1;
          }
          continue;
        }
        const ssize_t r = read(c.fd, buf, sizeof(buf));
        if (r == 0) {
          std::fprintf(stderr, "server closed connection %d\n", i);
          return 1;
        }
        if (r < 0) {
          if (errno != EAGAIN) {
            std::fprintf(stderr, "read failed: %s\n", std::strerror(errno));
            return 1;
          }
          break;
        }
        c.in.append(buf, static_cast<std::size_t>(r));
        if (c.in.size() >= 2 && c.in.compare(c.in.size() - 2, 2, "\n\n") == 0) {
          const auto t = Clock::now();
          latencies.push_back(static_cast<uint32_t>(
              std::chrono::duration_cast<std::chrono::microseconds>(t - c.started).count()));
          serviceTimes.push_back(static_cast<uint32_t>(
              std::chrono::duration_cast<std::chrono::microseconds>(t - c.sentAt).count()));
          if (c.in.rfind("action=", 0) != 0) {
            ++errors;
          } else if (c.in.compare(7, 5, "DUNNO") != 0 && c.in.compare(7, 5, "dunno") != 0 &&
                     c.in.compare(7, 2, "OK") != 0) {
            ++refused;
          }
          const auto due = c.started + interval;
          nextRequest(c, i, opt);
          if (opt.rate > 0) {
            c.started = due;
            c.parked = true;
            break;
          }
          progress = true;
        }
      }
    }
  }
  const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  for (Conn& c : conns) {
    close(c.fd);
  }
  std::sort(latencies.begin(), latencies.end());
  std::sort(serviceTimes.begin(), serviceTimes.end());
  auto pct = [](const std::vector<uint32_t>& v, double p) -> unsigned {
    if (v.empty()) {
      return 0;
    }
    return v[std::min(v.size() - 1, static_cast<std::size_t>(p * static_cast<double>(v.size())))];
  };
  // p50/p99: from when each request was due (open loop) or sent (closed loop); service_*: from
  // when it was actually written (excludes the load generator's own wake-up delay).
  std::printf(
      "{\"label\": \"%s\", \"connections\": %d, \"requests\": %zu, \"rps\": %.0f, \"p50_us\": %u, "
      "\"p99_us\": %u, \"max_us\": %u, \"service_p50_us\": %u, \"service_p99_us\": %u, "
      "\"refused\": %llu, \"errors\": %llu}\n",
      opt.label.c_str(), opt.connections, latencies.size(),
      static_cast<double>(latencies.size()) / elapsed, pct(latencies, 0.5), pct(latencies, 0.99),
      latencies.empty() ? 0 : latencies.back(), pct(serviceTimes, 0.5), pct(serviceTimes, 0.99),
      refused, errors);
  return errors > 0 ? 1 : 0;
}
