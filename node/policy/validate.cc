// The checks of each kind's fields beyond what the schema says: required fields, ranges, weights
// adding up, regexes that compile, names that are names, combinations that mean nothing.
// Messages say what is wrong and what would be right.
#include <arpa/inet.h>
#include <capnp/message.h>

#include <cctype>
#include <cmath>
#include <regex>
#include <set>

#include "common/errc.h"
#include "node/policy/document.h"
#include "node/policy/signing.h"
#include "node/policy/validate.h"
#include "schemas/policy.capnp.h"
#include "schemas/record_io.h"

namespace mesh::policy {

namespace {

using namespace mesh::schema;

bool isIp(const std::string& s) {
  unsigned char buf[16];
  return inet_pton(AF_INET, s.c_str(), buf) == 1 || inet_pton(AF_INET6, s.c_str(), buf) == 1;
}

struct Checker {
  std::vector<Problem>* out;
  void bad(const std::string& path, std::string message) { out->push_back(Problem{"", 0, path, std::move(message)}); }

  static std::string at(const std::string& path, unsigned i) { return path + "[" + std::to_string(i) + "]"; }

  void name(const std::string& path, capnp::Text::Reader t, const char* what, bool required = true) {
    std::string s = t.cStr();
    if (s.empty()) {
      if (required) bad(path, std::string("missing: ") + what);
      return;
    }
    if (!validName(s)) bad(path, "'" + s + "' is not a valid " + what + " (lower-case letters, digits, '-' and '.')");
  }

  // A DNS host: a name, or a "*." wildcard in front of one; upper case is allowed and ignored.
  void host(const std::string& path, const std::string& h) {
    std::string s = h;
    for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (s.rfind("*.", 0) == 0) s = s.substr(2);
    if (!validName(s)) bad(path, "'" + h + "' is not a host name");
  }

  // std::regex builds an automaton whose size multiplies with nested counted repetitions
  // ("(a{100}){100}"): a document must not be able to make a node (or meshcli) build a huge one.
  void regex(const std::string& path, const std::string& re) {
    if (re.size() > 512) {
      bad(path, "a regular expression of " + std::to_string(re.size()) + " characters is above the limit of 512");
      return;
    }
    for (std::size_t i = re.find('{'); i != std::string::npos; i = re.find('{', i + 1)) {
      std::size_t j = i + 1;
      unsigned long n = 0;
      while (j < re.size() && (std::isdigit(static_cast<unsigned char>(re[j])) || re[j] == ',')) {
        if (re[j] != ',') n = std::min<unsigned long>(n * 10 + static_cast<unsigned long>(re[j] - '0'), 100000);
        else n = 0;
        if (n > 100) {
          bad(path, "a counted repetition above {100} in '" + re + "'");
          return;
        }
        ++j;
      }
    }
    try {
      std::regex r(re, std::regex::ECMAScript);
    } catch (const std::regex_error& e) {
      bad(path, "'" + re + "' is not a valid regular expression: " + e.what());
    }
  }

  void percent(const std::string& path, double p) {
    if (!(p >= 0 && p <= 100)) bad(path, std::to_string(p) + " is not a percentage (0 to 100)");
  }

  void headerName(const std::string& path, const std::string& h) {
    static const std::regex token("^[!#$%&'*+.^_`|~0-9A-Za-z-]+$");
    if (h.empty()) bad(path, "missing: a header name");
    else if (!std::regex_match(h, token)) bad(path, "'" + h + "' is not a header name");
  }

  void method(const std::string& path, const std::string& m) {
    static const std::set<std::string> methods{"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"};
    if (!methods.count(m)) bad(path, "'" + m + "' is not an HTTP method (GET, HEAD, POST, PUT, DELETE, CONNECT, OPTIONS, TRACE, PATCH)");
  }

