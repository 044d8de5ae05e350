// Signed policy at scale. Two parts:
//
// 1. Size on the wire of 1,000 routes: 1,000 Route documents as operators write them (two rules
//    each: a header match with a 90/10 split and retries, and a default), as YAML, as signed
//    records (what a pull carries and RocksDB stores), and as gossip digests (how many packets
//    announce all of them, and the versions list anti-entropy exchanges).
// 2. Dissemination of one new version to 10,000 nodes, simulated: N Dissemination instances
//    (the code meshd runs) on virtual time, each holding `--documents` documents; packets and
//    streams with 0.2-2 ms of delay and optional loss. One node takes a newly signed version;
//    every node that pulls it checks it as a node does (decodes the record, verifies the
//    Ed25519 signature against the trusted key, checks the digest and the body). Prints the
//    time until every node holds it (p50, p99 over nodes) and the bytes sent per node.
// Prints figures; asserts nothing.
//
//   bench_policy_sim [--nodes 10000] [--documents 100] [--loss 0]

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>

#include <CLI/CLI.hpp>

#include "common/process.h"
#include "gossip/dissem/dissemination.h"
#include "node/policy/bundle.h"
#include "node/policy/document.h"
#include "node/policy/policy_store.h"
#include "tests/bench/dissem_sim.h"

using namespace std::chrono_literals;
using mesh::Duration;
using mesh::Result;
namespace policy = mesh::policy;

