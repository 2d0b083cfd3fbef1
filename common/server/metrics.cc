// SPDX-License-Identifier: Apache-2.0
// metrics.cc: registry and text exposition rendering; see metrics.h (the HTTP endpoint is in
// metrics_http.cc).
#include "common/server/metrics.h"

#include <sys/resource.h>
#include <unistd.h>

#include <cassert>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#ifndef RELAYKIT_BUILD_VERSION
#define RELAYKIT_BUILD_VERSION "unknown"
#endif

namespace relaykit {

namespace {

// Largest /proc file read for process metrics (/proc/self/stat is ~300 bytes, /proc/stat grows
// with the CPU count).
constexpr std::size_t kMaxProcFileBytes = 1024 * 1024;
// /proc/self/stat fields (1-based, as proc(5) numbers them) process metrics use.
constexpr int kStatUtimeField = 14;
constexpr int kStatStimeField = 15;
constexpr int kStatStartTimeField = 22;
constexpr int kStatRssField = 24;

std::optional<std::string> readProcFile(const char* path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return std::nullopt;
  }
  std::string text(kMaxProcFileBytes, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<std::size_t>(in.gcount()));
  return text;
}

std::optional<double> countOpenFds() {
  std::error_code ec;
  std::filesystem::directory_iterator it("/proc/self/fd", ec);
  if (ec) {
    return std::nullopt;
  }
  double n = 0;
  for (; it != std::filesystem::directory_iterator(); it.increment(ec)) {
    if (ec) {
      return std::nullopt;
    }
    ++n;
  }
  return n - 1;  // the directory iterator's own descriptor
}

std::optional<ProcessStat> readProcessStat() {
  auto text = readProcFile("/proc/self/stat");
  if (!text) {
    return std::nullopt;
  }
  return parseProcStat(*text, static_cast<double>(sysconf(_SC_CLK_TCK)),
                       static_cast<double>(sysconf(_SC_PAGESIZE)));
}

std::string formatNumber(double v) {
  if (std::isinf(v)) {
    return v > 0 ? "+Inf" : "-Inf";
  }
  if (std::isnan(v)) {
    return "NaN";
  }
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.10g", v);
  return buf;
}

void appendEscapedLabel(const std::string& value, std::string* out) {
  for (char c : value) {
    if (c == '\\') {
      *out += "\\\\";
    } else if (c == '"') {
      *out += "\\\"";
    } else if (c == '\n') {
      *out += "\\n";
    } else {
      out->push_back(c);
    }
  }
}

void appendEscapedHelp(const std::string& value, std::string* out) {
  for (char c : value) {
    if (c == '\\') {
      *out += "\\\\";
    } else if (c == '\n') {
      *out += "\\n";
    } else {
      out->push_back(c);
    }
  }
}

const char* typeName(MetricFamilyBase::Type type) {
  switch (type) {
    case MetricFamilyBase::Type::kCounter:
      return "counter";
    case MetricFamilyBase::Type::kGauge:
      return "gauge";
    case MetricFamilyBase::Type::kHistogram:
      return "histogram";
  }
  return "untyped";
}

void atomicAdd(std::atomic<double>* target, double delta) {
  double current = target->load(std::memory_order_relaxed);
  while (!target->compare_exchange_weak(current, current + delta, std::memory_order_relaxed)) {
  }
}

}  // namespace

void Gauge::add(double delta) {
  atomicAdd(&value_, delta);
}

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)),
      buckets_(std::make_unique<std::atomic<std::uint64_t>[]>(bounds_.size() + 1)) {
  for (std::size_t i = 0; i <= bounds_.size(); ++i) {
    buckets_[i].store(0);
  }
}

