//! The file output's writes, on a thread of their own: while the event loop reads, frames and
//! formats the next batch, the previous one is being appended to the file. The loop stays the
//! only place that decides anything; this thread only writes what it is handed and says how
//! it went, waking the loop (a `mio::Waker`) when it is done.
//!
//! One batch is in flight at a time and batches are handed over in order, so records reach
//! the file in the order they were queued. A failed or short write (disk full) hands back the
//! unwritten bytes; the file sink puts them before anything queued since and the output's
//! back-off decides when to try again, as with a write on the loop's own thread.

use std::fs::File;
use std::io::{self, ErrorKind, Write};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, sync_channel};

use mio::Waker;

/// The writer thread's stack: it runs a loop around `write(2)` and nothing else.
const STACK: usize = 64 * 1024;

/// A batch to append to `file`.
struct Job {
    file: Arc<File>,
    batch: Vec<u8>,
}

/// How a batch went: the bytes it did not write (in the batch's allocation), and the error
/// if a write failed.
struct Done {
    rest: Vec<u8>,
    result: io::Result<()>,
}

/// A batch that was not written whole: the error, and the bytes not written, in order.
pub struct Failed {
    pub error: io::Error,
    pub rest: Vec<u8>,
}

/// Appends `bytes` to `file` until all are written or a write fails: the bytes written, and
/// the error if one did. `EINTR` is retried; a write of nothing is an error (`WriteZero`).
pub fn append(mut file: &File, bytes: &[u8]) -> (usize, io::Result<()>) {
    let mut written = 0;
    while written < bytes.len() {
        match file.write(&bytes[written..]) {
            Ok(0) => return (written, Err(ErrorKind::WriteZero.into())),
            Ok(n) => written += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return (written, Err(e)),
        }
    }
    (written, Ok(()))
}

/// The handle the file sink holds: hands batches over and takes back how they went.
pub struct Writer {
    jobs: SyncSender<Job>,
    done: Receiver<Done>,
    /// Bytes of the batch in flight (0: none).
    in_flight: usize,
    /// The outcome of the batch in flight once `settle` waited for it.
    settled: Option<Done>,
    /// The allocation of the last batch written, for the queue to fill next.
    spare: Vec<u8>,
}

impl Writer {
    /// Starts the thread; `waker` wakes the event loop each time a batch is done.
    pub fn start(waker: Arc<Waker>) -> io::Result<Writer> {
        let (jobs, job_rx) = sync_channel::<Job>(1);
        let (done_tx, done) = sync_channel::<Done>(1);
        std::thread::Builder::new()
            .name("writer".into())
            .stack_size(STACK)
            .spawn(move || {
                for Job { file, mut batch } in job_rx {
                    let (written, result) = append(&file, &batch);
                    drop(file);
                    batch.drain(..written);
                    let done = Done {
                        rest: batch,
                        result,
                    };
                    if done_tx.send(done).is_err() {
                        return;
                    }
                    // The loop may be asleep in poll: it takes the outcome in its next flush.
                    let _ = waker.wake();
                }
            })?;
        Ok(Writer {
            jobs,
            done,
            in_flight: 0,
            settled: None,
            spare: Vec::new(),
        })
    }

    /// Bytes handed over and not yet known to be written.
    #[inline]
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// True while a batch is in flight (its outcome not taken yet).
    #[inline]
    pub fn busy(&self) -> bool {
        self.in_flight > 0
    }

    /// Hands what `queue` holds (not empty) over to be appended to `file`, leaving `queue`
    /// empty, in the last batch's allocation (or a new one of `capacity`). Only when not
    /// `busy`.
    pub fn hand_over(&mut self, file: &Arc<File>, queue: &mut Vec<u8>, capacity: usize) {
        debug_assert!(!self.busy() && !queue.is_empty());
        let mut next = std::mem::take(&mut self.spare);
        // One that grew large (a queue held while the output failed) is not kept.
        if next.capacity() > 4 * capacity {
            next = Vec::new();
        }
        if next.capacity() == 0 {
            next.reserve(capacity);
        }
        let batch = std::mem::replace(queue, next);
        self.in_flight = batch.len();
        let job = Job {
            file: Arc::clone(file),
            batch,
        };
        if let Err(e) = self.jobs.send(job) {
            // The thread is gone (it only ends when this handle is dropped): keep the bytes.
            let job = e.0;
            self.settled = Some(Done {
                rest: job.batch,
                result: Err(io::Error::other("the writer thread ended")),
            });
        }
    }

    /// The outcome of the batch in flight: `None` if there is none, or if it is still being
    /// written and `wait` is false; else `Ok` if it was written whole (its allocation kept
    /// for the next `hand_over`), or what failed.
    pub fn take(&mut self, wait: bool) -> Option<Result<(), Failed>> {
        if !self.busy() {
            return None;
        }
        let done = match self.settled.take() {
            Some(done) => done,
            None if wait => self.done.recv().unwrap_or_else(|_| gone()),
            None => match self.done.try_recv() {
                Ok(done) => done,
                Err(TryRecvError::Empty) => return None,
                Err(TryRecvError::Disconnected) => gone(),
            },
        };
        self.in_flight = 0;
        Some(match done.result {
            Ok(()) => {
                self.spare = done.rest;
                Ok(())
            }
            // The queue's next buffer is made anew: while the output fails, memory holds
            // what waits to be written (up to HIGH_WATER), not a spare buffer as well.
            Err(error) => Err(Failed {
                error,
                rest: done.rest,
            }),
        })
    }

    /// Waits until the batch in flight, if any, is written (or failed); its outcome is kept
    /// for the next `take`.
    pub fn settle(&mut self) {
        if self.busy() && self.settled.is_none() {
            self.settled = Some(self.done.recv().unwrap_or_else(|_| gone()));
        }
    }
}

/// The outcome when the thread vanished with a batch in flight (only a panic in `append`
/// could do that): an error, and the batch went with the thread.
fn gone() -> Done {
    Done {
        rest: Vec::new(),
        result: Err(io::Error::other("the writer thread ended")),
    }
}
