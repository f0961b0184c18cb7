// The HTTP/2 codec over nghttp2 (see h2_session.hpp). nghttp2 does the framing, HPACK, stream
// states, flow-control accounting and RFC 9113 §8 message checks; this file adds what a proxy
// that holds credentials needs on top: bridged flow control, bounded buffers, flood budgets, a
// few header checks nghttp2 leaves to the application, and events instead of callbacks.
#include <http/h2_session.hpp>

#include <common/value_sink.hpp>

#include <nghttp2/nghttp2.h>
#include <openssl/crypto.h>

#include <malloc.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

namespace airlock::http::h2 {

const char* describe(H2Error e) noexcept {
  switch (e) {
    case H2Error::kNone: return "no error";
    case H2Error::kProtocol: return "HTTP/2 protocol error";
    case H2Error::kFlood: return "HTTP/2 flood (a frame budget was exceeded)";
    case H2Error::kCompression: return "HPACK compression error";
    case H2Error::kBadHeader: return "invalid HTTP/2 header field";
    case H2Error::kNoStream: return "no such HTTP/2 stream in a state that allows this";
    case H2Error::kBufferFull: return "HTTP/2 buffer limit reached";
    case H2Error::kClosed: return "HTTP/2 session closed";
    case H2Error::kNoMemory: return "out of memory";
    case H2Error::kInternal: return "HTTP/2 internal error";
  }
  return "HTTP/2 error";
}

struct Session::Stream {
  std::int32_t id = 0;
  // Receiving.
  Headers block;                 // header block being received
  std::size_t block_size = 0;    // its RFC 9113 §6.5.2 size
  bool block_trailers = false;   // the block is a trailer section
  bool head_done = false;        // a final (non-1xx) head was received
  bool rejected = false;         // reset by us for a malformed head: its DATA is dropped
  std::size_t unconsumed = 0;    // DATA delivered, not yet consumed()
  // Sending.
  std::string out;               // queued DATA, from out_pos (grown through a ValueSink)
  std::size_t out_pos = 0;
  bool wipe = false;             // client role: the queue holds request DATA with values
  bool responded = false;        // a final response head was submitted (server)
  bool has_provider = false;     // HEADERS went without END_STREAM: DATA may follow
  bool out_end = false;          // end the stream after the queue
  bool deferred = false;         // the data provider is parked (NGHTTP2_ERR_DEFERRED)
  bool has_trailers = false;
  Headers trailers;
  bool closed = false;           // nghttp2 closed it; kept until its DATA is consumed

