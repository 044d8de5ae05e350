#include "node/policy/document.h"

#include <capnp/dynamic.h>
#include <capnp/message.h>
#include <capnp/schema.h>
#include <capnp/serialize.h>
#include <kj/exception.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "common/duration.h"
#include "common/errc.h"
#include "node/policy/validate.h"
#include "schemas/policy.capnp.h"
#include "schemas/record_io.h"

namespace mesh::policy {

namespace {

constexpr std::uint64_t kDurationAnnotation = 0xc2d990444e6614dcull;
constexpr std::uint64_t kMapOfAnnotation = 0xab46876d5cabe0a8ull;

capnp::StructSchema schemaOf(Kind k) {
  switch (k) {
    case Kind::route: return capnp::Schema::from<schema::Route>();
    case Kind::destinationPolicy: return capnp::Schema::from<schema::DestinationPolicy>();
    case Kind::rateLimit: return capnp::Schema::from<schema::RateLimit>();
    case Kind::externalService: return capnp::Schema::from<schema::ExternalService>();
    case Kind::accessPolicy: return capnp::Schema::from<schema::AccessPolicy>();
    case Kind::gateway: return capnp::Schema::from<schema::Gateway>();
    case Kind::meshConfig: return capnp::Schema::from<schema::MeshConfig>();
  }
  return capnp::Schema::from<schema::Route>();
}

bool isDuration(capnp::StructSchema::Field f) {
  for (auto a : f.getProto().getAnnotations()) {
    if (a.getId() == kDurationAnnotation) return true;
  }
  return false;
}

std::optional<std::string> mapKeyOf(capnp::StructSchema::Field f) {
  for (auto a : f.getProto().getAnnotations()) {
    if (a.getId() == kMapOfAnnotation) return std::string(a.getValue().getText().cStr());
  }
  return std::nullopt;
}

bool isUnionMember(capnp::StructSchema::Field f) {
  return f.getProto().getDiscriminantValue() != capnp::schema::Field::NO_DISCRIMINANT;
}

// Fields a YAML document may set: everything but Void (a union's "unset").
bool settable(capnp::StructSchema::Field f) { return f.getType().which() != capnp::schema::Type::VOID; }

std::string fieldName(capnp::StructSchema::Field f) { return f.getProto().getName().cStr(); }

std::string knownFields(capnp::StructSchema s) {
  std::string out;
  for (auto f : s.getFields()) {
    if (!settable(f)) continue;
    if (!out.empty()) out += ", ";
    out += fieldName(f);
  }
  return out;
}

// ROUND_ROBIN, round-robin, roundRobin and RoundRobin all name the enumerant roundRobin.
std::string normalizeEnum(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '_' || c == '-') continue;
    out += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return out;
}

std::string upperSnake(std::string_view camel) {
  std::string out;
  for (char c : camel) {
    if (std::isupper(static_cast<unsigned char>(c))) out += '_';
    out += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  }
  return out;
}

// Durations as parsed are far below a year; anything larger (a body from elsewhere) is shown in
// plain milliseconds rather than overflowing a nanosecond count.
std::string formatMs(std::uint64_t ms) {
  if (ms > std::uint64_t{1} << 40) return std::to_string(ms) + "ms";
  return formatDuration(std::chrono::milliseconds(ms));
}

// Reading YAML into a Cap'n Proto builder, driven by the schema; every problem is collected with
// the path and line of the node it is about.
struct Walker {
  std::string source;
  std::vector<Problem>* problems;
  std::map<std::string, int>* lines;

  int lineOffset = 0;  // lines of the file before this document
  int lineOf(const YAML::Node& n) const { return n.IsDefined() && n.Mark().line >= 0 ? n.Mark().line + 1 + lineOffset : 0; }

  void problem(const YAML::Node& n, const std::string& path, std::string message) {
    problems->push_back(Problem{source, lineOf(n), path, std::move(message)});
  }

  static std::string join(const std::string& path, const std::string& field) {
    return path.empty() ? field : path + "." + field;
  }

