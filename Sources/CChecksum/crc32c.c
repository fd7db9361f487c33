#include "sluice_crc32c.h"

#include <pthread.h>
#include <string.h>

#if defined(__x86_64__)
#include <nmmintrin.h>
#elif defined(__aarch64__)
#include <arm_acle.h>
#include <sys/auxv.h>
#ifndef HWCAP_CRC32
#define HWCAP_CRC32 (1 << 7)
#endif
#endif

// The polynomial, bit-reversed: CRC-32C processes the least significant bit first.
enum { POLY = 0x82F63B78u };

static uint32_t table[256];
static pthread_once_t table_once = PTHREAD_ONCE_INIT;

static void make_table(void) {
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int k = 0; k < 8; k++) c = c & 1 ? (c >> 1) ^ POLY : c >> 1;
        table[n] = c;
    }
}

// The register before conditioning (~crc) in, the register out.
static uint32_t portable(uint32_t c, const uint8_t *p, size_t n) {
    pthread_once(&table_once, make_table);
    while (n--) c = table[(c ^ *p++) & 0xFF] ^ (c >> 8);
    return c;
}

uint32_t sluice_crc32c_portable(uint32_t crc, const void *data, size_t length) {
    return ~portable(~crc, data, length);
}

// Joining CRCs computed side by side. In the bit-reversed representation the
// polynomial x^0 is the top bit. multiply() is a*b modulo the polynomial;
// shift() advances a CRC register over `bytes` zero bytes, which is multiplying
// it by x^(8 * bytes); for conditioned CRCs, crc(A||B) = shift(crc(A), |B|) ^ crc(B).
static uint32_t multiply(uint32_t a, uint32_t b) {
    uint32_t product = 0;
    for (uint32_t bit = 1u << 31; bit != 0; bit >>= 1) {
        if (a & bit) product ^= b;
        b = b & 1 ? (b >> 1) ^ POLY : b >> 1;
    }
    return product;
}

static uint32_t shift(uint32_t crc, size_t bytes) {
    // x^(2^k) for k = 3, 4, ...: x^8 is the first (one byte).
    uint32_t power = 1u << 23;   // x^8
    uint32_t factor = 1u << 31;  // x^0
    while (bytes) {
        if (bytes & 1) factor = multiply(factor, power);
        power = multiply(power, power);
        bytes >>= 1;
    }
    return multiply(crc, factor);
}

// Three lanes at once: the instruction's latency is three times its throughput,
// so one dependent chain leaves two thirds of it unused.
enum { LANE_MIN = 3 * 1024 };

#if defined(__x86_64__)
#define HARDWARE __attribute__((target("sse4.2")))
#define STEP64(c, word) ((uint32_t)_mm_crc32_u64((c), (word)))
#define STEP8(c, byte) _mm_crc32_u8((c), (byte))
static int has_hardware(void) { return __builtin_cpu_supports("sse4.2"); }
#elif defined(__aarch64__)
#define HARDWARE __attribute__((target("+crc")))
#define STEP64(c, word) __crc32cd((c), (word))
#define STEP8(c, byte) __crc32cb((c), (byte))
static int has_hardware(void) { return (getauxval(AT_HWCAP) & HWCAP_CRC32) != 0; }
#endif

#ifdef HARDWARE
HARDWARE static uint32_t hardware(uint32_t c, const uint8_t *p, size_t n) {
    if (n >= 3 * LANE_MIN) {
        size_t lane = n / 3 / 8 * 8;
        uint32_t c0 = c, c1 = 0xFFFFFFFFu, c2 = 0xFFFFFFFFu;
        const uint8_t *p1 = p + lane, *p2 = p + 2 * lane;
        for (size_t i = 0; i < lane; i += 8) {
            uint64_t w0, w1, w2;
            memcpy(&w0, p + i, 8);
            memcpy(&w1, p1 + i, 8);
            memcpy(&w2, p2 + i, 8);
            c0 = STEP64(c0, w0);
            c1 = STEP64(c1, w1);
            c2 = STEP64(c2, w2);
        }
        // Join as conditioned CRCs of consecutive pieces.
        uint32_t joined = shift(~c0, lane) ^ ~c1;
        joined = shift(joined, lane) ^ ~c2;
        c = ~joined;
        p += 3 * lane;
        n -= 3 * lane;
    }
    for (; n >= 8; n -= 8, p += 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        c = STEP64(c, w);
    }
    for (; n > 0; n--) c = STEP8(c, *p++);
    return c;
}
#else
static uint32_t hardware(uint32_t c, const uint8_t *p, size_t n) { return portable(c, p, n); }
static int has_hardware(void) { return 0; }
#endif

uint32_t sluice_crc32c(uint32_t crc, const void *data, size_t length) {
    // 0: not looked yet, 1: no instructions, 2: hardware. Racing first calls agree.
    static int state;
    int known = __atomic_load_n(&state, __ATOMIC_RELAXED);
    if (known == 0) {
        known = has_hardware() ? 2 : 1;
        __atomic_store_n(&state, known, __ATOMIC_RELAXED);
    }
    return known == 2 ? ~hardware(~crc, data, length) : ~portable(~crc, data, length);
}
