#pragma once
// Process signals. A daemon calls blockStopSignals() first thing in main(), before it starts any
// thread, so that SIGTERM and SIGINT are delivered to no thread but the one StopSignalWatcher
// runs; that thread calls the handler as a plain function, where anything may be done (post to
// an event loop, log), unlike in an async signal handler.

#include <functional>
#include <memory>

namespace mesh::signals {

// Ignores SIGPIPE (a peer closing a socket must be an EPIPE error, not a dead process) and
// blocks SIGTERM, SIGINT and SIGHUP in the calling thread and every thread it starts later.
void blockStopSignals();

class StopSignalWatcher {
 public:
  // onSignal(signo) runs on the watcher's own thread, once per signal received.
  explicit StopSignalWatcher(std::function<void(int)> onSignal);
  ~StopSignalWatcher();  // stops and joins the watcher thread
  StopSignalWatcher(const StopSignalWatcher&) = delete;
  StopSignalWatcher& operator=(const StopSignalWatcher&) = delete;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace mesh::signals
