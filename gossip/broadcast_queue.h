#pragma once
// Broadcasts waiting to be piggybacked on gossip and probe packets (memberlist queue.go): each
// is sent up to retransmitLimit() times, fewest-sent first and, among equals, largest first (to
// fill packets) and newest first. A broadcast with a name (memberlist's: the node it is about)
// replaces any queued one of the same name, so a newer alive/suspect/dead message about a node
// invalidates the older one; unnamed broadcasts are never invalidated.

#include <cstdint>
#include <functional>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace mesh::gossip {

class BroadcastQueue {
 public:
  // numNodes: the current cluster size (for the retransmit limit).
  BroadcastQueue(int retransmitMult, std::function<std::size_t()> numNodes)
      : retransmitMult_(retransmitMult), numNodes_(std::move(numNodes)) {}
  ~BroadcastQueue() {
    for (Item* i : items_) delete i;
  }
  BroadcastQueue(const BroadcastQueue&) = delete;
  BroadcastQueue& operator=(const BroadcastQueue&) = delete;

  // onFinished (optional) runs when the broadcast is sent for the last time, invalidated, or
  // pruned; Leave() waits on it for its dead message.
  void queue(std::string name, std::string msg, std::function<void()> onFinished = nullptr);

  // Takes broadcasts that fit: each costs overhead + its size, within limit bytes in total.
  std::vector<std::string> get(std::size_t overhead, std::size_t limit);

  std::size_t size() const { return items_.size(); }
  // Drops the most-sent broadcasts until at most maxRetain remain.
  void prune(std::size_t maxRetain);
  void reset();

 private:
  struct Item {
    int transmits;
    std::size_t len;
    std::uint64_t id;
    std::string name;
    std::string msg;
    std::function<void()> onFinished;
  };
  struct Order {
    // Fewer transmits first; then longer; then newer (higher id).
    bool operator()(const Item* a, const Item* b) const {
      if (a->transmits != b->transmits) return a->transmits < b->transmits;
      if (a->len != b->len) return a->len > b->len;
      return a->id > b->id;
    }
  };
  void erase(Item* it, bool finished);

  int retransmitMult_;
  std::function<std::size_t()> numNodes_;
  std::set<Item*, Order> items_;
  std::unordered_map<std::string, Item*> byName_;
  std::uint64_t nextId_ = 0;
};

}  // namespace mesh::gossip
