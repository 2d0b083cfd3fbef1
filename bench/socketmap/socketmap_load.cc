// SPDX-License-Identifier: Apache-2.0
// socketmap_load.cc: load generator for socketmap servers (relaykit-socketmapd, the echo floor).
//
// Opens C connections to HOST:PORT, each driven by its own thread exactly as a Postfix process
// drives its socketmap connection: one netstring request, wait for the whole reply, next request
// (no pipelining). Keys are read from a file (one per line) and sent round robin as
// "<map> <key>". Runs for D seconds after a short warm-up and prints one line:
//   conns=C lookups=N secs=S rate=R/s p50_us=.. p99_us=.. p999_us=.. found=F notfound=M other=O
// Exits 1 on a connection or protocol error (malformed reply, server closed the connection).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

namespace {

constexpr std::size_t kMaxReply = 100000;  // Postfix's socketmap_max_reply_size
constexpr double kWarmupSeconds = 0.3;

using Clock = std::chrono::steady_clock;

struct Options {
  std::string host = "127.0.0.1";
  int port = 0;
  int connections = 1;
  double seconds = 2.0;
  std::string map = "generic";
  std::string keysFile;
};

struct ThreadResult {
  std::vector<std::uint32_t> latenciesNs;
  std::uint64_t found = 0;
  std::uint64_t notFound = 0;
  std::uint64_t other = 0;
  bool failed = false;
  std::string error;
};

int connectTo(const Options& o) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) {
    return -1;
  }
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<std::uint16_t>(o.port));
  if (inet_pton(AF_INET, o.host.c_str(), &sa.sin_addr) != 1 ||
      connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
    close(fd);
    return -1;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

bool writeAll(int fd, const std::string& s) {
  std::size_t off = 0;
  while (off < s.size()) {
    ssize_t n = send(fd, s.data() + off, s.size() - off, MSG_NOSIGNAL);
    if (n <= 0) {
      return false;
    }
    off += static_cast<std::size_t>(n);
  }
  return true;
}

// Reads one netstring reply into `payload`; `buf` keeps bytes past it (there should be none).
bool readReply(int fd, std::string& buf, std::string& payload, std::string& error) {
  char chunk[4096];
  for (;;) {
    std::size_t colon = buf.find(':');
    if (colon != std::string::npos) {
      if (colon == 0 || colon > 6) {
        error = "bad netstring length";
        return false;
      }
      std::size_t len = std::strtoul(buf.substr(0, colon).c_str(), nullptr, 10);
      if (len > kMaxReply) {
        error = "reply too long";
        return false;
      }
      if (buf.size() >= colon + 1 + len + 1) {
        if (buf[colon + 1 + len] != ',') {
          error = "netstring without ','";
          return false;
        }
        payload.assign(buf, colon + 1, len);
        buf.erase(0, colon + 1 + len + 1);
        return true;
      }
    } else if (buf.size() > 7) {
      error = "bad netstring length";
      return false;
    }
    ssize_t n = recv(fd, chunk, sizeof chunk, 0);
    if (n <= 0) {
      error = n == 0 ? "server closed the connection" : std::strerror(errno);
      return false;
    }
    buf.append(chunk, static_cast<std::size_t>(n));
  }
}

void worker(const Options& o, const std::vector<std::string>& requests, std::size_t start,
            Clock::time_point measureFrom, Clock::time_point until, ThreadResult* r) {
  int fd = connectTo(o);
  if (fd < 0) {
    r->failed = true;
    r->error = "connect failed";
    return;
  }
  std::string buf;
  std::string payload;
  std::size_t i = start;
  r->latenciesNs.reserve(1 << 16);
  for (;;) {
    auto t0 = Clock::now();
    if (t0 >= until) {
      break;
    }
    const std::string& req = requests[i++ % requests.size()];
    if (!writeAll(fd, req) || !readReply(fd, buf, payload, r->error)) {
      r->failed = true;
      if (r->error.empty()) {
        r->error = "write failed";
      }
      break;
    }
    auto t1 = Clock::now();
    if (t0 < measureFrom) {
      continue;
    }
    r->latenciesNs.push_back(static_cast<std::uint32_t>(std::min<std::int64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(t1 - t0).count(), UINT32_MAX)));
    if (payload.compare(0, 3, "OK ") == 0) {
      r->found++;
    } else if (payload.compare(0, 8, "NOTFOUND") == 0) {
      r->notFound++;
    } else {
      r->other++;
    }
  }
  close(fd);
}

void usage() {
  std::fprintf(stderr,
               "usage: socketmap_load -p PORT -k KEYFILE [-H HOST] [-c CONNS] [-d SECONDS] "
               "[-m MAP]\n");
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  int opt;
  while ((opt = getopt(argc, argv, "H:p:c:d:m:k:")) != -1) {
    switch (opt) {
      case 'H':
        o.host = optarg;
        break;
      case 'p':
        o.port = std::atoi(optarg);
        break;
      case 'c':
        o.connections = std::atoi(optarg);
        break;
      case 'd':
        o.seconds = std::atof(optarg);
        break;
      case 'm':
        o.map = optarg;
        break;
      case 'k':
        o.keysFile = optarg;
        break;
      default:
        usage();
    }
  }
  if (o.port <= 0 || o.connections <= 0 || o.keysFile.empty()) {
    usage();
  }
  std::vector<std::string> requests;
  std::ifstream in(o.keysFile);
  for (std::string key; std::getline(in, key);) {
    std::string body = o.map + " " + key;
    requests.push_back(std::to_string(body.size()) + ":" + body + ",");
  }
  if (requests.empty()) {
    std::fprintf(stderr, "no keys in %s\n", o.keysFile.c_str());
    return 2;
  }
  auto begin = Clock::now();
  auto measureFrom = begin + std::chrono::duration_cast<Clock::duration>(
                                 std::chrono::duration<double>(kWarmupSeconds));
  auto until = measureFrom + std::chrono::duration_cast<Clock::duration>(
                                 std::chrono::duration<double>(o.seconds));
  std::vector<ThreadResult> results(static_cast<std::size_t>(o.connections));
  std::vector<std::thread> threads;
  for (int c = 0; c < o.connections; c++) {
    threads.emplace_back(worker, std::cref(o), std::cref(requests),
                         static_cast<std::size_t>(c) * 7919, measureFrom, until, &results[c]);
  }
  for (auto& t : threads) {
    t.join();
  }
  std::vector<std::uint32_t> all;
  ThreadResult total;
  for (auto& r : results) {
    if (r.failed) {
      std::fprintf(stderr, "socketmap_load: %s\n", r.error.c_str());
      return 1;
    }
    all.insert(all.end(), r.latenciesNs.begin(), r.latenciesNs.end());
    total.found += r.found;
    total.notFound += r.notFound;
    total.other += r.other;
  }
  if (all.empty()) {
    std::fprintf(stderr, "socketmap_load: no lookups measured\n");
    return 1;
  }
  std::sort(all.begin(), all.end());
  auto pct = [&](double p) {
    return all[std::min(all.size() - 1, static_cast<std::size_t>(p * all.size()))] / 1000.0;
  };
  std::printf(
      "conns=%d lookups=%zu secs=%.2f rate=%.0f p50_us=%.1f p99_us=%.1f p999_us=%.1f "
      "found=%llu notfound=%llu other=%llu\n",
      o.connections, all.size(), o.seconds, all.size() / o.seconds, pct(0.50), pct(0.99),
      pct(0.999), static_cast<unsigned long long>(total.found),
      static_cast<unsigned long long>(total.notFound),
      static_cast<unsigned long long>(total.other));
  return 0;
}
