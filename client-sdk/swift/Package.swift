// swift-tools-version:5.9
// souk's Swift SDK: the bindings generated from the Rust SDK (Sources/Souk,
// committed, never edited by hand) over the native library packaged as an
// XCFramework by build-xcframework.sh on a Mac.
import PackageDescription

let package = Package(
    name: "Souk",
    platforms: [.iOS(.v15), .macOS(.v12)],
    products: [
        .library(name: "Souk", targets: ["Souk"]),
    ],
    targets: [
        // libsouk_ffi.a for each Apple target, with Headers/ (SoukFFI.h and
        // its module map) inside.
        .binaryTarget(name: "SoukFFI", path: "SoukFFI.xcframework"),
        .target(name: "Souk", dependencies: ["SoukFFI"], path: "Sources/Souk"),
    ]
)
