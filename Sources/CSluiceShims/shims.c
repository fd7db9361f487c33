// O_DIRECT is a GNU extension in <fcntl.h>.
#define _GNU_SOURCE
#include <fcntl.h>
#include <errno.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <stdint.h>
#include <linux/aio_abi.h>
#include <linux/magic.h>
#include <linux/tcp.h>
#include <stddef.h>
#include <sys/vfs.h>
#include <time.h>
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
int sluice_is_tmpfs(int fd) {
    struct statfs info;
    return fstatfs(fd, &info) == 0 ? info.f_type == TMPFS_MAGIC : -errno;
}
long long sluice_tcp_info_bytes_received(const void *info, unsigned length) {
    if (length < offsetof(struct tcp_info, tcpi_bytes_received) + sizeof(__u64)) return -1;
    return (long long)((const struct tcp_info *)info)->tcpi_bytes_received;
}
int sluice_fallocate(int fd, long long length) { return fallocate(fd, 0, 0, (off_t)length) == 0 ? 0 : -errno; }

int sluice_aio_setup(unsigned events, unsigned long *context) {
    aio_context_t ctx = 0;
    if (syscall(SYS_io_setup, events, &ctx) != 0) return -errno;
    *context = ctx;
    return 0;
}
int sluice_aio_destroy(unsigned long context) { return syscall(SYS_io_destroy, (aio_context_t)context) == 0 ? 0 : -errno; }
int sluice_aio_pwrite(unsigned long context, int fd, const void *buffer, size_t length, long long offset) {
    // The kernel copies the control block during io_submit.
    struct iocb cb = { .aio_fildes = (__u32)fd, .aio_lio_opcode = IOCB_CMD_PWRITE,
                       .aio_buf = (__u64)(uintptr_t)buffer, .aio_nbytes = length, .aio_offset = offset };
    struct iocb *list[1] = { &cb };
    long n;
    do { n = syscall(SYS_io_submit, (aio_context_t)context, 1L, list); } while (n < 0 && errno == EINTR);
    return n == 1 ? 0 : (n < 0 ? -errno : -EAGAIN);
}
int sluice_aio_reap(unsigned long context, int wait, long long *result) {
    struct io_event event;
    struct timespec none = { 0, 0 };
    long n;
    do { n = syscall(SYS_io_getevents, (aio_context_t)context, wait ? 1L : 0L, 1L, &event, wait ? NULL : &none); } while (n < 0 && errno == EINTR);
    if (n < 0) return -errno;
    if (n == 1) *result = (long long)event.res;
    return (int)n;
}
