//! The fault engine's latency, for `benches/run.sh`: applies and heals a
//! blackhole N times on one netns testbed (default 200) and prints the
//! request → in force time (`AppliedFault::requested_at` → `in_force_at`,
//! what every detection is measured from: the kernel acked the committed
//! nf_tables batch) as p50 / p99 / max. For comparison, what applying a
//! fault cost before it went over netlink: spawning `ip netns exec` alone,
//! and `ip netns exec … nft -f -` committing nothing. Needs root. An
//! example, so `cargo test` builds it but never runs it:
//!
//! ```text
//! cargo run -p kaspec-harness --example fault_latency -- 200
//! ```

use std::time::{Duration, Instant};

use kaspec_harness::fault::{FaultKind, Flow};

/// Prints p50 / p99 / max of `v`; returns p99.
fn percentiles(name: &str, mut v: Vec<Duration>) -> Duration {
    v.sort();
    let at = |q: f64| v[((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1];
    let ms = |d: Duration| format!("{:.2} ms", d.as_secs_f64() * 1000.0);
    println!("{name:<36} n={:<4} p50 {:>9}  p99 {:>9}  max {:>9}", v.len(), ms(at(0.50)), ms(at(0.99)), ms(*v.last().unwrap()));
    at(0.99)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: usize = std::env::args().nth(1).map(|a| a.parse()).transpose()?.unwrap_or(200).max(1);
    let dir = std::env::temp_dir().join(format!("kaspec-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let tb = kaspec_harness::testbed::Testbed::new(&dir)?;
    let flow = Flow { client: "198.18.0.2:40000".parse()?, server: "198.19.0.2:7000".parse()? };
    let (mut apply, mut heal, mut exec, mut nft) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..n {
        let f = tb.apply_fault(FaultKind::Blackhole, &flow, None)?;
        apply.push(f.in_force_at - f.requested_at);
        let t = Instant::now();
        tb.heal()?;
        heal.push(t.elapsed());
    }
    let ns = tb.router.ns.clone();
    for _ in 0..n {
        let t = Instant::now();
        kaspec_harness::cmd::run("bench", "ip", &["netns", "exec", &ns, "true"], None)?;
        exec.push(t.elapsed());
        let t = Instant::now();
        kaspec_harness::cmd::run("bench", "ip", &["netns", "exec", &ns, "nft", "-f", "-"], Some(""))?;
        nft.push(t.elapsed());
    }
    let p99 = percentiles("fault apply (request -> in force)", apply);
    percentiles("heal (flush the fault chain)", heal);
    percentiles("was: spawn ip netns exec true", exec);
    percentiles("was: spawn ip netns exec nft -f -", nft);
    let met = if p99 <= Duration::from_millis(5) { "met" } else { "NOT met" };
    println!("target: fault apply p99 ≤ 5 ms → {met}");
    drop(tb);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
