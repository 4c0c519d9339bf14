//! Path impairment — delay, jitter, loss — on the router, for the `delay` and
//! `loss` faults.
//!
//! Two engines, chosen by what the kernel offers:
//!
//! - **netem** (kernel `sch_netem`) on the router's two egress links, where
//!   the kernel has it. It impairs every packet through the router (a
//!   testbed carries one case's connection at a time).
//! - **nfqueue**, a userspace engine where it does not: an `iptables`
//!   `NFQUEUE` rule on the router's forward path (nft's own `queue`
//!   expression is missing on some kernels that have the xtables target)
//!   hands the flow's packets to a thread in the router's namespace, which
//!   drops each with the loss probability and releases the others once their
//!   delay has passed. Per direction, packets leave in the order they came
//!   (release times never go backwards), so jitter varies the delay without
//!   reordering segments. Only the given flow is queued.
//!
//! Delay is one-way: each direction gets half the round trip, so a ping
//! answered at once comes back one `rtt` later. Loss applies to each
//! direction independently. The random draws come from a seeded generator,
//! so a run can be repeated with the same pattern of draws.

use std::collections::VecDeque;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Flow;
use crate::host::{Host, NsThread};
use crate::{Error, Result};

/// What the path does to packets.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Impairment {
    /// Round-trip time added (half each way).
    pub rtt: Duration,
    /// Each one-way delay varies uniformly by up to ± half of this (so the
    /// round trip varies by up to ± `jitter`).
    pub jitter: Duration,
    /// Packets lost, percent, in each direction.
    pub loss_percent: f64,
    /// Seed of the loss and jitter draws.
    pub seed: u64,
}

impl Impairment {
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if !self.rtt.is_zero() {
            parts.push(format!("round trip +{} ms", self.rtt.as_millis()));
        }
        if !self.jitter.is_zero() {
            parts.push(format!("jitter ±{} ms", self.jitter.as_millis()));
        }
        if self.loss_percent > 0.0 {
            parts.push(format!("loss {}% each way", self.loss_percent));
        }
        if parts.is_empty() {
            "no impairment".into()
        } else {
            parts.join(", ")
        }
    }

    /// The longest round trip this path gives a packet that is not lost
    /// (saturating: a profile may give any duration, and `Duration`'s `+`
    /// panics on overflow).
    pub fn max_rtt(&self) -> Duration {
        self.rtt.saturating_add(self.jitter)
    }

    /// The shortest round trip.
    pub fn min_rtt(&self) -> Duration {
        self.rtt.saturating_sub(self.jitter)
    }
}

/// What `delay` and `loss` apply when no network profile says: a 300 ms
/// round trip (a slow mobile or intercontinental path); 2% loss.
pub fn defaults() -> (Impairment, Impairment) {
    (
        Impairment { rtt: Duration::from_millis(300), jitter: Duration::ZERO, loss_percent: 0.0, seed: 1 },
        Impairment { rtt: Duration::ZERO, jitter: Duration::ZERO, loss_percent: 2.0, seed: 1 },
    )
}

/// Which engine realises an impairment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Netem,
    Nfqueue,
}

impl Engine {
    pub fn name(self) -> &'static str {
        match self {
            Engine::Netem => "netem",
            Engine::Nfqueue => "nfqueue (userspace, iptables NFQUEUE)",
        }
    }
}

/// Counters of the userspace engine.
#[derive(Debug, Default)]
pub struct Counters {
    pub seen: AtomicU64,
    pub dropped: AtomicU64,
}

/// An impairment in force. Dropping it (or [`stop`](Self::stop)) restores
/// the path: rules and qdiscs removed, held packets released.
pub struct Running {
    engine: Engine,
    router: Host,
    /// netem: the links with a qdisc; nfqueue: the iptables rules (as `-A` args).
    undo: Vec<Vec<String>>,
    stop: Arc<AtomicBool>,
    thread: Option<NsThread<Result<()>>>,
    pub counters: Arc<Counters>,
}