  bool scalar(const YAML::Node& n, const std::string& path, std::string& out, const std::string& what) {
    if (!n.IsScalar()) {
      problem(n, path, "expected " + what + (n.IsMap() ? ", found a map" : n.IsSequence() ? ", found a list" : ""));
      return false;
    }
    out = n.Scalar();
    return true;
  }

  template <typename T>
  bool integer(const YAML::Node& n, const std::string& path, T& out) {
    std::string s;
    if (!scalar(n, path, s, "a whole number")) return false;
    T v{};
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec == std::errc::result_out_of_range) {
      problem(n, path, "'" + s + "' is out of range (" + std::to_string(std::numeric_limits<T>::min()) + " to " +
                           std::to_string(std::numeric_limits<T>::max()) + ")");
      return false;
    }
    if (ec != std::errc() || p != s.data() + s.size() || s.empty()) {
      problem(n, path, "'" + s + "' is not a whole number");
      return false;
    }
    out = v;
    return true;
  }

  void setValue(capnp::DynamicStruct::Builder b, capnp::StructSchema::Field f, const YAML::Node& n,
                const std::string& path) {
    using W = capnp::schema::Type;
    auto t = f.getType();
    switch (t.which()) {
      case W::BOOL: {
        std::string s;
        if (!scalar(n, path, s, "true or false")) return;
        if (s == "true" || s == "True" || s == "TRUE") b.set(f, true);
        else if (s == "false" || s == "False" || s == "FALSE") b.set(f, false);
        else problem(n, path, "'" + s + "' is not true or false");
        return;
      }
      case W::UINT64: {
        if (isDuration(f)) {
          std::string s;
          if (!scalar(n, path, s, "a duration")) return;
          auto d = parseDuration(s);
          if (!d) {
            problem(n, path, "'" + s + "' is not a duration (such as 250ms, 5s, 1m)");
            return;
          }
          auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(*d);
          if (*d > Duration::zero() && ms.count() == 0) {
            problem(n, path, "'" + s + "' is below the resolution of 1ms");
            return;
          }
          b.set(f, static_cast<std::uint64_t>(ms.count()));
          return;
        }
        std::uint64_t v;
        if (integer(n, path, v)) b.set(f, v);
        return;
      }
      case W::UINT32: { std::uint32_t v; if (integer(n, path, v)) b.set(f, v); return; }
      case W::UINT16: { std::uint16_t v; if (integer(n, path, v)) b.set(f, v); return; }
      case W::UINT8: { std::uint8_t v; if (integer(n, path, v)) b.set(f, v); return; }
      case W::INT64: { std::int64_t v; if (integer(n, path, v)) b.set(f, v); return; }
      case W::INT32: { std::int32_t v; if (integer(n, path, v)) b.set(f, v); return; }
      case W::INT16: { std::int16_t v; if (integer(n, path, v)) b.set(f, v); return; }
      case W::INT8: { std::int8_t v; if (integer(n, path, v)) b.set(f, v); return; }
      case W::FLOAT32:
      case W::FLOAT64: {
        std::string s;
        if (!scalar(n, path, s, "a number")) return;
        double v = 0;
        auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
        if (ec != std::errc() || p != s.data() + s.size() || !std::isfinite(v)) {
          problem(n, path, "'" + s + "' is not a number");
          return;
        }
        b.set(f, v);
        return;
      }
      case W::TEXT: {
        std::string s;
        if (!scalar(n, path, s, "a string")) return;
        b.set(f, capnp::Text::Reader(s.c_str(), s.size()));
        return;
      }
      case W::ENUM: {
        std::string s;
        if (!scalar(n, path, s, "one of " + enumNames(t.asEnum()))) return;
        auto e = t.asEnum();
        for (auto en : e.getEnumerants()) {
          if (normalizeEnum(en.getProto().getName().cStr()) == normalizeEnum(s)) {
            b.set(f, capnp::DynamicEnum(en));
            return;
          }
        }
        problem(n, path, "'" + s + "' is not one of " + enumNames(e));
        return;
      }
      case W::STRUCT: {
        if (!n.IsMap()) {
          problem(n, path, n.IsNull() ? "expected a map, found nothing" : "expected a map");
          return;
        }
        fillStruct(b.init(f).as<capnp::DynamicStruct>(), n, path);
        return;
      }
      case W::LIST: {
        fillList(b, f, n, path);
        return;
      }
      default: problem(n, path, "this field cannot be written in YAML"); return;
    }
  }

