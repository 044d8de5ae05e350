#include "cli/policy.h"

#include <chrono>
#include <cstring>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "common/clock.h"
#include "common/duration.h"
#include "common/errc.h"
#include "common/files.h"
#include "common/http/message.h"
#include "node/policy/bundle.h"
#include "node/policy/document.h"

namespace mesh::cli {

namespace {

// A policy file: read whole, at most 8 MiB.
Result<std::string> readText(const std::string& path) {
  auto text = files::read(path);
  if (text && text->size() > 8 * 1024 * 1024) return Error(errc::too_large, path + ": above 8 MiB");
  return text;
}

std::int64_t nowSeconds() { return unixSeconds(SystemClock::instance().wallNow()); }

std::string isoTime(std::int64_t seconds) {
  if (seconds == 0) return "never";
  std::time_t t = seconds;
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string docPath(const std::string& kindSlashName) {
  auto slash = kindSlashName.find('/');
  return "/v1/policies/" + http::percentEncode(kindSlashName.substr(0, slash)) + "/" +
         http::percentEncode(kindSlashName.substr(slash + 1));
}

// KIND/NAME as the operator typed it ("route/reviews"), with the kind's own spelling.
Result<std::string> parseRef(const std::string& ref) {
  auto slash = ref.find('/');
  if (slash == std::string::npos) return Error(errc::invalid_argument, "'" + ref + "' is not KIND/NAME (such as Route/reviews)");
  auto kind = policy::parseKind(ref.substr(0, slash));
  if (!kind) return Error(errc::invalid_argument, "'" + ref.substr(0, slash) + "' is not a policy kind");
  std::string name = ref.substr(slash + 1);
  if (!policy::validName(name)) return Error(errc::invalid_argument, "'" + name + "' is not a valid document name");
  return std::string(policy::kindName(*kind)) + "/" + name;
}

// The signed document a node holds (GET /v1/policies/KIND/NAME[?version=N]), checked here too.
Result<policy::Signed> fetchSigned(const NodeClient& client, const std::string& ref, std::uint64_t version) {
  std::string path = docPath(ref);
  if (version) path += "?version=" + std::to_string(version);
  auto r = client.getJson(path);
  if (!r) return r.error();
  if (!r->contains("signed")) return Error(errc::malformed, "node sent no signed document for " + ref);
  auto s = policy::signedFromJson((*r)["signed"].dump());
  if (!s) return s.error();
  if (policy::sha256(s->body) != s->envelope.bodyDigest) return Error(errc::malformed, ref + ": the body the node sent does not match its digest");
  return s;
}

Result<std::string> render(const policy::Signed& s, const std::string& format) {
  auto kind = policy::parseKind(s.envelope.kind);
  if (!kind) return Error(errc::malformed, "unknown kind " + s.envelope.kind);
  return format == "json" ? policy::renderJson(*kind, s.envelope.name, s.envelope.version, s.body)
                          : policy::renderYaml(*kind, s.envelope.name, s.envelope.version, s.body);
}

}  // namespace

Result<std::chrono::seconds> parseExpiry(const std::string& text) {
  if (!text.empty() && text.back() == 'd') {
    std::string n = text.substr(0, text.size() - 1);
    char* end = nullptr;
    long days = std::strtol(n.c_str(), &end, 10);
    if (n.empty() || *end != '\0' || days <= 0 || days > 36500) return Error(errc::invalid_argument, "'" + text + "' is not a number of days");
    return std::chrono::seconds(days * 86400);
  }
  auto d = parseDuration(text);
  if (!d || *d <= Duration::zero()) return Error(errc::invalid_argument, "'" + text + "' is not a duration (such as 30d, 12h, 90m)");
  return std::chrono::duration_cast<std::chrono::seconds>(*d);
}

std::string formatPolicyList(const nlohmann::json& j) {
  std::string out = "Snapshot " + std::to_string(j.value("snapshotVersion", 0)) + " on " + j.value("node", std::string("?")) +
                    "; threshold " + std::to_string(j.value("threshold", 1)) + " of trusted keys";
  for (const auto& k : j.value("trustedKeys", nlohmann::json::array())) out += " " + k.get<std::string>();
  out += "\n";
  std::vector<std::vector<std::string>> rows{{"KIND", "NAME", "VERSION", "DIGEST", "SIGNERS", "EXPIRES", "PROBLEM"}};
  for (const auto& p : j.value("policies", nlohmann::json::array())) {
    std::string signers;
    for (const auto& s : p.value("signers", nlohmann::json::array())) signers += (signers.empty() ? "" : ",") + s.get<std::string>();
    std::string expires = isoTime(p.value("expiresAt", std::int64_t{0}));
    if (p.value("expired", false)) expires += " (expired)";
    rows.push_back({p.value("kind", ""), p.value("name", ""), std::to_string(p.value("version", 0)),
                    p.value("digest", std::string()).substr(0, 16), signers, expires, p.value("problem", std::string("-"))});
  }
  if (rows.size() == 1) return out + "No policy documents held.\n";
  return out + columns(rows);
}

std::string formatPolicyHistory(const nlohmann::json& j) {
  std::vector<std::vector<std::string>> rows{{"VERSION", "DIGEST", "SIGNERS", "ISSUED", "EXPIRES", ""}};
  for (const auto& v : j.value("versions", nlohmann::json::array())) {
    std::string signers;
    for (const auto& s : v.value("signers", nlohmann::json::array())) signers += (signers.empty() ? "" : ",") + s.get<std::string>();
    rows.push_back({std::to_string(v.value("version", 0)), v.value("digest", std::string()).substr(0, 16), signers,
                    isoTime(v.value("issuedAt", std::int64_t{0})), isoTime(v.value("expiresAt", std::int64_t{0})),
                    v.value("current", false) ? "current" : ""});
  }
  return columns(rows);
}

std::string formatPolicyStatus(const nlohmann::json& j) {
  std::vector<std::vector<std::string>> rows{{"NODE", "VERSION", "DIGEST"}};
  for (const auto& n : j.value("nodes", nlohmann::json::array())) {
    auto v = n.value("version", std::uint64_t{0});
    rows.push_back({n.value("node", ""), v ? std::to_string(v) : "none", n.value("digest", std::string("-"))});
  }
  for (const auto& n : j.value("noAnswer", nlohmann::json::array())) rows.push_back({n.get<std::string>(), "no answer", "-"});
  std::string out = columns(rows);
  out += std::to_string(j.value("holdingHighest", 0)) + " of " + std::to_string(j.value("members", 0)) +
         " nodes hold version " + std::to_string(j.value("highestVersion", 0)) + " of " + j.value("kind", "") + "/" +
         j.value("name", "") + "\n";
  return out;
}

std::string lineDiff(const std::string& a, const std::string& b, const std::string& labelA, const std::string& labelB) {
  auto split = [](const std::string& s) {
    std::vector<std::string> out;
    std::istringstream in(s);
    for (std::string line; std::getline(in, line);) out.push_back(line);
    return out;
  };
  auto x = split(a), y = split(b);
  if (x == y) return "";
  const std::size_t n = x.size(), m = y.size();
  // Longest common subsequence of lines; documents are small (bounded below).
  struct Op {
    char tag;
    std::size_t ai, bi;
  };
  std::vector<Op> ops;
  if (n * m <= 4'000'000) {
    std::vector<std::uint32_t> L((n + 1) * (m + 1), 0);
    auto at = [&](std::size_t i, std::size_t j) -> std::uint32_t& { return L[i * (m + 1) + j]; };
    for (std::size_t i = n; i-- > 0;) {
      for (std::size_t j = m; j-- > 0;) at(i, j) = x[i] == y[j] ? at(i + 1, j + 1) + 1 : std::max(at(i + 1, j), at(i, j + 1));
    }
    std::size_t i = 0, j = 0;
    while (i < n || j < m) {
      if (i < n && j < m && x[i] == y[j]) ops.push_back({' ', i++, j++});
      else if (i < n && (j == m || at(i + 1, j) >= at(i, j + 1))) ops.push_back({'-', i++, j});
      else ops.push_back({'+', i, j++});
    }
  } else {
    for (std::size_t i = 0; i < n; ++i) ops.push_back({'-', i, 0});
    for (std::size_t j = 0; j < m; ++j) ops.push_back({'+', n, j});
  }
  std::string out = "--- " + labelA + "\n+++ " + labelB + "\n";
  const std::size_t ctx = 3;
  std::size_t k = 0;
  while (k < ops.size()) {
    if (ops[k].tag == ' ') {
      ++k;
      continue;
    }
    std::size_t start = k >= ctx ? k - ctx : 0;
    // Extend the hunk while changes are within 2*ctx of each other.
    std::size_t end = k, lastChange = k;
    while (end < ops.size() && end - lastChange <= 2 * ctx) {
      if (ops[end].tag != ' ') lastChange = end;
      ++end;
    }
    end = std::min(ops.size(), lastChange + ctx + 1);
    std::size_t aStart = ops[start].ai, bStart = ops[start].bi, aLen = 0, bLen = 0;
    std::string body;
    for (std::size_t q = start; q < end; ++q) {
      const auto& o = ops[q];
      if (o.tag != '+') ++aLen;
      if (o.tag != '-') ++bLen;
      body += o.tag;
      body += (o.tag == '+' ? y[o.bi] : x[o.ai]);
      body += '\n';
    }
    out += "@@ -" + std::to_string(aStart + 1) + "," + std::to_string(aLen) + " +" + std::to_string(bStart + 1) + "," +
           std::to_string(bLen) + " @@\n" + body;
    k = end;
  }
  return out;
}

struct PolicyCommands::State {
  CLI::App* policy = nullptr;
  CLI::App *validate, *sign, *publish, *list, *get, *history, *diff, *status, *revert;
  std::vector<std::string> files;
  std::vector<std::string> keyFiles;
  std::string expires, out, ref, output = "yaml", waitTimeout = "60s";
  std::uint64_t version = 0, v1 = 0, v2 = 0, to = 0;
  bool json = false, wait = false;

