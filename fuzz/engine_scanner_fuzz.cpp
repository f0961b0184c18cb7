// libFuzzer target for secrets::StreamScanner (opaque cleartext TCP).
//
// Input: bytes 0–1 pick two split points; the rest is the stream.
// Properties: no crash; the verdict and the forwarded bytes do not depend on the splits; a clean
// stream is forwarded byte for byte; a blocked stream forwards a prefix of the input that holds
// no raw placeholder; the held-back tail stays under the longest encoded form.
#include <secrets/engine/engine.hpp>
#include <secrets/engine/engine_test_util.hpp>
#include <secrets/engine/matcher.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>

namespace {

using namespace airlock;
using namespace airlock::secrets;
using airlock::secrets::testing::SecretSpec;

const SecretSet& secret_set() {
  static const SecretSet set(testing::make_secrets({
                                 {"A", "va-FAKE", {"api.example.com"}, {}},
                                 {"B", "vb-FAKE", {"other.example.net"}, {}},
                                 {"C", "vc-FAKE", {"*.example.com"}, {}, true, false, "{{tok%\\}}"},
                             }),
                             ViolationAction::kBlock);
  return set;
}

struct Run {
  Status status = Status::kOk;
  std::string out;
  std::optional<Block> block;
};

Run run(std::string_view in, std::size_t a, std::size_t b) {
  ConnectionContext ctx;
  ctx.transport = Transport::kOpaque;
  ctx.destination = testing::api_ip();
  StreamScanner sc(secret_set(), ctx);
  Run r;
  const std::size_t cuts[] = {a, b, in.size()};
  std::size_t pos = 0;
  for (std::size_t cut : cuts) {
    r.status = sc.feed(in.substr(pos, cut - pos), r.out);
    pos = cut;
    if (r.status == Status::kBlocked) break;
    // Held back: at most the longest encoded form.
    if (pos - r.out.size() >= secret_set().compiled().max_form) std::abort();
  }
  if (r.status == Status::kOk) r.status = sc.finish(r.out);
  r.block = sc.blocked();
  return r;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  const std::string_view in(reinterpret_cast<const char*>(data + 2), size - 2);
  const std::size_t a = data[0] * in.size() / 255;
  const std::size_t b = std::max<std::size_t>(a, data[1] * in.size() / 255);

  const Run whole = run(in, in.size(), in.size());
  const Run split = run(in, a, b);
  if (whole.status != split.status) std::abort();
  if (whole.status == Status::kOk) {
    if (whole.out != in || split.out != in) std::abort();
  } else {
    if (!whole.block || !split.block) std::abort();
    if (whole.block->secret_env != split.block->secret_env || whole.block->reason != split.block->reason) std::abort();
    for (const Run* r : {&whole, &split}) {
      if (in.substr(0, r->out.size()) != r->out) std::abort();
      if (r->out.find("$MSB_A") != std::string::npos || r->out.find("$MSB_B") != std::string::npos) std::abort();
      if (r->block->reason.find("FAKE") != std::string::npos) std::abort();
    }
  }
  return 0;
}
