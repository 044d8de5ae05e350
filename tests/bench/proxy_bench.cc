// The data plane against HAProxy and nginx (issue 7), in one run on this machine: a client
// (h2load) -> proxy A -> TLS 1.3 with client certificates -> proxy B -> an upstream (nginx
// answering 1 kB), for (a) direct to the upstream, (b) a meshd pair, (c) an HAProxy pair, (d) an
// nginx pair. Every proxy gets one thread (meshd --workers 1, HAProxy nbthread 1, nginx
// worker_processes 1) and keeps connections alive both ways; all use the same certificates
// (meshcli ca init / cert issue, P-256).
//
// For each: latency percentiles at a fixed rate (h2load --rps, per-request log), the maximum
// throughput (h2load, no rate limit), CPU seconds the two proxies burn per 1,000 requests at
// the fixed rate (/proc/PID/stat), and each proxy's resident memory idle and after the load.
// Over HTTP/1.1 and over HTTP/2 (h2c from the client, prior knowledge; between the pair h2
// for meshd and HAProxy, HTTP/1.1 for nginx, which cannot proxy HTTP/2 upstream; HTTP/1.1 to
// the upstream for all). Prints a table per protocol and the ratios against the better of
// HAProxy and nginx; --svg writes plots. Asserts nothing. Stops every process it started.
//
//   bench_proxy [--seconds 10] [--rps 1000] [--clients 10] [--max-clients 50] [--max-requests 200000]
//               [--streams 10] [--protocols h1,h2] [--svg FILE]

#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "common/http/client.h"
#include "tests/support/child_process.h"
#include "tests/support/env.h"
#include "tests/support/meshd_node.h"

using namespace std::chrono_literals;
using json = nlohmann::json;
namespace fs = std::filesystem;
using mesh::testing::ChildProcess;