  void stringMatch(const std::string& path, StringMatch::Reader m, bool isPath) {
    switch (m.which()) {
      case StringMatch::UNSET: bad(path, "give one of exact, prefix, regex"); break;
      case StringMatch::EXACT:
        if (isPath && !std::string(m.getExact().cStr()).starts_with("/")) bad(path + ".exact", "a path starts with '/'");
        break;
      case StringMatch::PREFIX:
        if (isPath && !std::string(m.getPrefix().cStr()).starts_with("/")) bad(path + ".prefix", "a path starts with '/'");
        break;
      case StringMatch::REGEX: regex(path + ".regex", m.getRegex().cStr()); break;
    }
  }

  void headerMatches(const std::string& path, capnp::List<HeaderMatch>::Reader list, bool header) {
    for (auto h : list) {
      std::string p = path + "." + h.getName().cStr();
      if (header) headerName(p, h.getName().cStr());
      else if (h.getName().size() == 0) bad(p, "missing: a parameter name");
      switch (h.which()) {
        case HeaderMatch::UNSET: bad(p, "give one of exact, prefix, regex, present"); break;
        case HeaderMatch::REGEX: regex(p + ".regex", h.getRegex().cStr()); break;
        default: break;
      }
    }
  }

  void httpMatch(const std::string& path, HttpMatch::Reader m) {
    if (m.hasPath()) stringMatch(path + ".path", m.getPath(), true);
    if (m.hasAuthority()) stringMatch(path + ".authority", m.getAuthority(), false);
    for (unsigned i = 0; i < m.getMethods().size(); ++i) method(at(path + ".methods", i), m.getMethods()[i].cStr());
    headerMatches(path + ".headers", m.getHeaders(), true);
    headerMatches(path + ".queryParams", m.getQueryParams(), false);
  }

  void headerEdit(const std::string& path, HeaderEdit::Reader e) {
    for (auto h : e.getSet()) headerName(path + ".set." + h.getName().cStr(), h.getName().cStr());
    for (auto h : e.getAdd()) headerName(path + ".add." + h.getName().cStr(), h.getName().cStr());
    for (unsigned i = 0; i < e.getRemove().size(); ++i) headerName(at(path + ".remove", i), e.getRemove()[i].cStr());
  }

  void headerOps(const std::string& path, HeaderOps::Reader h) {
    if (h.hasRequest()) headerEdit(path + ".request", h.getRequest());
    if (h.hasResponse()) headerEdit(path + ".response", h.getResponse());
  }

  void destination(const std::string& path, Destination::Reader d) {
    name(path + ".service", d.getService(), "service name");
    name(path + ".subset", d.getSubset(), "subset name", false);
  }

  void weighted(const std::string& path, capnp::List<WeightedDestination>::Reader list) {
    std::uint64_t sum = 0;
    for (unsigned i = 0; i < list.size(); ++i) {
      auto w = list[i];
      if (!w.hasDestination()) bad(at(path, i) + ".destination", "missing: service (and subset)");
      else destination(at(path, i) + ".destination", w.getDestination());
      if (w.getWeight() > 100) bad(at(path, i) + ".weight", std::to_string(w.getWeight()) + " is above 100 (weights are percentages)");
      if (w.hasHeaders()) headerOps(at(path, i) + ".headers", w.getHeaders());
      sum += w.getWeight();
    }
    if (list.size() > 1 && sum != 100) {
      bad(path, "weights add up to " + std::to_string(sum) + "; they must add up to 100");
    } else if (list.size() == 1 && sum != 0 && sum != 100) {
      bad(at(path, 0) + ".weight", "a single destination takes all the traffic: weight 100 (or none)");
    }
  }

