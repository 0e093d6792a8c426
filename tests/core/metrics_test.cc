#include "core/metrics.h"

#include <thread>
#include <vector>

#include <gtest/gtest.h>

namespace petrel {
namespace {

TEST(MetricsTest, ExpositionOfASmallRegistryIsExact) {
  MetricsRegistry registry;
  auto& requests = registry.Counter("http_requests_total", "Requests served.\nBy code.",
                                    {"code", "path"});
  requests.WithLabels({"200", "/a"}).Inc();
  requests.WithLabels({"200", "/a"}).Inc(2);
  requests.WithLabels({"500", "say \"hi\"\\\n"}).Inc();
  registry.Gauge("leader", "Whether this replica leads.").Get().Set(1);
  auto& latency =
      registry.Histogram("latency_seconds", "Latency.", {"verb"}, {0.1, 0.5, 1});
  latency.WithLabels({"GET"}).Observe(0.05);
  latency.WithLabels({"GET"}).Observe(0.5);  // le is inclusive
  latency.WithLabels({"GET"}).Observe(3);

  EXPECT_EQ(registry.Expose(),
            "# HELP http_requests_total Requests served.\\nBy code.\n"
            "# TYPE http_requests_total counter\n"
            "http_requests_total{code=\"200\",path=\"/a\"} 3\n"
            "http_requests_total{code=\"500\",path=\"say \\\"hi\\\"\\\\\\n\"} 1\n"
            "# HELP latency_seconds Latency.\n"
            "# TYPE latency_seconds histogram\n"
            "latency_seconds_bucket{verb=\"GET\",le=\"0.1\"} 1\n"
            "latency_seconds_bucket{verb=\"GET\",le=\"0.5\"} 2\n"
            "latency_seconds_bucket{verb=\"GET\",le=\"1\"} 2\n"
            "latency_seconds_bucket{verb=\"GET\",le=\"+Inf\"} 3\n"
            "latency_seconds_sum{verb=\"GET\"} 3.55\n"
            "latency_seconds_count{verb=\"GET\"} 3\n"
            "# HELP leader Whether this replica leads.\n"
            "# TYPE leader gauge\n"
            "leader 1\n");
}

TEST(MetricsTest, SameNameAndTypeReturnsTheSameFamily) {
  MetricsRegistry registry;
  auto& a = registry.Counter("c_total", "c", {"name"});
  auto& b = registry.Counter("c_total", "c", {"name"});
  EXPECT_EQ(&a, &b);
  a.WithLabels({"x"}).Inc();
  EXPECT_EQ(b.WithLabels({"x"}).Value(), 1);
}

TEST(MetricsTest, ConflictingRegistrationIsDetachedAndNotExposed) {
  MetricsRegistry registry;
  registry.Counter("m", "counter").Get().Inc();
  registry.Gauge("m", "gauge").Get().Set(42);
  std::string text = registry.Expose();
  EXPECT_NE(text.find("# TYPE m counter"), std::string::npos);
  EXPECT_EQ(text.find("42"), std::string::npos);
}

TEST(MetricsTest, CountersIgnoreNegativeIncrements) {
  MetricsRegistry registry;
  auto& c = registry.Counter("c_total", "c").Get();
  c.Inc(-5);
  EXPECT_EQ(c.Value(), 0);
}

TEST(MetricsTest, ValuesFormatLikeClientGolang) {
  EXPECT_EQ(FormatMetricValue(0), "0");
  EXPECT_EQ(FormatMetricValue(0.25), "0.25");
  EXPECT_EQ(FormatMetricValue(12345), "12345");
  EXPECT_EQ(FormatMetricValue(1.0 / 0.0), "+Inf");
  EXPECT_EQ(FormatMetricValue(-1.0 / 0.0), "-Inf");
  EXPECT_EQ(FormatMetricValue(0.0 / 0.0), "NaN");
}

TEST(MetricsTest, CollectHooksRunBeforeExpositionUntilReleased) {
  MetricsRegistry registry;
  auto& g = registry.Gauge("g", "g").Get();
  int calls = 0;
  {
    auto handle = registry.AddCollectHook([&] { g.Set(++calls); });
    EXPECT_NE(registry.Expose().find("g 1\n"), std::string::npos);
  }
  registry.Expose();
  EXPECT_EQ(calls, 1);
}

TEST(MetricsTest, ConcurrentUpdatesAreNotLost) {
  MetricsRegistry registry;
  auto& family = registry.Counter("c_total", "c", {"worker"});
  auto& hist = registry.Histogram("h", "h", {}, {1}).Get();
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 10000; ++i) {
        family.WithLabels({"all"}).Inc();
        hist.Observe(0.5);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(family.WithLabels({"all"}).Value(), 40000);
  EXPECT_EQ(hist.Read().count, 40000u);
}

}  // namespace
}  // namespace petrel
