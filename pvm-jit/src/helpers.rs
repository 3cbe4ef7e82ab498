//! Helper threads for [`Parallelism::run`](crate::Parallelism::run): started
//! once, parked between uses.
//!
//! A new thread is a poor helper for a job of a few milliseconds: on the
//! two-core virtual machines we measured, about half of the new threads
//! only started once the spawning thread had finished its own part (the
//! scheduler put them on the busy core), while a parked thread woke in
//! about 50 µs every time. So helpers are spawned on first use and then
//! wait for work on a channel.
//!
//! The work is borrowed from the caller's stack. [`run`] hands the helpers
//! a reference to it and does not return (nor unwind) before every helper
//! that took the work is done with it; a helper that has not started it by
//! then never will (its ticket is cancelled).

use std::sync::{mpsc, Arc, Condvar, Mutex, MutexGuard};

/// Helpers kept at most.
const MAX_HELPERS: usize = 8;

/// Where a helper is with one hand-out of work.
#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Pending,
    Running,
    Done,
    Cancelled,
}

struct Ticket {
    state: Mutex<State>,
    changed: Condvar,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The work, with its lifetime erased (see [`run`]'s safety argument).
struct Task {
    work: &'static (dyn Fn() + Sync),
    ticket: Arc<Ticket>,
}

static HELPERS: Mutex<Vec<mpsc::Sender<Task>>> = Mutex::new(Vec::new());

fn helper(tasks: mpsc::Receiver<Task>) {
    for task in tasks {
        {
            let mut state = lock(&task.ticket.state);
            if *state != State::Pending {
                continue;
            }
            *state = State::Running;
        }
        // A panic in the work must not leave the caller waiting forever.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(task.work));
        *lock(&task.ticket.state) = State::Done;
        task.ticket.changed.notify_all();
    }
}

/// Waits, on drop, until no helper can still be using the work.
struct Wait(Vec<Arc<Ticket>>);

impl Drop for Wait {
    fn drop(&mut self) {
        for ticket in &self.0 {
            let mut state = lock(&ticket.state);
            if *state == State::Pending {
                *state = State::Cancelled;
            }
            while *state == State::Running {
                state = ticket
                    .changed
                    .wait(state)
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
            }
        }
    }
}

/// Runs `work` on this thread and on up to `helpers` helper threads at the
/// same time; returns once every run of it has returned. `work` is expected
/// to share its jobs out itself (each run takes the next job left).
pub(crate) fn run(helpers: usize, work: &(dyn Fn() + Sync)) {
    // SAFETY: the erased reference goes only into tasks whose tickets are in
    // `wait`; dropping `wait` (when this function returns or unwinds)
    // cancels the tasks not started and blocks until the started ones are
    // done, and a helper touches the reference only between marking its
    // ticket running and marking it done. So no use of it outlives `work`.
    let erased: &'static (dyn Fn() + Sync) =
        unsafe { core::mem::transmute::<&(dyn Fn() + Sync), &'static (dyn Fn() + Sync)>(work) };
    let mut wait = Wait(Vec::new());
    {
        let mut pool = lock(&HELPERS);
        while pool.len() < helpers.min(MAX_HELPERS) {
            let (tx, rx) = mpsc::channel();
            let spawned = std::thread::Builder::new()
                .name("pvm-jit-helper".into())
                .spawn(move || helper(rx));
            if spawned.is_err() {
                break;
            }
            pool.push(tx);
        }
        for tx in pool.iter().take(helpers) {
            let ticket = Arc::new(Ticket {
                state: Mutex::new(State::Pending),
                changed: Condvar::new(),
            });
            let task = Task {
                work: erased,
                ticket: ticket.clone(),
            };
            if tx.send(task).is_ok() {
                wait.0.push(ticket);
            }
        }
    }
    work();
    drop(wait);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn every_job_runs_once_and_helpers_join_in() {
        let mut helped = 0;
        for _ in 0..20 {
            let next = AtomicUsize::new(0);
            let done: Vec<AtomicUsize> = (0..64).map(|_| AtomicUsize::new(0)).collect();
            let threads = Mutex::new(std::collections::HashSet::new());
            run(1, &|| loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                let Some(d) = done.get(k) else { break };
                d.fetch_add(1, Ordering::Relaxed);
                lock(&threads).insert(std::thread::current().id());
                std::thread::sleep(std::time::Duration::from_micros(200));
            });
            assert!(done.iter().all(|d| d.load(Ordering::Relaxed) == 1));
            if lock(&threads).len() == 2 {
                helped += 1;
            }
        }
        // 64 jobs of 200 µs: the helper, woken in well under that, takes
        // some (at least sometimes, however busy the machine).
        assert!(helped > 0, "the helper never took a job");
    }

    #[test]
    fn a_panicking_job_does_not_hang_the_caller() {
        let next = AtomicUsize::new(0);
        let result = std::panic::catch_unwind(|| {
            run(1, &|| {
                if next.fetch_add(1, Ordering::Relaxed) < 2 {
                    panic!("job failed");
                }
            })
        });
        // The caller's own run panicked (or the helper's did and the
        // caller's did not): either way this returns.
        let _ = result;
        // The helper still serves later callers.
        let count = AtomicUsize::new(0);
        run(1, &|| {
            count.fetch_add(1, Ordering::Relaxed);
        });
        assert!(count.load(Ordering::Relaxed) >= 1);
    }
}