  void retry(const std::string& path, Retry::Reader r) {
    static const std::set<std::string> on{"5xx", "gateway-error", "reset", "connect-failure", "retriable-status-codes"};
    bool codes = false;
    for (unsigned i = 0; i < r.getRetryOn().size(); ++i) {
      std::string s = r.getRetryOn()[i].cStr();
      if (!on.count(s)) bad(at(path + ".retryOn", i), "'" + s + "' is not a retry condition (5xx, gateway-error, reset, connect-failure, retriable-status-codes)");
      codes = codes || s == "retriable-status-codes";
    }
    for (unsigned i = 0; i < r.getRetriableStatusCodes().size(); ++i) {
      auto c = r.getRetriableStatusCodes()[i];
      if (c < 100 || c > 599) bad(at(path + ".retriableStatusCodes", i), std::to_string(c) + " is not an HTTP status");
    }
    if (codes && r.getRetriableStatusCodes().size() == 0) bad(path + ".retriableStatusCodes", "retryOn names retriable-status-codes but none are given");
    if (r.getAttempts() > 10) bad(path + ".attempts", std::to_string(r.getAttempts()) + " attempts is above the limit of 10");
    if (r.getBackoffMax() && r.getBackoffBase() > r.getBackoffMax()) bad(path + ".backoffMax", "below backoffBase");
    percent(path + ".budgetPercent", r.getBudgetPercent());
  }

  void fault(const std::string& path, Fault::Reader f) {
    if (!f.hasDelay() && !f.hasAbort()) bad(path, "give delay, abort or both");
    if (f.hasDelay()) {
      percent(path + ".delay.percent", f.getDelay().getPercent());
      if (f.getDelay().getFixedDelay() == 0) bad(path + ".delay.fixedDelay", "missing: how long to delay");
    }
    if (f.hasAbort()) {
      auto a = f.getAbort();
      percent(path + ".abort.percent", a.getPercent());
      if ((a.getHttpStatus() != 0) == (a.getGrpcStatus() != 0)) bad(path + ".abort", "give one of httpStatus, grpcStatus");
      if (a.getHttpStatus() != 0 && (a.getHttpStatus() < 200 || a.getHttpStatus() > 599)) bad(path + ".abort.httpStatus", std::to_string(a.getHttpStatus()) + " is not an HTTP status (200-599)");
      if (a.getGrpcStatus() > 16) bad(path + ".abort.grpcStatus", std::to_string(a.getGrpcStatus()) + " is not a gRPC status (1-16)");
    }
    headerMatches(path + ".match", f.getMatch(), true);
  }

  void httpRule(const std::string& path, HttpRule::Reader r) {
    for (unsigned i = 0; i < r.getMatch().size(); ++i) httpMatch(at(path + ".match", i), r.getMatch()[i]);
    int actions = (r.getRoute().size() > 0) + r.hasRedirect() + r.hasDirectResponse();
    if (actions == 0) bad(path, "give one of route, redirect, directResponse");
    if (actions > 1) bad(path, "only one of route, redirect, directResponse may be given");
    weighted(path + ".route", r.getRoute());
    if (r.hasRetries()) retry(path + ".retries", r.getRetries());
    if (r.hasFault()) fault(path + ".fault", r.getFault());
    if (r.hasMirror()) destination(path + ".mirror", r.getMirror());
    else if (r.getMirrorPercent() != 0) bad(path + ".mirrorPercent", "given without mirror");
    percent(path + ".mirrorPercent", r.getMirrorPercent());
    if (r.hasRewrite()) {
      if (r.getRoute().size() == 0) bad(path + ".rewrite", "applies to route only");
      std::string uri = r.getRewrite().getUri().cStr();
      if (!uri.empty() && uri[0] != '/') bad(path + ".rewrite.uri", "a path starts with '/'");
      if (r.getRewrite().getAuthority().size()) host(path + ".rewrite.authority", r.getRewrite().getAuthority().cStr());
    }
    if (r.hasRedirect()) {
      auto d = r.getRedirect();
      auto c = d.getResponseCode();
      if (c != 0 && c != 301 && c != 302 && c != 303 && c != 307 && c != 308) bad(path + ".redirect.responseCode", std::to_string(c) + " is not a redirect status (301, 302, 303, 307, 308)");
      if (d.getUri().size() == 0 && d.getAuthority().size() == 0 && d.getScheme().size() == 0) bad(path + ".redirect", "give uri, authority or scheme");
      std::string scheme = d.getScheme().cStr();
      if (!scheme.empty() && scheme != "http" && scheme != "https") bad(path + ".redirect.scheme", "'" + scheme + "' is not http or https");
    }
    if (r.hasDirectResponse()) {
      auto s = r.getDirectResponse().getStatus();
      if (s < 200 || s > 599) bad(path + ".directResponse.status", std::to_string(s) + " is not an HTTP status (200-599)");
    }
    if (r.hasHeaders()) headerOps(path + ".headers", r.getHeaders());
  }

