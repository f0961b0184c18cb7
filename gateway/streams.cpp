#include "gateway/streams.hpp"

#include <asio/redirect_error.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>

#include <openssl/crypto.h>
#include <openssl/err.h>

#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <new>

namespace airlock::gateway {

using asio::redirect_error;
using asio::use_awaitable;

std::error_code tls_error() { return std::make_error_code(std::errc::protocol_error); }

namespace {
class TruncatedCategory final : public std::error_category {
 public:
  const char* name() const noexcept override { return "airlock.tls"; }
  std::string message(int) const override { return "TLS ended without close_notify (truncated)"; }
};
}  // namespace

std::error_code tls_truncated() {
  static const TruncatedCategory category;
  return {1, category};
}

asio::awaitable<void> WriteGate::lock() {
  while (held_) {
    // Re-arming cancels pending waits, so only the first waiter arms; unlock() wakes them all.
    if (waiters_++ == 0) timer_.expires_at(asio::steady_timer::time_point::max());
    std::error_code ec;
    co_await timer_.async_wait(redirect_error(use_awaitable, ec));
    --waiters_;
  }
  held_ = true;
}

void WriteGate::unlock() {
  held_ = false;
  timer_.cancel();
}

namespace {
// One spare read buffer per thread: a stream gives its buffer back before every wait, and the
// thread's next read takes it again instead of a 64 KiB malloc and free per read.
std::unique_ptr<char[]>& spare_ahead() noexcept {
  thread_local std::unique_ptr<char[]> spare;
  return spare;
}
}  // namespace

void SocketSource::take_ahead_buffer() noexcept {
  if (std::unique_ptr<char[]>& spare = spare_ahead()) ahead = std::move(spare);
  else ahead.reset(new (std::nothrow) char[kTlsReadAhead]);
}

void SocketSource::release_ahead() noexcept {
  if (ahead_left() != 0 || !ahead) return;
  std::unique_ptr<char[]>& spare = spare_ahead();
  if (!spare) spare = std::move(ahead);
  else ahead.reset();
}

char* pump_scratch() noexcept {
  thread_local std::array<char, kScratchBytes> scratch;
  return scratch.data();
}

namespace {

// Records on their way to the socket: written by OpenSSL, sent by the owner's next flush, which
// follows every SSL call before the stream suspends. When a record of another stream is still
// here (SSL_read may queue one, e.g. a KeyUpdate answer, and return), it moves to that stream's
// backlog before another stream uses the cork.
struct Cork {
  static constexpr std::size_t kBytes = 128 * 1024;  // > 2 slices (kWriteSlice) with their framing
  SocketSink* owner = nullptr;
  std::size_t used = 0;
  std::array<char, kBytes> data;
  void spill() {
    if (owner != nullptr && used > 0) owner->backlog.append(data.data(), used);
    owner = nullptr;
    used = 0;
  }
};
Cork& cork() noexcept {
  thread_local Cork c;
  return c;
}

// An upper bound of what `plaintext` bytes become as TLS records (header, padding, tag per
// record of at most 16 KiB).
constexpr std::size_t sealed_bound(std::size_t plaintext) noexcept { return plaintext + (plaintext / 16384 + 1) * 64; }

// SSL_get_error needs an empty error queue before each call; clearing an empty one costs more
// than looking at it.
void clear_tls_errors() {
  if (ERR_peek_error() != 0) ERR_clear_error();
}

// Writes what the socket takes now without waiting; `sent` is how much it took.
std::error_code send_now(asio::ip::tcp::socket& socket, std::string_view data, std::size_t& sent) {
  std::error_code ec;
  sent = socket.write_some(asio::buffer(data.data(), data.size()), ec);
  if (ec == asio::error::would_block || ec == asio::error::try_again) {
    sent = 0;
    ec.clear();
  }
  return ec;
}

// The read BIO over a SocketSource. OpenSSL asks for a record's header, then for its body; we
// give it the preloaded bytes first, then what is left of the last recv, then recv again.
int source_read(BIO* bio, char* out, size_t size, size_t* got) {
  auto* src = &static_cast<SocketEnds*>(BIO_get_data(bio))->source;
  BIO_clear_retry_flags(bio);
  *got = 0;
  if (size == 0) return 0;
  if (src->preloaded_left() > 0) {
    const std::size_t n = std::min(size, src->preloaded_left());
    std::memcpy(out, src->preloaded.data() + src->preloaded_used, n);
    src->preloaded_used += n;
    if (src->preloaded_left() == 0) {  // released once used
      std::string().swap(src->preloaded);
      src->preloaded_used = 0;
    }
    *got = n;
    return 1;
  }
  const auto take_ahead = [&] {
    const std::size_t n = std::min(size, src->ahead_left());
    std::memcpy(out, src->ahead.get() + src->ahead_begin, n);
    src->ahead_begin += n;
    *got = n;
    return 1;
  };
  if (src->ahead_left() > 0) return take_ahead();
  if (src->eof || src->error) {
    BIO_set_retry_read(bio);  // TlsStream reports it; OpenSSL must not turn it into an alert
    return 0;
  }
  if (!src->ahead) src->take_ahead_buffer();
  // Without the buffer (no memory): straight into OpenSSL's, what it asked for.
  char* into = src->ahead ? src->ahead.get() : out;
  const std::size_t want = src->ahead ? kTlsReadAhead : size;
  ssize_t n;
  do n = ::recv(src->fd, into, want, 0);
  while (n < 0 && errno == EINTR);
  if (n > 0) {
    src->drained = static_cast<std::size_t>(n) < want;
    if (!src->ahead) {
      *got = static_cast<std::size_t>(n);
      return 1;
    }
    src->ahead_begin = 0;
    src->ahead_end = static_cast<std::size_t>(n);
    return take_ahead();
  }
  src->drained = true;
  if (n == 0) src->eof = true;
  else if (errno != EAGAIN && errno != EWOULDBLOCK) src->error = std::error_code(errno, asio::error::get_system_category());
  BIO_set_retry_read(bio);
  return 0;
}

int sink_write(BIO* bio, const char* in, size_t size, size_t* written) {
  auto* sink = &static_cast<SocketEnds*>(BIO_get_data(bio))->sink;
  BIO_clear_retry_flags(bio);
  Cork& c = cork();
  if (c.owner != sink) c.spill();
  if (!sink->backlog.empty() || c.used + size > Cork::kBytes) {
    // Keep the order: what is already waiting goes first, and what does not fit waits with it.
    c.spill();
    sink->backlog.append(in, size);
  } else {
    c.owner = sink;
    std::memcpy(c.data.data() + c.used, in, size);
    c.used += size;
  }
  *written = size;
  return 1;
}

// Both directions through one BIO (an idle connection keeps one BIO per TLS session, not two).
long socket_ctrl(BIO* bio, int cmd, long, void*) {
  auto* ends = static_cast<SocketEnds*>(BIO_get_data(bio));
  switch (cmd) {
    case BIO_CTRL_PENDING: return static_cast<long>(ends->source.preloaded_left() + ends->source.ahead_left());
    case BIO_CTRL_WPENDING: {
      const Cork& c = cork();
      return static_cast<long>(ends->sink.backlog.size() + (c.owner == &ends->sink ? c.used : 0));
    }
    case BIO_CTRL_FLUSH: return 1;
    default: return 0;
  }
}

const BIO_METHOD* socket_method() {
  static BIO_METHOD* const method = [] {
    BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "airlock socket");
    BIO_meth_set_read_ex(m, source_read);
    BIO_meth_set_write_ex(m, sink_write);
    BIO_meth_set_ctrl(m, socket_ctrl);
    BIO_meth_set_create(m, [](BIO* bio) {
      BIO_set_init(bio, 1);
      return 1;
    });
    return m;
  }();
  return method;
}

}  // namespace

