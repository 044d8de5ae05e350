#include "node/policy_service.h"

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <charconv>
#include <set>

#include "common/duration.h"
#include "common/log.h"
#include "gossip/dissem/dissemination.h"
#include "gossip/serf/serf.h"
#include "node/admin/server.h"
#include "store/store.h"

namespace mesh::node {

namespace {

using policy::Refusal;

// The HTTP status a refusal answers with: the signer's fault (403), the version's (409), the
// document's (400), ours (500).
int statusOf(Refusal r) {
  switch (r) {
    case Refusal::untrusted_signer:
    case Refusal::bad_signature:
    case Refusal::below_threshold:
    case Refusal::no_trusted_keys: return 403;
    case Refusal::not_newer:
    case Refusal::conflict_lower: return 409;
    case Refusal::store_failed: return 500;
    default: return 400;
  }
}

nlohmann::ordered_json heldJson(const policy::Held& h, std::int64_t now) {
  const auto& e = h.doc.envelope;
  nlohmann::ordered_json j;
  j["kind"] = e.kind;
  j["name"] = e.name;
  j["version"] = e.version;
  j["digest"] = h.digestHex();
  j["signers"] = e.signerKeyIds;
  j["issuedAt"] = e.issuedAt;
  j["expiresAt"] = e.expiresAt;
  // A document that expired after it was taken stays in force (a node never drops to an empty
  // config); it is shown, and no node takes it fresh any more.
  j["expired"] = e.expiresAt != 0 && e.expiresAt <= now;
  j["receivedAtMs"] = h.receivedAtMs;
  return j;
}

http::Response jsonError(int status, const std::string& message, const char* reason = nullptr) {
  nlohmann::json j{{"error", message}};
  if (reason) j["reason"] = reason;
  return http::Response::json(status, j.dump() + "\n");
}

}  // namespace

struct PolicyService::Impl {
  Deps deps;
  std::unique_ptr<policy::PolicyStore> store;
  dissem::Dissemination* dissemination = nullptr;
  gossip::serf::Serf* serf = nullptr;
  std::shared_ptr<spdlog::logger> log = log::get("policy");

  std::int64_t nowSeconds() const {
    return unixSeconds(deps.loop.wallNow());
  }

  http::Response list() {
    auto snap = store->snapshot();
    nlohmann::ordered_json j;
    j["node"] = deps.nodeName;
    j["snapshotVersion"] = snap->version;
    j["compiledAtMs"] = snap->compiledAtMs;
    j["threshold"] = snap->threshold;
    j["trustedKeys"] = nlohmann::ordered_json::array();
    for (const auto& k : snap->trustedKeys) j["trustedKeys"].push_back(k.keyId);
    j["policies"] = nlohmann::ordered_json::array();
    const auto now = nowSeconds();
    for (const auto& [key, h] : snap->documents) {
      auto d = heldJson(*h, now);
      if (auto it = snap->problems.find(key); it != snap->problems.end()) d["problem"] = it->second;
      j["policies"].push_back(std::move(d));
    }
    return http::Response::json(200, j.dump(2) + "\n");
  }

  http::Response publish(const http::Request& req) {
    if (req.body.empty()) return jsonError(400, "no signed policy in the body (meshcli policy publish sends one)", "malformed");
    policy::PolicyStore::Offered r;
    if (req.body.front() == '{') {
      auto s = policy::signedFromJson(req.body);
      if (!s) return jsonError(400, s.error().message(), "malformed");
      r = store->offer(*s, policy::Source::publish);
    } else {
      r = store->offer(std::string_view(req.body), policy::Source::publish);
    }
    if (r.refused) return jsonError(statusOf(r.refused->reason), r.refused->message, policy::refusalName(r.refused->reason));
    if (!r.held) return jsonError(409, "already held", "not_newer");
    if (dissemination) dissemination->announce(kDissemKind, r.held->doc.key(), policy::PolicyStore::packedVersion(r.held->doc));
    auto j = heldJson(*r.held, nowSeconds());
    j["accepted"] = true;
    j["node"] = deps.nodeName;
    j["snapshotVersion"] = store->snapshot()->version;
    return http::Response::json(200, j.dump(2) + "\n");
  }

