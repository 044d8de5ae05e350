#pragma once
// The node's durable state: RocksDB with one column family per kind of record. Keys and values
// are bytes here; the typed records (Cap'n Proto, schemas/) are in the *_records.h headers.
//
// Durability: every write goes to RocksDB's write-ahead log before it returns, so it survives
// kill -9 of meshd (the OS holds it); writes marked sync also survive a power cut.
//
// Format: the "meta" family holds the store's format version. A store of an older format is
// upgraded in place when opened; one of a newer format (written by a newer meshd) is refused with
// a message saying so, never misread. Column families this build does not know (added by a newer
// build of the same format) are opened and left alone.
//
// Thread rules: a Store may be used from any one thread at a time (meshd: the control thread).
// RocksDB itself is thread-safe; the metrics are not updated atomically across threads.

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace mesh::metrics {
class Registry;
}

namespace mesh::store {

// Column families (their names are disk format: only append).
enum class Family { meta, serf, keyring, catalog, policy };
const char* familyName(Family f);

// The format this build writes. History: 1 = first (serf snapshot, keyring; the catalog and
// policy families were added within format 1: a family is created when missing, and older
// builds ignore it).
inline constexpr std::uint32_t kFormatVersion = 1;

struct Options {
  bool createIfMissing = true;
};

class Batch {
 public:
  void put(Family f, std::string_view key, std::string_view value);
  void erase(Family f, std::string_view key);
  bool empty() const { return ops_.empty(); }

 private:
  friend class Store;
  struct Op {
    Family family;
    bool erase;
    std::string key, value;
  };
  std::vector<Op> ops_;
};

class Store {
 public:
  // Opens (or creates) the store in `dir`. Errors name the directory: another process holds it,
  // it was written by a newer meshd, or RocksDB found it corrupt.
  static Result<std::unique_ptr<Store>> open(const std::string& dir, metrics::Registry& registry, Options options = {});
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  Result<std::optional<std::string>> get(Family f, std::string_view key) const;
  Result<void> put(Family f, std::string_view key, std::string_view value, bool sync = false);
  Result<void> erase(Family f, std::string_view key, bool sync = false);
  // All of a batch or none of it.
  Result<void> write(const Batch& batch, bool sync = false);
  // Every key starting with `prefix`, in key order; fn returns false to stop.
  Result<void> scan(Family f, std::string_view prefix,
                    const std::function<bool(std::string_view key, std::string_view value)>& fn) const;

  // The format version found on disk when opened (before any upgrade); 0 for a new store.
  std::uint32_t openedFormat() const;
  const std::string& path() const;

  struct Impl;

 private:
  explicit Store(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace mesh::store
