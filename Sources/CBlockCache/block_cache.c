#include "sluice_block_cache.h"

#include <malloc.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

enum { MIN_BLOCK = 128 * 1024, SLOTS = 16, LIMIT = 32 * 1024 * 1024 };

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static void *slots[SLOTS];
static size_t slot_sizes[SLOTS];
static size_t cached_bytes;

void *sluice_block_take(size_t size, size_t *usable) {
    if (size < MIN_BLOCK) return NULL;
    int best = -1;
    pthread_mutex_lock(&lock);
    for (int i = 0; i < SLOTS; i++) {
        if (slots[i] == NULL || slot_sizes[i] < size || slot_sizes[i] - slot_sizes[i] / 5 > size) continue;
        if (best < 0 || slot_sizes[i] < slot_sizes[best]) best = i;
    }
    void *block = NULL;
    if (best >= 0) {
        block = slots[best];
        *usable = slot_sizes[best];
        cached_bytes -= slot_sizes[best];
        slots[best] = NULL;
    }
    pthread_mutex_unlock(&lock);
    return block;
}

void sluice_block_put(void *block) {
    if (block == NULL) return;
    size_t size = malloc_usable_size(block);
    if (size >= MIN_BLOCK) {
        pthread_mutex_lock(&lock);
        if (cached_bytes + size <= LIMIT) {
            for (int i = 0; i < SLOTS; i++) {
                if (slots[i] != NULL) continue;
                slots[i] = block;
                slot_sizes[i] = size;
                cached_bytes += size;
                block = NULL;
                break;
            }
        }
        pthread_mutex_unlock(&lock);
    }
    free(block);
}

void *sluice_block_malloc(size_t size) {
    size_t usable;
    void *block = sluice_block_take(size, &usable);
    return block != NULL ? block : malloc(size);
}

void *sluice_block_realloc(void *block, size_t old_size, size_t new_size) {
    (void)old_size;
    return realloc(block, new_size);
}

void sluice_block_free(void *block) { sluice_block_put(block); }

void sluice_block_copy(void *destination, const void *source, size_t count) { memcpy(destination, source, count); }
