//! Many devices and the pairwise sessions between them, established outside any timed region
//! (in a real group they exist already) and on every core, since a group of 100 has 4,950 pairs.
//!
//! Each pair is established as a conversation would be: the initiator processes the responder's
//! bundle (with a one-time prekey) and writes, the responder reads and replies, the initiator
//! reads. From then on both write SignalMessages, and whenever the direction of a conversation
//! changes, the reader of the first message in the new direction performs a DH ratchet step (two
//! X25519 DHs and a key generation), exactly as in real use.

use rand::SeedableRng;
use rand::rngs::StdRng;
use switchboard_session::group::InMemorySenderKeyStore;
use switchboard_session::testing::Device;
use switchboard_session::{CiphertextMessage, MessageKind, ProtocolAddress, Suite, session};

use super::session::bundle_for;

/// One member device: its identity and sessions (`device.store`), its sender keys, its RNG.
pub struct Member {
    /// Its address.
    pub address: ProtocolAddress,
    /// Its identity, prekeys and sessions.
    pub device: Device,
    /// Its sender keys (its own and those it received).
    pub sender_keys: InMemorySenderKeyStore,
    /// Its seeded RNG.
    pub rng: StdRng,
}

impl Member {
    /// Member `index` of a group (fresh identity and signed prekey).
    pub fn new(index: usize, seed: u64) -> Member {
        let mut rng = StdRng::seed_from_u64(seed.wrapping_mul(0x9e37_79b9).wrapping_add(index as u64));
        let device = Device::new(1 + index as u32, 1, &mut rng);
        Member { address: address(index), device, sender_keys: InMemorySenderKeyStore::default(), rng }
    }

    /// Encrypts `plaintext` to `to` over their session and returns the wire form.
    pub fn seal(&mut self, to: &ProtocolAddress, plaintext: &[u8]) -> Sealed {
        let message = session::encrypt(&mut self.device.store, to, plaintext).expect("pairwise encrypt");
        Sealed { kind: message.kind(), bytes: message.serialize().to_vec() }
    }

    /// Parses and decrypts a message from `from`.
    pub fn open(&mut self, from: &ProtocolAddress, sealed: &Sealed) -> Vec<u8> {
        let message = CiphertextMessage::parse(sealed.kind, &sealed.bytes).expect("pairwise parse");
        session::decrypt(&mut self.device.store, from, &message, &mut self.rng).expect("pairwise decrypt")
    }
}

/// A pairwise message on the wire.
pub struct Sealed {
    /// PreKeySignalMessage or SignalMessage.
    pub kind: MessageKind,
    /// The serialized message.
    pub bytes: Vec<u8>,
}

/// The address of member `index`.
pub fn address(index: usize) -> ProtocolAddress {
    ProtocolAddress::new(format!("member-{index}@bench"), 1)
}

/// `count` members (made on every core).
pub fn members(count: usize, seed: u64) -> Vec<Member> {
    let mut slots: Vec<Option<Member>> = (0..count).map(|_| None).collect();
    par_each(&mut slots, |index, slot| *slot = Some(Member::new(index, seed)));
    slots.into_iter().map(|slot| slot.expect("made")).collect()
}

/// Which of `a` and `b` starts their session: alternating with the parity of `a + b`, so that at
/// any moment about half of a member's pairs expect the next ratchet step on each side.
pub fn initiator(a: usize, b: usize) -> (usize, usize) {
    let (low, high) = (a.min(b), a.max(b));
    if (low + high) % 2 == 0 { (low, high) } else { (high, low) }
}

/// Establishes a session (under `suite`) for each pair of member indices, in both directions.
pub fn connect(members: &mut [Member], pairs: &[(usize, usize)], suite: Suite) {
    let pairs: Vec<(usize, usize)> = pairs.iter().map(|&(a, b)| initiator(a, b)).collect();
    let addresses: Vec<ProtocolAddress> = members.iter().map(|member| member.address.clone()).collect();
    // Which pairs each member starts, and which it answers.
    let mut starts: Vec<Vec<usize>> = vec![Vec::new(); members.len()];
    let mut answers: Vec<Vec<usize>> = vec![Vec::new(); members.len()];
    for (pair, &(initiator, responder)) in pairs.iter().enumerate() {
        starts[initiator].push(pair);
        answers[responder].push(pair);
    }

    // 1. Responders publish a bundle for each initiator.
    let bundles = route(members, &answers, pairs.len(), |member, _| bundle_for(&mut member.device, suite, &mut member.rng));
    // 2. Initiators process it and write.
    let mut bundles = bundles.into_iter().map(Some).collect::<Vec<_>>();
    let firsts = {
        let bundles = std::sync::Mutex::new(&mut bundles);
        route(members, &starts, pairs.len(), |member, pair| {
            let bundle = bundles.lock().expect("lock")[pair].take().expect("a bundle");
            let responder = &addresses[pairs[pair].1];
            session::process_prekey_bundle(&mut member.device.store, responder, &bundle, suite, &mut member.rng)
                .expect("bundle");
            member.seal(responder, b"hello")
        })
    };
    // 3. Responders read and reply.
    let replies = route(members, &answers, pairs.len(), |member, pair| {
        let initiator = &addresses[pairs[pair].0];
        assert_eq!(member.open(initiator, &firsts[pair]), b"hello");
        member.seal(initiator, b"hello back")
    });
    // 4. Initiators read the reply.
    route(members, &starts, pairs.len(), |member, pair| {
        let responder = &addresses[pairs[pair].1];
        assert_eq!(member.open(responder, &replies[pair]), b"hello back");
    });
}

/// Runs `work(member, pair)` for every pair in each member's `inbox`, members in parallel (each
/// member's pairs in order, so the result does not depend on the threads), and returns the
/// results by pair. (Members of either kind: this module's, or `shipped`'s client-core devices.)
pub(crate) fn route<M: Send, T: Send>(
    members: &mut [M],
    inbox: &[Vec<usize>],
    pairs: usize,
    work: impl Fn(&mut M, usize) -> T + Sync,
) -> Vec<T> {
    let mut results: Vec<Vec<(usize, T)>> = (0..members.len()).map(|_| Vec::new()).collect();
    let mut jobs: Vec<(&mut M, &mut Vec<(usize, T)>)> = members.iter_mut().zip(results.iter_mut()).collect();
    par_each(&mut jobs, |index, (member, out)| {
        for &pair in &inbox[index] {
            out.push((pair, work(member, pair)));
        }
    });
    let mut by_pair: Vec<Option<T>> = (0..pairs).map(|_| None).collect();
    for (pair, result) in results.into_iter().flatten() {
        by_pair[pair] = Some(result);
    }
    by_pair.into_iter().map(|result| result.expect("every pair has a result")).collect()
}

/// Runs `work(index, item)` for every item, on as many threads as there are cores, items dealt
/// out round-robin (heavy items tend to be neighbours).
pub fn par_each<T: Send>(items: &mut [T], work: impl Fn(usize, &mut T) + Sync) {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, items.len().max(1));
    let mut shares: Vec<Vec<(usize, &mut T)>> = (0..threads).map(|_| Vec::new()).collect();
    for (index, item) in items.iter_mut().enumerate() {
        shares[index % threads].push((index, item));
    }
    std::thread::scope(|scope| {
        for share in shares {
            let work = &work;
            scope.spawn(move || {
                for (index, item) in share {
                    work(index, item);
                }
            });
        }
    });
}
