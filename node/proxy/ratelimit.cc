#include "node/proxy/ratelimit.h"

#include <algorithm>
#include <cmath>

#include "node/policy/validate.h"
#include "node/proxy/routing_schema.h"
#include "schemas/record_io.h"

namespace mesh::proxy {

void TokenBucket::refill(SteadyTime now) {
  if (now <= last_) return;
  const double dt = std::chrono::duration<double>(now - last_).count();
  tokens_ = std::min(capacity_, tokens_ + dt * rate_);
  last_ = now;
}

bool TokenBucket::take(SteadyTime now, std::chrono::milliseconds& wait) {
  refill(now);
  if (tokens_ >= 1.0) {
    tokens_ -= 1.0;
    return true;
  }
  const double seconds = rate_ > 0 ? (1.0 - tokens_) / rate_ : 3600.0;
  // (less a hair: the float sum of refills must not turn 1 ms into 2)
  wait = std::chrono::milliseconds(static_cast<std::int64_t>(std::ceil(seconds * 1000.0 - 1e-6)));
  return false;
}

bool TokenBucket::full(SteadyTime now) const {
  const double dt = now > last_ ? std::chrono::duration<double>(now - last_).count() : 0.0;
  return tokens_ + dt * rate_ >= capacity_;
}

void TokenBucket::setRate(double perSecond, double capacity, SteadyTime now) {
  refill(now);  // what accrued so far, at the old rate
  rate_ = perSecond;
  capacity_ = capacity;
  tokens_ = std::min(tokens_, capacity_);
}

const char* keyByName(RateLimitRule::KeyBy k) {
  switch (k) {
    case RateLimitRule::KeyBy::route:
      return "route";
    case RateLimitRule::KeyBy::service:
      return "service";
    case RateLimitRule::KeyBy::sourceIdentity:
      return "source_identity";
    case RateLimitRule::KeyBy::header:
      return "header";
  }
  return "?";
}

bool RateLimiter::take(std::string_view key, SteadyTime now, std::chrono::milliseconds& wait) {
  seen_.fetch_add(1, std::memory_order_relaxed);
  std::lock_guard lock(mu_);
  auto it = buckets_.find(key);
  if (it == buckets_.end()) {
    if (buckets_.size() >= kMaxKeys) {
      std::erase_if(buckets_, [&](const auto& kv) { return kv.second.full(now); });
      if (buckets_.size() >= kMaxKeys) {
        // None full: a flood of keys. Half go (their clients start with a full bucket).
        std::size_t n = 0;
        std::erase_if(buckets_, [&](const auto&) { return n++ % 2 == 0; });
      }
    }
    it = buckets_.emplace(std::string(key), TokenBucket(capacity(share()), rule_.perSecond() * share(), now)).first;
  }
  return it->second.take(now, wait);
}

void RateLimiter::setShare(double s, SteadyTime now) {
  s = std::clamp(s, 1e-6, 1.0);
  share_.store(s, std::memory_order_relaxed);
  std::lock_guard lock(mu_);
  for (auto& [k, b] : buckets_) b.setRate(rule_.perSecond() * s, capacity(s), now);
}

double RateLimiter::capacity(double share) const {
  // A mesh-wide rule's burst is shared like its rate (at least one token, or nothing would pass).
  const double burst = rule_.burst ? rule_.burst : rule_.requestsPerUnit;
  return std::max(1.0, burst * share);
}

std::size_t RateLimiter::keys() const {
  std::lock_guard lock(mu_);
  return buckets_.size();
}

std::optional<RateLimitTable::Refusal> RateLimitTable::check(const h1::Head& req, std::string_view svc,
                                                             std::string_view identity, SteadyTime now) const {
  for (std::size_t i = 0; i < rules.size(); ++i) {
    const auto& rule = rules[i];
    if (!rule.matches.empty() &&
        std::none_of(rule.matches.begin(), rule.matches.end(), [&](const RouteMatch& m) { return m.matches(req); })) {
      continue;
    }
    std::string_view key;
    switch (rule.keyBy) {
      case RateLimitRule::KeyBy::route:
        break;
      case RateLimitRule::KeyBy::service:
        key = svc;
        break;
      case RateLimitRule::KeyBy::sourceIdentity:
        key = identity;
        break;
      case RateLimitRule::KeyBy::header: {
        auto v = req.find(rule.header);
        if (!v) continue;  // no value, no bucket: this rule does not limit the request
        key = *v;
        break;
      }
    }
    std::chrono::milliseconds wait{0};
    if (!limiters[i]->take(key, now, wait)) return Refusal{&rule, wait};
  }
  return std::nullopt;
}

Result<std::shared_ptr<const RateLimitTable>> compileRateLimit(std::string_view name, std::uint64_t version,
                                                                std::string_view body, const RateLimitTable* previous) {
  auto table = std::make_shared<RateLimitTable>();
  table->document = "RateLimit/" + std::string(name);
  table->version = version;
  auto r = schema::readRecord<schema::RateLimit>(
      body, "RateLimit body", errc::malformed, policy::kMaxBodyWords,
      [&](schema::RateLimit::Reader rl) -> Result<void> {
        table->service = rl.getService().cStr();
        std::size_t index = 0;
        for (auto rule : rl.getRules()) {
          RateLimitRule out;
          out.name = rule.getName().size() ? rule.getName().cStr() : "#" + std::to_string(index);
          ++index;
          for (auto m : rule.getMatch()) {
            auto match = compileHttpMatch(m);
            if (!match) return match.error();
            out.matches.push_back(std::move(*match));
          }
          switch (rule.getKeyBy()) {
            case schema::RateLimitRule::KeyBy::ROUTE:
              out.keyBy = RateLimitRule::KeyBy::route;
              break;
            case schema::RateLimitRule::KeyBy::SERVICE:
              out.keyBy = RateLimitRule::KeyBy::service;
              break;
            case schema::RateLimitRule::KeyBy::SOURCE_IDENTITY:
              out.keyBy = RateLimitRule::KeyBy::sourceIdentity;
              break;
            case schema::RateLimitRule::KeyBy::HEADER:
              out.keyBy = RateLimitRule::KeyBy::header;
              break;
          }
          out.header = rule.getHeader().cStr();
          std::transform(out.header.begin(), out.header.end(), out.header.begin(),
                         [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
          out.requestsPerUnit = rule.getRequestsPerUnit();
          switch (rule.getUnit()) {
            case schema::RateLimitRule::Unit::SECOND:
              out.unit = std::chrono::seconds(1);
              break;
            case schema::RateLimitRule::Unit::MINUTE:
              out.unit = std::chrono::seconds(60);
              break;
            case schema::RateLimitRule::Unit::HOUR:
              out.unit = std::chrono::seconds(3600);
              break;
          }
          out.burst = rule.getBurst();
          out.mesh = rule.getScope() == schema::RateLimitRule::Scope::MESH;
          if (out.requestsPerUnit == 0) return Error(errc::malformed, "rule " + out.name + ": requestsPerUnit is 0");
          table->rules.push_back(std::move(out));
        }
        return {};
      });
  if (!r) return r.error();
  const bool keep = previous && previous->version == version && previous->limiters.size() == table->rules.size();
  for (std::size_t i = 0; i < table->rules.size(); ++i) {
    table->limiters.push_back(keep ? previous->limiters[i] : std::make_shared<RateLimiter>(table->rules[i]));
  }
  return std::shared_ptr<const RateLimitTable>(std::move(table));
}

}  // namespace mesh::proxy
