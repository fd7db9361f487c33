// O_DIRECT is a GNU extension in <fcntl.h>.
#define _GNU_SOURCE
#include <fcntl.h>
#include "sluice_shims.h"

long sluice_bio_pending(BIO *bio) { return BIO_pending(bio); }
long sluice_ssl_set_tlsext_host_name(SSL *ssl, const char *name) { return SSL_set_tlsext_host_name(ssl, name); }
long sluice_ssl_ctx_set_mode(SSL_CTX *ctx, long mode) { return SSL_CTX_set_mode(ctx, mode); }
long sluice_ssl_ctx_set_min_proto_version(SSL_CTX *ctx, int version) { return SSL_CTX_set_min_proto_version(ctx, version); }
long sluice_ssl_ctx_set_max_proto_version(SSL_CTX *ctx, int version) { return SSL_CTX_set_max_proto_version(ctx, version); }
int sluice_ssl_ctx_set_alpn_protos(SSL_CTX *ctx, const unsigned char *protos, unsigned int len) { return SSL_CTX_set_alpn_protos(ctx, protos, len); }
int sluice_inflate_init2(z_stream *stream, int window_bits) { return inflateInit2(stream, window_bits); }
int sluice_deflate_init2(z_stream *stream, int level, int window_bits) {
    return deflateInit2(stream, level, Z_DEFLATED, window_bits, 8, Z_DEFAULT_STRATEGY);
}
int sluice_mallopt(int param, int value) { return mallopt(param, value); }
int sluice_o_direct(void) { return O_DIRECT; }
