#include "sluice_block_cache.h"

#include <malloc.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { MIN_BLOCK = 128 * 1024, SLOTS = 48, LIMIT = 128 * 1024 * 1024 };

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static void *slots[SLOTS];
static size_t slot_sizes[SLOTS];
/// When each block was put, in CLOCK_MONOTONIC_COARSE milliseconds.
static long long slot_times[SLOTS];
static size_t cached_bytes;

static long long now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &t);
    return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

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
        long long now = now_ms();
        pthread_mutex_lock(&lock);
        if (cached_bytes + size <= LIMIT) {
            for (int i = 0; i < SLOTS; i++) {
                if (slots[i] != NULL) continue;
                slots[i] = block;
                slot_sizes[i] = size;
                slot_times[i] = now;
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

void sluice_block_trim(unsigned idle_ms) {
    void *freed[SLOTS];
    int count = 0;
    long long now = now_ms();
    pthread_mutex_lock(&lock);
    for (int i = 0; i < SLOTS; i++) {
        if (slots[i] == NULL || now - slot_times[i] < (long long)idle_ms) continue;
        freed[count++] = slots[i];
        cached_bytes -= slot_sizes[i];
        slots[i] = NULL;
    }
    pthread_mutex_unlock(&lock);
    for (int i = 0; i < count; i++) free(freed[i]);
}

size_t sluice_block_cached_bytes(void) {
    pthread_mutex_lock(&lock);
    size_t bytes = cached_bytes;
    pthread_mutex_unlock(&lock);
    return bytes;
}
