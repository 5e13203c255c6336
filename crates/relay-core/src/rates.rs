//! Rate limits on what costs a relay, or one of its users, something: registering accounts,
//! fetching bundles, and above all taking one-time prekeys, which a user has few of and which
//! anyone could otherwise drain (every later session would then start without one).
//!
//! The core has no clock: the limits are per window of [`RelayCore::tick`]s (the driver ticks
//! every [`RETRY_INTERVAL`](crate::RETRY_INTERVAL)), counted as leaky buckets, so that one who was
//! refused may go on as soon as it slows down. Every count map is bounded by
//! [`MAX_RATE_ENTRIES`]; once full, whoever it does not know yet is refused until keys drain, so
//! no one can grow it, at the price of strangers sharing the refusal.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;

use switchboard_wire::switchboard::ErrorCode;

use crate::state::DeviceKey;

/// Keys one rate map keeps per window.
pub const MAX_RATE_ENTRIES: usize = 100_000;

/// The rate limits of one relay. [`Default`] gives the limits every deployment starts from; a
/// benchmark or test that registers thousands of devices from one address raises them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimits {
    /// Ticks in one counting window (for registrations and fetches): the limits below are per
    /// window, on average (a leaky bucket).
    pub window_ticks: u64,
    /// Registrations one connection may ask for, ever.
    pub registrations_per_connection: u32,
    /// Registrations from one source address (an IPv6 address's /64) per window.
    pub registrations_per_source: u32,
    /// Bundle fetches one device of this app may make per window: enough to create a group of a
    /// thousand at once (one fetch per member whose devices it does not know yet).
    pub fetches_per_device: u32,
    /// Bundle fetches one other app's relay may make per window (for all its devices).
    pub fetches_per_app: u32,
    /// Blob fetches one other app's relay may make per window (each answer is up to
    /// [`crate::MAX_BLOB_LEN`] read from disk).
    pub blob_fetches_per_app: u32,
    /// Ticks in one prekey period.
    pub prekey_period_ticks: u64,
    /// Fetches of one user's bundles that one requester is handed with one-time prekeys (one per
    /// device of the user) per prekey period; later ones come without.
    pub prekey_fetches_per_requester: u32,
    /// The same for one other app's relay, all its devices together (whatever it says they are):
    /// large enough for the many users of a big app who write to one person in an hour, small
    /// enough that a relay naming made-up devices takes no more than a couple of stocks an hour.
    pub prekey_fetches_per_app: u32,
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits {
            window_ticks: 60,
            registrations_per_connection: 16,
            registrations_per_source: 20,
            fetches_per_device: 1_200,
            fetches_per_app: 10_000,
            blob_fetches_per_app: 10_000,
            prekey_period_ticks: 3600,
            prekey_fetches_per_requester: 3,
            prekey_fetches_per_app: 200,
        }
    }
}

/// The network an address stands for: itself for IPv4, its /64 for IPv6 (one host has a whole
/// /64 to choose addresses from).
fn network_of(source: IpAddr) -> IpAddr {
    match source {
        IpAddr::V4(_) => source,
        IpAddr::V6(v6) => IpAddr::V6(std::net::Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1))),
    }
}

/// Who asks for a user's bundles.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Requester {
    /// A device of this app.
    Local(DeviceKey),
    /// Another app's relay, on behalf of the device it names.
    Remote { app: String, device: Option<DeviceKey> },
}

/// A leaky bucket per key: each take adds `period` units, each tick drains `limit`, and a take
/// that would pass `limit × period` is refused. So `limit` takes per `period` ticks on average, at
/// most `limit` at once, and a key that was refused may take again as soon as it has drained a
/// little — not at the end of a fixed window.
#[derive(Debug)]
struct Counter<K> {
    /// Key → (level, the tick it was last brought up to date).
    levels: HashMap<K, (u64, u64)>,
}

impl<K: Hash + Eq> Counter<K> {
    fn new() -> Self {
        Counter { levels: HashMap::new() }
    }

    fn drained(level: u64, since: u64, now: u64, limit: u32) -> u64 {
        level.saturating_sub(now.saturating_sub(since).saturating_mul(u64::from(limit)))
    }

    /// Whether `key` may take one more now, without taking it.
    fn has_room(&self, key: &K, limit: u32, period: u64, now: u64) -> bool {
        let level = self.levels.get(key).map_or(0, |(level, since)| Self::drained(*level, *since, now, limit));
        let known = self.levels.contains_key(key) || self.levels.len() < MAX_RATE_ENTRIES;
        known && level.saturating_add(period) <= u64::from(limit).saturating_mul(period)
    }

    /// Takes one for `key` if it has room.
    fn take(&mut self, key: K, limit: u32, period: u64, now: u64) -> bool {
        if !self.has_room(&key, limit, period, now) {
            return false;
        }
        let (level, since) = self.levels.entry(key).or_insert((0, now));
        *level = Self::drained(*level, *since, now, limit).saturating_add(period);
        *since = now;
        true
    }

    /// Forgets the keys that have drained.
    fn prune(&mut self, limit: u32, now: u64) {
        self.levels.retain(|_, (level, since)| Self::drained(*level, *since, now, limit) > 0);
    }
}

/// What the relay counted in the current windows.
#[derive(Debug)]
pub(crate) struct Rates {
    pub(crate) limits: RateLimits,
    registrations_by_source: Counter<IpAddr>,
    fetches_by_device: Counter<DeviceKey>,
    fetches_by_app: Counter<String>,
    blob_fetches_by_app: Counter<String>,
    prekeys_by_requester: Counter<(Requester, String)>,
    prekeys_by_app: Counter<(String, String)>,
}

