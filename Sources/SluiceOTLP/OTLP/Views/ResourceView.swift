import COTLP

/// The entity that produced the telemetry (`Resource`).
public struct ResourceView: OTLPMessageView {
    let raw: UnsafeMutablePointer<CResource>
    public init(_ raw: UnsafeMutablePointer<CResource>) { self.raw = raw }

    public var attributes: AttributesView { AttributesView(raw.pointee.attributes, raw.pointee.n_attributes) }
    public var droppedAttributesCount: UInt32 { raw.pointee.dropped_attributes_count }
}

/// The library that produced the telemetry (`InstrumentationScope`).
public struct ScopeView: OTLPMessageView {
    let raw: UnsafeMutablePointer<CScope>
    public init(_ raw: UnsafeMutablePointer<CScope>) { self.raw = raw }

    public var name: StringView { StringView(raw.pointee.name) }
    public var version: StringView { StringView(raw.pointee.version) }
    public var attributes: AttributesView { AttributesView(raw.pointee.attributes, raw.pointee.n_attributes) }
    public var droppedAttributesCount: UInt32 { raw.pointee.dropped_attributes_count }
}