  std::size_t queued() const noexcept { return out.size() - out_pos; }
  // The queue is let go: bytes that may have held values are wiped first.
  void drop_queue() noexcept {
    if (wipe && !out.empty()) OPENSSL_cleanse(out.data(), out.size());
    out.clear();
    out_pos = 0;
  }
  ~Stream() {
    if (wipe) OPENSSL_cleanse(out.data(), out.capacity());
  }
};

namespace {

void* mem_malloc(std::size_t size, void*) { return std::malloc(size); }
void* mem_calloc(std::size_t n, std::size_t size, void*) { return std::calloc(n, size); }
void mem_free(void* p, void*) {
  if (p == nullptr) return;
  OPENSSL_cleanse(p, malloc_usable_size(p));
  std::free(p);
}
void* mem_realloc(void* p, std::size_t size, void* ud) {
  if (p == nullptr) return std::malloc(size);
  if (size == 0) {
    mem_free(p, ud);
    return nullptr;
  }
  const std::size_t old = malloc_usable_size(p);
  if (size <= old) return p;
  void* q = std::malloc(size);
  if (q == nullptr) return nullptr;
  std::memcpy(q, p, old);
  mem_free(p, ud);  // never moved by realloc with the old bytes left behind
  return q;
}
nghttp2_mem kWipingMem = {nullptr, mem_malloc, mem_free, mem_calloc, mem_realloc};

bool is_pseudo(std::string_view name) { return !name.empty() && name[0] == ':'; }

// nghttp2_check_header_name and nghttp2_check_header_value decide byte by byte; their verdict on
// each single byte, asked once, makes the same check one table lookup per byte (every header of
// every stream is checked before it is sent).
struct ByteTables {
  bool name[256];
  bool value[256];
  ByteTables() {
    for (int b = 0; b < 256; ++b) {
      const auto c = static_cast<std::uint8_t>(b);
      name[b] = nghttp2_check_header_name(&c, 1) != 0;
      value[b] = nghttp2_check_header_value(&c, 1) != 0;
    }
  }
};
const ByteTables kBytes;

bool valid_header(const Header& h) {
  std::string_view name = h.name;
  if (is_pseudo(name)) name.remove_prefix(1);
  if (name.empty()) return false;
  for (const char c : name)
    if (!kBytes.name[static_cast<std::uint8_t>(c)]) return false;
  for (const char c : h.value)
    if (!kBytes.value[static_cast<std::uint8_t>(c)]) return false;
  return true;
}

// nghttp2 copies name/value when a frame is submitted, so the vector may point into `headers`.
// One vector per thread, reused (it holds pointers only, valid until the next call).
std::vector<nghttp2_nv>& to_nv(const Headers& headers) {
  thread_local std::vector<nghttp2_nv> nva;
  nva.clear();
  nva.reserve(headers.size());
  for (const Header& h : headers) {
    nghttp2_nv nv{};
    nv.name = reinterpret_cast<std::uint8_t*>(const_cast<char*>(h.name.data()));
    nv.namelen = h.name.size();
    nv.value = reinterpret_cast<std::uint8_t*>(const_cast<char*>(h.value.data()));
    nv.valuelen = h.value.size();
    nv.flags = h.never_index ? NGHTTP2_NV_FLAG_NO_INDEX : NGHTTP2_NV_FLAG_NONE;
    nva.push_back(nv);
  }
  return nva;
}

H2Error check_headers(const Headers& headers) {
  for (const Header& h : headers)
    if (!valid_header(h)) return H2Error::kBadHeader;
  return H2Error::kNone;
}

H2Error from_nghttp2(int rv) {
  switch (rv) {
    case 0: return H2Error::kNone;
    case NGHTTP2_ERR_NOMEM: return H2Error::kNoMemory;
    case NGHTTP2_ERR_FLOODED:
    case NGHTTP2_ERR_TOO_MANY_CONTINUATIONS: return H2Error::kFlood;
    case NGHTTP2_ERR_HEADER_COMP: return H2Error::kCompression;
    case NGHTTP2_ERR_STREAM_CLOSED:
    case NGHTTP2_ERR_STREAM_CLOSING:
    case NGHTTP2_ERR_STREAM_SHUT_WR:
    case NGHTTP2_ERR_INVALID_STREAM_ID:
    case NGHTTP2_ERR_INVALID_STREAM_STATE:
    case NGHTTP2_ERR_DATA_EXIST: return H2Error::kNoStream;
    case NGHTTP2_ERR_STREAM_ID_NOT_AVAILABLE:
    case NGHTTP2_ERR_START_STREAM_NOT_ALLOWED:
    case NGHTTP2_ERR_SESSION_CLOSING: return H2Error::kClosed;
    case NGHTTP2_ERR_CALLBACK_FAILURE:
    case NGHTTP2_ERR_INVALID_ARGUMENT:
    case NGHTTP2_ERR_INVALID_STATE:
    case NGHTTP2_ERR_PROTO: return H2Error::kInternal;
    default: return H2Error::kProtocol;
  }
}

// RFC 9113 §8.3.1: a server SHOULD treat a request whose Host differs from :authority as
// malformed; for http(s) :authority carries no userinfo. The gates compare the authority with
// the SNI, so an ambiguous one is refused here rather than interpreted.
bool request_head_ok(const Headers& headers) {
  const std::string* authority = nullptr;
  const std::string* host = nullptr;
  for (const Header& h : headers) {
    if (h.name == ":authority") authority = &h.value;
    else if (h.name == "host") host = &h.value;
  }
  if (authority && authority->find('@') != std::string::npos) return false;
  if (host && host->find('@') != std::string::npos) return false;
  if (authority && host && *authority != *host) return false;
  return true;
}

bool informational(const Headers& headers) {
  for (const Header& h : headers)
    if (h.name == ":status") return h.value.size() == 3 && h.value[0] == '1';
  return false;
}

}  // namespace

// The nghttp2 callbacks; user_data is the Session.
struct Session::Callbacks {
  static Session& self(void* user_data) { return *static_cast<Session*>(user_data); }

