// SPDX-License-Identifier: Apache-2.0
// metrics.h: a small thread-safe metrics registry (counters, gauges, histograms with labels)
// rendered in the Prometheus text exposition format (version 0.0.4), and its HTTP endpoint.
//
// Registering a family twice with the same name returns the same family (so a reloaded service
// may register again); with a different type or label names it is a programming error (assert).
// Series are created on first use and never removed; references to them stay valid for the
// registry's lifetime, so hot paths can cache `Counter&`. Updates are lock-free atomics; creating a
// series and rendering take the family's mutex. Keep label values bounded (map names, answer kinds,
// never keys or addresses).
//
// The HTTP side answers GET /metrics and GET /health on `metrics_listen`, either on the daemon's
// own event base (MetricsHttpServer) or on a thread of its own (MetricsThread, for daemons that
// run another loop). Both bind when created, i.e. before the daemon drops privileges. It runs on
// the shared connection skeleton (server.h) with its own small limits (kMaxMetricsConnections,
// timeouts, the bounded request codec of http_request.h): HTTP/1.0 and 1.1 keep-alive, GET and
// HEAD only, no request bodies (docs/connection-limits.md).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "common/endpoint.h"
#include "common/server/connection.h"
#include "common/status.h"

struct event_base;
struct event;

namespace relaykit {

class Server;

// Connections the metrics endpoint holds at once (a scraper needs one or two), and per peer.
inline constexpr std::size_t kMaxMetricsConnections = 32;
inline constexpr std::size_t kMaxMetricsConnectionsPerPeer = 8;

using LabelValues = std::vector<std::string>;

class Counter {
 public:
  void inc(std::uint64_t by = 1) { value_.fetch_add(by, std::memory_order_relaxed); }
  std::uint64_t value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::uint64_t> value_{0};
};

class Gauge {
 public:
  void set(double v) { value_.store(v, std::memory_order_relaxed); }
  void add(double delta);
  void inc() { add(1); }
  void dec() { add(-1); }
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

// Default latency buckets in seconds: 50 µs .. 10 s.
const std::vector<double>& defaultLatencyBuckets();

class Histogram {
 public:
  Histogram() : Histogram(defaultLatencyBuckets()) {}
  explicit Histogram(std::vector<double> bounds);
  void observe(double v);
  const std::vector<double>& bounds() const { return bounds_; }
  // Non-cumulative count of bucket i (i == bounds().size(): above the last bound).
  std::uint64_t bucketCount(std::size_t i) const { return buckets_[i].load(); }
  std::uint64_t count() const { return count_.load(); }
  double sum() const { return sum_.load(); }

 private:
  std::vector<double> bounds_;
  std::unique_ptr<std::atomic<std::uint64_t>[]> buckets_;
  std::atomic<std::uint64_t> count_{0};
  std::atomic<double> sum_{0};
};

class MetricFamilyBase {
 public:
  enum class Type { kCounter, kGauge, kHistogram };
  MetricFamilyBase(std::string name, std::string help, Type type, std::vector<std::string> labels)
      : name_(std::move(name)),
        help_(std::move(help)),
        type_(type),
        labelNames_(std::move(labels)) {}
  virtual ~MetricFamilyBase() = default;
  const std::string& name() const { return name_; }
  Type type() const { return type_; }
  const std::vector<std::string>& labelNames() const { return labelNames_; }
  void render(std::string* out) const;

 protected:
  virtual void renderSeries(std::string* out) const = 0;
  std::string labelText(const LabelValues& values, const char* extraName = nullptr,
                        const std::string& extraValue = std::string()) const;

  std::string name_;
  std::string help_;
  Type type_;
  std::vector<std::string> labelNames_;
  mutable std::mutex mutex_;
};

template <typename T>
class MetricFamily : public MetricFamilyBase {
 public:
  using MetricFamilyBase::MetricFamilyBase;
  // The series for these label values (as many as the family's label names), created on first
  // use. The reference stays valid for the registry's lifetime.
  T& labels(const LabelValues& values) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = series_.find(values);
    if (it == series_.end()) {
      it = series_.emplace(values, makeSeries()).first;
    }
    return *it->second;
  }
  // The series of a family without labels.
  T& get() { return labels({}); }

 protected:
  void renderSeries(std::string* out) const override;
  virtual std::unique_ptr<T> makeSeries() const { return std::make_unique<T>(); }
  std::map<LabelValues, std::unique_ptr<T>> series_;
};

template <>
void MetricFamily<Counter>::renderSeries(std::string* out) const;
template <>
void MetricFamily<Gauge>::renderSeries(std::string* out) const;
template <>
void MetricFamily<Histogram>::renderSeries(std::string* out) const;

using CounterFamily = MetricFamily<Counter>;
using GaugeFamily = MetricFamily<Gauge>;

class HistogramFamily : public MetricFamily<Histogram> {
 public:
  HistogramFamily(std::string name, std::string help, std::vector<std::string> labels,
                  std::vector<double> bounds)
      : MetricFamily<Histogram>(std::move(name), std::move(help), Type::kHistogram,
                                std::move(labels)),
        bounds_(std::move(bounds)) {}

