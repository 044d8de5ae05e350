#include "node/local_services.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/errc.h"
#include "common/log.h"
#include "store/store.h"

namespace mesh::node {
namespace {

namespace fs = std::filesystem;
using catalog::Health;

constexpr std::string_view kVersionKey = "own/version";
constexpr std::string_view kOwnKey = "own/services";
constexpr std::string_view kApiSource = "api";
// Services registered through the API are kept (as the JSON given) and registered again at start.
constexpr std::string_view kApiPrefix = "api/";
// A services file larger than this is refused (a definition is a few hundred bytes).
constexpr std::uintmax_t kMaxFileBytes = 1 << 20;

std::string encodeU64(std::uint64_t v) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((v >> (56 - 8 * i)) & 0xff);
  return out;
}

std::optional<std::uint64_t> decodeU64(std::string_view s) {
  if (s.size() != 8) return std::nullopt;
  std::uint64_t v = 0;
  for (char c : s) v = (v << 8) | static_cast<std::uint8_t>(c);
  return v;
}

Health worse(Health a, Health b) { return static_cast<int>(a) > static_cast<int>(b) ? a : b; }

}  // namespace

struct LocalServices::Impl {
  struct Service {
    catalog::ServiceDef def;
    std::string source;
    std::vector<std::unique_ptr<health::Check>> checks;
    bool maintenance = false;
    std::string maintenanceReason;
  };

  Impl(Options o, EventLoop& l, health::Prober& p, store::Store& s, OnPublish cb)
      : options(std::move(o)), loop(l), prober(p), store(s), onPublish(std::move(cb)), log(log::get("catalog")) {}

  Options options;
  EventLoop& loop;
  health::Prober& prober;
  store::Store& store;
  OnPublish onPublish;
  std::shared_ptr<spdlog::logger> log;
  std::map<std::string, Service> services;           // by id
  std::map<std::string, std::string> fileContents;   // path -> last content read (good or bad)
  std::map<std::string, std::string> fileErrors;
  catalog::NodeServices record;
  std::optional<catalog::NodeServices> previous;
  bool running = false;
  bool publishQueued = false;
  EventLoop::TimerId rescanTimer = 0;
  std::shared_ptr<bool> alive = std::make_shared<bool>(true);

  void startChecks(Service& s) {
    for (const auto& def : s.def.checks) {
      auto c = std::make_unique<health::Check>(def, loop, &prober, [this, id = s.def.id](const health::CheckStatus& st) {
        log->info("check {} of {} is now {}: {}", st.id, id, catalog::healthName(st.health), st.output);
        changed();
      });
      if (running) c->start();
      s.checks.push_back(std::move(c));
    }
  }

  // Replaces everything `source` defines with `defs`; a clash with another source's id refuses
  // the whole set (nothing changes).
  Result<void> replaceSource(const std::string& source, std::vector<catalog::ServiceDef> defs) {
    for (const auto& d : defs) {
      auto it = services.find(d.id);
      if (it != services.end() && it->second.source != source) {
        return Error(errc::already_exists, "service id '" + d.id + "' is already defined by " + it->second.source);
      }
    }
    bool any = false;
    // Removed or changed ones go; unchanged ones keep their running checks.
    for (auto it = services.begin(); it != services.end();) {
      if (it->second.source != source) {
        ++it;
        continue;
      }
      auto same = std::find_if(defs.begin(), defs.end(), [&](const auto& d) { return d == it->second.def; });
      if (same != defs.end()) {
        defs.erase(same);
        ++it;
        continue;
      }
      // Changed but with the same checks (a weight, a label): the checks keep running and keep
      // their state, so the instance does not drop out of rotation for a metadata change.
      auto sameChecks = std::find_if(defs.begin(), defs.end(), [&](const auto& d) {
        return d.id == it->first && d.checks == it->second.def.checks;
      });
      if (sameChecks != defs.end()) {
        log->info("service {} changed (source {})", it->first, source);
        it->second.def = std::move(*sameChecks);
        defs.erase(sameChecks);
        any = true;
        ++it;
        continue;
      }
      log->info("service {} removed or changed (source {})", it->first, source);
      it = services.erase(it);
      any = true;
    }
    for (auto& d : defs) {
      Service s;
      s.def = std::move(d);
      s.source = source;
      const std::string id = s.def.id;
      auto& placed = services[id] = std::move(s);
      startChecks(placed);
      log->info("service {} ({}) registered from {}", id, placed.def.name, source);
      any = true;
    }
    if (any) changed();
    return {};
  }

  catalog::Instance instanceOf(const Service& s) const {
    catalog::Instance in;
    in.id = s.def.id;
    in.name = s.def.name;
    in.address = s.def.address;
    in.port = s.def.port;
    in.protocol = s.def.protocol;
    in.tags = s.def.tags;
    in.labels = s.def.labels;
    in.zone = s.def.zone;
    in.weight = s.def.weight;
    in.health = Health::passing;  // no checks: passing (the owner vouches for it)
    for (const auto& c : s.checks) in.health = worse(in.health, c->status().health);
    // The note says which check decided it.
    for (const auto& c : s.checks) {
      if (in.health != Health::passing && c->status().health == in.health) {
        in.note = c->status().id + ": " + c->status().output;
        break;
      }
    }
    if (s.maintenance) {
      in.health = Health::critical;
      in.maintenance = true;
      in.note = "maintenance: " + s.maintenanceReason;
    }
    return in;
  }

