#include "node/health/check.h"

#include "common/errc.h"

namespace mesh::health {

struct Check::Impl : std::enable_shared_from_this<Check::Impl> {
  Impl(CheckDef d, EventLoop& l, Prober* p, OnChange c) : def(std::move(d)), loop(l), prober(p), onChange(std::move(c)) {
    status.id = def.id;
    status.health = def.initial;
    status.output = "not checked yet";
    status.lastChange = loop.now();
  }

  CheckDef def;
  EventLoop& loop;
  Prober* prober;
  OnChange onChange;
  CheckStatus status;
  EventLoop::TimerId timer = 0;
  bool running = false;
  bool seenResult = false;
  std::uint64_t generation = 0;  // a probe of an older start() must not land after stop()

  void set(Health h, std::string output) {
    status.output = std::move(output);
    if (h == status.health) return;
    status.health = h;
    status.lastChange = loop.now();
    if (onChange) onChange(status);
  }

  // The state machine: see the header.
  void apply(const ProbeResult& r) {
    ++status.runs;
    status.lastRun = loop.now();
    const bool first = !seenResult;
    seenResult = true;
    switch (r.result) {
      case Health::passing:
        ++status.consecutiveSuccesses;
        status.consecutiveFailures = 0;
        if (first || status.health == Health::warning || status.consecutiveSuccesses >= def.successBeforePassing) {
          set(Health::passing, r.output);
        } else {
          status.output = r.output;
        }
        break;
      case Health::warning:
        // The service says it is degraded: not a failure, not a success.
        status.consecutiveSuccesses = 0;
        status.consecutiveFailures = 0;
        set(Health::warning, r.output);
        break;
      case Health::critical:
        ++status.consecutiveFailures;
        status.consecutiveSuccesses = 0;
        if (first || status.consecutiveFailures >= def.failuresBeforeCritical) {
          set(Health::critical, r.output);
        } else if (status.consecutiveFailures >= def.failuresBeforeWarning && status.health == Health::passing) {
          set(Health::warning, r.output);
        } else {
          status.output = r.output;
        }
        break;
    }
  }

  void runProbe() {
    if (!running) return;
    const std::uint64_t gen = generation;
    prober->probe(def, [w = std::weak_ptr<Impl>(shared_from_this()), gen](ProbeResult r) {
      auto self = w.lock();
      if (!self || !self->running || self->generation != gen) return;
      self->apply(r);
      self->timer = self->loop.runAfter(self->def.interval, [w] {
        if (auto s = w.lock()) s->runProbe();
      });
    });
  }

  void armTtl() {
    loop.cancel(timer);
    timer = loop.runAfter(def.ttl, [w = std::weak_ptr<Impl>(shared_from_this())] {
      auto self = w.lock();
      if (!self || !self->running) return;
      ++self->status.runs;
      self->status.lastRun = self->loop.now();
      self->set(Health::critical, "TTL of " + std::to_string(std::chrono::duration_cast<std::chrono::seconds>(self->def.ttl).count()) +
                                      "s expired without an update");
    });
  }
};

Check::Check(CheckDef def, EventLoop& loop, Prober* prober, OnChange onChange)
    : impl_(std::make_shared<Impl>(std::move(def), loop, prober, std::move(onChange))) {}

Check::~Check() { stop(); }

void Check::start() {
  Impl& m = *impl_;
  if (m.running) return;
  m.running = true;
  ++m.generation;
  if (m.def.kind == CheckDef::Kind::ttl) {
    m.armTtl();
  } else if (m.prober) {
    // The first probe right away, on the loop (not inside the caller).
    m.timer = m.loop.runAfter(Duration::zero(), [w = std::weak_ptr<Impl>(impl_)] {
      if (auto s = w.lock()) s->runProbe();
    });
  }
}

void Check::stop() {
  Impl& m = *impl_;
  m.running = false;
  ++m.generation;
  m.loop.cancel(m.timer);
  m.timer = 0;
}

Result<void> Check::update(Health health, std::string output) {
  Impl& m = *impl_;
  if (m.def.kind != CheckDef::Kind::ttl) {
    return Error(errc::invalid_argument, "check " + m.def.id + " is a " + catalog::checkKindName(m.def.kind) +
                                             " check: only TTL checks are updated through the API");
  }
  ++m.status.runs;
  m.status.lastRun = m.loop.now();
  m.seenResult = true;
  m.set(health, std::move(output));
  if (m.running) m.armTtl();
  return {};
}

const CheckStatus& Check::status() const { return impl_->status; }
const CheckDef& Check::definition() const { return impl_->def; }

}  // namespace mesh::health
