#include <http/content_coding.hpp>
#include <http/wiping_alloc.hpp>

#include <brotli/decode.h>
#include <brotli/encode.h>
#include <zlib.h>
#define ZSTD_STATIC_LINKING_ONLY  // ZSTD_customMem: the coder's state is wiped when freed
#include <zstd.h>
#include <openssl/crypto.h>

#include <algorithm>
#include <cctype>

namespace airlock::http {
namespace {

const ZSTD_customMem kWipingMem = {wiping_alloc, wiping_free, nullptr};

// Output is produced in steps of this size, and the caps are checked after each: one feed can
// overshoot a cap by at most a step, whatever it holds.
constexpr std::size_t kStep = 16u << 10;
// zstd frames may ask for a window up to 2^31 bytes; 2^23 (8 MiB) bounds the decoder's memory.
constexpr int kZstdWindowLogMax = 23;

// The caps of one stage: bytes in against bytes out.
struct Bounds {
  CodingLimits limits;
  std::uint64_t in = 0, out = 0;
  // Counts n bytes just appended to `buf`; over the output cap, trims `buf` to end exactly at
  // the cap, so what was decoded before the error does not depend on how input was cut.
  CodingError add_out(std::size_t n, std::string& buf) {
    out += n;
    if (out > limits.max_output) {
      buf.resize(buf.size() - static_cast<std::size_t>(out - limits.max_output));
      out = limits.max_output;
      return CodingError::kOutputCap;
    }
    if (out > limits.max_ratio * in + kRatioSlack) return CodingError::kRatioCap;
    return CodingError::kNone;
  }
};

// Grows `out` by a step to decode into; give_back() trims what was not written.
struct OutStep {
  std::string& out;
  std::size_t old;
  explicit OutStep(std::string& o) : out(o), old(o.size()) { out.resize(old + kStep); }
  unsigned char* data() { return reinterpret_cast<unsigned char*>(out.data() + old); }
  void give_back(std::size_t unused) { out.resize(out.size() - unused); }
};

class ZlibDecompressor final : public Decompressor {
 public:
  ZlibDecompressor(bool gzip, const CodingLimits& limits) : gzip_(gzip) { bounds_.limits = limits; }
  ~ZlibDecompressor() override {
    if (init_) inflateEnd(&z_);
  }

  CodingError feed(std::string_view in, std::string& out) override {
    if (error_ != CodingError::kNone) return error_;
    bounds_.in += in.size();
    if (!init_) {
      // "deflate" is zlib-wrapped by RFC 9110, raw in some servers: a zlib header (CM 8, a
      // window of at most 32 KiB, check bits) tells them apart. Wait for its two bytes.
      if (!gzip_) {
        const std::size_t take = std::min(in.size(), 2 - head_.size());
        head_.append(in.substr(0, take));
        in.remove_prefix(take);
        if (head_.size() < 2) return CodingError::kNone;
      }
      int window = 16 + 15;
      if (!gzip_) {
        const auto cmf = static_cast<unsigned char>(head_[0]), flg = static_cast<unsigned char>(head_[1]);
        window = (cmf & 0x0F) == 8 && (cmf >> 4) <= 7 && ((cmf << 8) | flg) % 31 == 0 ? 15 : -15;
      }
      use_wiping_allocator(z_);  // its window holds decoded bytes (an echo before it is masked)
      if (inflateInit2(&z_, window) != Z_OK) return error_ = CodingError::kNoMemory;
      init_ = true;
      if (!head_.empty()) {
        const std::string head = std::move(head_);
        head_.clear();
        if (CodingError e = run(head, out); e != CodingError::kNone) return error_ = e;
      }
    }
    if (CodingError e = run(in, out); e != CodingError::kNone) return error_ = e;
    return CodingError::kNone;
  }

  CodingError finish(std::string& out) override {
    (void)out;
    if (error_ != CodingError::kNone) return error_;
    if (bounds_.in == 0) return CodingError::kNone;  // an empty body stays empty
    if (!init_ || !ended_) return error_ = CodingError::kTruncated;
    return CodingError::kNone;
  }

