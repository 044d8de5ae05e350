#pragma once
// EventLoop over a Boost.Asio io_context (real time): the control thread's loop in meshd.
// The header names io_context only by declaration, so it stays cheap to include.

#include <memory>

#include "common/event_loop.h"

namespace boost::asio {
class io_context;
}

namespace mesh {

class AsioEventLoop final : public EventLoop {
 public:
  explicit AsioEventLoop(boost::asio::io_context& io);
  ~AsioEventLoop() override;  // cancels every pending timer
  AsioEventLoop(const AsioEventLoop&) = delete;
  AsioEventLoop& operator=(const AsioEventLoop&) = delete;

  TimePoint now() const override;
  WallTime wallNow() const override;
  TimerId runAt(TimePoint at, std::function<void()> fn) override;
  bool cancel(TimerId id) override;

  boost::asio::io_context& context();
  std::size_t pendingTimers() const;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace mesh
