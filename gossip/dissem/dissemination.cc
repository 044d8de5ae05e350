#include "gossip/dissem/dissemination.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <set>

#include "common/errc.h"
#include "common/log.h"
#include "common/metrics.h"

namespace mesh::dissem {
namespace {

// Bounds on what a peer may send us.
constexpr std::size_t kMaxKey = 512;
constexpr std::size_t kMaxDigestsPerPacket = 256;
constexpr std::size_t kMaxVersionsPerAnswer = 1u << 20;
constexpr std::size_t kMaxBody = 4u << 20;

void putVarint(std::string& out, std::uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}

void putBytes(std::string& out, std::string_view s) {
  putVarint(out, s.size());
  out.append(s);
}

struct Reader {
  std::string_view in;
  std::size_t off = 0;

  Result<std::uint64_t> varint() {
    std::uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (off >= in.size()) return Error(errc::malformed, "truncated number");
      const auto b = static_cast<std::uint8_t>(in[off++]);
      v |= std::uint64_t(b & 0x7f) << shift;
      if ((b & 0x80) == 0) return v;
    }
    return Error(errc::malformed, "number longer than 10 bytes");
  }
  Result<std::uint8_t> byte() {
    if (off >= in.size()) return Error(errc::malformed, "truncated");
    return static_cast<std::uint8_t>(in[off++]);
  }
  Result<std::string_view> bytes(std::size_t max) {
    auto n = varint();
    if (!n) return n.error();
    if (*n > max) return Error(errc::too_large, "field of " + std::to_string(*n) + " bytes");
    if (in.size() - off < *n) return Error(errc::malformed, "truncated field");
    auto s = in.substr(off, *n);
    off += *n;
    return s;
  }
  bool done() const { return off == in.size(); }
};

}  // namespace

std::uint64_t entryHash(std::string_view key, std::uint64_t version) {
  // FNV-1a of key, a separator and the version, then a final mix (so that XORs of entries do not
  // cancel in simple patterns).
  std::uint64_t h = 1469598103934665603ull;
  auto mix = [&](unsigned char c) {
    h ^= c;
    h *= 1099511628211ull;
  };
  for (unsigned char c : key) mix(c);
  mix(0);
  for (int i = 0; i < 8; ++i) mix(static_cast<unsigned char>(version >> (8 * i)));
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdull;
  h ^= h >> 33;
  return h;
}

std::uint64_t versionsHash(const std::map<std::string, std::uint64_t>& v) {
  std::uint64_t h = 0;
  for (const auto& [k, ver] : v) h ^= entryHash(k, ver);
  return h;
}

std::uint64_t Records::hash() { return versionsHash(versions()); }

std::string encodeDigests(const std::string& sender, const std::vector<Digest>& digests) {
  std::string out(1, static_cast<char>(kDigestPacketType));
  putBytes(out, sender);
  putVarint(out, digests.size());
  for (const auto& d : digests) {
    out.push_back(static_cast<char>(d.kind));
    putBytes(out, d.key);
    putVarint(out, d.version);
  }
  return out;
}

Result<std::pair<std::string, std::vector<Digest>>> decodeDigests(std::string_view packet) {
  if (packet.empty() || static_cast<std::uint8_t>(packet[0]) != kDigestPacketType) {
    return Error(errc::malformed, "not a digest packet");
  }
  Reader r{packet, 1};
  auto sender = r.bytes(kMaxKey);
  if (!sender) return sender.error();
  auto n = r.varint();
  if (!n) return n.error();
  if (*n > kMaxDigestsPerPacket) return Error(errc::too_large, "more than 256 digests in a packet");
  std::vector<Digest> out;
  for (std::uint64_t i = 0; i < *n; ++i) {
    Digest d;
    auto k = r.byte();
    if (!k) return k.error();
    d.kind = *k;
    auto key = r.bytes(kMaxKey);
    if (!key) return key.error();
    d.key = std::string(*key);
    auto v = r.varint();
    if (!v) return v.error();
    d.version = *v;
    out.push_back(std::move(d));
  }
  if (!r.done()) return Error(errc::malformed, "bytes after the digests");
  return std::pair{std::string(*sender), std::move(out)};
}

std::string encodeRequest(const Request& q) {
  std::string out;
  out.push_back(static_cast<char>(q.op));
  out.push_back(static_cast<char>(q.kind));
  if (q.op == Request::Op::get) putBytes(out, q.key);
  if (q.op == Request::Op::versions) putVarint(out, q.hash);
  return out;
}

