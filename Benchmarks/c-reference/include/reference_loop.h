// The C reference loop of `make bench` (issue 20): protobuf-c's unpack into
// Sluice's arena, then every log record written as a Splunk HEC event with the same
// bytes the Swift encoder writes for the benchmark's request (splunk_hec's
// defaults: indexed fields, a configured sourcetype, host from `host.name`).
// sluice-bench times it next to the Swift path and prints the ratio.
#ifndef SLUICE_REFERENCE_LOOP_H
#define SLUICE_REFERENCE_LOOP_H

#include <stddef.h>
#include <stdint.h>

/// A growable output buffer, reused from call to call.
typedef struct {
    uint8_t *bytes;
    size_t count;
    size_t capacity;
} sluice_reference_buffer;

/// Decodes one ExportLogsServiceRequest and writes its records as HEC events into
/// `out` (emptied first). Returns the number of events, or -1 when the request
/// does not decode.
long sluice_reference_decode_hec(const uint8_t *request, size_t length, const char *sourcetype, sluice_reference_buffer *out);

void sluice_reference_buffer_free(sluice_reference_buffer *out);

#endif