 private:
  CodingError run(std::string_view in, std::string& out) {
    z_.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
    z_.avail_in = static_cast<uInt>(in.size());
    bool full = true;
    while (z_.avail_in > 0 || (full && !ended_)) {
      if (ended_) {
        // Bytes after the end: another gzip member (valid), anything else is not the body.
        if (!gzip_ || inflateReset(&z_) != Z_OK) return CodingError::kCorrupt;
        ended_ = false;
      }
      OutStep step(out);
      z_.next_out = step.data();
      z_.avail_out = static_cast<uInt>(kStep);
      const int r = inflate(&z_, Z_NO_FLUSH);
      const std::size_t produced = kStep - z_.avail_out;
      step.give_back(z_.avail_out);
      full = produced == kStep;
      if (r == Z_STREAM_END) {
        ended_ = true;
      } else if (r == Z_MEM_ERROR) {
        return CodingError::kNoMemory;
      } else if (r == Z_BUF_ERROR) {
        if (produced == 0) break;  // no progress possible: needs more input
      } else if (r != Z_OK) {
        return CodingError::kCorrupt;
      }
      if (CodingError e = bounds_.add_out(produced, out); e != CodingError::kNone) return e;
    }
    return CodingError::kNone;
  }

  bool gzip_;
  Bounds bounds_;
  z_stream z_{};
  bool init_ = false;
  bool ended_ = false;
  std::string head_;
  CodingError error_ = CodingError::kNone;
};

class BrotliDecompressor final : public Decompressor {
 public:
  explicit BrotliDecompressor(const CodingLimits& limits) : state_(BrotliDecoderCreateInstance(wiping_alloc, wiping_free, nullptr)) {
    bounds_.limits = limits;
  }
  ~BrotliDecompressor() override {
    if (state_ != nullptr) BrotliDecoderDestroyInstance(state_);
  }
  bool ok() const { return state_ != nullptr; }

  CodingError feed(std::string_view in, std::string& out) override {
    if (error_ != CodingError::kNone) return error_;
    bounds_.in += in.size();
    if (done_ && !in.empty()) return error_ = CodingError::kCorrupt;
    const auto* next_in = reinterpret_cast<const std::uint8_t*>(in.data());
    std::size_t avail_in = in.size();
    while (!done_) {
      OutStep step(out);
      std::uint8_t* next_out = step.data();
      std::size_t avail_out = kStep;
      const BrotliDecoderResult r = BrotliDecoderDecompressStream(state_, &avail_in, &next_in, &avail_out, &next_out, nullptr);
      step.give_back(avail_out);
      if (CodingError e = bounds_.add_out(kStep - avail_out, out); e != CodingError::kNone) return error_ = e;
      if (r == BROTLI_DECODER_RESULT_ERROR) return error_ = CodingError::kCorrupt;
      if (r == BROTLI_DECODER_RESULT_SUCCESS) {
        done_ = true;
        if (avail_in > 0) return error_ = CodingError::kCorrupt;
      }
      if (r == BROTLI_DECODER_RESULT_NEEDS_MORE_INPUT) break;
    }
    return CodingError::kNone;
  }

  CodingError finish(std::string&) override {
    if (error_ != CodingError::kNone) return error_;
    if (bounds_.in > 0 && !done_) return error_ = CodingError::kTruncated;
    return CodingError::kNone;
  }

 private:
  BrotliDecoderState* state_;
  Bounds bounds_;
  bool done_ = false;
  CodingError error_ = CodingError::kNone;
};

class ZstdDecompressor final : public Decompressor {
 public:
  explicit ZstdDecompressor(const CodingLimits& limits) : d_(ZSTD_createDStream_advanced(kWipingMem)) {
    bounds_.limits = limits;
    if (d_ != nullptr && ZSTD_isError(ZSTD_DCtx_setParameter(d_, ZSTD_d_windowLogMax, kZstdWindowLogMax))) {
      ZSTD_freeDStream(d_);
      d_ = nullptr;
    }
  }
  ~ZstdDecompressor() override {
    if (d_ != nullptr) ZSTD_freeDStream(d_);
  }
  bool ok() const { return d_ != nullptr; }

  CodingError feed(std::string_view in, std::string& out) override {
    if (error_ != CodingError::kNone) return error_;
    bounds_.in += in.size();
    ZSTD_inBuffer input{in.data(), in.size(), 0};
    std::size_t consumed = 0;
    for (;;) {
      OutStep step(out);
      ZSTD_outBuffer output{step.data(), kStep, 0};
      const std::size_t r = ZSTD_decompressStream(d_, &output, &input);
      step.give_back(kStep - output.pos);
      if (ZSTD_isError(r)) return error_ = CodingError::kCorrupt;
      if (CodingError e = bounds_.add_out(output.pos, out); e != CodingError::kNone) return error_ = e;
      // A call that moved nothing says nothing about the frame (a hint for the next one).
      if (input.pos > consumed || output.pos > 0) frame_done_ = r == 0;
      consumed = input.pos;
      if (input.pos == input.size && output.pos < kStep) break;
    }
    return CodingError::kNone;
  }

  CodingError finish(std::string&) override {
    if (error_ != CodingError::kNone) return error_;
    if (bounds_.in > 0 && !frame_done_) return error_ = CodingError::kTruncated;
    return CodingError::kNone;
  }