  void route(Route::Reader r) {
    if (r.getHosts().size() == 0) bad("spec.hosts", "missing: the services (or external hosts) this route applies to");
    std::set<std::string> seen;
    for (unsigned i = 0; i < r.getHosts().size(); ++i) {
      std::string h = r.getHosts()[i].cStr();
      host(at("spec.hosts", i), h);
      if (!seen.insert(h).second) bad(at("spec.hosts", i), "'" + h + "' is given twice");
    }
    if (r.getHttp().size() == 0 && r.getTcp().size() == 0) bad("spec", "give http rules, tcp rules or both");
    std::set<std::string> names;
    for (unsigned i = 0; i < r.getHttp().size(); ++i) {
      auto rule = r.getHttp()[i];
      std::string n = rule.getName().cStr();
      if (!n.empty() && !names.insert(n).second) bad(at("spec.http", i) + ".name", "'" + n + "' names two rules");
      httpRule(at("spec.http", i), rule);
    }
    for (unsigned i = 0; i < r.getTcp().size(); ++i) {
      auto rule = r.getTcp()[i];
      if (rule.getRoute().size() == 0) bad(at("spec.tcp", i) + ".route", "missing: where the connections go");
      weighted(at("spec.tcp", i) + ".route", rule.getRoute());
      for (unsigned j = 0; j < rule.getMatch().size(); ++j) {
        name(at(at("spec.tcp", i) + ".match", j) + ".sourceService", rule.getMatch()[j].getSourceService(), "service name", false);
      }
    }
  }

  void trafficPolicy(const std::string& path, TrafficPolicy::Reader t) {
    if (t.hasLoadBalancer()) {
      auto lb = t.getLoadBalancer();
      bool ring = lb.getAlgorithm() == LoadBalancer::Algorithm::RING_HASH;
      if (ring && lb.getHashHeader().size() == 0 && !lb.getHashSource()) bad(path + ".loadBalancer", "RING_HASH needs hashHeader or hashSource");
      if (ring && lb.getHashHeader().size() != 0 && lb.getHashSource()) bad(path + ".loadBalancer", "give one of hashHeader, hashSource");
      if (!ring && (lb.getHashHeader().size() != 0 || lb.getHashSource())) bad(path + ".loadBalancer", "hashHeader and hashSource apply to RING_HASH only");
      if (lb.getHashHeader().size()) headerName(path + ".loadBalancer.hashHeader", lb.getHashHeader().cStr());
    }
    if (t.hasOutlierDetection()) {
      auto o = t.getOutlierDetection();
      percent(path + ".outlierDetection.maxEjectionPercent", o.getMaxEjectionPercent());
      if (o.getSuccessRateStdevFactor() < 0) bad(path + ".outlierDetection.successRateStdevFactor", "below 0");
    }
    if (t.hasTls() && t.getTls().getSni().size()) host(path + ".tls.sni", t.getTls().getSni().cStr());
  }

  void destinationPolicy(DestinationPolicy::Reader d) {
    name("spec.service", d.getService(), "service name");
    std::set<std::string> names;
    for (unsigned i = 0; i < d.getSubsets().size(); ++i) {
      auto s = d.getSubsets()[i];
      std::string p = at("spec.subsets", i);
      name(p + ".name", s.getName(), "subset name");
      if (!names.insert(s.getName().cStr()).second) bad(p + ".name", std::string("'") + s.getName().cStr() + "' names two subsets");
      if (s.getLabels().size() == 0) bad(p + ".labels", "missing: the labels that pick the subset's instances");
      for (auto l : s.getLabels()) {
        if (l.getName().size() == 0) bad(p + ".labels", "a label with no name");
      }
      if (s.hasTrafficPolicy()) trafficPolicy(p + ".trafficPolicy", s.getTrafficPolicy());
    }
    if (d.hasTrafficPolicy()) trafficPolicy("spec.trafficPolicy", d.getTrafficPolicy());
  }

