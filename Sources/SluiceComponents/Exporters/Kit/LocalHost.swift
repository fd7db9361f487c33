#if canImport(Glibc)
import Glibc
#else
import Darwin
#endif

/// This host's name, for destinations that file events under a host when the
/// record does not name one (Splunk's heartbeat, Datadog's `hostname`).
enum LocalHost {
    static let name: String = {
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, buffer.count - 1) == 0 else { return "unknown" }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }()
}
