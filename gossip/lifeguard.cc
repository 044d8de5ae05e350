#include "gossip/lifeguard.h"

#include <algorithm>
#include <cmath>

namespace mesh::gossip {

Duration suspicionTimeout(int suspicionMult, std::size_t n, Duration probeInterval) {
  const double nodeScale = std::max(1.0, std::log10(std::max(1.0, static_cast<double>(n))));
  // Same rounding as memberlist: the scale to whole milliseconds of a 1000x factor.
  const auto scaled = static_cast<std::int64_t>(nodeScale * 1000);
  return Duration(suspicionMult * scaled * probeInterval.count() / 1000);
}

int retransmitLimit(int retransmitMult, std::size_t n) {
  const double nodeScale = std::ceil(std::log10(static_cast<double>(n) + 1));
  return retransmitMult * static_cast<int>(nodeScale);
}

Duration pushPullScale(Duration interval, std::size_t n) {
  constexpr std::size_t kThreshold = 32;
  if (n <= kThreshold) return interval;
  const double mult = std::ceil(std::log2(static_cast<double>(n)) - std::log2(double(kThreshold))) + 1.0;
  return interval * static_cast<std::int64_t>(mult);
}

Duration remainingSuspicionTime(int confirmations, int k, Duration elapsed, Duration min, Duration max) {
  const double frac = std::log(confirmations + 1.0) / std::log(k + 1.0);
  const double maxS = std::chrono::duration<double>(max).count();
  const double minS = std::chrono::duration<double>(min).count();
  const double raw = maxS - frac * (maxS - minS);
  Duration timeout = std::chrono::milliseconds(static_cast<std::int64_t>(std::floor(1000.0 * raw)));
  if (timeout < min) timeout = min;
  return timeout - elapsed;
}

bool Awareness::applyDelta(int delta) {
  const int before = score_;
  score_ = std::clamp(score_ + delta, 0, max_ - 1);
  return score_ != before;
}

Suspicion::Suspicion(std::string from, int k, Duration min, Duration max, TimePoint start)
    : k_(k), min_(min), max_(max), start_(start) {
  from_.insert(std::move(from));
  // With no confirmations to wait for, go straight to the minimum.
  deadline_ = start + (k < 1 ? min : max);
}

bool Suspicion::confirm(const std::string& from, TimePoint now) {
  if (n_ >= k_) return false;
  if (!from_.insert(from).second) return false;
  ++n_;
  const Duration remaining = remainingSuspicionTime(n_, k_, now - start_, min_, max_);
  deadline_ = now + std::max(remaining, Duration::zero());
  return true;
}

}  // namespace mesh::gossip
