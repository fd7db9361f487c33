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

/// Whether `fd` is on tmpfs (fstatfs's TMPFS_MAGIC): 1, 0, or -errno.
int sluice_is_tmpfs(int fd);

/// Linux's tcp_info.tcpi_bytes_received (since 4.1; glibc's copy of the struct
/// stops before it) from the `length` bytes getsockopt(TCP_INFO) filled in, or -1
/// when they do not reach it.
long long sluice_tcp_info_bytes_received(const void *info, unsigned length);

/// fallocate(2) mode 0 (reserves blocks and sets the size), a GNU extension; 0 or -errno.
int sluice_fallocate(int fd, long long length);

/// Linux native AIO, which glibc does not wrap: io_setup, io_destroy, one pwrite
/// through io_submit (0 or -errno), and one completion from io_getevents, waited for
/// or not: 1 with its result (bytes written or -errno), 0 when there is none yet, or
/// -errno. A context is an `aio_context_t`.
int sluice_aio_setup(unsigned events, unsigned long *context);
int sluice_aio_destroy(unsigned long context);
int sluice_aio_pwrite(unsigned long context, int fd, const void *buffer, size_t length, long long offset);
int sluice_aio_reap(unsigned long context, int wait, long long *result);

#endif