namespace {

struct Options {
  int seconds = 10;
  int rps = 1000;
  int clients = 10;
  int maxClients = 50;
  std::uint64_t maxRequests = 200000;
  int streams = 10;  // HTTP/2: concurrent streams per connection in the maximum-throughput run
  std::string protocols = "h1,h2";
  std::string peerProtocol = "http2";  // meshd --peer-protocol
  std::string svg;  // the HTTP/1.1 plot; the HTTP/2 one goes beside it ("http1" -> "http2")
  // Issue 8's policy benchmark: the meshd pair bare, then with a 20-rule Route and every traffic
  // filter on (policy.yaml below), instead of HAProxy and nginx.
  bool comparePolicy = false;
};

struct Figures {
  std::string name;
  double p50 = 0, p90 = 0, p99 = 0;  // ms at the fixed rate
  double rate = 0;                   // achieved at the fixed rate
  double maxRps = 0;
  double cpuPer1000 = 0;     // seconds, both proxies together
  double kernelPer1000 = 0;  // the part of cpuPer1000 spent in the kernel (stime)
  std::vector<std::pair<std::string, double>> rssIdleMb, rssLoadedMb;
  // Idle memory as the kernel shares it out: PSS (shared pages divided among the processes that
  // map them) and private (pages no other process maps): most of an idle proxy's RSS is library
  // code that every process using the library shares.
  std::vector<std::pair<std::string, double>> pssIdleMb, privateIdleMb;
  std::uint64_t failed = 0;
};

struct Cpu {
  double user = 0, kernel = 0;
  double total() const { return user + kernel; }
};

Cpu cpuSeconds(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string s((std::istreambuf_iterator<char>(f)), {});
  auto close = s.rfind(')');
  if (close == std::string::npos) return {};
  std::istringstream in(s.substr(close + 2));
  std::string field;
  unsigned long long utime = 0, stime = 0;
  for (int i = 3; i <= 15 && in >> field; ++i) {
    if (i == 14) utime = std::stoull(field);
    if (i == 15) stime = std::stoull(field);
  }
  const auto tck = static_cast<double>(::sysconf(_SC_CLK_TCK));
  return {static_cast<double>(utime) / tck, static_cast<double>(stime) / tck};
}

// A process and its children (nginx's master and worker).
std::vector<pid_t> familyOf(pid_t pid) {
  std::vector<pid_t> out{pid};
  for (const auto& e : fs::directory_iterator("/proc")) {
    const auto name = e.path().filename().string();
    if (!std::all_of(name.begin(), name.end(), ::isdigit)) continue;
    std::ifstream f(e.path() / "stat");
    std::string s((std::istreambuf_iterator<char>(f)), {});
    auto close = s.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream in(s.substr(close + 2));
    std::string state;
    pid_t ppid = 0;
    in >> state >> ppid;
    if (ppid == pid) out.push_back(std::stoi(name));
  }
  return out;
}

double rssMb(pid_t pid) {
  double total = 0;
  for (pid_t p : familyOf(pid)) {
    std::ifstream f("/proc/" + std::to_string(p) + "/status");
    std::string line;
    while (std::getline(f, line)) {
      if (line.starts_with("VmRSS:")) total += std::stod(line.substr(6)) / 1024.0;
    }
  }
  return total;
}

// Fields of /proc/PID/smaps_rollup (kB) summed over the family, in MB.
double rollupMb(pid_t pid, std::initializer_list<std::string_view> fields) {
  double total = 0;
  for (pid_t p : familyOf(pid)) {
    std::ifstream f("/proc/" + std::to_string(p) + "/smaps_rollup");
    std::string line;
    while (std::getline(f, line)) {
      for (auto field : fields) {
        if (line.size() > field.size() && line.starts_with(field) && line[field.size()] == ':')
          total += std::stod(line.substr(field.size() + 1)) / 1024.0;
      }
    }
  }
  return total;
}

Cpu familyCpu(pid_t pid) {
  Cpu total;
  for (pid_t p : familyOf(pid)) {
    auto c = cpuSeconds(p);
    total.user += c.user;
    total.kernel += c.kernel;
  }
  return total;
}

bool waitConnectable(const std::string& host, std::uint16_t port) {
  return mesh::testing::eventually(
      [&] {
        mesh::http::ClientOptions o;
        o.timeout = 500ms;
        return mesh::http::get(mesh::HostPort{host, port, false, true}, "/", o).ok();
      },
      10s, 50ms);
}

struct H2load {
  double p50 = 0, p90 = 0, p99 = 0, rps = 0;
  std::uint64_t ok = 0, failed = 0;
};

// h2load for `requests` requests over `clients` connections (at `rps` per connection when
// given). -n, not -D: h2load 1.52 spins and never stops with -D and --rps together.
H2load h2load(const std::string& dir, const std::string& url, const std::string& host, int clients, int rps,
              std::uint64_t requests, bool h2 = false, int streams = 1) {
  const std::string log = dir + "/h2load.log";
  fs::remove(log);
  // ":authority" is h2load's name for Host, also over HTTP/1.1 ("host:" would add a second).
  std::vector<std::string> argv{"/usr/bin/h2load",
                                "-c",
                                std::to_string(clients),
                                "-t",
                                "1",
                                "-n",
                                std::to_string(requests),
                                "-H",
                                ":authority: " + host,
                                "--log-file",
                                log};
  if (rps > 0) argv.insert(argv.end(), {"--rps", std::to_string(rps)});
  // HTTP/2 over cleartext with prior knowledge (h2c), as gRPC clients and sidecar apps speak it.
  if (h2)
    argv.insert(argv.end(), {"-m", std::to_string(streams)});
  else
    argv.push_back("--h1");
  argv.push_back(url);
  auto r = mesh::testing::run(argv, std::chrono::seconds(600), dir);
  H2load out;
  // "finished in 10.00s, 999.90 req/s, 1.10MB/s" and
  // "requests: 10000 total, 10000 started, 10000 done, 10000 succeeded, 0 failed, 0 errored, 0 timeout"
  std::istringstream in(r.out);
  std::string line;
  while (std::getline(in, line)) {
    if (line.starts_with("finished in")) {
      auto comma = line.find(", ");
      out.rps = std::stod(line.substr(comma + 2));
    }
    if (line.starts_with("requests:")) {
      std::uint64_t total, started, done, succeeded, failed;
      if (std::sscanf(line.c_str(), "requests: %lu total, %lu started, %lu done, %lu succeeded, %lu failed", &total,
                      &started, &done, &succeeded, &failed) == 5) {
        out.ok = succeeded;
        out.failed = total - succeeded;
      }
    }
  }
  std::vector<double> lat;
  std::ifstream f(log);
  while (std::getline(f, line)) {
    std::istringstream row(line);
    double start, status, us;
    if (row >> start >> status >> us) lat.push_back(us / 1000.0);
  }
  std::sort(lat.begin(), lat.end());
  auto pct = [&](double p) {
    return lat.empty() ? 0.0 : lat[std::min(lat.size() - 1, static_cast<std::size_t>(p * lat.size()))];
  };
  out.p50 = pct(0.5);
  out.p90 = pct(0.9);
  out.p99 = pct(0.99);
  if (out.ok == 0) std::fprintf(stderr, "h2load against %s: %s%s\n", url.c_str(), r.out.c_str(), r.err.c_str());
  return out;
}

class Bench {
 public:
  explicit Bench(Options o) : o_(o) {}

  int run() {
    certs();
    startUpstream();
    const bool h1 = o_.protocols.find("h1") != std::string::npos;
    const bool h2 = o_.protocols.find("h2") != std::string::npos;
    std::vector<Figures> all1, all2;
    // Each setup serves both protocols (ports: HTTP/1.1, HTTP/2 with prior knowledge).
    auto both = [&](const std::string& name, const std::string& host, std::uint16_t port1, std::uint16_t port2,
                    const Procs& procs) {
      if (h1) all1.push_back(measure(name, "http://" + host + ":" + std::to_string(port1) + "/", "bench", procs, false));
      // Idle memory is the fresh process's (after the HTTP/1.1 runs it would not be idle).
      if (h2)
        all2.push_back(measure(name, "http://" + host + ":" + std::to_string(port2) + "/", "bench", procs, true,
                               h1 ? &all1.back() : nullptr));
    };
    both("direct", up_, 8080, 8081, {});
    {
      auto procs = startMeshd();
      if (!procs.empty()) both("meshd", a_, 15001, 15001, procs);
      stopAll(procs);
    }
    if (o_.comparePolicy) {
      auto procs = startMeshd(true);
      if (!procs.empty()) both("meshd+policy", a_, 15001, 15001, procs);
      stopAll(procs);
      if (h1) reportPolicy(all1, false);
      if (h2) reportPolicy(all2, true);
      if (upstream_) {
        upstream_->signal(SIGTERM);
        if (!upstream_->wait(10s)) upstream_->kill();
      }
      return 0;
    }
    {
      auto procs = startHaproxy();
      if (!procs.empty()) both("haproxy", a_, 16001, 16002, procs);
      stopAll(procs);
    }
    {
      auto procs = startNginx();
      if (!procs.empty()) both("nginx", a_, 17001, 17002, procs);
      stopAll(procs);
    }
    if (h1) report(all1, false);
    if (h2) report(all2, true);
    if (upstream_) {
      upstream_->signal(SIGTERM);  // nginx's master stops its worker, then exits
      if (!upstream_->wait(10s)) upstream_->kill();
    }
    return 0;
  }

