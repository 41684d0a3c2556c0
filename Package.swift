// swift-tools-version: 6.2
// Forge: a distributed training system. Targets follow the layers in DESIGN.md, bottom to top;
// each imports only targets below it.
import PackageDescription

/// One set of Swift settings for every Forge target (never a command-line flag, which would
/// also hit dependencies).
let forgeSettings: [SwiftSetting] = [
    .swiftLanguageMode(.v6),
    .enableUpcomingFeature("ExistentialAny"),
    .treatAllWarnings(as: .error),
]

let package = Package(
    name: "Forge",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "forge", targets: ["forge"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
    ],
    targets: [
        // 1. C shims: headers and link lines, no logic (CFloatEnv holds the MXCSR lines Swift cannot express).
        .systemLibrary(name: "CZeroMQ", pkgConfig: "libzmq", providers: [.apt(["libzmq3-dev"])]),
        .systemLibrary(name: "CBLAS", pkgConfig: "openblas", providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CZlib", providers: [.apt(["zlib1g-dev"])]),
        .target(name: "CFloatEnv"),
        // Linux calls Swift cannot reach: atomics and futexes on shared mappings (the
        // shared-memory collective transport), CPU affinity (forge launch --cpu-bind).
        .target(name: "CForgeSystem"),

        // 3. Wire: framed, versioned messages and their total decoders.
        .target(name: "ForgeWire", swiftSettings: forgeSettings),
        // Seeded, reproducible randomness shared by the data and NN layers.
        .target(name: "ForgeRandom", swiftSettings: forgeSettings),
        // 2. Transport: a safe face for libzmq.
        .target(name: "ForgeTransport", dependencies: ["CZeroMQ"], swiftSettings: forgeSettings),
        // 4. Compute core: tensors on a Device; the CPU device over OpenBLAS.
        .target(name: "ForgeTensor", dependencies: ["CBLAS", "CFloatEnv", "ForgeRandom"], swiftSettings: forgeSettings),
        // 5. NN: layers, losses, optimizers, initialisers, seeded randomness.
        .target(name: "ForgeNN", dependencies: ["ForgeTensor", "ForgeRandom"], swiftSettings: forgeSettings),
        // File formats of artifacts: gzip, tar, safetensors.
        .target(name: "ForgeArchive", dependencies: ["CZlib"], swiftSettings: forgeSettings),
        // 6. Data: readers, shuffling, batching, shards.
        .target(name: "ForgeData", dependencies: ["ForgeArchive", "ForgeRandom"], swiftSettings: forgeSettings),
        // 7. Collectives: algorithms over a small transport protocol.
        .target(name: "ForgeCollectives", dependencies: ["ForgeTransport", "ForgeWire", "CForgeSystem", .product(name: "Crypto", package: "swift-crypto")],
                swiftSettings: forgeSettings),
        // 9. Training: hyperparameters, built-in algorithms, trainer, checkpoints, metrics.
        .target(
            name: "ForgeTraining",
            dependencies: [
                "ForgeNN", "ForgeData", "ForgeArchive", "ForgeCollectives", "ForgeRandom",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: forgeSettings
        ),
        // 11. Coordinator: job specs, the job state machine, the durable job store.
        .target(
            name: "ForgeCoordinator",
            dependencies: [
                "ForgeArchive", "ForgeData", "ForgeTransport", "ForgeWire", "ForgeS3",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Yams", package: "Yams"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            swiftSettings: forgeSettings
        ),
        // 12. Worker: the node agent that runs assigned ranks.
        .target(
            name: "ForgeWorker",
            dependencies: ["ForgeTransport", "ForgeWire", "ForgeCollectives", "CForgeSystem", .product(name: "Logging", package: "swift-log")],
            swiftSettings: forgeSettings
        ),
        // AWS Signature Version 4: the canonical request, a signer (CLI clients) and a verifier
        // (the HTTP port), access keys and the shared-credentials file.
        .target(
            name: "ForgeSigning",
            dependencies: [.product(name: "Crypto", package: "swift-crypto")],
            swiftSettings: forgeSettings
        ),
        // An S3 client for the S3-compatible stores where users keep data (ranks fetch channels
        // and upload models through it).
        .target(name: "ForgeS3", dependencies: ["ForgeSigning"], swiftSettings: forgeSettings),
        // 13. API: the coordinator's HTTP port (SageMaker JSON 1.1, CloudWatch Logs, STS, S3),
        // every request checked with SigV4.
        .target(
            name: "ForgeAPI",
            dependencies: [
                "ForgeCoordinator", "ForgeSigning", "CZlib",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: forgeSettings
        ),
        // 15. The one executable.
        .executableTarget(
            name: "forge",
            dependencies: [
                "ForgeTraining", "ForgeTensor", "ForgeTransport", "ForgeCollectives", "CForgeSystem", "ForgeCoordinator", "ForgeWorker", "ForgeAPI", "ForgeSigning", "ForgeS3",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: forgeSettings
        ),

        // The test harness (temporary folders, seeded generators, byte mutation and fuzzing,
        // external tools): imported only by tests, and built on no Forge module, so fixtures
        // never depend on the code under test.
        .target(name: "ForgeTestSupport", path: "Tests/ForgeTestSupport", swiftSettings: forgeSettings),

        .testTarget(name: "ShimTests", dependencies: ["CZeroMQ", "CBLAS", "CFloatEnv"], swiftSettings: forgeSettings),
        .testTarget(name: "ForgeRandomTests", dependencies: ["ForgeRandom"], swiftSettings: forgeSettings),
        .testTarget(name: "ForgeTransportTests", dependencies: ["ForgeTransport", "ForgeTestSupport"], swiftSettings: forgeSettings),
        .testTarget(name: "ForgeWireTests", dependencies: ["ForgeWire", "ForgeTestSupport"], swiftSettings: forgeSettings),
        .testTarget(name: "ForgeCollectivesTests", dependencies: ["ForgeCollectives", "ForgeTransport", "ForgeTestSupport", .product(name: "Crypto", package: "swift-crypto")],
                    swiftSettings: forgeSettings),
        .testTarget(name: "ForgeTensorTests", dependencies: ["ForgeTensor"], swiftSettings: forgeSettings),
        .testTarget(name: "ForgeNNTests", dependencies: ["ForgeNN"], swiftSettings: forgeSettings),
        .testTarget(name: "ForgeArchiveTests", dependencies: ["ForgeArchive", "ForgeTestSupport"], swiftSettings: forgeSettings),
        .testTarget(name: "ForgeDataTests", dependencies: ["ForgeData", "ForgeTestSupport"], swiftSettings: forgeSettings),
        .testTarget(
            name: "ForgeTrainingTests",
            dependencies: ["ForgeTraining", "ForgeData", "ForgeArchive", "ForgeNN", "ForgeTensor", "ForgeCollectives", "ForgeTestSupport"],
            swiftSettings: forgeSettings
        ),
        .testTarget(name: "ForgeSigningTests", dependencies: ["ForgeSigning", "ForgeTestSupport"], swiftSettings: forgeSettings),
        .testTarget(name: "ForgeAPITests", dependencies: ["ForgeAPI", "ForgeSigning", "ForgeCoordinator", "ForgeTestSupport"], swiftSettings: forgeSettings),
        .testTarget(name: "ForgeCoordinatorTests", dependencies: ["ForgeCoordinator", "ForgeTestSupport"], swiftSettings: forgeSettings),
        .testTarget(
            name: "ForgeIntegrationTests",
            dependencies: ["ForgeArchive", "ForgeTransport", "ForgeWire", "ForgeCoordinator", "ForgeWorker", "ForgeAPI", "ForgeS3", "ForgeTestSupport",
                           .product(name: "Logging", package: "swift-log")],
            swiftSettings: forgeSettings
        ),
    ]
)
