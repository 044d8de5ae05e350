#include "node/policy/policy_store.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <mutex>
#include <set>
#include <tuple>

#include "common/clock.h"
#include "common/errc.h"
#include "common/log.h"
#include "common/metrics.h"
#include "schemas/record_io.h"
#include "store/store.h"

namespace mesh::policy {

namespace {

// Document versions are below 2^40 so that gossip's version can carry 24 bits of the digest.
constexpr std::uint64_t kMaxVersion = (std::uint64_t{1} << 40) - 1;

std::string storeKey(const Signed& s) {
  char v[24];
  std::snprintf(v, sizeof v, "%020llu", static_cast<unsigned long long>(s.envelope.version));
  return "doc/" + s.key() + "/" + v + "/" + hex(s.envelope.bodyDigest).substr(0, 16);
}

// Order of versions of one document: version, then digest (the conflict rule).
bool higher(const Signed& a, const Signed& b) {
  if (a.envelope.version != b.envelope.version) return a.envelope.version > b.envelope.version;
  return a.envelope.bodyDigest > b.envelope.bodyDigest;
}

Refusal refusalOf(VerifyError::Reason r) {
  switch (r) {
    case VerifyError::Reason::untrusted_signer: return Refusal::untrusted_signer;
    case VerifyError::Reason::bad_signature: return Refusal::bad_signature;
    case VerifyError::Reason::digest_mismatch: return Refusal::digest_mismatch;
    case VerifyError::Reason::expired: return Refusal::expired;
    case VerifyError::Reason::below_threshold: return Refusal::below_threshold;
    case VerifyError::Reason::malformed: return Refusal::malformed;
  }
  return Refusal::malformed;
}

// Fills what the snapshot compiler reads of a document, once.
void readNames(Held& h) {
  if (h.doc.envelope.kind == kindName(Kind::route)) {
    h.routeSubsets = referencesOf(Kind::route, h.doc.body).subsets;
  } else if (h.doc.envelope.kind == kindName(Kind::destinationPolicy)) {
    std::tie(h.subsetsService, h.subsets) = subsetsOf(h.doc.body);
  }
}

}  // namespace

const char* refusalName(Refusal r) {
  switch (r) {
    case Refusal::malformed: return "malformed";
    case Refusal::unknown_kind: return "unknown_kind";
    case Refusal::no_trusted_keys: return "no_trusted_keys";
    case Refusal::untrusted_signer: return "untrusted_signer";
    case Refusal::bad_signature: return "bad_signature";
    case Refusal::below_threshold: return "below_threshold";
    case Refusal::digest_mismatch: return "digest_mismatch";
    case Refusal::expired: return "expired";
    case Refusal::invalid_body: return "invalid_body";
    case Refusal::not_newer: return "not_newer";
    case Refusal::conflict_lower: return "conflict_lower";
    case Refusal::store_failed: return "store_failed";
  }
  return "?";
}

struct PolicyStore::Impl {
  store::Store& store;
  Options options;
  metrics::Registry& registry;
  std::shared_ptr<spdlog::logger> log = log::get("policy");

  // key -> versions held, ordered by (version, digest); the last is current.
  std::map<std::string, std::vector<std::shared_ptr<const Held>>> docs;
  std::uint64_t hash = 0;  // XOR of entryHash(key, packed) over current documents

  std::atomic<std::shared_ptr<const Snapshot>> snap;
  std::uint64_t snapshotVersion = 0;
  std::vector<std::function<void(const std::shared_ptr<const Snapshot>&)>> listeners;

  metrics::Counter* conflicts;
  metrics::Gauge* snapshotGauge;
  metrics::Gauge* documentsGauge;
  metrics::Histogram* compileSeconds;

  Impl(store::Store& s, Options o, metrics::Registry& r) : store(s), options(std::move(o)), registry(r) {
    if (!options.nowSeconds) {
      options.nowSeconds = [] { return unixSeconds(SystemClock::instance().wallNow()); };
    }
    conflicts = &registry.counter("mesh_policy_conflicts_total",
                                  "Two different documents signed with the same version met here (the higher digest wins).");
    snapshotGauge = &registry.gauge("mesh_policy_snapshot_version", "Version of the policy snapshot in force on this node.");
    documentsGauge = &registry.gauge("mesh_policy_documents", "Policy documents held (current versions).");
    compileSeconds = &registry.histogram("mesh_policy_compile_seconds", "Time to compile a policy snapshot.",
                                         metrics::latencyBuckets());
  }

