#include "common/asio_event_loop.h"

#include <unordered_map>

#include "common/asio.h"

namespace mesh {

namespace asio = boost::asio;

struct AsioEventLoop::Impl {
  explicit Impl(asio::io_context& i) : io(i) {}
  asio::io_context& io;
  // One steady_timer a pending callback. The map owns them; a fired or cancelled timer leaves it.
  std::unordered_map<TimerId, std::unique_ptr<asio::steady_timer>> timers;
  TimerId nextId = 1;
};

AsioEventLoop::AsioEventLoop(asio::io_context& io) : impl_(std::make_shared<Impl>(io)) {}

AsioEventLoop::~AsioEventLoop() {
  for (auto& [id, t] : impl_->timers) t->cancel();
  impl_->timers.clear();
}

TimePoint AsioEventLoop::now() const { return std::chrono::steady_clock::now(); }
WallTime AsioEventLoop::wallNow() const { return std::chrono::system_clock::now(); }

EventLoop::TimerId AsioEventLoop::runAt(TimePoint at, std::function<void()> fn) {
  const TimerId id = impl_->nextId++;
  auto timer = std::make_unique<asio::steady_timer>(impl_->io, at);
  // The handler holds the Impl weakly: a loop destroyed with timers pending runs none of them.
  timer->async_wait([weak = std::weak_ptr<Impl>(impl_), id, fn = std::move(fn)](
                        const boost::system::error_code& ec) {
    if (ec) return;
    auto impl = weak.lock();
    if (!impl) return;
    auto it = impl->timers.find(id);
    if (it == impl->timers.end()) return;  // cancelled after it had already fired
    impl->timers.erase(it);
    fn();
  });
  impl_->timers.emplace(id, std::move(timer));
  return id;
}

bool AsioEventLoop::cancel(TimerId id) {
  auto it = impl_->timers.find(id);
  if (it == impl_->timers.end()) return false;
  it->second->cancel();
  impl_->timers.erase(it);
  return true;
}

asio::io_context& AsioEventLoop::context() { return impl_->io; }
std::size_t AsioEventLoop::pendingTimers() const { return impl_->timers.size(); }

}  // namespace mesh
