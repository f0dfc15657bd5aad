//! The hook every connection's life reaches watchers through: each connection is accepted,
//! taken by one worker, sends its chunks in order, and ends, in that order.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use poetry_serve::watch::{Event, Watch};
use poetry_serve::{Config, Outcome};

use crate::common::{BinaryPoem, InProcess, Target, ms};

/// Every event, as it came.
#[derive(Debug, Default)]
struct Recorder(Mutex<Vec<(u64, Instant, Event)>>);

impl Watch for Recorder {
    fn event(&self, id: u64, at: Instant, event: Event) {
        self.0.lock().unwrap().push((id, at, event));
    }
}

#[test]
fn every_connection_is_accepted_taken_sent_and_ended_in_order() {
    let poem = BinaryPoem::new(95); // chunks of 10: nine of 10 bytes and one of 5
    let recorder = Arc::new(Recorder::default());
    let mut config = Config::new(poem.path());
    config.pacing.delay = ms(10);
    config.watchers = vec![recorder.clone()];
    let server = InProcess::start(config);
    for fetch in server.fetch_many(3) {
        server.assert_bytes(&fetch.bytes, &poem.bytes);
    }
    server.wait_ended(Outcome::Complete, 3);
    let events = recorder.0.lock().unwrap().clone();
    for id in 0..3 {
        let mine: Vec<_> = events.iter().filter(|e| e.0 == id).collect();
        let times: Vec<Instant> = mine.iter().map(|e| e.1).collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]), "out of order: {mine:?}");
        let kinds: Vec<Event> = mine.iter().map(|e| e.2).collect();
        assert!(matches!(kinds[0], Event::Accepted { .. }), "{kinds:?}");
        assert!(matches!(kinds[1], Event::Taken { .. }), "{kinds:?}");
        let chunks: Vec<usize> = (kinds.iter())
            .filter_map(|k| match k {
                Event::Chunk { bytes, .. } => Some(*bytes),
                _ => None,
            })
            .collect();
        assert_eq!(chunks, [10, 10, 10, 10, 10, 10, 10, 10, 10, 5], "{kinds:?}");
        assert_eq!(
            kinds.last(),
            Some(&Event::Ended { outcome: Outcome::Complete, bytes: 95 }),
            "{kinds:?}"
        );
        assert_eq!(kinds.len(), 2 + 10 + 1, "{kinds:?}");
    }
}
