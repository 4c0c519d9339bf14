//! Our own servers, run by the harness inside the server host. The `kaspec`
//! binary exposes the same as `kaspec serve ...`; this binary exists so the
//! integration tests in this crate can start them without the CLI package.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(kaspec_suites::peers::main(&args));
}