 private:
  using Procs = std::vector<std::pair<std::string, ChildProcess*>>;

  void certs() {
    auto cli = [&](std::vector<std::string> args) {
      args.insert(args.begin(), mesh::testing::meshcliPath());
      auto r = mesh::testing::run(args, 60s, dir_.path());
      if (r.status.code != 0) throw std::runtime_error("meshcli: " + r.err);
    };
    cli({"ca", "init", "--trust-domain", "bench.mesh", "--out", dir_.sub("ca")});
    cli({"cert", "issue", "--ca", dir_.sub("ca"), "--node", "a", "--out", dir_.sub("a")});
    cli({"cert", "issue", "--ca", dir_.sub("ca"), "--node", "b", "--out", dir_.sub("b")});
    // HAProxy wants certificate and key in one file.
    for (const char* n : {"a", "b"}) {
      std::ofstream pem(dir_.sub(std::string(n) + ".pem"));
      for (const char* part : {"/node.crt", "/node.key"}) {
        std::ifstream in(dir_.sub(n) + part);
        pem << in.rdbuf();
      }
    }
  }

  void startUpstream() {
    const std::string conf = dir_.sub("upstream.conf");
    std::ofstream(conf) << "daemon off;\nworker_processes 1;\npid " << dir_.sub("upstream.pid") << ";\nerror_log "
                        << dir_.sub("upstream.err")
                        << ";\nevents { worker_connections 4096; }\nhttp {\n  access_log off;\n"
                        << "  keepalive_requests 1000000;\n  server {\n    listen " << up_ << ":8080;\n"
                        << "    listen " << up_ << ":8081 http2;\n"
                        << "    location / { default_type text/plain; return 200 '" << std::string(1024, 'x')
                        << "'; }\n  }\n}\n";
    upstream_.emplace(ChildProcess::start({"/usr/sbin/nginx", "-c", conf, "-p", dir_.path()}, dir_.path(), "upstream"));
    waitConnectable(up_, 8080);
  }

  // The policy of the policy benchmark: a Route of 20 rules whose last matches (the 19 before it
  // test paths, headers, regular expressions and query parameters the benchmark's requests do
  // not have), with header edits both ways, a fault that applies to a header they lack, a
  // timeout and retries; a DestinationPolicy with circuit breakers and outlier detection (limits
  // never reached); a RateLimit on the service (limits never reached) with three rules.
  static std::string benchPolicy() {
    std::string route = "kind: Route\nmetadata: {name: bench}\nspec:\n  hosts: [bench]\n  http:\n";
    for (int i = 0; i < 19; ++i) {
      const std::string n = std::to_string(i);
      switch (i % 4) {
        case 0:
          route += "    - {name: r" + n + ", match: [{path: {prefix: /api/v" + n + "/}}], route: [{destination: {service: bench}}]}\n";
          break;
        case 1:
          route += "    - {name: r" + n + ", match: [{headers: {x-tenant: {exact: t" + n +
                   "}}}], route: [{destination: {service: bench}}]}\n";
          break;
        case 2:
          route += "    - {name: r" + n + ", match: [{path: {regex: \"/items/[0-9]+/v" + n +
                   "\"}, methods: [GET]}], route: [{destination: {service: bench}}]}\n";
          break;
        default:
          route += "    - {name: r" + n + ", match: [{queryParams: {version: {exact: \"" + n +
                   "\"}}}], route: [{destination: {service: bench}}]}\n";
      }
    }
    route +=
        "    - name: all\n"
        "      headers:\n"
        "        request: {set: {x-route: bench}, add: {x-route-added: one}, remove: [x-drop]}\n"
        "        response: {set: {x-served-by: mesh}, remove: [x-internal]}\n"
        "      fault: {abort: {percent: 100, httpStatus: 503}, match: {x-chaos: {present: true}}}\n"
        "      timeout: 10s\n"
        "      retries: {attempts: 2, retryOn: [gateway-error, connect-failure], perTryTimeout: 5s}\n"
        "      route: [{destination: {service: bench}}]\n";
    return route +
           "---\nkind: DestinationPolicy\nmetadata: {name: bench}\nspec:\n  service: bench\n  trafficPolicy:\n"
           "    loadBalancer: {algorithm: LEAST_REQUEST}\n"
           "    connectionPool: {maxConnections: 100000, maxPendingRequests: 100000, maxRequests: 100000, maxRetries: 1000}\n"
           "    outlierDetection: {consecutive5xxErrors: 5, consecutiveGatewayErrors: 5, interval: 10s, "
           "baseEjectionTime: 30s, maxEjectionPercent: 50, successRateMinimumHosts: 1}\n"
           "---\nkind: RateLimit\nmetadata: {name: bench}\nspec:\n  service: bench\n  rules:\n"
           "    - {name: per-caller, keyBy: SOURCE_IDENTITY, requestsPerUnit: 10000000}\n"
           "    - {name: per-user, keyBy: HEADER, header: x-user, requestsPerUnit: 100}\n"
           "    - {name: whole, requestsPerUnit: 10000000, burst: 10000000}\n";
  }