  // /v1/policies/{Kind}/{name}[/history|/status]
  void document(const http::Request& req, admin::Reply reply) {
    std::string_view rest = req.path().substr(std::string_view("/v1/policies/").size());
    std::string_view tail;
    auto slash = rest.find('/');
    if (slash == std::string_view::npos) return reply(jsonError(404, "give /v1/policies/KIND/NAME"));
    auto kind = policy::parseKind(rest.substr(0, slash));
    if (!kind) return reply(jsonError(404, "'" + std::string(rest.substr(0, slash)) + "' is not a policy kind"));
    std::string_view name = rest.substr(slash + 1);
    if (auto s2 = name.find('/'); s2 != std::string_view::npos) {
      tail = name.substr(s2 + 1);
      name = name.substr(0, s2);
    }
    const std::string key = std::string(policy::kindName(*kind)) + "/" + std::string(name);
    const auto now = nowSeconds();
    if (tail.empty()) {
      std::shared_ptr<const policy::Held> h;
      if (auto v = req.queryParam("version")) {
        std::uint64_t n = 0;
        auto [p, ec] = std::from_chars(v->data(), v->data() + v->size(), n);
        if (ec != std::errc() || p != v->data() + v->size()) return reply(jsonError(400, "version '" + *v + "' is not a whole number"));
        h = store->version(key, n);
        if (!h) return reply(jsonError(404, key + " version " + *v + " is not held here"));
      } else {
        h = store->current(key);
        if (!h) return reply(jsonError(404, key + " is not held here"));
      }
      auto j = heldJson(*h, now);
      auto cur = store->current(key);
      j["current"] = cur == h;
      j["signed"] = nlohmann::ordered_json::parse(policy::signedToJson(h->doc));
      return reply(http::Response::json(200, j.dump(2) + "\n"));
    }
    if (tail == "history") {
      auto hist = store->history(key);
      if (hist.empty()) return reply(jsonError(404, key + " is not held here"));
      nlohmann::ordered_json j{{"kind", policy::kindName(*kind)}, {"name", std::string(name)}};
      j["versions"] = nlohmann::ordered_json::array();
      auto cur = store->current(key);
      for (const auto& h : hist) {
        auto v = heldJson(*h, now);
        v["current"] = h == cur;
        j["versions"].push_back(std::move(v));
      }
      return reply(http::Response::json(200, j.dump(2) + "\n"));
    }
    if (tail == "status") return status(key, *kind, std::string(name), req, std::move(reply));
    reply(jsonError(404, "unknown path " + std::string(req.path())));
  }

