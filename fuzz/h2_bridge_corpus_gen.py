#!/usr/bin/python3
"""Writes the seed corpus of fuzz/gateway_h2_bridge_fuzz.cpp: guest byte streams produced by
python3-h2 (an independent HTTP/2 client), with placeholders in headers, the query and DATA, on
streams aimed at the SNI and at another authority, indexed and reused through HPACK, and header
blocks large enough for CONTINUATION. Run from the repository root: fuzz/h2_bridge_corpus_gen.py

Each file: control byte (bit 0: SNI evil.example; bit 1: block-and-terminate; bit 2: the guest
pauses after each piece), piece-size byte,
then the guest's bytes."""
import os

import h2.config
import h2.connection

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "gateway_h2_bridge")


def client():
    c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    c.initiate_connection()
    return c


def req(authority, path="/v1", extra=()):
    return [(":method", "GET"), (":scheme", "https"), (":authority", authority), (":path", path), *extra]


def write(name, control, data, piece=255):
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(bytes([control, piece]) + data)


def main():
    c = client()
    c.send_headers(1, req("api.example.com", "/v1?k=$MSB_A", [("authorization", "Bearer $MSB_A")]), end_stream=True)
    write("header_and_query", 0, c.data_to_send())

    c = client()
    c.send_headers(1, req("api.example.com", extra=[("x-key", "$MSB_A")]), end_stream=True)
    c.send_headers(3, req("evil.example", extra=[("x-key", "$MSB_A")]), end_stream=True)
    c.send_headers(5, req("api.example.com", extra=[("x-key", "$MSB_A")]), end_stream=True)
    write("hpack_reuse_mismatch", 0, c.data_to_send(), 40)

    c = client()
    head = [(":method", "POST"), (":scheme", "https"), (":authority", "api.example.com"), (":path", "/p"),
            ("content-type", "application/json")]
    c.send_headers(1, head)
    c.send_data(1, b'{"k":"$MSB_')
    c.send_data(1, b'A","x":1}', end_stream=True)
    data = c.data_to_send()
    write("body_split", 0, data, 7)
    write("body_split_paused", 4, data, 5)  # the guest pauses after each piece: held bytes leave

    c = client()
    c.send_headers(1, req("evil.example", extra=[("x-pad", "".join(chr(35 + (i * 7) % 90) for i in range(20000))), ("x-key", "$MSB_B")]), end_stream=True)
    write("continuation_evil", 1, c.data_to_send())

    c = client()
    c.send_headers(1, [(":method", "POST"), (":scheme", "https"), (":authority", "api.example.com"),
                       (":path", "/pkg.Svc/Call"), ("content-type", "application/grpc"), ("te", "trailers"),
                       ("authorization", "Bearer $MSB_A")])
    c.send_data(1, b"\x00\x00\x00\x00\x04ping")
    c.send_headers(1, [("grpc-x", "$MSB_B")], end_stream=True)
    write("grpc_trailers_terminate", 2, c.data_to_send())


if __name__ == "__main__":
    main()