  Procs startMeshd(bool policy = false) {
    fs::create_directories(dir_.sub("svc"));
    std::ofstream(dir_.sub("svc/bench.yaml"))
        << "service:\n  name: bench\n  address: " << up_ << "\n  port: 8080\n  checks:\n    - tcp: " << up_
        << ":8080\n      interval: 1s\n      timeout: 500ms\n      success_before_passing: 1\n";
    auto common = [&](const std::string& n, const std::string& addr) {
      return std::vector<std::string>{"--tls-dir",       dir_.sub(n),       "--outbound", addr + ":15001",
                                      "--inbound",       addr + ":15006",   "--workers",  "1",
                                      "--peer-protocol", o_.peerProtocol,   "--log-level", "warn"};
    };
    auto aArgs = common("a", a_);
    const std::string suffix = policy ? "p" : "";
    if (policy) {
      auto r = mesh::testing::run({mesh::testing::meshcliPath(), "keygen", "--out", dir_.sub("op")}, 60s, dir_.path());
      if (r.status.code != 0) throw std::runtime_error("meshcli keygen: " + r.err);
      aArgs.insert(aArgs.end(), {"--policy-trusted-key", dir_.sub("op.pub")});
    }
    meshdA_.emplace(mesh::testing::MeshdOptions{.name = "a",
                                                .address = a_,
                                                .dataDir = dir_.sub("da" + suffix),
                                                .logDir = dir_.path(),
                                                .extraArgs = aArgs});
    auto bArgs = common("b", b_);
    if (policy) bArgs.insert(bArgs.end(), {"--policy-trusted-key", dir_.sub("op.pub")});
    bArgs.insert(bArgs.end(), {"--services-dir", dir_.sub("svc"), "--join", a_ + ":7946"});
    meshdB_.emplace(mesh::testing::MeshdOptions{
        .name = "b", .address = b_, .dataDir = dir_.sub("db" + suffix), .logDir = dir_.path(), .extraArgs = bArgs});
    meshdA_->start();
    meshdB_->start();
    if (!meshdA_->waitReady() || !meshdB_->waitReady()) return {};
    bool routed = mesh::testing::eventually(
        [&] {
          auto r = meshdA_->get("/v1/proxy");
          return r.ok() && r->body.find("\"via\": \"" + b_ + ":15006\"") != std::string::npos;
        },
        30s, 100ms);
    if (!routed) {
      std::fprintf(stderr, "meshd a never routed to b\n");
      return {};
    }
    if (policy) {
      std::ofstream(dir_.sub("policy.yaml")) << benchPolicy();
      auto r = mesh::testing::run({mesh::testing::meshcliPath(), "policy", "publish", dir_.sub("policy.yaml"), "--key",
                                   dir_.sub("op.key"), "--node", meshdA_->admin().toString(), "--wait"},
                                  60s, dir_.path());
      if (r.status.code != 0) throw std::runtime_error("meshcli policy publish: " + r.out + r.err);
      // Both proxies apply it: A the Route and DestinationPolicy, B the RateLimit.
      bool applied = mesh::testing::eventually(
          [&] {
            auto ra = meshdA_->get("/v1/proxy");
            auto rb = meshdB_->get("/v1/proxy");
            return ra.ok() && rb.ok() && ra->body.find("\"document\": \"Route/bench\"") != std::string::npos &&
                   rb->body.find("\"document\": \"RateLimit/bench\"") != std::string::npos;
          },
          30s, 100ms);
      if (!applied) {
        std::fprintf(stderr, "the benchmark's policy never applied\n");
        return {};
      }
    }
    return {{"meshd A", &meshdA_->process()}, {"meshd B", &meshdB_->process()}};
  }

