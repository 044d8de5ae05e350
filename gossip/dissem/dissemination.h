#pragma once
// How the mesh spreads records that have one writer each and versions that only grow (the
// catalog: one record per owner node; signed policy later): small digests (kind, key, version)
// travel by gossip between meshd nodes; a node that sees a newer version than it holds pulls the
// record over a stream from the node that told it, and only then passes the digest on (so whoever
// hears of a version can fetch it from the one who told it); a periodic anti-entropy exchange
// with a random peer compares a hash of everything held and, when they differ, the full
// version lists, and pulls what is newer. Bodies never ride UDP.
//
// Transport-agnostic: a Network gives the peers (alive meshd members), best-effort packets and
// request/response streams; meshd uses memberlist (serf extension messages and memberlist
// streams), tests use the in-memory network.
//
// Thread rules: everything on the EventLoop's thread.

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/event_loop.h"
#include "common/result.h"

namespace mesh::metrics {
class Registry;
}

namespace mesh::dissem {

// The first byte of every digest packet (a serf extension message type).
inline constexpr std::uint8_t kDigestPacketType = 0x40;

// What a kind of record (the catalog, policy) gives to and takes from dissemination.
class Records {
 public:
  virtual ~Records() = default;
  virtual std::map<std::string, std::uint64_t> versions() = 0;
  // The version held for one key (0: none). Override when versions() is costly (every digest
  // received asks).
  virtual std::uint64_t version(const std::string& key) {
    auto v = versions();
    auto it = v.find(key);
    return it == v.end() ? 0 : it->second;
  }
  // versionsHash(versions()); override to keep it up to date incrementally (anti-entropy asks
  // every round, and the answer must be the same function on every node).
  virtual std::uint64_t hash();
  // The encoded record held for key, with its version.
  virtual std::optional<std::pair<std::uint64_t, std::string>> body(const std::string& key) = 0;
  // A pulled record: checked and taken if newer. false: refused or not newer (not passed on).
  virtual bool offer(const std::string& key, std::uint64_t version, std::string_view body) = 0;
  // Anti-entropy found a peer holding the same version of key (or of everything): what was
  // loaded from disk at start is now known to be current.
  virtual void confirmed(const std::string& key, std::uint64_t version) { (void)key, (void)version; }
  virtual void confirmedAll() {}
};

class Network {
 public:
  virtual ~Network() = default;
  // Alive meshd members other than us: how many, and up to k of them at random.
  virtual std::size_t peerCount() = 0;
  virtual std::vector<std::string> randomPeers(std::size_t k) = 0;
  virtual void send(const std::string& peer, std::string packet) = 0;
  virtual void request(const std::string& peer, std::string body, Duration timeout,
                       std::function<void(Result<std::string>)> done) = 0;
};

struct Config {
  std::string self;
  Duration gossipInterval = std::chrono::milliseconds(200);
  int fanout = 3;
  int retransmitMult = 4;  // each digest goes out retransmitMult x ceil(log10(n+1)) times
  Duration antiEntropyInterval = std::chrono::seconds(10);
  Duration requestTimeout = std::chrono::seconds(5);
  std::size_t maxPacketBytes = 1200;
  int maxConcurrentPulls = 8;
};

class Dissemination {
 public:
  Dissemination(Config config, EventLoop& loop, Network& network, metrics::Registry& registry);
  ~Dissemination();

  void addKind(std::uint8_t kind, const char* name, Records& records);
  void start();
  void stop();

  // A record changed here (we hold it): spread its digest.
  void announce(std::uint8_t kind, const std::string& key, std::uint64_t version);
  // A digest packet from a peer (first byte kDigestPacketType).
  void onPacket(std::string_view packet);
  // A request from a peer's stream.
  void onRequest(std::string request, std::function<void(Result<std::string>)> reply);
  // Runs one anti-entropy exchange now (also done every antiEntropyInterval).
  void antiEntropyNow();

  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

// Codecs (exposed for tests and the fuzz target). Every decoder is bounds-checked.
struct Digest {
  std::uint8_t kind = 0;
  std::string key;
  std::uint64_t version = 0;
  friend bool operator==(const Digest&, const Digest&) = default;
};
std::string encodeDigests(const std::string& sender, const std::vector<Digest>& digests);
Result<std::pair<std::string, std::vector<Digest>>> decodeDigests(std::string_view packet);
// Requests: get one record, or compare versions (with our hash of them).
struct Request {
  enum class Op : std::uint8_t { get = 1, versions = 2 } op = Op::get;
  std::uint8_t kind = 0;
  std::string key;          // get
  std::uint64_t hash = 0;   // versions
};
std::string encodeRequest(const Request& r);
Result<Request> decodeRequest(std::string_view b);
// The hash anti-entropy compares: the XOR of entryHash over every (key, version), so that a
// holder can keep it up to date one entry at a time.
std::uint64_t entryHash(std::string_view key, std::uint64_t version);
std::uint64_t versionsHash(const std::map<std::string, std::uint64_t>& v);

}  // namespace mesh::dissem
