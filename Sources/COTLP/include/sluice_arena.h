// A bump allocator that protobuf-c unpacks into. Everything one request decodes
// lives in one arena and is released at once when the batch that owns it goes:
// `free` is a no-op, so protobuf-c's per-field frees cost nothing.
#ifndef SLUICE_ARENA_H
#define SLUICE_ARENA_H

#include <stddef.h>
#include <stdint.h>
#include <protobuf-c/protobuf-c.h>

typedef struct sluice_arena sluice_arena;

/// A new arena whose first chunk holds `first_chunk` bytes (0 picks a default).
/// `limit` caps the bytes the arena hands out in total (0 = no cap); past it every
/// allocation fails, which makes protobuf-c's unpack fail cleanly.
sluice_arena *sluice_arena_create(size_t first_chunk, size_t limit);
void sluice_arena_destroy(sluice_arena *arena);

/// 16-byte aligned memory that lives as long as the arena; NULL when out of memory
/// or over the limit.
void *sluice_arena_alloc(sluice_arena *arena, size_t size);

/// The size of the next chunk taken from the system (later ones still double).
void sluice_arena_set_next_chunk(sluice_arena *arena, size_t size);

/// Bytes handed out so far (what the decoded batch costs in memory).
size_t sluice_arena_used(const sluice_arena *arena);
/// Bytes reserved from the system, including unused chunk tails.
size_t sluice_arena_reserved(const sluice_arena *arena);

/// The protobuf-c allocator that draws from this arena. Valid while the arena is.
ProtobufCAllocator *sluice_arena_allocator(sluice_arena *arena);

#endif
