//! The bounded queue between the capture and inference stages: a live source drops its oldest
//! waiting frame (and counts it); a file source waits for room.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex};

/// A bounded frame queue that either drops its oldest entry or makes the producer wait.
pub(super) struct FrameQueue<T> {
    inner: Mutex<QueueState<T>>,
    changed: Condvar,
    cap: usize,
    drop_oldest: bool,
}

struct QueueState<T> {
    items: VecDeque<T>,
    closed: bool,
    dropped: u64,
}

/// What became of a pushed item.
pub(super) enum Pushed<T> {
    /// Queued; the oldest entry was dropped to make room (live sources), and is given back.
    Queued(Option<T>),
    /// The consumer is gone; the item is given back.
    Closed(T),
}

impl<T> FrameQueue<T> {
    pub(super) fn new(cap: usize, drop_oldest: bool) -> Self {
        FrameQueue {
            inner: Mutex::new(QueueState {
                items: VecDeque::with_capacity(cap),
                closed: false,
                dropped: 0,
            }),
            changed: Condvar::new(),
            cap: cap.max(1),
            drop_oldest,
        }
    }

    pub(super) fn push(&self, item: T) -> Pushed<T> {
        let Ok(mut q) = self.inner.lock() else {
            return Pushed::Closed(item);
        };
        let mut dropped = None;
        while q.items.len() >= self.cap && !q.closed {
            if self.drop_oldest {
                dropped = q.items.pop_front();
                q.dropped += 1;
            } else {
                q = match self.changed.wait(q) {
                    Ok(q) => q,
                    Err(_) => return Pushed::Closed(item),
                };
            }
        }
        if q.closed {
            return Pushed::Closed(item);
        }
        q.items.push_back(item);
        self.changed.notify_all();
        Pushed::Queued(dropped)
    }

    pub(super) fn pop(&self) -> Option<T> {
        let mut q = self.inner.lock().ok()?;
        loop {
            if let Some(f) = q.items.pop_front() {
                self.changed.notify_all();
                return Some(f);
            }
            if q.closed {
                return None;
            }
            q = self.changed.wait(q).ok()?;
        }
    }

    pub(super) fn close(&self) {
        if let Ok(mut q) = self.inner.lock() {
            q.closed = true;
        }
        self.changed.notify_all();
    }

    pub(super) fn dropped(&self) -> u64 {
        self.inner.lock().map(|q| q.dropped).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::{Duration, SystemTime};

    use crate::error::Result;
    use crate::source::{Frame, Source, SyntheticSource};

    fn frame(seq: u64) -> Frame {
        let image = crate::RgbFrame::new(1, 1, vec![0; 3]).expect("1x1 frame");
        Frame::new(seq, SystemTime::now(), Duration::ZERO, image)
    }

    fn queued<T>(p: Pushed<T>) -> Option<Option<T>> {
        match p {
            Pushed::Queued(old) => Some(old),
            Pushed::Closed(_) => None,
        }
    }

    #[test]
    fn live_queue_drops_the_oldest_and_counts() {
        let q = FrameQueue::new(2, true);
        let mut given_back = Vec::new();
        for s in 0..5 {
            let old = queued(q.push(frame(s))).expect("open queue");
            given_back.extend(old.map(|f| f.seq));
        }
        assert_eq!(q.dropped(), 3);
        // the dropped frames come back to the producer, to recycle their buffers
        assert_eq!(given_back, vec![0, 1, 2]);
        assert_eq!(q.pop().map(|f| f.seq), Some(3));
        assert_eq!(q.pop().map(|f| f.seq), Some(4));
        q.close();
        assert!(q.pop().is_none());
        assert!(
            queued(q.push(frame(5))).is_none(),
            "a closed queue gives the item back"
        );
    }

    #[test]
    fn file_queue_makes_the_producer_wait() {
        let q = Arc::new(FrameQueue::new(1, false));
        assert!(matches!(q.push(frame(0)), Pushed::Queued(None)));
        let q2 = q.clone();
        let producer =
            std::thread::spawn(move || matches!(q2.push(frame(1)), Pushed::Queued(None)));
        std::thread::sleep(Duration::from_millis(50));
        assert!(
            !producer.is_finished(),
            "push waits while the queue is full"
        );
        assert_eq!(q.pop().map(|f| f.seq), Some(0));
        assert!(producer.join().unwrap_or(false));
        assert_eq!(q.pop().map(|f| f.seq), Some(1));
        assert_eq!(q.dropped(), 0);
    }

    #[test]
    fn synthetic_source_is_a_source() -> Result<()> {
        let mut s: Box<dyn Source> = Box::new(SyntheticSource::new(64, 64, 2, 1, 1, 10.0, false)?);
        assert!(s.next_frame()?.is_some());
        assert!(s.next_frame()?.is_some());
        assert!(s.next_frame()?.is_none());
        Ok(())
    }
}
