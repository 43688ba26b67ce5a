//! The messages a socket output (syslog, journal) holds until its receiver takes them: oldest
//! first, back to back in one buffer, so a queued message costs its bytes and its length, not
//! an allocation of its own (as a `Vec` each, the messages of short lines took 2-2.4 times
//! their bytes).

use std::collections::VecDeque;

#[derive(Default)]
pub(super) struct Queue {
    /// The messages from `head` on; what is before `head` was sent.
    bytes: Vec<u8>,
    /// Where the front message starts in `bytes`.
    head: usize,
    /// The length of each queued message, oldest first.
    lens: VecDeque<u32>,
    /// Bytes queued (the sum of `lens`).
    queued: usize,
}

impl Queue {
    /// Queues the message `write` appends to the buffer it is given (after the messages
    /// already there: it must only append).
    pub fn push(&mut self, write: impl FnOnce(&mut Vec<u8>)) {
        let start = self.bytes.len();
        write(&mut self.bytes);
        let len = self.bytes.len() - start;
        self.queued += len;
        // A message is one record (at most max_line, which config keeps far below 4 GiB) and
        // its header or fields.
        self.lens
            .push_back(u32::try_from(len).expect("a message under 4 GiB"));
    }

    /// The oldest message.
    pub fn front(&self) -> Option<&[u8]> {
        let len = *self.lens.front()? as usize;
        Some(&self.bytes[self.head..self.head + len])
    }

    /// Drops the oldest message (it was sent).
    pub fn pop(&mut self) {
        if let Some(len) = self.lens.pop_front() {
            self.head += len as usize;
            self.queued -= len as usize;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.lens.is_empty()
    }

    /// Bytes queued.
    pub fn bytes(&self) -> usize {
        self.queued
    }

    /// Lets go of the space of sent messages: all of it once the queue is empty, else by
    /// moving the rest to the front once the sent part is the larger half (so each byte moves
    /// at most once on average).
    pub fn compact(&mut self) {
        if self.lens.is_empty() {
            self.bytes.clear();
            self.head = 0;
            if self.bytes.capacity() > 1 << 20 {
                self.bytes = Vec::new();
            }
        } else if self.head > self.bytes.len() / 2 {
            self.bytes.drain(..self.head);
            self.head = 0;
        }
    }

    /// The queued messages, oldest first.
    #[cfg(test)]
    pub fn messages(&self) -> impl Iterator<Item = &[u8]> {
        let mut at = self.head;
        self.lens.iter().map(move |&len| {
            let message = &self.bytes[at..at + len as usize];
            at += len as usize;
            message
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Messages come out whole and in order across compactions; the byte count follows.
    #[test]
    fn messages_in_order_across_compaction() {
        let mut q = Queue::default();
        for i in 0..100u32 {
            q.push(|b| b.extend_from_slice(format!("message {i}").as_bytes()));
            if i % 3 == 0 {
                let front = q.front().unwrap().to_vec();
                assert!(front.starts_with(b"message "));
                q.pop();
                q.compact();
            }
        }
        let rest: Vec<String> = q
            .messages()
            .map(|m| String::from_utf8_lossy(m).into_owned())
            .collect();
        assert_eq!(rest.len(), 66);
        assert_eq!(rest[0], "message 34");
        assert_eq!(q.bytes(), rest.iter().map(String::len).sum::<usize>());
        while !q.is_empty() {
            q.pop();
        }
        q.compact();
        assert_eq!(q.bytes(), 0);
        assert!(q.front().is_none());
    }
}