void make_thread_cork() noexcept { (void)cork(); }

TcpStream::TcpStream(asio::ip::tcp::socket& socket) : socket_(socket), gate_(socket.get_executor()) {
  std::error_code ignored;
  socket_.non_blocking(true, ignored);  // reads happen only after readiness, never blocking the thread
}

// Waits for readiness first unless the last read filled what it asked (or readable() said the
// socket is ready): then the read comes first.
asio::awaitable<IoResult> TcpStream::read_some(char* out, std::size_t size) {
  IoResult r;
  while (true) {
    if (drained_) {
      in_wait_ = true;
      co_await socket_.async_wait(asio::socket_base::wait_read, redirect_error(use_awaitable, r.error));
      in_wait_ = false;
      if (r.error) co_return r;
    }
    r.bytes = socket_.read_some(asio::buffer(out, size), r.error);
    if (r.error == asio::error::would_block || r.error == asio::error::try_again) {
      drained_ = true;
      continue;
    }
    drained_ = r.error || r.bytes < size;
    co_return r;
  }
}

asio::awaitable<std::error_code> TcpStream::write_all(std::string_view data) {
  // No writer ahead of us: the socket usually takes everything at once, straight from `data`.
  if (!gate_.held()) {
    std::size_t sent = 0;
    if (std::error_code ec = send_now(socket_, data, sent)) co_return ec;
    data.remove_prefix(sent);
    if (data.empty()) co_return std::error_code{};
  }
  std::string copy(data);  // `data` may be scratch; it is ours only until we suspend
  co_await gate_.lock();
  std::error_code ec;
  co_await asio::async_write(socket_, asio::buffer(copy.data(), copy.size()), redirect_error(use_awaitable, ec));
  gate_.unlock();
  OPENSSL_cleanse(copy.data(), copy.size());  // it may have held a substituted value
  co_return ec;
}

