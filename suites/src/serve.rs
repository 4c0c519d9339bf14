//! `serve tcp --listen ADDR`: entry point shared by `kaspec serve` and the
//! `kaspec-serve` binary.

/// Runs a server from its arguments; returns the process exit code.
pub fn main(args: &[String]) -> i32 {
    let usage = "usage: serve tcp --listen IPV4:PORT";
    match args {
        [proto, flag, addr] if proto == "tcp" && flag == "--listen" => match addr.parse() {
            Ok(a) => match crate::tcp::serve(a) {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("kaspec-tcp-echo: {e}");
                    1
                }
            },
            Err(_) => {
                eprintln!("serve: `{addr}` is not an IPV4:PORT address; {usage}");
                2
            }
        },
        _ => {
            eprintln!("{usage}");
            2
        }
    }
}