 protected:
  std::unique_ptr<Histogram> makeSeries() const override {
    return std::make_unique<Histogram>(bounds_);
  }

 private:
  std::vector<double> bounds_;
};

// A family of one unlabelled series whose value is read when the registry is rendered (process
// metrics read from /proc at scrape time). `read` returns nullopt when the value is unknown (the
// series is then left out). It runs on the rendering thread and must be cheap and not throw.
class CallbackFamily : public MetricFamilyBase {
 public:
  CallbackFamily(std::string name, std::string help, Type type,
                 std::function<std::optional<double>()> read)
      : MetricFamilyBase(std::move(name), std::move(help), type, {}), read_(std::move(read)) {}

 protected:
  void renderSeries(std::string* out) const override;

 private:
  std::function<std::optional<double>()> read_;
};

class MetricsRegistry {
 public:
  CounterFamily& counter(const std::string& name, const std::string& help,
                         std::vector<std::string> labelNames = {});
  GaugeFamily& gauge(const std::string& name, const std::string& help,
                     std::vector<std::string> labelNames = {});
  HistogramFamily& histogram(const std::string& name, const std::string& help,
                             std::vector<std::string> labelNames = {},
                             std::vector<double> bounds = defaultLatencyBuckets());
  // A counter or gauge family read at render time (see CallbackFamily). Registering the same
  // name again keeps the first reader.
  CallbackFamily& callback(const std::string& name, const std::string& help,
                           MetricFamilyBase::Type type,
                           std::function<std::optional<double>()> read);
  // The whole registry in the text exposition format.
  std::string render() const;

 private:
  MetricFamilyBase* find(const std::string& name) const;
  mutable std::mutex mutex_;
  std::vector<std::unique_ptr<MetricFamilyBase>> families_;
};

// What /proc/self/stat tells about the process (the fields process metrics need).
struct ProcessStat {
  double cpuSeconds = 0;           // utime + stime
  double residentBytes = 0;        // rss pages * page size
  double startTicksAfterBoot = 0;  // starttime, in clock ticks since boot
};
// Parses the text of /proc/self/stat (the command name may hold spaces and parentheses: fields
// are counted after the last ')'). `ticksPerSecond` is sysconf(_SC_CLK_TCK).
std::optional<ProcessStat> parseProcStat(std::string_view text, double ticksPerSecond,
                                         double pageBytes);
// The boot time in seconds since the epoch from the text of /proc/stat (its `btime` line).
std::optional<double> parseBootTime(std::string_view text);

// The metrics every relaykit daemon exports, whatever its protocol: relaykit_build_info{version}
// (always 1) and Prometheus' standard process metrics (process_cpu_seconds_total,
// process_resident_memory_bytes, process_open_fds, process_max_fds, process_start_time_seconds),
// read from /proc when scraped. Idempotent. `version` defaults to the project version.
void registerStandardMetrics(MetricsRegistry* registry);
void registerStandardMetrics(MetricsRegistry* registry, const std::string& version);
// The project version the binaries were built from (CMake's project(VERSION)).
const char* relaykitVersion();

// Answers GET /metrics (the registry) and GET /health (200 "ok" or "degraded: REASON", 503
// "unavailable: REASON", as `healthy` reports; 200 "ok" when there is no check).
using HealthCheck = std::function<Health()>;

class MetricsHttpServer {
 public:
  // Binds `endpoint` now and serves on `base`. The registry must outlive the server.
  static StatusOr<std::unique_ptr<MetricsHttpServer>> create(event_base* base,
                                                             const Endpoint& endpoint,
                                                             const MetricsRegistry* registry,
                                                             HealthCheck healthy = nullptr);
  ~MetricsHttpServer();
  MetricsHttpServer(const MetricsHttpServer&) = delete;
  MetricsHttpServer& operator=(const MetricsHttpServer&) = delete;
  std::uint16_t port() const { return port_; }  // the bound port (for port 0)
  // Counts the endpoint's own refused/evicted connections and errors (server="metrics").
  void countInto(MetricsRegistry* registry);

 private:
  MetricsHttpServer() = default;
  std::unique_ptr<Service> service_;
  std::unique_ptr<Server> server_;
  std::uint16_t port_ = 0;
};

// MetricsHttpServer on an event base and thread of its own (for daemons without a libevent loop).
class MetricsThread {
 public:
  static StatusOr<std::unique_ptr<MetricsThread>> start(const Endpoint& endpoint,
                                                        const MetricsRegistry* registry,
                                                        HealthCheck healthy = nullptr);
  ~MetricsThread();  // stops the loop and joins the thread
  MetricsThread(const MetricsThread&) = delete;
  MetricsThread& operator=(const MetricsThread&) = delete;
  std::uint16_t port() const { return server_->port(); }

 private:
  MetricsThread() = default;
  event_base* base_ = nullptr;
  ::event* stop_ = nullptr;  // activated from the destructor; breaks the loop from inside
  std::unique_ptr<MetricsHttpServer> server_;
  std::thread thread_;
};

}  // namespace relaykit