type Refusal = (ErrorCode, &'static str);

impl Rates {
    pub(crate) fn new(limits: RateLimits) -> Rates {
        Rates {
            limits,
            registrations_by_source: Counter::new(),
            fetches_by_device: Counter::new(),
            fetches_by_app: Counter::new(),
            blob_fetches_by_app: Counter::new(),
            prekeys_by_requester: Counter::new(),
            prekeys_by_app: Counter::new(),
        }
    }

    /// The relay's clock reads `now` (in ticks); once a window, keys that have drained are
    /// forgotten.
    pub(crate) fn tick(&mut self, now: u64) {
        let limits = self.limits;
        if now % limits.window_ticks.max(1) == 0 {
            self.registrations_by_source.prune(limits.registrations_per_source, now);
            self.fetches_by_device.prune(limits.fetches_per_device, now);
            self.fetches_by_app.prune(limits.fetches_per_app, now);
            self.blob_fetches_by_app.prune(limits.blob_fetches_per_app, now);
            self.prekeys_by_requester.prune(limits.prekey_fetches_per_requester, now);
            self.prekeys_by_app.prune(limits.prekey_fetches_per_app, now);
        }
    }

    /// Counts a registration from `source` (if known), whose connection registered
    /// `on_connection` times before.
    pub(crate) fn registration(&mut self, source: Option<IpAddr>, on_connection: u32, now: u64) -> Result<(), Refusal> {
        if on_connection >= self.limits.registrations_per_connection {
            return Err((ErrorCode::RateLimited, "no more registrations on this connection"));
        }
        if let Some(source) = source
            && !self.registrations_by_source.take(network_of(source), self.limits.registrations_per_source, self.window(), now)
        {
            return Err((ErrorCode::RateLimited, "too many registrations from this address; try again later"));
        }
        Ok(())
    }

    /// Counts a bundle fetch by `requester`.
    pub(crate) fn fetch(&mut self, requester: &Requester, now: u64) -> Result<(), Refusal> {
        let allowed = match requester {
            Requester::Local(device) => self.fetches_by_device.take(device.clone(), self.limits.fetches_per_device, self.window(), now),
            Requester::Remote { app, .. } => self.fetches_by_app.take(app.clone(), self.limits.fetches_per_app, self.window(), now),
        };
        match allowed {
            true => Ok(()),
            false => Err((ErrorCode::RateLimited, "too many bundle fetches; try again later")),
        }
    }

    /// Counts a blob fetch by another app's relay.
    pub(crate) fn blob_fetch(&mut self, app: &str, now: u64) -> Result<(), Refusal> {
        match self.blob_fetches_by_app.take(app.to_owned(), self.limits.blob_fetches_per_app, self.window(), now) {
            true => Ok(()),
            false => Err((ErrorCode::RateLimited, "too many blob fetches; try again later")),
        }
    }

    /// Whether `requester` may be handed `target`'s one-time prekeys (a user's, one per device)
    /// once more this period; counted if so.
    pub(crate) fn prekeys(&mut self, requester: &Requester, target: &str, now: u64) -> bool {
        let limits = self.limits;
        let per_app = match requester {
            Requester::Remote { app, .. } => Some((app.clone(), target.to_owned())),
            Requester::Local(_) => None,
        };
        let requester_key = (requester.clone(), target.to_owned());
        let period = limits.prekey_period_ticks.max(1);
        if !self.prekeys_by_requester.has_room(&requester_key, limits.prekey_fetches_per_requester, period, now)
            || per_app.as_ref().is_some_and(|key| !self.prekeys_by_app.has_room(key, limits.prekey_fetches_per_app, period, now))
        {
            return false;
        }
        self.prekeys_by_requester.take(requester_key, limits.prekey_fetches_per_requester, period, now);
        if let Some(key) = per_app {
            self.prekeys_by_app.take(key, limits.prekey_fetches_per_app, period, now);
        }
        true
    }

    fn window(&self) -> u64 {
        self.limits.window_ticks.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_counter_refuses_past_its_limit_and_drains_with_time() {
        let mut rates = Rates::new(RateLimits { window_ticks: 4, registrations_per_source: 2, ..RateLimits::default() });
        let source = Some(IpAddr::from([10, 0, 0, 1]));
        let mut now = 0;
        assert!(rates.registration(source, 0, now).is_ok());
        assert!(rates.registration(source, 0, now).is_ok());
        assert_eq!(rates.registration(source, 0, now).unwrap_err().0, ErrorCode::RateLimited);
        assert!(rates.registration(Some(IpAddr::from([10, 0, 0, 2])), 0, now).is_ok(), "per source");
        now += 1;
        assert!(rates.registration(source, 0, now).is_err(), "2 per 4 ticks: not yet");
        now += 1;
        assert!(rates.registration(source, 0, now).is_ok(), "drained by one");
        assert!(rates.registration(source, 0, now).is_err());
        now += 8;
        assert!(rates.registration(source, 0, now).is_ok() && rates.registration(source, 0, now).is_ok(), "drained whole");
        assert!(rates.registration(None, 16, now).is_err(), "per connection");
        // One IPv6 host, many addresses of its /64: one share.
        let mut rates = Rates::new(RateLimits { registrations_per_source: 2, ..RateLimits::default() });
        let host = |n: u16| Some(IpAddr::from([0x2001, 0xdb8, 0, 1, n, n, n, n]));
        assert!(rates.registration(host(1), 0, now).is_ok() && rates.registration(host(2), 0, now).is_ok());
        assert!(rates.registration(host(3), 0, now).is_err());
        assert!(rates.registration(Some(IpAddr::from([0x2001, 0xdb8, 0, 2, 1, 1, 1, 1])), 0, now).is_ok(), "another /64");
    }
}
