// libFuzzer target: the proxy's HTTP/1.1 framing (issue 7), fed arbitrary bytes as a pipelined
// stream the way a downstream connection delivers them: request heads, their bodies found by
// the chunked scanner or the length, and the head rewritten for the next hop; then the same
// bytes as an upstream's response. Checks invariants, not just "no crash": a head never claims
// more bytes than it was given, errors carry 4xx/5xx, the scanner never uses more than it was
// fed, and a rewritten head parses again to the same method, target and framing. Each request
// is also walked through a route table with every kind of match (issue 8: query strings decoded,
// regular expressions on request values), rewritten and redirected: a rewritten path is a path
// that keeps the query, and a Location names the scheme.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "node/proxy/http1.h"
#include "node/proxy/routing.h"
#include "node/proxy/snapshot.h"

namespace {

using namespace mesh::proxy;

StringMatcher str(StringMatcher::Kind k, std::string v) {
  StringMatcher m{k, std::move(v), nullptr};
  if (k == StringMatcher::Kind::regex) m.re = std::make_shared<const std::regex>(m.value, std::regex::ECMAScript);
  return m;
}

HeaderMatcher header(std::string name, HeaderMatcher::Kind k, StringMatcher v = {}) {
  return HeaderMatcher{std::move(name), k, std::move(v)};
}

const RouteTable& table() {
  static const RouteTable t = [] {
    RouteTable t;
    RouteRule prefix;
    prefix.name = "prefix";
    RouteMatch m;
    m.path = str(StringMatcher::Kind::prefix, "/a");
    m.methods = {"GET", "POST"};
    m.query.push_back(header("q", HeaderMatcher::Kind::regex, str(StringMatcher::Kind::regex, "[a-z ]*x")));
    prefix.matches.push_back(m);
    prefix.rewriteUri = "/";
    prefix.destinations.push_back({"svc", "", "svc", 100, {}});
    prefix.totalWeight = 100;
    t.rules.push_back(prefix);
    RouteRule headers;
    headers.name = "headers";
    RouteMatch h;
    h.headers.push_back(header("x-user", HeaderMatcher::Kind::exact, str(StringMatcher::Kind::exact, "alice")));
    h.headers.push_back(header("x-debug", HeaderMatcher::Kind::absent));
    h.authority = str(StringMatcher::Kind::regex, "(.*\\.)?svc(:[0-9]+)?");
    headers.matches.push_back(h);
    RouteMatch q;
    q.path = str(StringMatcher::Kind::regex, "/(b|c)+/.*");
    q.query.push_back(header("k", HeaderMatcher::Kind::present));
    q.headers.push_back(header("host", HeaderMatcher::Kind::prefix, str(StringMatcher::Kind::prefix, "s")));
    headers.matches.push_back(q);
    headers.redirect = RouteRule::Redirect{"", "other", "https", 302};
    t.rules.push_back(headers);
    RouteRule all;
    all.name = "all";
    all.rewriteUri = "/new";
    all.destinations.push_back({"svc", "v1", "svc/v1", 30, {}});
    all.destinations.push_back({"svc", "v2", "svc/v2", 70, {}});
    all.totalWeight = 100;
    t.rules.push_back(all);
    return t;
  }();
  return t;
}

void route(const mesh::proxy::h1::Head& head, std::uint64_t draw) {
  const RouteMatch* matched = nullptr;
  const RouteRule* rule = table().match(head, &matched);
  if (!rule) std::abort();  // the last rule matches everything
  if (rule->redirect) {
    auto loc = redirectLocation(*rule->redirect, head);
    if (!loc.starts_with("https://other")) std::abort();
    return;
  }
  auto path = rewritePath(*rule, matched, head);
  if (path.empty() || path.front() != '/') std::abort();
  auto query = splitTarget(head.path).second;
  if (!query.empty() && !path.ends_with("?" + std::string(query))) std::abort();
  if (!pickDestination(*rule, draw)) std::abort();
}

// The egress phase on the request's Host (issue 8): whatever the authority, a decision that
// names a host without a port or a port of 1 to 65535, and blocks only under REGISTRY_ONLY.
void egress(const mesh::proxy::h1::Head& head) {
  static const EgressPolicy open = [] {
    EgressPolicy p;
    ExternalHost e;
    e.document = "ExternalService/x";
    e.hosts = {"api.example.com", "*.example.org"};
    e.ports = {{80, true}, {8080, false}};
    p.externals.push_back(e);
    p.hostTls["api.example.com"] = {true, "sni.example.com"};
    return p;
  }();
  static const EgressPolicy closed = [] {
    auto p = open;
    p.registryOnly = true;
    return p;
  }();
  for (const auto* p : {&open, &closed}) {
    auto d = egressFor(*p, head.host);
    if (d.kind == EgressDecision::Kind::go && (d.port == 0 || d.askedPort == 0 || d.host.empty())) std::abort();
    if (d.kind == EgressDecision::Kind::blocked && !p->registryOnly) std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace mesh::proxy::h1;
  std::string_view rest(reinterpret_cast<const char*>(data), size);
  Limits limits{.maxHeadBytes = 4096, .maxHeaders = 32};
  for (int i = 0; i < 32 && !rest.empty(); ++i) {
    Head head;
    auto r = parseRequest(rest, limits, head);
    if (r.state == Parse::error) {
      if (r.status < 400 || r.status > 599) std::abort();
      break;
    }
    if (r.state == Parse::incomplete) break;
    if (head.headBytes == 0 || head.headBytes > rest.size()) std::abort();
    route(head, size * 2654435761u + static_cast<std::uint64_t>(i));
    egress(head);
    std::string out;
    FieldEdits edits{{"x-remove", "cookie"}, {{"x-added", "1"}}};
    writeRequest(head, head.path, {{"x-request-id", "fuzz"}}, head.keepAlive, out, i % 2 ? &edits : nullptr);
    if (i % 2 && out.find("\r\nx-added: 1\r\n") == std::string::npos) std::abort();
    Head again;
    auto r2 = parseRequest(out, limits, again);
    // What we send on is a valid HTTP/1.1 head (within the limits, with the request id added)
    // whenever it still fits and has a Host to give (an HTTP/1.0 request may have none: the
    // proxy then names the service itself).
    if (!head.host.empty() && out.size() + 64 < limits.maxHeadBytes && head.headers.size() + 2 < limits.maxHeaders) {
      if (r2.state != Parse::complete) std::abort();
      if (again.method != head.method || again.framing != head.framing || again.contentLength != head.contentLength) {
        std::abort();
      }
    }
    rest.remove_prefix(head.headBytes);
    if (head.framing == Framing::length) {
      if (head.contentLength > rest.size()) break;
      rest.remove_prefix(static_cast<std::size_t>(head.contentLength));
    } else if (head.framing == Framing::chunked) {
      ChunkedScanner sc;
      // Half, then the rest: the scanner must not depend on how bytes are split.
      auto a = sc.feed(rest.substr(0, rest.size() / 2));
      if (a.used > rest.size() / 2) std::abort();
      if (a.error) break;
      std::size_t used = a.used;
      if (!a.done) {
        auto b = sc.feed(rest.substr(rest.size() / 2));
        if (b.used > rest.size() - rest.size() / 2) std::abort();
        if (b.error) break;
        used = rest.size() / 2 + b.used;
        if (!b.done) break;
      }
      rest.remove_prefix(used);
    }
  }
  Head resp;
  std::string_view whole(reinterpret_cast<const char*>(data), size);
  for (const char* method : {"GET", "HEAD", "CONNECT"}) {
    auto r = parseResponse(whole, limits, method, resp);
    if (r.state == Parse::error && r.status != 502) std::abort();
    if (r.state == Parse::complete) {
      if (resp.headBytes > size) std::abort();
      std::string out;
      writeResponse(resp, {}, resp.keepAlive, out);
    }
  }
  return 0;
}
