// A small cache of large freed memory blocks, shared by the decode arenas (COTLP)
// and the network buffers (SluiceNet's ByteBuffer allocator).
//
// Sluice pins glibc's mmap threshold at 128 KiB so that freed batches go back to
// the system and the resident size follows live data. The price: every large
// allocation is a fresh mapping, and each of its pages costs a page fault and
// zeroing when first touched; for a receiver decoding 400 KB requests that was a
// quarter of its CPU. Keeping freed blocks resident for the next request removes
// most of that cost. The cache holds at most 128 MiB (a disk log's readers keep
// batches longer than a memory log's, so more are in flight; at 32 MiB a tenth of
// its requests still faulted a fresh arena in), and `sluice_block_trim` gives back
// what load no longer uses, so an idle sidecar's resident size falls again.
#ifndef SLUICE_BLOCK_CACHE_H
#define SLUICE_BLOCK_CACHE_H

#include <stddef.h>

/// A block from the cache with room for at least `size` bytes and at most a quarter
/// more (arenas count what they hold), or NULL (then the caller mallocs). `*usable`
/// is set to its usable size.
void *sluice_block_take(size_t size, size_t *usable);
/// Keeps a malloc'd block for reuse when it is large and there is room, else frees it.
void sluice_block_put(void *block);

/// malloc/realloc/free through the cache, for allocators that take C functions.
void *sluice_block_malloc(size_t size);
void *sluice_block_realloc(void *block, size_t old_size, size_t new_size);
void sluice_block_free(void *block);
void sluice_block_copy(void *destination, const void *source, size_t count);

/// Frees the cached blocks nobody has taken for `idle_ms` milliseconds.
void sluice_block_trim(unsigned idle_ms);
/// Bytes held in the cache now.
size_t sluice_block_cached_bytes(void);

#endif
