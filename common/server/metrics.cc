// metrics.cc: registry and text exposition rendering; see metrics.h (the HTTP endpoint is in
// metrics_http.cc).
#include "common/server/metrics.h"

#include <cassert>
#include <cmath>
#include <cstdio>
#include <cstring>

namespace relaykit {

namespace {

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

std::string MetricsRegistry::render() const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::string out;
  for (const auto& f : families_) {
    f->render(&out);
  }
  return out;
}

}  // namespace relaykit
