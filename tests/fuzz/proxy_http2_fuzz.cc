// libFuzzer target: the proxy's HTTP/2 sessions (issue 7) fed arbitrary bytes, as a server
// (after the client preface, the way an h2c client or a peer proxy talks to it) and as a client
// (as a server's answer to two requests), in pieces of varying size. The handlers act as the
// proxy does (answer heads with a body and trailers, consume data, reset some streams, queue
// more from inside callbacks). Checks invariants, not just "no crash": a head over the limits is
// flagged and keeps at most the allowed fields, a stream reports nothing after its close and is
// closed at most once, and only streams the peer may open appear.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <string>
#include <string_view>

#include "node/proxy/http2.h"

namespace {

using namespace mesh::proxy::h2;

struct Checker : Handler {
  Session* s = nullptr;
  bool server = true;
  Settings settings;
  std::map<std::int32_t, int> state;  // 1 open, 2 closed
  int events = 0;

  void seen(std::int32_t id) {
    if (state[id] == 2) std::abort();  // an event after the close
    state[id] = 1;
    // A server only hears of odd (client-opened) streams.
    if (server && id % 2 == 0) std::abort();
  }
  void onHead(std::int32_t id, Head&& h, bool end) override {
    seen(id);
    if (h.fields.size() > settings.maxFields) std::abort();
    if (!h.tooLarge && h.bytes > settings.maxHeadBytes) std::abort();
    if (!server) return;
    Head r;
    r.status = h.tooLarge ? 431 : 200;
    r.fields = {{"content-type", "text/plain"}};
    if (s->respond(id, r, false)) {
      s->send(id, std::string(static_cast<std::size_t>(++events % 3) * 7000, 'b'), false);
      if (end)
        s->trailers(id, {{"grpc-status", "0"}});
      else if (events % 5 == 0)
        s->reset(id, kCancel);
    }
  }
  void onData(std::int32_t id, std::string_view d) override {
    seen(id);
    s->consumed(id, d.size());
  }
  void onTrailers(std::int32_t id, std::vector<Field>&& t) override {
    seen(id);
    if (t.size() > settings.maxFields) std::abort();
  }
  void onEnd(std::int32_t id) override { seen(id); }
  void onClose(std::int32_t id, std::uint32_t) override {
    if (state[id] == 2) std::abort();  // closed twice
    state[id] = 2;
  }
  void onSent(std::int32_t id, std::size_t) override {
    if (state[id] == 2) std::abort();
  }
};

void feedInPieces(Session& s, std::string_view bytes, std::uint8_t seed) {
  std::string out;
  std::size_t piece = 1 + seed % 61;
  while (!bytes.empty()) {
    auto n = std::min(piece, bytes.size());
    if (!s.feed(bytes.substr(0, n))) break;
    bytes.remove_prefix(n);
    out.clear();
    s.drain(out, 64 * 1024);
    piece = 1 + (piece * 7 + seed) % 97;
  }
  out.clear();
  s.drain(out);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::uint8_t seed = data[0];
  std::string_view input(reinterpret_cast<const char*>(data + 1), size - 1);
  Settings settings;
  settings.maxFields = 16;
  settings.maxHeadBytes = 2048;
  {
    Checker c;
    c.settings = settings;
    auto s = Session::make(Session::Role::server, c, settings);
    if (!s) std::abort();
    c.s = s->get();
    std::string bytes(kPreface);
    bytes.append(input);
    feedInPieces(**s, bytes, seed);
  }
  {
    Checker c;
    c.server = false;
    c.settings = settings;
    auto s = Session::make(Session::Role::client, c, settings);
    if (!s) std::abort();
    c.s = s->get();
    Head req;
    req.method = "POST";
    req.authority = "reviews";
    req.path = "/";
    auto a = (*s)->request(req, false);
    req.method = "GET";
    auto b = (*s)->request(req, true);
    if (!a || !b) std::abort();
    (*s)->send(*a, "body", true);
    std::string out;
    (*s)->drain(out);
    feedInPieces(**s, input, seed);
  }
  return 0;
}
