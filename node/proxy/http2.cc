#include "node/proxy/http2.h"

#include <nghttp2/nghttp2.h>

#include <algorithm>
#include <cstring>
#include <unordered_map>

#include "common/errc.h"

namespace mesh::proxy::h2 {

const std::string* Head::find(std::string_view name) const {
  for (const auto& f : fields) {
    if (f.name == name) return &f.value;
  }
  return nullptr;
}

bool connectionSpecific(std::string_view n, std::string_view value) {
  if (n == "connection" || n == "keep-alive" || n == "proxy-connection" || n == "transfer-encoding" ||
      n == "upgrade" || n == "host")
    return true;
  if (n == "te") {
    // Only "te: trailers" may cross (gRPC sends it).
    return value != "trailers";
  }
  return false;
}

namespace {

struct StreamState {
  // Received.
  Head head;
  bool finalHead = false;   // a final (non-1xx) head arrived
  bool inTrailers = false;  // the HEADERS being received are trailers
  std::vector<Field> trailers;
  std::size_t trailerBytes = 0;
  // To send.
  std::string out;
  std::size_t outOff = 0;
  bool outEnd = false;       // send() said end: END_STREAM after the queued bytes
  bool hasProvider = false;  // the head was sent with a body to follow
  bool deferred = false;     // the provider said "nothing yet": resume when bytes come
  bool hasTrailers = false;
  std::vector<Field> outTrailers;
};

// Fields whose value is new on every request (request ids, trace context). HPACK would add each
// to the connection's dynamic table, where it is never referenced again and pushes out the
// fields that do repeat (authority, user agent, content type), so those go out as literals
// again; sent never-indexed, the table keeps what repeats.
bool uniquePerRequest(std::string_view name) {
  return name == "x-request-id" || name == "traceparent" || name == "tracestate" || name == "x-b3-traceid" ||
         name == "x-b3-spanid" || name == "x-b3-parentspanid" || name == "b3";
}

nghttp2_nv nv(std::string_view name, std::string_view value) {
  return nghttp2_nv{reinterpret_cast<uint8_t*>(const_cast<char*>(name.data())),
                    reinterpret_cast<uint8_t*>(const_cast<char*>(value.data())), name.size(), value.size(),
                    uniquePerRequest(name) ? uint8_t{NGHTTP2_NV_FLAG_NO_INDEX} : uint8_t{NGHTTP2_NV_FLAG_NONE}};
}

}  // namespace

struct Session::Impl {
  Impl(Role r, Handler& h, const Settings& s) : role(r), handler(h), settings(s) {}
  ~Impl() {
    if (session) nghttp2_session_del(session);
  }
  Role role;
  Handler& handler;
  Settings settings;
  nghttp2_session* session = nullptr;
  std::unordered_map<std::int32_t, StreamState> streams;
  // Closed streams' map nodes, kept for the next streams: with hundreds of streams opening and
  // closing a second, each would otherwise cost an allocation and a free.
  std::vector<std::unordered_map<std::int32_t, StreamState>::node_type> spareNodes;
  std::vector<nghttp2_nv> nva;  // a head's fields as nghttp2 takes them (it copies them)
  std::vector<std::pair<std::int32_t, std::size_t>> sent;  // onSent calls, made after mem_send
  bool fatal = false;
  // The stream looked up last: a head's fields arrive one callback each, all for one stream.
  // (A map's elements stay where they are when it rehashes; only close() moves one out.)
  std::int32_t lastId = 0;
  StreamState* last = nullptr;

  StreamState& open(std::int32_t id) {
    if (auto* st = find(id)) return *st;
    StreamState* st;
    if (spareNodes.empty()) {
      st = &streams[id];
    } else {
      auto node = std::move(spareNodes.back());
      spareNodes.pop_back();
      node.key() = id;  // its state was reset when it closed
      st = &streams.insert(std::move(node)).position->second;
    }
    lastId = id;
    last = st;
    return *st;
  }

  void close(std::unordered_map<std::int32_t, StreamState>::iterator it) {
    if (&it->second == last) last = nullptr;
    auto node = streams.extract(it);
    if (spareNodes.size() < 64) {
      node.mapped() = StreamState{};  // its buffers go now, not when it is reused
      spareNodes.push_back(std::move(node));
    }
  }

  StreamState* find(std::int32_t id) {
    if (last && id == lastId) return last;
    auto it = streams.find(id);
    if (it == streams.end()) return nullptr;
    lastId = id;
    last = &it->second;
    return last;
  }

  static Impl& of(void* user) { return *static_cast<Impl*>(user); }

