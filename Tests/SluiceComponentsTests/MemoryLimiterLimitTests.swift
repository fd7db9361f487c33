import Testing

@testable import SluiceComponents

/// Where `limit_percentage` takes the memory it is a share of.
struct MemoryLimiterLimitTests {
    let gib = 1 << 30

    func files(_ contents: [String: String]) -> (String) -> String? { { contents[$0] } }

    @Test func cgroupV2LimitWins() {
        let limit = MemoryLimiterProcessor.availableMemory(physical: 16 * gib, read: files(["/sys/fs/cgroup/memory.max": "268435456\n"]))
        #expect(limit == 268_435_456)
    }

    @Test func cgroupV1LimitIsReadWhenThereIsNoV2File() {
        let limit = MemoryLimiterProcessor.availableMemory(
            physical: 16 * gib, read: files(["/sys/fs/cgroup/memory/memory.limit_in_bytes": "268435456\n"]))
        #expect(limit == 268_435_456)
    }

    @Test func noLimitMeansTheMachinesMemory() {
        // v2 without a limit says "max"; v1 says a number larger than the machine.
        #expect(MemoryLimiterProcessor.availableMemory(physical: 16 * gib, read: files(["/sys/fs/cgroup/memory.max": "max\n"])) == 16 * gib)
        #expect(MemoryLimiterProcessor.availableMemory(
            physical: 16 * gib, read: files(["/sys/fs/cgroup/memory/memory.limit_in_bytes": "9223372036854771712\n"])) == 16 * gib)
        #expect(MemoryLimiterProcessor.availableMemory(physical: 16 * gib, read: files([:])) == 16 * gib)
    }
}
