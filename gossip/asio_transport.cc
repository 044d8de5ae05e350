#include "gossip/asio_transport.h"

#include <deque>

#include "common/asio.h"
#include "common/log.h"
#include "gossip/errc.h"

namespace mesh::gossip {

namespace asio = boost::asio;
using asio::ip::tcp;
using asio::ip::udp;

namespace {

// memberlist reads UDP into a 64 KiB buffer and asks for a 2 MiB socket receive buffer, so
// that bursts of gossip are not dropped by the kernel while the loop is busy.
constexpr std::size_t kUdpBuf = 65536;
constexpr int kUdpRecvBuf = 2 * 1024 * 1024;

NodeAddress toNode(const asio::ip::address& a, std::uint16_t port) {
  if (a.is_v4()) {
    auto b = a.to_v4().to_bytes();
    return NodeAddress{std::string(reinterpret_cast<const char*>(b.data()), b.size()), port};
  }
  auto v6 = a.to_v6();
  if (v6.is_v4_mapped()) return toNode(asio::ip::make_address_v4(asio::ip::v4_mapped, v6), port);
  auto b = v6.to_bytes();
  return NodeAddress{std::string(reinterpret_cast<const char*>(b.data()), b.size()), port};
}

asio::ip::address fromNode(const NodeAddress& n) {
  if (n.ip.size() == 4) {
    asio::ip::address_v4::bytes_type b;
    std::copy(n.ip.begin(), n.ip.end(), b.begin());
    return asio::ip::address_v4(b);
  }
  asio::ip::address_v6::bytes_type b;
  std::copy(n.ip.begin(), n.ip.end(), b.begin());
  return asio::ip::address_v6(b);
}

// The socket and write queue live in a shared State that pending handlers hold, so the Stream
// object (owned by a unique_ptr in memberlist) may be dropped at any time.
class AsioStream final : public Stream {
 public:
  explicit AsioStream(tcp::socket s) : st_(std::make_shared<State>(std::move(s))) {
    boost::system::error_code ec;
    auto ep = st_->socket.remote_endpoint(ec);
    if (!ec) remote_ = toNode(ep.address(), ep.port());
    st_->socket.set_option(tcp::no_delay(true), ec);
  }
  ~AsioStream() override { close(); }

  void write(std::string data, std::function<void(Result<void>)> cb) override {
    st_->queue.push_back({std::move(data), std::move(cb)});
    if (st_->queue.size() == 1) writeNext(st_);
  }

  void read(std::function<void(Result<std::string>)> cb) override {
    auto buf = std::make_shared<std::string>(64 * 1024, '\0');
    st_->socket.async_read_some(asio::buffer(*buf), [st = st_, buf, cb = std::move(cb)](
                                                        const boost::system::error_code& ec, std::size_t n) {
      if (ec == asio::error::eof) return cb(std::string{});
      if (ec) return cb(Error(errc::unreachable, ec.message()));
      buf->resize(n);
      cb(std::move(*buf));
    });
  }

  void close() override {
    boost::system::error_code ec;
    st_->socket.shutdown(tcp::socket::shutdown_both, ec);
    st_->socket.close(ec);
  }

  NodeAddress remote() const override { return remote_; }

 private:
  struct Pending {
    std::string data;
    std::function<void(Result<void>)> cb;
  };
  struct State {
    explicit State(tcp::socket s) : socket(std::move(s)) {}
    tcp::socket socket;
    std::deque<Pending> queue;
  };

  static void writeNext(const std::shared_ptr<State>& st) {
    auto& front = st->queue.front();
    asio::async_write(st->socket, asio::buffer(front.data), [st](const boost::system::error_code& ec, std::size_t) {
      auto cb = std::move(st->queue.front().cb);
      st->queue.pop_front();
      if (!st->queue.empty()) writeNext(st);
      cb(ec ? Result<void>(Error(errc::unreachable, ec.message())) : Result<void>());
    });
  }

  std::shared_ptr<State> st_;
  NodeAddress remote_;
};

}  // namespace

struct AsioTransport::Impl : std::enable_shared_from_this<AsioTransport::Impl> {
  explicit Impl(asio::io_context& i) : io(i), udpSocket(i), acceptor(i), retryTimer(i), log(log::get("gossip")) {}
  asio::io_context& io;
  udp::socket udpSocket;
  tcp::acceptor acceptor;
  asio::steady_timer retryTimer;  // an accept that failed is retried after a pause
  log::Throttle acceptWarn;
  NodeAddress local;
  PacketHandler onPacket;
  StreamHandler onStream;
  std::shared_ptr<spdlog::logger> log;
  std::vector<char> rx = std::vector<char>(kUdpBuf);
  udp::endpoint from;
  bool down = false;

  void receive() {
    udpSocket.async_receive_from(asio::buffer(rx), from, [self = shared_from_this()](
                                                             const boost::system::error_code& ec, std::size_t n) {
      if (self->down || ec == asio::error::operation_aborted) return;
      if (!ec && n > 0 && self->onPacket) {
        self->onPacket(toNode(self->from.address(), self->from.port()), std::string(self->rx.data(), n),
                       std::chrono::steady_clock::now());
      }
      self->receive();
    });
  }

