// This node's own services: the services dir (add, change, remove, a bad file that changes
// nothing), the local API, health folding into the instance, maintenance, and a version that
// only grows, across a restart on the same store.

#include "node/local_services.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "common/metrics.h"
#include "common/virtual_clock.h"
#include "store/store.h"
#include "tests/support/env.h"

namespace mesh::node {
namespace {

using namespace std::chrono_literals;
using catalog::Health;

class FixedProber : public health::Prober {
 public:
  Health next = Health::passing;
  void probe(const catalog::CheckDef&, std::function<void(health::ProbeResult)> done) override {
    done({next, catalog::healthName(next)});
  }
};

class LocalServicesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::filesystem::create_directories(tmp_.sub("svc"));
    open();
  }
  void open() {
    ls_.reset();
    store_.reset();
    auto s = store::Store::open(tmp_.sub("db"), registry_);
    ASSERT_TRUE(s.ok()) << s.error().message();
    store_ = std::move(*s);
    LocalServices::Options o;
    o.nodeName = "n1";
    o.defaults = {"10.0.0.1", "z1"};
    o.servicesDir = tmp_.sub("svc");
    auto ls = LocalServices::create(o, clock_, prober_, *store_, [this](const catalog::NodeServices& n) {
      published_.push_back(n);
    });
    ASSERT_TRUE(ls.ok()) << ls.error().message();
    ls_ = std::move(*ls);
  }
  void write(const std::string& name, const std::string& text) { std::ofstream(tmp_.sub("svc/" + name)) << text; }
  const catalog::Instance* instance(const std::string& id) {
    for (const auto& in : ls_->current().instances) {
      if (in.id == id) return &in;
    }
    return nullptr;
  }

  testing::TempDir tmp_;
  metrics::Registry registry_;
  VirtualClock clock_;
  FixedProber prober_;
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<LocalServices> ls_;
  std::vector<catalog::NodeServices> published_;
};

TEST_F(LocalServicesTest, ServicesDirIsWatched) {
  write("web.yaml", "service:\n  name: web\n  port: 80\n  checks:\n    - tcp: 127.0.0.1:80\n      interval: 1s\n      timeout: 500ms\n");
  ls_->start();
  clock_.advance(10ms);
  ASSERT_NE(instance("web"), nullptr);
  EXPECT_EQ(instance("web")->health, Health::passing);
  EXPECT_EQ(instance("web")->address, "10.0.0.1");
  const auto v1 = ls_->version();

  // A new file; a bad file (nothing else changes); a changed file; a removed file.
  write("db.yaml", "service:\n  name: db\n  port: 5432\n");
  write("bad.yaml", "service:\n  name: cache\n  port: nope\n");
  clock_.advance(2100ms);
  ASSERT_NE(instance("db"), nullptr);
  EXPECT_EQ(instance("cache"), nullptr);
  ASSERT_EQ(ls_->errors().size(), 1u);
  EXPECT_NE(ls_->errors().begin()->second.find("bad.yaml:3: service 'cache': port: 'nope' is not a whole number"),
            std::string::npos) << ls_->errors().begin()->second;
  EXPECT_GT(ls_->version(), v1);
  // Breaking a file that worked keeps its services as they were.
  write("db.yaml", "service:\n  name: db\n  port: [\n");
  clock_.advance(2100ms);
  ASSERT_NE(instance("db"), nullptr);
  EXPECT_EQ(instance("db")->port, 5432);
  EXPECT_EQ(ls_->errors().size(), 2u);
  write("db.yaml", "service:\n  name: db\n  port: 5433\n  weight: 5\n");
  clock_.advance(2100ms);
  EXPECT_EQ(instance("db")->port, 5433);
  EXPECT_EQ(ls_->errors().size(), 1u);
  std::filesystem::remove(tmp_.sub("svc/db.yaml"));
  std::filesystem::remove(tmp_.sub("svc/bad.yaml"));
  clock_.advance(2100ms);
  EXPECT_EQ(instance("db"), nullptr);
  EXPECT_TRUE(ls_->errors().empty());
  ASSERT_NE(instance("web"), nullptr);
  // Every published version is higher than the one before.
  for (std::size_t i = 1; i < published_.size(); ++i) EXPECT_GT(published_[i].version, published_[i - 1].version);
}

