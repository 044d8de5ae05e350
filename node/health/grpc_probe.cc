#include "node/health/grpc_probe.h"

#include "node/health/probe_connection.h"

#include <nghttp2/nghttp2.h>

#include <array>

#include "common/asio.h"
#include "common/errc.h"
#include "common/net_address.h"

namespace mesh::health {
namespace {

namespace asio = boost::asio;
using asio::ip::tcp;

constexpr std::size_t kMaxResponse = 64 * 1024;

std::string frame(const std::string& message) {
  std::string out(5, '\0');
  const auto n = static_cast<std::uint32_t>(message.size());
  for (int i = 0; i < 4; ++i) out[1 + i] = static_cast<char>((n >> (24 - 8 * i)) & 0xff);
  return out + message;
}

struct GrpcProbe : std::enable_shared_from_this<GrpcProbe> {
  GrpcProbe(asio::io_context& io, CheckDef d, std::function<void(ProbeResult)> cb)
      : def(std::move(d)), conn(io, "gRPC health " + def.target, def.timeout, std::move(cb)) {}
  ~GrpcProbe() {
    if (session) nghttp2_session_del(session);
  }

  CheckDef def;
  ProbeConnection conn;
  nghttp2_session* session = nullptr;
  std::string host, port, service, request, body, out;
  std::size_t requestSent = 0;
  std::array<char, 8192> chunk{};
  std::string httpStatus, grpcStatus, grpcMessage;
  bool closed = false, writing = false;

  void finish(Health h, const std::string& detail) { conn.finish(h, detail); }

  void start() {
    conn.connect(shared_from_this(), host, port, [this] {
      if (!open()) return finish(Health::critical, "cannot start an HTTP/2 session");
      flush();
      read();
    });
  }

  bool open() {
    nghttp2_session_callbacks* cbs = nullptr;
    if (nghttp2_session_callbacks_new(&cbs) != 0) return false;
    nghttp2_session_callbacks_set_on_header_callback(
        cbs, [](nghttp2_session*, const nghttp2_frame*, const uint8_t* name, size_t namelen, const uint8_t* value,
                size_t valuelen, uint8_t, void* user) -> int {
          auto* p = static_cast<GrpcProbe*>(user);
          std::string_view n(reinterpret_cast<const char*>(name), namelen);
          std::string v(reinterpret_cast<const char*>(value), valuelen);
          if (n == ":status") p->httpStatus = v;
          if (n == "grpc-status") p->grpcStatus = v;
          if (n == "grpc-message") p->grpcMessage = v;
          return 0;
        });
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(
        cbs, [](nghttp2_session*, uint8_t, int32_t, const uint8_t* data, size_t len, void* user) -> int {
          auto* p = static_cast<GrpcProbe*>(user);
          if (p->body.size() + len > kMaxResponse) return NGHTTP2_ERR_CALLBACK_FAILURE;
          p->body.append(reinterpret_cast<const char*>(data), len);
          return 0;
        });
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, [](nghttp2_session*, int32_t, uint32_t, void* user) -> int {
      static_cast<GrpcProbe*>(user)->closed = true;
      return 0;
    });
    const int rc = nghttp2_session_client_new(&session, cbs, this);
    nghttp2_session_callbacks_del(cbs);
    if (rc != 0) return false;
    nghttp2_submit_settings(session, NGHTTP2_FLAG_NONE, nullptr, 0);
    const std::string authority = host + ":" + port;
    auto nv = [](const char* n, const std::string& v) {
      return nghttp2_nv{reinterpret_cast<uint8_t*>(const_cast<char*>(n)), reinterpret_cast<uint8_t*>(const_cast<char*>(v.data())),
                        std::strlen(n), v.size(), NGHTTP2_NV_FLAG_NONE};
    };
    static const std::string post = "POST", http = "http", path = "/grpc.health.v1.Health/Check",
                             ctype = "application/grpc", te = "trailers", agent = "meshd-health-check";
    nghttp2_nv hdrs[] = {nv(":method", post), nv(":scheme", http), nv(":path", path), nv(":authority", authority),
                         nv("content-type", ctype), nv("te", te), nv("user-agent", agent)};
    nghttp2_data_provider provider{};
    provider.source.ptr = this;
    provider.read_callback = [](nghttp2_session*, int32_t, uint8_t* buf, size_t length, uint32_t* flags,
                                nghttp2_data_source* src, void*) -> ssize_t {
      auto* p = static_cast<GrpcProbe*>(src->ptr);
      const std::size_t n = std::min(length, p->request.size() - p->requestSent);
      std::memcpy(buf, p->request.data() + p->requestSent, n);
      p->requestSent += n;
      if (p->requestSent == p->request.size()) *flags |= NGHTTP2_DATA_FLAG_EOF;
      return static_cast<ssize_t>(n);
    };
    return nghttp2_submit_request(session, nullptr, hdrs, sizeof hdrs / sizeof hdrs[0], &provider, this) > 0;
  }

