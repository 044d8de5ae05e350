// meshd and meshcli as real processes on their own loopback addresses: the admin API over real
// HTTP, orderly stop on SIGTERM, and the one-line errors with exit status 2 for bad config.

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <signal.h>

#include <arpa/inet.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <regex>

#include "common/http/message.h"
#include "tests/support/child_process.h"
#include "tests/support/env.h"
#include "tests/support/meshd_node.h"

namespace mesh::testing {
namespace {

using namespace std::chrono_literals;

int countLines(const std::string& s) {
  int n = 0;
  for (char c : s) n += c == '\n';
  return n;
}

TEST(MeshdProcess, TwoNodesServeTheAdminApiAndStopOnSigterm) {
  LoopbackSubnet net(1);  // 127.0.1.1 and 127.0.1.2, as the issue asks
  TempDir tmp;
  std::vector<MeshdNode> nodes;
  for (int i = 1; i <= 2; ++i) {
    nodes.emplace_back(MeshdOptions{.name = "node-" + std::to_string(i),
                                    .address = net.address(i),
                                    .dataDir = tmp.sub("data-" + std::to_string(i)),
                                    .logDir = tmp.path(),
                                    .extraArgs = {"--cluster", "it", "--log-format", "json"}});
  }
  for (auto& n : nodes) n.start();
  for (auto& n : nodes) ASSERT_TRUE(n.waitReady()) << n.process().stderrText();

  for (auto& n : nodes) {
    SCOPED_TRACE(n.options().name);
    auto health = n.get("/healthz");
    ASSERT_TRUE(health.ok()) << health.error().message();
    EXPECT_EQ(health->status, 200);
    EXPECT_EQ(health->body, "ok\n");

    auto metrics = n.get("/metrics");
    ASSERT_TRUE(metrics.ok());
    EXPECT_EQ(metrics->status, 200);
    EXPECT_EQ(http::findHeader(metrics->headers, "Content-Type"),
              "text/plain; version=0.0.4; charset=utf-8");
    const std::string& m = metrics->body;
    EXPECT_TRUE(std::regex_search(m, std::regex("\nmesh_build_info\\{version=\"[0-9.]+\",commit=\"[^\"]+\","
                                                "compiler=\"[^\"]+\",role=\"node\"\\} 1\n")))
        << m;
    std::smatch up, rss, cpu;
    ASSERT_TRUE(std::regex_search(m, up, std::regex("\nmesh_node_uptime_seconds ([0-9.e-]+)\n")));
    EXPECT_GT(std::stod(up[1]), 0.0);
    ASSERT_TRUE(std::regex_search(m, rss, std::regex("\nprocess_resident_memory_bytes ([0-9.e+]+)\n")));
    EXPECT_GT(std::stod(rss[1]), 1e6);
    ASSERT_TRUE(std::regex_search(m, cpu, std::regex("\nprocess_cpu_seconds_total ([0-9.e+-]+)\n")));
    EXPECT_GE(std::stod(cpu[1]), 0.0);
    // Every sample line is "name[{labels}] value"; comments are HELP or TYPE.
    std::istringstream lines(m);
    std::string line;
    std::regex sample("^[a-zA-Z_:][a-zA-Z0-9_:]*(\\{.*\\})? [-+0-9.eInfNa]+$");
    std::regex comment("^# (HELP|TYPE) [a-zA-Z_:][a-zA-Z0-9_:]* .+$");
    while (std::getline(lines, line)) {
      EXPECT_TRUE(std::regex_match(line, sample) || std::regex_match(line, comment)) << line;
    }

    auto self = n.get("/v1/self");
    ASSERT_TRUE(self.ok());
    EXPECT_EQ(self->status, 200);
    EXPECT_EQ(http::findHeader(self->headers, "Content-Type"), "application/json");
    auto j = nlohmann::json::parse(self->body);
    EXPECT_EQ(j["name"], n.options().name);
    EXPECT_EQ(j["cluster"], "it");
    EXPECT_EQ(j["role"], "node");
    EXPECT_TRUE(std::regex_match(j["version"].get<std::string>(), std::regex("[0-9]+\\.[0-9]+\\.[0-9]+")));
    EXPECT_EQ(j["addresses"]["gossip_bind"], n.gossipAddress());
    EXPECT_EQ(j["addresses"]["gossip_advertise"], n.gossipAddress());
    EXPECT_EQ(j["addresses"]["admin"], n.admin().toString());
    EXPECT_EQ(j["pid"], n.process().pid());

    auto missing = n.get("/v1/nope");
    ASSERT_TRUE(missing.ok());
    EXPECT_EQ(missing->status, 404);
  }

  // meshcli against each node: the table, and --json.
  for (auto& n : nodes) {
    auto table = run({meshcliPath(), "--node", n.admin().toString(), "status"}, 10s, tmp.path());
    EXPECT_EQ(table.status.code, 0) << table.err;
    EXPECT_NE(table.out.find("NAME      " + n.options().name + "\n"), std::string::npos) << table.out;
    EXPECT_NE(table.out.find("CLUSTER   it\n"), std::string::npos);
    auto json = run({meshcliPath(), "--node", n.admin().toString(), "status", "--json"}, 10s, tmp.path());
    ASSERT_EQ(json.status.code, 0) << json.err;
    EXPECT_EQ(nlohmann::json::parse(json.out)["name"], n.options().name);
  }

  // JSON log lines: every line of stderr parses.
  std::istringstream logLines(nodes[0].process().stderrText());
  std::string logLine;
  int parsed = 0;
  while (std::getline(logLines, logLine)) {
    auto j = nlohmann::json::parse(logLine);
    EXPECT_TRUE(j.contains("ts") && j.contains("level") && j.contains("msg"));
    ++parsed;
  }
  EXPECT_GE(parsed, 1);

  // SIGTERM: both exit 0, each within 2 s.
  for (auto& n : nodes) n.process().signal(SIGTERM);
  for (auto& n : nodes) {
    auto started = std::chrono::steady_clock::now();
    auto st = n.process().wait(2s);
    ASSERT_TRUE(st.has_value()) << n.options().name << " still running 2 s after SIGTERM";
    EXPECT_TRUE(st->exited);
    EXPECT_EQ(st->code, 0) << n.process().stderrText();
    EXPECT_LT(std::chrono::steady_clock::now() - started, 2s);
  }
}

TEST(MeshdProcess, SigintAlsoStopsCleanlyWithAnOpenAdminConnection) {
  LoopbackSubnet net;
  TempDir tmp;
  MeshdNode n(MeshdOptions{.name = "a", .address = net.address(1), .dataDir = tmp.sub("d"), .logDir = tmp.path()});
  n.start();
  ASSERT_TRUE(n.waitReady());
  // An idle keep-alive client must not hold up the stop.
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(n.admin().port);
  ::inet_pton(AF_INET, n.admin().host.c_str(), &sa.sin_addr);
  ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
  n.process().signal(SIGINT);
  auto st = n.process().wait(2s);
  ::close(fd);
  ASSERT_TRUE(st.has_value());
  EXPECT_EQ(st->code, 0);
}

struct BadConfigCase {
  const char* name;
  std::string yaml;
  std::string expected;  // a regex the one stderr line must match
};

TEST(MeshdProcess, BadConfigExitsTwoWithOneLineNamingTheProblem) {
  TempDir tmp;
  const std::string unwritable = ::geteuid() == 0 ? "/sys/kernel" : tmp.sub("ro");
  if (::geteuid() != 0) ::mkdir(unwritable.c_str(), 0500);
  std::vector<BadConfigCase> cases = {
      {"unknown-key", "cluster: a\nclustr: b\n", "unknown key 'clustr' \\(line 2\\)"},
      {"malformed-yaml", "cluster: [a\n", "malformed YAML at line 2, column 1"},
      {"bad-address", "bind: 127.0.0.300:7946\n", "key 'bind' \\(line 1\\): '127.0.0.300:7946' is not a valid address"},
      {"bad-admin-address", "admin: 127.0.0.1:99999\n", "key 'admin' \\(line 1\\): .*port must be a number"},
      {"unwritable-data-dir", "data-dir: " + unwritable + "\n", "data-dir " + unwritable + ": not writable"},
      {"missing-data-dir-parent", "data-dir: " + tmp.sub("no/such/dir") + "\n", "parent directory .* does not exist"},
      {"bad-role", "role: master\n", "key 'role' \\(line 1\\): role must be node or edge"},
      {"missing-trusted-key", "policy-trusted-key: [" + tmp.sub("nope.pub") + "]\n", "policy-trusted-key .*nope.pub: cannot read"},
      {"not-a-key", "policy-trusted-key: [/etc/hostname]\n", "policy-trusted-key /etc/hostname: not an Ed25519 public key"},
      {"bad-threshold", "policy-threshold: 0\n", "key 'policy-threshold' \\(line 1\\): '0' is not a threshold from 1 to 16"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    std::string file = tmp.sub(std::string(c.name) + ".yaml");
    std::ofstream(file) << c.yaml;
    auto r = run({meshdPath(), "--config", file, "--admin", "127.0.0.1:0"}, 10s, tmp.path());
    EXPECT_TRUE(r.status.exited);
    EXPECT_EQ(r.status.code, 2);
    EXPECT_EQ(countLines(r.err), 1) << r.err;
    EXPECT_TRUE(std::regex_search(r.err, std::regex("^meshd: error: .*" + c.expected)))
        << r.err;
  }
}

TEST(MeshdProcess, BadFlagsExitTwo) {
  TempDir tmp;
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"--bogus"}, {"--bind", "nope"}, {"--log-level", "loud"},
        {"--config", tmp.sub("missing.yaml")}, {"--join", "1.2.3.4:x"}}) {
    std::vector<std::string> argv{meshdPath()};
    argv.insert(argv.end(), args.begin(), args.end());
    auto r = run(argv, 10s, tmp.path());
    EXPECT_EQ(r.status.code, 2) << args[0];
    EXPECT_EQ(countLines(r.err), 1) << r.err;
    EXPECT_EQ(r.err.rfind("meshd: error: ", 0), 0u) << r.err;
  }
}