  Procs startHaproxy() {
    const std::string ca = dir_.sub("ca/ca.crt");
    auto conf = [&](const std::string& name, const std::string& body) {
      const std::string path = dir_.sub("haproxy-" + name + ".cfg");
      std::ofstream(path) << "global\n  nbthread 1\n  maxconn 4000\n  tune.ssl.default-dh-param 2048\n"
                          << "defaults\n  mode http\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n"
                          << "  http-reuse always\n  option http-keep-alive\n"
                          << body;
      return path;
    };
    // HTTP/1.1 on 16001 and HTTP/2 (h2c in, h2 between the pair) on 16002.
    const std::string tlsA = " ssl crt " + dir_.sub("a.pem") + " ca-file " + ca + " verify required ssl-min-ver TLSv1.3";
    const std::string tlsB = " ssl crt " + dir_.sub("b.pem") + " ca-file " + ca + " verify required ssl-min-ver TLSv1.3";
    auto a = conf("a", "frontend fe\n  bind " + a_ + ":16001\n  default_backend be\nbackend be\n  server b " + b_ +
                           ":16443" + tlsA + " alpn http/1.1\nfrontend fe2\n  bind " + a_ +
                           ":16002 proto h2\n  default_backend be2\nbackend be2\n  server b " + b_ + ":16444" +
                           tlsA + " alpn h2\n");
    auto b = conf("b", "frontend fe\n  bind " + b_ + ":16443" + tlsB +
                           " alpn http/1.1\n  default_backend be\nfrontend fe2\n  bind " + b_ + ":16444" + tlsB +
                           " alpn h2\n  default_backend be\nbackend be\n  server up " + up_ + ":8080\n");
    haB_.emplace(ChildProcess::start({"/usr/sbin/haproxy", "-db", "-f", b}, dir_.path(), "haproxy-b"));
    haA_.emplace(ChildProcess::start({"/usr/sbin/haproxy", "-db", "-f", a}, dir_.path(), "haproxy-a"));
    if (!waitConnectable(a_, 16001)) {
      std::fprintf(stderr, "haproxy did not start: %s %s\n", haA_->stderrText().c_str(), haB_->stderrText().c_str());
      return {};
    }
    return {{"HAProxy A", &*haA_}, {"HAProxy B", &*haB_}};
  }

  Procs startNginx() {
    auto conf = [&](const std::string& name, const std::string& server) {
      const std::string path = dir_.sub("nginx-" + name + ".conf");
      std::ofstream(path) << "daemon off;\nworker_processes 1;\npid " << dir_.sub("nginx-" + name + ".pid")
                          << ";\nerror_log " << dir_.sub("nginx-" + name + ".err")
                          << ";\nevents { worker_connections 20000; }\n"
                          << "http {\n  access_log off;\n  keepalive_requests 1000000;\n"
                          << server << "}\n";
      return path;
    };
    // nginx checks the upstream's name against proxy_ssl_name, and these certificates carry
    // SPIFFE URIs, not DNS names: A verifies nothing about B (less work than the others do, at
    // handshakes only, which keep-alive makes rare). B verifies A's client certificate.
    auto a = conf("a", "  upstream b { server " + b_ +
                           ":17443; keepalive 256; keepalive_requests 1000000; }\n  server {\n    listen " + a_ +
                           ":17001;\n    listen " + a_ + ":17002 http2;\n    location / {\n      proxy_pass https://b;\n      proxy_http_version 1.1;\n"
                           "      proxy_set_header Connection \"\";\n      proxy_ssl_certificate " +
                           dir_.sub("a/node.crt") + ";\n      proxy_ssl_certificate_key " + dir_.sub("a/node.key") +
                           ";\n      proxy_ssl_protocols TLSv1.3;\n      proxy_ssl_session_reuse on;\n    }\n  }\n");
    auto b = conf("b", "  upstream up { server " + up_ +
                           ":8080; keepalive 256; keepalive_requests 1000000; }\n  server {\n    listen " + b_ +
                           ":17443 ssl;\n    ssl_certificate " + dir_.sub("b/node.crt") +
                           ";\n    ssl_certificate_key " + dir_.sub("b/node.key") +
                           ";\n    ssl_protocols TLSv1.3;\n    ssl_client_certificate " + dir_.sub("ca/ca.crt") +
                           ";\n    ssl_verify_client on;\n    ssl_verify_depth 3;\n    location / {\n"
                           "      proxy_pass http://up;\n      proxy_http_version 1.1;\n      proxy_set_header "
                           "Connection \"\";\n    }\n  }\n");
    ngB_.emplace(ChildProcess::start({"/usr/sbin/nginx", "-c", b, "-p", dir_.path()}, dir_.path(), "nginx-b"));
    ngA_.emplace(ChildProcess::start({"/usr/sbin/nginx", "-c", a, "-p", dir_.path()}, dir_.path(), "nginx-a"));
    if (!waitConnectable(a_, 17001)) {
      std::fprintf(stderr, "nginx did not start: %s %s\n", ngA_->stderrText().c_str(), ngB_->stderrText().c_str());
      return {};
    }
    return {{"nginx A", &*ngA_}, {"nginx B", &*ngB_}};
  }

  void stopAll(Procs& procs) {
    for (auto& [name, p] : procs) {
      p->signal(SIGTERM);
      if (!p->wait(10s)) p->kill();
    }
    procs.clear();
  }