  static int onBeginHeaders(nghttp2_session*, const nghttp2_frame* frame, void* user) {
    auto& self = of(user);
    if (frame->hd.type != NGHTTP2_HEADERS) return 0;
    // A server learns of streams here; a client opened its own (request()) and ignores others.
    if (self.role == Role::client && !self.find(frame->hd.stream_id)) return 0;
    auto& st = self.open(frame->hd.stream_id);
    // A server's second HEADERS on a stream, or a client's after a final head: trailers.
    st.inTrailers = self.role == Role::server ? frame->headers.cat == NGHTTP2_HCAT_HEADERS : st.finalHead;
    if (!st.inTrailers) {
      st.head = Head{};
      st.head.fields.reserve(12);  // one allocation for a usual head, not one per doubling
    }
    return 0;
  }

  static int onHeader(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name, size_t namelen,
                      const uint8_t* value, size_t valuelen, uint8_t, void* user) {
    auto& self = of(user);
    if (frame->hd.type != NGHTTP2_HEADERS) return 0;
    auto* st = self.find(frame->hd.stream_id);
    if (!st) return 0;
    std::string_view n(reinterpret_cast<const char*>(name), namelen);
    std::string_view v(reinterpret_cast<const char*>(value), valuelen);
    if (st->inTrailers) {
      st->trailerBytes += namelen + valuelen;
      if (st->trailerBytes > self.settings.maxHeadBytes || st->trailers.size() >= self.settings.maxFields) {
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;  // resets the stream
      }
      st->trailers.push_back({std::string(n), std::string(v)});
      return 0;
    }
    auto& h = st->head;
    h.bytes += namelen + valuelen;
    if (h.tooLarge) return 0;
    if (!n.empty() && n[0] == ':') {
      if (n == ":method")
        h.method.assign(v);
      else if (n == ":scheme")
        h.scheme.assign(v);
      else if (n == ":authority")
        h.authority.assign(v);
      else if (n == ":path")
        h.path.assign(v);
      else if (n == ":protocol")
        h.protocol.assign(v);
      else if (n == ":status") {
        int s = 0;
        for (char c : v) s = s * 10 + (c - '0');  // nghttp2 checked: three digits
        h.status = s;
      }
      return 0;
    }
    if (h.bytes > self.settings.maxHeadBytes || h.fields.size() >= self.settings.maxFields) {
      h.tooLarge = true;
      return 0;
    }
    h.fields.push_back({std::string(n), std::string(v)});
    return 0;
  }

  static int onFrameRecv(nghttp2_session*, const nghttp2_frame* frame, void* user) {
    auto& self = of(user);
    const auto id = frame->hd.stream_id;
    const bool end = frame->hd.flags & NGHTTP2_FLAG_END_STREAM;
    switch (frame->hd.type) {
      case NGHTTP2_HEADERS: {
        auto* st = self.find(id);
        if (!st) return 0;
        if (st->inTrailers) {
          auto t = std::move(st->trailers);
          st->trailers.clear();
          self.handler.onTrailers(id, std::move(t));
        } else {
          if (st->head.status == 0 || st->head.status >= 200) st->finalHead = true;
          Head h = std::move(st->head);
          st->head = Head{};
          self.handler.onHead(id, std::move(h), end);
        }
        if (end && self.find(id)) self.handler.onEnd(id);
        break;
      }
      case NGHTTP2_DATA:
        if (end && self.find(id)) self.handler.onEnd(id);
        break;
      default:
        break;
    }
    return 0;
  }

  static int onDataChunk(nghttp2_session* s, uint8_t, int32_t id, const uint8_t* data, size_t len, void* user) {
    auto& self = of(user);
    if (!self.find(id)) {
      // Nobody will hand these on: acknowledge them at once.
      nghttp2_session_consume_connection(s, len);
      return 0;
    }
    self.handler.onData(id, std::string_view(reinterpret_cast<const char*>(data), len));
    return 0;
  }

  static int onStreamClose(nghttp2_session*, int32_t id, uint32_t error, void* user) {
    auto& self = of(user);
    auto it = self.streams.find(id);
    if (it == self.streams.end()) return 0;
    self.close(it);
    // What the stream sent in this drain is reported before its close (never after it).
    for (auto& [sid, n] : self.sent) {
      if (sid == id && n) {
        self.handler.onSent(id, n);
        n = 0;
      }
    }
    self.handler.onClose(id, error);
    return 0;
  }