  std::shared_ptr<const Held> currentOf(const std::string& key) const {
    auto it = docs.find(key);
    return it == docs.end() || it->second.empty() ? nullptr : it->second.back();
  }

  // Trust from what is held: the current MeshConfig's keys when it names some, else meshd's
  // flags. Worked out at each compile; everything else reads the snapshot's.
  std::pair<std::vector<PublicKey>, int> trust() const {
    if (auto mc = currentOf(std::string(kindName(Kind::meshConfig))+ "/" + kMeshConfigName)) {
      auto [pems, threshold] = trustOf(mc->doc.body);
      if (!pems.empty()) {
        std::vector<PublicKey> keys;
        for (const auto& pem : pems) {
          if (auto k = parsePublicKeyPem(pem)) keys.push_back(*k);
        }
        return {keys, threshold ? static_cast<int>(threshold) : 1};
      }
    }
    return {options.trustedKeys, options.threshold};
  }

  Offered refuse(Source src, Refusal r, std::string message) {
    registry.counter("mesh_policy_refused_total", "Signed policy documents refused, by reason and source.",
                     {{"reason", refusalName(r)}, {"source", src == Source::publish ? "publish" : "gossip"}})
        .inc();
    if (src == Source::publish) log->warn("policy refused ({}): {}", refusalName(r), message);
    else log->info("policy from a peer refused ({}): {}", refusalName(r), message);
    return Offered{nullptr, Refused{r, std::move(message)}};
  }

  Offered offer(const Signed& s, Source src) {
    const auto& e = s.envelope;
    std::string what = e.kind + "/" + e.name + " version " + std::to_string(e.version);
    auto kind = parseKind(e.kind);
    if (!kind || kindName(*kind) != e.kind) return refuse(src, Refusal::unknown_kind, "'" + e.kind + "' is not a policy kind");
    if (!validName(e.name)) return refuse(src, Refusal::malformed, "'" + e.name + "' is not a valid document name");
    if (e.version == 0 || e.version > kMaxVersion) {
      return refuse(src, Refusal::malformed, what + ": versions run from 1 to " + std::to_string(kMaxVersion));
    }
    // The trust in force is the snapshot's (compiled when the MeshConfig changed), not worked out
    // again from the MeshConfig's PEM keys for every document.
    const auto inForce = snap.load();
    const auto& trusted = inForce->trustedKeys;
    const int threshold = inForce->threshold;
    if (trusted.empty()) {
      return refuse(src, Refusal::no_trusted_keys, what + ": this node trusts no signing key (start meshd with --policy-trusted-key)");
    }
    if (auto err = verify(e, s.body, trusted, threshold, options.nowSeconds())) {
      return refuse(src, refusalOf(err->reason), what + ": " + err->message);
    }
    if (auto problems = validateBody(*kind, e.name, s.body); !problems.empty()) {
      std::string m = what + ": the document is not valid: " + problems[0].str();
      if (problems.size() > 1) m += " (and " + std::to_string(problems.size() - 1) + " more)";
      return refuse(src, Refusal::invalid_body, m);
    }
    auto cur = currentOf(s.key());
    if (cur) {
      const auto& held = cur->doc.envelope;
      if (e.version < held.version || (e.version == held.version && src == Source::publish)) {
        bool same = e.version == held.version && e.bodyDigest == held.bodyDigest;
        return refuse(src, Refusal::not_newer,
                      what + (same ? " is already held (a replay)" : " is not higher than the version held, " + std::to_string(held.version)) +
                          ": publish a higher version (meshcli picks the next one when the file names none)");
      }
      if (e.version == held.version) {
        if (e.bodyDigest == held.bodyDigest) return Offered{nullptr, std::nullopt};  // already held
        conflicts->inc();
        if (e.bodyDigest < held.bodyDigest) {
          log->warn("policy conflict: {} signed twice with different bodies; keeping digest {} over {}", what,
                    hex(held.bodyDigest).substr(0, 16), hex(e.bodyDigest).substr(0, 16));
          return refuse(src, Refusal::conflict_lower, what + ": another body with this version is held (higher digest wins)");
        }
        log->warn("policy conflict: {} signed twice with different bodies; taking digest {} over {}", what,
                  hex(e.bodyDigest).substr(0, 16), hex(held.bodyDigest).substr(0, 16));
      }
    }
    auto h = std::make_shared<Held>();
    h->doc = s;
    h->record = encodeSigned(s);
    h->receivedAtMs = schema::unixMsNow();
    readNames(*h);
    // MeshConfig changes trust: synced, like the keyring.
    bool sync = *kind == Kind::meshConfig;
    if (auto w = store.put(store::Family::policy, storeKey(s), h->record, sync); !w) {
      return refuse(src, Refusal::store_failed, what + ": not stored: " + w.error().message());
    }
    insert(h);
    registry.counter("mesh_policy_accepted_total", "Signed policy documents accepted, by source.",
                     {{"source", src == Source::publish ? "publish" : "gossip"}})
        .inc();
    log->info("policy accepted: {} digest {} signers {} ({})", what, h->digestHex().substr(0, 16), e.signerKeyIds.size(),
              src == Source::publish ? "published here" : "from a peer");
    compile();
    return Offered{h, std::nullopt};
  }

