// libFuzzer target: serf's message decoders (what arrives in memberlist user messages and user
// state from any peer), filters and tags. Anything decoded is re-encoded and decoded again,
// which must succeed: what we accept we can also write.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "gossip/serf/messages.h"

using namespace mesh::gossip::serf;

namespace {

// What we accept we must also be able to write: decode, re-encode, decode again.
template <typename Decode, typename Encode>
void roundTrip(std::string_view body, Decode decode, Encode encodeIt) {
  auto m = decode(body);
  if (!m) return;
  std::string again;
  encodeIt(again, *m);
  if (!decode(std::string_view(again).substr(1))) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  std::string_view in(reinterpret_cast<const char*>(data), size);
  const std::string_view body = in.substr(1);
  switch (static_cast<MessageType>(static_cast<std::uint8_t>(in[0]))) {
    case MessageType::join: roundTrip(body, decodeJoin, [](auto& out, const auto& m) { encode(out, m); }); break;
    case MessageType::leave: roundTrip(body, decodeLeave, [](auto& out, const auto& m) { encode(out, m); }); break;
    case MessageType::pushPull: roundTrip(body, decodePushPull, [](auto& out, const auto& m) { encode(out, m); }); break;
    case MessageType::userEvent:
      roundTrip(body, decodeUserEvent, [](auto& out, const auto& m) { encode(out, m); });
      break;
    case MessageType::query:
      roundTrip(body, decodeQuery, [](auto& out, const Query& m) {
        for (const auto& f : m.filters) (void)decodeFilter(f);
        encode(out, m);
      });
      break;
    case MessageType::queryResponse:
    case MessageType::conflictResponse:
      roundTrip(body, decodeQueryResponse,
                [](auto& out, const auto& m) { encode(out, MessageType::queryResponse, m); });
      break;
    case MessageType::keyRequest: (void)decodeKeyRequest(body); break;
    case MessageType::keyResponse: (void)decodeKeyResponse(body); break;
    case MessageType::relay:
      if (auto r = decodeRelay(body)) {
        if (r->second.empty()) std::abort();
      }
      break;
    default: break;
  }
  (void)decodeTags(in);
  (void)decodeFilter(in);
  return 0;
}