  static std::string enumNames(capnp::EnumSchema e) {
    std::string out;
    for (auto en : e.getEnumerants()) {
      if (!out.empty()) out += ", ";
      out += upperSnake(en.getProto().getName().cStr());
    }
    return out;
  }

  void fillList(capnp::DynamicStruct::Builder b, capnp::StructSchema::Field f, const YAML::Node& n,
                const std::string& path) {
    using W = capnp::schema::Type;
    auto elem = f.getType().asList().getElementType();
    auto mapKey = mapKeyOf(f);
    if (mapKey) {
      if (!n.IsMap()) {
        problem(n, path, "expected a map of " + *mapKey + " to value");
        return;
      }
      auto es = elem.asStruct();
      auto keyField = es.findFieldByName(*mapKey);
      KJ_IF_MAYBE(kf, keyField) {
        auto list = b.init(f, static_cast<unsigned>(n.size())).as<capnp::DynamicList>();
        unsigned i = 0;
        std::set<std::string> seen;
        for (auto it = n.begin(); it != n.end(); ++it, ++i) {
          std::string k;
          std::string itemPath = path + "[" + std::to_string(i) + "]";
          if (!scalar(it->first, path, k, "a " + *mapKey)) continue;
          itemPath = path + "." + k;
          (*lines)[itemPath] = lineOf(it->first);
          if (!seen.insert(k).second) problem(it->first, itemPath, "'" + k + "' is given twice");
          auto item = list[i].as<capnp::DynamicStruct>();
          item.set(*kf, capnp::Text::Reader(k.c_str(), k.size()));
          if (it->second.IsScalar()) {
            auto vf = es.findFieldByName("value");
            KJ_IF_MAYBE(v, vf) {
              setValue(item, *v, it->second, itemPath);
            } else {
              problem(it->second, itemPath, "expected a map (" + knownFields(es) + ")");
            }
          } else if (it->second.IsMap()) {
            fillStruct(item, it->second, itemPath, *mapKey);
          } else if (!it->second.IsNull()) {
            problem(it->second, itemPath, "expected a value or a map");
          } else {
            problem(it->second, itemPath, "expected a value, found nothing");
          }
        }
      }
      return;
    }
    if (!n.IsSequence()) {
      problem(n, path, n.IsNull() ? "expected a list, found nothing" : "expected a list");
      return;
    }
    auto list = b.init(f, static_cast<unsigned>(n.size())).as<capnp::DynamicList>();
    for (unsigned i = 0; i < n.size(); ++i) {
      const YAML::Node item = n[i];
      std::string itemPath = path + "[" + std::to_string(i) + "]";
      (*lines)[itemPath] = lineOf(item);
      switch (elem.which()) {
        case W::STRUCT:
          if (!item.IsMap()) {
            problem(item, itemPath, "expected a map");
            continue;
          }
          fillStruct(list[i].as<capnp::DynamicStruct>(), item, itemPath);
          break;
        case W::TEXT: {
          std::string s;
          if (scalar(item, itemPath, s, "a string")) list.set(i, capnp::Text::Reader(s.c_str(), s.size()));
          break;
        }
        case W::UINT16: {
          std::uint16_t v;
          if (integer(item, itemPath, v)) list.set(i, v);
          break;
        }
        case W::UINT32: {
          std::uint32_t v;
          if (integer(item, itemPath, v)) list.set(i, v);
          break;
        }
        default: problem(item, itemPath, "this list cannot be written in YAML"); break;
      }
    }
  }

