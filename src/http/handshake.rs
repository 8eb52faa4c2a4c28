//! The budget of TLS handshakes in progress, kept apart from connection slots so that a flood
//! of silent or slow handshakes cannot lock out clients that complete theirs.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex, PoisonError};

use tokio_util::sync::CancellationToken;

/// TLS handshakes in progress, at most `max` at once.
///
/// When all slots are taken, a new handshake cuts one in progress rather than being refused:
/// otherwise `max` silent connections would lock everyone out for a whole handshake timeout.
/// The one cut is the oldest of the source with the most handshakes in progress (ties: the
/// oldest of those), so a flood from one address only cuts its own handshakes, and an honest
/// client, whose handshake lasts milliseconds, is cut only if `max` connections arrive during
/// it from sources with at least as many handshakes in progress. Sources are IPv4 addresses and
/// IPv6 /64 prefixes. There is no per-source cap: kube-apiserver may share its address
/// (loopback in the sidecar layout) with other clients.
pub struct Handshakes {
    max: usize,
    state: Mutex<HandshakeState>,
}

#[derive(Default)]
struct HandshakeState {
    next: u64,
    count: usize,
    by_source: HashMap<IpAddr, VecDeque<(u64, CancellationToken)>>,
}

/// A handshake slot; `cut` is cancelled when a newer handshake takes the slot.
pub struct HandshakeSlot {
    pool: Arc<Handshakes>,
    source: IpAddr,
    id: u64,
    pub cut: CancellationToken,
}

/// The source an address counts for: IPv6 hosts usually own a whole /64.
fn source_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !u128::from(u64::MAX))),
        },
        v4 => v4,
    }
}

impl Handshakes {
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Handshakes {
            max: max.max(1),
            state: Mutex::new(HandshakeState::default()),
        })
    }

    /// Takes a slot for a handshake from `peer`; also says whether another handshake was cut
    /// to make room.
    pub fn enter(self: &Arc<Self>, peer: IpAddr) -> (HandshakeSlot, bool) {
        let source = source_of(peer);
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let mut cut_one = false;
        if st.count >= self.max {
            let victim = st
                .by_source
                .iter()
                .filter_map(|(src, q)| Some((q.len(), std::cmp::Reverse(q.front()?.0), *src)))
                .max()
                .map(|(_, _, src)| src);
            if let Some(src) = victim
                && let Some(q) = st.by_source.get_mut(&src)
                && let Some((_, token)) = q.pop_front()
            {
                token.cancel();
                if q.is_empty() {
                    st.by_source.remove(&src);
                }
                st.count -= 1;
                cut_one = true;
            }
        }
        let id = st.next;
        st.next += 1;
        let cut = CancellationToken::new();
        st.by_source
            .entry(source)
            .or_default()
            .push_back((id, cut.clone()));
        st.count += 1;
        let slot = HandshakeSlot {
            pool: self.clone(),
            source,
            id,
            cut,
        };
        (slot, cut_one)
    }

    /// Handshakes in progress.
    pub fn in_progress(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .count
    }
}

impl Drop for HandshakeSlot {
    fn drop(&mut self) {
        let mut st = self
            .pool
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let Some(q) = st.by_source.get_mut(&self.source) else {
            return;
        };
        // Absent when it was cut (already removed then).
        if let Some(pos) = q.iter().position(|(id, _)| *id == self.id) {
            q.remove(pos);
            let empty = q.is_empty();
            if empty {
                st.by_source.remove(&self.source);
            }
            st.count -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_full_handshake_budget_cuts_the_oldest_of_the_busiest_source() {
        let pool = Handshakes::new(4);
        let (honest, _) = pool.enter(ip("10.0.0.1"));
        let flood: Vec<_> = (0..3).map(|_| pool.enter(ip("10.0.0.2")).0).collect();
        assert_eq!(pool.in_progress(), 4);
        // Full: each newcomer cuts the flood's oldest, never the honest handshake.
        let mut newer = Vec::new();
        for old in &flood {
            let (slot, cut_one) = pool.enter(ip("10.0.0.2"));
            assert!(cut_one);
            assert!(old.cut.is_cancelled());
            assert!(!honest.cut.is_cancelled());
            newer.push(slot);
        }
        assert_eq!(pool.in_progress(), 4);
        // A second honest source while the flood leads: the flood still pays.
        let (other, cut_one) = pool.enter(ip("10.0.0.3"));
        assert!(cut_one && !honest.cut.is_cancelled() && !other.cut.is_cancelled());
        drop((honest, other, flood, newer));
        assert_eq!(pool.in_progress(), 0);
    }

    #[test]
    fn one_source_alone_loses_its_oldest_handshake_first() {
        // kube-apiserver and a flood may share 127.0.0.1 (the sidecar layout): the newest
        // handshake, the one that has not had its few milliseconds yet, is kept.
        let pool = Handshakes::new(2);
        let (a, _) = pool.enter(ip("127.0.0.1"));
        let (b, _) = pool.enter(ip("127.0.0.1"));
        let (c, cut_one) = pool.enter(ip("127.0.0.1"));
        assert!(cut_one && a.cut.is_cancelled());
        assert!(!b.cut.is_cancelled() && !c.cut.is_cancelled());
        assert_eq!(pool.in_progress(), 2);
    }

    #[test]
    fn ipv6_sources_are_whole_64_prefixes() {
        assert_eq!(
            source_of(ip("2001:db8::1")),
            source_of(ip("2001:db8::ffff:1"))
        );
        assert_ne!(
            source_of(ip("2001:db8::1")),
            source_of(ip("2001:db8:0:1::1"))
        );
        assert_eq!(source_of(ip("::ffff:10.0.0.1")), ip("10.0.0.1"));
    }
}