  // nginx speaks HTTP/1.1 to its upstreams whatever its clients speak (it has no HTTP/2 proxying).
  Figures measure(const std::string& name, const std::string& url, const std::string& host, const Procs& procs,
                  bool h2, const Figures* idleFrom = nullptr) {
    Figures f;
    f.name = name;
    if (idleFrom) {
      f.rssIdleMb = idleFrom->rssIdleMb;
      f.pssIdleMb = idleFrom->pssIdleMb;
      f.privateIdleMb = idleFrom->privateIdleMb;
    } else {
      std::this_thread::sleep_for(1s);
      for (const auto& [n, p] : procs) {
        f.rssIdleMb.emplace_back(n, rssMb(p->pid()));
        f.pssIdleMb.emplace_back(n, rollupMb(p->pid(), {"Pss"}));
        f.privateIdleMb.emplace_back(n, rollupMb(p->pid(), {"Private_Clean", "Private_Dirty"}));
      }
    }
    // Warm-up (pools filled, caches hot), then the fixed rate with CPU measured around it.
    h2load(dir_.path(), url, host, o_.clients, 0, 5000, h2, o_.streams);
    Cpu cpu0;
    for (const auto& [n, p] : procs) {
      auto c = familyCpu(p->pid());
      cpu0.user += c.user;
      cpu0.kernel += c.kernel;
    }
    auto fixed = h2load(dir_.path(), url, host, o_.clients, o_.rps / o_.clients,
                        static_cast<std::uint64_t>(o_.rps) * static_cast<std::uint64_t>(o_.seconds), h2, 1);
    Cpu cpu1;
    for (const auto& [n, p] : procs) {
      auto c = familyCpu(p->pid());
      cpu1.user += c.user;
      cpu1.kernel += c.kernel;
    }
    f.p50 = fixed.p50;
    f.p90 = fixed.p90;
    f.p99 = fixed.p99;
    f.rate = fixed.rps;
    f.failed = fixed.failed;
    const double served = static_cast<double>(fixed.ok + fixed.failed);
    f.cpuPer1000 = served > 0 ? (cpu1.total() - cpu0.total()) / served * 1000.0 : 0;
    f.kernelPer1000 = served > 0 ? (cpu1.kernel - cpu0.kernel) / served * 1000.0 : 0;
    auto max = h2load(dir_.path(), url, host, o_.maxClients, 0, o_.maxRequests, h2, o_.streams);
    f.maxRps = max.rps;
    f.failed += max.failed;
    for (const auto& [n, p] : procs) f.rssLoadedMb.emplace_back(n, rssMb(p->pid()));
    std::printf(
        "%-8s %s p50 %.3f ms  p90 %.3f ms  p99 %.3f ms at %.0f req/s; max %.0f req/s; CPU %.3f s/1000 req (kernel "
        "%.3f); failed %lu\n",
        name.c_str(), h2 ? "HTTP/2  " : "HTTP/1.1", f.p50, f.p90, f.p99, f.rate, f.maxRps, f.cpuPer1000,
        f.kernelPer1000, static_cast<unsigned long>(f.failed));
    std::fflush(stdout);
    return f;
  }

  // The policy benchmark's summary: meshd with the policy against bare meshd, same run.
  void reportPolicy(const std::vector<Figures>& all, bool h2) {
    report(all, h2);
    const Figures *direct = nullptr, *bare = nullptr, *pol = nullptr;
    for (const auto& f : all) {
      if (f.name == "direct") direct = &f;
      if (f.name == "meshd") bare = &f;
      if (f.name == "meshd+policy") pol = &f;
    }
    if (!direct || !bare || !pol) return;
    std::printf("\nmeshd with a 20-rule Route and every filter against bare meshd (%s):\n", h2 ? "HTTP/2" : "HTTP/1.1");
    std::printf("  added latency p50: %.3f ms vs %.3f ms: ratio %.2f\n", pol->p50 - direct->p50, bare->p50 - direct->p50,
                (pol->p50 - direct->p50) / (bare->p50 - direct->p50));
    std::printf("  added latency p99: %.3f ms vs %.3f ms: ratio %.2f\n", pol->p99 - direct->p99, bare->p99 - direct->p99,
                (pol->p99 - direct->p99) / (bare->p99 - direct->p99));
    std::printf("  max throughput: %.0f vs %.0f req/s: ratio %.2f\n", pol->maxRps, bare->maxRps, pol->maxRps / bare->maxRps);
    std::printf("  CPU per 1,000 requests: %.3f vs %.3f s: ratio %.2f\n", pol->cpuPer1000, bare->cpuPer1000,
                pol->cpuPer1000 / bare->cpuPer1000);
  }