  static void emit(Session& s, Event e) {
    if (s.events_) s.events_->push_back(std::move(e));
  }

  // Server push is refused whatever the SETTINGS state (nghttp2 would only cancel a promise
  // that arrives before our ENABLE_PUSH=0 is acknowledged): a PUSH_PROMISE ends the session.
  static int on_begin_frame(nghttp2_session*, const nghttp2_frame_hd* hd, void* ud) {
    if (hd->type == NGHTTP2_PUSH_PROMISE) return self(ud).fail(H2Error::kProtocol, ErrorCode::kProtocolError);
    return 0;
  }

  static int on_begin_headers(nghttp2_session*, const nghttp2_frame* frame, void* ud) {
    Session& s = self(ud);
    if (frame->hd.type != NGHTTP2_HEADERS) return 0;
    Stream& st = s.ensure(frame->hd.stream_id);
    s.header_bytes_ -= st.block_size;
    st.block.clear();
    st.block.reserve(16);  // a typical head without regrowing the vector per field
    st.block_size = 0;
    st.block_trailers = frame->headers.cat == NGHTTP2_HCAT_HEADERS && st.head_done;
    return 0;
  }

  static int on_header(nghttp2_session*, const nghttp2_frame* frame, const std::uint8_t* name, std::size_t namelen,
                       const std::uint8_t* value, std::size_t valuelen, std::uint8_t flags, void* ud) {
    Session& s = self(ud);
    if (frame->hd.type != NGHTTP2_HEADERS) return 0;
    Stream* st = s.find(frame->hd.stream_id);
    if (!st) return 0;
    const std::size_t size = namelen + valuelen + 32;
    if (st->block_size + size > s.limits_.max_header_list_size) {
      // nghttp2 resets the stream and stops calling back for this block.
      s.header_bytes_ -= st->block_size;
      st->block.clear();
      st->block_size = 0;
      st->rejected = true;
      return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    st->block_size += size;
    s.header_bytes_ += size;
    st->block.push_back(Header{std::string(reinterpret_cast<const char*>(name), namelen),
                               std::string(reinterpret_cast<const char*>(value), valuelen),
                               (flags & NGHTTP2_NV_FLAG_NO_INDEX) != 0});
    return 0;
  }

  static int on_frame_recv(nghttp2_session* session, const nghttp2_frame* frame, void* ud) {
    Session& s = self(ud);
    const std::int32_t id = frame->hd.stream_id;
    const bool end_stream = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
    switch (frame->hd.type) {
      case NGHTTP2_HEADERS: {
        Stream* st = s.find(id);
        if (!st) return 0;
        s.control_frames_ = s.control_frames_ > s.limits_.control_frames_per_stream
                                ? s.control_frames_ - s.limits_.control_frames_per_stream
                                : 0;
        Event e;
        e.stream = id;
        e.end_stream = end_stream;
        e.headers = std::move(st->block);
        s.header_bytes_ -= st->block_size;
        st->block.clear();
        st->block_size = 0;
        if (st->rejected) return 0;
        if (st->block_trailers) {
          e.kind = Event::Kind::kTrailers;
        } else {
          e.kind = Event::Kind::kHeaders;
          if (s.role_ == Role::kServer && !request_head_ok(e.headers)) {
            st->rejected = true;
            nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, id, NGHTTP2_PROTOCOL_ERROR);
            return 0;
          }
          e.informational = s.role_ == Role::kClient && informational(e.headers);
          if (!e.informational) st->head_done = true;
        }
        emit(s, std::move(e));
        return 0;
      }
      case NGHTTP2_DATA: {
        Stream* st = s.find(id);
        if (frame->hd.length == 0 && !end_stream && !s.count_control()) return NGHTTP2_ERR_CALLBACK_FAILURE;
        if (!st || st->rejected || !end_stream) return 0;
        if (s.events_ && !s.events_->empty()) {
          Event& last = s.events_->back();
          if (last.kind == Event::Kind::kData && last.stream == id && !last.end_stream) {
            last.end_stream = true;
            return 0;
          }
        }
        Event e;
        e.kind = Event::Kind::kData;
        e.stream = id;
        e.end_stream = true;
        emit(s, std::move(e));
        return 0;
      }
      case NGHTTP2_RST_STREAM: {
        Stream* st = s.find(id);
        if (!st || st->closed) return 0;
        Event e;
        e.kind = Event::Kind::kReset;
        e.stream = id;
        e.code = frame->rst_stream.error_code;
        emit(s, std::move(e));
        // Rapid reset: a reset stream costs a token, a completed one gives it back.
        if (s.reset_tokens_ == 0 || --s.reset_tokens_ == 0) return s.fail(H2Error::kFlood, ErrorCode::kEnhanceYourCalm);
        return 0;
      }
      case NGHTTP2_GOAWAY: {
        s.peer_goaway_ = true;
        Event e;
        e.kind = Event::Kind::kGoaway;
        e.code = frame->goaway.error_code;
        e.last_stream = frame->goaway.last_stream_id;
        emit(s, std::move(e));
        return 0;
      }
      case NGHTTP2_SETTINGS:
      case NGHTTP2_PING:
      case NGHTTP2_PRIORITY:
        return s.count_control() ? 0 : NGHTTP2_ERR_CALLBACK_FAILURE;
      default: return 0;
    }
  }

