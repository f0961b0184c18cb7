#pragma once
// Internal to the gateway: the byte streams a connection pumps between (a plain TCP socket or a
// TLS session over one), with writers serialized per stream. Single-threaded: every stream of a
// connection lives on that connection's io_context.
#include "tls/openssl_types.hpp"

#include <asio/awaitable.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/steady_timer.hpp>

#include <cstddef>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace airlock::gateway {

// An async mutex for one executor: one writer at a time, in arrival order of wake-ups.
class WriteGate {
 public:
  explicit WriteGate(const asio::any_io_executor& executor) : timer_(executor) {}
  asio::awaitable<void> lock();
  void unlock();
  bool held() const noexcept { return held_; }

 private:
  bool held_ = false;
  int waiters_ = 0;
  asio::steady_timer timer_;
};

struct IoResult {
  std::size_t bytes = 0;
  // asio::error::eof at the end of the stream; tls_truncated() when a TLS peer ended its TCP
  // stream without a close_notify first.
  std::error_code error;
};

// Connections hold no read buffer while they wait: a stream waits for readiness, then reads
// synchronously into the buffer it is given, usually the thread's scratch buffer. Bytes read into
// scratch are valid only until the reader next suspends (every connection of the thread shares it).
char* pump_scratch() noexcept;
inline constexpr std::size_t kScratchBytes = 16 * 1024;

class Stream {
 public:
  virtual ~Stream() = default;
  virtual asio::awaitable<IoResult> read_some(char* out, std::size_t size) = 0;
  // `data` needs to stay valid only until this coroutine first suspends: implementations copy
  // (or encrypt) it before they wait.
  virtual asio::awaitable<std::error_code> write_all(std::string_view data) = 0;
  // Ends our sending side (TLS close_notify, then TCP FIN); reading stays possible.
  virtual asio::awaitable<std::error_code> shutdown_send() = 0;
  // Ends our sending side as a truncated stream: TCP FIN without a TLS close_notify, so the peer
  // sees the truncation the other side committed (a plain TCP stream just ends).
  virtual asio::awaitable<std::error_code> shutdown_send_truncated() { return shutdown_send(); }
  // Whether read_some() would return bytes without waiting (false when unsure).
  virtual bool readable_now() { return false; }
  // Parking: an idle connection waits for its sockets with plain handlers, no coroutine. After a
  // read_some() whose wait was cancelled, the caller may wait on park_socket() itself and call
  // readable() once it is, before the next read_some().
  virtual asio::ip::tcp::socket* park_socket() { return nullptr; }
  virtual void readable() {}
  // read_some() is suspended in its wait for the socket to be readable (and in nothing else, such
  // as a write of what an earlier read queued): cancelling the socket's operations then only
  // ends that wait.
  virtual bool waiting_for_bytes() const { return false; }
};

class TcpStream final : public Stream {
 public:
  explicit TcpStream(asio::ip::tcp::socket& socket);
  asio::awaitable<IoResult> read_some(char* out, std::size_t size) override;
  asio::awaitable<std::error_code> write_all(std::string_view data) override;
  asio::awaitable<std::error_code> shutdown_send() override;
  bool readable_now() override;
  asio::ip::tcp::socket* park_socket() override { return &socket_; }
  void readable() override { drained_ = false; }
  bool waiting_for_bytes() const override { return in_wait_; }

 private:
  asio::ip::tcp::socket& socket_;
  WriteGate gate_;
  bool in_wait_ = false;
  bool drained_ = true;  // the last read took less than it asked (or there was none): wait first
};

// What OpenSSL reads from: the bytes read while peeking (the ClientHello) first, then the socket
// itself, without waiting (recv straight into OpenSSL's record buffer: no copy through a memory
// BIO). A would-block, an end of stream or an error is kept here and reported to OpenSSL as
// "retry", so TlsStream decides what it means (a truncation is not a TLS alert).
struct SocketSource {
  int fd = -1;
  std::string preloaded;
  std::size_t preloaded_used = 0;
  bool eof = false;
  std::error_code error;
  bool drained = true;  // the last read found the socket empty (or took less than it asked)
  std::size_t preloaded_left() const noexcept { return preloaded.size() - preloaded_used; }
};

// Where OpenSSL writes: records collect in the thread's cork buffer (shared by every stream of the
// thread, so an idle connection holds no output buffer) until the stream flushes them with one
// send; only what the socket does not take at once, or what waits behind another writer, is kept
// in `backlog`, in order.
struct SocketSink {
  std::string backlog;
};

// What the TLS session's one BIO reads from and writes to.
struct SocketEnds {
  SocketSource source;
  SocketSink sink;
};

// TLS over a TCP socket. Reads go from the socket into OpenSSL's record buffer (read-ahead: up to
// kTlsReadAhead bytes, several records, per syscall); records written go out from the thread's
// cork buffer (see SocketSink), with no memory BIO in between.
inline constexpr std::size_t kTlsReadAhead = 64 * 1024;
// A write_all() of more plaintext than this is encrypted and sent in slices of it: three full
// records (with their framing) fit the thread's 64 KiB write cork.
inline constexpr std::size_t kWriteSlice = 48 * 1024;
class TlsStream final : public Stream {
 public:
  TlsStream(asio::ip::tcp::socket& socket, tls::SslPtr ssl);
  TlsStream(const TlsStream&) = delete;  // OpenSSL's BIO points at ends_
  TlsStream& operator=(const TlsStream&) = delete;
  ~TlsStream() override;
  SSL* ssl() const noexcept { return ssl_.get(); }
  void preload(std::string_view bytes);
  asio::awaitable<std::error_code> handshake();
  asio::awaitable<IoResult> read_some(char* out, std::size_t size) override;
  asio::awaitable<std::error_code> write_all(std::string_view data) override;
  asio::awaitable<std::error_code> shutdown_send() override;
  asio::awaitable<std::error_code> shutdown_send_truncated() override;
  bool readable_now() override;
  asio::ip::tcp::socket* park_socket() override { return &socket_; }
  void readable() override { readable_again({}); }
  bool waiting_for_bytes() const override { return in_wait_; }

 private:
  asio::awaitable<std::error_code> flush();
  std::error_code send_corked();  // flush()'s part that never waits
  std::error_code ended(std::error_code ec) const;
  asio::awaitable<void> wait_readable(std::error_code& ec);
  std::error_code readable_again(std::error_code ec);
  std::error_code source_state() const;
  bool buffered() const;
  bool output_pending() const;
  asio::ip::tcp::socket& socket_;
  SocketEnds ends_;  // declared before ssl_: it outlives the BIO that uses it
  tls::SslPtr ssl_;
  WriteGate gate_;
  bool in_wait_ = false;  // read_some() is in wait_readable()
};

// The error a failed TLS operation reports (details are in the OpenSSL error queue / verify result).
std::error_code tls_error();
// A TLS stream that ended with a bare FIN, without the peer's close_notify.
std::error_code tls_truncated();

}  // namespace airlock::gateway
