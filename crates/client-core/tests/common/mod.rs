//! A small world for group tests: devices of three apps, a bundle directory and a FIFO network of
//! pairwise messages.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use rand::SeedableRng;
use rand::rngs::StdRng;
use switchboard_client_core::{ClientError, Device, GroupMessage, InMemoryDirectory, Outgoing, Received};
use switchboard_session::{ProtocolAddress, Suite};

pub const GROUP: &str = "weekend-plans";

/// Devices, a bundle directory and a FIFO network of pairwise messages.
pub struct World {
    pub devices: BTreeMap<ProtocolAddress, Device>,
    pub directory: InMemoryDirectory,
    pub network: VecDeque<(ProtocolAddress, Outgoing)>,
    pub rng: StdRng,
}

pub fn address(name: &str) -> ProtocolAddress {
    ProtocolAddress::new(name, 1)
}

impl World {
    pub fn new(names: &[&str], seed: u64) -> World {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut directory = InMemoryDirectory::default();
        let mut devices = BTreeMap::new();
        for (i, name) in names.iter().enumerate() {
            let mut device = Device::new(address(name), i as u32 + 1, &mut rng);
            directory.publish(&address(name), device.publish_bundles(20, &mut rng)).unwrap();
            devices.insert(address(name), device);
        }
        World { devices, directory, network: VecDeque::new(), rng }
    }

    /// A further device, with its bundles published.
    pub fn add_device(&mut self, name: &str) {
        let mut device = Device::new(address(name), self.devices.len() as u32 + 1, &mut self.rng);
        self.directory.publish(&address(name), device.publish_bundles(5, &mut self.rng)).unwrap();
        self.devices.insert(address(name), device);
    }

    pub fn device(&mut self, name: &str) -> &mut Device {
        self.devices.get_mut(&address(name)).unwrap()
    }

    pub fn post(&mut self, from: &str, outgoing: Vec<Outgoing>) {
        self.network.extend(outgoing.into_iter().map(|message| (address(from), message)));
    }

    /// Delivers every pairwise message (and the responses they cause) in order; returns what
    /// each device made of them.
    pub fn deliver_all(&mut self) -> Vec<(ProtocolAddress, Result<Received, ClientError>)> {
        let mut seen = Vec::new();
        while let Some((from, outgoing)) = self.network.pop_front() {
            let device = self.devices.get_mut(&outgoing.to).unwrap();
            match device.receive(&from, &outgoing.message, &mut self.directory, &mut self.rng) {
                Ok((received, responses)) => {
                    let sender = outgoing.to.clone();
                    self.network.extend(responses.into_iter().map(|r| (sender.clone(), r)));
                    seen.push((outgoing.to, Ok(received)));
                }
                Err(error) => seen.push((outgoing.to, Err(error))),
            }
        }
        seen
    }

    /// Encrypts a group message; the sender's key goes first to the members that lack it.
    pub fn group_send(&mut self, from: &str, text: &str) -> GroupMessage {
        let rng = &mut self.rng;
        let device = self.devices.get_mut(&address(from)).unwrap();
        let mut message = device.encrypt_group(GROUP, text.as_bytes(), rng).unwrap();
        let distributions = std::mem::take(&mut message.key_distributions);
        let sealed = device.seal_all(distributions, &mut self.directory, rng).unwrap();
        self.post(from, sealed);
        assert!(self.deliver_all().iter().all(|(_, result)| result.is_ok()));
        message
    }

    pub fn group_read(&mut self, reader: &str, from: &str, message: &GroupMessage) -> Result<Vec<u8>, ClientError> {
        self.device(reader).decrypt_group(GROUP, &address(from), &message.bytes)
    }

    /// Every listed member reads every other member's message.
    pub fn everyone_reads_everyone(&mut self, members: &[&str], text: &str) {
        for sender in members {
            let message = self.group_send(sender, &format!("{text} from {sender}"));
            let expected: BTreeSet<_> = members.iter().filter(|m| *m != sender).map(|m| address(m)).collect();
            assert_eq!(message.recipients.iter().cloned().collect::<BTreeSet<_>>(), expected);
            assert_eq!(message.recipients.len(), expected.len(), "each member once");
            for reader in members.iter().filter(|m| *m != sender) {
                assert_eq!(
                    self.group_read(reader, sender, &message).unwrap(),
                    format!("{text} from {sender}").as_bytes(),
                    "{reader} reading {sender}"
                );
            }
        }
    }
}

/// Alice (the admin) founded the group with Bob, Carol and Dave; Erin is not in it.
pub fn founded(suite: Suite, seed: u64) -> World {
    let mut world = World::new(&["alice@green", "bob@blue", "carol@red", "dave@blue", "erin@red"], seed);
    let members = ["bob@blue", "carol@red", "dave@blue"].map(address);
    let rng = &mut world.rng;
    let outgoing = world.devices.get_mut(&address("alice@green")).unwrap().create_group(GROUP, members, suite, &mut world.directory, rng).unwrap();
    world.post("alice@green", outgoing);
    assert!(world.deliver_all().iter().all(|(_, result)| result.is_ok()));
    world
}