  static ssize_t readBody(nghttp2_session* s, int32_t id, uint8_t* buf, size_t length, uint32_t* flags,
                          nghttp2_data_source*, void* user) {
    auto& self = of(user);
    auto* st = self.find(id);
    if (!st) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    const std::size_t avail = st->out.size() - st->outOff;
    const std::size_t n = std::min(avail, length);
    if (n > 0) {
      std::memcpy(buf, st->out.data() + st->outOff, n);
      st->outOff += n;
      if (st->outOff == st->out.size()) {
        st->out.clear();
        st->outOff = 0;
      } else if (st->outOff > 64 * 1024 && st->outOff * 2 > st->out.size()) {
        st->out.erase(0, st->outOff);
        st->outOff = 0;
      }
      self.sent.emplace_back(id, n);
    }
    if (st->out.size() == st->outOff && st->outEnd) {
      *flags |= NGHTTP2_DATA_FLAG_EOF;
      if (st->hasTrailers) {
        std::vector<nghttp2_nv> nva;
        nva.reserve(st->outTrailers.size());
        for (const auto& f : st->outTrailers) {
          if (!connectionSpecific(f.name, f.value)) nva.push_back(nv(f.name, f.value));
        }
        if (nghttp2_submit_trailer(s, id, nva.data(), nva.size()) == 0) *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
      }
      return static_cast<ssize_t>(n);
    }
    if (n == 0) {
      st->deferred = true;
      return NGHTTP2_ERR_DEFERRED;
    }
    return static_cast<ssize_t>(n);
  }

  // The body of a stream whose head goes out with a body to follow.
  nghttp2_data_provider provider() {
    nghttp2_data_provider p{};
    p.read_callback = &Impl::readBody;
    return p;
  }
};

Result<std::unique_ptr<Session>> Session::make(Role role, Handler& handler, const Settings& settings) {
  std::unique_ptr<Session> s(new Session());
  s->impl_ = std::make_unique<Impl>(role, handler, settings);
  auto* impl = s->impl_.get();
  nghttp2_session_callbacks* cbs = nullptr;
  if (nghttp2_session_callbacks_new(&cbs) != 0) return Error(errc::unavailable, "nghttp2: out of memory");
  nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, &Impl::onBeginHeaders);
  nghttp2_session_callbacks_set_on_header_callback(cbs, &Impl::onHeader);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, &Impl::onFrameRecv);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, &Impl::onDataChunk);
  nghttp2_session_callbacks_set_on_stream_close_callback(cbs, &Impl::onStreamClose);
  nghttp2_option* opt = nullptr;
  nghttp2_option_new(&opt);
  // Windows open as the next hop takes the bytes (consumed()), not as they arrive.
  nghttp2_option_set_no_auto_window_update(opt, 1);
  nghttp2_option_set_max_reserved_remote_streams(opt, 0);  // no server push
  int rc = role == Role::server ? nghttp2_session_server_new2(&impl->session, cbs, impl, opt)
                                : nghttp2_session_client_new2(&impl->session, cbs, impl, opt);
  nghttp2_option_del(opt);
  nghttp2_session_callbacks_del(cbs);
  if (rc != 0) return Error(errc::unavailable, std::string("nghttp2: ") + nghttp2_strerror(rc));
  std::vector<nghttp2_settings_entry> iv = {
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, settings.maxConcurrentStreams},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, settings.initialWindow},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE,
       static_cast<std::uint32_t>(settings.maxHeadBytes + 32 * settings.maxFields)},
  };
  // ENABLE_PUSH is a client's setting (a server sending it is a protocol error).
  if (role == Role::client) iv.push_back({NGHTTP2_SETTINGS_ENABLE_PUSH, 0});
  if (role == Role::server && settings.enableConnectProtocol) iv.push_back({NGHTTP2_SETTINGS_ENABLE_CONNECT_PROTOCOL, 1});
  rc = nghttp2_submit_settings(impl->session, NGHTTP2_FLAG_NONE, iv.data(), iv.size());
  if (rc == 0 && settings.connectionWindow > 65535) {
    rc = nghttp2_session_set_local_window_size(impl->session, NGHTTP2_FLAG_NONE, 0,
                                               static_cast<int32_t>(settings.connectionWindow));
  }
  if (rc != 0) return Error(errc::unavailable, std::string("nghttp2: ") + nghttp2_strerror(rc));
  return s;
}

Session::~Session() = default;