void Histogram::observe(double v) {
  std::size_t i = 0;
  while (i < bounds_.size() && v > bounds_[i]) {
    ++i;
  }
  buckets_[i].fetch_add(1, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
  atomicAdd(&sum_, v);
}

const std::vector<double>& defaultLatencyBuckets() {
  static const std::vector<double> bounds = {0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025,
                                             0.005,   0.01,   0.025,   0.05,   0.1,   0.25,
                                             0.5,     1,      2.5,     5,      10};
  return bounds;
}

std::string MetricFamilyBase::labelText(const LabelValues& values, const char* extraName,
                                        const std::string& extraValue) const {
  std::string out;
  bool any = false;
  for (std::size_t i = 0; i < labelNames_.size() && i < values.size(); ++i) {
    out += any ? "," : "{";
    any = true;
    out += labelNames_[i] + "=\"";
    appendEscapedLabel(values[i], &out);
    out += '"';
  }
  if (extraName != nullptr) {
    out += any ? "," : "{";
    any = true;
    out += std::string(extraName) + "=\"" + extraValue + "\"";
  }
  if (any) {
    out += '}';
  }
  return out;
}

void MetricFamilyBase::render(std::string* out) const {
  *out += "# HELP " + name_ + " ";
  appendEscapedHelp(help_, out);
  *out += "\n# TYPE " + name_ + " " + typeName(type_) + "\n";
  std::lock_guard<std::mutex> lock(mutex_);
  renderSeries(out);
}

template <>
void MetricFamily<Counter>::renderSeries(std::string* out) const {
  for (const auto& [values, series] : series_) {
    *out += name_ + labelText(values) + " " + std::to_string(series->value()) + "\n";
  }
}

template <>
void MetricFamily<Gauge>::renderSeries(std::string* out) const {
  for (const auto& [values, series] : series_) {
    *out += name_ + labelText(values) + " " + formatNumber(series->value()) + "\n";
  }
}

template <>
void MetricFamily<Histogram>::renderSeries(std::string* out) const {
  for (const auto& [values, h] : series_) {
    std::uint64_t cumulative = 0;
    for (std::size_t i = 0; i < h->bounds().size(); ++i) {
      cumulative += h->bucketCount(i);
      *out += name_ + "_bucket" + labelText(values, "le", formatNumber(h->bounds()[i])) + " " +
              std::to_string(cumulative) + "\n";
    }
    cumulative += h->bucketCount(h->bounds().size());
    *out += name_ + "_bucket" + labelText(values, "le", "+Inf") + " " + std::to_string(cumulative) +
            "\n";
    *out += name_ + "_sum" + labelText(values) + " " + formatNumber(h->sum()) + "\n";
    *out += name_ + "_count" + labelText(values) + " " + std::to_string(h->count()) + "\n";
  }
}

void CallbackFamily::renderSeries(std::string* out) const {
  if (auto v = read_()) {
    *out += name_ + " " + formatNumber(*v) + "\n";
  }
}

std::optional<ProcessStat> parseProcStat(std::string_view text, double ticksPerSecond,
                                         double pageBytes) {
  const auto close = text.rfind(')');
  if (close == std::string_view::npos || ticksPerSecond <= 0) {
    return std::nullopt;
  }
  // Field 3 (state) is the first after ") ".
  std::istringstream in(std::string(text.substr(close + 1)));
  std::string field;
  ProcessStat stat;
  double utime = -1;
  double stime = -1;
  double rss = -1;
  double start = -1;
  for (int n = 3; n <= kStatRssField && (in >> field); ++n) {
    char* end = nullptr;
    const double v = std::strtod(field.c_str(), &end);
    const bool numeric = end != nullptr && *end == '\0';
    if (n == kStatUtimeField && numeric) {
      utime = v;
    } else if (n == kStatStimeField && numeric) {
      stime = v;
    } else if (n == kStatStartTimeField && numeric) {
      start = v;
    } else if (n == kStatRssField && numeric) {
      rss = v;
    }
  }
  if (utime < 0 || stime < 0 || start < 0 || rss < 0) {
    return std::nullopt;
  }
  stat.cpuSeconds = (utime + stime) / ticksPerSecond;
  stat.residentBytes = rss * pageBytes;
  stat.startTicksAfterBoot = start;
  return stat;
}

std::optional<double> parseBootTime(std::string_view text) {
  std::size_t pos = 0;
  while (pos < text.size()) {
    auto eol = text.find('\n', pos);
    if (eol == std::string_view::npos) {
      eol = text.size();
    }
    std::string_view line = text.substr(pos, eol - pos);
    if (line.substr(0, 6) == "btime ") {
      std::string value(line.substr(6));
      char* end = nullptr;
      const double v = std::strtod(value.c_str(), &end);
      if (end != value.c_str() && v > 0) {
        return v;
      }
      return std::nullopt;
    }
    pos = eol + 1;
  }
  return std::nullopt;
}

const char* relaykitVersion() {
  return RELAYKIT_BUILD_VERSION;
}

void registerStandardMetrics(MetricsRegistry* registry) {
  registerStandardMetrics(registry, relaykitVersion());
}

void registerStandardMetrics(MetricsRegistry* registry, const std::string& version) {
  registry
      ->gauge("relaykit_build_info", "relaykit version this daemon was built from (always 1)",
              {"version"})
      .labels({version})
      .set(1);
  using Type = MetricFamilyBase::Type;
  registry->callback("process_cpu_seconds_total", "Total user and system CPU time spent in seconds",
                     Type::kCounter, []() -> std::optional<double> {
                       auto stat = readProcessStat();
                       return stat ? std::optional<double>(stat->cpuSeconds) : std::nullopt;
                     });
  registry->callback("process_resident_memory_bytes", "Resident memory size in bytes", Type::kGauge,
                     []() -> std::optional<double> {
                       auto stat = readProcessStat();
                       return stat ? std::optional<double>(stat->residentBytes) : std::nullopt;
                     });
  registry->callback("process_open_fds", "Number of open file descriptors", Type::kGauge,
                     [] { return countOpenFds(); });
  registry->callback(
      "process_max_fds", "Maximum number of open file descriptors", Type::kGauge,
      []() -> std::optional<double> {
        rlimit limit{};
        if (getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur == RLIM_INFINITY) {
          return std::nullopt;
        }
        return static_cast<double>(limit.rlim_cur);
      });
  // The start time never changes: computed once, at the first scrape.
  registry->callback(
      "process_start_time_seconds", "Start time of the process since unix epoch in seconds",
      Type::kGauge, []() -> std::optional<double> {
        static const std::optional<double> started = []() -> std::optional<double> {
          auto stat = readProcessStat();
          auto procStat = readProcFile("/proc/stat");
          auto boot = procStat ? parseBootTime(*procStat) : std::nullopt;
          if (!stat || !boot) {
            return std::nullopt;
          }
          return *boot + stat->startTicksAfterBoot / static_cast<double>(sysconf(_SC_CLK_TCK));
        }();
        return started;
      });
}

MetricFamilyBase* MetricsRegistry::find(const std::string& name) const {
  for (const auto& f : families_) {
    if (f->name() == name) {
      return f.get();
    }
  }
  return nullptr;
}

CounterFamily& MetricsRegistry::counter(const std::string& name, const std::string& help,
                                        std::vector<std::string> labelNames) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (auto* f = find(name)) {
    assert(f->type() == MetricFamilyBase::Type::kCounter && f->labelNames() == labelNames);
    return *static_cast<CounterFamily*>(f);
  }
  families_.push_back(std::make_unique<CounterFamily>(name, help, MetricFamilyBase::Type::kCounter,
                                                      std::move(labelNames)));
  return *static_cast<CounterFamily*>(families_.back().get());
}

