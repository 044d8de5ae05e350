#pragma once
// Shared by the data-plane integration tests: meshd nodes with identities from the real
// meshcli (one trust domain), each on its own loopback address with its outbound listener on
// ADDR:15001 and inbound on ADDR:15006; real upstream servers (mesh_test_upstream) registered
// through each node's services directory; the load client (mesh_test_load).

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/http/client.h"
#include "tests/support/child_process.h"
#include "tests/support/env.h"
#include "tests/integration/policy_cluster.h"
#include "tests/support/meshd_node.h"

namespace mesh::testing {

inline std::string upstreamPath() { return MESH_TEST_UPSTREAM_PATH; }
inline std::string loadPath() { return MESH_TEST_LOAD_PATH; }

// A blocking TCP connection for raw bytes (requests the HTTP client would never send).
class RawConn {
 public:
  explicit RawConn(const HostPort& to, const std::string& from = {}) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    timeval tv{5, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (!from.empty()) {
      sockaddr_in src{};
      src.sin_family = AF_INET;
      ::inet_pton(AF_INET, from.c_str(), &src.sin_addr);
      ::bind(fd_, reinterpret_cast<sockaddr*>(&src), sizeof src);
    }
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(to.port);
    ::inet_pton(AF_INET, to.host.c_str(), &a.sin_addr);
    ok_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  }
  ~RawConn() { ::close(fd_); }
  bool ok() const { return ok_; }
  void send(const std::string& s) { (void)::send(fd_, s.data(), s.size(), MSG_NOSIGNAL); }
  // Reads until `until` appears, the peer closes, or 5 s pass.
  std::string readUntil(const std::string& until) {
    std::string out;
    char b[16384];
    while (out.find(until) == std::string::npos) {
      auto n = ::recv(fd_, b, sizeof b, 0);
      if (n <= 0) break;
      out.append(b, static_cast<std::size_t>(n));
    }
    return out;
  }
  std::string readAll() { return readUntil("\x01\x02never"); }
  int fd() const { return fd_; }

 private:
  int fd_ = -1;
  bool ok_ = false;
};

class ProxyCluster {
 public:
  ProxyCluster() { std::filesystem::create_directories(tmp.sub("ca")); }

  // meshcli ca init (once) and cert issue for node `name`; returns the tls dir.
  std::string issue(const std::string& name, const std::string& ca = "ca", const std::string& td = "test.mesh") {
    if (!std::filesystem::exists(tmp.sub(ca + "/ca.crt"))) {
      std::filesystem::remove_all(tmp.sub(ca));
      auto r = cli({"ca", "init", "--trust-domain", td, "--out", tmp.sub(ca)});
      if (r.status.code != 0) throw std::runtime_error("ca init: " + r.err);
    }
    const std::string dir = tmp.sub(name + "-" + ca + "-tls");
    auto r = cli({"cert", "issue", "--ca", tmp.sub(ca), "--node", name, "--out", dir});
    if (r.status.code != 0) throw std::runtime_error("cert issue: " + r.err);
    return dir;
  }

  RunResult cli(const std::vector<std::string>& args, std::chrono::milliseconds timeout = std::chrono::seconds(60)) {
    return meshcli(args, tmp.path(), timeout);
  }

  // Publishes (signed by tmp/op.key, through node 1, --wait) a DestinationPolicy giving
  // `serviceName` the load balancer `lb` (YAML flow map); true once node 1's proxy applies it
  // (its /v1/proxy shows `algorithm`, e.g. "ring_hash").
  bool publishLoadBalancer(const std::string& serviceName, const std::string& lb, const std::string& algorithm) {
    const std::string file = tmp.sub("dp-" + serviceName + ".yaml");
    writeFile(file, "kind: DestinationPolicy\nmetadata: {name: " + serviceName + "}\nspec:\n  service: " + serviceName +
                        "\n  trafficPolicy:\n    loadBalancer: " + lb + "\n");
    auto r = cli({"policy", "publish", file, "--key", tmp.sub("op.key"), "--node", node(1).admin().toString(), "--wait"});
    if (r.status.code != 0) throw std::runtime_error("policy publish: " + r.out + r.err);
    return eventually([&] { return node(1).get("/v1/proxy")->body.find("\"" + algorithm + "\"") != std::string::npos; },
                      std::chrono::seconds(10));
  }

