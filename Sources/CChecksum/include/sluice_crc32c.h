// CRC-32C (Castagnoli, the iSCSI/ext4 polynomial 0x1EDC6F41) for the disk log's
// entries, in hardware where the CPU has it (SSE 4.2 on x86-64, the CRC extension
// on arm64): about four times zlib's CRC-32 on the CI machine, and the checksum is
// on the path of every request the disk log acknowledges.
#ifndef SLUICE_CRC32C_H
#define SLUICE_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/// The CRC-32C of `length` bytes at `data`, continuing from `crc` (0 to start):
/// `sluice_crc32c(sluice_crc32c(0, a), b)` is the CRC of `a` followed by `b`.
uint32_t sluice_crc32c(uint32_t crc, const void *data, size_t length);

/// The same, byte by byte from a table: what runs without the instructions, and
/// what tests compare the fast path with.
uint32_t sluice_crc32c_portable(uint32_t crc, const void *data, size_t length);

#endif
