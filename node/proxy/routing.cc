#include "node/proxy/routing.h"
#include "node/proxy/routing_schema.h"

#include <algorithm>

#include "common/http/message.h"
#include "node/policy/validate.h"
#include "schemas/policy.capnp.h"
#include "schemas/record_io.h"

namespace mesh::proxy {

namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

int hexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// application/x-www-form-urlencoded: '+' is a space, %XX a byte; a bad escape stays as written.
std::string decodeQuery(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '+') {
      out.push_back(' ');
    } else if (s[i] == '%' && i + 2 < s.size() && hexDigit(s[i + 1]) >= 0 &&
               hexDigit(s[i + 2]) >= 0) {
      out.push_back(static_cast<char>(hexDigit(s[i + 1]) * 16 + hexDigit(s[i + 2])));
      i += 2;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

// The first value of a query parameter, decoded; none when absent.
std::optional<std::string> queryParam(std::string_view query, std::string_view name) {
  while (!query.empty()) {
    auto amp = query.find('&');
    auto pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
    auto eq = pair.find('=');
    auto key = decodeQuery(pair.substr(0, eq));
    if (key == name) return eq == std::string_view::npos ? std::string() : decodeQuery(pair.substr(eq + 1));
  }
  return std::nullopt;
}

// The literal characters a whole-value match of ECMAScript `pattern` must begin with: none when
// it has an alternation anywhere (a branch may begin otherwise); the run of plain characters at
// its start, less the last when a quantifier that allows zero follows it.
std::string literalPrefix(std::string_view pattern) {
  if (pattern.find('|') != std::string_view::npos) return {};
  std::size_t i = pattern.starts_with('^') ? 1 : 0;
  std::string out;
  static constexpr std::string_view kMeta = "\\^$.|?*+()[]{}";
  for (; i < pattern.size() && kMeta.find(pattern[i]) == std::string_view::npos; ++i) out.push_back(pattern[i]);
  if (i < pattern.size() && (pattern[i] == '?' || pattern[i] == '*' || pattern[i] == '{') && !out.empty()) out.pop_back();
  return out;
}

Result<StringMatcher> matcher(StringMatcher::Kind kind, std::string value) {
  StringMatcher out{kind, std::move(value), nullptr, {}};
  if (kind != StringMatcher::Kind::regex) return out;
  out.regexPrefix = literalPrefix(out.value);
  try {
    out.re = std::make_shared<const std::regex>(out.value, std::regex::ECMAScript | std::regex::optimize);
  } catch (const std::regex_error& e) {
    return Error(errc::malformed, "regular expression '" + out.value + "': " + e.what());
  }
  return out;
}

Result<StringMatcher> stringMatcher(schema::StringMatch::Reader m) {
  switch (m.which()) {
    case schema::StringMatch::EXACT:
      return matcher(StringMatcher::Kind::exact, m.getExact().cStr());
    case schema::StringMatch::PREFIX:
      return matcher(StringMatcher::Kind::prefix, m.getPrefix().cStr());
    case schema::StringMatch::REGEX:
      return matcher(StringMatcher::Kind::regex, m.getRegex().cStr());
    case schema::StringMatch::UNSET:
      break;
  }
  return StringMatcher{};
}

// Header names fold to lower case; query parameter names (foldNames false) are matched as written.
Result<std::vector<HeaderMatcher>> headerMatchers(capnp::List<schema::HeaderMatch>::Reader list, bool foldNames) {
  std::vector<HeaderMatcher> out;
  for (auto h : list) {
    HeaderMatcher m;
    m.name = foldNames ? lower(h.getName().cStr()) : std::string(h.getName().cStr());
    Result<StringMatcher> value = StringMatcher{};
    switch (h.which()) {
      case schema::HeaderMatch::UNSET:
        m.kind = HeaderMatcher::Kind::present;
        break;
      case schema::HeaderMatch::EXACT:
        m.kind = HeaderMatcher::Kind::exact;
        value = matcher(StringMatcher::Kind::exact, h.getExact().cStr());
        break;
      case schema::HeaderMatch::PREFIX:
        m.kind = HeaderMatcher::Kind::prefix;
        value = matcher(StringMatcher::Kind::prefix, h.getPrefix().cStr());
        break;
      case schema::HeaderMatch::REGEX:
        m.kind = HeaderMatcher::Kind::regex;
        value = matcher(StringMatcher::Kind::regex, h.getRegex().cStr());
        break;
      case schema::HeaderMatch::PRESENT:
        m.kind = h.getPresent() ? HeaderMatcher::Kind::present : HeaderMatcher::Kind::absent;
        break;
    }
    if (!value) return value.error();
    m.value = std::move(*value);
    out.push_back(std::move(m));
  }
  return out;
}

HeaderEdit headerEdit(schema::HeaderEdit::Reader e) {
  HeaderEdit out;
  for (auto h : e.getSet()) out.set.emplace_back(lower(h.getName().cStr()), h.getValue().cStr());
  for (auto h : e.getAdd()) out.add.emplace_back(lower(h.getName().cStr()), h.getValue().cStr());
  for (auto n : e.getRemove()) out.remove.push_back(lower(n.cStr()));
  return out;
}

HeaderOps headerOps(schema::HeaderOps::Reader o) {
  HeaderOps out;
  if (o.hasRequest()) out.request = headerEdit(o.getRequest());
  if (o.hasResponse()) out.response = headerEdit(o.getResponse());
  return out;
}

bool headerMatches(const HeaderMatcher& m, const h1::Head& req) {
  // A field sent more than once matches when any of its values does (as Envoy's matchers
  // see them joined, for the usual single-valued routing headers the same).
  bool present = false;
  for (const auto& h : req.headers) {
    if (!http::iequals(h.name, m.name)) continue;
    present = true;
    switch (m.kind) {
      case HeaderMatcher::Kind::present:
        return true;
      case HeaderMatcher::Kind::absent:
        return false;
      default:
        if (m.value.matches(h.value)) return true;
    }
  }
  if (m.kind == HeaderMatcher::Kind::absent) return !present;
  // HTTP/2 carries the authority as a pseudo-field: "host" matches it too.
  if (m.name == "host" && !present && !req.host.empty()) {
    if (m.kind == HeaderMatcher::Kind::present) return true;
    return m.value.matches(req.host);
  }
  return false;
}

}  // namespace

bool StringMatcher::matches(std::string_view s) const {
  switch (kind) {
    case Kind::any:
      return true;
    case Kind::exact:
      return s == value;
    case Kind::prefix:
      return s.starts_with(value);
    case Kind::regex:
      return s.size() <= kMaxRegexInput && s.starts_with(regexPrefix) && re &&
             std::regex_match(s.begin(), s.end(), *re);
  }
  return false;
}

std::pair<std::string_view, std::string_view> splitTarget(std::string_view target) {
  auto q = target.find('?');
  if (q == std::string_view::npos) return {target, {}};
  return {target.substr(0, q), target.substr(q + 1)};
}

bool RouteMatch::matches(const h1::Head& req) const {
  auto [path_, query_] = splitTarget(req.path);
  if (!path.matches(path_)) return false;
  if (!authority.matches(req.host)) return false;
  if (!methods.empty() && std::find(methods.begin(), methods.end(), req.method) == methods.end()) return false;
  for (const auto& h : headers) {
    if (!headerMatches(h, req)) return false;
  }
  for (const auto& q : query) {
    auto v = queryParam(query_, q.name);
    switch (q.kind) {
      case HeaderMatcher::Kind::present:
        if (!v) return false;
        break;
      case HeaderMatcher::Kind::absent:
        if (v) return false;
        break;
      default:
        if (!v || !q.value.matches(*v)) return false;
    }
  }
  return true;
}

const RouteRule* RouteTable::match(const h1::Head& req, const RouteMatch** matched) const {
  for (const auto& rule : rules) {
    if (rule.matches.empty()) {
      if (matched) *matched = nullptr;
      return &rule;
    }
    for (const auto& m : rule.matches) {
      if (m.matches(req)) {
        if (matched) *matched = &m;
        return &rule;
      }
    }
  }
  return nullptr;
}

bool RouteRule::Retry::onStatus(int status) const {
  if (on5xx && status >= 500 && status <= 599) return true;
  if (onGatewayError && (status == 502 || status == 503 || status == 504)) return true;
  return std::find(statuses.begin(), statuses.end(), status) != statuses.end();
}

bool RouteRule::Retry::onCause(Cause cause) const {
  // As Envoy's: 5xx and gateway-error cover a try that got no response at all.
  if (on5xx || onGatewayError) return true;
  switch (cause) {
    case Cause::connectFailure:
      return onConnectFailure || onReset;
    case Cause::reset:
    case Cause::timeout:
      return onReset;
  }
  return false;
}

std::chrono::milliseconds RouteRule::Retry::backoff(int n, std::uint64_t draw) const {
  std::int64_t cap = backoffBase.count();
  for (int i = 1; i < n && cap < backoffMax.count(); ++i) cap *= 2;
  cap = std::min<std::int64_t>(cap, backoffMax.count());
  if (cap <= 0) return std::chrono::milliseconds(0);
  return std::chrono::milliseconds(static_cast<std::int64_t>(draw % static_cast<std::uint64_t>(cap + 1)));
}

bool faultApplies(const RouteRule::Fault& f, const h1::Head& req) {
  for (const auto& m : f.match) {
    if (!headerMatches(m, req)) return false;
  }
  return true;
}

bool withinPercent(double percent, std::uint64_t draw) {
  if (percent >= 100) return true;
  if (percent <= 0) return false;
  return static_cast<double>(draw % 1000000) < percent * 10000;
}

namespace {

const RouteDestination* byWeight(const std::vector<RouteDestination>& destinations, std::uint32_t totalWeight,
                                 std::uint64_t draw) {
  if (destinations.empty()) return nullptr;
  if (destinations.size() == 1 || totalWeight == 0) return &destinations.front();
  std::uint64_t point = draw % totalWeight;
  for (const auto& d : destinations) {
    if (point < d.weight) return &d;
    point -= d.weight;
  }
  return &destinations.back();
}

}  // namespace

const RouteDestination* pickDestination(const TcpRouteRule& rule, std::uint64_t draw) {
  return byWeight(rule.destinations, rule.totalWeight, draw);
}

const TcpRouteRule* RouteTable::matchTcp(std::uint16_t port, const std::vector<std::string_view>& sources) const {
  for (const auto& rule : tcp) {
    if (rule.matches.empty()) return &rule;
    for (const auto& m : rule.matches) {
      if (m.port != 0 && m.port != port) continue;
      if (!m.sourceService.empty() && std::find(sources.begin(), sources.end(), m.sourceService) == sources.end())
        continue;
      return &rule;
    }
  }
  return nullptr;
}

const RouteDestination* pickDestination(const RouteRule& rule, std::uint64_t draw) {
  return byWeight(rule.destinations, rule.totalWeight, draw);
}

std::string rewritePath(const RouteRule& rule, const RouteMatch* matched, const h1::Head& req) {
  auto [path, query] = splitTarget(req.path);
  std::string out;
  if (matched && matched->path.kind == StringMatcher::Kind::prefix && path.starts_with(matched->path.value)) {
    auto rest = path.substr(matched->path.value.size());
    out = rule.rewriteUri;
    // "/api" + "/v1" with uri "/": one slash between, never two ("//v1") or none ("v1").
    if (!out.empty() && out.back() == '/' && rest.starts_with('/')) rest.remove_prefix(1);
    out.append(rest);
  } else {
    out = rule.rewriteUri;
  }
  if (out.empty()) out = "/";
  if (!query.empty()) out.append("?").append(query);
  return out;
}

std::string redirectLocation(const RouteRule::Redirect& r, const h1::Head& req) {
  std::string scheme = r.scheme.empty() ? "http" : r.scheme;
  std::string_view authority = r.authority.empty() ? req.host : std::string_view(r.authority);
  std::string out = scheme + "://";
  out.append(authority);
  if (r.uri.empty()) {
    out.append(req.path.empty() ? std::string_view("/") : req.path);
  } else {
    out.append(r.uri);
  }
  return out;
}

namespace {

RouteDestination destination(schema::Destination::Reader d) {
  RouteDestination out;
  out.service = lower(d.getService().cStr());
  out.subset = d.getSubset().cStr();
  out.key = out.subset.empty() ? out.service : out.service + "/" + out.subset;
  return out;
}

// A rule's weighted destinations (http and tcp rules alike); returns their total weight.
std::uint32_t weightedDestinations(capnp::List<schema::WeightedDestination>::Reader list,
                                   std::vector<RouteDestination>& out) {
  std::uint32_t total = 0;
  for (auto d : list) {
    RouteDestination dest = destination(d.getDestination());
    // One destination alone may omit its weight (it takes everything).
    dest.weight = list.size() == 1 ? 100 : d.getWeight();
    if (d.hasHeaders()) dest.headers = headerOps(d.getHeaders());
    total += dest.weight;
    out.push_back(std::move(dest));
  }
  return total;
}

}  // namespace

Result<RouteMatch> compileHttpMatch(schema::HttpMatch::Reader m) {
  RouteMatch match;
  if (m.hasPath()) {
    auto p = stringMatcher(m.getPath());
    if (!p) return p.error();
    match.path = std::move(*p);
  }
  if (m.hasAuthority()) {
    auto a = stringMatcher(m.getAuthority());
    if (!a) return a.error();
    match.authority = std::move(*a);
  }
  for (auto method : m.getMethods()) match.methods.emplace_back(method.cStr());
  auto headers = headerMatchers(m.getHeaders(), true);
  if (!headers) return headers.error();
  match.headers = std::move(*headers);
  auto query = headerMatchers(m.getQueryParams(), false);
  if (!query) return query.error();
  match.query = std::move(*query);
  return match;
}

Result<std::shared_ptr<const RouteTable>> compileRoute(std::string_view name, std::uint64_t version,
                                                        std::string_view body) {
  auto table = std::make_shared<RouteTable>();
  table->document = "Route/" + std::string(name);
  table->version = version;
  auto r = schema::readRecord<schema::Route>(
      body, "Route body", errc::malformed, policy::kMaxBodyWords, [&](schema::Route::Reader route) -> Result<void> {
        for (auto h : route.getHosts()) table->hosts.push_back(lower(h.cStr()));
        std::size_t index = 0;
        for (auto rule : route.getHttp()) {
          RouteRule out;
          out.name = rule.hasName() && rule.getName().size() ? rule.getName().cStr() : "#" + std::to_string(index);
          ++index;
          for (auto m : rule.getMatch()) {
            auto match = compileHttpMatch(m);
            if (!match) return match.error();
            out.matches.push_back(std::move(*match));
          }
          out.totalWeight = weightedDestinations(rule.getRoute(), out.destinations);
          if (rule.hasRedirect()) {
            auto rd = rule.getRedirect();
            RouteRule::Redirect red;
            red.uri = rd.getUri().cStr();
            red.authority = rd.getAuthority().cStr();
            red.scheme = rd.getScheme().cStr();
            red.status = rd.getResponseCode() ? rd.getResponseCode() : 301;
            out.redirect = std::move(red);
          }
          if (rule.hasDirectResponse()) {
            auto dr = rule.getDirectResponse();
            out.direct = RouteRule::Direct{dr.getStatus() ? dr.getStatus() : 200, dr.getBody().cStr()};
          }
          if (rule.hasRewrite()) {
            out.rewriteUri = rule.getRewrite().getUri().cStr();
            out.rewriteAuthority = rule.getRewrite().getAuthority().cStr();
          }
          if (rule.hasHeaders()) out.headers = headerOps(rule.getHeaders());
          out.timeout = std::chrono::milliseconds(rule.getTimeout());
          if (rule.hasMirror() && rule.getMirror().getService().size() > 0) {
            out.mirror = destination(rule.getMirror());
            out.mirrorPercent = rule.getMirrorPercent() > 0 ? rule.getMirrorPercent() : 100;
          }
          if (rule.hasRetries() && rule.getRetries().getAttempts() > 0) {
            auto r = rule.getRetries();
            RouteRule::Retry retry;
            retry.attempts = r.getAttempts();
            retry.perTryTimeout = std::chrono::milliseconds(r.getPerTryTimeout());
            for (auto on : r.getRetryOn()) {
              std::string_view o = on.cStr();
              retry.on5xx = retry.on5xx || o == "5xx";
              retry.onGatewayError = retry.onGatewayError || o == "gateway-error";
              retry.onReset = retry.onReset || o == "reset";
              retry.onConnectFailure = retry.onConnectFailure || o == "connect-failure";
            }
            for (auto code : r.getRetriableStatusCodes()) retry.statuses.push_back(code);
            if (r.getBackoffBase()) retry.backoffBase = std::chrono::milliseconds(r.getBackoffBase());
            retry.backoffMax =
                r.getBackoffMax() ? std::chrono::milliseconds(r.getBackoffMax()) : retry.backoffBase * 10;
            retry.nonIdempotent = r.getRetryNonIdempotent();
            if (r.getBudgetPercent() > 0) retry.budgetPercent = r.getBudgetPercent();
            if (r.getMinRetryConcurrency() > 0) retry.minConcurrency = r.getMinRetryConcurrency();
            out.retry = std::move(retry);
          }
          if (rule.hasFault()) {
            auto f = rule.getFault();
            RouteRule::Fault fault;
            if (f.hasDelay()) {
              fault.delayPercent = f.getDelay().getPercent();
              fault.delay = std::chrono::milliseconds(f.getDelay().getFixedDelay());
            }
            if (f.hasAbort()) {
              fault.abortPercent = f.getAbort().getPercent();
              fault.httpStatus = f.getAbort().getHttpStatus();
              fault.grpcStatus = f.getAbort().getGrpcStatus();
            }
            auto m = headerMatchers(f.getMatch(), true);
            if (!m) return m.error();
            fault.match = std::move(*m);
            out.fault = std::move(fault);
          }
          table->rules.push_back(std::move(out));
        }
        index = 0;
        for (auto rule : route.getTcp()) {
          TcpRouteRule out;
          out.name = "#" + std::to_string(index++);
          for (auto m : rule.getMatch()) out.matches.push_back({m.getPort(), lower(m.getSourceService().cStr())});
          out.totalWeight = weightedDestinations(rule.getRoute(), out.destinations);
          table->tcp.push_back(std::move(out));
        }
        return {};
      });
  if (!r) return r.error();
  return std::shared_ptr<const RouteTable>(std::move(table));
}

}  // namespace mesh::proxy