TEST(MeshdProcess, AdminAddressInUseExitsOne) {
  LoopbackSubnet net;
  TempDir tmp;
  MeshdNode a(MeshdOptions{.name = "a", .address = net.address(1), .dataDir = tmp.sub("a"), .logDir = tmp.path()});
  a.start();
  ASSERT_TRUE(a.waitReady());
  auto r = run({meshdPath(), "--node-name", "b", "--bind", net.address(2) + ":7946", "--admin",
                a.admin().toString(), "--data-dir", tmp.sub("b")},
               10s, tmp.path());
  EXPECT_EQ(r.status.code, 1);
  EXPECT_NE(r.err.find("admin address " + a.admin().toString() + ": cannot listen"), std::string::npos) << r.err;
}

TEST(MeshdProcess, DataDirInUseByAnotherMeshdExitsTwo) {
  LoopbackSubnet net;
  TempDir tmp;
  MeshdNode a(MeshdOptions{.name = "a", .address = net.address(1), .dataDir = tmp.sub("d"), .logDir = tmp.path()});
  a.start();
  ASSERT_TRUE(a.waitReady());
  auto r = run({meshdPath(), "--node-name", "b", "--bind", net.address(2) + ":7946", "--admin",
                net.address(2) + ":15000", "--data-dir", tmp.sub("d")},
               10s, tmp.path());
  EXPECT_EQ(r.status.code, 2);
  EXPECT_NE(r.err.find("in use by another meshd (pid " + std::to_string(a.process().pid()) + ")"),
            std::string::npos)
      << r.err;
}

