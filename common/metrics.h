#pragma once
// A small metrics registry that renders the Prometheus text exposition format (version 0.0.4).
// Every module registers its series here once (at construction) and keeps the returned
// reference; updates are then lock-free atomics, cheap enough for the request path. Rendering
// (a scrape of /metrics) takes the registry lock and reads the atomics.
//
// Names follow mesh_<module>_<what>_<unit> (CONVENTIONS.md); counters end in _total.

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace mesh::metrics {

// Label pairs of one series, e.g. {{"method", "GET"}, {"code", "200"}}.
using Labels = std::vector<std::pair<std::string, std::string>>;

class Counter {
 public:
  void inc(std::uint64_t n = 1) { v_.fetch_add(n, std::memory_order_relaxed); }
  std::uint64_t value() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::uint64_t> v_{0};
};

class Gauge {
 public:
  void set(double v) { v_.store(v, std::memory_order_relaxed); }
  void inc(double d = 1) { v_.fetch_add(d, std::memory_order_relaxed); }
  void dec(double d = 1) { v_.fetch_sub(d, std::memory_order_relaxed); }
  double value() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> v_{0};
};

class Histogram {
 public:
  // bounds: the upper bounds of the buckets, strictly increasing; +Inf is implicit.
  explicit Histogram(std::vector<double> bounds);
  void observe(double v);
  const std::vector<double>& bounds() const { return bounds_; }
  // Non-cumulative count of bucket i (i == bounds().size() is the +Inf bucket).
  std::uint64_t bucketCount(std::size_t i) const { return counts_[i].load(std::memory_order_relaxed); }
  std::uint64_t count() const { return count_.load(std::memory_order_relaxed); }
  double sum() const { return sum_.load(std::memory_order_relaxed); }

 private:
  std::vector<double> bounds_;
  std::unique_ptr<std::atomic<std::uint64_t>[]> counts_;
  std::atomic<std::uint64_t> count_{0};
  std::atomic<double> sum_{0};
};

// Bucket bounds start, start*factor, ... (count of them).
std::vector<double> exponentialBuckets(double start, double factor, std::size_t count);
// Seconds from 100 µs to about 13 s: request and probe latencies.
std::vector<double> latencyBuckets();

class Registry {
 public:
  Registry() = default;
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  // The process-wide registry that /metrics renders.
  static Registry& global();

  // Returns the series of that name and labels, creating it on first use. Registering a name
  // again with another type, or a histogram with other bounds, is a programming error (checked).
  Counter& counter(std::string_view name, std::string_view help, const Labels& labels = {});
  Gauge& gauge(std::string_view name, std::string_view help, const Labels& labels = {});
  Histogram& histogram(std::string_view name, std::string_view help, std::vector<double> bounds,
                       const Labels& labels = {});
  // Series whose value is read at scrape time (process RSS, queue lengths owned elsewhere).
  // fn is called under the registry lock, from the scraping thread: it must be thread-safe
  // and must not touch the registry.
  void gaugeFn(std::string_view name, std::string_view help, const Labels& labels,
               std::function<double()> fn);
  void counterFn(std::string_view name, std::string_view help, const Labels& labels,
                 std::function<double()> fn);

  // The whole registry in Prometheus text format, families in name order.
  std::string render() const;

 private:
  enum class Type { counter, gauge, histogram };
  struct Series {
    Labels labels;
    std::unique_ptr<Counter> counter;
    std::unique_ptr<Gauge> gauge;
    std::unique_ptr<Histogram> histogram;
    std::function<double()> fn;
  };
  struct Family {
    Type type;
    std::string help;
    std::map<std::string, Series> series;  // keyed by rendered labels
  };
  Series& seriesFor(std::string_view name, std::string_view help, Type type, const Labels& labels);

  mutable std::mutex mu_;
  std::map<std::string, Family, std::less<>> families_;
};

// Text-format helpers (exposed for tests).
std::string formatValue(double v);
std::string escapeLabelValue(std::string_view v);
bool validMetricName(std::string_view name);
bool validLabelName(std::string_view name);

}  // namespace mesh::metrics
