#pragma once
// Helpers shared by the tls unit tests (and the gateway's): in-memory TLS handshakes and
// hand-built ClientHello bytes.
#include "tls/openssl_types.hpp"

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

namespace airlock::tls::testing {

// Runs a handshake between two SSL objects over an in-memory BIO pair. True when both finished.
inline bool handshake(SSL* client, SSL* server) {
  BIO* c = nullptr;
  BIO* s = nullptr;
  BIO_new_bio_pair(&c, 0, &s, 0);
  SSL_set_bio(client, c, c);
  SSL_set_bio(server, s, s);
  bool client_done = false, server_done = false;
  for (int i = 0; i < 64 && !(client_done && server_done); ++i) {
    if (!client_done) {
      int r = SSL_do_handshake(client);
      if (r == 1) client_done = true;
      else if (SSL_get_error(client, r) != SSL_ERROR_WANT_READ) return false;
    }
    if (!server_done) {
      int r = SSL_do_handshake(server);
      if (r == 1) server_done = true;
      else if (SSL_get_error(server, r) != SSL_ERROR_WANT_READ) return false;
    }
  }
  return client_done && server_done;
}

// A self-signed P-256 certificate (PEM) with subject CN=cn, valid for an hour.
inline std::string self_signed_pem(const char* cn) {
  EVP_PKEY* key = EVP_EC_gen("P-256");
  X509* cert = X509_new();
  X509_set_version(cert, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
  X509_gmtime_adj(X509_getm_notBefore(cert), 0);
  X509_gmtime_adj(X509_getm_notAfter(cert), 3600);
  X509_NAME* name = X509_get_subject_name(cert);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(cn), -1, -1, 0);
  X509_set_issuer_name(cert, name);
  X509_set_pubkey(cert, key);
  X509_sign(cert, key, EVP_sha256());
  BIO* mem = BIO_new(BIO_s_mem());
  PEM_write_bio_X509(mem, cert);
  char* data = nullptr;
  const long size = BIO_get_mem_data(mem, &data);
  std::string pem(data, static_cast<std::size_t>(size));
  BIO_free(mem);
  X509_free(cert);
  EVP_PKEY_free(key);
  return pem;
}

// The bytes a real OpenSSL client sends first (its ClientHello records).
inline std::string openssl_client_hello(const char* sni, const std::vector<std::string>& alpn) {
  SslCtxPtr ctx(SSL_CTX_new(TLS_client_method()));
  SslPtr ssl(SSL_new(ctx.get()));
  if (sni) SSL_set_tlsext_host_name(ssl.get(), sni);
  if (!alpn.empty()) {
    std::string wire;
    for (const auto& p : alpn) {
      wire.push_back(static_cast<char>(p.size()));
      wire += p;
    }
    SSL_set_alpn_protos(ssl.get(), reinterpret_cast<const unsigned char*>(wire.data()), static_cast<unsigned>(wire.size()));
  }
  BIO* rbio = BIO_new(BIO_s_mem());
  BIO* wbio = BIO_new(BIO_s_mem());
  SSL_set_bio(ssl.get(), rbio, wbio);
  SSL_set_connect_state(ssl.get());
  SSL_do_handshake(ssl.get());
  char* data = nullptr;
  long n = BIO_get_mem_data(wbio, &data);
  return std::string(data, static_cast<std::size_t>(n));
}

inline void put16(std::string& out, std::size_t v) {
  out.push_back(static_cast<char>((v >> 8) & 0xff));
  out.push_back(static_cast<char>(v & 0xff));
}

struct Extension {
  std::uint16_t type;
  std::string data;
};

inline Extension sni_extension(std::string_view name) {
  std::string entry;
  entry.push_back(0);
  put16(entry, name.size());
  entry += name;
  std::string data;
  put16(data, entry.size());
  data += entry;
  return {0, data};
}

inline Extension alpn_extension(const std::vector<std::string>& protocols) {
  std::string list;
  for (const auto& p : protocols) {
    list.push_back(static_cast<char>(p.size()));
    list += p;
  }
  std::string data;
  put16(data, list.size());
  data += list;
  return {16, data};
}

// A ClientHello handshake message (header included) with the given extensions.
inline std::string hello_message(const std::vector<Extension>& extensions, bool with_extensions = true) {
  std::string body;
  body += std::string("\x03\x03", 2);
  body += std::string(32, 'r');
  body.push_back(0);                        // session id
  body += std::string("\x00\x02\x13\x01", 4);  // one cipher suite
  body += std::string("\x01\x00", 2);       // null compression
  if (with_extensions) {
    std::string exts;
    for (const auto& e : extensions) {
      put16(exts, e.type);
      put16(exts, e.data.size());
      exts += e.data;
    }
    put16(body, exts.size());
    body += exts;
  }
  std::string msg;
  msg.push_back(1);
  msg.push_back(static_cast<char>((body.size() >> 16) & 0xff));
  put16(msg, body.size() & 0xffff);
  msg += body;
  return msg;
}

// Frames handshake bytes into records of at most `record_size` payload bytes.
inline std::string records(std::string_view handshake, std::size_t record_size = 16384, std::uint8_t type = 22) {
  std::string out;
  for (std::size_t i = 0; i < handshake.size(); i += record_size) {
    std::string_view part = handshake.substr(i, record_size);
    out.push_back(static_cast<char>(type));
    out += std::string("\x03\x01", 2);
    put16(out, part.size());
    out += part;
  }
  return out;
}

}  // namespace airlock::tls::testing
