import Foundation
import NIOCore
import SluiceCore

/// Splunk's indexer acknowledgement (a HEC token with "useACK"): a 200 from HEC
/// only says the event was received; the `ackId` in that answer turns true once the
/// indexers have written it (and replicated it, in a cluster). Every request of one
/// exporter carries the same channel (`X-Splunk-Request-Channel`), and acks are
/// asked for with `POST /services/collector/ack` `{"acks":[ids]}` on that channel,
/// answered `{"acks":{"7":true,"8":false}}`.
/// https://docs.splunk.com/Documentation/Splunk/latest/Data/AboutHECIDXAck
///
/// A batch counts as delivered only when every payload of it is acknowledged; what
/// is still unacknowledged after `indexer_ack.timeout` is sent again (Splunk's
/// advice: an ack that never comes means the data may be lost), so duplicates in
/// Splunk are possible and losses are not.
struct HECIndexerAck: Sendable {
    let settings: SplunkHECConfig.IndexerAck
    /// One channel per exporter instance (ack ids are counted per channel).
    let channel: String

    init(settings: SplunkHECConfig.IndexerAck, channel: String = UUID().uuidString.lowercased()) {
        self.settings = settings
        self.channel = channel
    }

    /// The first poll comes after this fraction of `poll_interval`, and the wait
    /// doubles up to `poll_interval`: a quick indexer is noticed quickly, a slow one
    /// is not polled more than once per interval.
    static let firstPollFraction = 0.1

    /// Polls until every id is acknowledged or `indexer_ack.timeout` has passed (or
    /// the task is cancelled); returns the ids that were acknowledged.
    /// `poll` makes one request and returns HEC's answer (nil when it failed).
    func wait(
        for ids: [UInt64],
        poll: (_ ids: [UInt64]) async -> [UInt64: Bool]?,
        sleep: @Sendable (Duration) async throws -> Void,
        now: @Sendable () -> ContinuousClock.Instant
    ) async -> Set<UInt64> {
        var waiting = Set(ids)
        var acknowledged = Set<UInt64>()
        let deadline = now() + settings.timeout
        var delay = max(settings.pollInterval * Self.firstPollFraction, .milliseconds(10))
        while !waiting.isEmpty {
            let left = deadline - now()
            if left <= .zero { break }
            do { try await sleep(min(delay, left)) } catch { break }
            delay = min(delay * 2, settings.pollInterval)
            guard let answer = await poll(waiting.sorted()) else { continue }
            for (id, done) in answer where done && waiting.remove(id) != nil {
                acknowledged.insert(id)
            }
        }
        return acknowledged
    }

    /// `{"acks":[1,2,3]}`.
    static func requestBody(_ ids: [UInt64]) -> [UInt8] {
        var out = JSONOutput()
        out.append(ascii: "{\"acks\":[")
        for (i, id) in ids.enumerated() {
            if i > 0 { out.append(UInt8(ascii: ",")) }
            out.appendUInt(id)
        }
        out.append(ascii: "]}")
        return out.bytes
    }

    /// `{"acks":{"1":true,"2":false}}` → [1: true, 2: false]; nil when it is not that.
    static func parseAnswer(_ body: ByteBuffer) -> [UInt64: Bool]? {
        guard let object = (try? JSONSerialization.jsonObject(with: Data(body.readableBytesView))) as? [String: Any],
              let acks = object["acks"] as? [String: Any] else { return nil }
        var out: [UInt64: Bool] = [:]
        for (key, value) in acks {
            guard let id = UInt64(key) else { continue }
            out[id] = (value as? Bool) ?? ((value as? Int).map { $0 != 0 } ?? false)
        }
        return out
    }
}
