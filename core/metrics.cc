#include "core/metrics.h"

#include <charconv>
#include <cmath>

#include <spdlog/spdlog.h>

namespace petrel {

void Counter::Inc(double v) {
  if (!(v >= 0)) return;
  double cur = value_.load(std::memory_order_relaxed);
  while (!value_.compare_exchange_weak(cur, cur + v, std::memory_order_relaxed)) {
  }
}

void Gauge::Add(double v) {
  double cur = value_.load(std::memory_order_relaxed);
  while (!value_.compare_exchange_weak(cur, cur + v, std::memory_order_relaxed)) {
  }
}

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)), counts_(bounds_.size() + 1, 0) {}

void Histogram::Observe(double v) {
  // First bucket whose upper bound is >= v ("le" is inclusive).
  size_t i = 0;
  while (i < bounds_.size() && v > bounds_[i]) ++i;
  std::lock_guard<std::mutex> lock(mu_);
  ++counts_[i];
  sum_ += v;
  ++count_;
}

Histogram::Snapshot Histogram::Read() const {
  Snapshot s;
  s.bounds = bounds_;
  std::lock_guard<std::mutex> lock(mu_);
  uint64_t running = 0;
  for (uint64_t c : counts_) {
    running += c;
    s.cumulative.push_back(running);
  }
  s.sum = sum_;
  s.count = count_;
  return s;
}

std::vector<double> ExponentialBuckets(double start, double factor, int count) {
  std::vector<double> out;
  double v = start;
  for (int i = 0; i < count; ++i, v *= factor) out.push_back(v);
  return out;
}

std::vector<double> DefaultLatencyBuckets() {
  return {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
}

MetricsRegistry& MetricsRegistry::Default() {
  static MetricsRegistry* registry = new MetricsRegistry();  // never destroyed: used at exit
  return *registry;
}

template <typename F>
F& MetricsRegistry::Register(Type type, const std::string& name, const std::string& help,
                             std::vector<std::string> label_names,
                             std::function<std::shared_ptr<F>()> make) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = families_.find(name);
  if (it != families_.end()) {
    if (it->second.type == type && it->second.label_names == label_names) {
      return *std::static_pointer_cast<F>(it->second.family);
    }
    spdlog::error("metric {} registered twice with a different type or labels; the second "
                  "registration is not exposed",
                  name);
    auto detached = make();
    detached_.push_back(detached);
    return *detached;
  }
  auto family = make();
  families_.emplace(name, Entry{type, help, std::move(label_names), family});
  return *family;
}

CounterFamily& MetricsRegistry::Counter(const std::string& name, const std::string& help,
                                        std::vector<std::string> label_names) {
  auto labels = label_names;
  return Register<CounterFamily>(Type::kCounter, name, help, std::move(label_names), [&] {
    return std::make_shared<CounterFamily>(labels, [] { return std::make_unique<petrel::Counter>(); });
  });
}

GaugeFamily& MetricsRegistry::Gauge(const std::string& name, const std::string& help,
                                    std::vector<std::string> label_names) {
  auto labels = label_names;
  return Register<GaugeFamily>(Type::kGauge, name, help, std::move(label_names), [&] {
    return std::make_shared<GaugeFamily>(labels, [] { return std::make_unique<petrel::Gauge>(); });
  });
}

HistogramFamily& MetricsRegistry::Histogram(const std::string& name, const std::string& help,
                                            std::vector<std::string> label_names,
                                            std::vector<double> bounds) {
  auto labels = label_names;
  return Register<HistogramFamily>(Type::kHistogram, name, help, std::move(label_names), [&] {
    return std::make_shared<HistogramFamily>(
        labels, [bounds] { return std::make_unique<petrel::Histogram>(bounds); });
  });
}

MetricsRegistry::HookHandle& MetricsRegistry::HookHandle::operator=(HookHandle&& other) noexcept {
  if (this != &other) {
    this->~HookHandle();
    registry_ = other.registry_;
    id_ = other.id_;
    other.registry_ = nullptr;
  }
  return *this;
}