  // Which version every meshd holds: a serf query to the members tagged mesh=1.
  void status(const std::string& key, policy::Kind kind, const std::string& name, const http::Request& req, admin::Reply reply) {
    if (!serf) return reply(jsonError(503, "gossip is not running"));
    gossip::serf::QueryParams params;
    params.filterTags["mesh"] = "^1$";
    if (auto t = req.queryParam("timeout")) {
      auto d = parseDuration(*t);
      if (!d || *d <= Duration::zero()) return reply(jsonError(400, "timeout '" + *t + "' is not a duration"));
      params.timeout = *d;
    }
    struct Collect {
      nlohmann::ordered_json nodes = nlohmann::ordered_json::array();
      std::vector<std::string> expected;
      std::set<std::string> answered;
      admin::Reply reply;
      std::uint64_t here = 0;
    };
    auto c = std::make_shared<Collect>();
    c->reply = std::move(reply);
    auto cur = store->current(key);
    c->here = cur ? cur->doc.envelope.version : 0;
    gossip::serf::QueryCallbacks cb;
    cb.onResponse = [c](const std::string& from, const std::string& payload) {
      if (!c->answered.insert(from).second) return;
      std::uint64_t v = 0;
      auto sp = payload.find(' ');
      std::string num = payload.substr(0, sp);
      std::from_chars(num.data(), num.data() + num.size(), v);
      nlohmann::ordered_json n{{"node", from}, {"version", v}};
      if (sp != std::string::npos && v != 0) n["digest"] = payload.substr(sp + 1);
      c->nodes.push_back(std::move(n));
    };
    cb.onDone = [c, kind, name] {
      nlohmann::ordered_json j{{"kind", policy::kindName(kind)}, {"name", name}};
      std::uint64_t highest = 0;
      for (const auto& n : c->nodes) highest = std::max(highest, n["version"].get<std::uint64_t>());
      std::size_t atHighest = 0;
      for (const auto& n : c->nodes) atHighest += n["version"].get<std::uint64_t>() == highest;
      std::sort(c->nodes.begin(), c->nodes.end(), [](const auto& a, const auto& b) { return a["node"] < b["node"]; });
      j["highestVersion"] = highest;
      j["members"] = c->expected.size();
      j["answered"] = c->nodes.size();
      j["holdingHighest"] = atHighest;
      j["nodes"] = c->nodes;
      std::vector<std::string> missing;
      for (const auto& e : c->expected) {
        if (!c->answered.count(e)) missing.push_back(e);
      }
      j["noAnswer"] = missing;
      c->reply(http::Response::json(200, j.dump(2) + "\n"));
    };
    auto started = serf->query(kStatusQuery, key, params, std::move(cb));
    if (!started) {
      return c->reply(jsonError(500, "status query not sent: " + started.error().message()));
    }
    c->expected = started->expected;
  }
};

PolicyService::PolicyService(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
PolicyService::~PolicyService() = default;

Result<std::unique_ptr<PolicyService>> PolicyService::create(Deps deps) {
  auto impl = std::make_unique<Impl>(Impl{std::move(deps), nullptr});
  policy::PolicyStore::Options o;
  o.trustedKeys = impl->deps.trustedKeys;
  o.threshold = impl->deps.threshold;
  auto* raw = impl.get();
  o.nowSeconds = [raw] { return raw->nowSeconds(); };
  auto ps = policy::PolicyStore::open(impl->deps.store, std::move(o), impl->deps.registry);
  if (!ps) return ps.error();
  impl->store = std::move(*ps);
  return std::unique_ptr<PolicyService>(new PolicyService(std::move(impl)));
}

void PolicyService::attach(dissem::Dissemination& dissemination, admin::Server& admin, gossip::serf::Serf* serf) {
  impl_->dissemination = &dissemination;
  impl_->serf = serf;
  dissemination.addKind(kDissemKind, "policy", *impl_->store);
  auto* impl = impl_.get();
  admin.route("GET", "/v1/policies", [impl](const http::Request&) { return impl->list(); });
  admin.route("POST", "/v1/policies", [impl](const http::Request& req) { return impl->publish(req); });
  admin.routePrefixAsync("GET", "/v1/policies/", [impl](const http::Request& req, admin::Reply reply) {
    impl->document(req, std::move(reply));
  });
}

bool PolicyService::handleQuery(const gossip::serf::IncomingQuery& q) {
  if (q.name != kStatusQuery) return false;
  if (!impl_->serf) return true;
  auto cur = impl_->store->current(q.payload);
  std::string answer = cur ? std::to_string(cur->doc.envelope.version) + " " + cur->digestHex().substr(0, 16) : "0";
  if (auto sent = impl_->serf->respond(q, answer); !sent) {
    impl_->log->warn("policy status answer not sent: {}", sent.error().message());
  }
  return true;
}

policy::PolicyStore& PolicyService::policies() { return *impl_->store; }

}  // namespace mesh::node