  Result<std::vector<policy::KeyPair>> keys() const {
    std::vector<policy::KeyPair> out;
    for (const auto& f : keyFiles) {
      auto k = policy::readPrivateKeyFile(f);
      if (!k) return Error(k.error().code, "--key " + k.error().message());
      out.push_back(std::move(*k));
    }
    if (out.empty()) return Error(errc::invalid_argument, "give --key (a private key from meshcli keygen)");
    return out;
  }

  Result<std::int64_t> expiry() const {
    if (expires.empty()) return std::int64_t{0};
    auto e = parseExpiry(expires);
    if (!e) return Error(e.error().code, "--expires: " + e.error().message());
    return nowSeconds() + e->count();
  }

  // Parses and checks FILEs (every problem printed); the documents when all are valid.
  Result<std::vector<policy::Document>> load(const std::vector<std::string>& paths, bool quiet) const {
    std::vector<policy::Document> docs;
    std::size_t problems = 0;
    for (const auto& path : paths) {
      auto text = readText(path);
      if (!text) {
        std::cerr << text.error().message() << "\n";
        ++problems;
        continue;
      }
      auto r = policy::parseDocuments(*text, path);
      for (const auto& p : r.problems) std::cerr << p.str() << "\n";
      problems += r.problems.size();
      if (r.problems.empty() && r.documents.empty()) {
        std::cerr << path << ": no policy documents\n";
        ++problems;
      }
      if (!quiet && r.problems.empty()) {
        for (const auto& d : r.documents) std::cout << path << ":" << d.line << ": " << d.key() << " is valid\n";
      }
      for (auto& d : r.documents) docs.push_back(std::move(d));
    }
    for (const auto& p : policy::checkReferences(docs)) {
      std::cerr << p.str() << "\n";
      ++problems;
    }
    if (problems) return Error(errc::invalid_argument, std::to_string(problems) + " problem" + (problems > 1 ? "s" : "") + " found");
    return docs;
  }

