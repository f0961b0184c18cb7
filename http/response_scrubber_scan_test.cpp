// The scrubber's scan against a brute-force reference (issue 15, ka3): the tail search rules most
// positions out by table (reach_) and by a 16-byte search for the far_bytes_, and find_all samples
// positions; the reference tries every form at every position with no filter at all. Values are
// made up by the test; a failure reports offsets and lengths only, never bytes.
#include <http/response_scrubber.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <string>
#include <string_view>
#include <vector>

namespace airlock::http {

struct ScrubFormsPeer {
  static const std::vector<std::string_view>& forms(const ScrubForms& f) { return f.forms_; }
  static bool folded(const ScrubForms& f, std::size_t i) { return f.folded_[i]; }
};

namespace {

unsigned char lower(unsigned char c) { return c >= 'A' && c <= 'Z' ? c | 0x20 : c; }

// Whether form i matches s[p, p + k) (k <= its length), ignoring case where the form is folded.
bool matches(const ScrubForms& f, std::size_t i, std::string_view s, std::size_t p, std::size_t k) {
  const std::string_view form = ScrubFormsPeer::forms(f)[i];
  const bool folded = ScrubFormsPeer::folded(f, i);
  for (std::size_t j = 0; j < k; ++j) {
    const auto c = static_cast<unsigned char>(s[p + j]);
    if (static_cast<unsigned char>(form[j]) != (folded ? lower(c) : c)) return false;
  }
  return true;
}

// What a scrubber holds back after being fed s with no flush: from the first position whose bytes
// to the end are a proper prefix of a form, among the last longest() - 1.
std::size_t reference_tail(const ScrubForms& f, std::string_view s) {
  const std::size_t n = s.size();
  for (std::size_t p = n - std::min(n, f.longest() > 0 ? f.longest() - 1 : 0); p < n; ++p) {
    for (std::size_t i = 0; i < f.count(); ++i) {
      if (ScrubFormsPeer::forms(f)[i].size() > n - p && matches(f, i, s, p, n - p)) return p;
    }
  }
  return n;
}

// The output of feeding s (in any chunks) then flushing: every occurrence of every form masked,
// and the held tail at the end masked when it is 4 bytes or more.
std::string reference_scrub(const ScrubForms& f, std::string_view s) {
  std::string out(s);
  for (std::size_t p = 0; p < s.size(); ++p) {
    for (std::size_t i = 0; i < f.count(); ++i) {
      const std::size_t len = ScrubFormsPeer::forms(f)[i].size();
      if (len <= s.size() - p && matches(f, i, s, p, len)) std::fill_n(out.begin() + static_cast<std::ptrdiff_t>(p), len, '*');
    }
  }
  const std::size_t tail = reference_tail(f, s);
  if (s.size() - tail >= 4) std::fill(out.begin() + static_cast<std::ptrdiff_t>(tail), out.end(), '*');
  return out;
}

std::size_t first_difference(std::string_view a, std::string_view b) {
  std::size_t i = 0;
  while (i < a.size() && i < b.size() && a[i] == b[i]) ++i;
  return i;
}

// A random value: from one of several alphabets, so that the sets have JSON, percent and UTF-8
// forms, shared first bytes (a common prefix) and many distinct ones.
std::string random_value(std::mt19937& rng, const std::string& prefix) {
  static const std::string alphabets[] = {
      "abcdefghijklmnopqrstuvwxyz0123456789-",
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
      "\"\\/%\n\t\x01 ab?&=",
      "\xc3\xa9\xe2\x82\xac\xf0\x9f\x94\x91xyz",
  };
  const std::string& a = alphabets[rng() % std::size(alphabets)];
  std::string v = prefix;
  const std::size_t length = 1 + rng() % 40;
  while (v.size() < length) v += a[rng() % a.size()];
  return v;
}

ScrubForms random_forms(std::mt19937& rng, std::size_t count) {
  std::vector<SecretBinding> secrets;
  const std::string prefix = rng() % 2 == 0 ? "bench-fake-key-" : "";
  while (secrets.size() < count) {
    try {
      secrets.push_back(SecretBuilder()
                            .env("KEY" + std::to_string(secrets.size()))
                            .value(random_value(rng, prefix.substr(0, rng() % (prefix.size() + 1))))
                            .allow_host("api.example.com")
                            .build());
    } catch (const ConfigError&) {  // a value the placeholder holds: draw another
    }
  }
  return ScrubForms(secrets);
}

// A stream of form bytes and noise: whole forms (case varied where folded), their prefixes, and
// filler from the forms' own bytes, so that candidate positions are dense.
std::string random_stream(std::mt19937& rng, const ScrubForms& f, std::size_t size) {
  const auto& forms = ScrubFormsPeer::forms(f);
  std::string s;
  while (s.size() < size) {
    const std::size_t i = rng() % forms.size();
    const std::string_view form = forms[i];
    switch (rng() % 4) {
      case 0:
      case 1: {  // whole, or a prefix
        const std::size_t k = rng() % 2 == 0 ? form.size() : 1 + rng() % form.size();
        for (std::size_t j = 0; j < k; ++j) {
          char c = form[j];
          if (ScrubFormsPeer::folded(f, i) && c >= 'a' && c <= 'z' && rng() % 2 == 0) c = static_cast<char>(c - 0x20);
          s += c;
        }
        break;
      }
      case 2:  // bytes of forms
        for (std::size_t j = rng() % 8; j > 0; --j) s += form[rng() % form.size()];
        break;
      default:
        for (std::size_t j = rng() % 8; j > 0; --j) s += static_cast<char>(rng() % 256);
    }
  }
  s.resize(size);
  return s;
}

// Feeds s in the given chunks, checking what is held after each, then flushes.
::testing::AssertionResult scrub_in_chunks(const ScrubForms& f, std::string_view s, const std::vector<std::size_t>& cuts,
                                           std::string_view expected) {
  ResponseScrubber scrubber(f);
  std::string out;
  std::size_t at = 0;
  for (std::size_t cut : cuts) {
    scrubber.feed(s.substr(at, cut - at), out);
    at = cut;
    const std::size_t tail = reference_tail(f, s.substr(0, at));
    if (scrubber.pending() != at - tail) {
      return ::testing::AssertionFailure() << "after " << at << " bytes: holds " << scrubber.pending() << ", reference "
                                           << at - tail;
    }
  }
  scrubber.feed(s.substr(at), out);
  scrubber.flush(out);
  if (out != expected) {
    return ::testing::AssertionFailure() << "output differs from the reference at offset " << first_difference(out, expected)
                                         << " of " << s.size();
  }
  return ::testing::AssertionSuccess();
}

TEST(ResponseScrubberScan, SameAsBruteForceOnRandomStreamsInRandomChunks) {
  std::mt19937 rng(15);
  std::size_t masked = 0, held = 0;
  for (int trial = 0; trial < 300; ++trial) {
    const ScrubForms f = random_forms(rng, 1 + rng() % 12);
    const std::string s = random_stream(rng, f, 1 + rng() % 700);
    const std::string expected = reference_scrub(f, s);
    masked += static_cast<std::size_t>(std::count(expected.begin(), expected.end(), '*'));
    held += reference_tail(f, s) < s.size();
    ASSERT_TRUE(scrub_in_chunks(f, s, {}, expected)) << "trial " << trial << ", whole";
    for (int round = 0; round < 4; ++round) {
      std::vector<std::size_t> cuts;
      for (std::size_t at = rng() % (2 * f.longest() + 1); at < s.size(); at += 1 + rng() % (2 * f.longest() + 1)) {
        cuts.push_back(at);
      }
      ASSERT_TRUE(scrub_in_chunks(f, s, cuts, expected)) << "trial " << trial << ", round " << round;
    }
  }
  EXPECT_GT(masked, 10000u);  // the streams do hold occurrences
  EXPECT_GT(held, 100u);      // and end inside forms
}

// Every form of a set planted at every offset of a noise stream, the stream split at every
// offset around it: each occurrence, and each tail, as the reference has it.
TEST(ResponseScrubberScan, EachFormAtEveryOffsetSplitEverywhere) {
  std::mt19937 rng(1501);
  for (int set = 0; set < 4; ++set) {
    const ScrubForms f = random_forms(rng, set == 0 ? 10 : 1 + rng() % 4);
    const auto& forms = ScrubFormsPeer::forms(f);
    for (std::size_t i = 0; i < forms.size(); i += 1 + rng() % 3) {
      const std::string noise = random_stream(rng, f, 48);
      for (std::size_t offset = 0; offset <= noise.size(); offset += 1 + rng() % 5) {
        for (std::size_t keep : {forms[i].size(), forms[i].size() - 1}) {  // whole, and cut short at the end
          const std::string s = noise.substr(0, offset) + std::string(forms[i].substr(0, keep)) + (keep == forms[i].size() ? noise.substr(offset) : "");
          if (s.empty()) continue;
          const std::string expected = reference_scrub(f, s);
          for (std::size_t cut = offset; cut <= offset + keep; cut += 1 + rng() % 3) {
            ASSERT_TRUE(scrub_in_chunks(f, s, {cut}, expected)) << "set " << set << ", form " << i << ", offset " << offset << ", cut " << cut;
          }
        }
      }
    }
  }
}

}  // namespace
}  // namespace airlock::http