  static int on_data_chunk(nghttp2_session* session, std::uint8_t, std::int32_t id, const std::uint8_t* data,
                           std::size_t len, void* ud) {
    Session& s = self(ud);
    Stream* st = s.find(id);
    if (!st || st->rejected || st->closed) {
      // Nobody will take these bytes: give the window back now.
      nghttp2_session_consume(session, id, len);
      return 0;
    }
    st->unconsumed += len;
    s.received_unconsumed_ += len;
    if (s.events_ && !s.events_->empty()) {
      Event& last = s.events_->back();
      if (last.kind == Event::Kind::kData && last.stream == id && !last.end_stream) {
        last.data.append(reinterpret_cast<const char*>(data), len);
        return 0;
      }
    }
    Event e;
    e.kind = Event::Kind::kData;
    e.stream = id;
    e.data.assign(reinterpret_cast<const char*>(data), len);
    emit(s, std::move(e));
    return 0;
  }

  static int on_stream_close(nghttp2_session*, std::int32_t id, std::uint32_t code, void* ud) {
    Session& s = self(ud);
    Stream* st = s.find(id);
    if (!st) return 0;
    Event e;
    e.kind = Event::Kind::kClosed;
    e.stream = id;
    e.code = code;
    emit(s, std::move(e));
    if (code == NGHTTP2_NO_ERROR && s.reset_tokens_ < s.limits_.rapid_reset_budget) ++s.reset_tokens_;
    s.queued_total_ -= st->queued();
    s.header_bytes_ -= st->block_size;
    st->drop_queue();
    st->block.clear();
    st->block_size = 0;
    st->closed = true;
    if (st->unconsumed == 0) s.erase(id);
    return 0;
  }

  // nghttp2 answers a connection error it detects (bad frame, flow control, HPACK) with a
  // GOAWAY it queues itself; the reason becomes ours when that GOAWAY leaves.
  static int on_frame_send(nghttp2_session*, const nghttp2_frame* frame, void* ud) {
    Session& s = self(ud);
    if (frame->hd.type != NGHTTP2_GOAWAY) return 0;
    s.local_goaway_ = true;
    const std::uint32_t code = frame->goaway.error_code;
    if (code != NGHTTP2_NO_ERROR && !s.requested_goaway_ && s.error_ == H2Error::kNone)
      s.error_ = code == NGHTTP2_COMPRESSION_ERROR   ? H2Error::kCompression
                 : code == NGHTTP2_ENHANCE_YOUR_CALM ? H2Error::kFlood
                                                     : H2Error::kProtocol;
    return 0;
  }