GaugeFamily& MetricsRegistry::gauge(const std::string& name, const std::string& help,
                                    std::vector<std::string> labelNames) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (auto* f = find(name)) {
    assert(f->type() == MetricFamilyBase::Type::kGauge && f->labelNames() == labelNames);
    return *static_cast<GaugeFamily*>(f);
  }
  families_.push_back(std::make_unique<GaugeFamily>(name, help, MetricFamilyBase::Type::kGauge,
                                                    std::move(labelNames)));
  return *static_cast<GaugeFamily*>(families_.back().get());
}

HistogramFamily& MetricsRegistry::histogram(const std::string& name, const std::string& help,
                                            std::vector<std::string> labelNames,
                                            std::vector<double> bounds) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (auto* f = find(name)) {
    assert(f->type() == MetricFamilyBase::Type::kHistogram && f->labelNames() == labelNames);
    return *static_cast<HistogramFamily*>(f);
  }
  families_.push_back(
      std::make_unique<HistogramFamily>(name, help, std::move(labelNames), std::move(bounds)));
  return *static_cast<HistogramFamily*>(families_.back().get());
}

CallbackFamily& MetricsRegistry::callback(const std::string& name, const std::string& help,
                                          MetricFamilyBase::Type type,
                                          std::function<std::optional<double>()> read) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (auto* f = find(name)) {
    auto* existing = dynamic_cast<CallbackFamily*>(f);
    assert(existing != nullptr && f->type() == type);
    return *existing;
  }
  families_.push_back(std::make_unique<CallbackFamily>(name, help, type, std::move(read)));
  return *static_cast<CallbackFamily*>(families_.back().get());
}

std::string MetricsRegistry::render() const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::string out;
  for (const auto& f : families_) {
    f->render(&out);
  }
  return out;
}

}  // namespace relaykit