  void accept() {
    acceptor.async_accept([self = shared_from_this()](const boost::system::error_code& ec, tcp::socket s) {
      if (self->down || ec == asio::error::operation_aborted) return;
      if (!ec) {
        if (self->onStream) self->onStream(std::make_unique<AsioStream>(std::move(s)));
        self->accept();
        return;
      }
      // Out of descriptors and the like: the pending connection stays queued and the next accept
      // fails at once, so retrying now would spin (and log) as fast as the loop turns.
      std::uint64_t skipped = 0;
      if (self->acceptWarn.allow(std::chrono::steady_clock::now(), skipped))
        self->log->warn("gossip accept failed error={} repeats_not_logged={}", ec.message(), skipped);
      self->retryTimer.expires_after(std::chrono::milliseconds(50));
      self->retryTimer.async_wait([self](const boost::system::error_code& tec) {
        if (self->down || tec == asio::error::operation_aborted) return;
        self->accept();
      });
    });
  }
};

Result<std::unique_ptr<AsioTransport>> AsioTransport::create(asio::io_context& io, const HostPort& bind) {
  auto impl = std::make_shared<Impl>(io);
  boost::system::error_code ec;
  auto ip = asio::ip::make_address(bind.host, ec);
  if (ec) return Error(errc::malformed, "gossip bind " + bind.toString() + ": " + ec.message());
  auto fail = [&](const char* what) {
    return Error(errc::unreachable, "gossip bind " + bind.toString() + ": cannot " + what + ": " + ec.message());
  };
  tcp::endpoint tep(ip, bind.port);
  impl->acceptor.open(tep.protocol(), ec);
  if (ec) return fail("open TCP");
  impl->acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
  impl->acceptor.bind(tep, ec);
  if (ec) return fail("bind TCP");
  impl->acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return fail("listen");
  const std::uint16_t port = impl->acceptor.local_endpoint().port();
  udp::endpoint uep(ip, port);
  impl->udpSocket.open(uep.protocol(), ec);
  if (ec) return fail("open UDP");
  impl->udpSocket.bind(uep, ec);
  if (ec) return fail("bind UDP");
  impl->udpSocket.set_option(asio::socket_base::receive_buffer_size(kUdpRecvBuf), ec);
  impl->udpSocket.non_blocking(true, ec);
  impl->local = toNode(ip, port);
  impl->receive();
  impl->accept();
  return std::unique_ptr<AsioTransport>(new AsioTransport(std::move(impl)));
}

AsioTransport::~AsioTransport() { shutdown(); }

void AsioTransport::setHandlers(PacketHandler onPacket, StreamHandler onStream) {
  impl_->onPacket = std::move(onPacket);
  impl_->onStream = std::move(onStream);
}

Result<void> AsioTransport::sendPacket(const NodeAddress& to, std::string_view data) {
  if (impl_->down) return Error(errc::shutdown, "transport is shut down");
  if (!to.valid()) return Error(errc::malformed, "invalid address " + to.toString());
  boost::system::error_code ec;
  impl_->udpSocket.send_to(asio::buffer(data.data(), data.size()), udp::endpoint(fromNode(to), to.port), 0, ec);
  // A full socket buffer drops the packet as the network might: not an error for UDP.
  if (ec && ec != asio::error::would_block) return Error(errc::unreachable, "send to " + to.toString() + ": " + ec.message());
  return {};
}

void AsioTransport::dial(const NodeAddress& to, Duration timeout, DialCallback cb) {
  if (impl_->down) return cb(Error(errc::shutdown, "transport is shut down"));
  if (!to.valid()) return cb(Error(errc::malformed, "invalid address " + to.toString()));
  struct Attempt {
    explicit Attempt(asio::io_context& io) : socket(io), timer(io) {}
    tcp::socket socket;
    asio::steady_timer timer;
    bool finished = false;
    DialCallback cb;
  };
  auto a = std::make_shared<Attempt>(impl_->io);
  a->cb = std::move(cb);
  a->timer.expires_after(timeout);
  a->timer.async_wait([a, to](const boost::system::error_code& ec) {
    if (ec || a->finished) return;
    a->finished = true;
    boost::system::error_code ignored;
    a->socket.close(ignored);
    a->cb(Error(errc::timeout, "dial " + to.toString() + ": i/o timeout"));
  });
  // Streams leave from the address we are bound to when it is a specific one (as UDP does), so
  // that peers and firewalls see one address for this node; any free port.
  const auto target = fromNode(to);
  if (impl_->local.valid()) {
    const auto self = fromNode(impl_->local);
    if (!self.is_unspecified() && self.is_v4() == target.is_v4()) {
      boost::system::error_code bec;
      a->socket.open(target.is_v4() ? tcp::v4() : tcp::v6(), bec);
      if (!bec) a->socket.bind(tcp::endpoint(self, 0), bec);
      if (bec) {
        boost::system::error_code ignored;
        a->socket.close(ignored);
      }
    }
  }
  a->socket.async_connect(tcp::endpoint(target, to.port), [a, to](const boost::system::error_code& ec) {
    if (a->finished) return;
    a->finished = true;
    a->timer.cancel();
    if (ec) return a->cb(Error(errc::unreachable, "dial " + to.toString() + ": " + ec.message()));
    a->cb(std::unique_ptr<Stream>(std::make_unique<AsioStream>(std::move(a->socket))));
  });
}

NodeAddress AsioTransport::localAddress() const { return impl_->local; }

void AsioTransport::shutdown() {
  if (impl_->down) return;
  impl_->down = true;
  boost::system::error_code ec;
  impl_->udpSocket.close(ec);
  impl_->acceptor.close(ec);
  impl_->retryTimer.cancel();
}

}  // namespace mesh::gossip
