#include "store/store.h"

#include <rocksdb/db.h>
#include <rocksdb/options.h>
#include <rocksdb/write_batch.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstring>

#include "common/log.h"
#include "common/metrics.h"
#include "store/errc.h"

namespace mesh::store {
namespace {

class StoreCategory final : public std::error_category {
 public:
  const char* name() const noexcept override { return "mesh.store"; }
  std::string message(int ev) const override {
    switch (static_cast<errc>(ev)) {
      case errc::ok: return "ok";
      case errc::locked: return "store in use by another process";
      case errc::newer_format: return "store written by a newer meshd";
      case errc::corrupt: return "store corrupt";
      case errc::io_error: return "store I/O error";
    }
    return "unknown store error " + std::to_string(ev);
  }
};

constexpr std::array kFamilies = {Family::meta, Family::serf, Family::keyring, Family::catalog, Family::policy};
constexpr std::string_view kFormatKey = "format";

std::string encodeVersion(std::uint32_t v) {
  std::string out(4, '\0');
  for (int i = 0; i < 4; ++i) out[i] = static_cast<char>((v >> (24 - 8 * i)) & 0xff);
  return out;
}

Result<std::uint32_t> decodeVersion(std::string_view s) {
  if (s.size() != 4) return Error(errc::corrupt, "format version record of " + std::to_string(s.size()) + " bytes");
  std::uint32_t v = 0;
  for (char c : s) v = (v << 8) | static_cast<std::uint8_t>(c);
  return v;
}

Error fromStatus(const rocksdb::Status& st, const std::string& what) {
  errc code = errc::io_error;
  if (st.IsCorruption()) code = errc::corrupt;
  if (st.IsIOError() && st.ToString().find("lock") != std::string::npos) code = errc::locked;
  return Error(code, what + ": " + st.ToString());
}

}  // namespace

const std::error_category& storeCategory() {
  static const StoreCategory category;
  return category;
}

const char* familyName(Family f) {
  switch (f) {
    case Family::meta: return "meta";
    case Family::serf: return "serf";
    case Family::keyring: return "keyring";
    case Family::catalog: return "catalog";
    case Family::policy: return "policy";
  }
  return "unknown";
}

void Batch::put(Family f, std::string_view key, std::string_view value) {
  ops_.push_back({f, false, std::string(key), std::string(value)});
}

void Batch::erase(Family f, std::string_view key) { ops_.push_back({f, true, std::string(key), {}}); }

struct Store::Impl {
  Impl(std::string p, metrics::Registry& r)
      : path(std::move(p)),
        log(log::get("store")),
        writes(r.counter("mesh_store_writes_total", "Store writes (single records and batches).")),
        writeErrors(r.counter("mesh_store_write_errors_total", "Store writes that failed.")),
        writeSeconds(r.histogram("mesh_store_write_duration_seconds", "Time to write to the store.",
                                 metrics::latencyBuckets())) {}

  ~Impl() {
    for (auto* h : handles) {
      if (db && h) db->DestroyColumnFamilyHandle(h);
    }
    handles.clear();
    if (db) db->Close();
  }

  std::string path;
  std::shared_ptr<spdlog::logger> log;
  metrics::Counter& writes;
  metrics::Counter& writeErrors;
  metrics::Histogram& writeSeconds;
  std::unique_ptr<rocksdb::DB> db;
  std::vector<rocksdb::ColumnFamilyHandle*> handles;  // every family on disk, ours first
  std::array<rocksdb::ColumnFamilyHandle*, kFamilies.size()> ours{};
  std::uint32_t openedFormat = 0;

  rocksdb::ColumnFamilyHandle* cf(Family f) const { return ours[static_cast<std::size_t>(f)]; }

