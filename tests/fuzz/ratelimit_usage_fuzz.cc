// libFuzzer target: the mesh-wide rate limit's usage records (pulled from any meshd peer). What
// decodes re-encodes to something that decodes the same, and every share computed from it is a
// share.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "node/proxy/ratelimit_mesh.h"

using namespace mesh::proxy;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  auto r = decodeUsage(in);
  if (!r) return 0;
  auto again = decodeUsage(encodeUsage(*r));
  if (!again || again->node != r->node || again->version != r->version || again->demand.size() != r->demand.size())
    std::abort();
  std::vector<double> others;
  for (const auto& [id, rate] : r->demand) others.push_back(rate);
  for (const auto& [id, rate] : r->demand) {
    double s = meshShare(rate, others, 100);
    if (!(s > 0 && s <= 1)) std::abort();
  }
  return 0;
}
