#include "gossip/member_table.h"

#include <algorithm>

namespace mesh::gossip {

void Member::setAddr(const NodeAddress& a) {
  ipLen = static_cast<std::uint8_t>(std::min<std::size_t>(a.ip.size(), ip.size()));
  std::copy_n(a.ip.begin(), ipLen, ip.begin());
  port = a.port;
}

std::string Member::vsn() const {
  return std::string{static_cast<char>(pmin), static_cast<char>(pmax), static_cast<char>(pcur),
                     static_cast<char>(dmin), static_cast<char>(dmax), static_cast<char>(dcur)};
}

void Member::setVsn(std::string_view v) {
  if (v.size() < 6) return;
  pmin = v[0], pmax = v[1], pcur = v[2], dmin = v[3], dmax = v[4], dcur = v[5];
}

Node Member::node() const {
  return Node{name.str(), addr(), meta.str(), pmin, pmax, pcur, dmin, dmax, dcur};
}

namespace {
std::size_t hashId(const void* p) {
  auto x = reinterpret_cast<std::uintptr_t>(p);
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  return static_cast<std::size_t>(x);
}
}  // namespace

std::size_t MemberTable::slotFor(const void* id) const {
  const std::size_t mask = slots_.size() - 1;
  for (std::size_t i = hashId(id) & mask;; i = (i + 1) & mask) {
    const std::uint32_t s = slots_[i];
    if (s == 0 || members_[s - 1].name.id() == id) return i;
  }
}

Member* MemberTable::find(std::string_view name) {
  if (slots_.empty()) return nullptr;
  // Names are interned: a name no table holds cannot be a member here.
  Interned key = Interned::find(name);
  if (!key.id()) return nullptr;
  const std::uint32_t s = slots_[slotFor(key.id())];
  return s ? &members_[s - 1] : nullptr;
}

const Member* MemberTable::find(std::string_view name) const {
  return const_cast<MemberTable*>(this)->find(name);
}

std::size_t MemberTable::insert(Member m) {
  members_.push_back(std::move(m));
  if (members_.size() * 2 > slots_.size()) {
    rebuild();
  } else {
    slots_[slotFor(members_.back().name.id())] = static_cast<std::uint32_t>(members_.size());
  }
  return members_.size() - 1;
}

void MemberTable::swap(std::size_t a, std::size_t b) {
  if (a == b) return;
  // Find both slots while they still point at the members' current places.
  const std::size_t sa = slotFor(members_[a].name.id()), sb = slotFor(members_[b].name.id());
  std::swap(members_[a], members_[b]);
  slots_[sa] = static_cast<std::uint32_t>(b + 1);
  slots_[sb] = static_cast<std::uint32_t>(a + 1);
}

void MemberTable::shuffle(std::mt19937_64& rng) {
  std::shuffle(members_.begin(), members_.end(), rng);
  rebuild();
}

void MemberTable::rebuild() {
  std::size_t cap = 16;
  while (cap < members_.size() * 2) cap <<= 1;
  slots_.assign(cap, 0);
  for (std::size_t i = 0; i < members_.size(); ++i) {
    slots_[slotFor(members_[i].name.id())] = static_cast<std::uint32_t>(i + 1);
  }
}

}  // namespace mesh::gossip
