//! OpenMLS (crates.io `openmls` 0.9, `openmls_rust_crypto` 0.6 as the crypto and storage provider,
//! `openmls_basic_credential` for Ed25519 signature keys), ciphersuite
//! MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519, default group configuration (handshake and
//! application messages as PrivateMessages). Each member has a provider (and so a storage) of its
//! own. Groups are built outside the timed region: one member creates the group and adds everyone
//! in one commit; the members the workload needs join from the Welcome; the others exist only as
//! leaves (their key packages).
//!
//! Messages: `MlsGroup::create_message` (serialized with `to_bytes`) and, for the receiver, parsing
//! (`MlsMessageIn::tls_deserialize_exact`) and `process_message`, all timed.
//!
//! Membership changes: one member commits (`add_members` with a fresh key package, OpenMLS's
//! default, which also updates the committer's path; or `remove_members`) and merges its pending
//! commit; one other member parses, processes (`process_message`) and merges the commit
//! (`merge_staged_commit`). All timed. The other members' processing (each about what this one
//! costs) and the newcomer's join from the Welcome are not. To keep the group's size steady, each
//! added member is removed again (and each removed one replaced) with the clock stopped.
//!
//! OpenMLS encrypts path secrets and derives parent nodes on rayon's thread pool; here that pool
//! has one thread ([`one_thread`]), so that, as for every other implementation, the time is the
//! CPU time of one core (and `--cpu-time` sees all of it).
//!
//! The tree is as that one big commit leaves it: parent nodes are blank except on the direct paths
//! of members who have committed since (here the committer's). So a commit's path secrets are
//! encrypted to every leaf under the committer's copath (about N − 1 HPKE encryptions) rather
//! than to log2(N) filled nodes; that is OpenMLS's cost in a group whose members have not yet
//! committed, its worst case.

use std::hint::black_box;
use std::time::Duration;

use openmls::prelude::tls_codec::Deserialize as _;
use openmls::prelude::*;
use openmls_basic_credential::SignatureKeyPair;
use openmls_rust_crypto::OpenMlsRustCrypto;

use crate::clock::Instant;
use super::group::queue;
use super::{CATCHUP_SENDERS, Op, SMALL, Workload, chunk_len, chunked, plaintext};

const CIPHERSUITE: Ciphersuite = Ciphersuite::MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519;

/// The workload of `op` in a group of `members` (for `group_encrypt_100` and `group_decrypt_100`;
/// the catch-up uses a group of 11, the membership ops their own size).
pub fn workload(op: Op, members: usize, _seed: u64) -> Box<dyn Workload> {
    one_thread();
    match op {
        Op::GroupEncrypt100 => {
            let [sender] = build::<1>(members);
            Box::new(Encrypt { sender, plaintext: plaintext(SMALL) })
        }
        Op::GroupDecrypt100 => {
            let [sender, receiver] = build::<2>(members);
            Box::new(Decrypt { sender, receiver, plaintext: plaintext(SMALL) })
        }
        Op::GroupCatchup1000 => {
            let mut clients: Vec<Client> = build::<{ CATCHUP_SENDERS + 1 }>(CATCHUP_SENDERS + 1).into();
            let receiver = clients.pop().expect("11 members");
            Box::new(Catchup { senders: clients, receiver, plaintext: plaintext(SMALL) })
        }
        Op::GroupAddMember(size) => Box::new(Membership::new(size.count(), Change::Add)),
        Op::GroupRemoveMember(size) => Box::new(Membership::new(size.count(), Change::Remove)),
        _ => unreachable!("{} is not a group op", op.name()),
    }
}

/// Makes rayon's global pool (which OpenMLS uses) a single thread, once per process.
pub fn one_thread() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Fails only if the global pool exists already (then it is left as it is).
        let _ = rayon::ThreadPoolBuilder::new().num_threads(1).build_global();
    });
}