asio::awaitable<std::error_code> TcpStream::shutdown_send() {
  co_await gate_.lock();
  std::error_code ec;
  socket_.shutdown(asio::socket_base::shutdown_send, ec);
  gate_.unlock();
  co_return ec;
}

bool TcpStream::readable_now() {
  if (drained_) return false;  // the last read took less than it asked: the socket was empty
  std::error_code ec;
  return socket_.available(ec) > 0;
}

TlsStream::TlsStream(asio::ip::tcp::socket& socket, tls::SslPtr ssl)
    : socket_(&socket), ssl_(std::move(ssl)), gate_(socket.get_executor()) {
  std::error_code ignored;
  socket_->non_blocking(true, ignored);  // OpenSSL's reads never block the thread
  ends_.source.fd = socket_->native_handle();
  SSL_set_mode(ssl_.get(), SSL_MODE_RELEASE_BUFFERS);  // idle connections give their record buffers back
  SSL_set_msg_callback(ssl_.get(), &TlsStream::on_tls_message);
  SSL_set_msg_callback_arg(ssl_.get(), this);
  BIO* bio = BIO_new(socket_method());
  BIO_set_data(bio, &ends_);
  SSL_set_bio(ssl_.get(), bio, bio);  // one reference for both directions
}

TlsStream::~TlsStream() {
  Cork& c = cork();
  if (c.owner == &ends_.sink) {  // never sent (the connection ended): dropped with the stream
    c.owner = nullptr;
    c.used = 0;
  }
}

bool TlsStream::output_pending() const {
  const Cork& c = cork();
  return !ends_.sink.backlog.empty() || (c.owner == &ends_.sink && c.used > 0);
}

void TlsStream::preload(std::string_view bytes) { ends_.source.preloaded.append(bytes); }

// With no writer ahead of us, the corked records go out at once, straight from the cork; only
// what the socket does not take now is copied (to the backlog) and written as it drains.
std::error_code TlsStream::send_corked() {
  Cork& c = cork();
  if (c.owner == &ends_.sink && c.used > 0) {
    if (!gate_.held() && ends_.sink.backlog.empty()) {
      std::size_t sent = 0;
      std::error_code ec = send_now(*socket_, std::string_view(c.data.data(), c.used), sent);
      if (!ec && sent < c.used) ends_.sink.backlog.assign(c.data.data() + sent, c.used - sent);
      c.owner = nullptr;
      c.used = 0;
      return ec;
    }
    c.spill();
  }
  return {};
}

asio::awaitable<std::error_code> TlsStream::flush() {
  if (std::error_code ec = send_corked()) co_return ec;
  if (ends_.sink.backlog.empty()) co_return std::error_code{};
  co_await gate_.lock();
  std::error_code ec;
  while (!ec && !ends_.sink.backlog.empty()) {
    std::string out;
    out.swap(ends_.sink.backlog);  // records written while we wait collect behind it
    co_await asio::async_write(*socket_, asio::buffer(out.data(), out.size()), redirect_error(use_awaitable, ec));
  }
  gate_.unlock();
  co_return ec;
}

// Not a coroutine: the wait has no frame of its own beyond the socket's (an idle connection waits
// in two of these). The caller marks the source undrained once it returns (readable_again).
asio::awaitable<void> TlsStream::wait_readable(std::error_code& ec) {
  return socket_->async_wait(asio::socket_base::wait_read, redirect_error(use_awaitable, ec));
}

std::error_code TlsStream::readable_again(std::error_code ec) {
  ends_.source.drained = false;
  return ec;
}

// What the socket source met instead of bytes (end of stream, an error), if anything.
std::error_code TlsStream::source_state() const {
  if (ends_.source.error) return ends_.source.error;
  if (ends_.source.eof) return asio::error::eof;
  return {};
}