  void insert(std::shared_ptr<const Held> h) {
    auto& v = docs[h->doc.key()];
    auto before = v.empty() ? nullptr : v.back();
    v.push_back(std::move(h));
    std::sort(v.begin(), v.end(), [](const auto& a, const auto& b) { return higher(b->doc, a->doc); });
    if (before != v.back()) {
      if (before) hash ^= dissem::entryHash(before->doc.key(), packedVersion(before->doc));
      hash ^= dissem::entryHash(v.back()->doc.key(), packedVersion(v.back()->doc));
    }
  }

  void compile() {
    auto start = std::chrono::steady_clock::now();
    auto s = std::make_shared<Snapshot>();
    s->version = ++snapshotVersion;
    s->compiledAtMs = schema::unixMsNow();
    std::map<std::string, std::set<std::string>> subsets;  // service -> subsets defined
    for (const auto& [key, versions] : docs) {
      if (versions.empty()) continue;
      const auto& h = versions.back();
      s->documents[key] = h;
      if (!h->subsetsService.empty()) subsets[h->subsetsService].insert(h->subsets.begin(), h->subsets.end());
    }
    for (const auto& [key, h] : s->documents) {
      std::string why;
      for (const auto& [svc, subset] : h->routeSubsets) {
        auto it = subsets.find(svc);
        if (it == subsets.end()) why += (why.empty() ? "" : "; ") + std::string("subset '") + subset + "' of '" + svc + "': no DestinationPolicy for '" + svc + "' is held";
        else if (!it->second.count(subset)) why += (why.empty() ? "" : "; ") + std::string("subset '") + subset + "' is not defined by the DestinationPolicy of '" + svc + "'";
      }
      if (!why.empty()) s->problems[key] = why;
    }
    auto [keys, threshold] = trust();
    s->trustedKeys = keys;
    s->threshold = threshold;
    std::shared_ptr<const Snapshot> done = s;
    snap.store(done);
    snapshotGauge->set(static_cast<double>(s->version));
    documentsGauge->set(static_cast<double>(s->documents.size()));
    compileSeconds->observe(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    for (const auto& [key, why] : s->problems) log->warn("policy {} is held but refers to what is not: {}", key, why);
    for (const auto& fn : listeners) fn(done);
  }
};

PolicyStore::PolicyStore(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
PolicyStore::~PolicyStore() = default;

Result<std::unique_ptr<PolicyStore>> PolicyStore::open(store::Store& store, Options options, metrics::Registry& registry) {
  auto impl = std::make_unique<Impl>(store, std::move(options), registry);
  std::size_t loaded = 0, damaged = 0;
  auto r = store.scan(store::Family::policy, "doc/", [&](std::string_view key, std::string_view value) {
    auto s = decodeSigned(value);
    if (!s || sha256(s->body) != s->envelope.bodyDigest || storeKey(*s) != key) {
      ++damaged;
      impl->log->error("policy record {} in the store is damaged; skipped: {}", key,
                       s ? "its body does not match its digest or key" : s.error().message());
      return true;
    }
    auto h = std::make_shared<Held>();
    h->record = std::string(value);
    h->doc = std::move(*s);
    readNames(*h);
    impl->insert(std::move(h));
    ++loaded;
    return true;
  });
  if (!r) return Error(r.error().code, "policy records in the store: " + r.error().message());
  // Gauges the registry owns (set here and at every compile), never callbacks into this object:
  // a registry may outlive a store (tests reopen one).
  registry.gauge("mesh_policy_damaged_records", "Policy records found damaged in the store at start (skipped).")
      .set(static_cast<double>(damaged));
  if (loaded) impl->log->info("policy restored from the store: {} versions of {} documents", loaded, impl->docs.size());
  impl->compile();
  return std::unique_ptr<PolicyStore>(new PolicyStore(std::move(impl)));
}

PolicyStore::Offered PolicyStore::offer(std::string_view record, Source source) {
  auto s = decodeSigned(record);
  if (!s) return impl_->refuse(source, Refusal::malformed, "not a signed policy record: " + s.error().message());
  return impl_->offer(*s, source);
}

PolicyStore::Offered PolicyStore::offer(const Signed& doc, Source source) { return impl_->offer(doc, source); }

std::shared_ptr<const Held> PolicyStore::current(const std::string& key) const { return impl_->currentOf(key); }

std::vector<std::shared_ptr<const Held>> PolicyStore::history(const std::string& key) const {
  auto it = impl_->docs.find(key);
  return it == impl_->docs.end() ? std::vector<std::shared_ptr<const Held>>{} : it->second;
}

std::shared_ptr<const Held> PolicyStore::version(const std::string& key, std::uint64_t v) const {
  auto it = impl_->docs.find(key);
  if (it == impl_->docs.end()) return nullptr;
  // The highest digest of that version (the one that won a conflict).
  for (auto h = it->second.rbegin(); h != it->second.rend(); ++h) {
    if ((*h)->doc.envelope.version == v) return *h;
  }
  return nullptr;
}

std::shared_ptr<const Snapshot> PolicyStore::snapshot() const { return impl_->snap.load(); }

void PolicyStore::onApply(std::function<void(const std::shared_ptr<const Snapshot>&)> fn) {
  impl_->listeners.push_back(std::move(fn));
}

std::vector<PublicKey> PolicyStore::trustedKeys() const { return impl_->snap.load()->trustedKeys; }
int PolicyStore::threshold() const { return impl_->snap.load()->threshold; }

std::uint64_t PolicyStore::packedVersion(const Signed& doc) {
  const auto& d = doc.envelope.bodyDigest;
  std::uint64_t top = 0;
  for (std::size_t i = 0; i < 3 && i < d.size(); ++i) top = (top << 8) | static_cast<unsigned char>(d[i]);
  return (doc.envelope.version << 24) | top;
}

std::map<std::string, std::uint64_t> PolicyStore::versions() {
  std::map<std::string, std::uint64_t> out;
  for (const auto& [key, v] : impl_->docs) {
    if (!v.empty()) out[key] = packedVersion(v.back()->doc);
  }
  return out;
}

std::uint64_t PolicyStore::version(const std::string& key) {
  auto h = impl_->currentOf(key);
  return h ? packedVersion(h->doc) : 0;
}

std::uint64_t PolicyStore::hash() { return impl_->hash; }

std::optional<std::pair<std::uint64_t, std::string>> PolicyStore::body(const std::string& key) {
  auto h = impl_->currentOf(key);
  if (!h) return std::nullopt;
  return std::pair{packedVersion(h->doc), h->record};
}

bool PolicyStore::offer(const std::string& key, std::uint64_t version, std::string_view body) {
  auto s = decodeSigned(body);
  if (!s) {
    impl_->refuse(Source::gossip, Refusal::malformed, "record pulled for " + key + ": " + s.error().message());
    return false;
  }
  if (s->key() != key || packedVersion(*s) != version) {
    impl_->refuse(Source::gossip, Refusal::malformed, "record pulled for " + key + " is " + s->key() + " version " +
                                                          std::to_string(s->envelope.version) + ", not what was announced");
    return false;
  }
  return impl_->offer(*s, Source::gossip).held != nullptr;
}

}  // namespace mesh::policy