  void changed() {
    if (publishQueued || !running) return;
    publishQueued = true;
    // Several changes in one turn of the loop make one version.
    loop.post([this, a = std::weak_ptr<bool>(alive)] {
      if (a.expired()) return;
      publishQueued = false;
      publish();
    });
  }

  void publish() {
    catalog::NodeServices next;
    next.owner = options.nodeName;
    next.version = record.version + 1;
    for (const auto& [id, s] : services) next.instances.push_back(instanceOf(s));
    // Stored first (with sync): a version that anyone may have seen is never issued again.
    store::Batch b;
    b.put(store::Family::catalog, kVersionKey, encodeU64(next.version));
    b.put(store::Family::catalog, kOwnKey, catalog::encode(next));
    if (auto w = store.write(b, /*sync=*/true); !w) {
      log->error("catalog version {} not stored, not published (retrying in 1 s): {}", next.version, w.error().message());
      // The version was not used; try again (a full disk may be freed).
      loop.runAfter(std::chrono::seconds(1), [this, a = std::weak_ptr<bool>(alive)] {
        if (!a.expired()) changed();
      });
      return;
    }
    record = std::move(next);
    if (onPublish) onPublish(record);
  }

  void scheduleRescan() {
    if (options.servicesDir.empty()) return;
    rescanTimer = loop.runAfter(options.rescanInterval, [this, a = std::weak_ptr<bool>(alive)] {
      if (a.expired() || !running) return;
      rescan();
      scheduleRescan();
    });
  }

  void rescan() {
    if (options.servicesDir.empty()) return;
    std::error_code ec;
    std::map<std::string, std::string> seen;
    for (const auto& entry : fs::directory_iterator(options.servicesDir, ec)) {
      const auto& p = entry.path();
      if (!entry.is_regular_file(ec)) continue;
      const auto ext = p.extension().string();
      if (ext != ".yaml" && ext != ".yml") continue;
      if (entry.file_size(ec) > kMaxFileBytes) {
        fileErrors[p.string()] = p.string() + ": larger than 1 MiB";
        seen[p.string()] = fileContents[p.string()];
        continue;
      }
      std::ifstream in(p);
      std::stringstream ss;
      ss << in.rdbuf();
      seen[p.string()] = ss.str();
    }
    if (ec) {
      log->warn("services dir {} unreadable: {}", options.servicesDir, ec.message());
      return;  // keep everything as it is
    }
    for (const auto& [path, text] : seen) {
      auto prev = fileContents.find(path);
      // Unchanged files are skipped, except refused ones: what refused them (an id another
      // source held) may have gone.
      if (prev != fileContents.end() && prev->second == text && !fileErrors.contains(path)) continue;
      fileContents[path] = text;
      auto refuse = [&](const std::string& why) {
        auto& slot = fileErrors[path];
        if (slot != why) log->error("services file refused (its services stay as they were): {}", why);
        slot = why;
      };
      auto defs = catalog::parseServicesYaml(text, path, options.defaults);
      if (!defs) {
        refuse(defs.error().message());
        continue;
      }
      if (auto r = replaceSource(path, std::move(*defs)); !r) {
        refuse(path + ": " + r.error().message());
        continue;
      }
      if (fileErrors.erase(path)) log->info("services file accepted again: {}", path);
    }
    // Files gone: their services go.
    for (auto it = fileContents.begin(); it != fileContents.end();) {
      if (seen.contains(it->first)) {
        ++it;
        continue;
      }
      log->info("services file removed: {}", it->first);
      (void)replaceSource(it->first, {});
      fileErrors.erase(it->first);
      it = fileContents.erase(it);
    }
  }
};