  // skipField: the mapOf key, already set from the map key.
  void fillStruct(capnp::DynamicStruct::Builder b, const YAML::Node& n, const std::string& path,
                  const std::string& skipField = {}) {
    auto s = b.getSchema();
    std::set<std::string> seen;
    std::optional<std::string> unionSet;
    for (auto it = n.begin(); it != n.end(); ++it) {
      std::string key;
      if (!it->first.IsScalar()) {
        problem(it->first, path, "a key must be a string");
        continue;
      }
      key = it->first.Scalar();
      std::string fpath = join(path, key);
      (*lines)[fpath] = lineOf(it->first);
      if (!seen.insert(key).second) {
        problem(it->first, fpath, "given twice");
        continue;
      }
      auto mf = s.findFieldByName(key);
      bool known = false;
      KJ_IF_MAYBE(f, mf) {
        known = settable(*f) && key != skipField;
        if (known) {
          if (isUnionMember(*f)) {
            if (unionSet) {
              problem(it->first, fpath, "only one of " + unionMembers(s) + " may be given (found " + *unionSet + " and " + key + ")");
              continue;
            }
            unionSet = key;
          }
          if (it->second.IsNull() && f->getType().which() != capnp::schema::Type::STRUCT) {
            problem(it->second, fpath, "no value given");
            continue;
          }
          setValue(b, *f, it->second, fpath);
        }
      }
      if (!known) {
        std::string k = knownFields(s);
        problem(it->first, fpath, "unknown field '" + key + "'" + (k.empty() ? "" : " (known: " + k + ")"));
      }
    }
  }

  static std::string unionMembers(capnp::StructSchema s) {
    std::string out;
    for (auto f : s.getUnionFields()) {
      if (!settable(f)) continue;
      if (!out.empty()) out += ", ";
      out += fieldName(f);
    }
    return out;
  }
};

// ---- rendering ---------------------------------------------------------------------------------

nlohmann::ordered_json toJson(capnp::DynamicStruct::Reader r, const std::string& skipField = {});

nlohmann::ordered_json valueJson(capnp::StructSchema::Field f, capnp::DynamicValue::Reader v) {
  using W = capnp::schema::Type;
  auto t = f.getType();
  switch (t.which()) {
    case W::BOOL: return v.as<bool>();
    case W::UINT64:
      if (isDuration(f)) return formatMs(v.as<std::uint64_t>());
      return v.as<std::uint64_t>();
    case W::UINT32:
    case W::UINT16:
    case W::UINT8: return v.as<std::uint64_t>();
    case W::INT64:
    case W::INT32:
    case W::INT16:
    case W::INT8: return v.as<std::int64_t>();
    case W::FLOAT32:
    case W::FLOAT64: return v.as<double>();
    case W::TEXT: return std::string(v.as<capnp::Text>().cStr());
    case W::ENUM: {
      KJ_IF_MAYBE(en, v.as<capnp::DynamicEnum>().getEnumerant()) {
        return upperSnake(en->getProto().getName().cStr());
      }
      return v.as<capnp::DynamicEnum>().getRaw();
    }
    case W::STRUCT: return toJson(v.as<capnp::DynamicStruct>());
    case W::LIST: {
      auto list = v.as<capnp::DynamicList>();
      auto elem = t.asList().getElementType();
      if (auto key = mapKeyOf(f)) {
        nlohmann::ordered_json out = nlohmann::ordered_json::object();
        for (auto item : list) {
          auto st = item.as<capnp::DynamicStruct>();
          std::string k = st.get(*key).as<capnp::Text>().cStr();
          auto rest = toJson(st, *key);
          // {name: x, value: y} is written "x: y".
          if (rest.size() == 1 && rest.contains("value") && rest["value"].is_string()) out[k] = rest["value"];
          else if (rest.empty() && st.getSchema().findFieldByName("value") != nullptr) out[k] = "";
          else out[k] = rest;
        }
        return out;
      }
      nlohmann::ordered_json out = nlohmann::ordered_json::array();
      for (auto item : list) {
        switch (elem.which()) {
          case W::STRUCT: out.push_back(toJson(item.as<capnp::DynamicStruct>())); break;
          case W::TEXT: out.push_back(std::string(item.as<capnp::Text>().cStr())); break;
          default: out.push_back(item.as<std::uint64_t>()); break;
        }
      }
      return out;
    }
    default: return nullptr;
  }
}

