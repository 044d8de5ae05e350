// mlnode: our memberlist library as a standalone peer, the mirror of ../shared/interop/mlpeer
// (same flags, same JSON lines on stdout), so that interop tests can drive both sides the same
// way: user messages, push-pull user state, joins and leaves. A test program, not a product.

#include <signal.h>

#include <cstdio>
#include <iostream>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "common/asio.h"
#include "common/asio_event_loop.h"
#include "common/metrics.h"
#include "gossip/asio_transport.h"
#include "gossip/broadcast_queue.h"
#include "gossip/memberlist.h"

using namespace mesh;
using namespace mesh::gossip;

namespace {

std::string selfName;
const auto startTime = std::chrono::steady_clock::now();

void emit(const std::string& ev, nlohmann::json kv = nlohmann::json::object()) {
  kv["event"] = ev;
  kv["self"] = selfName;
  kv["ts"] = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  kv["t_ms"] = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - startTime).count();
  std::cout << kv.dump() << std::endl;
}

nlohmann::json nodeInfo(const Node& n, const std::string& state) {
  return {{"name", n.name}, {"addr", n.addr.ipString()}, {"port", n.addr.port}, {"state", state}, {"meta", n.meta},
          {"vsn", {n.pmin, n.pmax, n.pcur, n.dmin, n.dmax, n.dcur}}};
}

struct Peer : Delegate, EventDelegate {
  std::string meta;
  // User broadcasts with memberlist's retransmit limit (as mlpeer's TransmitLimitedQueue).
  std::function<std::size_t()> numNodes = [] { return std::size_t{1}; };
  BroadcastQueue queue{4, [this] { return numNodes(); }};

  std::string nodeMeta(std::size_t) override { return meta; }
  void notifyMsg(std::string_view m) override { emit("user_msg", {{"bytes", m.size()}, {"data", std::string(m)}}); }
  std::vector<std::string> getBroadcasts(std::size_t overhead, std::size_t avail) override {
    return queue.get(overhead, avail);
  }
  std::string localState(bool join) override {
    std::string st = "state-of-" + selfName;
    emit("local_state", {{"join", join}, {"bytes", st.size()}});
    return st;
  }
  void mergeRemoteState(std::string_view s, bool join) override {
    emit("merge_remote_state", {{"join", join}, {"bytes", s.size()}, {"data", std::string(s)}});
  }
  void notifyJoin(const Node& n) override { emit("join", nodeInfo(n, "alive")); }
  void notifyLeave(const Node& n) override { emit("leave", nodeInfo(n, "dead_or_left")); }
  void notifyUpdate(const Node& n) override { emit("update", nodeInfo(n, "alive")); }
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"mlnode: a memberlist peer built on mesh's gossip library"};
  std::string name, bind = "127.0.0.1:7946", meta, secret, dvsn = "0,0,0";
  double duration = 30;
  bool noLeave = false, dump = false;
  std::vector<std::string> joins, broadcasts, sends;
  app.add_option("--name", name)->required();
  app.add_option("--bind", bind);
  app.add_option("--meta", meta);
  app.add_option("--secret-key", secret);
  app.add_option("--duration", duration);
  app.add_option("--delegate-vsn", dvsn);
  app.add_option("--join", joins);
  app.add_option("--broadcast", broadcasts);
  app.add_option("--send-reliable", sends, "NODE=MESSAGE: a reliable user message after joining");
  app.add_flag("--no-leave", noLeave);
  app.add_flag("--dump", dump);
  CLI11_PARSE(app, argc, argv);
  selfName = name;

  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGUSR1);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);

  boost::asio::io_context io;
  AsioEventLoop loop(io);
  auto hp = parseHostPort(bind);
  if (!hp) {
    std::cerr << "bad --bind: " << hp.error().message() << "\n";
    return 2;
  }
  auto transport = AsioTransport::create(io, *hp);
  if (!transport) {
    emit("error", {{"msg", transport.error().message()}});
    return 1;
  }
  Config cfg = Config::lan();
  cfg.name = name;
  cfg.advertise = NodeAddress::fromHostPort(*hp).value();
  unsigned a = 0, b = 0, c = 0;
  if (std::sscanf(dvsn.c_str(), "%u,%u,%u", &a, &b, &c) != 3) return 2;
  cfg.delegateProtocolMin = a, cfg.delegateProtocolMax = b, cfg.delegateProtocolVersion = c;
  if (!secret.empty()) {
    auto key = base64Decode(secret);
    if (!key) return 2;
    auto ring = Keyring::create({*key});
    if (!ring) return 2;
    cfg.keyring = std::make_shared<Keyring>(std::move(*ring));
  }
  Peer peer;
  peer.meta = meta;
  metrics::Registry registry;
  auto ml = Memberlist::create(cfg, loop, **transport, Delegates{&peer, &peer}, registry);
  if (!ml) {
    emit("error", {{"msg", "create: " + ml.error().message()}});
    return 1;
  }
  peer.numNodes = [&] { return (*ml)->numLive(); };
  emit("started", {{"bind", bind}, {"encrypted", !secret.empty()}, {"protocol", cfg.protocolVersion}});
  bool stopping = false;
  auto finish = [&] {
    if (stopping) return;
    stopping = true;
    auto done = [&] {
      emit("exit");
      (*ml)->shutdown();
      io.stop();
    };
    if (noLeave) return done();
    (*ml)->leave(std::chrono::seconds(2), [&, done](Result<void>) { done(); });
  };
  auto dumpMembers = [&] {
    nlohmann::json list = nlohmann::json::array();
    for (const auto& n : (*ml)->liveMembers()) list.push_back(nodeInfo(n, "alive_or_suspect"));
    emit("members", {{"count", list.size()}, {"alive", (*ml)->numLive()}, {"members", list}});
  };
  auto afterJoin = [&] {
    for (const auto& b : broadcasts) peer.queue.queue("", b);
    for (const auto& s : sends) {
      auto eq = s.find('=');
      if (eq == std::string::npos) continue;
      (*ml)->sendReliable(s.substr(0, eq), s.substr(eq + 1), [target = s.substr(0, eq)](Result<void> r) {
        emit("send_result", {{"to", target}, {"error", r.ok() ? "" : r.error().message()}});
      });
    }
  };
  if (!joins.empty()) {
    std::vector<NodeAddress> seeds;
    for (const auto& j : joins) {
      if (auto s = NodeAddress::parse(j)) seeds.push_back(*s);
    }
    (*ml)->join(seeds, [&, joins](int contacted, Result<void> r) {
      nlohmann::json kv = {{"contacted", contacted}, {"peers", joins}};
      if (!r) kv["error"] = r.error().message();
      emit("join_result", kv);
      afterJoin();
    });
  } else {
    afterJoin();
  }
  // Signals through a thread that posts to the loop (sigwait keeps them off the loop thread).
  std::thread sig([&] {
    for (;;) {
      int s = 0;
      if (sigwait(&set, &s) != 0) continue;
      boost::asio::post(io, [&, s] {
        if (s == SIGUSR1) {
          dumpMembers();
        } else {
          finish();
        }
      });
      if (s != SIGUSR1) return;
    }
  });
  sig.detach();
  std::function<void()> tick = [&] {
    if (stopping) return;
    if (dump) dumpMembers();
    loop.runAfter(std::chrono::seconds(1), tick);
  };
  loop.runAfter(std::chrono::seconds(1), tick);
  loop.runAfter(std::chrono::milliseconds(static_cast<long>(duration * 1000)), finish);
  auto guard = boost::asio::make_work_guard(io);
  io.run();
  return 0;
}
