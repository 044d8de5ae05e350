#include "gossip/mem_transport.h"

#include <deque>
#include <optional>

#include "gossip/errc.h"

namespace mesh::gossip {

// Both ends of an in-memory stream share one Pipe: two directional byte queues.
struct Pipe {
  struct Side {
    std::deque<std::string> chunks;
    bool closed = false;  // the writer closed: EOF once drained
    std::function<void(Result<std::string>)> reader;
  };
  Side side[2];  // side[i]: bytes travelling to end i
  bool broken = false;
};

class MemStream final : public Stream {
 public:
  MemStream(MemNetwork& net, std::shared_ptr<Pipe> pipe, int end, NodeAddress self, NodeAddress remote)
      : net_(net), alive_(net.alive_), pipe_(std::move(pipe)), end_(end), self_(std::move(self)),
        remote_(std::move(remote)) {}
  ~MemStream() override { close(); }

  void write(std::string data, std::function<void(Result<void>)> cb) override {
    if (!*alive_) return;  // the network is gone: nothing will ever run again
    if (closed_ || pipe_->broken) {
      net_.loop_.post([cb = std::move(cb)] { cb(Error(errc::unreachable, "stream closed")); });
      return;
    }
    net_.totals_.streamBytesSent += data.size();
    net_.perNode_[self_].streamBytesSent += data.size();
    const int to = 1 - end_;
    // Delivery keeps order: every chunk of a stream takes the same fixed delay.
    if (!delay_) delay_ = net_.delay();
    std::weak_ptr<bool> alive = alive_;
    net_.loop_.runAfter(*delay_, [alive, pipe = pipe_, to, data = std::move(data)]() mutable {
      if (alive.expired() || !*alive.lock() || pipe->broken) return;
      auto& s = pipe->side[to];
      s.chunks.push_back(std::move(data));
      pump(s);
    });
    net_.loop_.post([cb = std::move(cb)] { cb({}); });
  }

  void read(std::function<void(Result<std::string>)> cb) override {
    if (!*alive_) return;
    if (closed_) {
      net_.loop_.post([cb = std::move(cb)] { cb(Error(errc::unreachable, "stream closed")); });
      return;
    }
    auto& s = pipe_->side[end_];
    s.reader = std::move(cb);
    pump(s);
  }

  void close() override {
    if (closed_ || !*alive_) return;
    closed_ = true;
    auto& mine = pipe_->side[end_];
    if (mine.reader) {
      auto r = std::move(mine.reader);
      mine.reader = nullptr;
      net_.loop_.post([r = std::move(r)] { r(Error(errc::unreachable, "stream closed")); });
    }
    const int to = 1 - end_;
    std::weak_ptr<bool> alive = alive_;
    net_.loop_.runAfter(delay_.value_or(Duration::zero()), [alive, pipe = pipe_, to] {
      if (alive.expired() || !*alive.lock()) return;
      pipe->side[to].closed = true;
      pump(pipe->side[to]);
    });
  }

  NodeAddress remote() const override { return remote_; }

  // Hands queued bytes (or EOF) to a waiting reader, from a fresh callback.
  static void pump(Pipe::Side& s) {
    if (!s.reader) return;
    if (!s.chunks.empty()) {
      auto r = std::move(s.reader);
      s.reader = nullptr;
      std::string data = std::move(s.chunks.front());
      s.chunks.pop_front();
      r(std::move(data));
    } else if (s.closed) {
      auto r = std::move(s.reader);
      s.reader = nullptr;
      r(std::string{});
    }
  }

