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

char* pump_scratch() noexcept {
  thread_local std::array<char, kScratchBytes> scratch;
  return scratch.data();
}

namespace {

// Ciphertext on its way from the write BIO to the socket, used without suspending in between
// (flush): an idle connection holds no such buffer.
constexpr std::size_t kCipherScratchBytes = 64 * 1024;
char* cipher_scratch() noexcept {
  thread_local std::array<char, kCipherScratchBytes> scratch;
  return scratch.data();
}

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

// The read BIO over a SocketSource. OpenSSL asks for as much as its record buffer holds
// (read-ahead); we give it the preloaded bytes first, then what one recv returns.
int source_read(BIO* bio, char* out, size_t size, size_t* got) {
  auto* src = static_cast<SocketSource*>(BIO_get_data(bio));
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
  if (src->eof || src->error) {
    BIO_set_retry_read(bio);  // TlsStream reports it; OpenSSL must not turn it into an alert
    return 0;
  }
  ssize_t n;
  do n = ::recv(src->fd, out, size, 0);
  while (n < 0 && errno == EINTR);
  if (n > 0) {
    src->drained = static_cast<std::size_t>(n) < size;
    *got = static_cast<std::size_t>(n);
    return 1;
  }
  src->drained = true;
  if (n == 0) src->eof = true;
  else if (errno != EAGAIN && errno != EWOULDBLOCK) src->error = std::error_code(errno, asio::error::get_system_category());
  BIO_set_retry_read(bio);
  return 0;
}

long source_ctrl(BIO* bio, int cmd, long, void*) {
  auto* src = static_cast<SocketSource*>(BIO_get_data(bio));
  switch (cmd) {
    case BIO_CTRL_PENDING: return static_cast<long>(src->preloaded_left());
    case BIO_CTRL_FLUSH: return 1;
    default: return 0;
  }
}

const BIO_METHOD* source_method() {
  static BIO_METHOD* const method = [] {
    BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "airlock socket source");
    BIO_meth_set_read_ex(m, source_read);
    BIO_meth_set_ctrl(m, source_ctrl);
    BIO_meth_set_create(m, [](BIO* bio) {
      BIO_set_init(bio, 1);
      return 1;
    });
    return m;
  }();
  return method;
}

}  // namespace

TcpStream::TcpStream(asio::ip::tcp::socket& socket) : socket_(socket), gate_(socket.get_executor()) {
  std::error_code ignored;
  socket_.non_blocking(true, ignored);  // reads happen only after readiness, never blocking the thread
}

asio::awaitable<IoResult> TcpStream::read_some(char* out, std::size_t size) {
  IoResult r;
  while (true) {
    co_await socket_.async_wait(asio::socket_base::wait_read, redirect_error(use_awaitable, r.error));
    if (r.error) co_return r;
    r.bytes = socket_.read_some(asio::buffer(out, size), r.error);
    if (r.error == asio::error::would_block || r.error == asio::error::try_again) continue;
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
  std::error_code ec;
  return socket_.available(ec) > 0;
}

TlsStream::TlsStream(asio::ip::tcp::socket& socket, tls::SslPtr ssl)
    : socket_(socket), ssl_(std::move(ssl)), gate_(socket.get_executor()) {
  std::error_code ignored;
  socket_.non_blocking(true, ignored);  // OpenSSL's reads never block the thread
  source_.fd = socket_.native_handle();
  SSL_set_mode(ssl_.get(), SSL_MODE_RELEASE_BUFFERS);  // idle connections give their record buffers back
  // Several records per recv: the read buffer (allocated only while records are being read) holds
  // kTlsReadAhead bytes instead of one record.
  SSL_set_read_ahead(ssl_.get(), 1);
  SSL_set_default_read_buffer_len(ssl_.get(), kTlsReadAhead);
  BIO* rbio = BIO_new(source_method());
  BIO_set_data(rbio, &source_);
  wbio_ = BIO_new(BIO_s_mem());
  BIO_set_mem_eof_return(wbio_, -1);
  SSL_set_bio(ssl_.get(), rbio, wbio_);
}

void TlsStream::preload(std::string_view bytes) { source_.preloaded.append(bytes); }

asio::awaitable<std::error_code> TlsStream::flush() {
  // The ciphertext is moved out of the BIO only while it is being written, so an idle
  // connection holds no output buffer. With no writer ahead of us it goes out through the
  // thread's scratch buffer without waiting; only what the socket does not take now is copied.
  std::string out;
  if (!gate_.held()) {
    char* buf = cipher_scratch();
    while (out.empty() && BIO_ctrl_pending(wbio_) > 0) {
      int n = BIO_read(wbio_, buf, static_cast<int>(kCipherScratchBytes));
      if (n <= 0) break;
      std::size_t sent = 0;
      if (std::error_code ec = send_now(socket_, std::string_view(buf, static_cast<std::size_t>(n)), sent)) co_return ec;
      out.assign(buf + sent, static_cast<std::size_t>(n) - sent);
    }
    if (out.empty()) co_return std::error_code{};
  }
  co_await gate_.lock();
  std::error_code ec;
  while (!ec) {
    if (out.empty()) {
      out.resize(std::min<std::size_t>(BIO_ctrl_pending(wbio_), kCipherScratchBytes));
      int n = out.empty() ? 0 : BIO_read(wbio_, out.data(), static_cast<int>(out.size()));
      if (n <= 0) break;
      out.resize(static_cast<std::size_t>(n));
    }
    co_await asio::async_write(socket_, asio::buffer(out.data(), out.size()), redirect_error(use_awaitable, ec));
    out.clear();
  }
  gate_.unlock();
  co_return ec;
}

asio::awaitable<std::error_code> TlsStream::wait_readable() {
  std::error_code ec;
  co_await socket_.async_wait(asio::socket_base::wait_read, redirect_error(use_awaitable, ec));
  source_.drained = false;
  co_return ec;
}

// What the socket source met instead of bytes (end of stream, an error), if anything.
std::error_code TlsStream::source_state() const {
  if (source_.error) return source_.error;
  if (source_.eof) return asio::error::eof;
  return {};
}

// Whether SSL_read could return bytes without the socket: decrypted or undecrypted bytes held by
// OpenSSL, or preloaded ones.
bool TlsStream::buffered() const { return SSL_has_pending(ssl_.get()) || source_.preloaded_left() > 0; }

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
    if (std::error_code ec = co_await wait_readable()) co_return ec;
  }
}

