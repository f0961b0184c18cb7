#pragma once
// Internal to the gateway: the byte streams a connection pumps between (a plain TCP socket or a
// TLS session over one), with writers serialized per stream. Single-threaded: every stream of a
// connection lives on that connection's io_context.
#include "tls/openssl_types.hpp"

#include <asio/awaitable.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/steady_timer.hpp>

#include <cstddef>
#include <memory>
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
  // Takes the gate if it is free, without a coroutine: true when taken.
  bool try_lock() noexcept {
    if (held_) return false;
    held_ = true;
    return true;
  }
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
// Makes this thread's TLS write cork (see SocketSink) now. Thread-local storage that holds
// TlsStreams (a loop's pool of upstream connections) calls it before it is built, so that the
// cork, which ~TlsStream reads, is destroyed after it at the thread's exit.
void make_thread_cork() noexcept;
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
// itself, without waiting: one recv of up to kTlsReadAhead bytes (several records) into `ahead`,
// from which OpenSSL takes each record's header and body as it asks for them. (With OpenSSL's
// own read-ahead, its record layer moves every byte left in its buffer to the front once per
// record: 1.5 to 2 bytes moved per byte received; taking exact records costs one copy.) A
// would-block, an end of stream or an error is kept here and reported to OpenSSL as "retry", so
// TlsStream decides what it means (a truncation is not a TLS alert).
struct SocketSource {
  int fd = -1;
  std::string preloaded;
  std::size_t preloaded_used = 0;
  std::unique_ptr<char[]> ahead;  // records received, not yet taken (ciphertext); only while reading
  std::size_t ahead_begin = 0, ahead_end = 0;
  bool eof = false;
  std::error_code error;
  bool drained = true;  // the last read found the socket empty (or took less than it asked)
  std::size_t preloaded_left() const noexcept { return preloaded.size() - preloaded_used; }
  std::size_t ahead_left() const noexcept { return ahead_end - ahead_begin; }
  void take_ahead_buffer() noexcept;  // the thread's spare, or a new one (none without memory)
  void release_ahead() noexcept;      // when empty: back to the thread's spare
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

// TLS over a TCP socket. Reads take up to kTlsReadAhead bytes, several records, per syscall (see
// SocketSource); records written go out from the thread's cork buffer (see SocketSink), with no
// memory BIO in between.
inline constexpr std::size_t kTlsReadAhead = 64 * 1024;
// A write_all() of more plaintext than this is encrypted in slices of it: three full records.
// The thread's write cork holds more than two slices with their framing, and is sent only before
// a slice it may not hold, so a slice and a shorter rest (a 64 KiB upload with its head) leave in
// one send. (Slices and download batches of 64 KiB measured no better: slower in every paired
// run of a loaded machine.)
inline constexpr std::size_t kWriteSlice = 48 * 1024;
// The most plaintext one TLS record carries. A write of n bytes becomes ceil(n / this) records,
// so a batch written while more bytes are ready goes as whole records (whole_records) and the
// rest starts the next batch: no record of a few bytes after every batch.
inline constexpr std::size_t kTlsRecordPlaintext = 16 * 1024;
constexpr std::size_t whole_records(std::size_t n) noexcept { return n - n % kTlsRecordPlaintext; }

// What pump_down collects from the reads that are ready before it writes (one SSL_write, one
// send): at least three full TLS records, one write slice (kWriteSlice).
inline constexpr std::size_t kDownBatchBytes = kWriteSlice;
// The batch buffer's capacity: a batch and one more read. Larger (a decoded burst) is given back.
inline constexpr std::size_t kDownBatchCapacity = kDownBatchBytes + kScratchBytes;
// Whether a batch of `batched` output bytes takes another read of up to `read_size` before it is
// written: more bytes are ready, it holds less than kDownBatchBytes and the read fits its
// capacity. (Counting output against the capacity, not against kDownBatchBytes: a re-chunked
// body's framing would otherwise end each batch one read early, at two records and a few bytes.)
constexpr bool batch_goes_on(bool more, std::size_t batched, std::size_t read_size) noexcept {
  return more && batched < kDownBatchBytes && batched + read_size <= kDownBatchCapacity;
}
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
  asio::ip::tcp::socket* park_socket() override { return socket_; }
  void readable() override { readable_again({}); }
  bool waiting_for_bytes() const override { return in_wait_; }
  // Waits until the peer has sent application data (decrypted and left in OpenSSL for the next
  // read_some) or has ended: asio::error::eof after its close_notify, tls_truncated() after a bare
  // FIN, or another error. Nothing is consumed.
  asio::awaitable<std::error_code> wait_for_data();
  // Ends an idle session at once: close_notify queued and sent if the socket takes it now (no
  // wait); the caller then closes the socket.
  void close_now();
  // The socket was moved (the same descriptor, the same io_context): an idle upstream connection
  // goes into its loop's pool and out again to another guest connection (connection.cpp).
  void rebind(asio::ip::tcp::socket& socket) noexcept;
  // At a message boundary with nothing of either side left anywhere: no byte of the peer's
  // waiting (in OpenSSL, in the read-ahead or in the socket: one MSG_PEEK), nothing unsent, no
  // shutdown begun, no read or write under way. Only such a connection may serve another request
  // of someone else: any unsolicited byte means it is out of step.
  bool unused_and_quiet() const;

 private:
  asio::awaitable<std::error_code> flush();
  std::error_code send_corked();  // flush()'s part that never waits
  std::error_code ended(std::error_code ec) const;
  asio::awaitable<void> wait_readable(std::error_code& ec);
  std::error_code readable_again(std::error_code ec);
  std::error_code source_state() const;
  bool buffered() const;
  bool output_pending() const;
  void free_idle_buffers();
  static void on_tls_message(int write_p, int version, int content_type, const void* buf, std::size_t len, SSL* ssl, void* arg);
  asio::ip::tcp::socket* socket_;  // never null; rebind() moves it with the connection
  SocketEnds ends_;  // declared before ssl_: it outlives the BIO that uses it
  tls::SslPtr ssl_;
  WriteGate gate_;
  // Whether OpenSSL may hold a record buffer that SSL_MODE_RELEASE_BUFFERS did not give back: set
  // by any handshake, alert or change-cipher-spec message read or written (the handshake itself,
  // session tickets, a KeyUpdate), an SSL_read that returned no data, or a shutdown. Only then is
  // SSL_free_buffers worth its cost (~600 instructions even when it frees nothing) before an idle
  // wait; reads and writes of application data give their buffers back themselves.
  bool buffers_maybe_held_ = true;
  bool in_wait_ = false;  // read_some() is in wait_readable()
};

// The error a failed TLS operation reports (details are in the OpenSSL error queue / verify result).
std::error_code tls_error();
// A TLS stream that ended with a bare FIN, without the peer's close_notify.
std::error_code tls_truncated();

}  // namespace airlock::gateway
