#pragma once
// The serf snapshot and the gossip keyring as store records (Cap'n Proto, schemas/store.capnp):
// serf's three Lamport clocks, the members this node knew (so that a restart rejoins them without
// --join and never moves a clock backwards), and the keyring after every rotation.
//
// A record that does not decode (a damaged disk, a bug) is reported, never crashes the node:
// loadMembers skips it with a warning and counts it.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace mesh::store {

class Store;

struct SerfClocks {
  std::uint64_t clock = 0, eventClock = 0, queryClock = 0;
  friend bool operator==(const SerfClocks&, const SerfClocks&) = default;
};

struct KnownMember {
  enum class Status { none, alive, leaving, left, failed };
  std::string name;
  std::string addr;  // IP bytes (4 or 16)
  std::uint16_t port = 0;
  Status status = Status::none;
  std::map<std::string, std::string> tags;
  friend bool operator==(const KnownMember&, const KnownMember&) = default;
};

// Record codecs (exposed for tests and the fuzz target).
std::string encodeClocks(const SerfClocks& c);
Result<SerfClocks> decodeClocks(std::string_view bytes);
std::string encodeMember(const KnownMember& m);
Result<KnownMember> decodeMember(std::string_view bytes);
std::string encodeKeyring(const std::vector<std::string>& keys);
Result<std::vector<std::string>> decodeKeyring(std::string_view bytes);

Result<void> saveClocks(Store& s, const SerfClocks& c);
Result<std::optional<SerfClocks>> loadClocks(const Store& s);
Result<void> saveMember(Store& s, const KnownMember& m);
Result<void> removeMember(Store& s, const std::string& name);
// Every member record that decodes; `skipped` counts those that did not.
Result<std::vector<KnownMember>> loadMembers(const Store& s, int* skipped = nullptr);
// Written with sync: a rotated key must not be lost even to a power cut.
Result<void> saveKeyring(Store& s, const std::vector<std::string>& keys);
Result<std::optional<std::vector<std::string>>> loadKeyring(const Store& s);

}  // namespace mesh::store
