// Bodies here are made up by the tests; failures report sizes and error names, never bodies.
#include <http/content_coding.hpp>

#include <gtest/gtest.h>
#include <zlib.h>
#include <zstd.h>

#include <random>
#include <string>
#include <vector>

namespace airlock::http {
namespace {

constexpr Coding kAll[] = {Coding::kGzip, Coding::kDeflate, Coding::kBrotli, Coding::kZstd};

std::string text(std::size_t n) {
  std::mt19937 rng(7);
  const std::string words[] = {"{\"id\":", "42,", "\"name\":", "\"x\",", "lorem ", "ipsum ", "\n"};
  std::string s;
  while (s.size() < n) s += words[rng() % std::size(words)];
  s.resize(n);
  return s;
}

std::string encoded(Coding c, std::string_view in) {
  std::string out;
  EXPECT_EQ(encode_all({c}, in, out), CodingError::kNone);
  return out;
}

// Feeds `in` in pieces of `step` bytes.
CodingError decode_in_steps(const std::vector<Coding>& codings, std::string_view in, std::size_t step,
                            std::string& out, const CodingLimits& limits = {}) {
  out.clear();
  ContentDecoder d(codings, limits);
  for (std::size_t at = 0; at < in.size(); at += step) {
    if (CodingError e = d.feed(in.substr(at, step), out); e != CodingError::kNone) return e;
  }
  return d.finish(out);
}

std::string raw_deflate(std::string_view in) {
  z_stream z{};
  EXPECT_EQ(deflateInit2(&z, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY), Z_OK);
  std::string out(deflateBound(&z, in.size()) + 16, '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  z.avail_in = static_cast<uInt>(in.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  EXPECT_EQ(deflate(&z, Z_FINISH), Z_STREAM_END);
  out.resize(out.size() - z.avail_out);
  deflateEnd(&z);
  return out;
}

TEST(ContentCoding, RoundTripEveryCodingWholeAndByteByByte) {
  const std::string body = text(100000);
  for (Coding c : kAll) {
    const std::string enc = encoded(c, body);
    EXPECT_LT(enc.size(), body.size()) << coding_name(c);
    std::string out;
    ASSERT_EQ(decode_all({c}, enc, {}, out), CodingError::kNone) << coding_name(c);
    EXPECT_TRUE(out == body) << coding_name(c);
    ASSERT_EQ(decode_in_steps({c}, enc, 1, out), CodingError::kNone) << coding_name(c);
    EXPECT_TRUE(out == body) << coding_name(c);
    ASSERT_EQ(decode_in_steps({c}, enc, 777, out), CodingError::kNone) << coding_name(c);
    EXPECT_TRUE(out == body) << coding_name(c);
  }
}

TEST(ContentCoding, DeflateRawAndZlibWrappedBothDecode) {
  const std::string body = text(5000);
  std::string out;
  for (std::size_t step : {std::size_t{1}, std::size_t{2}, std::size_t{4096}}) {
    ASSERT_EQ(decode_in_steps({Coding::kDeflate}, raw_deflate(body), step, out), CodingError::kNone) << step;
    EXPECT_TRUE(out == body);
    ASSERT_EQ(decode_in_steps({Coding::kDeflate}, encoded(Coding::kDeflate, body), step, out), CodingError::kNone);
    EXPECT_TRUE(out == body);
  }
}

TEST(ContentCoding, LayeredCodingsUndoneInReverseOrder) {
  const std::string body = text(20000);
  std::string enc;
  ASSERT_EQ(encode_all({Coding::kGzip, Coding::kBrotli}, body, enc), CodingError::kNone);
  std::string out;
  ASSERT_EQ(decode_in_steps({Coding::kGzip, Coding::kBrotli}, enc, 100, out), CodingError::kNone);
  EXPECT_TRUE(out == body);
  EXPECT_NE(decode_all({Coding::kBrotli, Coding::kGzip}, enc, {}, out), CodingError::kNone);
}

TEST(ContentCoding, ConcatenatedGzipMembersAndZstdFrames) {
  const std::string a = text(3000), b = text(1234);
  std::string out;
  ASSERT_EQ(decode_in_steps({Coding::kGzip}, encoded(Coding::kGzip, a) + encoded(Coding::kGzip, b), 5, out), CodingError::kNone);
  EXPECT_TRUE(out == a + b);
  ASSERT_EQ(decode_in_steps({Coding::kZstd}, encoded(Coding::kZstd, a) + encoded(Coding::kZstd, b), 5, out), CodingError::kNone);
  EXPECT_TRUE(out == a + b);
}

TEST(ContentCoding, TruncatedStreamIsAnError) {
  const std::string body = text(50000);
  for (Coding c : kAll) {
    const std::string enc = encoded(c, body);
    for (std::size_t cut : {std::size_t{1}, enc.size() / 2, enc.size() - 1}) {
      std::string out;
      EXPECT_EQ(decode_in_steps({c}, std::string_view(enc).substr(0, cut), 64, out), CodingError::kTruncated)
          << coding_name(c) << " cut at " << cut;
    }
  }
}

TEST(ContentCoding, CorruptStreamAndTrailingBytesAreErrors) {
  const std::string body = text(50000);
  for (Coding c : kAll) {
    std::string enc = encoded(c, body);
    std::string out;
    EXPECT_NE(decode_all({c}, enc + "garbage!", {}, out), CodingError::kNone) << coding_name(c);
    for (std::size_t i = enc.size() / 3; i < enc.size() / 3 + 8; ++i) enc[i] = static_cast<char>(enc[i] ^ 0x5A);
    EXPECT_NE(decode_all({c}, enc, {}, out), CodingError::kNone) << coding_name(c);
  }
  std::string out;
  EXPECT_NE(decode_all({Coding::kGzip}, "this is not gzip at all", {}, out), CodingError::kNone);
}

TEST(ContentCoding, EmptyBodyStaysEmpty) {
  for (Coding c : kAll) {
    std::string out;
    EXPECT_EQ(decode_all({c}, "", {}, out), CodingError::kNone);
    EXPECT_TRUE(out.empty());
  }
}

// A zip bomb: 256 MiB of zeros compress to a few hundred KiB; the decoder stops at the ratio
// cap with output bounded by cap + one step, whatever the coding, fed whole or in pieces.
TEST(ContentCoding, ZipBombStopsAtTheRatioCapWithBoundedOutput) {
  const std::string zeros(std::size_t{64} << 20, '\0');
  for (Coding c : kAll) {
    const std::string bomb = encoded(c, zeros);
    CodingLimits limits;
    limits.max_ratio = 100;
    limits.max_output = std::size_t{1} << 30;
    std::string out;
    ContentDecoder d({c}, limits);
    CodingError e = CodingError::kNone;
    std::size_t fed = 0;
    for (std::size_t at = 0; at < bomb.size() && e == CodingError::kNone; at += 4096) {
      const std::string_view piece = std::string_view(bomb).substr(at, 4096);
      fed += piece.size();
      e = d.feed(piece, out);
    }
    EXPECT_EQ(e, CodingError::kRatioCap) << coding_name(c) << " compressed " << bomb.size();
    EXPECT_LE(out.size(), 100 * fed + kRatioSlack + (16u << 10) * 2) << coding_name(c);
    EXPECT_EQ(d.feed("x", out), CodingError::kRatioCap);  // sticky
  }
}

TEST(ContentCoding, OutputCap) {
  const std::string body = text(1 << 20);
  for (Coding c : kAll) {
    CodingLimits limits;
    limits.max_output = 100000;
    std::string out;
    EXPECT_EQ(decode_all({c}, encoded(c, body), limits, out), CodingError::kOutputCap) << coding_name(c);
    EXPECT_LE(out.size(), 100000u + 2 * (16u << 10));
  }
}

TEST(ContentCoding, ZstdFrameAskingForAHugeWindowIsRefused) {
  // Streamed (size unknown to the encoder), so the frame keeps the 128 MiB window it asks for.
  const std::string body = text(1 << 20);
  ZSTD_CCtx* cctx = ZSTD_createCCtx();
  ASSERT_NE(cctx, nullptr);
  ZSTD_CCtx_setParameter(cctx, ZSTD_c_windowLog, 27);
  std::string enc(ZSTD_compressBound(body.size()) + 1024, '\0');
  ZSTD_outBuffer o{enc.data(), enc.size(), 0};
  ZSTD_inBuffer first{body.data(), body.size() / 2, 0};
  ZSTD_compressStream2(cctx, &o, &first, ZSTD_e_continue);
  ZSTD_inBuffer second{body.data() + body.size() / 2, body.size() - body.size() / 2, 0};
  ASSERT_EQ(ZSTD_compressStream2(cctx, &o, &second, ZSTD_e_end), 0u);
  enc.resize(o.pos);
  ZSTD_freeCCtx(cctx);
  std::string out;
  EXPECT_EQ(decode_all({Coding::kZstd}, enc, {}, out), CodingError::kCorrupt);
}

TEST(ContentCoding, ParseContentEncoding) {
  std::vector<Coding> c;
  EXPECT_EQ(parse_content_encoding("gzip", c), CodingError::kNone);
  EXPECT_EQ(c, std::vector<Coding>{Coding::kGzip});
  EXPECT_EQ(parse_content_encoding(" X-GZIP , identity,, br ,zstd,Deflate", c), CodingError::kNone);
  EXPECT_EQ(c, (std::vector<Coding>{Coding::kGzip, Coding::kBrotli, Coding::kZstd, Coding::kDeflate}));
  EXPECT_EQ(parse_content_encoding("", c), CodingError::kNone);
  EXPECT_TRUE(c.empty());
  EXPECT_EQ(parse_content_encoding("identity", c), CodingError::kNone);
  EXPECT_TRUE(c.empty());
  EXPECT_EQ(parse_content_encoding("compress", c), CodingError::kUnknownCoding);
  EXPECT_EQ(parse_content_encoding("gzip, aes128gcm", c), CodingError::kUnknownCoding);
  EXPECT_EQ(parse_content_encoding("gzip,gzip,gzip,gzip,gzip", c), CodingError::kTooManyCodings);
}

}  // namespace
}  // namespace airlock::http