// Records of application data only, read or written in full, leave no buffer behind
// (SSL_MODE_RELEASE_BUFFERS): the keep-alive path skips the call. Anything else sets the flag.
void TlsStream::on_tls_message(int, int, int content_type, const void*, std::size_t, SSL*, void* arg) {
  if (content_type == SSL3_RT_HANDSHAKE || content_type == SSL3_RT_ALERT || content_type == SSL3_RT_CHANGE_CIPHER_SPEC) {
    static_cast<TlsStream*>(arg)->buffers_maybe_held_ = true;
  }
}

void TlsStream::free_idle_buffers() {
  if (!buffers_maybe_held_) return;
  SSL_free_buffers(ssl_.get());
  buffers_maybe_held_ = false;
}

// Whether SSL_read could return bytes without the socket: decrypted or undecrypted bytes held by
// OpenSSL, or preloaded ones.
bool TlsStream::buffered() const {
  return SSL_has_pending(ssl_.get()) || ends_.source.preloaded_left() > 0 || ends_.source.ahead_left() > 0;
}

asio::awaitable<std::error_code> TlsStream::handshake() {
  while (true) {
    clear_tls_errors();
    int r = SSL_do_handshake(ssl_.get());
    int err = r == 1 ? SSL_ERROR_NONE : SSL_get_error(ssl_.get(), r);
    // Whatever the handshake produced goes out first (including a fatal alert).
    if (std::error_code ec = co_await flush()) co_return ec;
    if (r == 1) co_return std::error_code{};
    if (err != SSL_ERROR_WANT_READ) co_return tls_error();
    if (std::error_code ec = source_state()) co_return ec;
    std::error_code ec;
    co_await wait_readable(ec);
    if (readable_again(ec)) co_return ec;
  }
}

asio::awaitable<IoResult> TlsStream::read_some(char* out, std::size_t size) {
  IoResult result;
  while (true) {
    // Nothing buffered and the socket drained: wait first, without record buffers. SSL_read would
    // only answer WANT_READ after a recv that finds nothing, and some read paths (e.g. after
    // post-handshake messages) keep the read buffer SSL_MODE_RELEASE_BUFFERS would give back.
    if (!buffered() && ends_.source.drained && !source_state()) {
      // What an earlier SSL_read queued for the peer (e.g. a KeyUpdate answer) goes out first.
      std::error_code ec;
      if (output_pending()) ec = co_await flush();
      free_idle_buffers();
      ends_.source.release_ahead();
      if (!ec) {
        in_wait_ = true;
        co_await wait_readable(ec);
        in_wait_ = false;
        readable_again(ec);
      }
      if (ec) {
        result.error = ended(ec);
        co_return result;
      }
    }
    // No error-queue check first (~200 instructions): a read that returns bytes never needs one.
    // SSL_get_error needs the queue to have been empty before the call it explains, so a failed
    // read that finds anything queued (perhaps left by other code on this thread) clears it and
    // is made again: that call's answer is the one an empty queue gives (a would-block stays one;
    // a session that failed fails again, and an ended one reports its end again).
    std::size_t n = 0;
    int r = SSL_read_ex(ssl_.get(), out, size, &n);
    if (r != 1 && ERR_peek_error() != 0) {
      ERR_clear_error();
      r = SSL_read_ex(ssl_.get(), out, size, &n);
    }
    int err = r == 1 ? SSL_ERROR_NONE : SSL_get_error(ssl_.get(), r);
    if (r != 1) buffers_maybe_held_ = true;  // e.g. a post-handshake message read, or a partial record
    if (r == 1) {
      // No suspension between filling `out` and returning it (it may be shared scratch); what
      // SSL_read queued for the peer (e.g. a KeyUpdate answer) goes out with the next flush.
      result.bytes = n;
      co_return result;
    }
    if (output_pending()) {
      if (std::error_code ec = co_await flush()) {
        result.error = ec;
        co_return result;
      }
    }
    if (err == SSL_ERROR_WANT_READ) {
      // The socket is drained (or ended): a partial record may stay in OpenSSL's buffer.
      ends_.source.release_ahead();
      std::error_code ec = source_state();
      if (!ec) {
        in_wait_ = true;
        co_await wait_readable(ec);
        in_wait_ = false;
        readable_again(ec);
      }
      if (ec) {
        result.error = ended(ec);
        co_return result;
      }
      continue;
    }
    result.error = err == SSL_ERROR_ZERO_RETURN ? std::error_code(asio::error::eof) : tls_error();
    co_return result;
  }
}

