#include "common/metrics.h"

#include <algorithm>
#include <charconv>
#include <cmath>

#include "common/assert.h"

namespace mesh::metrics {
namespace {

bool isAlpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool isDigit(char c) { return c >= '0' && c <= '9'; }

// {a="1",b="2"}, or "" without labels. Also the key that identifies a series in its family.
std::string renderLabels(const Labels& labels, std::string_view extraName = {},
                         std::string_view extraValue = {}) {
  if (labels.empty() && extraName.empty()) return {};
  std::string out = "{";
  bool first = true;
  for (const auto& [k, v] : labels) {
    if (!first) out += ',';
    first = false;
    out += k;
    out += "=\"";
    out += escapeLabelValue(v);
    out += '"';
  }
  if (!extraName.empty()) {
    if (!first) out += ',';
    out += extraName;
    out += "=\"";
    out += extraValue;
    out += '"';
  }
  out += '}';
  return out;
}

// HELP text escapes only backslash and newline (exposition format spec).
std::string escapeHelp(std::string_view help) {
  std::string out;
  for (char c : help) {
    if (c == '\\') out += "\\\\";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

const char* typeName(int t) {
  switch (t) {
    case 0: return "counter";
    case 1: return "gauge";
    default: return "histogram";
  }
}

}  // namespace

bool validMetricName(std::string_view name) {
  if (name.empty()) return false;
  for (std::size_t i = 0; i < name.size(); ++i) {
    char c = name[i];
    bool ok = isAlpha(c) || c == '_' || c == ':' || (i > 0 && isDigit(c));
    if (!ok) return false;
  }
  return true;
}

bool validLabelName(std::string_view name) {
  if (name.empty() || name.starts_with("__")) return false;
  for (std::size_t i = 0; i < name.size(); ++i) {
    char c = name[i];
    if (!(isAlpha(c) || c == '_' || (i > 0 && isDigit(c)))) return false;
  }
  return true;
}

std::string escapeLabelValue(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

std::string formatValue(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  MESH_CHECK(ec == std::errc(), "to_chars of a double cannot overflow 64 bytes");
  return std::string(buf, end);
}

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)),
      counts_(std::make_unique<std::atomic<std::uint64_t>[]>(bounds_.size() + 1)) {
  MESH_CHECK(std::is_sorted(bounds_.begin(), bounds_.end()) &&
                 std::adjacent_find(bounds_.begin(), bounds_.end()) == bounds_.end(),
             "histogram bounds must be strictly increasing");
  for (std::size_t i = 0; i <= bounds_.size(); ++i) counts_[i].store(0);
}

void Histogram::observe(double v) {
  // le is inclusive: a value equal to a bound belongs to that bound's bucket.
  std::size_t i = std::lower_bound(bounds_.begin(), bounds_.end(), v) - bounds_.begin();
  counts_[i].fetch_add(1, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(v, std::memory_order_relaxed);
}

std::vector<double> exponentialBuckets(double start, double factor, std::size_t count) {
  MESH_CHECK(start > 0 && factor > 1 && count > 0, "bad exponential bucket parameters");
  std::vector<double> out;
  out.reserve(count);
  double b = start;
  for (std::size_t i = 0; i < count; ++i, b *= factor) out.push_back(b);
  return out;
}

std::vector<double> latencyBuckets() { return exponentialBuckets(0.0001, 2.0, 18); }

Registry& Registry::global() {
  static Registry r;
  return r;
}

Registry::Series& Registry::seriesFor(std::string_view name, std::string_view help, Type type,
                                      const Labels& labels) {
  MESH_CHECK(validMetricName(name), "invalid metric name");
  for (const auto& [k, v] : labels) {
    MESH_CHECK(validLabelName(k), "invalid label name");
    (void)v;
  }
  auto it = families_.find(name);
  if (it == families_.end()) {
    it = families_.emplace(std::string(name), Family{type, std::string(help), {}}).first;
  }
  MESH_CHECK(it->second.type == type, "metric registered again with another type");
  return it->second.series[renderLabels(labels)];
}

Counter& Registry::counter(std::string_view name, std::string_view help, const Labels& labels) {
  std::lock_guard lock(mu_);
  Series& s = seriesFor(name, help, Type::counter, labels);
  MESH_CHECK(!s.fn, "counter registered again without its callback");
  if (!s.counter) {
    s.labels = labels;
    s.counter = std::make_unique<Counter>();
  }
  return *s.counter;
}

Gauge& Registry::gauge(std::string_view name, std::string_view help, const Labels& labels) {
  std::lock_guard lock(mu_);
  Series& s = seriesFor(name, help, Type::gauge, labels);
  MESH_CHECK(!s.fn, "gauge registered again without its callback");
  if (!s.gauge) {
    s.labels = labels;
    s.gauge = std::make_unique<Gauge>();
  }
  return *s.gauge;
}

Histogram& Registry::histogram(std::string_view name, std::string_view help,
                               std::vector<double> bounds, const Labels& labels) {
  std::lock_guard lock(mu_);
  Series& s = seriesFor(name, help, Type::histogram, labels);
  if (!s.histogram) {
    s.labels = labels;
    s.histogram = std::make_unique<Histogram>(std::move(bounds));
  } else {
    MESH_CHECK(s.histogram->bounds() == bounds, "histogram registered again with other bounds");
  }
  return *s.histogram;
}

void Registry::gaugeFn(std::string_view name, std::string_view help, const Labels& labels,
                       std::function<double()> fn) {
  std::lock_guard lock(mu_);
  Series& s = seriesFor(name, help, Type::gauge, labels);
  MESH_CHECK(!s.gauge, "gauge registered again as a callback");
  s.labels = labels;
  s.fn = std::move(fn);
}

void Registry::counterFn(std::string_view name, std::string_view help, const Labels& labels,
                         std::function<double()> fn) {
  std::lock_guard lock(mu_);
  Series& s = seriesFor(name, help, Type::counter, labels);
  MESH_CHECK(!s.counter, "counter registered again as a callback");
  s.labels = labels;
  s.fn = std::move(fn);
}

std::string Registry::render() const {
  std::lock_guard lock(mu_);
  std::string out;
  out.reserve(families_.size() * 128);
  for (const auto& [name, fam] : families_) {
    out += "# HELP " + name + ' ' + escapeHelp(fam.help) + '\n';
    out += "# TYPE " + name + ' ' + typeName(static_cast<int>(fam.type)) + '\n';
    for (const auto& [key, s] : fam.series) {
      if (s.histogram) {
        const Histogram& h = *s.histogram;
        std::uint64_t cumulative = 0;
        for (std::size_t i = 0; i <= h.bounds().size(); ++i) {
          cumulative += h.bucketCount(i);
          std::string le = i < h.bounds().size() ? formatValue(h.bounds()[i]) : "+Inf";
          out += name + "_bucket" + renderLabels(s.labels, "le", le) + ' ' +
                 std::to_string(cumulative) + '\n';
        }
        // _count is the +Inf bucket: both come from the same reads, so they always agree.
        out += name + "_sum" + key + ' ' + formatValue(h.sum()) + '\n';
        out += name + "_count" + key + ' ' + std::to_string(cumulative) + '\n';
      } else if (s.counter) {
        out += name + key + ' ' + std::to_string(s.counter->value()) + '\n';
      } else if (s.gauge) {
        out += name + key + ' ' + formatValue(s.gauge->value()) + '\n';
      } else if (s.fn) {
        out += name + key + ' ' + formatValue(s.fn()) + '\n';
      }
    }
  }
  return out;
}

}  // namespace mesh::metrics