  std::string address(int i) const { return net.address(i); }
  std::string name(int i) const { return "p" + std::to_string(i); }
  std::string servicesDir(int i) const { return tmp.sub("svc" + std::to_string(i)); }
  HostPort outbound(int i) const { return HostPort{address(i), 15001, false, true}; }
  HostPort inbound(int i) const { return HostPort{address(i), 15006, false, true}; }
  MeshdNode& node(int i) { return nodes.at(static_cast<std::size_t>(i - 1)); }

  // Starts nodes 1..n (node i joins node 1).
  void start(int n, const std::vector<std::string>& extra = {}) {
    for (int i = 1; i <= n; ++i) {
      std::filesystem::create_directories(servicesDir(i));
      std::vector<std::string> args = {
          "--tls-dir",      issue(name(i)),        "--outbound",       outbound(i).toString(),
          "--inbound",      inbound(i).toString(), "--workers",        "1",
          "--services-dir", servicesDir(i),        "--gossip-profile", "local"};
      args.insert(args.end(), extra.begin(), extra.end());
      if (auto it = nodeArgs.find(i); it != nodeArgs.end()) args.insert(args.end(), it->second.begin(), it->second.end());
      if (i > 1) args.insert(args.end(), {"--join", address(1) + ":7946"});
      nodes.emplace_back(MeshdOptions{.name = name(i),
                                      .address = address(i),
                                      .dataDir = tmp.sub("d" + std::to_string(i)),
                                      .logDir = tmp.path(),
                                      .extraArgs = args});
    }
    for (auto& node : nodes) node.start();
    for (auto& node : nodes) {
      if (!node.waitReady())
        throw std::runtime_error(node.options().name + " not ready: " + node.process().stderrText());
    }
    if (!everyNodeSeesAlive(nodes, static_cast<std::size_t>(n), std::chrono::seconds(30))) {
      throw std::runtime_error("the nodes did not all see each other");
    }
  }

  // A real upstream on node i's address; `args` as mesh_test_upstream takes them.
  ChildProcess& upstream(int i, std::uint16_t port, const std::string& upstreamName,
                         std::vector<std::string> args = {}) {
    std::vector<std::string> argv{upstreamPath(), "--listen", address(i) + ":" + std::to_string(port), "--name",
                                  upstreamName};
    argv.insert(argv.end(), args.begin(), args.end());
    upstreams.push_back(ChildProcess::start(argv, tmp.path(), "upstream-" + upstreamName));
    auto& p = upstreams.back();
    eventually([&] { return p.stdoutText().find("ready") != std::string::npos; }, std::chrono::seconds(10));
    return p;
  }

  // Registers a service instance on node i (its services directory; the node re-reads it).
  void service(int i, const std::string& id, const std::string& serviceName, std::uint16_t port,
               const std::string& protocol = "http", const std::string& extra = "") {
    std::ofstream(servicesDir(i) + "/" + id + ".yaml")
        << "service:\n  id: " << id << "\n  name: " << serviceName << "\n  address: " << address(i)
        << "\n  port: " << port << "\n  protocol: " << protocol << "\n"
        << extra << "  checks:\n    - tcp: " << address(i) << ":" << port
        << "\n      interval: 1s\n      timeout: 500ms\n      success_before_passing: 1\n";
  }
  // The common start: two nodes; on node 2 an upstream (`args` as mesh_test_upstream takes them)
  // registered as instance NAME-1 of service NAME; node 1 routes to it.
  void twoNodesServing(const std::string& serviceName, std::uint16_t port, const std::string& protocol = "http",
                       const std::vector<std::string>& args = {}) {
    start(2);
    upstream(2, port, serviceName + "-b", args);
    service(2, serviceName + "-1", serviceName, port, protocol);
    if (!waitEndpoints(1, serviceName, 1) || !waitEndpoints(2, serviceName, 1)) {
      throw std::runtime_error("node 1 never routed " + serviceName + " to node 2");
    }
  }
  // n nodes; nodes 2..n each run an upstream PREFIX-i registered as instance PREFIX-i of the
  // service; node 1 routes to all of them.
  void nodesServing(int n, const std::string& serviceName, std::uint16_t port, const std::string& prefix) {
    start(n);
    for (int i = 2; i <= n; ++i) {
      upstream(i, port, prefix + "-" + std::to_string(i));
      service(i, prefix + "-" + std::to_string(i), serviceName, port);
    }
    if (!waitEndpoints(1, serviceName, static_cast<std::size_t>(n - 1))) {
      throw std::runtime_error("node 1 never routed " + serviceName + " to every other node");
    }
  }
  void removeService(int i, const std::string& id) { std::filesystem::remove(servicesDir(i) + "/" + id + ".yaml"); }

