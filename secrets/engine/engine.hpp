#pragma once
// The secrets engine (secrets-spec §3–§5): given the bytes a guest sends on one connection and
// what the gateway knows about that connection, produce the bytes to forward upstream or a
// verdict to block. Pure: no sockets, no clocks, no logging. Never puts a value in a verdict.
#include <airlock/secret.hpp>
#include <common/ip_address.hpp>
#include <http/request_parser.hpp>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace airlock::secrets {

enum class Transport : std::uint8_t {
  kTlsVerified,  // TLS airlock intercepted, upstream certificate verified for the SNI
  kPlainHttp,    // cleartext HTTP (only secrets with require_tls_identity(false) may substitute)
  kOpaque,       // cleartext TCP that is not HTTP: detection only
};

// Gate 2's source of truth: the sandbox's DNS answers (or, standalone, the gateway's own).
class PinQuery {
 public:
  virtual ~PinQuery() = default;
  // Was `ip` returned to this sandbox, in an answer still held, for a name matching `pattern`?
  virtual bool pinned(const IpAddress& ip, const HostPattern& pattern) const = 0;
};

struct ConnectionContext {
  Transport transport = Transport::kOpaque;
  std::string sni;             // normalized (lower case, no trailing dot); empty when none
  IpAddress destination;       // the original destination, never re-resolved
  std::uint16_t port = 0;
  const PinQuery* pins = nullptr;  // not owned; nullptr: nothing is pinned, gate 2 fails
};

enum class Location : std::uint8_t { kRequestLine, kQuery, kHeader, kBasicAuth, kBody, kTrailer, kStream };
std::string_view to_string(Location location) noexcept;

// One placeholder replaced by its value (for the audit log).
struct Substitution {
  std::string secret_env;
  std::string host;
  Location location;
};

// Why a request is not forwarded.
struct Block {
  ViolationAction action;   // resolved per §4; never kUnset
  bool violation = false;   // true: a placeholder bound where its secret is not eligible (§4);
                            // false: an unsafe or malformed shape (§5)
  std::string secret_env;   // empty when no secret is involved (e.g. malformed framing)
  std::string host;         // SNI, or the request authority when there is no SNI
  Location location;
  std::string reason;       // human-readable, never a value
};

struct EngineOptions {
  std::size_t max_body_bytes = kDefaultMaxBodyBytes;
  // A compressed body (gzip, deflate, br, zstd) is decoded to at most max_body_bytes for a body
  // injection, and may decode to at most this many times its compressed size (zip bombs).
  std::size_t max_decompression_ratio = 100;
  http::Limits http;
};

// Compiled once per sandbox or gateway from validated secrets; shared read-only by every
// connection (thread-safe to read). Holds the matchers for every placeholder form.
class SecretSet {
 public:
  SecretSet(std::vector<SecretBinding> secrets, ViolationAction network_action,
            EngineOptions options = {});
  ~SecretSet();
  SecretSet(const SecretSet&) = delete;
  SecretSet& operator=(const SecretSet&) = delete;

  const std::vector<SecretBinding>& secrets() const noexcept;
  ViolationAction action() const noexcept;  // effective, network-wide (§4)
  const EngineOptions& options() const noexcept;

  struct Compiled;  // matchers; defined in the engine's sources
  const Compiled& compiled() const noexcept { return *compiled_; }

 private:
  std::vector<SecretBinding> secrets_;
  ViolationAction action_;
  EngineOptions options_;
  std::unique_ptr<Compiled> compiled_;
};

enum class Status : std::uint8_t { kOk, kBlocked };

struct Request;  // the protocol-neutral request (message_gate.hpp)

// A request the rewriter forwarded, as its response needs to be read (issue 12 items 3, 4).
struct ForwardedRequest {
  bool head = false;     // HEAD: the response has no body, whatever its framing fields say
  bool connect = false;  // CONNECT: a 2xx answer turns the connection into a tunnel
  bool upgrade = false;  // an Upgrade offer was forwarded: 101 switches protocols
  bool http10 = false;   // an HTTP/1.0 request: its client reads no chunked response
  bool close = false;    // Connection: close: the upstream connection ends after its response (never pooled)
};

// The request direction of one HTTP connection (intercepted TLS or plain HTTP). After a request
// whose upgrade the server accepted, the rest of the stream is scanned as opaque (detection only).
class RequestRewriter {
 public:
  RequestRewriter(const SecretSet& set, ConnectionContext context);
  ~RequestRewriter();  // wipes every buffer that may have held a value