/// One member: its provider (crypto, randomness, storage), signature key, credential and group.
pub struct Client {
    provider: OpenMlsRustCrypto,
    signer: SignatureKeyPair,
    credential: CredentialWithKey,
    group: Option<MlsGroup>,
}

impl Client {
    fn new(name: &str) -> Client {
        let signer = SignatureKeyPair::new(CIPHERSUITE.signature_algorithm()).expect("signature key");
        let credential = CredentialWithKey {
            credential: BasicCredential::new(name.as_bytes().to_vec()).into(),
            signature_key: signer.public().into(),
        };
        Client { provider: OpenMlsRustCrypto::default(), signer, credential, group: None }
    }

    fn key_package(&self) -> KeyPackage {
        KeyPackage::builder()
            .build(CIPHERSUITE, &self.provider, &self.signer, self.credential.clone())
            .expect("key package")
            .key_package()
            .clone()
    }

    fn group(&mut self) -> &mut MlsGroup {
        self.group.as_mut().expect("a member")
    }

    /// The wire bytes of an application message.
    fn encrypt(&mut self, plaintext: &[u8]) -> Vec<u8> {
        let group = self.group.as_mut().expect("a member");
        group.create_message(&self.provider, &self.signer, plaintext).expect("create_message").to_bytes().expect("serialize")
    }

    /// Parses and processes a message (an application message or a commit, which is merged).
    fn receive(&mut self, bytes: &[u8]) -> Option<Vec<u8>> {
        let message = MlsMessageIn::tls_deserialize_exact(bytes).expect("parse");
        let message = message.try_into_protocol_message().expect("a protocol message");
        let group = self.group.as_mut().expect("a member");
        match group.process_message(&self.provider, message).expect("process_message").into_content() {
            ProcessedMessageContent::ApplicationMessage(application) => Some(application.into_bytes()),
            ProcessedMessageContent::StagedCommitMessage(commit) => {
                group.merge_staged_commit(&self.provider, *commit).expect("merge");
                None
            }
            _ => panic!("neither an application message nor a commit"),
        }
    }
}

/// A group of `size` members; the first `N` are returned as clients with the group joined (the
/// first created it), the others exist only as leaves.
fn build<const N: usize>(size: usize) -> [Client; N] {
    assert!(size >= N.max(1));
    let config = MlsGroupCreateConfig::builder().ciphersuite(CIPHERSUITE).build();
    let mut clients: Vec<Client> = (0..N).map(|i| Client::new(&format!("member-{i}"))).collect();
    let creator = &mut clients[0];
    creator.group = Some(MlsGroup::new(&creator.provider, &creator.signer, &config, creator.credential.clone()).expect("group"));
    if size > 1 {
        // The members that exist only as leaves make their key packages on every core.
        let mut leaves: Vec<Option<KeyPackage>> = (N.max(1)..size).map(|_| None).collect();
        super::mesh::par_each(&mut leaves, |i, slot| {
            *slot = Some(Client::new(&format!("member-{}", N.max(1) + i)).key_package());
        });
        let key_packages: Vec<KeyPackage> =
            clients[1..].iter().map(Client::key_package).chain(leaves.into_iter().map(|kp| kp.expect("made"))).collect();
        let creator = &mut clients[0];
        let group = creator.group.as_mut().expect("created");
        let (_, welcome, _) = group.add_members(&creator.provider, &creator.signer, &key_packages).expect("add");
        group.merge_pending_commit(&creator.provider).expect("merge");
        let tree = group.export_ratchet_tree();
        let welcome = welcome.to_bytes().expect("serialize");
        for client in &mut clients[1..] {
            let MlsMessageBodyIn::Welcome(welcome) = MlsMessageIn::tls_deserialize_exact(&welcome).expect("parse").extract() else {
                panic!("a welcome");
            };
            let staged = StagedWelcome::new_from_welcome(&client.provider, &MlsGroupJoinConfig::default(), welcome, Some(tree.clone().into()))
                .expect("welcome");
            client.group = Some(staged.into_group(&client.provider).expect("join"));
        }
    }
    clients.try_into().unwrap_or_else(|_| unreachable!("N clients"))
}

