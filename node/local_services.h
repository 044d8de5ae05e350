#pragma once
// This node's own services (issue 5): defined by the YAML files of --services-dir (re-read
// every 2 s: adding, changing or removing a file takes effect without a restart) and by the
// local API (kept in the store and registered again at start); their health checks run here;
// their state is one versioned record.
//
// Every change (a definition, a health state, maintenance) becomes a new version of the node's
// record, written to the store (with sync) before anyone else hears of it, so the version only
// grows, across restarts and kill -9. A bad file is reported and changes nothing: the services
// it defined before stay as they were, and no other file is touched.
//
// Thread rules: the control thread's EventLoop; callbacks run there.

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/event_loop.h"
#include "common/result.h"
#include "node/catalog/catalog.h"
#include "node/health/check.h"

namespace mesh::store {
class Store;
}

namespace mesh::node {

class LocalServices {
 public:
  struct Options {
    std::string nodeName;
    catalog::Defaults defaults;
    std::string servicesDir;  // empty: API only
    Duration rescanInterval = std::chrono::seconds(2);
  };
  // Called with every new version of this node's record, after it is stored.
  using OnPublish = std::function<void(const catalog::NodeServices&)>;

  // Loads the version (and last record) kept in the store. Errors: an unreadable store.
  static Result<std::unique_ptr<LocalServices>> create(Options options, EventLoop& loop, health::Prober& prober,
                                                       store::Store& store, OnPublish onPublish);
  ~LocalServices();

  // Reads the services dir and starts every check; publishes the first version at once.
  void start();
  void stop();

  // The local API.
  Result<void> put(const std::string& id, std::string_view json);
  Result<void> remove(const std::string& id);
  Result<void> updateTtl(const std::string& checkId, catalog::Health health, std::string output);
  Result<void> setMaintenance(const std::string& serviceId, bool enable, std::string reason);

  // Another node holds a record of ours with this version (our store was lost or restored from an
  // old copy): our next version goes above it, so that our new state wins.
  void ensureAbove(std::uint64_t version);

  // Re-reads the services dir now (also done every rescanInterval).
  void rescan();

  const catalog::NodeServices& current() const;
  std::uint64_t version() const;
  // The last record kept in the store before this start (served at once, marked stale).
  const std::optional<catalog::NodeServices>& previous() const;

  struct ServiceState {
    catalog::ServiceDef def;
    std::string source;  // file path, or "api"
    std::vector<health::CheckStatus> checks;
    catalog::Instance instance;
  };
  std::vector<ServiceState> services() const;
  // Files that failed to load: path -> the error (cleared when the file is fixed or removed).
  const std::map<std::string, std::string>& errors() const;

  struct Impl;

 private:
  explicit LocalServices(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace mesh::node