 private:
  MemNetwork& net_;
  std::shared_ptr<bool> alive_;
  std::shared_ptr<Pipe> pipe_;
  int end_;
  NodeAddress self_, remote_;
  bool closed_ = false;
  std::optional<Duration> delay_;
};

MemNetwork::MemNetwork(EventLoop& loop, std::uint64_t seed) : loop_(loop), rng_(seed) {}

MemNetwork::~MemNetwork() {
  *alive_ = false;
  for (auto& [addr, t] : nodes_) t->net_ = nullptr;
}

std::unique_ptr<MemTransport> MemNetwork::attach(const NodeAddress& addr) {
  auto t = std::unique_ptr<MemTransport>(new MemTransport(*this, addr));
  nodes_[addr] = t.get();
  return t;
}

void MemNetwork::detach(const NodeAddress& addr, MemTransport* t) {
  auto it = nodes_.find(addr);
  if (it != nodes_.end() && it->second == t) nodes_.erase(it);
}

Duration MemNetwork::delay() {
  if (maxDelay_ <= minDelay_) return minDelay_;
  std::uniform_int_distribution<std::int64_t> d(minDelay_.count(), maxDelay_.count());
  return Duration(d(rng_));
}

bool MemNetwork::lose() {
  if (loss_ <= 0) return false;
  return std::uniform_real_distribution<double>(0, 1)(rng_) < loss_;
}

void MemNetwork::block(const NodeAddress& a, const NodeAddress& b) {
  blocked_.emplace(a.toString(), b.toString());
  blocked_.emplace(b.toString(), a.toString());
}

void MemNetwork::unblock(const NodeAddress& a, const NodeAddress& b) {
  blocked_.erase({a.toString(), b.toString()});
  blocked_.erase({b.toString(), a.toString()});
}

void MemNetwork::partition(const std::vector<NodeAddress>& side) {
  partitionSide_.clear();
  for (const auto& a : side) partitionSide_.insert(a.toString());
}

void MemNetwork::heal() {
  blocked_.clear();
  partitionSide_.clear();
}

bool MemNetwork::linked(const NodeAddress& a, const NodeAddress& b) const {
  const std::string sa = a.toString(), sb = b.toString();
  if (!partitionSide_.empty() && partitionSide_.count(sa) != partitionSide_.count(sb)) return false;
  return blocked_.count({sa, sb}) == 0;
}

MemNetwork::Stats MemNetwork::statsFor(const NodeAddress& a) const {
  auto it = perNode_.find(a);
  return it == perNode_.end() ? Stats{} : it->second;
}

void MemNetwork::deliverPacket(const NodeAddress& from, const NodeAddress& to, std::string data) {
  totals_.packetsSent++;
  totals_.packetBytesSent += data.size();
  auto& mine = perNode_[from];
  mine.packetsSent++;
  mine.packetBytesSent += data.size();
  if (!linked(from, to) || lose()) {
    totals_.packetsDropped++;
    return;
  }
  std::weak_ptr<bool> alive = alive_;
  loop_.runAfter(delay(), [this, alive, from, to, data = std::move(data)]() mutable {
    if (alive.expired() || !*alive.lock()) return;
    auto it = nodes_.find(to);
    if (it == nodes_.end() || it->second->down_ || !it->second->onPacket_) return;
    it->second->onPacket_(from, std::move(data), loop_.now());
  });
}

MemTransport::~MemTransport() { shutdown(); }

void MemTransport::setHandlers(PacketHandler onPacket, StreamHandler onStream) {
  onPacket_ = std::move(onPacket);
  onStream_ = std::move(onStream);
}

Result<void> MemTransport::sendPacket(const NodeAddress& to, std::string_view data) {
  if (down_ || !net_) return Error(errc::shutdown, "transport is shut down");
  net_->deliverPacket(addr_, to, std::string(data));
  return {};
}

void MemTransport::dial(const NodeAddress& to, Duration timeout, DialCallback cb) {
  if (down_ || !net_) {
    cb(Error(errc::shutdown, "transport is shut down"));
    return;
  }
  MemNetwork& net = *net_;
  auto it = net.nodes_.find(to);
  if (!net.linked(addr_, to)) {
    // A cut link looks like a black hole: the connect times out.
    net.loop_.runAfter(timeout, [cb = std::move(cb), to] {
      cb(Error(errc::timeout, "dial " + to.toString() + ": i/o timeout"));
    });
    return;
  }
  if (it == net.nodes_.end() || it->second->down_ || !it->second->onStream_) {
    net.loop_.post([cb = std::move(cb), to] {
      cb(Error(errc::unreachable, "dial " + to.toString() + ": connection refused"));
    });
    return;
  }
  net.totals_.streamsOpened++;
  net.perNode_[addr_].streamsOpened++;
  auto pipe = std::make_shared<Pipe>();
  auto client = std::make_unique<MemStream>(net, pipe, 0, addr_, to);
  auto server = std::make_unique<MemStream>(net, pipe, 1, to, addr_);
  std::weak_ptr<bool> alive = net.alive_;
  const Duration d = net.delay();
  // std::function wants copyable callables: the streams ride in shared holders.
  auto serverHolder = std::make_shared<std::unique_ptr<MemStream>>(std::move(server));
  auto clientHolder = std::make_shared<std::unique_ptr<MemStream>>(std::move(client));
  net.loop_.runAfter(d, [alive, &net, to, serverHolder] {
    if (alive.expired() || !*alive.lock()) return;
    auto it = net.nodes_.find(to);
    // A target gone meanwhile drops its end, which the client sees as EOF on read.
    if (it == net.nodes_.end() || it->second->down_) return;
    it->second->onStream_(std::move(*serverHolder));
  });
  net.loop_.runAfter(d, [cb = std::move(cb), clientHolder] { cb(std::unique_ptr<Stream>(std::move(*clientHolder))); });
}

void MemTransport::shutdown() {
  if (down_) return;
  down_ = true;
  if (net_) net_->detach(addr_, this);
}

}  // namespace mesh::gossip
