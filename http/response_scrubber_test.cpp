// Values here are made up by the tests. Assertions never print scrubbed data (a failure would
// show the value it let through): SameBytes reports lengths and the first differing offset only.
#include <http/response_scrubber.hpp>

#include "common/concat.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <random>
#include <string>
#include <string_view>
#include <vector>

namespace airlock::http {
namespace {

constexpr std::string_view kAlnum = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

::testing::AssertionResult SameBytes(std::string_view actual, std::string_view expected) {
  if (actual == expected) return ::testing::AssertionSuccess();
  std::size_t i = 0;
  while (i < actual.size() && i < expected.size() && actual[i] == expected[i]) ++i;
  return ::testing::AssertionFailure() << "output differs from the expected bytes at offset " << i << " (lengths "
                                       << actual.size() << " and " << expected.size() << ")";
}

std::string stars(std::size_t n) { return std::string(n, '*'); }

// A made-up value: `length` characters of `alphabet`, with those of `extra` (which a test needs)
// spread through them.
std::string make_value(std::size_t length, std::string_view extra = {}, std::string_view alphabet = kAlnum) {
  static std::mt19937 rng(20240611);
  std::string v;
  for (std::size_t i = 0; i < length; ++i) v += alphabet[rng() % alphabet.size()];
  for (std::size_t i = 0; i < extra.size(); ++i) v.insert(v.begin() + static_cast<std::ptrdiff_t>((i * 7 + 3) % (v.size() + 1)), extra[i]);
  return v;
}

ScrubForms forms_of(const std::vector<std::string>& values) {
  std::vector<SecretBinding> secrets;
  for (std::size_t i = 0; i < values.size(); ++i) {
    secrets.push_back(SecretBuilder().env("KEY" + std::to_string(i)).value(values[i]).allow_host("api.example.com").build());
  }
  return ScrubForms(secrets);
}

// Feeds the chunks, then flushes.
std::string scrub(const ScrubForms& forms, const std::vector<std::string_view>& chunks) {
  ResponseScrubber s(forms);
  std::string out;
  for (std::string_view c : chunks) s.feed(c, out);
  s.flush(out);
  return out;
}
std::string scrub(const ScrubForms& forms, std::string_view in) { return scrub(forms, std::vector{in}); }

// Same output whatever the chunking: at every single and every pair of split points, and byte by byte.
void expect_same_at_every_split(const ScrubForms& forms, std::string_view in, std::string_view expected) {
  ASSERT_TRUE(SameBytes(scrub(forms, in), expected)) << "fed whole";
  for (std::size_t i = 0; i <= in.size(); ++i) {
    ASSERT_TRUE(SameBytes(scrub(forms, {in.substr(0, i), in.substr(i)}), expected)) << "split at " << i;
  }
  for (std::size_t i = 0; i <= in.size(); i += 3) {
    for (std::size_t j = i; j <= in.size(); ++j) {
      ASSERT_TRUE(SameBytes(scrub(forms, {in.substr(0, i), in.substr(i, j - i), in.substr(j)}), expected))
          << "split at " << i << " and " << j;
    }
  }
  std::vector<std::string_view> bytes;
  for (std::size_t i = 0; i < in.size(); ++i) bytes.push_back(in.substr(i, 1));
  ASSERT_TRUE(SameBytes(scrub(forms, bytes), expected)) << "byte by byte";
}

// Standard base64 with padding, written independently of the scrubber's encoder.
std::string base64(std::string_view bytes, bool url = false) {
  const char* chars = url ? "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
                          : "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  for (std::size_t i = 0; i < bytes.size(); i += 3) {
    const std::size_t n = std::min<std::size_t>(3, bytes.size() - i);
    std::uint32_t v = 0;
    for (std::size_t k = 0; k < 3; ++k) v = (v << 8) | (k < n ? static_cast<unsigned char>(bytes[i + k]) : 0u);
    for (std::size_t k = 0; k < 4; ++k) out += k <= n ? chars[(v >> (18 - 6 * k)) & 63] : '=';
  }
  return out;
}

TEST(ResponseScrubber, RawValueMaskedWithSameLength) {
  const std::string v = make_value(32);
  const ScrubForms forms = forms_of({v});
  const std::string in = "{\"echo\": \"" + v + "\", \"n\": 1}\r\n";
  const std::string expected = "{\"echo\": \"" + stars(v.size()) + "\", \"n\": 1}\r\n";
  expect_same_at_every_split(forms, in, expected);
}

// reset(): the next text is scrubbed as if by a new scrubber (an HTTP/2 head's values one by
// one): a value's first 3 bytes ending one text are not context for the next text's bytes.
TEST(ResponseScrubber, ResetStartsAnUnrelatedText) {
  const std::string v = make_value(24);
  const ScrubForms forms = forms_of({v});
  ResponseScrubber scrubber(forms);
  std::string first, second;
  scrubber.feed("a: " + v.substr(0, 3), first);
  scrubber.flush(first);
  EXPECT_TRUE(SameBytes(first, "a: " + v.substr(0, 3)));
  scrubber.reset();
  scrubber.feed(v.substr(3), second);
  scrubber.flush(second);
  EXPECT_TRUE(SameBytes(second, scrub(forms, v.substr(3)))) << "the last text was context";
  // Without the reset the two texts are one stream: the rest of the value is masked.
  ResponseScrubber stream(forms);
  std::string joined;
  stream.feed("a: " + v.substr(0, 3), joined);
  stream.flush(joined);
  stream.feed(v.substr(3), joined);
  stream.flush(joined);
  EXPECT_TRUE(SameBytes(joined, "a: " + v.substr(0, 3) + stars(v.size() - 3)));
  // A value whole in the next text is still masked after a reset, and counted.
  const std::uint64_t before = scrubber.masked_bytes();
  scrubber.reset();
  std::string third;
  scrubber.feed("x" + v, third);
  scrubber.flush(third);
  EXPECT_TRUE(SameBytes(third, "x" + stars(v.size())));
  EXPECT_EQ(scrubber.masked_bytes(), before + v.size());
}

// scrub_text(x) is a new scrubber's feed(x) then flush(), for texts around every form's edges:
// whole values, their prefixes (the flush rule), base64 and percent forms, overlaps, and after
// other texts on the same scrubber.
TEST(ResponseScrubber, ScrubTextIsFeedThenFlush) {
  const std::string a = make_value(20), b = make_value(12, "/\"&");
  const ScrubForms forms = forms_of({a, b});
  std::vector<std::string> texts = {"", "x", "Bearer " + a, a + a, a.substr(0, 3), a.substr(0, 4), "z" + a.substr(0, 9),
                                    base64(a), "q" + base64(b, true) + "q", "%" + b, a.substr(5) + b.substr(0, 5)};
  for (std::size_t cut = 0; cut <= a.size(); ++cut) texts.push_back(a.substr(cut) + " / " + a.substr(0, cut));
  ResponseScrubber reused(forms);
  for (const std::string& t : texts) {
    std::string whole;
    reused.scrub_text(t, whole);
    EXPECT_TRUE(SameBytes(whole, scrub(forms, t))) << t.size();
    EXPECT_EQ(reused.pending(), 0u);
  }
}

TEST(ResponseScrubber, CountsMaskedBytes) {
  const std::string v = make_value(24);
  const ScrubForms forms = forms_of({v});
  ResponseScrubber scrubber(forms);
  std::string out;
  scrubber.feed("nothing to see " + v.substr(0, 10), out);
  EXPECT_EQ(scrubber.masked_bytes(), 0u);
  scrubber.feed(v.substr(10) + " after", out);
  scrubber.flush(out);
  EXPECT_EQ(scrubber.masked_bytes(), v.size());
  EXPECT_TRUE(SameBytes(out, "nothing to see " + stars(v.size()) + " after"));
}

TEST(ResponseScrubber, ValueAtStartEndAndAlone) {
  const std::string v = make_value(20);
  const ScrubForms forms = forms_of({v});
  EXPECT_TRUE(SameBytes(scrub(forms, v), stars(v.size())));
  EXPECT_TRUE(SameBytes(scrub(forms, v + "tail"), stars(v.size()) + "tail"));
  EXPECT_TRUE(SameBytes(scrub(forms, "head" + v), "head" + stars(v.size())));
}

TEST(ResponseScrubber, CaseSensitive) {
  const std::string v = make_value(20, "", "abcdefghijklmnopqrstuvwxyz");
  std::string upper = v;
  for (char& c : upper) c = static_cast<char>(c - 'a' + 'A');
  const ScrubForms forms = forms_of({v});
  EXPECT_TRUE(SameBytes(scrub(forms, "x" + upper + "y"), "x" + upper + "y"));
}

TEST(ResponseScrubber, Base64AtEveryAlignment) {
  for (bool url : {false, true}) {
    // '+' and '/' in the standard alphabet become '-' and '_' in base64url; the value's bytes
    // are chosen so that both appear in its encodings.
    const std::string v = make_value(24, "\xfb\xff\xfe>?");
    const ScrubForms forms = forms_of({v});
    for (std::size_t shift = 0; shift < 3; ++shift) {
      for (std::size_t after = 0; after < 3; ++after) {
        const std::string bytes = std::string(shift, 'q') + v + std::string(after, 'z');
        const std::string encoded = base64(bytes, url);
        // The characters made of value bits alone.
        const std::size_t begin = (8 * shift + 5) / 6, end = 8 * (shift + v.size()) / 6;
        std::string expected = encoded;
        expected.replace(begin, end - begin, stars(end - begin));
        const std::string in = "data=" + encoded + ";";
        EXPECT_TRUE(SameBytes(scrub(forms, in), "data=" + expected + ";"))
            << (url ? "base64url" : "base64") << " shift " << shift << " after " << after;
      }
    }
  }
}

TEST(ResponseScrubber, Base64SplitEverywhere) {
  const std::string v = make_value(16);
  const ScrubForms forms = forms_of({v});
  const std::string encoded = base64(v);  // 16 bytes: 21 full characters, then a partial one and "=="
  const std::string in = "auth " + encoded + "\n";
  const std::string expected = "auth " + stars(21) + encoded.substr(21) + "\n";
  expect_same_at_every_split(forms, in, expected);
}

TEST(ResponseScrubber, JsonEscapedWithAndWithoutSlash) {
  const std::string a = make_value(10), b = make_value(10), c = make_value(10);
  const std::string v = a + "\"/" + b + "\\\n" + c + '\x01';
  const std::string plain = a + "\\\"/" + b + "\\\\\\n" + c + "\\u0001";     // JSON.stringify, json.dumps
  const std::string slash = a + "\\\"\\/" + b + "\\\\\\n" + c + "\\u0001";  // PHP json_encode
  const ScrubForms forms = forms_of({v});
  expect_same_at_every_split(forms, "{\"v\":\"" + plain + "\"}", "{\"v\":\"" + stars(plain.size()) + "\"}");
  EXPECT_TRUE(SameBytes(scrub(forms, "{\"v\":\"" + slash + "\"}"), "{\"v\":\"" + stars(slash.size()) + "\"}"));
  EXPECT_TRUE(SameBytes(scrub(forms, v), stars(v.size())));
}

TEST(ResponseScrubber, PercentEncoded) {
  const std::string a = make_value(12), b = make_value(12);
  const std::string v = a + "+/=" + b + "-._~";
  const std::string encoded = a + "%2B%2F%3D" + b + "-._~";
  const ScrubForms forms = forms_of({v});
  expect_same_at_every_split(forms, "GET /?k=" + encoded + " HTTP/1.1", "GET /?k=" + stars(encoded.size()) + " HTTP/1.1");
}

TEST(ResponseScrubber, OverlappingAndAdjacentOccurrences) {
  const std::string x = make_value(6);
  const std::string v = x + x + x;  // occurs at every multiple of x in a run of x
  const ScrubForms forms = forms_of({v});
  const std::string run = x + x + x + x + x;
  expect_same_at_every_split(forms, "<" + run + ">", "<" + stars(run.size()) + ">");
  expect_same_at_every_split(forms, v + v + "." + v, stars(2 * v.size()) + "." + stars(v.size()));
}

TEST(ResponseScrubber, ValuesThatArePrefixesOfEachOther) {
  const std::string shorter = make_value(12);
  const std::string longer = shorter + make_value(10);
  const ScrubForms forms = forms_of({shorter, longer});
  // The shorter alone, the longer, and the shorter followed by a different continuation.
  const std::string in = shorter + "|" + longer + "|" + shorter + "!" + longer.substr(shorter.size() + 1);
  const std::string expected = stars(shorter.size()) + "|" + stars(longer.size()) + "|" + stars(shorter.size()) + "!" +
                               longer.substr(shorter.size() + 1);
  expect_same_at_every_split(forms, in, expected);
}

TEST(ResponseScrubber, ManySecrets) {
  std::vector<std::string> values;
  for (int i = 0; i < 50; ++i) values.push_back(make_value(8 + i % 30));
  const ScrubForms forms = forms_of(values);
  std::string in, expected;
  for (std::size_t i = 0; i < values.size(); i += 7) {
    in += concat("<", values[i], ">");  // not `"<" + std::string`: common/concat.hpp says why
    expected += concat("<", stars(values[i].size()), ">");
  }
  expect_same_at_every_split(forms, in, expected);
}

TEST(ResponseScrubber, LongValue) {
  // Longer than the sampling stride's cap, in raw and base64 forms.
  const std::string v = make_value(300, "+/");
  const ScrubForms forms = forms_of({v});
  const std::string encoded = base64(v);  // 302 bytes: 402 full characters, then "w==" or alike
  const std::string in = "[" + v + "," + encoded + "]";
  const std::string expected = "[" + stars(v.size()) + "," + stars(402) + encoded.substr(402) + "]";
  expect_same_at_every_split(forms, in, expected);
}

TEST(ResponseScrubber, ShortValue) {
  const std::string v = make_value(2);
  const ScrubForms forms = forms_of({v});
  expect_same_at_every_split(forms, "a" + v + v + "b" + v.substr(0, 1), "a" + stars(2 * v.size()) + "b" + v.substr(0, 1));
}

TEST(ResponseScrubber, HoldsBackOnlyAPrefixOfAForm) {
  const std::string v = make_value(20);
  const ScrubForms forms = forms_of({v});
  ResponseScrubber s(forms);
  std::string out;
  s.feed("hello " + v.substr(0, 7), out);
  EXPECT_TRUE(SameBytes(out, "hello "));
  EXPECT_EQ(s.pending(), 7u);
  s.feed(v.substr(7, 5), out);
  EXPECT_EQ(s.pending(), 12u);
  // Not the value after all: everything goes out unmasked.
  s.feed("#", out);
  EXPECT_TRUE(SameBytes(out, "hello " + v.substr(0, 12) + "#"));
  EXPECT_EQ(s.pending(), 0u);
}

TEST(ResponseScrubber, PendingNeverExceedsLongestFormMinusOne) {
  const std::string v = make_value(30, "/\"");
  const ScrubForms forms = forms_of({v});
  ResponseScrubber s(forms);
  std::string out;
  // A run of the value's prefixes of every length, byte by byte.
  std::string in;
  for (std::size_t k = 1; k < v.size(); ++k) in += v.substr(0, k);
  for (char c : in) {
    s.feed(std::string_view(&c, 1), out);
    ASSERT_LT(s.pending(), forms.longest());
  }
  s.flush(out);
  EXPECT_EQ(out.size(), in.size());
}

TEST(ResponseScrubber, FlushMasksAHeldPrefixOfFourOrMore) {
  const std::string v = make_value(20);
  const ScrubForms forms = forms_of({v});
  ResponseScrubber s(forms);
  std::string out;
  s.feed("ab" + v.substr(0, 4), out);
  s.flush(out);
  EXPECT_TRUE(SameBytes(out, "ab****"));
  EXPECT_EQ(s.pending(), 0u);
  // The rest of the value, after the pause, is masked too.
  s.feed(v.substr(4, 9), out);
  s.feed(v.substr(13) + "cd", out);
  s.flush(out);
  EXPECT_TRUE(SameBytes(out, "ab" + stars(v.size()) + "cd"));
}

TEST(ResponseScrubber, FlushEmitsAHeldPrefixOfThreeOrLessButMasksTheContinuation) {
  const std::string v = make_value(20);
  const ScrubForms forms = forms_of({v});
  ResponseScrubber s(forms);
  std::string out;
  s.feed("ab" + v.substr(0, 3), out);
  s.flush(out);
  EXPECT_TRUE(SameBytes(out, "ab" + v.substr(0, 3)));
  EXPECT_EQ(s.pending(), 0u);
  s.feed(v.substr(3) + "cd", out);
  s.flush(out);
  EXPECT_TRUE(SameBytes(out, "ab" + v.substr(0, 3) + stars(v.size() - 3) + "cd"));
}

TEST(ResponseScrubber, ContinuationMaskedAcrossSeveralFlushes) {
  const std::string v = make_value(20);
  const ScrubForms forms = forms_of({v});
  ResponseScrubber s(forms);
  std::string out;
  for (char c : v) {
    s.feed(std::string_view(&c, 1), out);
    s.flush(out);
  }
  // The first 3 bytes went out before the held prefix reached 4 bytes.
  EXPECT_TRUE(SameBytes(out, v.substr(0, 3) + stars(v.size() - 3)));
}

TEST(ResponseScrubber, FlushMasksAFourBytePrefixEvenIfTheValueDoesNotFollow) {
  // The documented trade-off: a 4-byte prefix held at a pause is masked whatever comes next.
  const std::string v = make_value(20);
  const ScrubForms forms = forms_of({v});
  ResponseScrubber s(forms);
  std::string out;
  s.feed(v.substr(0, 4), out);
  s.flush(out);
  s.feed("!", out);
  s.flush(out);
  EXPECT_TRUE(SameBytes(out, "****!"));
}

TEST(ResponseScrubber, FlushMasksAWholeOccurrenceInsideAShortHeldPrefix) {
  // "x" + v is held (it may begin the longer value) and, at 3 bytes, emitted by flush; v inside
  // it is a whole occurrence all the same.
  const std::string v = make_value(2);
  const std::string longer = "x" + v + make_value(10);
  const ScrubForms forms = forms_of({v, longer});
  ResponseScrubber s(forms);
  std::string out;
  s.feed("x" + v, out);
  EXPECT_EQ(s.pending(), 3u);
  s.flush(out);
  EXPECT_TRUE(SameBytes(out, "x**"));
}

TEST(ResponseScrubber, EmptyInput) {
  const ScrubForms forms = forms_of({make_value(20)});
  ResponseScrubber s(forms);
  std::string out;
  s.feed("", out);
  s.flush(out);
  EXPECT_TRUE(out.empty());
  EXPECT_EQ(s.pending(), 0u);
}

TEST(ResponseScrubber, NoSecretsPassesBytesThrough) {
  const ScrubForms forms({});
  EXPECT_EQ(forms.count(), 0u);
  EXPECT_EQ(forms.longest(), 0u);
  ResponseScrubber s(forms);
  std::string out;
  const std::string in = "HTTP/1.1 200 OK\r\n\r\n" + make_value(100, "*%\\\"/");
  s.feed(in, out);
  EXPECT_EQ(s.pending(), 0u);
  s.flush(out);
  EXPECT_TRUE(SameBytes(out, in));
}

// Item 5 of issue 14: spellings an encoder may choose. Each is masked whatever the case of its
// hex digits, split anywhere.
std::string hex_digits(std::string_view bytes, const char* digits) {
  std::string out;
  for (unsigned char c : bytes) {
    out += digits[c >> 4];
    out += digits[c & 15];
  }
  return out;
}
constexpr const char* kLowerDigits = "0123456789abcdef";
constexpr const char* kUpperDigits = "0123456789ABCDEF";
// Alternates the case of the letters in `s`.
std::string mixed_case(std::string s) {
  bool up = false;
  for (char& c : s) {
    if (c >= 'a' && c <= 'f') {
      if (up) c = static_cast<char>(c - 'a' + 'A');
      up = !up;
    }
  }
  return s;
}
std::string full_percent(std::string_view v, const char* digits) {
  std::string out;
  for (unsigned char c : v) out += concat("%", hex_digits(std::string_view(reinterpret_cast<const char*>(&c), 1), digits));
  return out;
}
std::string full_unicode(std::string_view v, const char* digits) {
  std::string out;
  for (unsigned char c : v) out += "\\u00" + hex_digits(std::string_view(reinterpret_cast<const char*>(&c), 1), digits);
  return out;
}

TEST(ResponseScrubberSpellings, LowerAndMixedCasePercentEncoding) {
  const std::string a = make_value(12), b = make_value(12);
  const std::string v = a + "+/=" + b;
  const ScrubForms forms = forms_of({v});
  for (const std::string& enc : {a + "%2b%2f%3d" + b, a + "%2B%2f%3D" + b}) {
    expect_same_at_every_split(forms, "q=" + enc + "&x", "q=" + stars(enc.size()) + "&x");
  }
}

TEST(ResponseScrubberSpellings, FullPercentEncodingEveryCase) {
  const std::string v = make_value(20);  // letters and digits only: a partial encoder leaves it raw
  const ScrubForms forms = forms_of({v});
  for (const std::string& enc :
       {full_percent(v, kUpperDigits), full_percent(v, kLowerDigits), mixed_case(full_percent(v, kLowerDigits))}) {
    expect_same_at_every_split(forms, concat("<", enc, ">"), concat("<", stars(enc.size()), ">"));
  }
}

TEST(ResponseScrubberSpellings, FullUnicodeEscapingEveryCase) {
  const std::string v = make_value(16, "/");
  const ScrubForms forms = forms_of({v});
  for (const std::string& enc : {full_unicode(v, kLowerDigits), full_unicode(v, kUpperDigits),
                                 mixed_case(full_unicode(v, kLowerDigits))}) {
    expect_same_at_every_split(forms, "{\"k\":\"" + enc + "\"}", "{\"k\":\"" + stars(enc.size()) + "\"}");
  }
}

TEST(ResponseScrubberSpellings, FullUnicodeEscapingOfUtf8UsesCodePointsAndSurrogates) {
  // U+00E9 (2 bytes), U+20AC (3 bytes), U+1F600 (4 bytes: a surrogate pair).
  const std::string a = make_value(10);
  const std::string v = a + "\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80";
  const ScrubForms forms = forms_of({v});
  const std::string enc = full_unicode(a, kUpperDigits) + "\\u00E9\\u20AC\\uD83D\\uDE00";
  EXPECT_TRUE(SameBytes(scrub(forms, "[" + enc + "]"), "[" + stars(enc.size()) + "]"));
  const std::string lower = full_unicode(a, kLowerDigits) + "\\u00e9\\u20ac\\ud83d\\ude00";
  EXPECT_TRUE(SameBytes(scrub(forms, lower), stars(lower.size())));
}

TEST(ResponseScrubberSpellings, PartialJsonEscapeWithUpperCaseHex) {
  const std::string a = make_value(12), b = make_value(12);
  const std::string v = a + "\x01" + b;
  const ScrubForms forms = forms_of({v});
  const std::string enc = a + "\\u0001" + b;
  EXPECT_TRUE(SameBytes(scrub(forms, enc), stars(enc.size())));
  const std::string v2 = a + "\x1f" + b;
  const ScrubForms forms2 = forms_of({v2});
  const std::string enc2 = a + "\\u001F" + b;
  EXPECT_TRUE(SameBytes(scrub(forms2, enc2), stars(enc2.size())));
}

TEST(ResponseScrubberSpellings, HexEveryCase) {
  const std::string v = make_value(24, "+/");
  const ScrubForms forms = forms_of({v});
  for (const std::string& enc : {hex_digits(v, kLowerDigits), hex_digits(v, kUpperDigits),
                                 mixed_case(hex_digits(v, kLowerDigits))}) {
    expect_same_at_every_split(forms, "id=" + enc + ";", "id=" + stars(enc.size()) + ";");
  }
}

TEST(ResponseScrubberSpellings, BinaryValueInHexAndFullEscapes) {
  std::string v;
  for (int i = 0; i < 16; ++i) v += static_cast<char>(0x80 + i * 7);  // not UTF-8: one \u00xx per byte
  const ScrubForms forms = forms_of({v});
  for (const std::string& enc : {hex_digits(v, kUpperDigits), full_percent(v, kLowerDigits), full_unicode(v, kUpperDigits)}) {
    EXPECT_TRUE(SameBytes(scrub(forms, concat(".", enc, ".")), concat(".", stars(enc.size()), ".")));
  }
}

TEST(ResponseScrubberSpellings, RawValueStaysCaseSensitive) {
  // Folding is for escapes only: an upper-cased plain value is not an occurrence.
  const std::string v = make_value(20, "", "abcdefghijklmnopqrstuvwxyz");
  std::string upper = v;
  for (char& c : upper) c = static_cast<char>(c - 'a' + 'A');
  const ScrubForms forms = forms_of({v});
  EXPECT_TRUE(SameBytes(scrub(forms, upper), upper));
  // Nor is hex of something else of the same length.
  const std::string other = hex_digits(make_value(20), kLowerDigits);
  EXPECT_TRUE(SameBytes(scrub(forms, other), other));
}

TEST(ResponseScrubberSpellings, SplitAcrossFeedsWithFlushes) {
  const std::string v = make_value(20);
  const ScrubForms forms = forms_of({v});
  const std::string enc = mixed_case(full_percent(v, kUpperDigits));
  for (std::size_t cut = 1; cut < enc.size(); ++cut) {
    ResponseScrubber s(forms);
    std::string out;
    s.feed(enc.substr(0, cut), out);
    s.flush(out);  // a pause: at most 3 bytes of the start may leave
    s.feed(enc.substr(cut), out);
    s.flush(out);
    ASSERT_EQ(out.size(), enc.size());
    ASSERT_TRUE(SameBytes(out.substr(std::min<std::size_t>(3, cut)), stars(enc.size() - std::min<std::size_t>(3, cut))))
        << "cut at " << cut;
  }
}

TEST(ScrubForms, CountsDistinctForms) {
  // Upper-case letters (and '/') never give base64 characters 62 or 63, so base64url is the
  // same as base64. Plain: raw and base64 at 3 alignments.
  constexpr std::string_view kUpper = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
  const std::string v = make_value(30, "", kUpper);
  // Plus the full percent, full \u and hex forms.
  EXPECT_EQ(forms_of({v}).count(), 7u);
  EXPECT_EQ(forms_of({v, v}).count(), 7u);  // the same value twice is one set of forms
  // '/' adds the JSON form that escapes it and the percent form (the JSON form that keeps it is
  // the raw value). The longest is the full \u form: 6 characters a byte.
  const ScrubForms slashed = forms_of({make_value(30, "/", kUpper)});
  EXPECT_EQ(slashed.count(), 9u);
  EXPECT_EQ(slashed.longest(), 186u);
}

}  // namespace
}  // namespace airlock::http