  void serviceOrAll(const std::string& path, capnp::Text::Reader t) {
    if (std::string(t.cStr()) == "*") return;
    name(path, t, "service name (or \"*\")");
  }

  void rateLimit(RateLimit::Reader r) {
    serviceOrAll("spec.service", r.getService());
    if (r.getRules().size() == 0) bad("spec.rules", "missing: at least one rule");
    std::set<std::string> names;
    for (unsigned i = 0; i < r.getRules().size(); ++i) {
      auto rule = r.getRules()[i];
      std::string p = at("spec.rules", i);
      std::string n = rule.getName().cStr();
      // Rule names travel in the mesh-wide limit's usage records and in x-mesh-ratelimit.
      name(p + ".name", rule.getName(), "rule name", false);
      if (!n.empty() && !names.insert(n).second) bad(p + ".name", "'" + n + "' names two rules");
      if (rule.getScope() == RateLimitRule::Scope::MESH) {
        // One limit shared by nodes in proportion to their demand: demand per key (a caller, a
        // header's value) is not shared, so a keyed bucket cannot be.
        auto k = rule.getKeyBy();
        if (k == RateLimitRule::KeyBy::SOURCE_IDENTITY || k == RateLimitRule::KeyBy::HEADER ||
            (k == RateLimitRule::KeyBy::SERVICE && std::string(r.getService().cStr()) == "*")) {
          bad(p + ".scope", "MESH applies to keyBy ROUTE, or SERVICE of one named service (not per caller, header or "
                            "service of \"*\")");
        }
      }
      for (unsigned j = 0; j < rule.getMatch().size(); ++j) httpMatch(at(p + ".match", j), rule.getMatch()[j]);
      if (rule.getRequestsPerUnit() == 0) bad(p + ".requestsPerUnit", "missing: how many requests per unit");
      bool byHeader = rule.getKeyBy() == RateLimitRule::KeyBy::HEADER;
      if (byHeader && rule.getHeader().size() == 0) bad(p + ".header", "keyBy HEADER needs the header's name");
      if (!byHeader && rule.getHeader().size() != 0) bad(p + ".header", "applies to keyBy HEADER only");
      if (rule.getHeader().size()) headerName(p + ".header", rule.getHeader().cStr());
    }
  }

  void externalService(ExternalService::Reader e) {
    if (e.getHosts().size() == 0) bad("spec.hosts", "missing: the external hosts this allows");
    for (unsigned i = 0; i < e.getHosts().size(); ++i) host(at("spec.hosts", i), e.getHosts()[i].cStr());
    if (e.getPorts().size() == 0) bad("spec.ports", "missing: at least one port");
    std::set<unsigned> numbers;
    for (unsigned i = 0; i < e.getPorts().size(); ++i) {
      auto p = e.getPorts()[i];
      std::string path = at("spec.ports", i);
      if (p.getNumber() == 0) bad(path + ".number", "missing: a port number (1-65535)");
      else if (!numbers.insert(p.getNumber()).second) bad(path + ".number", std::to_string(p.getNumber()) + " is given twice");
      if (p.getTlsOrigination() && p.getProtocol() != ExternalPort::Protocol::HTTP && p.getProtocol() != ExternalPort::Protocol::HTTP2 &&
          p.getProtocol() != ExternalPort::Protocol::GRPC) {
        bad(path + ".tlsOrigination", "applies to HTTP, HTTP2 and GRPC ports (the app speaks plain text, the proxy TLS)");
      }
    }
    bool isStatic = e.getResolution() == ExternalService::Resolution::STATIC;
    if (isStatic && e.getAddresses().size() == 0) bad("spec.addresses", "resolution STATIC needs addresses");
    if (!isStatic && e.getAddresses().size() != 0) bad("spec.addresses", "applies to resolution STATIC only");
    for (unsigned i = 0; i < e.getAddresses().size(); ++i) {
      if (!isIp(e.getAddresses()[i].cStr())) bad(at("spec.addresses", i), std::string("'") + e.getAddresses()[i].cStr() + "' is not an IP address");
    }
    for (unsigned i = 0; i < e.getHosts().size(); ++i) {
      if (isStatic && std::string(e.getHosts()[i].cStr()).starts_with("*.")) bad(at("spec.hosts", i), "a wildcard host needs resolution DNS");
    }
  }

