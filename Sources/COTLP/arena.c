#include "sluice_arena.h"

#include <sluice_block_cache.h>

#include <stdlib.h>

typedef struct sluice_chunk {
    struct sluice_chunk *next;
    size_t capacity;
    size_t used;
    _Alignas(16) unsigned char data[];
} sluice_chunk;

struct sluice_arena {
    ProtobufCAllocator allocator;
    sluice_chunk *head;
    size_t next_chunk;
    size_t used;
    size_t reserved;
    size_t limit;
};

enum { DEFAULT_FIRST_CHUNK = 16 * 1024, MAX_CHUNK = 4 * 1024 * 1024 };

static void *arena_alloc_cb(void *data, size_t size) { return sluice_arena_alloc(data, size); }
static void arena_free_cb(void *data, void *pointer) { (void)data; (void)pointer; }

sluice_arena *sluice_arena_create(size_t first_chunk, size_t limit) {
    sluice_arena *arena = calloc(1, sizeof *arena);
    if (arena == NULL) return NULL;
    arena->allocator.alloc = arena_alloc_cb;
    arena->allocator.free = arena_free_cb;
    arena->allocator.allocator_data = arena;
    arena->next_chunk = first_chunk ? first_chunk : DEFAULT_FIRST_CHUNK;
    arena->limit = limit;
    return arena;
}

void sluice_arena_destroy(sluice_arena *arena) {
    if (arena == NULL) return;
    sluice_chunk *chunk = arena->head;
    while (chunk != NULL) {
        sluice_chunk *next = chunk->next;
        // Large chunks are kept for the next request (sluice_block_cache.h).
        sluice_block_put(chunk);
        chunk = next;
    }
    free(arena);
}

static sluice_chunk *new_chunk(sluice_arena *arena, size_t at_least) {
    size_t capacity = arena->next_chunk;
    if (capacity < at_least) capacity = at_least;
    size_t usable = 0;
    sluice_chunk *chunk = sluice_block_take(sizeof *chunk + capacity, &usable);
    if (chunk != NULL) {
        capacity = usable - sizeof *chunk;
        chunk->capacity = capacity;
    } else {
        chunk = malloc(sizeof *chunk + capacity);
        if (chunk == NULL) return NULL;
        chunk->capacity = capacity;
    }
    chunk->used = 0;
    arena->reserved += capacity;
    // Chunks double so a large request costs O(log n) mallocs, up to a ceiling
    // that keeps the unused tail of the last chunk small.
    if (arena->next_chunk < MAX_CHUNK) arena->next_chunk *= 2;
    return chunk;
}

void *sluice_arena_alloc(sluice_arena *arena, size_t size) {
    if (size == 0) size = 1;
    if (size > SIZE_MAX - 15) return NULL;
    size_t rounded = (size + 15) & ~(size_t)15;
    if (arena->limit != 0 && (rounded > arena->limit || arena->used > arena->limit - rounded)) return NULL;
    sluice_chunk *chunk = arena->head;
    if (chunk == NULL || chunk->capacity - chunk->used < rounded) {
        sluice_chunk *fresh = new_chunk(arena, rounded);
        if (fresh == NULL) return NULL;
        if (chunk != NULL && rounded > arena->next_chunk / 4) {
            // A large block gets a chunk of its own behind the current one, so the
            // current chunk's free space stays usable for small allocations.
            fresh->next = chunk->next;
            chunk->next = fresh;
        } else {
            fresh->next = chunk;
            arena->head = fresh;
        }
        chunk = fresh;
    }
    void *result = chunk->data + chunk->used;
    chunk->used += rounded;
    arena->used += rounded;
    return result;
}

void sluice_arena_set_next_chunk(sluice_arena *arena, size_t size) {
    arena->next_chunk = size ? size : DEFAULT_FIRST_CHUNK;
}

size_t sluice_arena_used(const sluice_arena *arena) { return arena->used; }
size_t sluice_arena_reserved(const sluice_arena *arena) { return arena->reserved; }
ProtobufCAllocator *sluice_arena_allocator(sluice_arena *arena) { return &arena->allocator; }