 private:
  ZSTD_DStream* d_;
  Bounds bounds_;
  bool frame_done_ = false;
  CodingError error_ = CodingError::kNone;
};

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// The encoders' state holds the plain bytes (a rewritten body with values): wiped when freed.
CodingError encode_one(Coding coding, std::string_view in, std::string& out) {
  out.clear();
  switch (coding) {
    case Coding::kGzip:
    case Coding::kDeflate: {
      z_stream z{};
      use_wiping_allocator(z);
      // deflate is written zlib-wrapped, as RFC 9110 defines it.
      if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, coding == Coding::kGzip ? 16 + 15 : 15, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
        return CodingError::kNoMemory;
      }
      out.resize(deflateBound(&z, static_cast<uLong>(in.size())) + 32);
      z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
      z.avail_in = static_cast<uInt>(in.size());
      z.next_out = reinterpret_cast<Bytef*>(out.data());
      z.avail_out = static_cast<uInt>(out.size());
      const int r = deflate(&z, Z_FINISH);
      out.resize(out.size() - z.avail_out);
      deflateEnd(&z);
      return r == Z_STREAM_END ? CodingError::kNone : CodingError::kNoMemory;
    }
    case Coding::kBrotli: {
      // The one-shot BrotliEncoderCompress cannot take an allocator: one stream call instead.
      std::size_t size = BrotliEncoderMaxCompressedSize(in.size());
      if (size == 0) size = in.size() + 1024;
      out.resize(size);
      BrotliEncoderState* s = BrotliEncoderCreateInstance(wiping_alloc, wiping_free, nullptr);
      if (s == nullptr) return CodingError::kNoMemory;
      BrotliEncoderSetParameter(s, BROTLI_PARAM_QUALITY, 5);
      BrotliEncoderSetParameter(s, BROTLI_PARAM_LGWIN, BROTLI_DEFAULT_WINDOW);
      BrotliEncoderSetParameter(s, BROTLI_PARAM_MODE, BROTLI_MODE_GENERIC);
      BrotliEncoderSetParameter(s, BROTLI_PARAM_SIZE_HINT, static_cast<std::uint32_t>(std::min<std::size_t>(in.size(), 1u << 30)));
      std::size_t avail_in = in.size(), avail_out = out.size();
      const auto* next_in = reinterpret_cast<const std::uint8_t*>(in.data());
      auto* next_out = reinterpret_cast<std::uint8_t*>(out.data());
      const bool ok = BrotliEncoderCompressStream(s, BROTLI_OPERATION_FINISH, &avail_in, &next_in, &avail_out, &next_out,
                                                  nullptr) &&
                      BrotliEncoderIsFinished(s);
      BrotliEncoderDestroyInstance(s);
      if (!ok) return CodingError::kNoMemory;
      out.resize(out.size() - avail_out);
      return CodingError::kNone;
    }
    case Coding::kZstd: {
      out.resize(ZSTD_compressBound(in.size()));
      ZSTD_CCtx* c = ZSTD_createCCtx_advanced(kWipingMem);
      if (c == nullptr) return CodingError::kNoMemory;
      const std::size_t r = ZSTD_compressCCtx(c, out.data(), out.size(), in.data(), in.size(), 3);
      ZSTD_freeCCtx(c);
      if (ZSTD_isError(r)) return CodingError::kNoMemory;
      out.resize(r);
      return CodingError::kNone;
    }
  }
  return CodingError::kUnknownCoding;
}

}  // namespace

std::string_view coding_name(Coding c) noexcept {
  switch (c) {
    case Coding::kGzip: return "gzip";
    case Coding::kDeflate: return "deflate";
    case Coding::kBrotli: return "br";
    case Coding::kZstd: return "zstd";
  }
  return "?";
}

std::string_view describe(CodingError e) noexcept {
  switch (e) {
    case CodingError::kNone: return "ok";
    case CodingError::kUnknownCoding: return "content coding not supported";
    case CodingError::kTooManyCodings: return "too many content codings";
    case CodingError::kCorrupt: return "compressed stream is corrupt";
    case CodingError::kTruncated: return "compressed stream is truncated";
    case CodingError::kOutputCap: return "decoded body above the size cap";
    case CodingError::kRatioCap: return "decompression ratio above the cap";
    case CodingError::kNoMemory: return "codec could not allocate";
  }
  return "?";
}