struct Encrypt {
    sender: Client,
    plaintext: Vec<u8>,
}

impl Workload for Encrypt {
    fn run(&mut self, iters: u64) -> Duration {
        let start = Instant::now();
        for _ in 0..iters {
            black_box(self.sender.encrypt(&self.plaintext));
        }
        start.elapsed()
    }
}

struct Decrypt {
    sender: Client,
    receiver: Client,
    plaintext: Vec<u8>,
}

impl Workload for Decrypt {
    fn run(&mut self, iters: u64) -> Duration {
        chunked(
            self,
            iters,
            chunk_len(SMALL),
            |this, n| (0..n).map(|_| this.sender.encrypt(&this.plaintext)).collect::<Vec<_>>(),
            |this, batch| {
                for bytes in batch.iter() {
                    black_box(this.receiver.receive(bytes).expect("an application message"));
                }
            },
        )
    }
}

/// `group_catchup_1000`: one `process_message` per message (no batch verification in OpenMLS).
struct Catchup {
    senders: Vec<Client>,
    receiver: Client,
    plaintext: Vec<u8>,
}

impl Workload for Catchup {
    fn run(&mut self, iters: u64) -> Duration {
        chunked(
            self,
            iters,
            1,
            |this, _| {
                let plaintext = &this.plaintext;
                queue(&mut this.senders, |sender| sender.encrypt(plaintext))
            },
            |this, queued| {
                for (_, bytes) in queued.iter() {
                    black_box(this.receiver.receive(bytes).expect("an application message"));
                }
            },
        )
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Change {
    Add,
    Remove,
}

/// `group_add_member_N` / `group_remove_member_N`: the committer (leaf 0) and one other member.
struct Membership {
    change: Change,
    committer: Client,
    member: Client,
    /// The leaf the next removal removes (the one the last addition filled).
    victim: LeafNodeIndex,
    next_name: usize,
}

impl Membership {
    fn new(size: usize, change: Change) -> Self {
        let [committer, member] = build::<2>(size);
        Membership { change, committer, member, victim: LeafNodeIndex::new(size as u32 - 1), next_name: size }
    }

    /// A commit by the committer, merged by it and by the other member; returns its time.
    fn commit(&mut self, change: Change) -> Duration {
        // Untimed: the newcomer's key package (made on its own device).
        let newcomer = (change == Change::Add).then(|| {
            self.next_name += 1;
            let client = Client::new(&format!("member-{}", self.next_name));
            (client.key_package(), client.credential.signature_key.as_slice().to_vec())
        });
        let committer = &mut self.committer;
        let start = Instant::now();
        let group = committer.group.as_mut().expect("a member");
        let commit = match &newcomer {
            Some((key_package, _)) => {
                group.add_members(&committer.provider, &committer.signer, std::slice::from_ref(key_package)).expect("add").0
            }
            None => group.remove_members(&committer.provider, &committer.signer, &[self.victim]).expect("remove").0,
        };
        group.merge_pending_commit(&committer.provider).expect("merge");
        let bytes = commit.to_bytes().expect("serialize");
        black_box(self.member.receive(&bytes));
        let took = start.elapsed();
        if let Some((_, signature_key)) = newcomer {
            self.victim = self
                .committer
                .group()
                .members()
                .find(|member| member.signature_key == signature_key)
                .expect("the newcomer is a member")
                .index;
        }
        took
    }
}

impl Workload for Membership {
    fn run(&mut self, iters: u64) -> Duration {
        let (timed, untimed) = match self.change {
            Change::Add => (Change::Add, Change::Remove),
            Change::Remove => (Change::Remove, Change::Add),
        };
        let mut total = Duration::ZERO;
        for _ in 0..iters {
            total += self.commit(timed);
            self.commit(untimed);
        }
        total
    }
}