  // The endpoints node i's proxy routes `service` to ("node/instance"), from GET /v1/proxy.
  std::vector<std::string> endpoints(int i, const std::string& serviceName) {
    std::vector<std::string> out;
    auto r = node(i).get("/v1/proxy");
    if (!r.ok() || r->status != 200) return out;
    auto j = nlohmann::json::parse(r->body, nullptr, false);
    if (j.is_discarded() || !j.contains("clusters") || !j["clusters"].contains(serviceName)) return out;
    for (const auto& e : j["clusters"][serviceName]["endpoints"])
      out.push_back(e.value("node", "") + "/" + e.value("instance", ""));
    std::sort(out.begin(), out.end());
    return out;
  }
  bool waitEndpoints(int i, const std::string& serviceName, std::size_t count,
                     std::chrono::milliseconds timeout = std::chrono::seconds(30)) {
    return eventually([&] { return endpoints(i, serviceName).size() == count; }, timeout,
                      std::chrono::milliseconds(50));
  }

  // One request through node i's outbound listener.
  Result<http::Response> request(int i, const std::string& host, const std::string& method, const std::string& target,
                                 const std::string& body = {}, http::Headers headers = {}) {
    http::ClientOptions o;
    o.headers = std::move(headers);
    o.headers.emplace_back("Host", host);
    return http::request(outbound(i), method, target, body, o);
  }

  // mesh_test_load through node i's outbound listener; its JSON.
  nlohmann::json load(int i, const std::string& host, const std::vector<std::string>& args) {
    std::vector<std::string> argv{loadPath(), "--target", outbound(i).toString(), "--host", host};
    argv.insert(argv.end(), args.begin(), args.end());
    auto r = run(argv, std::chrono::seconds(120), tmp.path());
    auto j = nlohmann::json::parse(r.out, nullptr, false);
    if (j.is_discarded()) throw std::runtime_error("mesh_test_load: " + r.out + r.err);
    return j;
  }

  // A counter's value from node i's /metrics (the sum over series whose labels include all of
  // `labels`, written as in the exposition: direction="outbound").
  double metric(int i, const std::string& metricName, const std::vector<std::string>& labels = {}) {
    auto r = node(i).get("/metrics");
    if (!r.ok()) return -1;
    double sum = 0;
    std::istringstream in(r->body);
    std::string line;
    while (std::getline(in, line)) {
      if (!line.starts_with(metricName + "{") && !line.starts_with(metricName + " ")) continue;
      bool all = true;
      for (const auto& l : labels) all = all && line.find(l) != std::string::npos;
      if (!all) continue;
      sum += std::stod(line.substr(line.rfind(' ') + 1));
    }
    return sum;
  }

  // Metrics are counted when a request's logging phase runs, just after its response is
  // written: a test reading them right after a response waits a little.
  bool metricAtLeast(int i, const std::string& metricName, const std::vector<std::string>& labels, double min) {
    return eventually([&] { return metric(i, metricName, labels) >= min; }, std::chrono::seconds(5),
                      std::chrono::milliseconds(20));
  }

  std::map<int, std::vector<std::string>> nodeArgs;  // more flags for one node (before start)
  LoopbackSubnet net;
  TempDir tmp{"mesh-proxy"};
  std::vector<MeshdNode> nodes;
  std::vector<ChildProcess> upstreams;
};

// An RFC 6455 frame as a client sends it: FIN, the opcode (1 text, 8 close), a masked payload
// of under 126 bytes.
inline std::string wsFrame(int opcode, const std::string& payload) {
  std::string f;
  f.push_back(static_cast<char>(0x80 | opcode));
  f.push_back(static_cast<char>(0x80 | payload.size()));
  const char mask[4] = {0x11, 0x22, 0x33, 0x44};
  f.append(mask, 4);
  for (std::size_t i = 0; i < payload.size(); ++i) f.push_back(static_cast<char>(payload[i] ^ mask[i % 4]));
  return f;
}

}  // namespace mesh::testing
