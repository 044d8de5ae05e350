// libFuzzer target: everything a node or meshcli decodes of signed policy from outside. The
// first byte picks the decoder: a signed record (pulled from a peer, posted to the admin API),
// a signed file (JSON), a document body of each kind (checked and rendered), or policy YAML.
// Anything decoded re-encodes to something that decodes to the same.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "node/policy/bundle.h"
#include "node/policy/document.h"

using namespace mesh::policy;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 4) {
    case 0:
      if (auto s = decodeSigned(in)) {
        auto again = decodeSigned(encodeSigned(*s));
        if (!again || encodeSigned(*again) != encodeSigned(*s)) std::abort();
      }
      break;
    case 1:
      if (auto s = signedFromJson(in)) {
        auto again = signedFromJson(signedToJson(*s));
        if (!again || encodeSigned(*again) != encodeSigned(*s)) std::abort();
      }
      break;
    case 2: {
      const Kind kind = kAllKinds[(size > 1 ? data[1] : 0) % std::size(kAllKinds)];
      (void)validateBody(kind, "fuzz", in);
      (void)renderYaml(kind, "fuzz", 1, in);
      (void)referencesOf(kind, in);
      break;
    }
    case 3: {
      auto r = parseDocuments(in, "fuzz.yaml");
      for (const auto& d : r.documents) {
        if (!validateBody(d.kind, d.name, d.body).empty()) std::abort();  // what parses is valid
        auto y = renderYaml(d.kind, d.name, d.version, d.body);
        if (!y) std::abort();
        auto again = parseDocuments(*y, "again.yaml");
        if (again.documents.size() != 1 || again.documents[0].body != d.body) std::abort();
      }
      break;
    }
  }
  return 0;
}
