#include "store/serf_records.h"


#include <chrono>
#include <cstring>

#include "common/log.h"
#include "schemas/record_io.h"
#include "schemas/store.capnp.h"
#include "store/errc.h"
#include "store/store.h"

namespace mesh::store {
namespace {

constexpr std::string_view kClocksKey = "clocks";
constexpr std::string_view kMemberPrefix = "member/";
constexpr std::string_view kKeyringKey = "gossip";
// Records are small; anything that asks a reader to walk more than this is damaged.
constexpr std::uint64_t kTraversalWords = 1 << 20;

using schema::toBytes;

// Decodes one record; damage is errc::corrupt.
template <typename Root, typename F>
auto withReader(std::string_view bytes, const char* what, F&& f) {
  return schema::readRecord<Root>(bytes, what, make_error_code(errc::corrupt), kTraversalWords, std::forward<F>(f));
}

std::string memberKey(std::string_view name) { return std::string(kMemberPrefix) + std::string(name); }

}  // namespace

std::string encodeClocks(const SerfClocks& c) {
  capnp::MallocMessageBuilder mb;
  auto r = mb.initRoot<schema::SerfClocks>();
  r.setClock(c.clock);
  r.setEventClock(c.eventClock);
  r.setQueryClock(c.queryClock);
  r.setWrittenAtMs(schema::unixMsNow());
  return toBytes(mb);
}

Result<SerfClocks> decodeClocks(std::string_view bytes) {
  return withReader<schema::SerfClocks>(bytes, "serf clocks", [](schema::SerfClocks::Reader r) -> Result<SerfClocks> {
    return SerfClocks{r.getClock(), r.getEventClock(), r.getQueryClock()};
  });
}

std::string encodeMember(const KnownMember& m) {
  capnp::MallocMessageBuilder mb;
  auto r = mb.initRoot<schema::KnownMember>();
  r.setName(m.name);
  r.setAddr(kj::arrayPtr(reinterpret_cast<const kj::byte*>(m.addr.data()), m.addr.size()));
  r.setPort(m.port);
  r.setStatus(static_cast<schema::KnownMember::MemberStatus>(m.status));
  auto tags = r.initTags(static_cast<unsigned>(m.tags.size()));
  unsigned i = 0;
  for (const auto& [k, v] : m.tags) {
    tags[i].setKey(k);
    tags[i].setValue(v);
    ++i;
  }
  r.setUpdatedAtMs(schema::unixMsNow());
  return toBytes(mb);
}

Result<KnownMember> decodeMember(std::string_view bytes) {
  return withReader<schema::KnownMember>(bytes, "member", [](schema::KnownMember::Reader r) -> Result<KnownMember> {
    KnownMember m;
    m.name = r.getName().cStr();
    auto addr = r.getAddr();
    m.addr.assign(reinterpret_cast<const char*>(addr.begin()), addr.size());
    if (m.addr.size() != 4 && m.addr.size() != 16) {
      return Error(errc::corrupt, "member " + m.name + " has an address of " + std::to_string(m.addr.size()) + " bytes");
    }
    m.port = r.getPort();
    // A status from a newer build (an enumerant we do not know) reads as none: not rejoined.
    const auto st = static_cast<unsigned>(r.getStatus());
    m.status = st <= static_cast<unsigned>(KnownMember::Status::failed) ? static_cast<KnownMember::Status>(st)
                                                                       : KnownMember::Status::none;
    for (auto t : r.getTags()) m.tags[t.getKey().cStr()] = t.getValue().cStr();
    if (m.name.empty()) return Error(errc::corrupt, "member record without a name");
    return m;
  });
}

std::string encodeKeyring(const std::vector<std::string>& keys) {
  capnp::MallocMessageBuilder mb;
  auto r = mb.initRoot<schema::GossipKeyring>();
  auto list = r.initKeys(static_cast<unsigned>(keys.size()));
  for (unsigned i = 0; i < keys.size(); ++i) {
    list.set(i, kj::arrayPtr(reinterpret_cast<const kj::byte*>(keys[i].data()), keys[i].size()));
  }
  r.setUpdatedAtMs(schema::unixMsNow());
  return toBytes(mb);
}

Result<std::vector<std::string>> decodeKeyring(std::string_view bytes) {
  return withReader<schema::GossipKeyring>(bytes, "keyring", [](schema::GossipKeyring::Reader r) -> Result<std::vector<std::string>> {
    std::vector<std::string> keys;
    for (auto k : r.getKeys()) keys.emplace_back(reinterpret_cast<const char*>(k.begin()), k.size());
    return keys;
  });
}

Result<void> saveClocks(Store& s, const SerfClocks& c) { return s.put(Family::serf, kClocksKey, encodeClocks(c)); }

Result<std::optional<SerfClocks>> loadClocks(const Store& s) {
  auto raw = s.get(Family::serf, kClocksKey);
  if (!raw) return raw.error();
  if (!*raw) return std::optional<SerfClocks>{};
  auto c = decodeClocks(**raw);
  if (!c) return c.error();
  return std::optional<SerfClocks>(*c);
}

Result<void> saveMember(Store& s, const KnownMember& m) { return s.put(Family::serf, memberKey(m.name), encodeMember(m)); }

Result<void> removeMember(Store& s, const std::string& name) { return s.erase(Family::serf, memberKey(name)); }

Result<std::vector<KnownMember>> loadMembers(const Store& s, int* skipped) {
  std::vector<KnownMember> out;
  int bad = 0;
  auto r = s.scan(Family::serf, kMemberPrefix, [&](std::string_view key, std::string_view value) {
    auto m = decodeMember(value);
    if (!m) {
      ++bad;
      log::get("store")->warn("skipping undecodable member record key={} error={}", key, m.error().message());
    } else {
      out.push_back(std::move(*m));
    }
    return true;
  });
  if (!r) return r.error();
  if (skipped) *skipped = bad;
  return out;
}

Result<void> saveKeyring(Store& s, const std::vector<std::string>& keys) {
  return s.put(Family::keyring, kKeyringKey, encodeKeyring(keys), /*sync=*/true);
}

Result<std::optional<std::vector<std::string>>> loadKeyring(const Store& s) {
  auto raw = s.get(Family::keyring, kKeyringKey);
  if (!raw) return raw.error();
  if (!*raw) return std::optional<std::vector<std::string>>{};
  auto k = decodeKeyring(**raw);
  if (!k) return k.error();
  return std::optional<std::vector<std::string>>(std::move(*k));
}

}  // namespace mesh::store
