// A Java trust store (PKCS12) from a PEM bundle: pure bytes in, bytes out.
#include "tls/trust_store.hpp"

#include "common/concat.hpp"
#include <array>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <vector>

namespace airlock::tls {
namespace {

// DER, written directly: OpenSSL would parse each of the ~150 system certificates into an X509
// (decoding its public key) only to encode it again, ~35 ms per start; a certBag carries the
// certificate's bytes as they are.
namespace der {

std::string length(std::size_t n) {
  if (n < 0x80) return std::string(1, static_cast<char>(n));
  std::string bytes;
  for (; n > 0; n >>= 8) bytes.insert(bytes.begin(), static_cast<char>(n & 0xff));
  return concat(std::string(1, static_cast<char>(0x80 | bytes.size())), bytes);
}
std::string tlv(unsigned char tag, const std::string& content) {
  return concat(std::string(1, static_cast<char>(tag)), length(content.size()), content);
}
std::string sequence(const std::string& c) { return tlv(0x30, c); }
std::string set(const std::string& c) { return tlv(0x31, c); }
std::string octets(const std::string& c) { return tlv(0x04, c); }
std::string explicit0(const std::string& c) { return tlv(0xa0, c); }
std::string oid(std::initializer_list<unsigned char> encoded) {
  return tlv(0x06, std::string(encoded.begin(), encoded.end()));
}

const std::string kData = oid({0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01});  // 1.2.840.113549.1.7.1
const std::string kCertBag = oid({0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x0c, 0x0a, 0x01, 0x03});  // pkcs-12 certBag
const std::string kX509Cert = oid({0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x16, 0x01});  // x509Certificate
const std::string kFriendlyName = oid({0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x14});  // 1.2.840.113549.1.9.20
// Oracle's trustedKeyUsage (2.16.840.1.113894.746875.1.1) and anyExtendedKeyUsage (2.5.29.37.0).
const std::string kTrustedKeyUsage = oid({0x60, 0x86, 0x48, 0x01, 0x86, 0xf9, 0x66, 0xad, 0xca, 0x7b, 0x01, 0x01});
const std::string kAnyExtendedKeyUsage = oid({0x55, 0x1d, 0x25, 0x00});

std::string bmp_string(const std::string& ascii) {
  std::string out;
  for (const char c : ascii) {
    out += '\0';
    out += c;
  }
  return tlv(0x1e, out);
}

}  // namespace der

// Base64 (RFC 4648, line breaks and spaces ignored) to bytes; nullopt on any other character,
// data after the padding, or a dangling partial byte.
std::optional<std::string> base64_decode(std::string_view text) {
  static constexpr auto kTable = [] {
    std::array<signed char, 256> t{};
    t.fill(-1);
    const char* alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (int i = 0; i < 64; ++i) t[static_cast<unsigned char>(alphabet[i])] = static_cast<signed char>(i);
    for (const char c : {'\n', '\r', ' ', '\t'}) t[static_cast<unsigned char>(c)] = -2;
    t['='] = -3;
    return t;
  }();
  std::string out(text.size() / 4 * 3 + 3, '\0');
  std::size_t n = 0;
  std::uint32_t acc = 0;
  int bits = 0, padding = 0;
  for (const char c : text) {
    const int v = kTable[static_cast<unsigned char>(c)];
    if (v >= 0) {
      if (padding > 0) return std::nullopt;
      acc = (acc << 6) | static_cast<std::uint32_t>(v);
      bits += 6;
      if (bits >= 8) {
        bits -= 8;
        out[n++] = static_cast<char>((acc >> bits) & 0xff);
      }
    } else if (v == -3) {
      ++padding;
    } else if (v == -1) {
      return std::nullopt;
    }
  }
  if (padding > 2 || bits >= 6) return std::nullopt;
  out.resize(n);
  return out;
}

// One whole DER SEQUENCE, by its header alone (what a certificate is on the outside): a block
// that decodes to anything else would make Java reject the whole store.
bool is_one_der_sequence(std::string_view der) {
  if (der.size() < 2 || static_cast<unsigned char>(der[0]) != 0x30) return false;
  const unsigned first = static_cast<unsigned char>(der[1]);
  std::size_t header = 2, length = first;
  if (first >= 0x80) {
    const std::size_t n = first & 0x7f;
    if (n == 0 || n > 4 || der.size() < 2 + n) return false;
    length = 0;
    for (std::size_t i = 0; i < n; ++i) length = (length << 8) | static_cast<unsigned char>(der[2 + i]);
    header += n;
  }
  return header + length == der.size();
}

// The DER of each certificate in a PEM text (decoded, not parsed: a block that is not base64 of
// one DER SEQUENCE is skipped).
std::vector<std::string> certificate_ders(std::string_view pem) {
  static constexpr std::string_view kBegin = "-----BEGIN CERTIFICATE-----";
  static constexpr std::string_view kEnd = "-----END CERTIFICATE-----";
  std::vector<std::string> out;
  std::size_t pos = 0;
  while ((pos = pem.find(kBegin, pos)) != std::string_view::npos) {
    const std::size_t start = pos + kBegin.size();
    const std::size_t end = pem.find(kEnd, start);
    if (end == std::string_view::npos) break;
    pos = end + kEnd.size();
    std::optional<std::string> der = base64_decode(pem.substr(start, end - start));
    if (!der || !is_one_der_sequence(*der)) continue;
    out.push_back(std::move(*der));
  }
  return out;
}

}  // namespace

void add_trusted_certificates(TrustedBags& bags, std::string_view pem) {
  using namespace der;
  for (const std::string& cert : certificate_ders(pem)) {
    // Java takes a certificate without a key as a trusted entry only when its bag carries the
    // trusted-key-usage attribute (what `keytool -importcert` and `openssl pkcs12 -jdktrust` add).
    const std::string attributes =
        sequence(kFriendlyName + set(bmp_string("airlock-trust-" + std::to_string(bags.count)))) +
        sequence(kTrustedKeyUsage + set(kAnyExtendedKeyUsage));
    bags.der += sequence(kCertBag + explicit0(sequence(kX509Cert + explicit0(octets(cert)))) + set(attributes));
    ++bags.count;
  }
}

std::string java_trust_store(const TrustedBags& bags) {
  using namespace der;
  if (bags.count == 0) return {};
  // PFX v3 whose authenticated safe holds one unencrypted data safe (certificates are public).
  // No MAC: without a password (javax.net.ssl.trustStorePassword unset) Java does not check one,
  // and with one (keytool -storepass changeit) it checks only a MAC that is there.
  //   PFX ::= SEQUENCE { version 3, ContentInfo { data, [0] OCTET STRING {
  //     AuthenticatedSafe ::= SEQUENCE OF ContentInfo { data, [0] OCTET STRING {
  //       SafeContents ::= SEQUENCE OF SafeBag (the bags) } } } } }
  // The headers are built from the inside out around the bags' size, then the bags are copied
  // once (each wrapper copying ~170 KB again cost more than the rest).
  struct Level {
    unsigned char tag;
    std::string before;  // what precedes the inner part inside this level
  };
  const Level levels[] = {{0x30, ""}, {0x04, ""}, {0xa0, ""}, {0x30, kData}, {0x30, ""},
                          {0x04, ""}, {0xa0, ""}, {0x30, kData}, {0x30, tlv(0x02, std::string(1, '\x03'))}};
  std::string prefix;
  std::size_t size = bags.der.size();
  for (const Level& level : levels) {
    const std::size_t content = level.before.size() + size;
    prefix.insert(0, concat(std::string(1, static_cast<char>(level.tag)), length(content), level.before));
    size = 1 + length(content).size() + content;
  }
  std::string out;
  out.reserve(prefix.size() + bags.der.size());
  out += prefix;
  out += bags.der;
  return out;
}

std::string java_trust_store(std::string_view pem_bundle) {
  TrustedBags bags;
  add_trusted_certificates(bags, pem_bundle);
  return java_trust_store(bags);
}

}  // namespace airlock::tls