const QUEUE: u16 = 7;

/// A small, seeded generator (splitmix64): the draws only need to be
/// uniform and repeatable.
pub struct Draws(u64);

impl Draws {
    pub fn new(seed: u64) -> Self {
        Draws(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// One direction's schedule: when each packet may leave.
pub struct Schedule {
    one_way: Duration,
    half_jitter: Duration,
    loss: f64,
    last_release: Option<Instant>,
}

impl Schedule {
    pub fn new(imp: &Impairment) -> Self {
        Schedule { one_way: imp.rtt / 2, half_jitter: imp.jitter / 2, loss: imp.loss_percent / 100.0, last_release: None }
    }

    /// `None`: drop the packet; otherwise when to release it (never before
    /// the previous packet of this direction).
    pub fn admit(&mut self, now: Instant, draws: &mut Draws) -> Option<Instant> {
        if self.loss > 0.0 && draws.unit() < self.loss {
            return None;
        }
        let mut at = now + self.one_way;
        if !self.half_jitter.is_zero() {
            let j = self.half_jitter.as_secs_f64() * (2.0 * draws.unit() - 1.0);
            at = if j >= 0.0 { at + Duration::from_secs_f64(j) } else { at.checked_sub(Duration::from_secs_f64(-j)).unwrap_or(now).max(now) };
        }
        if let Some(last) = self.last_release {
            at = at.max(last);
        }
        self.last_release = Some(at);
        Some(at)
    }
}

/// Starts `imp` on `flow` through `router`, whose links towards the client
/// and server are `to_client` and `to_server`.
pub fn start(engine: Engine, router: &Host, to_client: &str, to_server: &str, flow: &Flow, imp: &Impairment, tag: &str) -> Result<Running> {
    let counters = Arc::new(Counters::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut running = Running { engine, router: router.clone(), undo: Vec::new(), stop: stop.clone(), thread: None, counters: counters.clone() };
    match engine {
        Engine::Netem => {
            for dev in [to_client, to_server] {
                let mut args: Vec<String> = ["qdisc", "add", "dev", dev, "root", "netem", "delay"].iter().map(|s| s.to_string()).collect();
                args.push(format!("{}us", (imp.rtt / 2).as_micros()));
                if !imp.jitter.is_zero() {
                    args.push(format!("{}us", (imp.jitter / 2).as_micros()));
                }
                if imp.loss_percent > 0.0 {
                    args.extend(["loss".into(), format!("{}%", imp.loss_percent)]);
                }
                tc(router, "applying netem", &args)?;
                running.undo.push(vec!["qdisc".into(), "del".into(), "dev".into(), dev.into(), "root".into()]);
            }
        }
        Engine::Nfqueue => {
            crate::caps::require_program("iptables", "iptables")?;
            let (ready_tx, ready_rx) = std::sync::mpsc::channel();
            let imp = *imp;
            let client_ip = *flow.client.ip();
            let thread = router.spawn_thread("kaspec-nfqueue", move || userspace(imp, client_ip, stop, counters, ready_tx))?;
            match ready_rx.recv_timeout(Duration::from_secs(5)) {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    let _ = thread.join();
                    return Err(e);
                }
                Err(_) => return Err(Error::Other("the nfqueue engine did not start within 5 s".into())),
            }
            running.thread = Some(thread);
            let comment = format!("kaspec {tag} impair");
            for m in [flow.iptables_up(), flow.iptables_down()] {
                let mut rule: Vec<String> = vec!["FORWARD".into()];
                rule.extend(m);
                // --queue-bypass: with no engine listening, packets pass (unimpaired)
                // instead of being dropped, so a dead engine can never pass for a
                // dead path; its death is reported (see `Running::failure`).
                rule.extend(["-m", "comment", "--comment", &comment, "-j", "NFQUEUE", "--queue-num", &QUEUE.to_string(), "--queue-bypass"].map(String::from));
                let mut add = vec!["-w".to_string(), "-A".to_string()];
                add.extend(rule.iter().cloned());
                iptables(router, "queueing the flow to the nfqueue engine", &add)?;
                let mut del = vec!["-w".to_string(), "-D".to_string()];
                del.extend(rule);
                running.undo.push(del);
            }
        }
    }
    Ok(running)
}

fn tc(router: &Host, context: &str, args: &[String]) -> Result<()> {
    let mut full: Vec<&str> = vec!["netns", "exec", &router.ns, "tc"];
    full.extend(args.iter().map(String::as_str));
    crate::cmd::run(context, "ip", &full, None).map(|_| ())
}

fn iptables(router: &Host, context: &str, args: &[String]) -> Result<()> {
    let mut full: Vec<&str> = vec!["netns", "exec", &router.ns, "iptables"];
    full.extend(args.iter().map(String::as_str));
    crate::cmd::run(context, "ip", &full, None).map(|_| ())
}

impl Running {
    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// Restores the path; held packets are released, not dropped.
    pub fn stop(mut self) -> Result<()> {
        self.restore()
    }

    /// Why the engine is not doing its job any more (its thread ended),
    /// or `None` while it is.
    pub fn failure(&self) -> Option<String> {
        match &self.thread {
            Some(t) if t.is_finished() => Some("the nfqueue engine's thread ended while the impairment was in force".into()),
            _ => None,
        }
    }

    /// What the engine did so far, for the timeline.
    pub fn summary(&self) -> String {
        match self.engine {
            Engine::Netem => "netem on both router links".into(),
            Engine::Nfqueue => format!(
                "nfqueue engine: {} packets of the flow, {} dropped",
                self.counters.seen.load(Ordering::Relaxed),
                self.counters.dropped.load(Ordering::Relaxed)
            ),
        }
    }

    fn restore(&mut self) -> Result<()> {
        let mut first_err = None;
        // The engine first: it releases what it holds, in order; packets
        // that come meanwhile bypass the queue (no listener) rather than
        // overtake held ones for long.
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            match t.join() {
                Ok(Err(e)) => {
                    first_err.get_or_insert(e);
                }
                Err(e) => {
                    first_err.get_or_insert(e);
                }
                Ok(Ok(())) => {}
            }
        }
        for args in self.undo.drain(..) {
            let r = match self.engine {
                Engine::Netem => tc(&self.router, "removing netem", &args),
                Engine::Nfqueue => iptables(&self.router, "removing the NFQUEUE rule", &args),
            };
            if let Err(e) = r {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.restore();
    }
}

struct Held {
    msg: nfq::Message,
    at: Instant,
}

/// The userspace engine's loop (in the router's namespace).
fn userspace(
    imp: Impairment,
    client_ip: Ipv4Addr,
    stop: Arc<AtomicBool>,
    counters: Arc<Counters>,
    ready: std::sync::mpsc::Sender<Result<()>>,
) -> Result<()> {
    let setup = || -> std::io::Result<nfq::Queue> {
        let mut q = nfq::Queue::open()?;
        q.bind(QUEUE)?;
        q.set_queue_max_len(QUEUE, 8192)?;
        q.set_nonblocking(true);
        Ok(q)
    };
    let mut q = match setup() {
        Ok(q) => q,
        Err(e) => {
            let _ = ready.send(Err(Error::io(format!("opening NFQUEUE {QUEUE} in the router"), e)));
            return Ok(());
        }
    };
    let _ = ready.send(Ok(()));
    let mut draws = Draws::new(imp.seed);
    // [0]: from the client (up), [1]: towards the client (down).
    let mut sched = [Schedule::new(&imp), Schedule::new(&imp)];
    let mut held: [VecDeque<Held>; 2] = [VecDeque::new(), VecDeque::new()];
    let verdict = |q: &mut nfq::Queue, mut msg: nfq::Message, v: nfq::Verdict| -> Result<()> {
        msg.set_verdict(v);
        q.verdict(msg).map_err(|e| Error::io("giving an NFQUEUE verdict", e))
    };
    loop {
        let stopping = stop.load(Ordering::SeqCst);
        loop {
            match q.recv() {
                Ok(msg) => {
                    counters.seen.fetch_add(1, Ordering::Relaxed);
                    let p = msg.get_payload();
                    let from_client = p.len() >= 20 && p[12..16] == client_ip.octets();
                    let dir = if from_client { 0 } else { 1 };
                    let now = Instant::now();
                    match sched[dir].admit(now, &mut draws) {
                        None if !stopping => {
                            counters.dropped.fetch_add(1, Ordering::Relaxed);
                            verdict(&mut q, msg, nfq::Verdict::Drop)?;
                        }
                        _ if stopping => verdict(&mut q, msg, nfq::Verdict::Accept)?,
                        at => held[dir].push_back(Held { msg, at: at.unwrap_or(now) }),
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::io("receiving from NFQUEUE", e)),
            }
        }
        let now = Instant::now();
        for h in held.iter_mut() {
            while h.front().is_some_and(|x| stopping || x.at <= now) {
                let x = h.pop_front().expect("checked");
                verdict(&mut q, x.msg, nfq::Verdict::Accept)?;
            }
        }
        if stopping {
            let _ = q.unbind(QUEUE);
            return Ok(());
        }
        let next = held.iter().filter_map(|h| h.front().map(|x| x.at)).min();
        let nap = next.map(|t| t.saturating_duration_since(now)).unwrap_or(Duration::MAX).min(Duration::from_micros(500));
        std::thread::sleep(nap);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_delays_by_half_the_round_trip_and_keeps_order() {
        let imp = Impairment { rtt: Duration::from_millis(300), jitter: Duration::from_millis(100), loss_percent: 0.0, seed: 1 };
        let mut s = Schedule::new(&imp);
        let mut d = Draws::new(1);
        let t = Instant::now();
        let mut last = t;
        for i in 0..1000 {
            let now = t + Duration::from_micros(100 * i);
            let at = s.admit(now, &mut d).expect("no loss");
            let delay = at - now;
            assert!(at >= last, "order kept");
            assert!(delay >= Duration::from_millis(100) && delay <= Duration::from_millis(250), "{delay:?}");
            last = at;
        }
    }

    #[test]
    fn loss_rate_is_the_configured_one() {
        let imp = Impairment { rtt: Duration::ZERO, jitter: Duration::ZERO, loss_percent: 5.0, seed: 42 };
        let mut s = Schedule::new(&imp);
        let mut d = Draws::new(42);
        let now = Instant::now();
        let lost = (0..20_000).filter(|_| s.admit(now, &mut d).is_none()).count();
        assert!((800..1200).contains(&lost), "{lost} of 20000 lost at 5%");
        let again: Vec<bool> = {
            let (mut s, mut d) = (Schedule::new(&imp), Draws::new(42));
            (0..50).map(|_| s.admit(now, &mut d).is_none()).collect()
        };
        let (mut s2, mut d2) = (Schedule::new(&imp), Draws::new(42));
        assert_eq!(again, (0..50).map(|_| s2.admit(now, &mut d2).is_none()).collect::<Vec<_>>(), "seeded: repeatable");
    }

    #[test]
    fn describes_itself() {
        let imp = Impairment { rtt: Duration::from_millis(300), jitter: Duration::ZERO, loss_percent: 1.5, seed: 0 };
        assert_eq!(imp.describe(), "round trip +300 ms, loss 1.5% each way");
        assert_eq!(imp.max_rtt(), Duration::from_millis(300));
    }

    #[test]
    fn max_rtt_saturates_instead_of_panicking_on_huge_values() {
        let imp = Impairment { rtt: Duration::MAX, jitter: Duration::from_secs(1), loss_percent: 0.0, seed: 0 };
        assert_eq!(imp.max_rtt(), Duration::MAX);
        assert_eq!(imp.min_rtt(), Duration::MAX - Duration::from_secs(1));
    }
}