nlohmann::ordered_json toJson(capnp::DynamicStruct::Reader r, const std::string& skipField) {
  nlohmann::ordered_json out = nlohmann::ordered_json::object();
  auto s = r.getSchema();
  for (auto f : s.getNonUnionFields()) {
    if (!settable(f) || fieldName(f) == skipField) continue;
    if (!r.has(f, capnp::HasMode::NON_DEFAULT)) continue;
    out[fieldName(f)] = valueJson(f, r.get(f));
  }
  KJ_IF_MAYBE(active, r.which()) {
    if (settable(*active)) out[fieldName(*active)] = valueJson(*active, r.get(*active));
  }
  return out;
}

void emitYaml(YAML::Emitter& e, const nlohmann::ordered_json& j) {
  if (j.is_object()) {
    e << YAML::BeginMap;
    for (auto it = j.begin(); it != j.end(); ++it) {
      e << YAML::Key << it.key() << YAML::Value;
      emitYaml(e, it.value());
    }
    e << YAML::EndMap;
  } else if (j.is_array()) {
    e << YAML::BeginSeq;
    for (const auto& x : j) emitYaml(e, x);
    e << YAML::EndSeq;
  } else if (j.is_string()) {
    const auto& s = j.get_ref<const std::string&>();
    // A string that YAML would read as something else keeps its quotes.
    static const std::set<std::string> special{"", "true", "false", "yes", "no", "on", "off", "null", "~",
                                               "True", "False", "Yes", "No", "Null", "TRUE", "FALSE"};
    double d;
    bool numeric = std::from_chars(s.data(), s.data() + s.size(), d).ptr == s.data() + s.size() && !s.empty();
    if (special.count(s) || numeric) e << YAML::DoubleQuoted << s;
    else e << s;
  } else if (j.is_boolean()) {
    e << (j.get<bool>() ? "true" : "false");
  } else if (j.is_number_unsigned()) {
    e << j.get<std::uint64_t>();
  } else if (j.is_number_integer()) {
    e << j.get<std::int64_t>();
  } else if (j.is_number_float()) {
    e << j.get<double>();
  } else {
    e << YAML::Null;
  }
}

Result<nlohmann::ordered_json> documentJson(Kind kind, std::string_view name, std::uint64_t version, std::string_view body) {
  return schema::readRecord<capnp::AnyStruct>(
      body, "policy body", errc::malformed, kMaxBodyWords, [&](capnp::AnyStruct::Reader any) -> Result<nlohmann::ordered_json> {
        auto r = any.as<capnp::DynamicStruct>(schemaOf(kind));
        nlohmann::ordered_json meta{{"name", std::string(name)}};
        if (version) meta["version"] = version;
        nlohmann::ordered_json doc{{"apiVersion", "mesh/v1"}, {"kind", kindName(kind)}, {"metadata", meta}};
        doc["spec"] = toJson(r);
        return doc;
      });
}

}  // namespace

// ---- public ----------------------------------------------------------------------------------------

const char* kindName(Kind k) {
  switch (k) {
    case Kind::route: return "Route";
    case Kind::destinationPolicy: return "DestinationPolicy";
    case Kind::rateLimit: return "RateLimit";
    case Kind::externalService: return "ExternalService";
    case Kind::accessPolicy: return "AccessPolicy";
    case Kind::gateway: return "Gateway";
    case Kind::meshConfig: return "MeshConfig";
  }
  return "?";
}

std::optional<Kind> parseKind(std::string_view s) {
  for (Kind k : kAllKinds) {
    std::string_view n = kindName(k);
    if (n.size() == s.size() && std::equal(n.begin(), n.end(), s.begin(), [](char a, char b) {
          return std::tolower(static_cast<unsigned char>(a)) == std::tolower(static_cast<unsigned char>(b));
        })) {
      return k;
    }
  }
  return std::nullopt;
}

