// libFuzzer target: every gossip decoder a peer can reach. The input's first byte picks the
// codec settings (compression, a keyring, a label); the rest is one UDP packet, which goes
// through the whole receive path (label, decryption, CRC, then dispatch with nested compound
// and compress), and is also fed to the stream reader byte range by byte range and to each
// message decoder directly. Invariants beyond "no crash": no empty message comes out of
// openPacket, and a stream message never exceeds its cap.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "gossip/keyring.h"
#include "gossip/lzw.h"
#include "gossip/packet.h"
#include "gossip/wire.h"

using namespace mesh::gossip;

namespace {

void dispatch(std::string_view buf, int depth) {
  if (buf.empty() || depth > 4) return;
  const auto type = static_cast<MessageType>(static_cast<std::uint8_t>(buf[0]));
  const std::string_view body = buf.substr(1);
  switch (type) {
    case MessageType::compound: {
      auto parts = decodeCompound(body);
      if (parts) {
        for (auto p : parts->parts) dispatch(p, depth + 1);
      }
      break;
    }
    case MessageType::compress: {
      auto plain = decompressMessage(body, 64 * 1024);
      if (plain) {
        if (plain->empty() || plain->size() > 64 * 1024) std::abort();
        dispatch(*plain, depth + 1);
      }
      break;
    }
    case MessageType::ping: (void)decodePing(body); break;
    case MessageType::indirectPing: (void)decodeIndirectPing(body); break;
    case MessageType::ack: (void)decodeAck(body); break;
    case MessageType::nack: (void)decodeNack(body); break;
    case MessageType::suspect: (void)decodeSuspect(body); break;
    case MessageType::alive: (void)decodeAlive(body); break;
    case MessageType::dead: (void)decodeDead(body); break;
    case MessageType::err: (void)decodeErr(body); break;
    case MessageType::pushPull: (void)decodePushPull(body, 4096); break;
    case MessageType::user: (void)decodeUserStream(body); break;
    default: break;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  static const Keyring ring = Keyring::create({std::string(16, 'k'), std::string(32, 'K')}).value();
  const std::uint8_t mode = data[0];
  std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);

  CodecSettings s;
  s.compress = mode & 1;
  if (mode & 2) s.keyring = &ring;
  s.verifyIncoming = !(mode & 4);
  if (mode & 8) s.label = "fuzz";
  s.skipInboundLabelCheck = mode & 16;
  s.maxDecompressed = 1 << 20;

  auto msg = openPacket(in, s);
  if (msg) {
    if (msg->empty()) std::abort();
    dispatch(*msg, 0);
  }
  dispatch(in, 0);

  // The same bytes as a stream, arriving in pieces of (mode >> 5) + 1 bytes.
  StreamReader reader(s, 1 << 20);
  const std::size_t step = (mode >> 5) + 1;
  for (std::size_t off = 0; off < in.size(); off += step) {
    auto r = reader.feed(in.substr(off, step));
    if (!r) break;
    if (*r) {
      if ((*r)->empty() || (*r)->size() > (1u << 20) + 64) std::abort();
      dispatch(**r, 0);
      break;
    }
  }
  (void)streamMessageLength(in, 1 << 20);
  auto plain = lzw::decompress(in, 1 << 16);
  if (plain && plain->size() > (1u << 16)) std::abort();
  return 0;
}
