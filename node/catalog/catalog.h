#pragma once
// The catalog every node holds: per owner node, the owner's instances at the highest version
// seen (owners are the only writers; versions only grow, so merging is "higher version wins"
// and needs no coordination). Owners that SWIM declares dead keep their entry, marked
// unavailable, at once; owners that left or were reaped are removed.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "node/catalog/service.h"

namespace mesh::catalog {

struct Instance {
  std::string id, name, address;
  std::uint16_t port = 0;
  Protocol protocol = Protocol::http;
  std::vector<std::string> tags;
  std::map<std::string, std::string> labels;
  std::string zone;
  std::uint32_t weight = 1;
  Health health = Health::critical;
  bool maintenance = false;
  std::string note;
  friend bool operator==(const Instance&, const Instance&) = default;
};

struct NodeServices {
  std::string owner;
  std::uint64_t version = 0;
  std::vector<Instance> instances;
  friend bool operator==(const NodeServices&, const NodeServices&) = default;
};

// Record codec (Cap'n Proto, schemas/catalog.capnp); bounds-checked: a bad record is an error.
std::string encode(const NodeServices& n);
Result<NodeServices> decodeNodeServices(std::string_view bytes);

class Catalog {
 public:
  struct Entry {
    NodeServices services;
    bool available = true;  // false while SWIM holds the owner dead
    bool stale = false;     // loaded from the store at start, not refreshed since
    std::int64_t learnedUnixMs = 0;  // when this node took this version (its wall clock)
  };

  // Takes the owner's record if its version is higher than the one held (or the owner is new).
  // Returns true when it changed the catalog.
  bool apply(NodeServices n, bool stale = false, std::int64_t learnedUnixMs = 0);
  void setAvailable(const std::string& owner, bool available);
  // A peer holds the same version: a stale entry (from the store) is current.
  void confirm(const std::string& owner, std::uint64_t version);
  void confirmAll();
  bool remove(const std::string& owner);
  // (owner, version) of every entry: what digests and anti-entropy compare.
  std::map<std::string, std::uint64_t> versions() const;
  const Entry* find(const std::string& owner) const;
  const std::map<std::string, Entry>& entries() const { return entries_; }
  std::size_t instanceCount() const;
  // Grows with every change of what is served (instances, availability): the proxy recompiles
  // its snapshot when it moves.
  std::uint64_t generation() const { return generation_; }

 private:
  std::map<std::string, Entry> entries_;
  std::uint64_t generation_ = 0;
};

}  // namespace mesh::catalog