  // Appends to `to_upstream` the bytes now safe to forward; to `to_guest` any reply the engine
  // owes the guest itself (an interim `100 Continue` when it buffers a body it must rewrite).
  // Once kBlocked is returned, blocked() holds the verdict and every later call returns kBlocked.
  // On kBlocked, what this call appended to `to_upstream` is only the requests that completed
  // before the blocked one (pipelining); nothing of the blocked request from this call. Bytes of
  // a streamed body released by earlier calls cannot be recalled: reset the upstream.
  // `to_upstream` holds substituted values: the caller writes it out and wipes it.
  // Bytes held back between calls: a tail that could begin a placeholder form (< 6 × the
  // longest placeholder), released as soon as it cannot, and always at a message's end.
  Status feed(std::string_view in, std::string& to_upstream, std::string& to_guest);
  // The guest closed its sending side: flush what is held, or block an incomplete request
  // whose held bytes contain a placeholder. An incomplete head, or an incomplete body the
  // engine was buffering to rewrite, is not forwarded.
  Status finish(std::string& to_upstream);

  const std::optional<Block>& blocked() const noexcept;
  std::vector<Substitution> take_substitutions();  // since the last call
  std::vector<ForwardedRequest> take_forwarded();  // requests forwarded since the last call, in order
  // The same without a new vector per call (a kept-alive connection's per-request path): what
  // take_substitutions() / take_forwarded() would return, until the matching clear call.
  const std::vector<Substitution>& substitutions() const noexcept;
  void clear_substitutions() noexcept;
  const std::vector<ForwardedRequest>& forwarded() const noexcept;
  void clear_forwarded() noexcept;

  // Upgrades (issue 12 item 4). After a request that offers an upgrade (or a CONNECT), the
  // bytes that follow are held (at most kMaxHeldAfterUpgrade) until its response is known:
  // `switched` (101, or 2xx to CONNECT) makes the rest of the stream opaque (detection only);
  // anything else resumes parsing, so later requests are rewritten and gated as usual.
  static constexpr std::size_t kMaxHeldAfterUpgrade = 64 * 1024;
  bool awaiting_upgrade() const noexcept;
  Status upgrade_answered(bool switched, std::string& to_upstream, std::string& to_guest);
  // WebSocket (issue 14): the answer switched to a protocol the gateway reads itself. Resolves
  // the upgrade as switched, but the bytes the guest sent after the request go to `held` (for
  // the caller's codec) instead of the opaque scan, and `request` gets the upgrade request as
  // the guest sent it (placeholders not substituted), so that a MessageGate gates its messages
  // with the same gates. kBlocked if the rewriter already blocked or no upgrade is awaited. The
  // rewriter must not be fed afterwards.
  Status hand_off_upgrade(Request& request, std::string& held);

  // Whether a secret has been eligible for some request on this connection, so that a value may
  // have reached this upstream (and may be echoed). From then on every request leaves with
  // `Accept-Encoding: identity`, no transfer-coding but chunked offered (TE), and no
  // `Upgrade: h2c`; the response side decodes compressed or transfer-coded bodies (or blocks them).
  bool values_may_flow() const noexcept;
  // For a rewriter that takes over a connection from another one (a reload of the secrets at a
  // message boundary): values may already have reached this upstream, so requests leave as
  // values_may_flow() says from the first one on.
  void assume_values_may_flow() noexcept;

  // Between requests: nothing held, no head or body in progress, no upgrade awaited or done, not
  // blocked. A new rewriter (on another SecretSet) can take over the connection's next bytes.
  bool at_message_boundary() const noexcept;

  // What the rewriter holds between calls, in bytes of buffer capacity (a body being buffered to
  // rewrite counts its declared length from its head on): the gateway's memory budget.
  std::size_t held_bytes() const noexcept;
  // Inside a request head (its first byte seen, its empty line not yet): the gateway's head deadline.
  bool in_head() const noexcept;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Cleartext TCP that is not HTTP: every placeholder form of every secret is a violation.
class StreamScanner {
 public:
  StreamScanner(const SecretSet& set, ConnectionContext context);
  ~StreamScanner();
  // Appends to `out` the bytes now safe to forward (a tail that could start a placeholder is
  // held back until the next call or finish()).
  Status feed(std::string_view in, std::string& out);
  Status finish(std::string& out);
  const std::optional<Block>& blocked() const noexcept;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace airlock::secrets
