// libFuzzer target: serf's message decoders (what arrives in memberlist user messages and user
// state from any peer), filters and tags. Anything decoded is re-encoded and decoded again,
// which must succeed: what we accept we can also write.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "gossip/serf/messages.h"

using namespace mesh::gossip::serf;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  std::string_view in(reinterpret_cast<const char*>(data), size);
  const std::string_view body = in.substr(1);
  std::string again;
  switch (static_cast<MessageType>(static_cast<std::uint8_t>(in[0]))) {
    case MessageType::join:
      if (auto m = decodeJoin(body)) {
        encode(again, *m);
        if (!decodeJoin(std::string_view(again).substr(1))) std::abort();
      }
      break;
    case MessageType::leave:
      if (auto m = decodeLeave(body)) {
        encode(again, *m);
        if (!decodeLeave(std::string_view(again).substr(1))) std::abort();
      }
      break;
    case MessageType::pushPull:
      if (auto m = decodePushPull(body)) {
        encode(again, *m);
        if (!decodePushPull(std::string_view(again).substr(1))) std::abort();
      }
      break;
    case MessageType::userEvent:
      if (auto m = decodeUserEvent(body)) {
        encode(again, *m);
        if (!decodeUserEvent(std::string_view(again).substr(1))) std::abort();
      }
      break;
    case MessageType::query:
      if (auto m = decodeQuery(body)) {
        for (const auto& f : m->filters) (void)decodeFilter(f);
        encode(again, *m);
        if (!decodeQuery(std::string_view(again).substr(1))) std::abort();
      }
      break;
    case MessageType::queryResponse:
    case MessageType::conflictResponse:
      if (auto m = decodeQueryResponse(body)) {
        encode(again, MessageType::queryResponse, *m);
        if (!decodeQueryResponse(std::string_view(again).substr(1))) std::abort();
      }
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