TEST(MeshdProcess, VersionAndHelp) {
  TempDir tmp;
  auto v = run({meshdPath(), "--version"}, 10s, tmp.path());
  EXPECT_EQ(v.status.code, 0);
  EXPECT_TRUE(std::regex_search(v.out, std::regex("^meshd [0-9]+\\.[0-9]+\\.[0-9]+ \\(commit ")));
  auto h = run({meshdPath(), "--help"}, 10s, tmp.path());
  EXPECT_EQ(h.status.code, 0);
  EXPECT_NE(h.out.find("--data-dir"), std::string::npos);
  auto cv = run({meshcliPath(), "--version"}, 10s, tmp.path());
  EXPECT_EQ(cv.status.code, 0);
  EXPECT_EQ(cv.out.rfind("meshcli ", 0), 0u);
}

TEST(MeshcliProcess, KeygenWritesAPrivateKeyOnlyItsOwnerCanRead) {
  TempDir tmp;
  auto r = run({meshcliPath(), "keygen", "--out", tmp.sub("ops")}, 10s, tmp.path());
  ASSERT_EQ(r.status.code, 0) << r.err;
  EXPECT_NE(r.out.find("Key id: "), std::string::npos) << r.out;
  struct stat st{};
  ASSERT_EQ(::stat(tmp.sub("ops.key").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_EQ(::stat(tmp.sub("ops.pub").c_str(), &st), 0);
  // An existing key is never overwritten.
  auto again = run({meshcliPath(), "keygen", "--out", tmp.sub("ops")}, 10s, tmp.path());
  EXPECT_EQ(again.status.code, 1);
  EXPECT_NE(again.err.find("ops.key: cannot create: File exists"), std::string::npos) << again.err;
  EXPECT_EQ(run({meshcliPath(), "keygen"}, 10s, tmp.path()).status.code, 2);
}

TEST(MeshcliProcess, CaAndNodeCertificatesGiveMeshdItsIdentity) {
  TempDir tmp;
  LoopbackSubnet net;
  auto ca = run({meshcliPath(), "ca", "init", "--trust-domain", "test.mesh", "--out", tmp.sub("ca")}, 10s, tmp.path());
  ASSERT_EQ(ca.status.code, 0) << ca.err;
  EXPECT_NE(ca.out.find("Trust domain test.mesh"), std::string::npos) << ca.out;
  auto cert = run({meshcliPath(), "cert", "issue", "--ca", tmp.sub("ca"), "--node", "id-1", "--out", tmp.sub("id-1")}, 10s, tmp.path());
  ASSERT_EQ(cert.status.code, 0) << cert.err;
  EXPECT_NE(cert.out.find("Identity spiffe://test.mesh/node/id-1"), std::string::npos) << cert.out;
  struct stat st{};
  for (const char* f : {"ca/ca.key", "id-1/node.key", "id-1/node-ca.key"}) {
    ASSERT_EQ(::stat(tmp.sub(f).c_str(), &st), 0) << f;
    EXPECT_EQ(st.st_mode & 0777, 0600u) << f;
  }
  MeshdNode n(MeshdOptions{.name = "id-1", .address = net.address(1), .dataDir = tmp.sub("d1"), .logDir = tmp.path(),
                           .extraArgs = {"--tls-dir", tmp.sub("id-1")}});
  n.start();
  ASSERT_TRUE(n.waitReady()) << n.process().stderrText();
  auto self = nlohmann::json::parse(n.get("/v1/self")->body);
  EXPECT_EQ(self["identity"]["spiffe_id"], "spiffe://test.mesh/node/id-1");
  EXPECT_EQ(self["identity"]["trust_domain"], "test.mesh");
  EXPECT_NE(n.get("/metrics")->body.find("mesh_tls_cert_expiry_timestamp_seconds"), std::string::npos);
  n.stop();
  // Another node's certificate, or a directory without one: meshd does not start.
  auto wrong = run({meshdPath(), "--node-name", "id-2", "--bind", net.address(2) + ":7946", "--admin", net.address(2) + ":15000",
                    "--data-dir", tmp.sub("d2"), "--tls-dir", tmp.sub("id-1")},
                   10s, tmp.path());
  EXPECT_EQ(wrong.status.code, 2);
  EXPECT_NE(wrong.err.find("holds the certificate of spiffe://test.mesh/node/id-1, not of this node"), std::string::npos) << wrong.err;
  auto none = run({meshdPath(), "--node-name", "id-2", "--bind", net.address(2) + ":7946", "--admin", net.address(2) + ":15000",
                   "--data-dir", tmp.sub("d2"), "--tls-dir", tmp.sub("ca")},
                  10s, tmp.path());
  EXPECT_EQ(none.status.code, 2);
  EXPECT_NE(none.err.find("node.crt: cannot read"), std::string::npos) << none.err;
  // Issuing again into the same directory refuses and keeps the keys.
  auto again = run({meshcliPath(), "cert", "issue", "--ca", tmp.sub("ca"), "--node", "id-1", "--out", tmp.sub("id-1")}, 10s, tmp.path());
  EXPECT_EQ(again.status.code, 1);
  EXPECT_NE(again.err.find("exists: remove the old files first"), std::string::npos) << again.err;
}

TEST(MeshcliProcess, UnreachableNodeExitsOneWithAClearError) {
  TempDir tmp;
  auto r = run({meshcliPath(), "--node", "127.0.0.1:1", "status"}, 10s, tmp.path());
  EXPECT_EQ(r.status.code, 1);
  EXPECT_EQ(countLines(r.err), 1);
  EXPECT_EQ(r.err.rfind("meshcli: error: cannot reach node at 127.0.0.1:1: ", 0), 0u) << r.err;
  auto bad = run({meshcliPath(), "--node", "not an address", "status"}, 10s, tmp.path());
  EXPECT_EQ(bad.status.code, 2);
}

}  // namespace
}  // namespace mesh::testing