bool validName(std::string_view s) {
  if (s.empty() || s.size() > 253) return false;
  auto alnum = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
  if (!alnum(s.front()) || !alnum(s.back())) return false;
  return std::all_of(s.begin(), s.end(), [&](char c) { return alnum(c) || c == '-' || c == '.'; });
}

std::string Problem::str() const {
  std::string out = source;
  if (!source.empty() && line > 0) out += ":" + std::to_string(line);
  if (!out.empty()) out += ": ";
  if (!path.empty()) out += path + ": ";
  return out + message;
}

std::string Document::key() const { return std::string(kindName(kind)) + "/" + name; }

namespace {

// The documents of a YAML stream, each with the line it starts on. Split here at the "---" and
// "..." markers (which YAML only allows at the start of a line, outside any content) and each
// loaded on its own: yaml-cpp 0.7's LoadAll never returns on some malformed streams (a lone
// ",": jbeder/yaml-cpp#1040, fixed upstream after 0.7).
struct RawDocument {
  std::string text;
  int firstLine = 0;  // 0-based line of the file where text starts
};

std::vector<RawDocument> splitDocuments(std::string_view text) {
  std::vector<RawDocument> out(1);
  int line = 0;
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t nl = text.find('\n', pos);
    std::string_view l = text.substr(pos, nl == std::string_view::npos ? std::string_view::npos : nl - pos);
    auto marker = [&](std::string_view m) {
      return l.substr(0, 3) == m && (l.size() == 3 || l[3] == ' ' || l[3] == '\t' || l[3] == '\r');
    };
    if (marker("---")) {
      out.push_back(RawDocument{std::string(l.substr(3)) + "\n", line});
    } else if (marker("...")) {
      out.push_back(RawDocument{"", line + 1});
    } else {
      out.back().text.append(l);
      out.back().text += '\n';
    }
    ++line;
    if (nl == std::string_view::npos) break;
    pos = nl + 1;
  }
  return out;
}

}  // namespace