  Result<void> commit(rocksdb::WriteBatch& b, bool sync) {
    rocksdb::WriteOptions wo;
    wo.sync = sync;
    const auto t0 = std::chrono::steady_clock::now();
    auto st = db->Write(wo, &b);
    writeSeconds.observe(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    writes.inc();
    if (!st.ok()) {
      writeErrors.inc();
      log->error("store write failed path={} error={}", path, st.ToString());
      return fromStatus(st, "store " + path + ": write failed");
    }
    return {};
  }
};

Store::Store(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Store::~Store() = default;

Result<std::unique_ptr<Store>> Store::open(const std::string& dir, metrics::Registry& registry, Options options) {
  auto impl = std::make_unique<Impl>(dir, registry);
  rocksdb::DBOptions dbo;
  dbo.create_if_missing = options.createIfMissing;
  dbo.create_missing_column_families = true;
  // A node's state is small: keep RocksDB's own footprint small too.
  dbo.max_open_files = 64;
  dbo.keep_log_file_num = 3;
  dbo.max_log_file_size = 1 << 20;
  dbo.info_log_level = rocksdb::InfoLogLevel::WARN_LEVEL;
  dbo.paranoid_checks = true;
  rocksdb::ColumnFamilyOptions cfo;
  cfo.write_buffer_size = 4 << 20;

  // Every family already on disk must be opened, including ones a newer build added.
  std::vector<std::string> onDisk;
  auto listed = rocksdb::DB::ListColumnFamilies(dbo, dir, &onDisk);
  if (!listed.ok()) onDisk.clear();  // a new store (or none): just ours
  std::vector<rocksdb::ColumnFamilyDescriptor> descs;
  descs.emplace_back(rocksdb::kDefaultColumnFamilyName, cfo);
  for (Family f : kFamilies) descs.emplace_back(familyName(f), cfo);
  for (const auto& name : onDisk) {
    bool known = std::any_of(descs.begin(), descs.end(), [&](const auto& d) { return d.name == name; });
    if (!known) {
      impl->log->info("store has a column family this build does not use path={} family={}", dir, name);
      descs.emplace_back(name, cfo);
    }
  }
  rocksdb::DB* raw = nullptr;
  auto st = rocksdb::DB::Open(dbo, dir, descs, &impl->handles, &raw);
  if (!st.ok()) return fromStatus(st, "store " + dir + ": cannot open");
  impl->db.reset(raw);
  for (std::size_t i = 0; i < kFamilies.size(); ++i) impl->ours[i] = impl->handles[i + 1];

  // Format: a new store gets ours; an older one is upgraded; a newer one is refused.
  std::string v;
  auto got = impl->db->Get(rocksdb::ReadOptions(), impl->cf(Family::meta), std::string(kFormatKey), &v);
  if (got.IsNotFound()) {
    impl->openedFormat = 0;
  } else if (!got.ok()) {
    return fromStatus(got, "store " + dir + ": cannot read its format");
  } else {
    auto ver = decodeVersion(v);
    if (!ver) return Error(errc::corrupt, "store " + dir + ": " + ver.error().message());
    impl->openedFormat = *ver;
    if (*ver > kFormatVersion) {
      return Error(errc::newer_format, "store " + dir + " has format " + std::to_string(*ver) +
                                           ", written by a newer meshd; this build reads formats up to " +
                                           std::to_string(kFormatVersion) + " (upgrade meshd, or move the directory away)");
    }
  }
  if (impl->openedFormat != kFormatVersion) {
    // Upgrade steps, one per format, go here as formats are added; format 1 is the first.
    rocksdb::WriteBatch b;
    b.Put(impl->cf(Family::meta), std::string(kFormatKey), encodeVersion(kFormatVersion));
    if (auto r = impl->commit(b, /*sync=*/true); !r) return r.error();
    if (impl->openedFormat != 0) {
      impl->log->info("store upgraded path={} from={} to={}", dir, impl->openedFormat, kFormatVersion);
    }
  }
  return std::unique_ptr<Store>(new Store(std::move(impl)));
}

Result<std::optional<std::string>> Store::get(Family f, std::string_view key) const {
  std::string v;
  auto st = impl_->db->Get(rocksdb::ReadOptions(), impl_->cf(f), rocksdb::Slice(key.data(), key.size()), &v);
  if (st.IsNotFound()) return std::optional<std::string>{};
  if (!st.ok()) return fromStatus(st, "store " + impl_->path + ": read failed");
  return std::optional<std::string>(std::move(v));
}

Result<void> Store::put(Family f, std::string_view key, std::string_view value, bool sync) {
  rocksdb::WriteBatch b;
  b.Put(impl_->cf(f), rocksdb::Slice(key.data(), key.size()), rocksdb::Slice(value.data(), value.size()));
  return impl_->commit(b, sync);
}

Result<void> Store::erase(Family f, std::string_view key, bool sync) {
  rocksdb::WriteBatch b;
  b.Delete(impl_->cf(f), rocksdb::Slice(key.data(), key.size()));
  return impl_->commit(b, sync);
}

Result<void> Store::write(const Batch& batch, bool sync) {
  if (batch.empty()) return {};
  rocksdb::WriteBatch b;
  for (const auto& op : batch.ops_) {
    if (op.erase) {
      b.Delete(impl_->cf(op.family), op.key);
    } else {
      b.Put(impl_->cf(op.family), op.key, op.value);
    }
  }
  return impl_->commit(b, sync);
}

Result<void> Store::scan(Family f, std::string_view prefix,
                         const std::function<bool(std::string_view, std::string_view)>& fn) const {
  std::unique_ptr<rocksdb::Iterator> it(impl_->db->NewIterator(rocksdb::ReadOptions(), impl_->cf(f)));
  for (it->Seek(rocksdb::Slice(prefix.data(), prefix.size())); it->Valid(); it->Next()) {
    const auto k = it->key();
    const std::string_view key(k.data(), k.size());
    if (!key.starts_with(prefix)) break;
    const auto v = it->value();
    if (!fn(key, std::string_view(v.data(), v.size()))) break;
  }
  if (!it->status().ok()) return fromStatus(it->status(), "store " + impl_->path + ": scan failed");
  return {};
}

std::uint32_t Store::openedFormat() const { return impl_->openedFormat; }
const std::string& Store::path() const { return impl_->path; }

}  // namespace mesh::store
