//! Jobs on worker threads (`kaspec run --jobs N`): longest first, each
//! job's start and end handed to the calling thread as they come, and the
//! workers kept alive until the caller is done with what they started.
//!
//! Why the workers wait: a process kaspec starts gets SIGKILL when the
//! *thread* that spawned it ends (`Host::command` sets PR_SET_PDEATHSIG),
//! and a shared server is started by whichever job leases it first. So the
//! workers end only after the caller has handled [`Event::Drained`] — where
//! the runner stops the shared servers.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc;
use std::sync::{Mutex, RwLock};
use std::time::Duration;

/// What the calling thread hears from the workers.
pub enum Event<R> {
    Started(usize),
    /// A job's result, or the message of its panic.
    Finished(usize, std::result::Result<R, String>),
    /// The last event: every job has finished (or `stop()` said to take no
    /// more), and the workers are still alive while it is handled.
    Drained,
}

/// The order to take jobs in: longest estimate first (a job started last
/// then never holds the run up alone, the classic longest-processing-time
/// rule), ties in the given order.
pub fn longest_first(estimates: &[Duration]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..estimates.len()).collect();
    order.sort_by(|a, b| estimates[*b].cmp(&estimates[*a]).then(a.cmp(b)));
    order
}

/// Runs `work(job)` for every job of `order` on `workers` threads (at most
/// one per job); `on` gets every event on the calling thread, the last
/// one [`Event::Drained`].
pub fn run<R: Send>(
    workers: usize,
    order: Vec<usize>,
    work: impl Fn(usize) -> R + Sync,
    stop: impl Fn() -> bool + Sync,
    mut on: impl FnMut(Event<R>),
) {
    let workers = workers.clamp(1, order.len().max(1));
    let queue = Mutex::new(VecDeque::from(order));
    // Held by the calling thread until Drained is handled; each worker waits
    // for it before it ends.
    let keep = RwLock::new(());
    let kept = keep.write().unwrap_or_else(|p| p.into_inner());
    let (tx, rx) = mpsc::channel::<Option<Event<R>>>();
    std::thread::scope(|s| {
        for i in 0..workers {
            let (tx, queue, keep, work, stop) = (tx.clone(), &queue, &keep, &work, &stop);
            std::thread::Builder::new()
                .name(format!("kaspec-job-{}", i + 1))
                .spawn_scoped(s, move || {
                    loop {
                        if stop() {
                            break;
                        }
                        let Some(job) = queue.lock().unwrap_or_else(|p| p.into_inner()).pop_front()
                        else {
                            break;
                        };
                        let _ = tx.send(Some(Event::Started(job)));
                        let r = catch_unwind(AssertUnwindSafe(|| work(job)))
                            .map_err(|p| panic_message(&*p));
                        let _ = tx.send(Some(Event::Finished(job, r)));
                    }
                    // This worker is done: say so, then live on until the caller is.
                    let _ = tx.send(None);
                    drop(keep.read().unwrap_or_else(|p| p.into_inner()));
                })
                .expect("spawning a job thread");
        }
        drop(tx);
        let mut done = 0;
        while done < workers {
            match rx.recv() {
                Ok(Some(e)) => on(e),
                Ok(None) => done += 1,
                Err(_) => break,
            }
        }
        on(Event::Drained);
        drop(kept);
    })
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    let what = p
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned());
    format!(
        "panicked: {}",
        what.unwrap_or_else(|| "(no message)".into())
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn longest_first_with_ties_in_order() {
        let ms = |v: &[u64]| {
            v.iter()
                .map(|m| Duration::from_millis(*m))
                .collect::<Vec<_>>()
        };
        assert_eq!(longest_first(&ms(&[5, 20, 5, 30, 20])), [3, 1, 4, 0, 2]);
        assert!(longest_first(&[]).is_empty());
    }

    #[test]
    fn jobs_run_at_once_every_one_once_and_a_panic_is_a_result() {
        let running = AtomicUsize::new(0);
        let most = AtomicUsize::new(0);
        let mut seen = Vec::new();
        let mut on_the_caller = false;
        run(
            4,
            (0..8).collect(),
            |job| {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(100));
                running.fetch_sub(1, Ordering::SeqCst);
                if job == 5 {
                    panic!("job five");
                }
                job * 10
            },
            || false,
            |e| match e {
                Event::Started(j) => seen.push(format!("start {j}")),
                Event::Finished(j, Ok(r)) => seen.push(format!("end {j} {r}")),
                Event::Finished(j, Err(m)) => seen.push(format!("end {j} {m}")),
                Event::Drained => {
                    on_the_caller = std::thread::current()
                        .name()
                        .is_none_or(|n| !n.starts_with("kaspec-job"))
                }
            },
        );
        assert!(on_the_caller, "the events come to the calling thread");
        // 8 jobs of 100 ms on 4 workers: four at once (not a timed
        // assertion: a loaded machine stretches the rounds, not the count).
        assert_eq!(most.load(Ordering::SeqCst), 4);
        for j in 0..8 {
            assert_eq!(
                seen.iter()
                    .filter(|s| s.starts_with(&format!("start {j}")))
                    .count(),
                1,
                "{seen:?}"
            );
        }
        assert!(
            seen.contains(&"end 3 30".to_string())
                && seen.contains(&"end 5 panicked: job five".to_string()),
            "{seen:?}"
        );
    }

    /// What a job started lives until Drained is handled: a child that dies with
    /// the thread that spawned it (PR_SET_PDEATHSIG, as `Host::command`
    /// sets it) is still running there.
    #[test]
    fn what_a_job_started_outlives_the_job_until_then() {
        use std::os::unix::process::CommandExt;
        let children = Mutex::new(Vec::new());
        let mut alive_when_drained = Vec::new();
        run(
            2,
            vec![0, 1],
            |_| {
                let mut c = std::process::Command::new("sleep");
                c.arg("30");
                unsafe {
                    c.pre_exec(|| {
                        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == 0 {
                            Ok(())
                        } else {
                            Err(std::io::Error::last_os_error())
                        }
                    });
                }
                children.lock().unwrap().push(c.spawn().unwrap());
            },
            || false,
            |e| {
                if let Event::Drained = e {
                    // Give a dying worker's signal time to land.
                    std::thread::sleep(Duration::from_millis(200));
                    alive_when_drained = children
                        .lock()
                        .unwrap()
                        .iter_mut()
                        .map(|c| matches!(c.try_wait(), Ok(None)))
                        .collect();
                }
            },
        );
        for mut c in children.into_inner().unwrap() {
            let _ = c.kill();
            let _ = c.wait();
        }
        assert_eq!(alive_when_drained, [true, true]);
    }

    #[test]
    fn stop_takes_no_more_jobs() {
        let taken = AtomicUsize::new(0);
        run(
            2,
            (0..10).collect(),
            |_| taken.fetch_add(1, Ordering::SeqCst),
            || taken.load(Ordering::SeqCst) >= 3,
            |_| {},
        );
        assert!(
            taken.load(Ordering::SeqCst) <= 4,
            "{}",
            taken.load(Ordering::SeqCst)
        );
    }
}