CodingError parse_content_encoding(std::string_view field, std::vector<Coding>& out) {
  out.clear();
  while (!field.empty()) {
    const std::size_t comma = field.find(',');
    const std::string name = lower(trim(field.substr(0, comma)));
    field.remove_prefix(comma == std::string_view::npos ? field.size() : comma + 1);
    if (name.empty() || name == "identity") continue;
    if (out.size() == kMaxCodings) return CodingError::kTooManyCodings;
    if (name == "gzip" || name == "x-gzip") {
      out.push_back(Coding::kGzip);
    } else if (name == "deflate") {
      out.push_back(Coding::kDeflate);
    } else if (name == "br") {
      out.push_back(Coding::kBrotli);
    } else if (name == "zstd") {
      out.push_back(Coding::kZstd);
    } else {
      return CodingError::kUnknownCoding;
    }
  }
  return CodingError::kNone;
}

std::unique_ptr<Decompressor> make_decompressor(Coding coding, const CodingLimits& limits) {
  switch (coding) {
    case Coding::kGzip:
    case Coding::kDeflate:
      return std::make_unique<ZlibDecompressor>(coding == Coding::kGzip, limits);
    case Coding::kBrotli: {
      auto d = std::make_unique<BrotliDecompressor>(limits);
      if (!d->ok()) return nullptr;
      return d;
    }
    case Coding::kZstd: {
      auto d = std::make_unique<ZstdDecompressor>(limits);
      if (!d->ok()) return nullptr;
      return d;
    }
  }
  return nullptr;
}

ContentDecoder::ContentDecoder(std::vector<Coding> codings, const CodingLimits& limits) : limits_(limits) {
  if (codings.size() > kMaxCodings) {
    error_ = CodingError::kTooManyCodings;
    return;
  }
  // The last coding applied is undone first.
  for (auto it = codings.rbegin(); it != codings.rend(); ++it) {
    auto d = make_decompressor(*it, limits);
    if (d == nullptr) {
      error_ = CodingError::kNoMemory;
      return;
    }
    stages_.push_back(std::move(d));
  }
}

CodingError ContentDecoder::run(std::string_view in, std::string& out, bool last) {
  if (error_ != CodingError::kNone) return error_;
  in_ += in.size();
  // What a stage decoded before an error still goes through the later stages and out, so a
  // caller that only scans (detection) sees every byte the stream decodes to before it fails.
  CodingError first = CodingError::kNone;
  std::string a(in), b;  // what the next stage reads, what it writes
  for (std::size_t i = 0; i < stages_.size(); ++i) {
    b.clear();
    CodingError e = stages_[i]->feed(a, b);
    if (e == CodingError::kNone && last && first == CodingError::kNone) e = stages_[i]->finish(b);
    if (first == CodingError::kNone) first = e;
    a.swap(b);
  }
  std::size_t keep = a.size();
  if (out_ + keep > limits_.max_output) {
    keep = static_cast<std::size_t>(limits_.max_output - std::min<std::uint64_t>(out_, limits_.max_output));
    if (first == CodingError::kNone) first = CodingError::kOutputCap;
  }
  out_ += keep;
  out.append(a, 0, keep);
  // Decoded bytes may hold an echoed value before the scrubber masks it.
  OPENSSL_cleanse(a.data(), a.size());
  OPENSSL_cleanse(b.data(), b.size());
  if (first == CodingError::kNone && out_ > limits_.max_ratio * in_ + kRatioSlack) first = CodingError::kRatioCap;
  return error_ = first;
}

CodingError ContentDecoder::feed(std::string_view in, std::string& out) { return run(in, out, false); }
CodingError ContentDecoder::finish(std::string& out) { return run({}, out, true); }

CodingError decode_all(const std::vector<Coding>& codings, std::string_view in, const CodingLimits& limits,
                       std::string& out) {
  out.clear();
  ContentDecoder d(codings, limits);
  if (CodingError e = d.feed(in, out); e != CodingError::kNone) return e;
  return d.finish(out);
}

// The layers between the plain body and the last coding are the encoder's own buffers; what they
// held (a coded form of a body that may hold values) is wiped before they are freed. The plain
// body itself is read where it is, never copied.
CodingError encode_all(const std::vector<Coding>& codings, std::string_view in, std::string& out) {
  const auto wipe_all = [](std::string& s) {
    OPENSSL_cleanse(s.data(), s.capacity());
    s.clear();
  };
  std::string current, next;
  std::string_view from = in;
  CodingError e = CodingError::kNone;
  for (Coding c : codings) {
    wipe_all(next);  // encode_one may reallocate it
    if ((e = encode_one(c, from, next)) != CodingError::kNone) break;
    wipe_all(current);
    current.swap(next);
    from = current;
  }
  wipe_all(next);
  if (e != CodingError::kNone) {
    wipe_all(current);
    return e;
  }
  if (codings.empty()) current.assign(in);
  wipe_all(out);
  out.swap(current);
  return CodingError::kNone;
}

}  // namespace airlock::http
