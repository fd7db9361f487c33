// swift-tools-version:6.0
import PackageDescription

let strict: [SwiftSetting] = [.swiftLanguageMode(.v6)]
// Release builds let the optimizer inline across our modules: an encoder in
// SluiceComponents calls SluiceOTLP's views and JSONOutput a few dozen times per record,
// and a call each costs more than what it does (issue 20's profile).
let fast: [SwiftSetting] = strict + [.unsafeFlags(["-cross-module-optimization"], .when(configuration: .release))]

// Linux only: the disk log writes through Linux AIO (io_submit) and sizes memory
// with malloc.h, and the C libraries come from Debian's -dev packages. No
// `platforms` entry claims otherwise.
let package = Package(
    name: "sluice",
    products: [
        .executable(name: "sluice", targets: ["sluice"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.80.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.0.0"),
    ],
    targets: [
        // System libraries, found through pkg-config; `make deps` installs them.
        .systemLibrary(name: "CProtobufC", pkgConfig: "libprotobuf-c", providers: [.apt(["libprotobuf-c-dev"])]),
        .systemLibrary(name: "CNGHTTP2", pkgConfig: "libnghttp2", providers: [.apt(["libnghttp2-dev"])]),
        .systemLibrary(name: "COpenSSL", pkgConfig: "openssl", providers: [.apt(["libssl-dev"])]),
        .systemLibrary(name: "CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        .systemLibrary(name: "CZstd", pkgConfig: "libzstd", providers: [.apt(["libzstd-dev"])]),
        // One-line functions for C macros Swift cannot import.
        .target(name: "CSluiceShims", dependencies: ["COpenSSL", "CZlib"]),
        // protoc-c output for proto/ (scripts/generate-proto.sh) and the arena allocator.
        .target(name: "CBlockCache"),
        .target(name: "CChecksum"),
        .target(name: "COTLP", dependencies: ["CProtobufC", "CBlockCache"], exclude: []),

        // Decoded OTLP, its codecs and views: the C libraries and nothing else.
        .target(name: "SluiceOTLP", dependencies: ["COTLP", "CProtobufC", "CZlib", "CZstd", "CSluiceShims"], swiftSettings: fast),
        // The OTTL conditions of the filter processor and the routing connector.
        .target(name: "SluiceOTTL", dependencies: ["SluiceOTLP"], swiftSettings: strict),
        .target(
            name: "SluiceCore",
            dependencies: [
                "SluiceOTLP", "CZlib", "CSluiceShims", "CChecksum",
                .product(name: "Yams", package: "Yams"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "SluiceNet",
            dependencies: [
                "SluiceCore", "COpenSSL", "CSluiceShims", "CNGHTTP2", "CBlockCache",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "SluiceComponents",
            dependencies: [
                "SluiceCore", "SluiceNet", "SluiceOTTL",
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "sluice",
            dependencies: [
                "SluiceCore", "SluiceNet", "SluiceComponents", "CSluiceShims",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),
        // The C reference loop sluice-bench holds the Swift HEC path against (issue 20).
        .target(name: "CReferenceLoop", dependencies: ["COTLP", "CProtobufC"], path: "Benchmarks/c-reference"),
        .executableTarget(name: "sluice-bench", dependencies: ["SluiceOTLP", "SluiceOTTL", "COTLP", "SluiceCore", "SluiceComponents", "CReferenceLoop"],
                          path: "Benchmarks/sluice-bench", swiftSettings: strict),

        .testTarget(name: "SluiceCoreTests", dependencies: ["SluiceCore", "CChecksum"], swiftSettings: strict),
        .testTarget(name: "SluiceNetTests", dependencies: ["SluiceNet", "SluiceCore", "CBlockCache"], swiftSettings: strict),
        .testTarget(name: "SluiceComponentsTests", dependencies: ["SluiceComponents", "SluiceCore"], exclude: ["Fixtures"], swiftSettings: strict),
        .testTarget(name: "SluiceOTTLTests", dependencies: ["SluiceOTTL", "SluiceOTLP"], swiftSettings: strict),
        .testTarget(name: "SluiceOTLPTests", dependencies: ["SluiceOTLP", "COTLP"], resources: [.copy("Fixtures")], swiftSettings: strict),
    ]
)
