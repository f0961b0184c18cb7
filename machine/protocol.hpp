#pragma once
// The control channel of `airlock serve` after the spec (docs/machine-interface.md): requests
// from the SDK (run, stop) and events back (started, warning, violation, exited, error,
// stopped), one JSON object per line; and the frames between `airlock serve` and the command
// agent inside the sandbox. Pure: no I/O.
#include <airlock/secret.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace airlock::machine {

// ---------------------------------------------------------------- SDK -> airlock

struct RunRequest {
  std::uint64_t id = 0;
  std::vector<std::string> argv;
  std::vector<std::pair<std::string, std::string>> env;  // added to the sandbox's environment
  std::string workdir;                                   // empty: the sandbox's
  std::string stdin_bytes;                               // decoded from base64
  std::optional<std::uint64_t> timeout_ms;
};
struct StopRequest {};
// Kills a running command's process group (its exit is reported as usual), or drops a queued one.
struct CancelRequest {
  std::uint64_t id = 0;
};
using Request = std::variant<RunRequest, StopRequest, CancelRequest>;

inline constexpr std::size_t kMaxStdinBytes = 8u << 20;
inline constexpr std::size_t kMaxOutputBytes = 8u << 20;  // per stream; more is dropped (truncated)

// One request line. Throws ConfigError("request: ...") naming the field.
Request parse_request(std::string_view line);
std::string encode_request(const Request& request);

// Refuses (ConfigError naming the secret, never the value) a request that would carry a secret's
// value into the sandbox (in argv, env, workdir or stdin) or that sets a secret's variable.
void check_run_request(const RunRequest& request, const std::vector<SecretBinding>& secrets);

// ---------------------------------------------------------------- airlock -> SDK

struct StartedEvent {
  std::string sandbox;  // the sandbox's id
  std::vector<std::pair<std::string, std::string>> placeholders;  // env var -> placeholder
};
struct WarningEvent {
  std::string message;
};
struct ViolationEvent {
  std::string record;  // the gateway's audit record (JSON object text; never a value)
};
struct ExitedEvent {
  std::uint64_t id = 0;
  int code = 0;
  bool timed_out = false;
  std::string stdout_bytes, stderr_bytes;
  bool stdout_truncated = false, stderr_truncated = false;
};
struct ErrorEvent {
  std::optional<std::uint64_t> id;  // the request it answers, if any
  std::string message;
};
struct StoppedEvent {
  int code = 0;        // 0 stopped on request; 124 timeout; 125 terminated; 3 setup failed; else the command's
  std::string reason;  // empty when stopped on request
};
using Event = std::variant<StartedEvent, WarningEvent, ViolationEvent, ExitedEvent, ErrorEvent, StoppedEvent>;

// One event as a line (with its "\n").
std::string encode_event(const Event& event);
// Throws ConfigError("event: ...").
Event parse_event(std::string_view line);

// ---------------------------------------------------------------- base64 (standard, padded)

std::string base64_encode(std::string_view bytes);
// nullopt for anything but canonical padded base64.
std::optional<std::string> base64_decode(std::string_view text);

// ---------------------------------------------------------------- airlock <-> agent frames
//
// A frame: type (1 byte), payload length (4 bytes, little endian), payload.
//   airlock -> agent  'R' run: "<argc>\0<envc>\0<timeout_ms or 0>\0<cwd>\0" argv... env "K=V"... each
//                     NUL-terminated, then the stdin bytes; 'K' (empty) kill the running command.
//   agent -> airlock  'O' stdout bytes, 'E' stderr bytes, 'X' "<code>\0<timed out: 0|1>\0" (the
//                     command ended; its output frames came before), 'H' hello (ready).

inline constexpr std::size_t kFrameHeaderBytes = 5;
// The agent sends at most this much per frame; a longer frame means a broken or hostile agent.
inline constexpr std::size_t kMaxAgentFrameBytes = 64u << 10;

// The agent adds the request's variables to (or replaces them in) its own environment, which is
// the sandbox's (with the placeholders).
std::string encode_run_frame(const RunRequest& request);
std::string encode_kill_frame();

struct AgentFrame {
  char type = 0;
  std::string payload;
};
struct AgentExit {
  int code = 0;
  bool timed_out = false;
};
// 'X' payload; nullopt when malformed.
std::optional<AgentExit> parse_exit_payload(std::string_view payload);

// Reassembles frames from the agent's byte stream (hostile: the sandbox may forge any bytes).
// Memory is bounded by one frame of kMaxAgentFrameBytes plus one read.
class AgentFrameReader {
 public:
  void feed(std::string_view bytes) { buffer_.append(bytes); }
  // The next whole frame; nullopt when more bytes are needed. Sets error() for an unknown type
  // or an oversized frame; after that, nothing more is returned.
  std::optional<AgentFrame> next();
  const std::string& error() const noexcept { return error_; }

 private:
  std::string buffer_;
  std::size_t start_ = 0;
  std::string error_;
};

}  // namespace airlock::machine
