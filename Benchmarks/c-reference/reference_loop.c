// See include/reference_loop.h. Plain C on purpose: one output buffer grown by
// doubling, strings copied in runs between bytes that need escaping, UTF-8 checked
// as the Swift JSONOutput checks it (ill-formed bytes become U+FFFD), each key of an
// event's `fields` written once (the first writer wins), as HECEncoder does.
#include "reference_loop.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice_otlp.h"

typedef Opentelemetry__Proto__Collector__Logs__V1__ExportLogsServiceRequest Request;
typedef Opentelemetry__Proto__Common__V1__KeyValue KeyValue;
typedef Opentelemetry__Proto__Common__V1__AnyValue AnyValue;
typedef Opentelemetry__Proto__Logs__V1__LogRecord LogRecord;

static void reserve(sluice_reference_buffer *b, size_t more) {
    if (b->count + more <= b->capacity) return;
    size_t capacity = b->capacity ? b->capacity : 4096;
    while (capacity < b->count + more) capacity *= 2;
    b->bytes = realloc(b->bytes, capacity);
    if (!b->bytes) abort();
    b->capacity = capacity;
}

static inline void put(sluice_reference_buffer *b, const void *p, size_t n) {
    reserve(b, n);
    memcpy(b->bytes + b->count, p, n);
    b->count += n;
}

static inline void put_byte(sluice_reference_buffer *b, uint8_t c) {
    reserve(b, 1);
    b->bytes[b->count++] = c;
}

#define PUT_LITERAL(b, s) put((b), (s), sizeof(s) - 1)

static size_t utf8_length(const uint8_t *s, size_t i, size_t n) {
    uint8_t b0 = s[i];
#define CONT(k, lo, hi) (i + (k) < n && s[i + (k)] >= (lo) && s[i + (k)] <= (hi))
    if (b0 >= 0xC2 && b0 <= 0xDF) return CONT(1, 0x80, 0xBF) ? 2 : 0;
    if (b0 == 0xE0) return CONT(1, 0xA0, 0xBF) && CONT(2, 0x80, 0xBF) ? 3 : 0;
    if ((b0 >= 0xE1 && b0 <= 0xEC) || b0 == 0xEE || b0 == 0xEF) return CONT(1, 0x80, 0xBF) && CONT(2, 0x80, 0xBF) ? 3 : 0;
    if (b0 == 0xED) return CONT(1, 0x80, 0x9F) && CONT(2, 0x80, 0xBF) ? 3 : 0;
    if (b0 == 0xF0) return CONT(1, 0x90, 0xBF) && CONT(2, 0x80, 0xBF) && CONT(3, 0x80, 0xBF) ? 4 : 0;
    if (b0 >= 0xF1 && b0 <= 0xF3) return CONT(1, 0x80, 0xBF) && CONT(2, 0x80, 0xBF) && CONT(3, 0x80, 0xBF) ? 4 : 0;
    if (b0 == 0xF4) return CONT(1, 0x80, 0x8F) && CONT(2, 0x80, 0xBF) && CONT(3, 0x80, 0xBF) ? 4 : 0;
#undef CONT
    return 0;
}

