#include "gossip/interned.h"

#include <mutex>
#include <unordered_map>

namespace mesh::gossip {
namespace {

struct Pool {
  std::mutex mu;
  // Keys view the blocks' own strings, which live as long as the entry.
  std::unordered_map<std::string_view, Interned::Block*> map;
};

Pool& pool() {
  static Pool* p = new Pool;  // never destroyed: handles may outlive static destruction order
  return *p;
}

const std::string& emptyString() {
  static const std::string e;
  return e;
}

}  // namespace

Interned::Interned(std::string_view s) {
  if (s.empty()) return;  // the empty string needs no block
  Pool& p = pool();
  std::lock_guard lock(p.mu);
  auto it = p.map.find(s);
  if (it == p.map.end()) {
    auto* b = new Block;
    b->value.assign(s);
    it = p.map.emplace(std::string_view(b->value), b).first;
  }
  b_ = it->second;
  b_->refs.fetch_add(1, std::memory_order_relaxed);
}

Interned Interned::find(std::string_view s) {
  if (s.empty()) return {};
  Pool& p = pool();
  std::lock_guard lock(p.mu);
  auto it = p.map.find(s);
  if (it == p.map.end()) return {};
  return Interned(it->second);
}

std::size_t Interned::poolSize() {
  Pool& p = pool();
  std::lock_guard lock(p.mu);
  return p.map.size();
}

const std::string& Interned::str() const { return b_ ? b_->value : emptyString(); }

void Interned::release() {
  if (!b_) return;
  Block* b = b_;
  b_ = nullptr;
  if (b->refs.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
  // The last holder: remove it from the pool, unless someone interned it again meanwhile.
  Pool& p = pool();
  std::lock_guard lock(p.mu);
  if (b->refs.load(std::memory_order_acquire) != 0) return;
  p.map.erase(std::string_view(b->value));
  delete b;
}

}  // namespace mesh::gossip
