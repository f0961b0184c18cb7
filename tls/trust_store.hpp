#pragma once
// A PKCS12 trust store that Java reads (javax.net.ssl.trustStore, or in place of a JDK's cacerts):
// every certificate of a PEM bundle as a trusted entry. Pure: certificate blocks are base64-decoded
// and wrapped as they are, never parsed (OpenSSL would decode each public key: ~35 ms for a
// system bundle, against ~1 ms here).
#include <cstddef>
#include <string>
#include <string_view>

namespace airlock::tls {

// DER of a PFX v3 with one unencrypted safe of certBags, each with a friendlyName
// ("airlock-trust-N") and Oracle's trusted-key-usage attribute (anyExtendedKeyUsage), which Java
// requires of a certificate without a key; no MAC (Java checks none without a password and only
// one that is present with one). Blocks that are not base64 of a DER SEQUENCE are skipped; empty
// when no certificate is left.
std::string java_trust_store(std::string_view pem_bundle);

// The same in two steps, so that the system's certificates can be wrapped once, early, and the
// gateway's CA added later: the safe's bags so far and how many.
struct TrustedBags {
  std::string der;
  std::size_t count = 0;
};
void add_trusted_certificates(TrustedBags& bags, std::string_view pem);
std::string java_trust_store(const TrustedBags& bags);

}  // namespace airlock::tls
