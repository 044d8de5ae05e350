#pragma once
// What a node holds of signed policy (issue 6), and the rules for taking a new version.
//
// A signed document, whether posted by an operator or pulled from a peer, is taken only when:
// it decodes; its kind is known; at least `threshold` of the trusted keys signed it, every
// signer is trusted and every signature checks; the body's SHA-256 is the signed digest; it has
// not expired; the body passes the kind's checks; and its version is higher than the one held
// (so an old version is never taken again: no rollback, no replay). Anything else is refused
// with a reason (a metric label), a log line and an error for the one who sent it; a refused
// document is neither stored nor passed on.
//
// Every accepted version is kept (RocksDB, family "policy"): history, and on restart the node
// enforces what it held before. The highest version of each document is current.
//
// Two different documents signed with the same version (published on both sides of a partition)
// resolve the same way on every node: the higher body digest wins; the conflict is counted and
// logged. For gossip the version carries the top 24 bits of the digest below the document
// version, so that dissemination's "pull what is newer" resolves it too.
//
// Trust: the keys given to meshd (--policy-trusted-key, --policy-threshold), until a MeshConfig
// with trustedKeys is accepted (signed by the threshold of the keys trusted before it): from then
// on its keys and threshold.
//
// Apply: whenever the set of current documents changes, an immutable Snapshot (versioned) is
// compiled and swapped in; readers (the proxy) take it with snapshot(), lock-free.
//
// Thread rules: everything but snapshot() on the control thread.

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "gossip/dissem/dissemination.h"
#include "node/policy/bundle.h"
#include "node/policy/document.h"
#include "node/policy/signing.h"

namespace mesh::metrics {
class Registry;
}
namespace mesh::store {
class Store;
}

namespace mesh::policy {

enum class Refusal {
  malformed,         // does not decode, or the envelope is not what a signer writes
  unknown_kind,
  no_trusted_keys,   // this node trusts no key (meshd started without --policy-trusted-key)
  untrusted_signer,
  bad_signature,
  below_threshold,
  digest_mismatch,
  expired,
  invalid_body,      // the body fails the kind's checks
  not_newer,         // version not higher than the held one: rollback or replay
  conflict_lower,    // same version as held, different body, lower digest (gossip only)
  store_failed,
};
const char* refusalName(Refusal r);

struct Refused {
  Refusal reason;
  std::string message;
};

// One accepted version of one document.
struct Held {
  Signed doc;
  std::string record;          // encodeSigned(doc): what is stored and served to peers
  std::int64_t receivedAtMs = 0;
  // What the document names, read from the body once when it is taken (every snapshot compile
  // needs it): a Route's (service, subset) pairs; a DestinationPolicy's service and subsets.
  std::vector<std::pair<std::string, std::string>> routeSubsets;
  std::string subsetsService;
  std::vector<std::string> subsets;
  std::string digestHex() const { return hex(doc.envelope.bodyDigest); }
};

// What is in force: the current version of every document, compiled once, never changed.
struct Snapshot {
  std::uint64_t version = 0;  // grows by one with every change on this node
  std::int64_t compiledAtMs = 0;
  std::map<std::string, std::shared_ptr<const Held>> documents;  // "Kind/name" -> current
  // Documents in force that refer to something not held (a subset no DestinationPolicy
  // defines): "Kind/name" -> why. The proxy keeps such a route's previous behaviour.
  std::map<std::string, std::string> problems;
  // MeshConfig: trust in force.
  std::vector<PublicKey> trustedKeys;
  int threshold = 1;
};

enum class Source { publish, gossip };

class PolicyStore : public dissem::Records {
 public:
  struct Options {
    std::vector<PublicKey> trustedKeys;  // from meshd's flags
    int threshold = 1;
    std::function<std::int64_t()> nowSeconds;  // wall clock (expiry); default system_clock
  };
  // Loads what the store holds (damaged records are skipped and reported).
  static Result<std::unique_ptr<PolicyStore>> open(store::Store& store, Options options, metrics::Registry& registry);
  ~PolicyStore() override;

  // A signed record (SignedPolicy bytes) from an operator or a peer. Returns what was taken.
  struct Offered {
    std::shared_ptr<const Held> held;  // null when refused
    std::optional<Refused> refused;
  };
  Offered offer(std::string_view record, Source source);
  Offered offer(const Signed& doc, Source source);

  std::shared_ptr<const Held> current(const std::string& key) const;
  // Every version held of key, lowest first.
  std::vector<std::shared_ptr<const Held>> history(const std::string& key) const;
  std::shared_ptr<const Held> version(const std::string& key, std::uint64_t version) const;

  // The snapshot in force. Safe from any thread.
  std::shared_ptr<const Snapshot> snapshot() const;
  // Called on the control thread after every swap.
  void onApply(std::function<void(const std::shared_ptr<const Snapshot>&)> fn);

  // What /v1/policies shows of trust.
  std::vector<PublicKey> trustedKeys() const;
  int threshold() const;

  // dissem::Records (kind 2): keys "Kind/name", versions packed with the digest (see top).
  std::map<std::string, std::uint64_t> versions() override;
  std::uint64_t version(const std::string& key) override;
  std::uint64_t hash() override;
  std::optional<std::pair<std::uint64_t, std::string>> body(const std::string& key) override;
  bool offer(const std::string& key, std::uint64_t version, std::string_view body) override;

  // The version gossip carries for a held document.
  static std::uint64_t packedVersion(const Signed& doc);

  struct Impl;

 private:
  explicit PolicyStore(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace mesh::policy