  // The version to sign: the flag, the file's, or one above the highest any node holds (the
  // node asks every meshd: a version just published elsewhere may not have reached it yet).
  Result<std::uint64_t> versionFor(const policy::Document& d, const NodeClient& client) const {
    if (version) return version;
    if (d.version) return d.version;
    std::uint64_t highest = 0;
    auto cur = client.getJson(docPath(d.key()));
    if (cur) {
      highest = cur->value("version", std::uint64_t{0});
    } else if (cur.error().code != errc::not_found) {
      return Error(cur.error().code, d.key() + " names no version and the cluster could not be asked for the next one (" +
                                         cur.error().message() + "); give metadata.version or --version");
    }
    NodeClient patient{client.node, client.timeout + std::chrono::seconds(30)};
    if (auto st = patient.getJson(docPath(d.key()) + "/status")) {
      highest = std::max(highest, st->value("highestVersion", std::uint64_t{0}));
    } else {
      std::cerr << "meshcli: warning: could not ask the cluster for " << d.key() << "'s versions (" << st.error().message()
                << "); using the node's\n";
    }
    return highest + 1;
  }

  Result<std::vector<policy::Signed>> signAll(const NodeClient& client) const {
    auto docs = load(files, /*quiet=*/true);
    if (!docs) return docs.error();
    if (version && docs->size() > 1) return Error(errc::invalid_argument, "--version applies to one document; these files hold " + std::to_string(docs->size()));
    auto k = keys();
    if (!k) return k.error();
    auto exp = expiry();
    if (!exp) return exp.error();
    std::vector<policy::Signed> out;
    for (const auto& d : *docs) {
      auto v = versionFor(d, client);
      if (!v) return v.error();
      auto s = policy::signDocument(d, *v, nowSeconds(), *exp, *k);
      if (!s) return s.error();
      out.push_back(std::move(*s));
    }
    return out;
  }