MetricsRegistry::HookHandle::~HookHandle() {
  if (registry_ == nullptr) return;
  std::lock_guard<std::mutex> lock(registry_->hooks_mu_);
  registry_->hooks_.erase(id_);
  registry_ = nullptr;
}

MetricsRegistry::HookHandle MetricsRegistry::AddCollectHook(std::function<void()> hook) {
  std::lock_guard<std::mutex> lock(hooks_mu_);
  uint64_t id = next_hook_id_++;
  hooks_.emplace(id, std::move(hook));
  return HookHandle(this, id);
}

std::string FormatMetricValue(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  if (ec != std::errc()) return "NaN";
  return std::string(buf, end);
}

static std::string Escape(const std::string& s, bool quote) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else if (quote && c == '"') {
      out += "\\\"";
    } else {
      out += c;
    }
  }
  return out;
}

std::string EscapeLabelValue(const std::string& s) { return Escape(s, true); }
std::string EscapeHelp(const std::string& s) { return Escape(s, false); }

namespace {
// {a="x",b="y"} plus an optional extra label (le for histogram buckets); "" when empty.
std::string LabelText(const std::vector<std::string>& names, const std::vector<std::string>& values,
                      const std::string& extra_name = "", const std::string& extra_value = "") {
  std::string out;
  for (size_t i = 0; i < names.size(); ++i) {
    out += out.empty() ? "{" : ",";
    out += names[i] + "=\"" + EscapeLabelValue(values[i]) + "\"";
  }
  if (!extra_name.empty()) {
    out += out.empty() ? "{" : ",";
    out += extra_name + "=\"" + EscapeLabelValue(extra_value) + "\"";
  }
  if (!out.empty()) out += "}";
  return out;
}
}  // namespace

std::string MetricsRegistry::Expose() const {
  {
    std::lock_guard<std::mutex> lock(hooks_mu_);
    for (const auto& [id, hook] : hooks_) hook();
  }
  std::string out;
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [name, entry] : families_) {
    out += "# HELP " + name + " " + EscapeHelp(entry.help) + "\n";
    switch (entry.type) {
      case Type::kCounter: {
        out += "# TYPE " + name + " counter\n";
        auto& family = *std::static_pointer_cast<CounterFamily>(entry.family);
        family.ForEach([&](const std::vector<std::string>& values, const petrel::Counter& c) {
          out += name + LabelText(entry.label_names, values) + " " + FormatMetricValue(c.Value()) +
                 "\n";
        });
        break;
      }
      case Type::kGauge: {
        out += "# TYPE " + name + " gauge\n";
        auto& family = *std::static_pointer_cast<GaugeFamily>(entry.family);
        family.ForEach([&](const std::vector<std::string>& values, const petrel::Gauge& g) {
          out += name + LabelText(entry.label_names, values) + " " + FormatMetricValue(g.Value()) +
                 "\n";
        });
        break;
      }
      case Type::kHistogram: {
        out += "# TYPE " + name + " histogram\n";
        auto& family = *std::static_pointer_cast<HistogramFamily>(entry.family);
        family.ForEach([&](const std::vector<std::string>& values, const petrel::Histogram& h) {
          petrel::Histogram::Snapshot s = h.Read();
          for (size_t i = 0; i <= s.bounds.size(); ++i) {
            std::string le = i < s.bounds.size() ? FormatMetricValue(s.bounds[i]) : "+Inf";
            out += name + "_bucket" + LabelText(entry.label_names, values, "le", le) + " " +
                   std::to_string(s.cumulative[i]) + "\n";
          }
          out += name + "_sum" + LabelText(entry.label_names, values) + " " +
                 FormatMetricValue(s.sum) + "\n";
          out += name + "_count" + LabelText(entry.label_names, values) + " " +
                 std::to_string(s.count) + "\n";
        });
        break;
      }
    }
  }
  return out;
}

}  // namespace petrel