static void put_contents(sluice_reference_buffer *b, const uint8_t *s, size_t n) {
    static const char hex[] = "0123456789abcdef";
    size_t run = 0, i = 0;
    while (i < n) {
        uint8_t c = s[i];
        if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') { i++; continue; }
        if (c < 0x80) {
            put(b, s + run, i - run);
            switch (c) {
            case '"': PUT_LITERAL(b, "\\\""); break;
            case '\\': PUT_LITERAL(b, "\\\\"); break;
            case '\n': PUT_LITERAL(b, "\\n"); break;
            case '\r': PUT_LITERAL(b, "\\r"); break;
            case '\t': PUT_LITERAL(b, "\\t"); break;
            case 0x08: PUT_LITERAL(b, "\\b"); break;
            case 0x0C: PUT_LITERAL(b, "\\f"); break;
            default: {
                char escape[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
                put(b, escape, 6);
            }
            }
            run = ++i;
            continue;
        }
        size_t length = utf8_length(s, i, n);
        if (length == 0) {
            put(b, s + run, i - run);
            PUT_LITERAL(b, "\xEF\xBF\xBD");
            run = ++i;
        } else {
            i += length;
        }
    }
    put(b, s + run, n - run);
}

static void put_string(sluice_reference_buffer *b, const uint8_t *s, size_t n) {
    put_byte(b, '"');
    put_contents(b, s, n);
    put_byte(b, '"');
}

static void put_uint(sluice_reference_buffer *b, uint64_t v) {
    char digits[20];
    int i = 20;
    do { digits[--i] = (char)('0' + v % 10); v /= 10; } while (v);
    put(b, digits + i, 20 - i);
}

static void put_hex(sluice_reference_buffer *b, const uint8_t *s, size_t n) {
    static const char hex[] = "0123456789abcdef";
    reserve(b, 2 * n + 2);
    b->bytes[b->count++] = '"';
    for (size_t i = 0; i < n; i++) {
        b->bytes[b->count++] = hex[s[i] >> 4];
        b->bytes[b->count++] = hex[s[i] & 15];
    }
    b->bytes[b->count++] = '"';
}

/// The shortest decimal text that reads back as `d` (Swift's description).
static void put_double(sluice_reference_buffer *b, double d) {
    if (d == (double)(int64_t)d && d > -1e15 && d < 1e15 && !(d == 0 && signbit(d))) {
        if (d < 0) { put_byte(b, '-'); put_uint(b, (uint64_t)(-(int64_t)d)); } else { put_uint(b, (uint64_t)d); }
        return;
    }
    char text[32];
    for (int precision = 1; precision <= 17; precision++) {
        snprintf(text, sizeof text, "%.*g", precision, d);
        if (strtod(text, NULL) == d) break;
    }
    put(b, text, strlen(text));
}

/// Keys written into the current `fields` object (offsets into the buffer).
typedef struct {
    size_t start[64], length[64];
    int count;
} Keys;

/// Starts `"key":` unless the object has that key already.
static int begin_member(sluice_reference_buffer *b, Keys *keys, const uint8_t *key, size_t n, int *first) {
    for (int k = 0; k < keys->count; k++) {
        if (keys->length[k] == n && memcmp(b->bytes + keys->start[k], key, n) == 0) return 0;
    }
    if (!*first) put_byte(b, ',');
    *first = 0;
    put_byte(b, '"');
    size_t start = b->count;
    put_contents(b, key, n);
    if (keys->count < 64) {
        keys->start[keys->count] = start;
        keys->length[keys->count] = b->count - start;
        keys->count++;
    }
    PUT_LITERAL(b, "\":");
    return 1;
}

/// A scalar attribute value as an indexed field: a JSON string.
static void put_scalar(sluice_reference_buffer *b, const AnyValue *v) {
    switch (v->value_case) {
    case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE:
        put_string(b, v->string_value.data, v->string_value.len);
        break;
    case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_BOOL_VALUE:
        if (v->bool_value) PUT_LITERAL(b, "\"true\""); else PUT_LITERAL(b, "\"false\"");
        break;
    case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_INT_VALUE:
        put_byte(b, '"');
        if (v->int_value < 0) { put_byte(b, '-'); put_uint(b, (uint64_t)0 - (uint64_t)v->int_value); } else { put_uint(b, (uint64_t)v->int_value); }
        put_byte(b, '"');
        break;
    case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_DOUBLE_VALUE:
        put_byte(b, '"');
        put_double(b, v->double_value);
        put_byte(b, '"');
        break;
    default:
        PUT_LITERAL(b, "\"\"");
    }
}

static int is_set(const ProtobufCBinaryData *id) {
    for (size_t i = 0; i < id->len; i++) if (id->data[i]) return 1;
    return 0;
}

static const uint8_t *host_of(KeyValue **attributes, size_t n, size_t *length) {
    for (size_t i = 0; i < n; i++) {
        const KeyValue *kv = attributes[i];
        if (kv->key.len == 9 && memcmp(kv->key.data, "host.name", 9) == 0 && kv->value &&
            kv->value->value_case == OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE) {
            *length = kv->value->string_value.len;
            return kv->value->string_value.data;
        }
    }
    return NULL;
}

static void put_attributes(sluice_reference_buffer *b, Keys *keys, KeyValue **attributes, size_t n, int *first) {
    for (size_t i = 0; i < n; i++) {
        const KeyValue *kv = attributes[i];
        if (!kv->value || kv->key.len == 0 || kv->value->value_case == OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE__NOT_SET) continue;
        if (begin_member(b, keys, kv->key.data, kv->key.len, first)) put_scalar(b, kv->value);
    }
}

long sluice_reference_decode_hec(const uint8_t *request, size_t length, const char *sourcetype, sluice_reference_buffer *out) {
    sluice_arena *arena = sluice_arena_create(0, 0);
    if (!arena) return -1;
    Request *message = (Request *)protobuf_c_message_unpack(sluice_logs_request_descriptor(), sluice_arena_allocator(arena), length, request);
    if (!message) {
        sluice_arena_destroy(arena);
        return -1;
    }
    out->count = 0;
    long events = 0;
    size_t sourcetype_length = strlen(sourcetype);
    for (size_t r = 0; r < message->n_resource_logs; r++) {
        const Opentelemetry__Proto__Logs__V1__ResourceLogs *resource_logs = message->resource_logs[r];
        KeyValue **resource = resource_logs->resource ? resource_logs->resource->attributes : NULL;
        size_t n_resource = resource_logs->resource ? resource_logs->resource->n_attributes : 0;
        size_t resource_host_length = 0;
        const uint8_t *resource_host = host_of(resource, n_resource, &resource_host_length);
        for (size_t s = 0; s < resource_logs->n_scope_logs; s++) {
            const Opentelemetry__Proto__Logs__V1__ScopeLogs *scope_logs = resource_logs->scope_logs[s];
            for (size_t k = 0; k < scope_logs->n_log_records; k++) {
                const LogRecord *record = scope_logs->log_records[k];
                put_byte(out, '{');
                int first = 1;
                uint64_t nanos = record->time_unix_nano ? record->time_unix_nano : record->observed_time_unix_nano;
                if (nanos) {
                    uint64_t millis = nanos / 1000000 + (nanos % 1000000 >= 500000 ? 1 : 0);
                    PUT_LITERAL(out, "\"time\":");
                    put_uint(out, millis / 1000);
                    char fraction[4] = {'.', (char)('0' + millis % 1000 / 100), (char)('0' + millis % 100 / 10), (char)('0' + millis % 10)};
                    put(out, fraction, 4);
                    first = 0;
                }
                size_t host_length = 0;
                const uint8_t *host = host_of(record->attributes, record->n_attributes, &host_length);
                if (!host) { host = resource_host; host_length = resource_host_length; }
                if (host && host_length) {
                    if (!first) put_byte(out, ',');
                    first = 0;
                    PUT_LITERAL(out, "\"host\":");
                    put_string(out, host, host_length);
                }
                if (sourcetype_length) {
                    if (!first) put_byte(out, ',');
                    first = 0;
                    PUT_LITERAL(out, "\"sourcetype\":");
                    put_string(out, (const uint8_t *)sourcetype, sourcetype_length);
                }
                if (!first) put_byte(out, ',');
                PUT_LITERAL(out, "\"event\":");
                if (record->body && record->body->value_case == OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE) {
                    put_string(out, record->body->string_value.data, record->body->string_value.len);
                } else {
                    PUT_LITERAL(out, "\"(no body)\"");
                }
                PUT_LITERAL(out, ",\"fields\":{");
                Keys keys = {.count = 0};
                int first_field = 1;
                if (is_set(&record->trace_id) && begin_member(out, &keys, (const uint8_t *)"trace_id", 8, &first_field))
                    put_hex(out, record->trace_id.data, record->trace_id.len);
                if (is_set(&record->span_id) && begin_member(out, &keys, (const uint8_t *)"span_id", 7, &first_field))
                    put_hex(out, record->span_id.data, record->span_id.len);
                if (record->severity_text.len && begin_member(out, &keys, (const uint8_t *)"severity_text", 13, &first_field))
                    put_string(out, record->severity_text.data, record->severity_text.len);
                if (record->severity_number && begin_member(out, &keys, (const uint8_t *)"severity_number", 15, &first_field)) {
                    put_byte(out, '"');
                    put_uint(out, (uint64_t)record->severity_number);
                    put_byte(out, '"');
                }
                put_attributes(out, &keys, record->attributes, record->n_attributes, &first_field);
                put_attributes(out, &keys, resource, n_resource, &first_field);
                PUT_LITERAL(out, "}}");
                events++;
            }
        }
    }
    sluice_arena_destroy(arena);
    return events;
}

void sluice_reference_buffer_free(sluice_reference_buffer *out) {
    free(out->bytes);
    *out = (sluice_reference_buffer){0};
}