Result<Request> decodeRequest(std::string_view b) {
  Reader r{b, 0};
  Request q;
  auto op = r.byte();
  if (!op) return op.error();
  if (*op != 1 && *op != 2) return Error(errc::malformed, "unknown request " + std::to_string(*op));
  q.op = static_cast<Request::Op>(*op);
  auto kind = r.byte();
  if (!kind) return kind.error();
  q.kind = *kind;
  if (q.op == Request::Op::get) {
    auto key = r.bytes(kMaxKey);
    if (!key) return key.error();
    q.key = std::string(*key);
  } else {
    auto h = r.varint();
    if (!h) return h.error();
    q.hash = *h;
  }
  if (!r.done()) return Error(errc::malformed, "bytes after the request");
  return q;
}

struct Dissemination::Impl : std::enable_shared_from_this<Impl> {
  struct Kind {
    std::string name;
    Records* records = nullptr;
  };
  struct Pending {
    Digest digest;
    int transmitsLeft = 0;
  };

  Impl(Config c, EventLoop& l, Network& n, metrics::Registry& r)
      : config(std::move(c)),
        loop(l),
        network(n),
        registry(r),
        rng(std::random_device{}()),
        log(log::get("dissem")),
        digestsSent(r.counter("mesh_dissem_digests_sent_total", "Digests sent in gossip packets.")),
        packetBytes(r.counter("mesh_dissem_packet_bytes_sent_total", "Bytes of digest packets sent.")),
        pullBytes(r.counter("mesh_dissem_pull_bytes_received_total", "Bytes of records pulled from peers.")),
        badPackets(r.counter("mesh_dissem_decode_errors_total", "Digest packets and requests that did not decode.")),
        aeSame(r.counter("mesh_dissem_anti_entropy_rounds_total", "Anti-entropy exchanges.", {{"result", "same"}})),
        aeDiffer(r.counter("mesh_dissem_anti_entropy_rounds_total", "Anti-entropy exchanges.", {{"result", "differ"}})),
        aeFailed(r.counter("mesh_dissem_anti_entropy_rounds_total", "Anti-entropy exchanges.", {{"result", "failed"}})) {}

  Config config;
  EventLoop& loop;
  Network& network;
  metrics::Registry& registry;
  std::mt19937_64 rng;
  std::shared_ptr<spdlog::logger> log;
  metrics::Counter& digestsSent;
  metrics::Counter& packetBytes;
  metrics::Counter& pullBytes;
  metrics::Counter& badPackets;
  metrics::Counter& aeSame;
  metrics::Counter& aeDiffer;
  metrics::Counter& aeFailed;
  std::map<std::uint8_t, Kind> kinds;
  std::map<std::pair<std::uint8_t, std::string>, Pending> pending;  // digests to pass on
  std::set<std::pair<std::uint8_t, std::string>> pulling;
  // Pulls waiting for a free slot (at most maxConcurrentPulls run at once): key -> who told us.
  std::map<std::pair<std::uint8_t, std::string>, std::string> wanted;
  int pullsInFlight = 0;
  bool running = false;
  EventLoop::TimerId gossipTimer = 0, aeTimer = 0;

  std::weak_ptr<Impl> weak() { return weak_from_this(); }

  metrics::Counter& pulls(const char* result) {
    return registry.counter("mesh_dissem_pulls_total", "Records pulled from peers, by result.", {{"result", result}});
  }

  int retransmitLimit() const {
    const double n = static_cast<double>(network.peerCount() + 1);
    return config.retransmitMult * std::max(1, static_cast<int>(std::ceil(std::log10(n + 1))));
  }

  void queueDigest(const Digest& d) {
    auto& p = pending[{d.kind, d.key}];
    if (p.digest.version > d.version) return;
    p.digest = d;
    p.transmitsLeft = retransmitLimit();
  }

  void gossipRound() {
    if (pending.empty()) return;
    auto peers = network.randomPeers(static_cast<std::size_t>(config.fanout));
    // The freshest digests (most transmits left) first, as memberlist orders its broadcasts;
    // ordered once a round (each peer's packet takes the freshest that still have transmits).
    std::vector<Pending*> order;
    for (auto& [k, p] : pending) order.push_back(&p);
    std::stable_sort(order.begin(), order.end(), [](const Pending* a, const Pending* b) { return a->transmitsLeft > b->transmitsLeft; });
    for (const auto& peer : peers) {
      std::vector<Digest> batch;
      std::size_t bytes = 16 + config.self.size();
      for (Pending* p : order) {
        if (p->transmitsLeft <= 0) continue;
        const std::size_t cost = p->digest.key.size() + 12;
        if (bytes + cost > config.maxPacketBytes || batch.size() >= kMaxDigestsPerPacket) break;
        bytes += cost;
        batch.push_back(p->digest);
        --p->transmitsLeft;
      }
      if (batch.empty()) break;
      std::string packet = encodeDigests(config.self, batch);
      digestsSent.inc(static_cast<double>(batch.size()));
      packetBytes.inc(static_cast<double>(packet.size()));
      network.send(peer, std::move(packet));
    }
    for (auto it = pending.begin(); it != pending.end();) {
      it = it->second.transmitsLeft <= 0 ? pending.erase(it) : std::next(it);
    }
  }

