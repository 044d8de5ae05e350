#include "node/catalog/catalog.h"


#include <chrono>
#include <cstring>

#include "common/errc.h"
#include "schemas/catalog.capnp.h"
#include "schemas/record_io.h"

namespace mesh::catalog {
namespace {

// A node's record is small (tens of instances); anything that asks for more is damaged.
constexpr std::uint64_t kTraversalWords = 4 << 20;

}  // namespace

std::string encode(const NodeServices& n) {
  capnp::MallocMessageBuilder mb;
  auto r = mb.initRoot<schema::NodeServices>();
  r.setOwner(n.owner);
  r.setVersion(n.version);
  r.setChangedAtMs(schema::unixMsNow());
  auto list = r.initInstances(static_cast<unsigned>(n.instances.size()));
  for (unsigned i = 0; i < n.instances.size(); ++i) {
    const Instance& in = n.instances[i];
    auto o = list[i];
    o.setId(in.id);
    o.setName(in.name);
    o.setAddress(in.address);
    o.setPort(in.port);
    o.setProtocol(static_cast<schema::Instance::Protocol>(in.protocol));
    auto tags = o.initTags(static_cast<unsigned>(in.tags.size()));
    for (unsigned t = 0; t < in.tags.size(); ++t) tags.set(t, in.tags[t]);
    auto labels = o.initLabels(static_cast<unsigned>(in.labels.size()));
    unsigned li = 0;
    for (const auto& [k, v] : in.labels) {
      labels[li].setKey(k);
      labels[li].setValue(v);
      ++li;
    }
    o.setZone(in.zone);
    o.setWeight(in.weight);
    o.setHealth(static_cast<schema::Instance::Health>(in.health));
    o.setMaintenance(in.maintenance);
    o.setNote(in.note);
  }
  return schema::toBytes(mb);
}

Result<NodeServices> decodeNodeServices(std::string_view bytes) {
  return schema::readRecord<schema::NodeServices>(bytes, "node services", make_error_code(errc::malformed), kTraversalWords,
                                                  [](schema::NodeServices::Reader r) -> Result<NodeServices> {
    NodeServices n;
    n.owner = r.getOwner().cStr();
    n.version = r.getVersion();
    if (n.owner.empty()) return Error(errc::malformed, "node services record without an owner");
    for (auto o : r.getInstances()) {
      Instance in;
      in.id = o.getId().cStr();
      in.name = o.getName().cStr();
      in.address = o.getAddress().cStr();
      in.port = o.getPort();
      // Enumerants a newer build added read as the safest value.
      const auto proto = static_cast<unsigned>(o.getProtocol());
      in.protocol = proto <= static_cast<unsigned>(Protocol::tcp) ? static_cast<Protocol>(proto) : Protocol::tcp;
      for (auto t : o.getTags()) in.tags.emplace_back(t.cStr());
      for (auto l : o.getLabels()) in.labels[l.getKey().cStr()] = l.getValue().cStr();
      in.zone = o.getZone().cStr();
      in.weight = o.getWeight();
      const auto h = static_cast<unsigned>(o.getHealth());
      in.health = h <= static_cast<unsigned>(Health::critical) ? static_cast<Health>(h) : Health::critical;
      in.maintenance = o.getMaintenance();
      in.note = o.getNote().cStr();
      n.instances.push_back(std::move(in));
    }
    return n;
  });
}

bool Catalog::apply(NodeServices n, bool stale, std::int64_t learnedUnixMs) {
  auto it = entries_.find(n.owner);
  if (it != entries_.end() && n.version <= it->second.services.version) {
    // The same version again refreshes a stale entry (we now know it is current).
    if (!stale && n.version == it->second.services.version && it->second.stale) it->second.stale = false;
    return false;
  }
  const std::string owner = n.owner;
  Entry e;
  e.services = std::move(n);
  e.stale = stale;
  e.learnedUnixMs = learnedUnixMs;
  if (it != entries_.end()) e.available = it->second.available;
  entries_[owner] = std::move(e);
  ++generation_;
  return true;
}

void Catalog::setAvailable(const std::string& owner, bool available) {
  if (auto it = entries_.find(owner); it != entries_.end() && it->second.available != available) {
    it->second.available = available;
    ++generation_;
  }
}

void Catalog::confirm(const std::string& owner, std::uint64_t version) {
  if (auto it = entries_.find(owner); it != entries_.end() && it->second.services.version == version) {
    it->second.stale = false;
  }
}

void Catalog::confirmAll() {
  for (auto& [owner, e] : entries_) e.stale = false;
}

bool Catalog::remove(const std::string& owner) {
  if (entries_.erase(owner) == 0) return false;
  ++generation_;
  return true;
}

std::map<std::string, std::uint64_t> Catalog::versions() const {
  std::map<std::string, std::uint64_t> out;
  for (const auto& [owner, e] : entries_) out[owner] = e.services.version;
  return out;
}

const Catalog::Entry* Catalog::find(const std::string& owner) const {
  auto it = entries_.find(owner);
  return it == entries_.end() ? nullptr : &it->second;
}

std::size_t Catalog::instanceCount() const {
  std::size_t n = 0;
  for (const auto& [owner, e] : entries_) n += e.services.instances.size();
  return n;
}

}  // namespace mesh::catalog
