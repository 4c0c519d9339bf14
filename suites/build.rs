//! Records the versions of the client libraries as resolved in Cargo.lock, so
//! every result names the exact implementation it measured, and builds the
//! gRPC service from fixtures/grpc/kaspec.proto with tonic's codegen (protox
//! parses the .proto, so no protoc is needed).

fn main() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let lock = root.join("Cargo.lock");
    println!("cargo:rerun-if-changed={}", lock.display());
    let text = std::fs::read_to_string(&lock).unwrap_or_default();
    for krate in [
        "rumqttc",
        "socket2",
        "tokio",
        "tokio-tungstenite",
        "tonic",
        "tokio-postgres",
        "lapin",
        "redis",
        "async-nats",
        "russh",
        "mysql_async",
        "reqwest",
        "hyper",
        "hyper-util",
    ] {
        let version = find_version(&text, krate).unwrap_or_else(|| "unknown".into());
        println!(
            "cargo:rustc-env=KASPEC_VERSION_{}={version}",
            krate.to_uppercase().replace('-', "_")
        );
    }

    let proto = root.join("fixtures/grpc/kaspec.proto");
    println!("cargo:rerun-if-changed={}", proto.display());
    let fds = protox::compile([&proto], [root.join("fixtures/grpc")])
        .unwrap_or_else(|e| panic!("{}: {e}", proto.display()));
    tonic_prost_build::configure()
        .compile_fds(fds)
        .unwrap_or_else(|e| panic!("tonic codegen for {}: {e}", proto.display()));
}

fn find_version(lock: &str, krate: &str) -> Option<String> {
    let needle = format!("name = \"{krate}\"\nversion = \"");
    let start = lock.find(&needle)? + needle.len();
    let end = lock[start..].find('"')? + start;
    Some(lock[start..end].to_string())
}
