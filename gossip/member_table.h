#pragma once
// A member list's own table, kept small because a node holds one entry per member and, in the
// simulator, 10,000 nodes hold 10,000 entries each: members stored flat (about 64 bytes each,
// names and meta interned), found through an open-addressing index on the interned name's
// identity (8 bytes a member at most half full). The vector order is the probe order.
//
// References returned stay valid until the next insert(), erase or shuffle().

#include <array>
#include <cstdint>
#include <random>
#include <string_view>
#include <vector>

#include "common/clock.h"
#include "gossip/address.h"
#include "gossip/delegate.h"
#include "gossip/interned.h"
#include "gossip/wire.h"

namespace mesh::gossip {

struct Member {
  Interned name;
  Interned meta;
  std::array<char, 16> ip{};
  std::uint8_t ipLen = 0;
  std::uint16_t port = 0;
  std::uint8_t pmin = 0, pmax = 0, pcur = 0, dmin = 0, dmax = 0, dcur = 0;
  NodeState state = NodeState::alive;
  std::uint32_t incarnation = 0;
  TimePoint stateChange;

  NodeAddress addr() const { return NodeAddress{std::string(ip.data(), ipLen), port}; }
  void setAddr(const NodeAddress& a);
  bool sameAddr(const NodeAddress& a) const {
    return a.port == port && a.ip.size() == ipLen && std::equal(a.ip.begin(), a.ip.end(), ip.begin());
  }
  std::string vsn() const;
  void setVsn(std::string_view v);  // 6 bytes, else unchanged
  Node node() const;
};

class MemberTable {
 public:
  std::size_t size() const { return members_.size(); }
  bool empty() const { return members_.empty(); }
  Member& at(std::size_t i) { return members_[i]; }
  const Member& at(std::size_t i) const { return members_[i]; }
  Member* find(std::string_view name);
  const Member* find(std::string_view name) const;
  // Appends and returns the new member's index. Its name must not be in the table yet.
  std::size_t insert(Member m);
  void swap(std::size_t a, std::size_t b);
  // Removes every member for which pred(member) is true; keeps the others' order.
  template <typename Pred>
  void eraseIf(Pred&& pred) {
    std::size_t out = 0;
    for (std::size_t i = 0; i < members_.size(); ++i) {
      if (pred(members_[i])) continue;
      if (out != i) members_[out] = std::move(members_[i]);
      ++out;
    }
    if (out == members_.size()) return;
    members_.resize(out);
    rebuild();
  }
  void shuffle(std::mt19937_64& rng);
  std::vector<Member>::const_iterator begin() const { return members_.begin(); }
  std::vector<Member>::const_iterator end() const { return members_.end(); }

 private:
  std::size_t slotFor(const void* id) const;
  void rebuild();
  std::vector<Member> members_;
  std::vector<std::uint32_t> slots_;  // 0 = empty, else index + 1
};

}  // namespace mesh::gossip