LocalServices::LocalServices(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

LocalServices::~LocalServices() { stop(); }

Result<std::unique_ptr<LocalServices>> LocalServices::create(Options options, EventLoop& loop, health::Prober& prober,
                                                             store::Store& store, OnPublish onPublish) {
  auto impl = std::make_unique<Impl>(std::move(options), loop, prober, store, std::move(onPublish));
  impl->record.owner = impl->options.nodeName;
  auto v = store.get(store::Family::catalog, kVersionKey);
  if (!v) return v.error();
  if (*v) {
    auto n = decodeU64(**v);
    if (!n) return Error(errc::malformed, "store: the catalog version record is damaged");
    impl->record.version = *n;
  }
  auto own = store.get(store::Family::catalog, kOwnKey);
  if (!own) return own.error();
  if (*own) {
    if (auto rec = catalog::decodeNodeServices(**own)) {
      impl->previous = std::move(*rec);
    } else {
      impl->log->warn("last catalog record in the store unreadable: {}", rec.error().message());
    }
  }
  return std::unique_ptr<LocalServices>(new LocalServices(std::move(impl)));
}

void LocalServices::start() {
  Impl& m = *impl_;
  if (m.running) return;
  m.running = true;
  std::vector<catalog::ServiceDef> api;
  auto scanned = m.store.scan(store::Family::catalog, kApiPrefix, [&](std::string_view key, std::string_view json) {
    const std::string id(key.substr(kApiPrefix.size()));
    if (auto def = catalog::parseServiceJson(json, id, m.options.defaults)) {
      api.push_back(std::move(*def));
    } else {
      m.log->error("service {} kept from the API no longer valid, skipped: {}", id, def.error().message());
    }
    return true;
  });
  if (!scanned) m.log->error("services registered through the API unreadable: {}", scanned.error().message());
  if (auto r = m.replaceSource(std::string(kApiSource), std::move(api)); !r) {
    m.log->error("services registered through the API not restored: {}", r.error().message());
  }
  for (auto& [id, s] : m.services) {
    for (auto& c : s.checks) c->start();
  }
  m.rescan();
  m.scheduleRescan();
  // The first version of this run, even with nothing defined: the owner is alive again and its
  // checks start over.
  m.publish();
}

void LocalServices::stop() {
  Impl& m = *impl_;
  m.running = false;
  m.loop.cancel(m.rescanTimer);
  for (auto& [id, s] : m.services) {
    for (auto& c : s.checks) c->stop();
  }
}

Result<void> LocalServices::put(const std::string& id, std::string_view json) {
  auto def = catalog::parseServiceJson(json, id, impl_->options.defaults);
  if (!def) return def.error();
  // The API is one source: its other services stay.
  std::vector<catalog::ServiceDef> defs;
  for (const auto& [sid, s] : impl_->services) {
    if (s.source == kApiSource && sid != id) defs.push_back(s.def);
  }
  defs.push_back(std::move(*def));
  if (auto r = impl_->replaceSource(std::string(kApiSource), std::move(defs)); !r) return r;
  // Kept, so that a restart registers it again (sync: the caller was told it is registered).
  return impl_->store.put(store::Family::catalog, std::string(kApiPrefix) + id, json, /*sync=*/true);
}

Result<void> LocalServices::remove(const std::string& id) {
  auto it = impl_->services.find(id);
  if (it == impl_->services.end()) return Error(errc::not_found, "no service '" + id + "' on this node");
  if (it->second.source != kApiSource) {
    return Error(errc::invalid_argument, "service '" + id + "' is defined by " + it->second.source + ": remove it there");
  }
  std::vector<catalog::ServiceDef> defs;
  for (const auto& [sid, s] : impl_->services) {
    if (s.source == kApiSource && sid != id) defs.push_back(s.def);
  }
  if (auto r = impl_->replaceSource(std::string(kApiSource), std::move(defs)); !r) return r;
  return impl_->store.erase(store::Family::catalog, std::string(kApiPrefix) + id, /*sync=*/true);
}

Result<void> LocalServices::updateTtl(const std::string& checkId, Health health, std::string output) {
  for (auto& [id, s] : impl_->services) {
    for (auto& c : s.checks) {
      if (c->definition().id == checkId) {
        auto r = c->update(health, std::move(output));
        if (r) impl_->changed();  // the output changed even when the state did not
        return r;
      }
    }
  }
  return Error(errc::not_found, "no check '" + checkId + "' on this node");
}

Result<void> LocalServices::setMaintenance(const std::string& serviceId, bool enable, std::string reason) {
  auto it = impl_->services.find(serviceId);
  if (it == impl_->services.end()) return Error(errc::not_found, "no service '" + serviceId + "' on this node");
  it->second.maintenance = enable;
  it->second.maintenanceReason = reason.empty() ? "by the operator" : std::move(reason);
  impl_->changed();
  return {};
}

void LocalServices::rescan() { impl_->rescan(); }

void LocalServices::ensureAbove(std::uint64_t version) {
  if (version < impl_->record.version) return;
  impl_->log->warn("a peer holds version {} of our catalog record (ours: {}): publishing above it", version,
                   impl_->record.version);
  impl_->record.version = version;
  impl_->changed();
}
const catalog::NodeServices& LocalServices::current() const { return impl_->record; }
std::uint64_t LocalServices::version() const { return impl_->record.version; }
const std::optional<catalog::NodeServices>& LocalServices::previous() const { return impl_->previous; }
const std::map<std::string, std::string>& LocalServices::errors() const { return impl_->fileErrors; }

std::vector<LocalServices::ServiceState> LocalServices::services() const {
  std::vector<ServiceState> out;
  for (const auto& [id, s] : impl_->services) {
    ServiceState st{s.def, s.source, {}, impl_->instanceOf(s)};
    for (const auto& c : s.checks) st.checks.push_back(c->status());
    out.push_back(std::move(st));
  }
  return out;
}

}  // namespace mesh::node