ParseResult parseDocuments(std::string_view text, const std::string& source) {
  ParseResult out;
  std::vector<std::pair<YAML::Node, int>> docs;
  for (auto& raw : splitDocuments(text)) {
    try {
      docs.emplace_back(YAML::Load(raw.text), raw.firstLine);
    } catch (const YAML::Exception& e) {
      out.problems.push_back(Problem{source, e.mark.line >= 0 ? e.mark.line + 1 + raw.firstLine : 0, "", "not YAML: " + e.msg});
      return out;
    }
  }
  std::map<std::string, int> lines;
  for (std::size_t d = 0; d < docs.size(); ++d) {
    const YAML::Node& n = docs[d].first;
    if (n.IsNull()) continue;
    const std::size_t before = out.problems.size();
    Walker w{source, &out.problems, &lines};
    w.lineOffset = docs[d].second;
    const std::string docLabel = docs.size() > 1 ? "document " + std::to_string(d + 1) : "";
    auto docProblem = [&](const YAML::Node& at, const std::string& path, std::string msg) {
      w.problem(at, path, std::move(msg));
    };
    if (!n.IsMap()) {
      docProblem(n, docLabel, "a policy document is a map with kind, metadata and spec");
      continue;
    }
    Document doc;
    doc.source = source;
    doc.line = w.lineOf(n);
    for (auto it = n.begin(); it != n.end(); ++it) {
      std::string k = it->first.IsScalar() ? it->first.Scalar() : "";
      if (k != "apiVersion" && k != "kind" && k != "metadata" && k != "spec") {
        docProblem(it->first, k, "unknown field '" + k + "' (known: apiVersion, kind, metadata, spec)");
      }
    }
    if (n["apiVersion"] && !(n["apiVersion"].IsScalar() && n["apiVersion"].Scalar() == "mesh/v1")) {
      docProblem(n["apiVersion"], "apiVersion", "must be mesh/v1");
    }
    std::optional<Kind> kind;
    if (!n["kind"]) {
      docProblem(n, "kind", "missing (one of Route, DestinationPolicy, RateLimit, ExternalService, AccessPolicy, Gateway, MeshConfig)");
    } else if (!n["kind"].IsScalar() || !(kind = parseKind(n["kind"].Scalar()))) {
      docProblem(n["kind"], "kind",
                 "'" + (n["kind"].IsScalar() ? n["kind"].Scalar() : std::string("?")) +
                     "' is not a policy kind (one of Route, DestinationPolicy, RateLimit, ExternalService, AccessPolicy, Gateway, MeshConfig)");
    }
    const YAML::Node meta = n["metadata"];
    if (!meta || !meta.IsMap()) {
      docProblem(meta ? meta : n, "metadata", "missing: a map with name (and version, optional)");
    } else {
      for (auto it = meta.begin(); it != meta.end(); ++it) {
        std::string k = it->first.IsScalar() ? it->first.Scalar() : "";
        if (k != "name" && k != "version") docProblem(it->first, "metadata." + k, "unknown field '" + k + "' (known: name, version)");
      }
      if (!meta["name"] || !meta["name"].IsScalar()) {
        docProblem(meta, "metadata.name", "missing");
      } else if (!validName(meta["name"].Scalar())) {
        docProblem(meta["name"], "metadata.name",
                   "'" + meta["name"].Scalar() + "' is not a valid name (lower-case letters, digits, '-' and '.', starting and ending with a letter or digit)");
      } else {
        doc.name = meta["name"].Scalar();
      }
      if (meta["version"]) {
        std::uint64_t v = 0;
        if (w.integer(meta["version"], "metadata.version", v)) {
          if (v == 0) docProblem(meta["version"], "metadata.version", "versions start at 1");
          doc.version = v;
        }
      }
    }
    const YAML::Node spec = n["spec"];
    if (!spec || spec.IsNull()) {
      if (kind != Kind::meshConfig) docProblem(n, "spec", "missing");
    } else if (!spec.IsMap()) {
      docProblem(spec, "spec", "expected a map");
    }
    if (!kind) continue;
    doc.kind = *kind;
    // The spec is read even when metadata has problems, so that one run reports them all.
    const std::size_t beforeSpec = out.problems.size();
    lines.clear();
    try {
      capnp::MallocMessageBuilder mb;
      auto root = mb.initRoot<capnp::DynamicStruct>(schemaOf(*kind));
      if (spec && spec.IsMap()) w.fillStruct(root, spec, "spec");
      if (out.problems.size() != beforeSpec) continue;
      // Canonical layout: the same spec has the same bytes (and digest) whatever the YAML order.
      capnp::MallocMessageBuilder canon;
      canon.setRoot(root.asReader());
      doc.body = schema::toBytes(canon);
    } catch (const kj::Exception& e) {
      docProblem(spec, "spec", std::string("does not encode: ") + e.getDescription().cStr());
      continue;
    }
    for (auto& p : validateBody(doc.kind, doc.name.empty() ? "unnamed" : doc.name, doc.body)) {
      // The line of the deepest path that has one.
      std::string path = p.path;
      int line = 0;
      while (true) {
        auto it = lines.find(path);
        if (it != lines.end()) {
          line = it->second;
          break;
        }
        auto cut = path.find_last_of(".[");
        if (cut == std::string::npos) break;
        path.resize(cut);
      }
      p.source = source;
      p.line = line ? line : doc.line;
      out.problems.push_back(std::move(p));
    }
    if (out.problems.size() != before) continue;
    out.documents.push_back(std::move(doc));
  }
  return out;
}

Result<std::string> renderJson(Kind kind, std::string_view name, std::uint64_t version, std::string_view body) {
  auto j = documentJson(kind, name, version, body);
  if (!j) return j.error();
  return j->dump(2) + "\n";
}

Result<std::string> renderYaml(Kind kind, std::string_view name, std::uint64_t version, std::string_view body) {
  auto j = documentJson(kind, name, version, body);
  if (!j) return j.error();
  YAML::Emitter e;
  emitYaml(e, *j);
  return std::string(e.c_str()) + "\n";
}

}  // namespace mesh::policy
