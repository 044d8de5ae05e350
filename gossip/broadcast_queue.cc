#include "gossip/broadcast_queue.h"

#include "gossip/lifeguard.h"

namespace mesh::gossip {

void BroadcastQueue::queue(std::string name, std::string msg, std::function<void()> onFinished) {
  if (!name.empty()) {
    if (auto it = byName_.find(name); it != byName_.end()) erase(it->second, true);
  }
  auto* item = new Item{0, msg.size(), ++nextId_, std::move(name), std::move(msg), std::move(onFinished)};
  items_.insert(item);
  if (!item->name.empty()) byName_[item->name] = item;
}

void BroadcastQueue::erase(Item* item, bool finished) {
  items_.erase(item);
  if (!item->name.empty()) byName_.erase(item->name);
  if (finished && item->onFinished) item->onFinished();
  delete item;
  if (items_.empty()) nextId_ = 0;
}

std::vector<std::string> BroadcastQueue::get(std::size_t overhead, std::size_t limit) {
  std::vector<std::string> out;
  if (items_.empty()) return out;
  const int transmitLimit = retransmitLimit(retransmitMult_, numNodes_());
  std::size_t used = 0;
  std::vector<Item*> reinsert;
  // Walk in priority order taking whatever still fits. Items taken leave the set during the
  // walk and come back with one more transmit, so none is sent twice in one packet.
  for (auto it = items_.begin(); it != items_.end();) {
    if (used + overhead >= limit) break;
    const std::size_t free = limit - used - overhead;
    Item* item = *it;
    if (item->len > free) {
      ++it;
      continue;
    }
    it = items_.erase(it);
    used += overhead + item->len;
    out.push_back(item->msg);
    if (item->transmits + 1 >= transmitLimit) {
      if (!item->name.empty()) byName_.erase(item->name);
      if (item->onFinished) item->onFinished();
      delete item;
    } else {
      ++item->transmits;
      reinsert.push_back(item);
    }
  }
  for (Item* item : reinsert) items_.insert(item);
  if (items_.empty()) nextId_ = 0;
  return out;
}

void BroadcastQueue::prune(std::size_t maxRetain) {
  while (items_.size() > maxRetain) erase(*std::prev(items_.end()), true);
}

void BroadcastQueue::reset() {
  while (!items_.empty()) erase(*items_.begin(), true);
}

}  // namespace mesh::gossip