namespace airlock::http {
namespace {

// feed_chunk frames what feed would emit as one chunk, scrubbing straight into the output: at
// every pair of split points the chunks, de-chunked, are the masked stream, each chunk is what
// feed would emit for the same call, and a value cut by a split is masked whole.
TEST(ResponseScrubber, FeedChunkIsFeedFramedAsOneChunk) {
  const std::string v = make_value(24);
  const ScrubForms forms = forms_of({v, make_value(9)});
  const std::string in = "ab" + v + "cd" + base64(v) + v.substr(0, 5) + "xy" + v + v.substr(0, 7);
  const std::string expected = scrub(forms, in);
  ASSERT_EQ(expected.find(v), std::string::npos);
  for (std::size_t i = 0; i <= in.size(); i += 2) {
    for (std::size_t j = i; j <= in.size(); j += 5) {
      ResponseScrubber framed(forms), plain(forms);
      std::string out, dechunked, tail;
      for (const std::string_view part : {std::string_view(in).substr(0, i), std::string_view(in).substr(i, j - i),
                                          std::string_view(in).substr(j)}) {
        std::string want, got;
        plain.feed(part, want);
        framed.feed_chunk(part, got);
        if (want.empty()) {
          ASSERT_TRUE(got.empty()) << i << " " << j;
          continue;
        }
        std::string line(20, '\0');
        line.resize(static_cast<std::size_t>(std::snprintf(line.data(), line.size(), "%zx\r\n", want.size())));
        ASSERT_TRUE(SameBytes(got, line + want + "\r\n")) << "split at " << i << " and " << j;
        dechunked += want;
      }
      framed.flush(tail);
      dechunked += tail;
      ASSERT_TRUE(SameBytes(dechunked, expected)) << "split at " << i << " and " << j;
    }
  }
}

// A reader that reads straight into its output buffer (the gateway's plain bodies): each part
// lands at the end of `buf`, after room for the held bytes, and is scrubbed there; a flush
// follows the parts marked in `flush_after` (a pause).
struct InPlaceRun {
  std::string out;
  std::uint64_t masked = 0;
  bool tail_wiped = true;  // nothing of a part beyond the output stayed in the buffer
};
InPlaceRun scrub_parts_in_place(const ScrubForms& forms, const std::vector<std::string_view>& parts,
                                const std::vector<bool>& flush_after, std::string_view value) {
  ResponseScrubber s(forms);
  InPlaceRun run;
  std::string& buf = run.out;
  buf.assign(4096, '\0');  // the storage starts zeroed (the heap may hold the test's own copies)
  buf.clear();
  for (std::size_t k = 0; k < parts.size(); ++k) {
    const std::size_t at = buf.size() + s.pending();
    buf.resize(at);  // the room: its bytes are the scrubber's to fill
    buf.append(parts[k]);
    s.scrub_in_place(buf, at);
    // The storage past the output (room and tail) was wiped: no piece of the value (4 bytes or
    // more) is left there. Reads within capacity: the string's own allocation.
    const std::string_view storage(buf.data(), buf.capacity());
    for (std::size_t i = buf.size(); i + 4 <= storage.size() && value.size() >= 4; ++i) {
      if (storage.substr(i, 4) == value.substr(0, 4)) run.tail_wiped = false;
    }
    if (k < flush_after.size() && flush_after[k]) s.flush(buf);
  }
  s.flush(buf);
  run.masked = s.masked_bytes();
  return run;
}
std::pair<std::string, std::uint64_t> scrub_parts(const ScrubForms& forms, const std::vector<std::string_view>& parts,
                                                  const std::vector<bool>& flush_after) {
  ResponseScrubber s(forms);
  std::string out;
  for (std::size_t k = 0; k < parts.size(); ++k) {
    s.feed(parts[k], out);
    if (k < flush_after.size() && flush_after[k]) s.flush(out);
  }
  s.flush(out);
  return {out, s.masked_bytes()};
}

// scrub_in_place gives feed()'s output and count at every pair of split points, with and
// without a pause after the first part: values cut at buffer boundaries, held bytes put back
// in the room before the next part, held bytes already emitted by a flush, overlapping
// occurrences (matching reads bytes that masking overwrites), and no tail left unwiped.
TEST(ResponseScrubber, ScrubInPlaceIsFeedAtEverySplit) {
  const std::string v = make_value(20);
  const std::string periodic = "q7Zq7Zq7Zq7Z";  // overlaps itself every 3 bytes
  const ScrubForms forms = forms_of({v, periodic});
  const std::vector<std::string> inputs = {
      "ab" + v + "cd" + base64(v) + v.substr(0, 5) + "xy" + v + v.substr(0, 7),
      v + v + "." + periodic + "q7Zq7Z" + ".." + v.substr(0, 3),
      "q7Zq7Zq7Zq7Zq7Zq7Zq7Zq7Zq" + v,
  };
  for (const std::string& in : inputs) {
    const std::string_view sv(in);
    for (const bool pause : {false, true}) {
      for (std::size_t i = 0; i <= in.size(); ++i) {
        for (std::size_t j = i; j <= in.size(); j += (pause ? 3 : 1)) {
          const std::vector<std::string_view> parts = {sv.substr(0, i), sv.substr(i, j - i), sv.substr(j)};
          const std::vector<bool> flushes = {pause, false, false};
          const auto [want, want_masked] = scrub_parts(forms, parts, flushes);
          const InPlaceRun got = scrub_parts_in_place(forms, parts, flushes, v);
          ASSERT_TRUE(SameBytes(got.out, want)) << "split at " << i << " and " << j << (pause ? ", paused" : "");
          ASSERT_EQ(got.masked, want_masked) << i << " " << j;
          ASSERT_TRUE(got.tail_wiped) << "split at " << i << " and " << j << (pause ? ", paused" : "") << " input " << (&in - inputs.data());
        }
      }
    }
    EXPECT_EQ(scrub(forms, in).find(v), std::string::npos);
  }
}

// Every overlapping occurrence is masked in place, as feed() masks them (a match found after an
// earlier one was marked still sees the original bytes).
TEST(ResponseScrubber, ScrubInPlaceMasksOverlappingOccurrences) {
  const std::string periodic = "k2Mk2Mk2Mk2M";
  const ScrubForms forms = forms_of({periodic});
  const std::string in = "<" + periodic + "k2Mk2Mk2M>";
  ResponseScrubber s(forms);
  std::string buf = in;
  s.scrub_in_place(buf, 0);
  s.flush(buf);
  EXPECT_TRUE(SameBytes(buf, "<" + stars(in.size() - 2) + ">"));
}

TEST(ResponseScrubber, ScrubInPlaceWithoutFormsLeavesBytes) {
  const ScrubForms forms = forms_of({});
  ResponseScrubber s(forms);
  std::string buf = "out:hello";
  s.scrub_in_place(buf, 4);
  EXPECT_EQ(buf, "out:hello");
  EXPECT_EQ(s.pending(), 0u);
}

TEST(ResponseScrubber, FeedChunkWithoutFormsPassesBytesAsOneChunk) {
  const ScrubForms forms = forms_of({});
  ResponseScrubber s(forms);
  std::string out;
  s.feed_chunk("hello", out);
  s.feed_chunk("", out);
  EXPECT_EQ(out, "5\r\nhello\r\n");
}

}  // namespace
}  // namespace airlock::http
