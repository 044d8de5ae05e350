#include "common/signals.h"

#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <thread>

namespace mesh::signals {
namespace {

sigset_t stopSet() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  return set;
}

}  // namespace

void blockStopSignals() {
  ::signal(SIGPIPE, SIG_IGN);
  sigset_t set = stopSet();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

struct StopSignalWatcher::Impl {
  std::function<void(int)> onSignal;
  std::atomic<bool> stopping{false};
  std::thread thread;
};

StopSignalWatcher::StopSignalWatcher(std::function<void(int)> onSignal)
    : impl_(std::make_unique<Impl>()) {
  impl_->onSignal = std::move(onSignal);
  // The new thread inherits our mask: block its signals here, before it exists, so that none can
  // arrive in the window before it blocks them itself. SIGUSR2 is only our own wake-up call.
  sigset_t set = stopSet();
  sigaddset(&set, SIGUSR2);
  sigset_t old;
  pthread_sigmask(SIG_BLOCK, &set, &old);
  impl_->thread = std::thread([impl = impl_.get(), set] {
    while (!impl->stopping.load()) {
      int sig = 0;
      if (sigwait(&set, &sig) != 0) continue;
      if (sig == SIGUSR2) continue;  // re-check `stopping`
      impl->onSignal(sig);
    }
  });
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
}

StopSignalWatcher::~StopSignalWatcher() {
  impl_->stopping.store(true);
  pthread_kill(impl_->thread.native_handle(), SIGUSR2);
  impl_->thread.join();
}

}  // namespace mesh::signals
