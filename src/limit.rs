//! The per-source limit (`--max-per-source`): how many connections one source may hold at
//! once, counting those streaming and those waiting for a worker.
//!
//! A source is an IPv4 address, or an IPv6 /64: one host usually gets a whole /64, and could
//! otherwise take a fresh address for every connection. A connection over the limit is
//! closed at once, unserved, the way nginx's `limit_conn` and HAProxy's `src_conn_cur` rules
//! reject it: a client that holds the limit cannot take more workers, and everyone else is
//! served meanwhile.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// The limit and the count of connections each source holds now.
#[derive(Debug)]
pub struct Limit {
    max: Option<NonZeroU32>,
    held: Mutex<HashMap<Source, u32>>,
}

/// Where connections come from, as the limit counts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Source(IpAddr);

impl Source {
    /// The source of a peer at `ip`: the address itself for IPv4, its /64 for IPv6.
    pub fn of(ip: IpAddr) -> Source {
        match ip.to_canonical() {
            IpAddr::V6(v6) => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                Source(IpAddr::V6(Ipv6Addr::from(prefix)))
            }
            v4 => Source(v4),
        }
    }
}

impl std::fmt::Display for Source {
    /// The address, or the /64's first address followed by `/64`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            IpAddr::V4(v4) => write!(f, "{v4}"),
            IpAddr::V6(v6) => write!(f, "{v6}/64"),
        }
    }
}

/// A connection's place under the limit; dropping it gives the place back.
#[derive(Debug)]
pub struct Admission {
    limit: Arc<Limit>,
    source: Source,
}

/// The source already holds as many connections as the limit allows.
#[derive(Debug, PartialEq, Eq)]
pub struct OverLimit;

impl Limit {
    /// At most `max` connections per source; `None` means no limit.
    pub fn new(max: Option<NonZeroU32>) -> Limit {
        Limit { max, held: Mutex::new(HashMap::new()) }
    }

    /// Counts a new connection from `ip`, or refuses it if its source is at the limit.
    /// With no limit, nothing is counted and the answer is `Ok(None)`.
    pub fn admit(self: &Arc<Limit>, ip: IpAddr) -> Result<Option<Admission>, OverLimit> {
        let Some(max) = self.max else {
            return Ok(None);
        };
        let source = Source::of(ip);
        let mut held = lock(&self.held);
        let count = held.entry(source).or_insert(0);
        if *count >= max.get() {
            return Err(OverLimit);
        }
        *count += 1;
        Ok(Some(Admission { limit: Arc::clone(self), source }))
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        let mut held = lock(&self.limit.held);
        if let Some(count) = held.get_mut(&self.source) {
            *count -= 1;
            if *count == 0 {
                held.remove(&self.source); // a map of every source ever seen would only grow
            }
        }
    }
}

/// Nothing panics while these locks are held; if it did, the counts would still be whole.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(max: u32) -> Arc<Limit> {
        Arc::new(Limit::new(NonZeroU32::new(max)))
    }

    /// A source gets `max` places; one given back lets the next connection in.
    #[test]
    fn a_source_holds_at_most_max_connections() {
        let limit = limit(2);
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let first = limit.admit(ip).unwrap();
        let _second = limit.admit(ip).unwrap();
        assert_eq!(limit.admit(ip).unwrap_err(), OverLimit);
        // Another source is not affected.
        assert!(limit.admit("192.0.2.8".parse().unwrap()).is_ok());
        drop(first);
        assert!(limit.admit(ip).is_ok());
    }

    /// Every address of one IPv6 /64 is one source, and an IPv4-mapped peer is its IPv4.
    #[test]
    fn an_ipv6_64_is_one_source() {
        let a = Source::of("2001:db8:1:2::1".parse().unwrap());
        let b = Source::of("2001:db8:1:2:ffff:1:2:3".parse().unwrap());
        let c = Source::of("2001:db8:1:3::1".parse().unwrap());
        assert_eq!(a, b);
        assert_ne!(a, c);
        let mapped = Source::of("::ffff:192.0.2.7".parse().unwrap());
        assert_eq!(mapped, Source::of("192.0.2.7".parse().unwrap()));
    }

    /// With no limit nothing is counted; counts of sources that left are forgotten.
    #[test]
    fn no_limit_counts_nothing_and_counts_do_not_pile_up() {
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        assert!(limit(0).admit(ip).unwrap().is_none());
        let limit = limit(1);
        drop(limit.admit(ip).unwrap());
        assert_eq!(lock(&limit.held).get(&Source::of(ip)), None);
        assert!(lock(&limit.held).is_empty());
    }
}