  void accessPolicy(AccessPolicy::Reader a) {
    serviceOrAll("spec.service", a.getService());
    if (a.getRules().size() == 0 && a.getAction() == AccessPolicy::Action::DENY) bad("spec.rules", "a DENY policy needs rules (none would deny nothing)");
    for (unsigned i = 0; i < a.getRules().size(); ++i) {
      auto r = a.getRules()[i];
      std::string p = at("spec.rules", i);
      for (unsigned j = 0; j < r.getFrom().size(); ++j) {
        auto f = r.getFrom()[j];
        std::string fp = at(p + ".from", j);
        auto ids = [&](const char* field, capnp::List<capnp::Text>::Reader l) {
          for (unsigned k = 0; k < l.size(); ++k) {
            std::string s = l[k].cStr();
            if (s != "*" && !s.starts_with("spiffe://")) bad(at(fp + "." + field, k), "'" + s + "' is not a SPIFFE ID (spiffe://trust-domain/...) or \"*\"");
          }
        };
        ids("identities", f.getIdentities());
        ids("notIdentities", f.getNotIdentities());
        for (unsigned k = 0; k < f.getNamespaces().size(); ++k) name(at(fp + ".namespaces", k), f.getNamespaces()[k], "namespace");
      }
      for (unsigned j = 0; j < r.getTo().size(); ++j) {
        auto t = r.getTo()[j];
        std::string tp = at(p + ".to", j);
        auto paths = [&](const char* field, capnp::List<capnp::Text>::Reader l) {
          for (unsigned k = 0; k < l.size(); ++k) {
            std::string s = l[k].cStr();
            if (s != "*" && !s.starts_with("/")) bad(at(tp + "." + field, k), "'" + s + "' is not a path (starts with '/'; a trailing '*' matches a prefix)");
          }
        };
        paths("paths", t.getPaths());
        paths("notPaths", t.getNotPaths());
        for (unsigned k = 0; k < t.getMethods().size(); ++k) method(at(tp + ".methods", k), t.getMethods()[k].cStr());
      }
    }
  }

  void gateway(Gateway::Reader g) {
    if (g.getListeners().size() == 0) bad("spec.listeners", "missing: at least one listener");
    std::set<std::string> names;
    std::set<unsigned> ports;
    static const std::regex certName("^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$");
    for (unsigned i = 0; i < g.getListeners().size(); ++i) {
      auto l = g.getListeners()[i];
      std::string p = at("spec.listeners", i);
      name(p + ".name", l.getName(), "listener name");
      if (!names.insert(l.getName().cStr()).second) bad(p + ".name", std::string("'") + l.getName().cStr() + "' names two listeners");
      if (l.getPort() == 0) bad(p + ".port", "missing: a port (1-65535)");
      else if (!ports.insert(l.getPort()).second) bad(p + ".port", std::to_string(l.getPort()) + " is used by two listeners");
      if (l.getHosts().size() == 0) bad(p + ".hosts", "missing: the hosts it serves (\"*\" for any)");
      for (unsigned k = 0; k < l.getHosts().size(); ++k) {
        std::string h = l.getHosts()[k].cStr();
        if (h != "*") host(at(p + ".hosts", k), h);
      }
      using P = GatewayListener::Protocol;
      bool tlsProto = l.getProtocol() == P::HTTPS || l.getProtocol() == P::TLS;
      if (tlsProto && !l.hasTls()) bad(p + ".tls", "protocol " + std::string(l.getProtocol() == P::HTTPS ? "HTTPS" : "TLS") + " needs tls");
      if (!tlsProto && l.hasTls()) bad(p + ".tls", "applies to protocols HTTPS and TLS only");
      if (l.hasTls()) {
        auto t = l.getTls();
        bool passthrough = t.getMode() == GatewayTls::Mode::PASSTHROUGH;
        std::string c = t.getCertificate().cStr();
        if (!passthrough && c.empty()) bad(p + ".tls.certificate", "missing: the name of a certificate in the gateway's --tls-dir");
        if (passthrough && !c.empty()) bad(p + ".tls.certificate", "a PASSTHROUGH listener does not terminate TLS");
        if (passthrough && l.getProtocol() != P::TLS) bad(p + ".tls.mode", "PASSTHROUGH needs protocol TLS");
        if (!c.empty() && !std::regex_match(c, certName)) bad(p + ".tls.certificate", "'" + c + "' is not a certificate name (letters, digits, '.', '_', '-')");
        std::string v = t.getMinVersion().cStr();
        if (!v.empty() && v != "1.2" && v != "1.3") bad(p + ".tls.minVersion", "'" + v + "' is not 1.2 or 1.3");
      }
    }
  }

