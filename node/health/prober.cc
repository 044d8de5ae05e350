#include "node/health/prober.h"

#include <charconv>

#include "common/asio.h"
#include "common/net_address.h"
#include "common/subprocess.h"
#include "node/health/grpc_probe.h"
#include "node/health/probe_connection.h"

namespace mesh::health {
namespace {

namespace asio = boost::asio;
using asio::ip::tcp;

// Command output kept as a check's output.
constexpr std::size_t kMaxOutput = 4096;
// The status line must come within this much of the response.
constexpr std::size_t kMaxStatusLine = 8192;

struct Url {
  std::string host, port, target;
};

std::optional<Url> parseUrl(const std::string& url) {
  constexpr std::string_view scheme = "http://";
  if (!url.starts_with(scheme)) return std::nullopt;
  std::string rest = url.substr(scheme.size());
  const auto slash = rest.find_first_of("/?");
  std::string authority = rest.substr(0, slash);
  Url u;
  u.target = slash == std::string::npos ? "/" : rest.substr(slash);
  if (u.target.front() == '?') u.target = "/" + u.target;
  auto hp = parseHostPort(authority, {.allowHostname = true, .requirePort = false, .defaultPort = 80});
  if (!hp) return std::nullopt;
  u.host = hp->host;
  u.port = std::to_string(hp->port);
  return u;
}

// One TCP or HTTP probe: resolve, connect, (HTTP: write the request, read the status line),
// all under one deadline.
struct NetProbe : std::enable_shared_from_this<NetProbe> {
  NetProbe(asio::io_context& io, CheckDef d, std::string what, std::function<void(ProbeResult)> cb)
      : def(std::move(d)), conn(io, std::move(what), def.timeout, std::move(cb)) {}

  CheckDef def;
  ProbeConnection conn;
  std::string request, buf;
  std::array<char, 2048> chunk{};

  void finish(Health h, const std::string& detail) { conn.finish(h, detail); }

  void start(const std::string& host, const std::string& port) {
    conn.connect(shared_from_this(), host, port, [this] {
      if (def.kind == CheckDef::Kind::tcp) return finish(Health::passing, "success");
      sendRequest();
    });
  }

  void sendRequest() {
    auto self = shared_from_this();
    asio::async_write(conn.socket, asio::buffer(request), [self](boost::system::error_code ec, std::size_t) {
      if (self->conn.finished) return;
      if (ec) return self->finish(Health::critical, "cannot send the request: " + ec.message());
      self->readStatus();
    });
  }

  void readStatus() {
    auto self = shared_from_this();
    conn.socket.async_read_some(asio::buffer(chunk), [self](boost::system::error_code ec, std::size_t n) {
      if (self->conn.finished) return;
      self->buf.append(self->chunk.data(), n);
      const auto eol = self->buf.find("\r\n");
      if (eol == std::string::npos) {
        if (ec) return self->finish(Health::critical, "connection closed before a status line");
        if (self->buf.size() > kMaxStatusLine) return self->finish(Health::critical, "no status line");
        return self->readStatus();
      }
      self->judge(self->buf.substr(0, eol));
    });
  }

  void judge(const std::string& line) {
    // "HTTP/1.1 200 OK"
    int code = 0;
    if (line.size() >= 12 && line.starts_with("HTTP/1.")) {
      std::from_chars(line.data() + 9, line.data() + 12, code);
    }
    if (code < 100 || code > 599) return finish(Health::critical, "not an HTTP response: " + line.substr(0, 80));
    const std::string shown = line.substr(9);
    if (code >= def.statusMin && code <= def.statusMax) return finish(Health::passing, shown);
    if (code == 429) return finish(Health::warning, shown);
    finish(Health::critical, shown);
  }
};

}  // namespace

std::string probeSeconds(Duration d) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3gs", std::chrono::duration<double>(d).count());
  return buf;
}

AsioProber::AsioProber(asio::io_context& io) : io_(io) {}
AsioProber::~AsioProber() = default;

void AsioProber::probe(const CheckDef& def, std::function<void(ProbeResult)> done) {
  switch (def.kind) {
    case CheckDef::Kind::http: {
      auto url = parseUrl(def.target);
      if (!url) return done({Health::critical, "HTTP " + def.method + " " + def.target + ": not an http:// URL"});
      auto p = std::make_shared<NetProbe>(io_, def, "HTTP " + def.method + " " + def.target, std::move(done));
      p->request = def.method + " " + url->target + " HTTP/1.1\r\nHost: " + url->host +
                   "\r\nUser-Agent: meshd-health-check\r\nAccept: */*\r\nConnection: close\r\n\r\n";
      p->start(url->host, url->port);
      return;
    }
    case CheckDef::Kind::tcp: {
      auto hp = parseHostPort(def.target, {.allowHostname = true});
      if (!hp) return done({Health::critical, "TCP connect " + def.target + ": " + hp.error().message()});
      auto p = std::make_shared<NetProbe>(io_, def, "TCP connect " + def.target, std::move(done));
      p->start(hp->host, std::to_string(hp->port));
      return;
    }
    case CheckDef::Kind::exec: {
      subprocess::Options o;
      o.command = def.target;
      o.timeout = std::chrono::duration_cast<std::chrono::milliseconds>(def.timeout);
      o.maxOutput = kMaxOutput;
      subprocess::run(io_, std::move(o), [done = std::move(done), def](Result<subprocess::Outcome> r) {
        if (!r) return done({Health::critical, "cannot run: " + r.error().message()});
        if (r->timedOut) return done({Health::critical, "timed out after " + probeSeconds(def.timeout) + "; killed"});
        const Health h = r->exitCode == 0 ? Health::passing : r->exitCode == 1 ? Health::warning : Health::critical;
        std::string out = r->output;
        if (r->signal != 0) out = "killed by signal " + std::to_string(r->signal) + (out.empty() ? "" : ": " + out);
        done({h, out});
      });
      return;
    }
    case CheckDef::Kind::grpc:
      return grpcProbe(io_, def, std::move(done));
    case CheckDef::Kind::ttl:
      break;
  }
  done({Health::critical, std::string(catalog::checkKindName(def.kind)) + " checks are not probed"});
}

}  // namespace mesh::health
