import Foundation
import NIOCore
import NIOHTTP1
import SluiceCore
import SluiceNet

/// HEC's JSON answer: `{"text":"Success","code":0,"ackId":7}`, or for a refused
/// event `{"text":"Invalid data format","code":6,"invalid-event-number":2}`.
/// https://docs.splunk.com/Documentation/Splunk/latest/Data/TroubleshootHTTPEventCollector
/// lists the codes.
struct HECResponse: Sendable, Equatable {
    var text: String?
    var code: Int?
    var ackID: UInt64?
    /// Which event of the payload (from 0) HEC could not read.
    var invalidEventNumber: Int?

    /// Reads the body; anything else (an HTML error page from a proxy) gives an
    /// empty answer, and the status code decides alone.
    init(_ body: ByteBuffer) {
        guard body.readableBytes > 0, body.readableBytes < 1 << 20,
              let object = (try? JSONSerialization.jsonObject(with: Data(body.readableBytesView))) as? [String: Any] else { return }
        text = object["text"] as? String
        code = Self.integer(object["code"])
        ackID = Self.integer(object["ackId"]).flatMap { $0 >= 0 ? UInt64($0) : nil }
        invalidEventNumber = Self.integer(object["invalid-event-number"])
    }

    static func integer(_ value: Any?) -> Int? {
        // (Not `is Bool`: Foundation bridges every 0 and 1 to Bool.)
        if let number = value as? Int { return number }
        if let number = value as? Double, number == number.rounded(), abs(number) < 1e15 { return Int(number) }
        if let text = value as? String { return Int(text) }
        return nil
    }

    /// "Invalid data format (code 6)", for reasons.
    var summary: String {
        switch (text, code) {
        case let (text?, code?): "\(text) (code \(code))"
        case let (text?, nil): text
        case let (nil, code?): "code \(code)"
        case (nil, nil): "no HEC answer in the body"
        }
    }

    /// Codes HEC gives for one bad event in a payload, where the other events are
    /// fine: 6 invalid data format, 7 incorrect index, 12 event field is required,
    /// 13 event field cannot be blank, 15 error in handling indexed fields.
    static let eventCodes: Set<Int> = [6, 7, 12, 13, 15]
}