namespace {

std::string routeYaml(int i) {
  const std::string s = "svc-" + std::to_string(i);
  return "apiVersion: mesh/v1\nkind: Route\nmetadata:\n  name: " + s + "\nspec:\n  hosts: [" + s +
         "]\n  http:\n    - name: canary\n      match:\n        - headers:\n            x-canary: {exact: \"true\"}\n"
         "          path: {prefix: /api}\n      route:\n        - destination: {service: " + s + ", subset: v1}\n"
         "          weight: 90\n        - destination: {service: " + s + ", subset: v2}\n          weight: 10\n"
         "      timeout: 2s\n      retries: {attempts: 3, perTryTimeout: 500ms, retryOn: [5xx, reset]}\n"
         "    - route:\n        - destination: {service: " + s + "}\n";
}

void sizes(const policy::KeyPair& key) {
  std::size_t yaml = 0, bodies = 0, records = 0;
  std::vector<mesh::dissem::Digest> digests;
  std::map<std::string, std::uint64_t> versions;
  for (int i = 0; i < 1000; ++i) {
    auto text = routeYaml(i);
    yaml += text.size();
    auto r = policy::parseDocuments(text, "bench.yaml");
    if (!r.problems.empty()) {
      std::fprintf(stderr, "%s\n", r.problems[0].str().c_str());
      return;
    }
    auto s = policy::signDocument(r.documents[0], 1, 1'800'000'000, 0, {key});
    bodies += s->body.size();
    records += policy::encodeSigned(*s).size();
    digests.push_back({2, s->key(), policy::PolicyStore::packedVersion(*s)});
    versions[s->key()] = policy::PolicyStore::packedVersion(*s);
  }
  // Digest packets as dissemination cuts them (at most 1,200 bytes each).
  std::size_t packets = 0, packetBytes = 0;
  std::vector<mesh::dissem::Digest> batch;
  std::size_t batchBytes = 0;
  auto flush = [&] {
    if (batch.empty()) return;
    packetBytes += mesh::dissem::encodeDigests("node-0001", batch).size();
    ++packets;
    batch.clear();
    batchBytes = 0;
  };
  for (const auto& d : digests) {
    const std::size_t one = mesh::dissem::encodeDigests("node-0001", {d}).size() - mesh::dissem::encodeDigests("node-0001", {}).size();
    if (batchBytes + one > 1100) flush();
    batch.push_back(d);
    batchBytes += one;
  }
  flush();
  std::printf("1,000 routes (2 rules each, signed by 1 key):\n");
  std::printf("  YAML source           %8.1f kB (%.0f bytes a route)\n", yaml / 1e3, yaml / 1000.0);
  std::printf("  bodies (Cap'n Proto)  %8.1f kB (%.0f bytes a route)\n", bodies / 1e3, bodies / 1000.0);
  std::printf("  signed records        %8.1f kB (%.0f bytes a route: the body, envelope and 64-byte signature, packed); what pulls carry and RocksDB holds\n",
              records / 1e3, records / 1000.0);
  std::printf("  gossip digests        %8.1f kB in %zu packets of <= 1,200 bytes to announce all 1,000 (each goes to 3 peers, retransmitted)\n",
              packetBytes / 1e3, packets);
  std::printf("  anti-entropy          8-byte hash each round; the versions list when hashes differ: %.1f kB\n",
              (versions.size() * 24 + [&] {
                std::size_t k = 0;
                for (const auto& [key, v] : versions) k += key.size();
                return k;
              }()) / 1e3);
}

struct Sim;

// A node's policy as dissemination sees it: the version held per document, and the check a node
// runs on every pulled record.
struct SimNode : mesh::dissem::Records, mesh::bench::SimWiring {
  Sim* sim = nullptr;
  std::uint32_t id = 0;
  std::string name;
  std::map<std::string, std::uint64_t> held;
  std::uint64_t h = 0;
  double gotAt = -1;

  std::map<std::string, std::uint64_t> versions() override { return held; }
  std::uint64_t version(const std::string& key) override {
    auto it = held.find(key);
    return it == held.end() ? 0 : it->second;
  }
  std::uint64_t hash() override { return h; }
  std::optional<std::pair<std::uint64_t, std::string>> body(const std::string& key) override;
  bool offer(const std::string& key, std::uint64_t version, std::string_view body) override;
  void set(const std::string& key, std::uint64_t v) {
    h ^= mesh::dissem::entryHash(key, held[key]);
    held[key] = v;
    h ^= mesh::dissem::entryHash(key, v);
  }
};

struct Sim : mesh::bench::SimFabric {
  std::vector<std::unique_ptr<SimNode>> nodes;
  std::map<std::string, std::string> records;  // key -> the signed record of its latest version
  std::vector<policy::PublicKey> trusted;
  std::uint64_t verified = 0;
  mesh::TimePoint start;
};

std::optional<std::pair<std::uint64_t, std::string>> SimNode::body(const std::string& key) {
  auto it = held.find(key);
  if (it == held.end()) return std::nullopt;
  return std::pair{it->second, sim->records.at(key)};
}

bool SimNode::offer(const std::string& key, std::uint64_t version, std::string_view body) {
  if (version <= this->version(key)) return false;
  auto s = policy::decodeSigned(body);
  if (!s || s->key() != key || policy::PolicyStore::packedVersion(*s) != version) return false;
  if (policy::verify(s->envelope, s->body, sim->trusted, 1, 1'800'000'000)) return false;
  if (!policy::validateBody(*policy::parseKind(s->envelope.kind), s->envelope.name, s->body).empty()) return false;
  ++sim->verified;
  set(key, version);
  gotAt = std::chrono::duration<double>(sim->clock.now() - sim->start).count();
  return true;
}

double pct(std::vector<double> v, double p) {
  if (v.empty()) return -1;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<std::size_t>(p / 100.0 * double(v.size())))];
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"bench_policy_sim: signed policy sizes, and dissemination to 10,000 nodes simulated"};
  int n = 10000, documents = 100;
  double loss = 0;
  app.add_option("--nodes", n)->check(CLI::Range(10, 100000));
  app.add_option("--documents", documents, "documents every node already holds")->check(CLI::Range(1, 10000));
  app.add_option("--loss", loss, "packet loss (streams are reliable)")->check(CLI::Range(0.0, 0.9));
  CLI11_PARSE(app, argc, argv);

  auto key = policy::generateKey();
  if (!key) return 1;
  sizes(*key);

  Sim sim;
  sim.rng.seed(11);
  sim.loss = loss;
  sim.trusted = {policy::PublicKey{key->publicKey, key->keyId}};
  const auto t0 = std::chrono::steady_clock::now();
  std::map<std::string, std::uint64_t> initial;
  for (int i = 0; i < documents; ++i) {
    auto doc = policy::parseDocuments(routeYaml(i), "b.yaml").documents.at(0);
    auto s = *policy::signDocument(doc, 1, 1'800'000'000, 0, {*key});
    sim.records[s.key()] = policy::encodeSigned(s);
    initial[s.key()] = policy::PolicyStore::packedVersion(s);
  }
  std::uint64_t initialHash = mesh::dissem::versionsHash(initial);
  for (int i = 0; i < n; ++i) sim.names.push_back("n" + std::to_string(i));
  for (int i = 0; i < n; ++i) {
    auto node = std::make_unique<SimNode>();
    node->sim = &sim;
    node->id = static_cast<std::uint32_t>(i);
    node->name = sim.names[static_cast<std::size_t>(i)];
    node->held = initial;
    node->h = initialHash;
    node->wire(sim, node->id, 2, "policy", *node);
    sim.nodes.push_back(std::move(node));
  }
  const double restBytes = mesh::bench::startAndMeasureRest(sim);

  // A new version of one document, published to node 0.
  auto doc = policy::parseDocuments(routeYaml(0), "b.yaml").documents.at(0);
  auto v2 = *policy::signDocument(doc, 2, 1'800'000'000, 0, {*key});
  sim.records[v2.key()] = policy::encodeSigned(v2);
  sim.bytes = 0;
  sim.start = sim.clock.now();
  auto& origin = *sim.nodes[0];
  origin.set(v2.key(), policy::PolicyStore::packedVersion(v2));
  origin.gotAt = 0;
  origin.d->announce(2, v2.key(), policy::PolicyStore::packedVersion(v2));
  std::size_t have = 1;
  while (have < sim.nodes.size() && sim.clock.now() - sim.start < 120s) {
    sim.clock.advance(50ms);
    have = 0;
    for (auto& node : sim.nodes) have += node->gotAt >= 0;
  }
  std::vector<double> at;
  for (auto& node : sim.nodes) {
    if (node->gotAt >= 0) at.push_back(node->gotAt);
  }
  const double spread = std::chrono::duration<double>(sim.clock.now() - sim.start).count();
  std::printf("policy_sim nodes=%d documents held=%d loss=%.0f%%: one new version published to one node\n", n, documents, loss * 100);
  std::printf("  every node holds and has verified it after %.2f s (per node: p50 %.2f s, p99 %.2f s); %zu nodes without it after 120 s\n",
              have == sim.nodes.size() ? pct(at, 100) : -1.0, pct(at, 50), pct(at, 99), sim.nodes.size() - have);
  std::printf("  bytes per node: %.0f in all while spreading (%.2f s); %.0f per second at rest (anti-entropy hashes)\n",
              double(sim.bytes) / n, spread, restBytes);
  std::printf("  signatures verified: %llu (one per node that pulled)\n", static_cast<unsigned long long>(sim.verified));
  std::printf("  run: %.1f s, RSS %.0f MB\n", std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(),
              double(mesh::process::residentBytes().value_or(0)) / 1e6);
  return 0;
}
