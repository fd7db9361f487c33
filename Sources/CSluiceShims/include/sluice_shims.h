// Functions for the C macros Swift cannot import (OpenSSL, zlib, glibc).
// Each is a one-line wrapper; there is no logic here.
#ifndef SLUICE_SHIMS_H
#define SLUICE_SHIMS_H

#include <openssl/ssl.h>
#include <openssl/bio.h>
#include <zlib.h>
#include <malloc.h>

long sluice_bio_pending(BIO *bio);
long sluice_ssl_set_tlsext_host_name(SSL *ssl, const char *name);
long sluice_ssl_ctx_set_mode(SSL_CTX *ctx, long mode);
long sluice_ssl_ctx_set_min_proto_version(SSL_CTX *ctx, int version);
long sluice_ssl_ctx_set_max_proto_version(SSL_CTX *ctx, int version);
int sluice_ssl_ctx_set_alpn_protos(SSL_CTX *ctx, const unsigned char *protos, unsigned int len);
/// zlib's `inflateInit2` is a macro that passes the library version and struct size.
int sluice_inflate_init2(z_stream *stream, int window_bits);
/// zlib's `deflateInit2` is a macro too.
int sluice_deflate_init2(z_stream *stream, int level, int window_bits);

/// glibc's mallopt and the two parameters Sluice tunes (macros in malloc.h).
int sluice_mallopt(int param, int value);
enum { SLUICE_M_MMAP_THRESHOLD = M_MMAP_THRESHOLD, SLUICE_M_ARENA_MAX = M_ARENA_MAX };

/// open(2)'s O_DIRECT, which <fcntl.h> defines only with _GNU_SOURCE (and per architecture).
int sluice_o_direct(void);

#endif