  void flush() {
    if (writing || conn.finished) return;
    const uint8_t* data = nullptr;
    ssize_t n;
    while ((n = nghttp2_session_mem_send(session, &data)) > 0) out.append(reinterpret_cast<const char*>(data), static_cast<std::size_t>(n));
    if (n < 0) return finish(Health::critical, std::string("HTTP/2: ") + nghttp2_strerror(static_cast<int>(n)));
    if (out.empty()) return;
    writing = true;
    auto self = shared_from_this();
    auto buf = std::make_shared<std::string>(std::move(out));
    out.clear();
    asio::async_write(conn.socket, asio::buffer(*buf), [self, buf](boost::system::error_code ec, std::size_t) {
      self->writing = false;
      if (self->conn.finished) return;
      if (ec) return self->finish(Health::critical, "cannot send: " + ec.message());
      self->flush();
    });
  }

  void read() {
    auto self = shared_from_this();
    conn.socket.async_read_some(asio::buffer(chunk), [self](boost::system::error_code ec, std::size_t n) {
      if (self->conn.finished) return;
      if (n > 0) {
        const ssize_t rc = nghttp2_session_mem_recv(self->session, reinterpret_cast<const uint8_t*>(self->chunk.data()), n);
        if (rc < 0) return self->finish(Health::critical, std::string("not an HTTP/2 (h2c) server: ") + nghttp2_strerror(static_cast<int>(rc)));
      }
      if (self->closed) return self->judge();
      if (ec) return self->finish(Health::critical, "connection closed: " + ec.message());
      self->flush();
      self->read();
    });
  }

  void judge() {
    if (httpStatus != "200") return finish(Health::critical, "HTTP status " + (httpStatus.empty() ? "none" : httpStatus));
    if (grpcStatus.empty()) return finish(Health::critical, "no grpc-status");
    if (grpcStatus != "0") {
      return finish(Health::critical, "grpc-status " + grpcStatus + (grpcMessage.empty() ? "" : " (" + grpcMessage + ")"));
    }
    auto st = grpcHealthStatus(body);
    if (!st) return finish(Health::critical, "bad answer: " + st.error().message());
    switch (*st) {
      case 1: return finish(Health::passing, "SERVING");
      case 2: return finish(Health::critical, "NOT_SERVING");
      case 3: return finish(Health::critical, "SERVICE_UNKNOWN");
      default: return finish(Health::critical, "status " + std::to_string(*st));
    }
  }
};

}  // namespace

std::string grpcHealthRequest(const std::string& service) {
  std::string msg;
  if (!service.empty()) {
    msg.push_back(0x0a);  // field 1, length-delimited
    std::size_t n = service.size();
    while (n >= 0x80) {
      msg.push_back(static_cast<char>((n & 0x7f) | 0x80));
      n >>= 7;
    }
    msg.push_back(static_cast<char>(n));
    msg += service;
  }
  return frame(msg);
}

std::string grpcHealthResponse(int status) {
  std::string msg;
  msg.push_back(0x08);  // field 1, varint
  msg.push_back(static_cast<char>(status));
  return frame(msg);
}

Result<int> grpcHealthStatus(std::string_view f) {
  if (f.size() < 5) return Error(errc::malformed, "short gRPC frame");
  if (f[0] != 0) return Error(errc::malformed, "compressed gRPC message");
  const std::uint32_t n = (std::uint32_t(std::uint8_t(f[1])) << 24) | (std::uint32_t(std::uint8_t(f[2])) << 16) |
                          (std::uint32_t(std::uint8_t(f[3])) << 8) | std::uint32_t(std::uint8_t(f[4]));
  if (f.size() - 5 < n) return Error(errc::malformed, "truncated gRPC message");
  std::string_view m = f.substr(5, n);
  int status = 0;  // proto3: absent means 0 (UNKNOWN)
  std::size_t i = 0;
  while (i < m.size()) {
    const auto tag = static_cast<std::uint8_t>(m[i++]);
    if ((tag & 7) != 0) return Error(errc::malformed, "unexpected field type in HealthCheckResponse");
    std::uint64_t v = 0;
    int shift = 0;
    while (true) {
      if (i >= m.size() || shift > 63) return Error(errc::malformed, "truncated varint");
      const auto b = static_cast<std::uint8_t>(m[i++]);
      v |= std::uint64_t(b & 0x7f) << shift;
      if (!(b & 0x80)) break;
      shift += 7;
    }
    if ((tag >> 3) == 1) status = static_cast<int>(v);
  }
  return status;
}

void grpcProbe(asio::io_context& io, const CheckDef& def, std::function<void(ProbeResult)> done) {
  const auto slash = def.target.find('/');
  auto hp = parseHostPort(def.target.substr(0, slash), {.allowHostname = true});
  if (!hp) return done({Health::critical, "gRPC health " + def.target + ": " + hp.error().message()});
  auto p = std::make_shared<GrpcProbe>(io, def, std::move(done));
  p->host = hp->host;
  p->port = std::to_string(hp->port);
  p->service = slash == std::string::npos ? "" : def.target.substr(slash + 1);
  p->request = grpcHealthRequest(p->service);
  p->start();
}

}  // namespace mesh::health