asio::awaitable<IoResult> TlsStream::read_some(char* out, std::size_t size) {
  IoResult result;
  while (true) {
    // Nothing buffered and the socket drained: wait first, without record buffers. SSL_read would
    // only answer WANT_READ after a recv that finds nothing, and some read paths (e.g. after
    // post-handshake messages) keep the read buffer SSL_MODE_RELEASE_BUFFERS would give back.
    if (!buffered() && source_.drained && !source_state()) {
      // What an earlier SSL_read queued for the peer (e.g. a KeyUpdate answer) goes out first.
      std::error_code ec;
      if (BIO_ctrl_pending(wbio_) > 0) ec = co_await flush();
      SSL_free_buffers(ssl_.get());
      if (!ec) ec = co_await wait_readable();
      if (ec) {
        result.error = ended(ec);
        co_return result;
      }
    }
    clear_tls_errors();
    std::size_t n = 0;
    int r = SSL_read_ex(ssl_.get(), out, size, &n);
    int err = r == 1 ? SSL_ERROR_NONE : SSL_get_error(ssl_.get(), r);
    if (r == 1) {
      // No suspension between filling `out` and returning it (it may be shared scratch); what
      // SSL_read queued for the peer (e.g. a KeyUpdate answer) goes out with the next flush.
      result.bytes = n;
      co_return result;
    }
    if (BIO_ctrl_pending(wbio_) > 0) {
      if (std::error_code ec = co_await flush()) {
        result.error = ec;
        co_return result;
      }
    }
    if (err == SSL_ERROR_WANT_READ) {
      // The socket is drained (or ended): a partial record may stay in OpenSSL's buffer.
      std::error_code ec = source_state();
      if (!ec) ec = co_await wait_readable();
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

asio::awaitable<std::error_code> TlsStream::write_all(std::string_view data) {
  if (data.empty()) co_return std::error_code{};
  clear_tls_errors();
  std::size_t written = 0;
  // Memory BIOs take everything at once; the socket write below is the backpressure.
  if (SSL_write_ex(ssl_.get(), data.data(), data.size(), &written) != 1 || written != data.size()) co_return tls_error();
  co_return co_await flush();
}

// The socket's end of stream is a clean end only after the peer's close_notify.
std::error_code TlsStream::ended(std::error_code ec) const {
  if (ec == asio::error::eof && (SSL_get_shutdown(ssl_.get()) & SSL_RECEIVED_SHUTDOWN) == 0) return tls_truncated();
  return ec;
}

bool TlsStream::readable_now() {
  std::error_code ec;
  return buffered() || socket_.available(ec) > 0;
}

asio::awaitable<std::error_code> TlsStream::shutdown_send() {
  clear_tls_errors();
  SSL_shutdown(ssl_.get());  // queues close_notify; reading continues until the peer's
  std::error_code ec = co_await flush();
  std::error_code ignored;
  socket_.shutdown(asio::socket_base::shutdown_send, ignored);
  co_return ec;
}

asio::awaitable<std::error_code> TlsStream::shutdown_send_truncated() {
  std::error_code ec = co_await flush();  // what was written before goes out first
  co_await gate_.lock();
  std::error_code ignored;
  socket_.shutdown(asio::socket_base::shutdown_send, ignored);
  gate_.unlock();
  co_return ec;
}

}  // namespace airlock::gateway
