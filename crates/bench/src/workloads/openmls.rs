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
use super::{CATCHUP_SENDERS, Kind, Op, Report, SMALL, Workload, chunk_len, chunked, each, number, plaintext, time_encrypts};

const CIPHERSUITE: Ciphersuite = Ciphersuite::MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519;

/// The workload of `op` in a group of `members` (for `group_encrypt_100` and `group_decrypt_100`;
/// the catch-up uses a group of 11, the membership ops their own size).
pub fn workload(op: Op, members: usize, _seed: u64) -> Box<dyn Workload> {
    one_thread();
    match op {
        Op::GroupEncrypt100 => {
            // The receiver only reads the last message of each run, with the clock stopped.
            let [sender, receiver] = build::<2>(members);
            Box::new(Encrypt { sender, receiver, plaintext: plaintext(SMALL), last: None, report: Report::new(Kind::Encrypt, SMALL) })
        }
        Op::GroupDecrypt100 => {
            let [sender, receiver] = build::<2>(members);
            Box::new(Decrypt { sender, receiver, plaintext: plaintext(SMALL), sent: 0, report: Report::new(Kind::Decrypt, SMALL) })
        }
        Op::GroupCatchup1000 => {
            let mut clients: Vec<Client> = build::<{ CATCHUP_SENDERS + 1 }>(CATCHUP_SENDERS + 1).into();
            let receiver = clients.pop().expect("11 members");
            let report = Report::new(Kind::Catchup, SMALL);
            Box::new(Catchup { senders: clients, receiver, plaintext: plaintext(SMALL), sent: 0, report })
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

    /// As [`Client::receive`] for an application message, for the checks: what went wrong, if
    /// anything, rather than a panic.
    fn try_receive(&mut self, bytes: &[u8]) -> Result<Vec<u8>, String> {
        let message = MlsMessageIn::tls_deserialize_exact(bytes).map_err(|e| format!("parse: {e}"))?;
        let message = message.try_into_protocol_message().map_err(|e| format!("not a protocol message: {e:?}"))?;
        let group = self.group.as_mut().ok_or("not a member")?;
        match group.process_message(&self.provider, message).map_err(|e| format!("process_message: {e}"))?.into_content() {
            ProcessedMessageContent::ApplicationMessage(application) => Ok(application.into_bytes()),
            _ => Err("not an application message".into()),
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

/// `group_encrypt_100`: the sender encrypts; the receiver (another member) reads only the last
/// message of each run, in [`Workload::report`]. (OpenMLS does not show a message's generation:
/// the count is the loop's.)
struct Encrypt {
    sender: Client,
    receiver: Client,
    plaintext: Vec<u8>,
    last: Option<Vec<u8>>,
    report: Report,
}

impl Workload for Encrypt {
    fn run(&mut self, iters: u64) -> Duration {
        time_encrypts(iters, &mut self.report, &mut self.last, || black_box(self.sender.encrypt(&self.plaintext)))
    }

    fn report(&mut self) -> Report {
        if let Some(last) = self.last.take() {
            match self.receiver.try_receive(&last) {
                Ok(got) => self.report.check_bytes(&got, &self.plaintext, "group_encrypt: the last message, as a member read it"),
                Err(e) => self.report.check(false, || format!("group_encrypt: a member cannot read the last message: {e}")),
            }
        }
        self.report.clone()
    }
}

/// `group_decrypt_100`: numbered messages made before the clock starts; the last plaintext of
/// each batch checked after it stops.
struct Decrypt {
    sender: Client,
    receiver: Client,
    plaintext: Vec<u8>,
    sent: u64,
    report: Report,
}

impl Workload for Decrypt {
    fn run(&mut self, iters: u64) -> Duration {
        let mut count = 0;
        let took = chunked(
            self,
            iters,
            chunk_len(SMALL),
            |this, n| {
                (0..n)
                    .map(|_| {
                        number(&mut this.plaintext, this.sent);
                        this.sent += 1;
                        this.sender.encrypt(&this.plaintext)
                    })
                    .collect::<Vec<_>>()
            },
            |this, batch| each(batch, &mut count, |bytes| black_box(this.receiver.receive(bytes).expect("an application message"))),
            |this, _, got| {
                if let Some(got) = got {
                    this.report.check_bytes(&got, &this.plaintext, "group_decrypt: the last message of the batch");
                }
            },
        );
        self.report.iterations += count;
        self.report.messages += count;
        took
    }

    fn report(&mut self) -> Report {
        self.report.clone()
    }
}

/// `group_catchup_1000`: one `process_message` per message (no batch verification in OpenMLS).
struct Catchup {
    senders: Vec<Client>,
    receiver: Client,
    plaintext: Vec<u8>,
    sent: u64,
    report: Report,
}

impl Workload for Catchup {
    fn run(&mut self, iters: u64) -> Duration {
        let mut count = 0;
        let took = chunked(
            self,
            iters,
            1,
            |this, _| {
                let (plaintext, sent) = (&mut this.plaintext, &mut this.sent);
                queue(&mut this.senders, |sender| {
                    number(plaintext, *sent);
                    *sent += 1;
                    sender.encrypt(plaintext)
                })
            },
            |this, queued| {
                each(queued, &mut count, |(_, bytes)| black_box(this.receiver.receive(bytes).expect("an application message")))
            },
            |this, _, last| {
                this.report.iterations += 1;
                if let Some(got) = last {
                    this.report.check_bytes(&got, &this.plaintext, "group_catchup_1000: the last message");
                }
            },
        );
        self.report.messages += count;
        took
    }

    fn report(&mut self) -> Report {
        self.report.clone()
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
    /// The group's size between changes.
    size: usize,
    report: Report,
}

impl Membership {
    fn new(size: usize, change: Change) -> Self {
        let [committer, member] = build::<2>(size);
        let kind = match change {
            Change::Add => Kind::AddMember,
            Change::Remove => Kind::RemoveMember,
        };
        let victim = LeafNodeIndex::new(size as u32 - 1);
        Membership { change, committer, member, victim, next_name: size, size, report: Report::new(kind, 0) }
    }

    /// A commit by the committer, merged by it and by the other member; returns its time. After
    /// the `measured` one (with the clock stopped), checks that it moved both to the next epoch,
    /// the same for both, with the group one member larger (`Add`) or smaller, as the workload's
    /// op says.
    fn commit(&mut self, change: Change, measured: bool) -> Duration {
        // Untimed: the newcomer's key package (made on its own device).
        let newcomer = (change == Change::Add).then(|| {
            self.next_name += 1;
            let client = Client::new(&format!("member-{}", self.next_name));
            (client.key_package(), client.credential.signature_key.as_slice().to_vec())
        });
        let epoch = self.committer.group().epoch().as_u64();
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
        let processed = black_box(self.member.receive(&bytes));
        let took = start.elapsed();
        if measured {
            self.check(epoch, processed.is_none());
        }
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

    /// What the measured change left (see [`Membership::commit`]): `epoch` is the committer's
    /// before it, `commit` whether the other member processed a commit.
    fn check(&mut self, epoch: u64, commit: bool) {
        if commit {
            self.report.messages += 1;
        }
        let (committer, member) = (self.committer.group.as_ref().expect("a member"), self.member.group.as_ref().expect("a member"));
        let (now, theirs) = (committer.epoch().as_u64(), member.epoch().as_u64());
        self.report.check(now == epoch + 1 && theirs == now, || {
            format!("membership: epochs {epoch} -> committer {now}, other member {theirs}; expected both {}", epoch + 1)
        });
        let holders = 1 + u64::from(committer.epoch_authenticator().as_slice() == member.epoch_authenticator().as_slice());
        let members = committer.members().count();
        let expected = match self.change {
            Change::Add => self.size + 1,
            Change::Remove => self.size - 1,
        };
        self.report.check(members == expected, || format!("membership: {members} members after the change, expected {expected}"));
        self.report.members = Some(members);
        self.report.key_holders = Some(holders);
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
            total += self.commit(timed, true);
            self.commit(untimed, false);
            self.report.iterations += 1;
        }
        total
    }

    fn report(&mut self) -> Report {
        self.report.clone()
    }
}