  void report(const std::vector<Figures>& all, bool h2) {
    const Figures* direct = nullptr;
    for (const auto& f : all) {
      if (f.name == "direct") direct = &f;
    }
    if (h2) {
      std::printf("\nHTTP/2 (h2c from the client), 1 kB responses, %d req/s over %d connections for %d s; max: %d "
                  "connections x %d streams\n",
                  o_.rps, o_.clients, o_.seconds, o_.maxClients, o_.streams);
    } else {
      std::printf("\nHTTP/1.1, 1 kB responses, %d req/s over %d connections for %d s; max: %d connections\n", o_.rps,
                  o_.clients, o_.seconds, o_.maxClients);
    }
    std::printf(
        "| setup | p50 | p90 | p99 | added p50 | added p99 | max req/s | CPU s/1000 req (kernel) | RSS idle (MB) | "
        "PSS / private idle (MB) | RSS loaded (MB) |\n");
    std::printf("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n");
    for (const auto& f : all) {
      auto list = [](const std::vector<std::pair<std::string, double>>& v) {
        std::string out;
        for (const auto& [n, mb] : v) out += (out.empty() ? "" : ", ") + n + " " + fmt(mb, 1);
        return out.empty() ? std::string("-") : out;
      };
      std::string shared;
      for (std::size_t i = 0; i < f.pssIdleMb.size() && i < f.privateIdleMb.size(); ++i)
        shared += (shared.empty() ? "" : ", ") + f.pssIdleMb[i].first + " " + fmt(f.pssIdleMb[i].second, 1) + " / " +
                  fmt(f.privateIdleMb[i].second, 1);
      std::printf("| %s | %.3f ms | %.3f ms | %.3f ms | %s | %s | %.0f | %s | %s | %s | %s |\n", f.name.c_str(), f.p50,
                  f.p90, f.p99, direct && &f != direct ? (fmt(f.p50 - direct->p50, 3) + " ms").c_str() : "-",
                  direct && &f != direct ? (fmt(f.p99 - direct->p99, 3) + " ms").c_str() : "-", f.maxRps,
                  f.name == "direct" ? "-" : (fmt(f.cpuPer1000, 3) + " (" + fmt(f.kernelPer1000, 3) + ")").c_str(),
                  list(f.rssIdleMb).c_str(), shared.empty() ? "-" : shared.c_str(), list(f.rssLoadedMb).c_str());
    }
    const Figures *mesh = nullptr, *best50 = nullptr, *best99 = nullptr, *bestMax = nullptr, *bestCpu = nullptr;
    for (const auto& f : all) {
      if (f.name == "meshd") mesh = &f;
      if (f.name != "haproxy" && f.name != "nginx") continue;
      if (!best50 || f.p50 < best50->p50) best50 = &f;
      if (!best99 || f.p99 < best99->p99) best99 = &f;
      if (!bestMax || f.maxRps > bestMax->maxRps) bestMax = &f;
      if (!bestCpu || f.cpuPer1000 < bestCpu->cpuPer1000) bestCpu = &f;
    }
    if (mesh && direct && best50) {
      std::printf("\nmeshd against the better of HAProxy and nginx in this run (target in brackets):\n");
      std::printf("  added latency p50: %.3f ms vs %.3f ms (%s): ratio %.2f [<= 0.5]\n", mesh->p50 - direct->p50,
                  best50->p50 - direct->p50, best50->name.c_str(),
                  (mesh->p50 - direct->p50) / (best50->p50 - direct->p50));
      std::printf("  added latency p99: %.3f ms vs %.3f ms (%s): ratio %.2f [<= 0.5]\n", mesh->p99 - direct->p99,
                  best99->p99 - direct->p99, best99->name.c_str(),
                  (mesh->p99 - direct->p99) / (best99->p99 - direct->p99));
      std::printf("  max throughput: %.0f vs %.0f req/s (%s): ratio %.2f [>= 1.3]\n", mesh->maxRps, bestMax->maxRps,
                  bestMax->name.c_str(), mesh->maxRps / bestMax->maxRps);
      std::printf("  CPU per 1,000 requests: %.3f vs %.3f s (%s): ratio %.2f [<= 0.5]\n", mesh->cpuPer1000,
                  bestCpu->cpuPer1000, bestCpu->name.c_str(), mesh->cpuPer1000 / bestCpu->cpuPer1000);
      // The kernel's part (loopback TCP, wake-ups) is work every proxy asks for per request; when
      // meshd's kernel time alone exceeds half of the other's total, the CPU target would need
      // fewer kernel operations per request than the other proxy makes, not faster code.
      std::printf("    of which kernel: meshd %.3f s, %s %.3f s; meshd user %.3f s vs %s %.3f s: ratio %.2f\n",
                  mesh->kernelPer1000, bestCpu->name.c_str(), bestCpu->kernelPer1000,
                  mesh->cpuPer1000 - mesh->kernelPer1000, bestCpu->name.c_str(),
                  bestCpu->cpuPer1000 - bestCpu->kernelPer1000,
                  (mesh->cpuPer1000 - mesh->kernelPer1000) / (bestCpu->cpuPer1000 - bestCpu->kernelPer1000));
      double worstIdle = 0;
      for (const auto& [n, mb] : mesh->rssIdleMb) worstIdle = std::max(worstIdle, mb);
      double worstPss = 0, worstPrivate = 0;
      for (const auto& [n, mb] : mesh->pssIdleMb) worstPss = std::max(worstPss, mb);
      for (const auto& [n, mb] : mesh->privateIdleMb) worstPrivate = std::max(worstPrivate, mb);
      std::printf("  RSS idle per meshd: %.1f MB [<= 15] (PSS %.1f MB, private %.1f MB)\n", worstIdle, worstPss,
                  worstPrivate);
    }
    if (!o_.svg.empty()) {
      std::string file = o_.svg;
      if (h2) {
        auto at = file.rfind("http1");
        file = at == std::string::npos ? file + ".http2.svg" : file.replace(at, 5, "http2");
      }
      writeSvg(all, direct, file, h2 ? "HTTP/2" : "HTTP/1.1");
    }
  }

  static std::string fmt(double v, int digits) {
    char b[32];
    std::snprintf(b, sizeof b, "%.*f", digits, v);
    return b;
  }