Result<void> Session::feed(std::string_view bytes) {
  if (impl_->fatal) return Error(errc::malformed, "HTTP/2 session already failed");
  auto n = nghttp2_session_mem_recv(impl_->session, reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  if (n < 0) {
    impl_->fatal = true;
    return Error(errc::malformed, std::string("HTTP/2: ") + nghttp2_strerror(static_cast<int>(n)));
  }
  return {};
}

void Session::drain(std::string& out, std::size_t max) {
  while (out.size() < max) {
    const uint8_t* p = nullptr;
    auto n = nghttp2_session_mem_send(impl_->session, &p);
    if (n < 0) {
      impl_->fatal = true;
      break;
    }
    if (n == 0) break;
    out.append(reinterpret_cast<const char*>(p), static_cast<std::size_t>(n));
  }
  // After framing, not during it: a handler may queue more on this session.
  auto sent = std::move(impl_->sent);
  impl_->sent.clear();
  for (auto [id, bytes] : sent) {
    if (bytes) impl_->handler.onSent(id, bytes);
  }
}

bool Session::alive() const {
  return !impl_->fatal && (nghttp2_session_want_read(impl_->session) || nghttp2_session_want_write(impl_->session));
}

Result<std::int32_t> Session::request(const Head& head, bool endStream, const Extra& extra) {
  auto& nva = impl_->nva;
  nva.clear();
  nva.push_back(nv(":method", head.method));
  // A plain CONNECT has only :method and :authority (RFC 9113 section 8.5).
  const bool tunnel = head.method == "CONNECT" && head.protocol.empty();
  if (!tunnel)
    nva.push_back(nv(":scheme", head.scheme.empty() ? std::string_view("http") : std::string_view(head.scheme)));
  if (!head.authority.empty()) nva.push_back(nv(":authority", head.authority));
  if (!tunnel) nva.push_back(nv(":path", head.path.empty() ? std::string_view("/") : std::string_view(head.path)));
  if (!head.protocol.empty()) nva.push_back(nv(":protocol", head.protocol));
  for (const auto& f : head.fields) {
    if (connectionSpecific(f.name, f.value)) continue;
    bool replaced = false;
    for (const auto& [name, value] : extra) replaced = replaced || name == f.name;
    if (!replaced) nva.push_back(nv(f.name, f.value));
  }
  for (const auto& [name, value] : extra) nva.push_back(nv(name, value));
  nghttp2_data_provider p = impl_->provider();
  auto id = nghttp2_submit_request(impl_->session, nullptr, nva.data(), nva.size(), endStream ? nullptr : &p, nullptr);
  if (id < 0) return Error(errc::unavailable, std::string("HTTP/2: ") + nghttp2_strerror(id));
  auto& st = impl_->open(id);
  st.hasProvider = !endStream;
  return id;
}

Result<void> Session::respond(std::int32_t stream, const Head& head, bool endStream) {
  auto* st = impl_->find(stream);
  if (!st) return Error(errc::not_found, "HTTP/2 stream closed");
  // Three digits by hand: snprintf cost more than the rest of this function (callgrind).
  const int code = std::clamp(head.status, 100, 999);
  const char status[3] = {char('0' + code / 100), char('0' + code / 10 % 10), char('0' + code % 10)};
  auto& nva = impl_->nva;
  nva.clear();
  nva.push_back(nv(":status", std::string_view(status, 3)));
  for (const auto& f : head.fields) {
    if (!connectionSpecific(f.name, f.value)) nva.push_back(nv(f.name, f.value));
  }
  int rc;
  if (head.status < 200) {
    rc = nghttp2_submit_headers(impl_->session, NGHTTP2_FLAG_NONE, stream, nullptr, nva.data(), nva.size(), nullptr);
  } else {
    nghttp2_data_provider p = impl_->provider();
    rc = nghttp2_submit_response(impl_->session, stream, nva.data(), nva.size(), endStream ? nullptr : &p);
    st->hasProvider = !endStream;
  }
  if (rc != 0) return Error(errc::malformed, std::string("HTTP/2: ") + nghttp2_strerror(rc));
  return {};
}

void Session::send(std::int32_t stream, std::string_view data, bool end) {
  auto* st = impl_->find(stream);
  if (!st || !st->hasProvider || st->outEnd) return;
  st->out.append(data);
  st->outEnd = end;
  if (st->deferred) {
    st->deferred = false;
    nghttp2_session_resume_data(impl_->session, stream);
  }
}

void Session::trailers(std::int32_t stream, const std::vector<Field>& fields) {
  auto* st = impl_->find(stream);
  if (!st || !st->hasProvider || st->outEnd) return;
  st->hasTrailers = !fields.empty();
  st->outTrailers = fields;
  send(stream, {}, true);
}

void Session::reset(std::int32_t stream, std::uint32_t error) {
  if (impl_->find(stream)) nghttp2_submit_rst_stream(impl_->session, NGHTTP2_FLAG_NONE, stream, error);
}

void Session::consumed(std::int32_t stream, std::size_t bytes) {
  if (bytes == 0) return;
  nghttp2_session_consume_connection(impl_->session, bytes);
  if (impl_->find(stream)) nghttp2_session_consume_stream(impl_->session, stream, bytes);
}

std::size_t Session::queued(std::int32_t stream) const {
  auto it = impl_->streams.find(stream);
  return it == impl_->streams.end() ? 0 : it->second.out.size() - it->second.outOff;
}

void Session::goAway(std::uint32_t error) {
  nghttp2_submit_goaway(impl_->session, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(impl_->session),
                        error, nullptr, 0);
}

std::size_t Session::openStreams() const { return impl_->streams.size(); }

bool Session::acceptsStreams() const {
  return !impl_->fatal && nghttp2_session_check_request_allowed(impl_->session) != 0;
}

}  // namespace mesh::proxy::h2