asio::awaitable<std::error_code> TlsStream::wait_for_data() {
  while (true) {
    clear_tls_errors();
    char byte = 0;
    std::size_t n = 0;
    const int r = SSL_peek_ex(ssl_.get(), &byte, 1, &n);
    if (r == 1) co_return std::error_code{};
    buffers_maybe_held_ = true;
    const int err = SSL_get_error(ssl_.get(), r);
    if (output_pending()) {
      if (std::error_code ec = co_await flush()) co_return ec;
    }
    if (err != SSL_ERROR_WANT_READ) co_return err == SSL_ERROR_ZERO_RETURN ? std::error_code(asio::error::eof) : tls_error();
    ends_.source.release_ahead();
    std::error_code ec = source_state();
    if (!ec) {
      in_wait_ = true;
      co_await wait_readable(ec);
      in_wait_ = false;
      readable_again(ec);
    }
    if (ec) co_return ended(ec);
  }
}

void TlsStream::rebind(asio::ip::tcp::socket& socket) noexcept { socket_ = &socket; }

// Nothing of the peer's waits anywhere (OpenSSL, the read-ahead, the socket), nothing of ours is
// unsent, neither side has begun to close, and no read or write is under way.
bool TlsStream::unused_and_quiet() const {
  if (buffered() || output_pending() || source_state() || gate_.held() || in_wait_) return false;
  if (SSL_get_shutdown(ssl_.get()) != 0 || !socket_->is_open()) return false;
  char byte = 0;
  const ssize_t n = ::recv(socket_->native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

void TlsStream::close_now() {
  clear_tls_errors();
  buffers_maybe_held_ = true;
  SSL_shutdown(ssl_.get());
  send_corked();  // what the socket does not take now is dropped with the stream
  ERR_clear_error();
}

asio::awaitable<std::error_code> TlsStream::write_all(std::string_view data) {
  if (data.empty()) co_return std::error_code{};
  // The sink takes everything at once; the socket write below is the backpressure. More than
  // the cork holds is encrypted in slices, and the cork is sent before a slice it may not hold
  // (no spill of the cork into the backlog, a copy and an allocation), all before the first
  // wait: `data` may be scratch.
  // No clear_tls_errors() first: a failed write is a tls_error() whatever OpenSSL queued, and
  // SSL_get_error() (which needs an empty queue) is not asked here; every path that asks it, or
  // reads the queue's text (a handshake), clears the queue itself. (The check costs ~200
  // instructions per call: OpenSSL finds the thread's error state through OPENSSL_init_crypto.)
  while (true) {
    const std::string_view slice = data.substr(0, kWriteSlice);
    std::size_t written = 0;
    if (SSL_write_ex(ssl_.get(), slice.data(), slice.size(), &written) != 1 || written != slice.size()) {
      co_return tls_error();
    }
    data.remove_prefix(slice.size());
    if (data.empty()) break;
    const Cork& c = cork();
    const std::size_t corked = c.owner == &ends_.sink ? c.used : 0;
    if (corked + sealed_bound(std::min(data.size(), kWriteSlice)) > Cork::kBytes) {
      if (std::error_code ec = send_corked()) co_return ec;
    }
  }
  // flush()'s first step here, so that a write the socket takes at once (every small response)
  // starts no coroutine of its own; only a backlog (or a writer ahead of us) waits in flush().
  if (std::error_code ec = send_corked()) co_return ec;
  if (ends_.sink.backlog.empty()) co_return std::error_code{};
  co_return co_await flush();
}

// The socket's end of stream is a clean end only after the peer's close_notify.
std::error_code TlsStream::ended(std::error_code ec) const {
  if (ec == asio::error::eof && (SSL_get_shutdown(ssl_.get()) & SSL_RECEIVED_SHUTDOWN) == 0) return tls_truncated();
  return ec;
}

// A short read already said the socket had nothing more: no FIONREAD then. Only after a read
// that filled what OpenSSL asked for (or a wake-up with no read since) is the kernel asked.
bool TlsStream::readable_now() {
  if (buffered()) return true;
  if (ends_.source.drained || source_state()) return false;
  std::error_code ec;
  return socket_->available(ec) > 0;
}

asio::awaitable<std::error_code> TlsStream::shutdown_send() {
  clear_tls_errors();
  buffers_maybe_held_ = true;
  SSL_shutdown(ssl_.get());  // queues close_notify; reading continues until the peer's
  std::error_code ec = co_await flush();
  std::error_code ignored;
  socket_->shutdown(asio::socket_base::shutdown_send, ignored);
  co_return ec;
}

asio::awaitable<std::error_code> TlsStream::shutdown_send_truncated() {
  std::error_code ec = co_await flush();  // what was written before goes out first
  co_await gate_.lock();
  std::error_code ignored;
  socket_->shutdown(asio::socket_base::shutdown_send, ignored);
  gate_.unlock();
  co_return ec;
}

}  // namespace airlock::gateway
