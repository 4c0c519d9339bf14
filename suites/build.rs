//! Records the versions of the client libraries as resolved in Cargo.lock, so
//! every result names the exact implementation it measured.

fn main() {
    let lock = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.lock");
    println!("cargo:rerun-if-changed={}", lock.display());
    let text = std::fs::read_to_string(&lock).unwrap_or_default();
    for krate in ["rumqttc", "socket2", "tokio"] {
        let version = find_version(&text, krate).unwrap_or_else(|| "unknown".into());
        println!("cargo:rustc-env=KASPEC_VERSION_{}={version}", krate.to_uppercase());
    }
}

fn find_version(lock: &str, krate: &str) -> Option<String> {
    let needle = format!("name = \"{krate}\"\nversion = \"");
    let start = lock.find(&needle)? + needle.len();
    let end = lock[start..].find('"')? + start;
    Some(lock[start..end].to_string())
}