  int publishOne(const NodeClient& client, const policy::Signed& s) const {
    auto r = client.call("POST", "/v1/policies", policy::signedToJson(s));
    if (!r) return fail(r.error().message());
    std::cout << "Published " << s.key() << " version " << s.envelope.version << " (digest "
              << policy::hex(s.envelope.bodyDigest).substr(0, 16) << ") to " << r->value("node", client.node.toString())
              << ": snapshot " << r->value("snapshotVersion", 0) << "\n";
    if (!wait) return 0;
    auto limit = parseDuration(waitTimeout);
    if (!limit) return fail("--wait-timeout: " + limit.error().message(), 2);
    auto deadline = std::chrono::steady_clock::now() + *limit;
    std::size_t lastHolding = SIZE_MAX;
    while (true) {
      NodeClient patient{client.node, client.timeout + std::chrono::seconds(10)};
      auto st = patient.getJson(docPath(s.key()) + "/status");
      if (!st) return fail(st.error().message());
      std::size_t holding = 0, members = st->value("members", std::size_t{0});
      for (const auto& n : st->value("nodes", nlohmann::json::array())) holding += n.value("version", std::uint64_t{0}) >= s.envelope.version;
      if (holding != lastHolding) {
        std::cout << holding << " of " << members << " nodes hold version " << s.envelope.version << "\n" << std::flush;
        lastHolding = holding;
      }
      if (members > 0 && holding >= members) return 0;
      if (std::chrono::steady_clock::now() >= deadline) {
        return fail("only " + std::to_string(holding) + " of " + std::to_string(members) + " nodes hold " + s.key() + " version " +
                    std::to_string(s.envelope.version) + " after " + waitTimeout);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(300));
    }
  }
};

PolicyCommands::PolicyCommands(CLI::App& app) : s_(std::make_unique<State>()) {
  auto& s = *s_;
  s.policy = app.add_subcommand("policy", "Author, sign, publish and inspect signed policy");
  s.policy->require_subcommand(1);

  s.validate = s.policy->add_subcommand("validate", "Check policy files: every problem with file, line and field");
  s.validate->add_option("files", s.files, "YAML files (several documents each, '---' apart)")->required()->option_text("FILE...");

  auto addSigning = [&s](CLI::App* c) {
    c->add_option("--key", s.keyFiles, "Private key to sign with (repeatable, for a threshold)")->option_text("KEY");
    c->add_option("--expires", s.expires, "The signature expires after this long (30d, 12h)")->option_text("DURATION");
    c->add_option("--version", s.version, "Version to sign (default: metadata.version, else the cluster's next)")
        ->check(CLI::Range(std::uint64_t{1}, (std::uint64_t{1} << 40) - 1));
  };
  s.sign = s.policy->add_subcommand("sign", "Sign policy files; writes FILE.signed.json (publish it later, from anywhere)");
  s.sign->add_option("files", s.files, "YAML file")->required()->option_text("FILE");
  s.sign->add_option("--out", s.out, "Where to write the signed document(s)")->option_text("FILE");
  addSigning(s.sign);

  s.publish = s.policy->add_subcommand("publish", "Validate, sign and send policy to the node; or send a signed file");
  s.publish->add_option("files", s.files, "YAML files, and/or .json files from policy sign (sent as signed)")->required()->option_text("FILE...");
  addSigning(s.publish);
  s.publish->add_flag("--wait", s.wait, "Wait until every meshd holds the new version, printing how many do");
  s.publish->add_option("--wait-timeout", s.waitTimeout, "How long --wait waits")->capture_default_str();

  s.list = s.policy->add_subcommand("list", "List the documents a node holds and applies");
  s.list->add_flag("--json", s.json, "Print the node's JSON as it is");

  s.get = s.policy->add_subcommand("get", "Print one document as YAML or JSON");
  s.get->add_option("ref", s.ref, "KIND/NAME")->required();
  s.get->add_option("--version", s.version, "A version from its history (default: current)");
  s.get->add_option("-o,--output", s.output, "yaml or json")->check(CLI::IsMember({"yaml", "json"}))->capture_default_str();

  s.history = s.policy->add_subcommand("history", "List every version of a document the node holds");
  s.history->add_option("ref", s.ref, "KIND/NAME")->required();
  s.history->add_flag("--json", s.json, "Print the node's JSON as it is");

  s.diff = s.policy->add_subcommand("diff", "Show what changed between two versions of a document");
  s.diff->add_option("ref", s.ref, "KIND/NAME")->required();
  s.diff->add_option("v1", s.v1, "Old version")->required();
  s.diff->add_option("v2", s.v2, "New version")->required();

  s.status = s.policy->add_subcommand("status", "Which version of a document each node holds");
  s.status->add_option("ref", s.ref, "KIND/NAME")->required();
  s.status->add_flag("--json", s.json, "Print the node's JSON as it is");

  s.revert = s.policy->add_subcommand("revert", "Publish an old version's content as a new, higher version");
  s.revert->add_option("ref", s.ref, "KIND/NAME")->required();
  s.revert->add_option("--to", s.to, "The version whose content to restore")->required();
  s.revert->add_option("--key", s.keyFiles, "Private key to sign with (repeatable)")->option_text("KEY");
  s.revert->add_option("--expires", s.expires, "The signature expires after this long")->option_text("DURATION");
  s.revert->add_flag("--wait", s.wait, "Wait until every meshd holds the new version");
  s.revert->add_option("--wait-timeout", s.waitTimeout, "How long --wait waits")->capture_default_str();
  // `meshcli policy publish FILE --key K --node ADDR`: meshcli's --node and --timeout may come
  // after the subcommand too.
  s.policy->fallthrough();
  for (auto* c : {s.validate, s.sign, s.publish, s.list, s.get, s.history, s.diff, s.status, s.revert}) c->fallthrough();
}

PolicyCommands::~PolicyCommands() = default;

bool PolicyCommands::parsed() const { return s_->policy->parsed(); }

int PolicyCommands::run(const NodeClient& client) {
  auto& s = *s_;
  if (s.validate->parsed()) {
    auto docs = s.load(s.files, /*quiet=*/false);
    if (!docs) return fail(docs.error().message());
    return 0;
  }
  if (s.sign->parsed()) {
    auto signedDocs = s.signAll(client);
    if (!signedDocs) return fail(signedDocs.error().message(), signedDocs.error().code == errc::invalid_argument ? 2 : 1);
    std::string out = s.out;
    if (out.empty()) {
      out = s.files[0];
      for (const char* ext : {".yaml", ".yml"}) {
        if (out.size() > std::strlen(ext) && out.ends_with(ext)) out.resize(out.size() - std::strlen(ext));
      }
      out += ".signed.json";
    }
    std::string text;
    if (signedDocs->size() == 1) {
      text = policy::signedToJson((*signedDocs)[0]);
    } else {
      auto arr = nlohmann::ordered_json::array();
      for (const auto& d : *signedDocs) arr.push_back(nlohmann::ordered_json::parse(policy::signedToJson(d)));
      text = arr.dump(2) + "\n";
    }
    std::ofstream f(out, std::ios::binary | std::ios::trunc);
    if (!(f << text) || !f.flush()) return fail(out + ": cannot be written");
    for (const auto& d : *signedDocs) {
      std::cout << "Signed " << d.key() << " version " << d.envelope.version << " (digest "
                << policy::hex(d.envelope.bodyDigest).substr(0, 16) << ", expires " << isoTime(d.envelope.expiresAt)
                << ") by " << d.envelope.signerKeyIds.size() << " key(s)\n";
    }
    std::cout << "Wrote " << out << "\n";
    return 0;
  }
  if (s.publish->parsed()) {
    // Signed files (*.json from policy sign) are sent as they are (no key needed); YAML files are
    // validated together and signed here.
    std::vector<policy::Signed> docs;
    std::vector<std::string> yamlFiles;
    for (const auto& file : s.files) {
      if (!file.ends_with(".json")) {
        yamlFiles.push_back(file);
        continue;
      }
      auto text = readText(file);
      if (!text) return fail(text.error().message());
      auto j = nlohmann::json::parse(*text, nullptr, false);
      if (j.is_discarded() || !(j.is_object() || j.is_array())) return fail(file + ": not a signed policy file (JSON from meshcli policy sign)");
      std::vector<nlohmann::json> items = j.is_array() ? std::vector<nlohmann::json>(j.begin(), j.end()) : std::vector<nlohmann::json>{j};
      for (const auto& item : items) {
        auto d = policy::signedFromJson(item.dump());
        if (!d) return fail(file + ": " + d.error().message());
        docs.push_back(std::move(*d));
      }
    }
    if (!yamlFiles.empty()) {
      State yaml = s;
      yaml.files = yamlFiles;
      auto signedDocs = yaml.signAll(client);
      if (!signedDocs) return fail(signedDocs.error().message(), signedDocs.error().code == errc::invalid_argument ? 2 : 1);
      for (auto& d : *signedDocs) docs.push_back(std::move(d));
    }
    int rc = 0;
    for (const auto& d : docs) rc = std::max(rc, s.publishOne(client, d));
    return rc;
  }
  if (s.list->parsed()) {
    auto r = client.getJson("/v1/policies");
    if (!r) return fail(r.error().message());
    std::cout << (s.json ? r->dump(2) + "\n" : formatPolicyList(*r));
    return 0;
  }
  auto ref = parseRef(s.ref);
  if (!ref) return fail(ref.error().message(), 2);
  if (s.get->parsed()) {
    auto d = fetchSigned(client, *ref, s.version);
    if (!d) return fail(d.error().message());
    auto text = render(*d, s.output);
    if (!text) return fail(text.error().message());
    std::cout << *text;
    return 0;
  }
  if (s.history->parsed()) {
    auto r = client.getJson(docPath(*ref) + "/history");
    if (!r) return fail(r.error().message());
    std::cout << (s.json ? r->dump(2) + "\n" : formatPolicyHistory(*r));
    return 0;
  }
  if (s.diff->parsed()) {
    auto a = fetchSigned(client, *ref, s.v1);
    if (!a) return fail(a.error().message());
    auto b = fetchSigned(client, *ref, s.v2);
    if (!b) return fail(b.error().message());
    // The versions differ by construction; compare the specs.
    auto ra = render(*a, "yaml"), rb = render(*b, "yaml");
    if (!ra || !rb) return fail("cannot render: " + (!ra ? ra.error() : rb.error()).message());
    auto strip = [](std::string t) {
      auto at = t.find("\n  version: ");
      if (at != std::string::npos) t.erase(at, t.find('\n', at + 1) - at);
      return t;
    };
    auto d = lineDiff(strip(*ra), strip(*rb), *ref + " version " + std::to_string(s.v1), *ref + " version " + std::to_string(s.v2));
    std::cout << (d.empty() ? "No differences in the spec.\n" : d);
    return 0;
  }
  if (s.status->parsed()) {
    NodeClient patient{client.node, client.timeout + std::chrono::minutes(1)};
    auto r = patient.getJson(docPath(*ref) + "/status");
    if (!r) return fail(r.error().message());
    std::cout << (s.json ? r->dump(2) + "\n" : formatPolicyStatus(*r));
    return 0;
  }
  if (s.revert->parsed()) {
    auto old = fetchSigned(client, *ref, s.to);
    if (!old) return fail(old.error().message());
    auto cur = client.getJson(docPath(*ref));
    if (!cur) return fail(cur.error().message());
    auto k = s.keys();
    if (!k) return fail(k.error().message(), 2);
    auto exp = s.expiry();
    if (!exp) return fail(exp.error().message(), 2);
    policy::Document d;
    d.kind = *policy::parseKind(old->envelope.kind);
    d.name = old->envelope.name;
    d.body = old->body;
    if (auto problems = policy::validateBody(d.kind, d.name, d.body); !problems.empty()) {
      return fail("version " + std::to_string(s.to) + " is no longer valid: " + problems[0].str());
    }
    auto next = cur->value("version", std::uint64_t{0}) + 1;
    auto signedDoc = policy::signDocument(d, next, nowSeconds(), *exp, *k);
    if (!signedDoc) return fail(signedDoc.error().message());
    std::cout << "Reverting " << *ref << " to the content of version " << s.to << " as version " << next << "\n";
    return s.publishOne(client, *signedDoc);
  }
  return fail("policy: give a subcommand", 2);
}

}  // namespace mesh::cli