  static ssize_t read_data(nghttp2_session* session, std::int32_t id, std::uint8_t* buf, std::size_t length,
                           std::uint32_t* data_flags, nghttp2_data_source*, void* ud) {
    Session& s = self(ud);
    Stream* st = s.find(id);
    if (!st || st->closed) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    const std::size_t n = std::min(length, st->queued());
    if (n == 0 && !st->out_end) {
      st->deferred = true;
      return NGHTTP2_ERR_DEFERRED;
    }
    std::memcpy(buf, st->out.data() + st->out_pos, n);
    st->out_pos += n;
    s.queued_total_ -= n;
    if (st->out_pos == st->out.size()) {
      st->drop_queue();
    } else if (st->out_pos > (64u << 10) && st->out_pos > st->out.size() / 2) {
      const std::size_t size = st->out.size();
      st->out.erase(0, st->out_pos);
      // The tail moved down; its old place past the new size still holds a copy.
      if (st->wipe) OPENSSL_cleanse(st->out.data() + st->out.size(), size - st->out.size());
      st->out_pos = 0;
    }
    if (st->queued() == 0 && st->out_end) {
      *data_flags |= NGHTTP2_DATA_FLAG_EOF;
      if (st->has_trailers) {
        *data_flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
        std::vector<nghttp2_nv>& nva = to_nv(st->trailers);
        if (nghttp2_submit_trailer(session, id, nva.data(), nva.size()) != 0)
          return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        st->trailers.clear();
        st->has_trailers = false;
      }
    }
    return static_cast<ssize_t>(n);
  }
};

Session::Session(Role role, SessionLimits limits) : role_(role), limits_(limits) {
  reset_tokens_ = limits_.rapid_reset_budget;
  nghttp2_session_callbacks* cb = nullptr;
  nghttp2_option* opt = nullptr;
  if (nghttp2_session_callbacks_new(&cb) != 0 || nghttp2_option_new(&opt) != 0) {
    if (cb) nghttp2_session_callbacks_del(cb);
    error_ = H2Error::kNoMemory;
    return;
  }
  nghttp2_session_callbacks_set_on_begin_frame_callback(cb, Callbacks::on_begin_frame);
  nghttp2_session_callbacks_set_on_begin_headers_callback(cb, Callbacks::on_begin_headers);
  nghttp2_session_callbacks_set_on_header_callback(cb, Callbacks::on_header);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cb, Callbacks::on_frame_recv);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, Callbacks::on_data_chunk);
  nghttp2_session_callbacks_set_on_stream_close_callback(cb, Callbacks::on_stream_close);
  nghttp2_session_callbacks_set_on_frame_send_callback(cb, Callbacks::on_frame_send);

  nghttp2_option_set_no_auto_window_update(opt, 1);
  nghttp2_option_set_max_continuations(opt, limits_.max_continuations);
  nghttp2_option_set_max_deflate_dynamic_table_size(opt, limits_.header_table_size);
  nghttp2_option_set_no_closed_streams(opt, 1);
  nghttp2_option_set_peer_max_concurrent_streams(opt, 100);
  // nghttp2's own reset limiter reads a clock; ours (rapid_reset_budget) counts, so the codec
  // stays deterministic (same bytes, same events: what the fuzzer and the tests rely on).
  nghttp2_option_set_stream_reset_rate_limit(opt, UINT64_MAX, UINT64_MAX);

  // The client session (toward the upstream) copies substituted header values and DATA into its
  // own memory (header lists, frame buffers): that memory is wiped when nghttp2 frees it.
  const int rv = role_ == Role::kServer ? nghttp2_session_server_new2(&session_, cb, this, opt)
                                        : nghttp2_session_client_new3(&session_, cb, this, opt, &kWipingMem);
  nghttp2_session_callbacks_del(cb);
  nghttp2_option_del(opt);
  if (rv != 0) {
    session_ = nullptr;
    error_ = H2Error::kNoMemory;
    return;
  }
  std::vector<nghttp2_settings_entry> settings = {
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, limits_.max_concurrent_streams},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, limits_.initial_window},
      {NGHTTP2_SETTINGS_MAX_FRAME_SIZE, std::clamp<std::uint32_t>(limits_.max_frame_size, 16384, 16777215)},
      {NGHTTP2_SETTINGS_HEADER_TABLE_SIZE, limits_.header_table_size},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, limits_.max_header_list_size},
  };
  if (role_ == Role::kClient) settings.push_back({NGHTTP2_SETTINGS_ENABLE_PUSH, 0});
  if (nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, settings.data(), settings.size()) != 0 ||
      nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, 0,
                                            static_cast<std::int32_t>(std::min<std::uint32_t>(
                                                limits_.connection_window, 0x7fffffff))) != 0)
    error_ = H2Error::kNoMemory;
}

Session::~Session() {
  if (session_) nghttp2_session_del(session_);
}