  std::uint64_t held(std::uint8_t kind, const std::string& key) {
    auto k = kinds.find(kind);
    return k == kinds.end() ? 0 : k->second.records->version(key);
  }

  // Pulls kind/key from peer; on success the record is offered, and if taken, passed on.
  void pull(const std::string& peer, std::uint8_t kind, const std::string& key, std::function<void()> after = nullptr) {
    auto k = kinds.find(kind);
    if (k == kinds.end()) return;
    if (pulling.contains({kind, key})) return;
    if (pullsInFlight >= config.maxConcurrentPulls) {
      // Not dropped: a burst of changes (many owners at once) is pulled as slots free up.
      wanted[{kind, key}] = peer;
      return;
    }
    wanted.erase({kind, key});
    pulling.insert({kind, key});
    ++pullsInFlight;
    Request q{Request::Op::get, kind, key, 0};
    network.request(peer, encodeRequest(q), config.requestTimeout,
                    [w = weak(), peer, kind, key, after](Result<std::string> resp) {
                      auto s = w.lock();
                      if (!s) return;
                      s->pulling.erase({kind, key});
                      --s->pullsInFlight;
                      s->takePulled(peer, kind, key, resp);
                      if (after) after();
                      s->nextWanted();
                    });
  }

  void nextWanted() {
    while (pullsInFlight < config.maxConcurrentPulls && !wanted.empty()) {
      auto it = wanted.begin();
      const auto [kind, key] = it->first;
      const std::string peer = it->second;
      wanted.erase(it);
      pull(peer, kind, key);
    }
  }

  void takePulled(const std::string& peer, std::uint8_t kind, const std::string& key, const Result<std::string>& resp) {
    if (!resp) {
      pulls("failed").inc();
      log->debug("pull {}/{} from {} failed: {}", kinds[kind].name, key, peer, resp.error().message());
      return;
    }
    Reader r{*resp, 0};
    auto found = r.byte();
    if (!found || *found == 0) {
      pulls("not_found").inc();
      return;
    }
    auto version = r.varint();
    auto body = version ? r.bytes(kMaxBody) : Result<std::string_view>(version.error());
    if (!version || !body || !r.done()) {
      badPackets.inc();
      pulls("failed").inc();
      return;
    }
    pullBytes.inc(static_cast<double>(resp->size()));
    if (kinds[kind].records->offer(key, *version, *body)) {
      pulls("taken").inc();
      queueDigest(Digest{kind, key, *version});
    } else {
      pulls("not_newer").inc();
    }
  }

  void onPacket(std::string_view packet) {
    auto d = decodeDigests(packet);
    if (!d) {
      badPackets.inc();
      log->debug("digest packet refused: {}", d.error().message());
      return;
    }
    for (const auto& digest : d->second) {
      if (!kinds.contains(digest.kind)) continue;
      if (digest.version > held(digest.kind, digest.key)) pull(d->first, digest.kind, digest.key);
    }
  }

  void onRequest(std::string request, std::function<void(Result<std::string>)> reply) {
    auto q = decodeRequest(request);
    if (!q) {
      badPackets.inc();
      return reply(q.error());
    }
    auto k = kinds.find(q->kind);
    if (k == kinds.end()) return reply(Error(errc::not_found, "unknown kind " + std::to_string(q->kind)));
    std::string out;
    if (q->op == Request::Op::get) {
      auto b = k->second.records->body(q->key);
      if (!b) {
        out.push_back('\0');
      } else {
        out.push_back('\1');
        putVarint(out, b->first);
        putBytes(out, b->second);
      }
      return reply(out);
    }
    // versions: "same" when the hashes agree, else the whole list.
    if (k->second.records->hash() == q->hash) {
      out.push_back('\1');
      return reply(out);
    }
    const auto mine = k->second.records->versions();
    out.push_back('\0');
    putVarint(out, mine.size());
    for (const auto& [key, v] : mine) {
      putBytes(out, key);
      putVarint(out, v);
    }
    reply(out);
  }