  // Two panels: latency added over direct (p50, p90, p99) and maximum throughput.
  void writeSvg(const std::vector<Figures>& all, const Figures* direct, const std::string& file, const char* proto) {
    std::vector<const Figures*> proxies;
    for (const auto& f : all) {
      if (&f != direct) proxies.push_back(&f);
    }
    double maxAdded = 0.001, maxRps = 1;
    for (auto* f : proxies) {
      maxAdded = std::max({maxAdded, f->p99 - (direct ? direct->p99 : 0), f->p50 - (direct ? direct->p50 : 0)});
      maxRps = std::max(maxRps, f->maxRps);
    }
    if (direct) maxRps = std::max(maxRps, direct->maxRps);
    std::ostringstream s;
    const int w = 760, h = 320;
    s << "<svg xmlns='http://www.w3.org/2000/svg' width='" << w << "' height='" << h
      << "' font-family='sans-serif' font-size='12'>\n";
    s << "<rect width='100%' height='100%' fill='white'/>\n";
    s << "<text x='10' y='18' font-size='14'>" << proto << ": latency added over direct at " << o_.rps
      << " req/s (ms)</text>\n";
    s << "<text x='400' y='18' font-size='14'>Maximum throughput (req/s)</text>\n";
    const char* colors[] = {"#4c78a8", "#f58518", "#54a24b"};
    const char* labels[] = {"p50", "p90", "p99"};
    for (int k = 0; k < 3; ++k) {
      s << "<rect x='" << 10 + 60 * k << "' y='295' width='10' height='10' fill='" << colors[k] << "'/><text x='"
        << 24 + 60 * k << "' y='304'>" << labels[k] << "</text>\n";
    }
    for (std::size_t i = 0; i < proxies.size(); ++i) {
      const auto* f = proxies[i];
      const double added[3] = {f->p50 - (direct ? direct->p50 : 0), f->p90 - (direct ? direct->p90 : 0),
                               f->p99 - (direct ? direct->p99 : 0)};
      const int x0 = 30 + static_cast<int>(i) * 110;
      for (int k = 0; k < 3; ++k) {
        const double v = std::max(0.0, added[k]);
        const int bh = static_cast<int>(220 * v / maxAdded);
        s << "<rect x='" << x0 + 28 * k << "' y='" << 270 - bh << "' width='24' height='" << bh << "' fill='"
          << colors[k] << "'/>\n";
        s << "<text x='" << x0 + 28 * k << "' y='" << 266 - bh << "' font-size='9'>" << fmt(added[k], 2) << "</text>\n";
      }
      s << "<text x='" << x0 << "' y='285'>" << f->name << "</text>\n";
    }
    std::vector<const Figures*> bars = proxies;
    if (direct) bars.insert(bars.begin(), direct);
    for (std::size_t i = 0; i < bars.size(); ++i) {
      const auto* f = bars[i];
      const int x0 = 410 + static_cast<int>(i) * 85;
      const int bh = static_cast<int>(220 * f->maxRps / maxRps);
      s << "<rect x='" << x0 << "' y='" << 270 - bh << "' width='60' height='" << bh << "' fill='#72b7b2'/>\n";
      s << "<text x='" << x0 << "' y='" << 266 - bh << "'>" << fmt(f->maxRps, 0) << "</text>\n";
      s << "<text x='" << x0 << "' y='285'>" << f->name << "</text>\n";
    }
    s << "</svg>\n";
    std::ofstream(file) << s.str();
    std::printf("plot written to %s\n", file.c_str());
  }

  Options o_;
  mesh::testing::LoopbackSubnet net_;
  mesh::testing::TempDir dir_{"mesh-bench-proxy"};
  std::string a_ = net_.address(1), b_ = net_.address(2), up_ = net_.address(3);
  std::optional<ChildProcess> upstream_, haA_, haB_, ngA_, ngB_;
  std::optional<mesh::testing::MeshdNode> meshdA_, meshdB_;
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"bench_proxy: a meshd pair against HAProxy and nginx pairs, TLS between, 1 kB responses"};
  Options o;
  app.add_option("--seconds", o.seconds, "Seconds of each measured run")->check(CLI::Range(2, 600));
  app.add_option("--rps", o.rps, "Fixed request rate for the latency run")->check(CLI::Range(10, 1000000));
  app.add_option("--clients", o.clients, "Connections for the fixed-rate run")->check(CLI::Range(1, 10000));
  app.add_option("--max-clients", o.maxClients, "Connections for the maximum-throughput run")
      ->check(CLI::Range(1, 10000));
  app.add_option("--max-requests", o.maxRequests, "Requests of the maximum-throughput run")
      ->check(CLI::Range(1000, 100000000));
  app.add_option("--streams", o.streams, "HTTP/2: concurrent streams per connection in the maximum-throughput run")
      ->check(CLI::Range(1, 1000));
  app.add_option("--protocols", o.protocols, "h1, h2 or h1,h2");
  app.add_option("--peer-protocol", o.peerProtocol, "meshd --peer-protocol (http1 or http2)");
  app.add_option("--svg", o.svg, "Write the HTTP/1.1 plot (SVG) here; the HTTP/2 one beside it (http1 -> http2)");
  app.add_flag("--compare-policy", o.comparePolicy,
               "Issue 8's policy benchmark: bare meshd against meshd with a 20-rule Route and every traffic filter "
               "(instead of HAProxy and nginx)");
  CLI11_PARSE(app, argc, argv);
  try {
    return Bench(o).run();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_proxy: %s\n", e.what());
    return 1;
  }
}
