#pragma once
// Immutable strings shared by reference: node names and metadata in member tables. Every
// member list holds one entry per member, and every member's name and meta recur in every other
// node's table; in one process (meshd's several pools, the simulator's 10,000 nodes) each
// distinct string is stored once. Reference-counted: a string no table holds any more is freed,
// so churn does not grow the pool.
//
// Thread-safe: the pool is guarded by a mutex and the counts are atomic.

#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>

namespace mesh::gossip {

class Interned {
 public:
  Interned() = default;
  explicit Interned(std::string_view s);
  Interned(const Interned& o) noexcept : b_(o.b_) { retain(); }
  Interned(Interned&& o) noexcept : b_(o.b_) { o.b_ = nullptr; }
  Interned& operator=(const Interned& o) noexcept {
    if (this != &o) {
      release();
      b_ = o.b_;
      retain();
    }
    return *this;
  }
  Interned& operator=(Interned&& o) noexcept {
    if (this != &o) {
      release();
      b_ = o.b_;
      o.b_ = nullptr;
    }
    return *this;
  }
  ~Interned() { release(); }

  // The pooled string for s, if any table holds one; an empty handle otherwise. Does not add.
  static Interned find(std::string_view s);
  // Strings in the pool (for tests and the simulator's report).
  static std::size_t poolSize();

  const std::string& str() const;
  std::string_view view() const { return str(); }
  bool empty() const { return str().empty(); }
  // Identity: equal handles point at the same pooled string.
  const void* id() const { return b_; }
  friend bool operator==(const Interned& a, const Interned& b) { return a.b_ == b.b_; }

  struct Block {
    std::atomic<std::uint32_t> refs{0};
    std::string value;
  };

 private:
  explicit Interned(Block* b) : b_(b) { retain(); }
  void retain() {
    if (b_) b_->refs.fetch_add(1, std::memory_order_relaxed);
  }
  void release();
  Block* b_ = nullptr;
};

}  // namespace mesh::gossip
