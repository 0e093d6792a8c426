// A small, thread-safe Prometheus registry: counter, gauge and histogram families with label
// sets, rendered in the text exposition format 0.0.4 for a `/metrics` endpoint.
//
// A family is registered once by name; asking again for the same name and type returns the
// same family, so several components (e.g. one workqueue per controller) can share one family
// and tell their series apart by labels. Series are created on first use by WithLabels() and
// live as long as the registry; the returned references stay valid.
//
// Values that are cheaper to compute at scrape time than to maintain (e.g. "seconds of
// unfinished work") are refreshed by collect hooks that run just before each exposition.
//
// Thread-safety: everything here is safe to call from any thread. Counter and gauge updates
// are lock-free; histogram observations take a short per-series lock.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace petrel {

class Counter {
 public:
  // Adds `v` (must be >= 0; negative values are ignored, counters only go up).
  void Inc(double v = 1);
  double Value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

class Gauge {
 public:
  void Set(double v) { value_.store(v, std::memory_order_relaxed); }
  void Add(double v);
  void Inc() { Add(1); }
  void Dec() { Add(-1); }
  double Value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

class Histogram {
 public:
  // `bounds` are the upper bounds of the finite buckets, strictly increasing.
  explicit Histogram(std::vector<double> bounds);
  void Observe(double v);

  struct Snapshot {
    std::vector<double> bounds;
    std::vector<uint64_t> cumulative;  // one per bound, then one for +Inf
    double sum = 0;
    uint64_t count = 0;
  };
  Snapshot Read() const;

 private:
  const std::vector<double> bounds_;
  mutable std::mutex mu_;
  std::vector<uint64_t> counts_;  // per bucket, not cumulative; last is +Inf
  double sum_ = 0;
  uint64_t count_ = 0;
};

// Bucket helpers, as in client_golang.
std::vector<double> ExponentialBuckets(double start, double factor, int count);
std::vector<double> DefaultLatencyBuckets();  // 5 ms .. 10 s

// A metric family: one name, one help text, fixed label names, one series per label-value
// tuple. WithLabels() takes values in the order of the label names.
template <typename Metric>
class Family {
 public:
  Family(std::vector<std::string> label_names, std::function<std::unique_ptr<Metric>()> make)
      : label_names_(std::move(label_names)), make_(std::move(make)) {}

  // The series for these label values (created on first use). A wrong number of values is a
  // programming error; it is padded/truncated so that exposition stays well-formed.
  Metric& WithLabels(std::vector<std::string> values) {
    values.resize(label_names_.size());
    std::lock_guard<std::mutex> lock(mu_);
    auto& slot = series_[values];
    if (!slot) slot = make_();
    return *slot;
  }
  // The series without labels (for families with no label names).
  Metric& Get() { return WithLabels({}); }

  const std::vector<std::string>& label_names() const { return label_names_; }
  // Calls fn(values, metric) for each series in label-value order.
  void ForEach(const std::function<void(const std::vector<std::string>&, const Metric&)>& fn) const {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [values, metric] : series_) fn(values, *metric);
  }

 private:
  const std::vector<std::string> label_names_;
  const std::function<std::unique_ptr<Metric>()> make_;
  mutable std::mutex mu_;
  std::map<std::vector<std::string>, std::unique_ptr<Metric>> series_;
};

using CounterFamily = Family<Counter>;
using GaugeFamily = Family<Gauge>;
using HistogramFamily = Family<Histogram>;

class MetricsRegistry {
 public:
  MetricsRegistry() = default;
  MetricsRegistry(const MetricsRegistry&) = delete;
  MetricsRegistry& operator=(const MetricsRegistry&) = delete;

  // The process-wide registry served at /metrics.
  static MetricsRegistry& Default();

  // Registers (or returns the existing) family. Asking for an existing name with a different
  // type or label names is a programming error: it is logged and a detached family (never
  // exposed) is returned so that callers still work.
  CounterFamily& Counter(const std::string& name, const std::string& help,
                         std::vector<std::string> label_names = {});
  GaugeFamily& Gauge(const std::string& name, const std::string& help,
                     std::vector<std::string> label_names = {});
  HistogramFamily& Histogram(const std::string& name, const std::string& help,
                             std::vector<std::string> label_names = {},
                             std::vector<double> bounds = DefaultLatencyBuckets());

  // Runs `hook` before every exposition until the returned handle is destroyed.
  class HookHandle {
   public:
    HookHandle() = default;
    HookHandle(MetricsRegistry* registry, uint64_t id) : registry_(registry), id_(id) {}
    HookHandle(HookHandle&& other) noexcept { *this = std::move(other); }
    HookHandle& operator=(HookHandle&& other) noexcept;
    ~HookHandle();

   private:
    MetricsRegistry* registry_ = nullptr;
    uint64_t id_ = 0;
  };
  [[nodiscard]] HookHandle AddCollectHook(std::function<void()> hook);

  // Text exposition format 0.0.4; families sorted by name, series by label values.
  std::string Expose() const;

 private:
  enum class Type { kCounter, kGauge, kHistogram };
  struct Entry {
    Type type;
    std::string help;
    std::vector<std::string> label_names;
    std::shared_ptr<void> family;
  };
  template <typename F>
  F& Register(Type type, const std::string& name, const std::string& help,
              std::vector<std::string> label_names, std::function<std::shared_ptr<F>()> make);

  mutable std::mutex mu_;
  std::map<std::string, Entry> families_;
  std::vector<std::shared_ptr<void>> detached_;
  // Separate from mu_: held while hooks run, so that destroying a HookHandle waits for a
  // running hook instead of racing with it.
  mutable std::mutex hooks_mu_;
  std::map<uint64_t, std::function<void()>> hooks_;
  uint64_t next_hook_id_ = 1;
};

// Exposition helpers, exposed for tests.
std::string FormatMetricValue(double v);           // "1", "0.25", "+Inf", "NaN"
std::string EscapeLabelValue(const std::string&);  // \ " and newline escaped
std::string EscapeHelp(const std::string&);        // \ and newline escaped

}  // namespace petrel