namespace {
template <typename Streams>
auto stream_slot(Streams& streams, std::int32_t id) {
  return std::lower_bound(streams.begin(), streams.end(), id, [](const auto& s, std::int32_t v) { return s.first < v; });
}
}  // namespace

Session::Stream* Session::find(std::int32_t stream) const {
  const auto it = stream_slot(streams_, stream);
  return it != streams_.end() && it->first == stream ? it->second.get() : nullptr;
}

Session::Stream& Session::ensure(std::int32_t stream) {
  auto it = stream_slot(streams_, stream);
  if (it == streams_.end() || it->first != stream) {
    auto st = std::make_unique<Stream>();
    st->id = stream;
    st->wipe = role_ == Role::kClient;
    it = streams_.emplace(it, stream, std::move(st));
  }
  return *it->second;
}

void Session::erase(std::int32_t stream) {
  const auto it = stream_slot(streams_, stream);
  if (it != streams_.end() && it->first == stream) streams_.erase(it);
}

int Session::fail(H2Error e, ErrorCode code) {
  if (error_ == H2Error::kNone) error_ = e;
  requested_goaway_ = true;
  if (session_) nghttp2_session_terminate_session(session_, static_cast<std::uint32_t>(code));
  return NGHTTP2_ERR_CALLBACK_FAILURE;  // from a callback: stop reading this input now
}

bool Session::count_control() {
  ++control_frames_;
  if (control_frames_ > limits_.control_frame_budget) {
    fail(H2Error::kFlood, ErrorCode::kEnhanceYourCalm);
    return false;
  }
  return true;
}

H2Error Session::receive(std::string_view bytes, std::vector<Event>& events) {
  take_events(events);
  if (!session_) return error_;
  if (error_ != H2Error::kNone) return error_;
  events_ = &events;
  const ssize_t rv =
      nghttp2_session_mem_recv(session_, reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size());
  events_ = nullptr;
  if (rv < 0) {
    H2Error e = from_nghttp2(static_cast<int>(rv));
    if (rv == NGHTTP2_ERR_BAD_CLIENT_MAGIC || e == H2Error::kInternal) e = H2Error::kProtocol;
    if (error_ == H2Error::kNone) error_ = e;
  }
  return error_;
}

H2Error Session::pending_output(std::string& out) {
  if (!session_) return error_;
  // Streams that close as their last frame leaves (our END_STREAM or RST_STREAM) report it on
  // the next take_events() or receive().
  events_ = &later_;
  for (;;) {
    const std::uint8_t* data = nullptr;
    const ssize_t n = nghttp2_session_mem_send(session_, &data);
    if (n < 0) {
      if (error_ == H2Error::kNone) error_ = from_nghttp2(static_cast<int>(n));
      break;
    }
    if (n == 0) break;
    ValueSink(out).append(reinterpret_cast<const char*>(data), static_cast<std::size_t>(n));
  }
  events_ = nullptr;
  return error_;
}

void Session::take_events(std::vector<Event>& events) {
  for (Event& e : later_) events.push_back(std::move(e));
  later_.clear();
}

StreamResult Session::submit_request(const Headers& headers, bool end_stream) {
  if (role_ != Role::kClient || !session_) return {0, H2Error::kInternal};
  if (error_ != H2Error::kNone || peer_goaway_ || local_goaway_) return {0, H2Error::kClosed};
  if (H2Error e = check_headers(headers); e != H2Error::kNone) return {0, e};
  std::vector<nghttp2_nv>& nva = to_nv(headers);
  nghttp2_data_provider prd{};
  prd.read_callback = Callbacks::read_data;
  const std::int32_t id = nghttp2_submit_request(session_, nullptr, nva.data(), nva.size(), end_stream ? nullptr : &prd, nullptr);
  if (id < 0) return {0, from_nghttp2(id)};
  Stream& st = ensure(id);
  st.has_provider = !end_stream;
  return {id, H2Error::kNone};
}

