// libFuzzer target for http::ResponseScrubber.
//
// Input: byte 0 picks 1-3 secrets; each is a length byte (1-32) and that many value bytes; then a
// byte that seeds the chunk sizes; the rest is the response stream.
// Properties: no crash; the output is exactly as long as the input and each output byte is the
// input byte or the mask; the held-back tail stays under the longest form; fed in chunks without
// pauses the output is the same as fed whole; every byte of a raw value's occurrence is masked
// (fed whole); and no value survives in any output, even with flushes between chunks (a value
// holding the mask byte can be spelled by masks, so only those without one are searched for).
// scrub_in_place (each chunk read into the output after room for the held bytes) gives feed()'s
// output for the same chunks and pauses.
#include <http/response_scrubber.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

namespace {

using namespace airlock;
using namespace airlock::http;

void check(bool ok) {
  if (!ok) std::abort();
}

// Feeds `in` in chunks drawn from `seed`; with `pauses`, flushes after some of them; `in_place`:
// each chunk lands in the output after room for the held bytes and is scrubbed there.
std::string run(const ScrubForms& forms, std::string_view in, unsigned seed, bool pauses, bool in_place = false) {
  ResponseScrubber s(forms);
  std::string out;
  std::uint32_t state = seed * 2654435761u + 1;
  auto next = [&] {
    state ^= state << 13;
    state ^= state >> 17;
    state ^= state << 5;
    return state;
  };
  std::size_t at = 0;
  while (at < in.size()) {
    const std::size_t chunk = seed == 0 ? in.size() : 1 + next() % 19;
    if (in_place) {
      const std::size_t into = out.size() + s.pending();
      out.resize(into);
      out.append(in.substr(at, chunk));
      s.scrub_in_place(out, into);
    } else {
      s.feed(in.substr(at, chunk), out);
    }
    at += std::min(chunk, in.size() - at);
    check(s.pending() < std::max<std::size_t>(forms.longest(), 1));
    check(out.size() + s.pending() == at);
    if (pauses && next() % 3 == 0) s.flush(out);
  }
  s.flush(out);
  check(s.pending() == 0);
  check(out.size() == in.size());
  for (std::size_t i = 0; i < in.size(); ++i) check(out[i] == in[i] || out[i] == '*');
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view rest(reinterpret_cast<const char*>(data), size);
  if (rest.empty()) return 0;
  const std::size_t count = 1 + static_cast<unsigned char>(rest[0]) % 3;
  rest.remove_prefix(1);
  std::vector<std::string> values;
  std::vector<SecretBinding> secrets;
  for (std::size_t i = 0; i < count; ++i) {
    if (rest.empty()) return 0;
    const std::size_t length = 1 + static_cast<unsigned char>(rest[0]) % 32;
    if (rest.size() < 1 + length) return 0;
    values.emplace_back(rest.substr(1, length));
    rest.remove_prefix(1 + length);
    try {
      secrets.push_back(SecretBuilder().env("K" + std::to_string(i)).value(values.back()).allow_host("a.example").build());
    } catch (const ConfigError&) {
      return 0;  // e.g. a value inside the placeholder
    }
  }
  if (rest.empty()) return 0;
  const unsigned seed = static_cast<unsigned char>(rest[0]);
  const std::string_view in = rest.substr(1);
  const ScrubForms forms(secrets);

  const std::string whole = run(forms, in, 0, false);
  check(run(forms, in, seed | 1, false) == whole);
  const std::string paused = run(forms, in, seed | 1, true);
  check(run(forms, in, 0, false, true) == whole);
  check(run(forms, in, seed | 1, false, true) == whole);
  check(run(forms, in, seed | 1, true, true) == paused);
  for (const std::string& v : values) {
    for (std::size_t at = in.find(v); at != std::string_view::npos; at = in.find(v, at + 1)) {
      check(whole.compare(at, v.size(), std::string(v.size(), '*')) == 0);
    }
    if (v.find('*') == std::string::npos) {
      check(whole.find(v) == std::string::npos);
      check(paused.find(v) == std::string::npos);
    }
  }
  return 0;
}