  void antiEntropy() {
    auto one = network.randomPeers(1);
    if (one.empty()) return;
    const std::string peer = one.front();
    for (auto& [kind, k] : kinds) {
      Request q{Request::Op::versions, kind, {}, k.records->hash()};
      network.request(peer, encodeRequest(q), config.requestTimeout, [w = weak(), peer, kind = kind](Result<std::string> resp) {
        auto s = w.lock();
        if (!s) return;
        s->compare(peer, kind, resp);
      });
    }
  }

  void compare(const std::string& peer, std::uint8_t kind, const Result<std::string>& resp) {
    if (!resp) {
      aeFailed.inc();
      return;
    }
    Reader r{*resp, 0};
    auto same = r.byte();
    if (!same) return void(badPackets.inc());
    if (*same == 1) {
      aeSame.inc();
      kinds[kind].records->confirmedAll();
      return;
    }
    aeDiffer.inc();
    auto n = r.varint();
    if (!n || *n > kMaxVersionsPerAnswer) return void(badPackets.inc());
    std::map<std::string, std::uint64_t> theirs;
    for (std::uint64_t i = 0; i < *n; ++i) {
      auto key = r.bytes(kMaxKey);
      auto v = key ? r.varint() : Result<std::uint64_t>(key.error());
      if (!key || !v) return void(badPackets.inc());
      theirs[std::string(*key)] = *v;
    }
    const auto mine = kinds[kind].records->versions();
    std::vector<Digest> theyLack;
    for (const auto& [key, v] : theirs) {
      auto it = mine.find(key);
      if (it == mine.end() || it->second < v) pull(peer, kind, key);
      if (it != mine.end() && it->second == v) kinds[kind].records->confirmed(key, v);
    }
    for (const auto& [key, v] : mine) {
      auto it = theirs.find(key);
      if (it == theirs.end() || it->second < v) theyLack.push_back(Digest{kind, key, v});
    }
    // What they lack, we tell them about directly: they pull it from us.
    for (std::size_t i = 0; i < theyLack.size(); i += 64) {
      std::vector<Digest> part(theyLack.begin() + static_cast<long>(i),
                               theyLack.begin() + static_cast<long>(std::min(theyLack.size(), i + 64)));
      network.send(peer, encodeDigests(config.self, part));
    }
  }

  void scheduleGossip() {
    gossipTimer = loop.runAfter(config.gossipInterval, [w = weak()] {
      auto s = w.lock();
      if (!s || !s->running) return;
      s->gossipRound();
      s->scheduleGossip();
    });
  }

  void scheduleAntiEntropy() {
    // Jittered, so that nodes started together do not exchange in lockstep.
    const auto base = std::chrono::duration_cast<std::chrono::milliseconds>(config.antiEntropyInterval).count();
    const auto jitter = std::uniform_int_distribution<long>(0, std::max<long>(1, base / 4))(rng);
    aeTimer = loop.runAfter(std::chrono::milliseconds(base * 3 / 4 + jitter), [w = weak()] {
      auto s = w.lock();
      if (!s || !s->running) return;
      s->antiEntropy();
      s->scheduleAntiEntropy();
    });
  }
};

Dissemination::Dissemination(Config config, EventLoop& loop, Network& network, metrics::Registry& registry)
    : impl_(std::make_shared<Impl>(std::move(config), loop, network, registry)) {}

Dissemination::~Dissemination() { stop(); }

void Dissemination::addKind(std::uint8_t kind, const char* name, Records& records) {
  impl_->kinds[kind] = Impl::Kind{name, &records};
}

void Dissemination::start() {
  if (impl_->running) return;
  impl_->running = true;
  impl_->scheduleGossip();
  impl_->scheduleAntiEntropy();
}

void Dissemination::stop() {
  impl_->running = false;
  impl_->loop.cancel(impl_->gossipTimer);
  impl_->loop.cancel(impl_->aeTimer);
}

void Dissemination::announce(std::uint8_t kind, const std::string& key, std::uint64_t version) {
  impl_->queueDigest(Digest{kind, key, version});
}

void Dissemination::onPacket(std::string_view packet) { impl_->onPacket(packet); }

void Dissemination::onRequest(std::string request, std::function<void(Result<std::string>)> reply) {
  impl_->onRequest(std::move(request), std::move(reply));
}

void Dissemination::antiEntropyNow() { impl_->antiEntropy(); }

}  // namespace mesh::dissem