H2Error Session::submit_response(std::int32_t stream, const Headers& headers, bool end_stream) {
  if (role_ != Role::kServer || !session_) return H2Error::kInternal;
  if (error_ != H2Error::kNone) return H2Error::kClosed;
  Stream* st = find(stream);
  if (!st || st->closed || st->responded || st->rejected) return H2Error::kNoStream;
  if (H2Error e = check_headers(headers); e != H2Error::kNone) return e;
  std::vector<nghttp2_nv>& nva = to_nv(headers);
  int rv;
  if (informational(headers)) {
    rv = nghttp2_submit_headers(session_, NGHTTP2_FLAG_NONE, stream, nullptr, nva.data(), nva.size(), nullptr);
    return rv < 0 ? from_nghttp2(rv) : H2Error::kNone;
  }
  nghttp2_data_provider prd{};
  prd.read_callback = Callbacks::read_data;
  rv = nghttp2_submit_response(session_, stream, nva.data(), nva.size(), end_stream ? nullptr : &prd);
  if (rv != 0) return from_nghttp2(rv);
  st->responded = true;
  st->has_provider = !end_stream;
  return H2Error::kNone;
}

H2Error Session::submit_data(std::int32_t stream, std::string_view bytes, bool end_stream) {
  if (error_ != H2Error::kNone) return H2Error::kClosed;
  Stream* st = find(stream);
  if (!st || st->closed || !st->has_provider || st->out_end) return H2Error::kNoStream;
  if (st->queued() + bytes.size() > limits_.max_stream_buffer ||
      held_bytes() + bytes.size() > limits_.max_session_buffer)
    return H2Error::kBufferFull;
  ValueSink(st->out).append(bytes);
  queued_total_ += bytes.size();
  st->out_end = end_stream;
  if (st->deferred) {
    st->deferred = false;
    nghttp2_session_resume_data(session_, stream);
  }
  return H2Error::kNone;
}

H2Error Session::submit_trailers(std::int32_t stream, const Headers& headers) {
  if (error_ != H2Error::kNone) return H2Error::kClosed;
  Stream* st = find(stream);
  if (!st || st->closed || !st->has_provider || st->out_end) return H2Error::kNoStream;
  if (H2Error e = check_headers(headers); e != H2Error::kNone) return e;
  for (const Header& h : headers)
    if (is_pseudo(h.name)) return H2Error::kBadHeader;
  st->trailers = headers;
  st->has_trailers = true;
  st->out_end = true;
  if (st->deferred) {
    st->deferred = false;
    nghttp2_session_resume_data(session_, stream);
  }
  return H2Error::kNone;
}

H2Error Session::reset(std::int32_t stream, ErrorCode code) {
  if (!session_) return error_;
  Stream* st = find(stream);
  if (!st || st->closed) return H2Error::kNoStream;
  queued_total_ -= st->queued();
  st->drop_queue();
  st->out_end = true;
  st->has_trailers = false;
  const int rv = nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, stream, static_cast<std::uint32_t>(code));
  return rv != 0 ? from_nghttp2(rv) : H2Error::kNone;
}

H2Error Session::goaway(ErrorCode code) {
  if (!session_) return error_;
  local_goaway_ = true;
  requested_goaway_ = true;
  const int rv = nghttp2_submit_goaway(session_, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(session_),
                                       static_cast<std::uint32_t>(code), nullptr, 0);
  return rv != 0 ? from_nghttp2(rv) : H2Error::kNone;
}

void Session::consumed(std::int32_t stream, std::size_t n) {
  Stream* st = find(stream);
  if (!st || !session_) return;
  n = std::min(n, st->unconsumed);
  if (n == 0) return;
  st->unconsumed -= n;
  received_unconsumed_ -= n;
  nghttp2_session_consume(session_, stream, n);
  if (st->closed && st->unconsumed == 0) erase(stream);
}

std::size_t Session::queued_bytes(std::int32_t stream) const {
  const Stream* st = find(stream);
  return st ? st->queued() : 0;
}

std::size_t Session::held_bytes() const noexcept { return received_unconsumed_ + queued_total_ + header_bytes_; }

std::size_t Session::hpack_decoder_table_size() const {
  return session_ ? nghttp2_session_get_hd_inflate_dynamic_table_size(session_) : 0;
}

std::size_t Session::hpack_encoder_table_size() const {
  return session_ ? nghttp2_session_get_hd_deflate_dynamic_table_size(session_) : 0;
}

bool Session::want_write() const { return session_ && nghttp2_session_want_write(session_) != 0; }

bool Session::closed() const {
  if (!session_) return true;
  return nghttp2_session_want_read(session_) == 0 && nghttp2_session_want_write(session_) == 0;
}

}  // namespace airlock::http::h2