TEST_F(LocalServicesTest, ApiHealthAndMaintenance) {
  ls_->start();
  ASSERT_TRUE(ls_->put("api-1", R"({"name": "api", "port": 8080, "checks": [{"ttl": "10s"}]})").ok());
  clock_.advance(1ms);
  ASSERT_NE(instance("api-1"), nullptr);
  EXPECT_EQ(instance("api-1")->health, Health::critical);  // TTL not reported yet
  ASSERT_TRUE(ls_->updateTtl("api-1:0", Health::passing, "ready").ok());
  clock_.advance(1ms);
  EXPECT_EQ(instance("api-1")->health, Health::passing);
  clock_.advance(11s);
  EXPECT_EQ(instance("api-1")->health, Health::critical);
  EXPECT_NE(instance("api-1")->note.find("TTL of 10s expired"), std::string::npos);
  ASSERT_TRUE(ls_->updateTtl("api-1:0", Health::passing, "ready").ok());
  ASSERT_TRUE(ls_->setMaintenance("api-1", true, "upgrade").ok());
  clock_.advance(1ms);
  EXPECT_EQ(instance("api-1")->health, Health::critical);
  EXPECT_TRUE(instance("api-1")->maintenance);
  EXPECT_EQ(instance("api-1")->note, "maintenance: upgrade");
  ASSERT_TRUE(ls_->setMaintenance("api-1", false, "").ok());
  clock_.advance(1ms);
  EXPECT_EQ(instance("api-1")->health, Health::passing);
  EXPECT_EQ(ls_->updateTtl("nope", Health::passing, "").error().code, errc::not_found);
  EXPECT_EQ(ls_->remove("nope").error().code, errc::not_found);
  EXPECT_FALSE(ls_->put("x", "{\"name\": \"x\"}").ok());  // no port
  // A file cannot take an id the API holds (and the other way round).
  write("clash.yaml", "service:\n  name: api\n  id: api-1\n  port: 1\n");
  clock_.advance(2100ms);
  ASSERT_EQ(ls_->errors().size(), 1u);
  EXPECT_NE(ls_->errors().begin()->second.find("already defined by api"), std::string::npos);
  ASSERT_TRUE(ls_->remove("api-1").ok());
  clock_.advance(1ms);
  EXPECT_EQ(instance("api-1"), nullptr);
  // The id is free now: the refused file is taken at the next rescan.
  clock_.advance(2100ms);
  EXPECT_TRUE(ls_->errors().empty());
  ASSERT_NE(instance("api-1"), nullptr);
  EXPECT_EQ(instance("api-1")->port, 1);
}

TEST_F(LocalServicesTest, VersionOnlyGrowsAcrossRestarts) {
  write("web.yaml", "service:\n  name: web\n  port: 80\n");
  ls_->start();
  clock_.advance(10ms);
  ASSERT_TRUE(ls_->put("a", R"({"name": "a", "port": 1})").ok());
  clock_.advance(10ms);
  const auto before = ls_->version();
  const auto last = ls_->current();
  EXPECT_GE(before, 2u);
  // "kill -9": nothing is said on the way out; a new instance reads the same store.
  ls_->stop();
  published_.clear();
  open();
  ASSERT_TRUE(ls_->previous().has_value());
  EXPECT_EQ(ls_->previous()->version, before);
  EXPECT_EQ(ls_->previous()->instances, last.instances);
  ls_->start();
  clock_.advance(10ms);
  ASSERT_FALSE(published_.empty());
  EXPECT_GT(published_.front().version, before);
  // The service registered through the API came back with the restart.
  EXPECT_NE(instance("a"), nullptr);
  ASSERT_TRUE(ls_->remove("a").ok());
  ls_->stop();
  open();
  ls_->start();
  clock_.advance(10ms);
  EXPECT_EQ(instance("a"), nullptr);
  EXPECT_NE(instance("web"), nullptr);
}

}  // namespace
}  // namespace mesh::node
