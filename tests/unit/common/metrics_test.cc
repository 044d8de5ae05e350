#include "common/metrics.h"

#include <gtest/gtest.h>

#include <thread>
#include <vector>

namespace mesh::metrics {
namespace {

TEST(Metrics, CounterAndGaugeRenderWithHelpAndType) {
  Registry r;
  r.counter("mesh_test_packets_total", "Packets seen.").inc(3);
  auto& g = r.gauge("mesh_test_members", "Members by state.", {{"state", "alive"}});
  g.set(5);
  g.dec();
  EXPECT_EQ(r.render(),
            "# HELP mesh_test_members Members by state.\n"
            "# TYPE mesh_test_members gauge\n"
            "mesh_test_members{state=\"alive\"} 4\n"
            "# HELP mesh_test_packets_total Packets seen.\n"
            "# TYPE mesh_test_packets_total counter\n"
            "mesh_test_packets_total 3\n");
}

TEST(Metrics, SameNameAndLabelsIsTheSameSeries) {
  Registry r;
  auto& a = r.counter("mesh_x_total", "x", {{"k", "v"}});
  auto& b = r.counter("mesh_x_total", "x", {{"k", "v"}});
  auto& c = r.counter("mesh_x_total", "x", {{"k", "w"}});
  EXPECT_EQ(&a, &b);
  EXPECT_NE(&a, &c);
  a.inc();
  b.inc();
  EXPECT_EQ(a.value(), 2u);
  std::string out = r.render();
  EXPECT_NE(out.find("mesh_x_total{k=\"v\"} 2\n"), std::string::npos);
  EXPECT_NE(out.find("mesh_x_total{k=\"w\"} 0\n"), std::string::npos);
  // One HELP/TYPE pair per family, however many series.
  EXPECT_EQ(out.find("# TYPE mesh_x_total"), out.rfind("# TYPE mesh_x_total"));
}

TEST(Metrics, HistogramBucketsAreCumulativeAndInclusive) {
  Registry r;
  auto& h = r.histogram("mesh_rtt_seconds", "RTT.", {0.1, 0.5, 1}, {{"peer", "a"}});
  h.observe(0.05);
  h.observe(0.1);  // le is inclusive: lands in 0.1
  h.observe(0.7);
  h.observe(3);
  EXPECT_EQ(r.render(),
            "# HELP mesh_rtt_seconds RTT.\n"
            "# TYPE mesh_rtt_seconds histogram\n"
            "mesh_rtt_seconds_bucket{peer=\"a\",le=\"0.1\"} 2\n"
            "mesh_rtt_seconds_bucket{peer=\"a\",le=\"0.5\"} 2\n"
            "mesh_rtt_seconds_bucket{peer=\"a\",le=\"1\"} 3\n"
            "mesh_rtt_seconds_bucket{peer=\"a\",le=\"+Inf\"} 4\n"
            "mesh_rtt_seconds_sum{peer=\"a\"} 3.85\n"
            "mesh_rtt_seconds_count{peer=\"a\"} 4\n");
}

TEST(Metrics, LabelValuesAndHelpAreEscaped) {
  Registry r;
  r.gauge("mesh_g", "line1\nback\\slash", {{"path", "a\"b\\c\nd"}}).set(1);
  std::string out = r.render();
  EXPECT_NE(out.find("# HELP mesh_g line1\\nback\\\\slash\n"), std::string::npos);
  EXPECT_NE(out.find("mesh_g{path=\"a\\\"b\\\\c\\nd\"} 1\n"), std::string::npos);
}

TEST(Metrics, CallbackSeriesAreReadAtRenderTime) {
  Registry r;
  double v = 1;
  r.gaugeFn("mesh_queue_depth", "Depth.", {}, [&] { return v; });
  EXPECT_NE(r.render().find("mesh_queue_depth 1\n"), std::string::npos);
  v = 42.5;
  EXPECT_NE(r.render().find("mesh_queue_depth 42.5\n"), std::string::npos);
}

TEST(Metrics, SpecialValues) {
  EXPECT_EQ(formatValue(1.0 / 0.0), "+Inf");
  EXPECT_EQ(formatValue(-1.0 / 0.0), "-Inf");
  EXPECT_EQ(formatValue(0.0 / 0.0), "NaN");
  EXPECT_EQ(formatValue(12), "12");
  EXPECT_EQ(formatValue(0.25), "0.25");
}

TEST(Metrics, NameValidation) {
  EXPECT_TRUE(validMetricName("mesh_gossip_probes_total"));
  EXPECT_TRUE(validMetricName("a:b_c1"));
  EXPECT_FALSE(validMetricName(""));
  EXPECT_FALSE(validMetricName("1abc"));
  EXPECT_FALSE(validMetricName("a-b"));
  EXPECT_TRUE(validLabelName("code"));
  EXPECT_FALSE(validLabelName("__reserved"));
  EXPECT_FALSE(validLabelName("a:b"));
}

TEST(Metrics, ExponentialBuckets) {
  EXPECT_EQ(exponentialBuckets(1, 2, 4), (std::vector<double>{1, 2, 4, 8}));
  auto lat = latencyBuckets();
  EXPECT_DOUBLE_EQ(lat.front(), 0.0001);
  EXPECT_GT(lat.back(), 10.0);
}

TEST(Metrics, ConcurrentUpdatesAreNotLost) {
  Registry r;
  auto& c = r.counter("mesh_c_total", "c");
  auto& h = r.histogram("mesh_h", "h", {1});
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t) {
    ts.emplace_back([&] {
      for (int i = 0; i < 10000; ++i) {
        c.inc();
        h.observe(0.5);
      }
    });
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(c.value(), 40000u);
  EXPECT_EQ(h.count(), 40000u);
  EXPECT_DOUBLE_EQ(h.sum(), 20000.0);
}

TEST(MetricsDeathTest, ReRegisteringWithAnotherTypeIsABug) {
  Registry r;
  r.counter("mesh_dup", "d");
  EXPECT_DEATH(r.gauge("mesh_dup", "d"), "another type");
}

TEST(MetricsDeathTest, InvalidNamesAreABug) {
  Registry r;
  EXPECT_DEATH(r.counter("bad-name", "d"), "invalid metric name");
  EXPECT_DEATH(r.counter("ok_name", "d", {{"bad-label", "v"}}), "invalid label name");
}

}  // namespace
}  // namespace mesh::metrics