  void meshConfig(std::string_view docName, MeshConfig::Reader m) {
    if (docName != kMeshConfigName) bad("metadata.name", "the MeshConfig is named \"mesh\" (there is one)");
    std::set<std::string> ids;
    for (unsigned i = 0; i < m.getTrustedKeys().size(); ++i) {
      auto k = parsePublicKeyPem(m.getTrustedKeys()[i].cStr());
      if (!k) bad(at("spec.trustedKeys", i), "not an Ed25519 public key in PEM (the .pub file meshcli keygen writes)");
      else if (!ids.insert(k->keyId).second) bad(at("spec.trustedKeys", i), "key " + k->keyId + " is given twice");
    }
    auto n = m.getTrustedKeys().size();
    if (n == 0 && m.getThreshold() != 0) bad("spec.threshold", "applies with trustedKeys only");
    if (n > 0 && m.getThreshold() > n) bad("spec.threshold", std::to_string(m.getThreshold()) + " is more than the " + std::to_string(n) + " trusted keys");
    if (n > 16) bad("spec.trustedKeys", "at most 16 keys");
  }
};

template <typename Root>
std::vector<Problem> check(std::string_view body, const std::function<void(Checker&, typename Root::Reader)>& f) {
  std::vector<Problem> out;
  Checker c{&out};
  if (body.size() > kMaxBodyBytes) {
    c.bad("", "the document is " + std::to_string(body.size()) + " bytes, above the limit of " + std::to_string(kMaxBodyBytes));
    return out;
  }
  auto r = schema::readRecord<Root>(body, "policy body", errc::malformed, kMaxBodyWords, [&](typename Root::Reader r) -> Result<void> {
    f(c, r);
    return {};
  });
  if (!r) c.bad("", r.error().message());
  return out;
}

}  // namespace

std::vector<Problem> validateBody(Kind kind, std::string_view name, std::string_view body) {
  std::vector<Problem> out;
  if (!validName(name)) {
    out.push_back(Problem{"", 0, "metadata.name", "'" + std::string(name) + "' is not a valid name"});
    return out;
  }
  switch (kind) {
    case Kind::route: return check<Route>(body, [](Checker& c, Route::Reader r) { c.route(r); });
    case Kind::destinationPolicy:
      return check<DestinationPolicy>(body, [](Checker& c, DestinationPolicy::Reader r) { c.destinationPolicy(r); });
    case Kind::rateLimit: return check<RateLimit>(body, [](Checker& c, RateLimit::Reader r) { c.rateLimit(r); });
    case Kind::externalService:
      return check<ExternalService>(body, [](Checker& c, ExternalService::Reader r) { c.externalService(r); });
    case Kind::accessPolicy: return check<AccessPolicy>(body, [](Checker& c, AccessPolicy::Reader r) { c.accessPolicy(r); });
    case Kind::gateway: return check<Gateway>(body, [](Checker& c, Gateway::Reader r) { c.gateway(r); });
    case Kind::meshConfig:
      return check<MeshConfig>(body, [name](Checker& c, MeshConfig::Reader r) { c.meshConfig(name, r); });
  }
  return out;
}

References referencesOf(Kind kind, std::string_view body) {
  References out;
  if (kind != Kind::route) return out;
  (void)schema::readRecord<Route>(body, "policy body", errc::malformed, kMaxBodyWords, [&](Route::Reader r) -> Result<void> {
    auto add = [&](Destination::Reader d) {
      out.services.emplace_back(d.getService().cStr());
      if (d.getSubset().size()) out.subsets.emplace_back(d.getService().cStr(), d.getSubset().cStr());
    };
    for (auto rule : r.getHttp()) {
      for (auto w : rule.getRoute()) add(w.getDestination());
      if (rule.hasMirror()) add(rule.getMirror());
    }
    for (auto rule : r.getTcp()) {
      for (auto w : rule.getRoute()) add(w.getDestination());
    }
    return {};
  });
  return out;
}

std::pair<std::string, std::vector<std::string>> subsetsOf(std::string_view body) {
  std::pair<std::string, std::vector<std::string>> out;
  (void)schema::readRecord<DestinationPolicy>(body, "policy body", errc::malformed, kMaxBodyWords,
                                              [&](DestinationPolicy::Reader d) -> Result<void> {
                                                out.first = d.getService().cStr();
                                                for (auto s : d.getSubsets()) out.second.emplace_back(s.getName().cStr());
                                                return {};
                                              });
  return out;
}

std::pair<std::vector<std::string>, std::uint32_t> trustOf(std::string_view body) {
  std::pair<std::vector<std::string>, std::uint32_t> out;
  (void)schema::readRecord<MeshConfig>(body, "policy body", errc::malformed, kMaxBodyWords, [&](MeshConfig::Reader m) -> Result<void> {
    for (auto k : m.getTrustedKeys()) out.first.emplace_back(k.cStr());
    out.second = m.getThreshold();
    return {};
  });
  return out;
}

std::vector<Problem> checkReferences(const std::vector<Document>& docs) {
  std::vector<Problem> out;
  std::map<std::string, const Document*> byKey;
  std::map<std::string, const Document*> destinationPolicies, rateLimits;
  std::map<std::string, std::set<std::string>> subsets;
  for (const auto& d : docs) {
    auto [it, fresh] = byKey.emplace(d.key(), &d);
    if (!fresh) {
      out.push_back(Problem{d.source, d.line, "metadata.name", d.key() + " is also defined at " + it->second->source + ":" + std::to_string(it->second->line)});
    }
    if (d.kind == Kind::destinationPolicy) {
      auto [svc, names] = subsetsOf(d.body);
      auto [p, first] = destinationPolicies.emplace(svc, &d);
      if (!first) {
        out.push_back(Problem{d.source, d.line, "spec.service", "service '" + svc + "' also has DestinationPolicy/" + p->second->name + " (one per service)"});
      }
      subsets[svc].insert(names.begin(), names.end());
    }
    if (d.kind == Kind::rateLimit) {
      std::string svc;
      (void)schema::readRecord<schema::RateLimit>(d.body, "policy body", errc::malformed, kMaxBodyWords,
                                                  [&](schema::RateLimit::Reader r) -> Result<void> {
                                                    svc = r.getService().cStr();
                                                    return {};
                                                  });
      auto [p, first] = rateLimits.emplace(svc, &d);
      if (!first) out.push_back(Problem{d.source, d.line, "spec.service", "service '" + svc + "' also has RateLimit/" + p->second->name + " (one per service)"});
    }
  }
  for (const auto& d : docs) {
    if (d.kind != Kind::route) continue;
    for (const auto& [svc, subset] : referencesOf(d.kind, d.body).subsets) {
      auto it = subsets.find(svc);
      if (it == subsets.end()) continue;  // its DestinationPolicy is not in this set: the node checks
      if (!it->second.count(subset)) {
        out.push_back(Problem{d.source, d.line, "spec", "subset '" + subset + "' of service '" + svc + "' is not defined by DestinationPolicy/" +
                                                            destinationPolicies[svc]->name});
      }
    }
  }
  return out;
}

}  // namespace mesh::policy
