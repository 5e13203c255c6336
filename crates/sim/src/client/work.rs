//! Work that needs other devices' bundles before it can be sealed: it waits, in order, while
//! they are fetched through the relay (across apps by federation).

use std::collections::VecDeque;

use rand::rngs::StdRng;
use switchboard_client::{ClientError, Outgoing, PendingSend};
use switchboard_session::{ProtocolAddress, Suite};
use switchboard_wire::switchboard::{FetchBundles, GroupEnvelope, client_frame::Body};

use super::{Change, Client, OutFrame, Phase, Request};

/// Work waiting for bundles of some users.
#[derive(Debug)]
pub(super) enum Work {
    Direct { to: String, content: Vec<u8> },
    Seal(Vec<PendingSend>),
    Group { distributions: Vec<PendingSend>, envelope: GroupEnvelope },
    Pairwise { group: String, recipients: Vec<ProtocolAddress>, content: Vec<u8> },
    Create { group: String, members: Vec<ProtocolAddress>, suite: Suite },
    Add { group: String, member: ProtocolAddress },
    Remove { group: String, member: ProtocolAddress },
}

impl Client {
    /// The users whose bundles `work` still needs.
    fn needs(&self, work: &Work) -> Vec<String> {
        let unknown = |address: &ProtocolAddress| !self.device.has_session(address) && !self.devices_of.contains_key(address.name());
        let mut users: Vec<String> = match work {
            Work::Direct { to, .. } => (!self.devices_of.contains_key(to)).then(|| to.clone()).into_iter().collect(),
            Work::Seal(pending) => pending.iter().map(|p| &p.to).filter(|a| unknown(a)).map(|a| a.name().to_owned()).collect(),
            Work::Group { distributions, .. } => {
                distributions.iter().map(|p| &p.to).filter(|a| unknown(a)).map(|a| a.name().to_owned()).collect()
            }
            Work::Pairwise { recipients, .. } => recipients.iter().filter(|a| unknown(a)).map(|a| a.name().to_owned()).collect(),
            Work::Create { members, .. } => members.iter().filter(|a| unknown(a)).map(|a| a.name().to_owned()).collect(),
            Work::Add { group, member } => {
                let mut all: Vec<&ProtocolAddress> = self.device.group(group).map(|g| g.members.iter().collect()).unwrap_or_default();
                all.push(member);
                all.into_iter().filter(|a| **a != self.address && unknown(a)).map(|a| a.name().to_owned()).collect()
            }
            Work::Remove { group, member } => {
                let all: Vec<&ProtocolAddress> = self.device.group(group).map(|g| g.members.iter().collect()).unwrap_or_default();
                all.into_iter().filter(|a| *a != member && **a != self.address && unknown(a)).map(|a| a.name().to_owned()).chain(unknown(member).then(|| member.name().to_owned())).collect()
            }
        };
        users.sort();
        users.dedup();
        users
    }

    fn fetch(&mut self, user: &str, out: &mut Vec<OutFrame>) {
        if self.phase != Phase::Online || self.fetching.contains(user) {
            return;
        }
        self.fetching.insert(user.to_owned());
        self.frame(Some(Request::Fetch(user.to_owned())), Body::FetchBundles(FetchBundles { user: user.to_owned() }), out);
    }

    pub(super) fn fetch_missing(&mut self, out: &mut Vec<OutFrame>) {
        let mut users: Vec<String> = self.waiting.iter().flat_map(|(_, missing)| missing.iter().cloned()).collect();
        users.sort();
        users.dedup();
        for user in users {
            self.fetch(&user, out);
        }
    }

    /// Runs `work` now if its bundles are at hand, else once they are (fetching them).
    pub(super) fn submit(&mut self, work: Work, rng: &mut StdRng, out: &mut Vec<OutFrame>) {
        let needs = self.needs(&work);
        if needs.is_empty() && self.waiting.is_empty() {
            self.run(work, rng, out);
            return;
        }
        for user in &needs {
            self.fetch(user, out);
        }
        self.waiting.push_back((work, needs.into_iter().collect()));
        self.run_waiting(rng, out);
    }

    /// Runs, in order, every waiting work no longer waiting for a bundle. (Each is checked once
    /// more as it runs: a group's membership may have grown meanwhile.)
    pub(super) fn run_waiting(&mut self, rng: &mut StdRng, out: &mut Vec<OutFrame>) {
        let mut still = VecDeque::new();
        while let Some((work, missing)) = self.waiting.pop_front() {
            if !missing.is_empty() {
                still.push_back((work, missing));
                continue;
            }
            let needs = self.needs(&work);
            if needs.is_empty() {
                self.run(work, rng, out);
            } else {
                for user in &needs {
                    self.fetch(user, out);
                }
                still.push_back((work, needs.into_iter().collect()));
            }
        }
        self.waiting = still;
    }

    fn run(&mut self, work: Work, rng: &mut StdRng, out: &mut Vec<OutFrame>) {
        let directory = &mut self.directory;
        let sealed: Result<(Vec<Outgoing>, String), ClientError> = match work {
            Work::Direct { to, content } => {
                let devices = self.devices_of.get(&to).cloned().unwrap_or_default();
                devices
                    .iter()
                    .map(|device| self.device.send(device, &content, directory, rng))
                    .collect::<Result<Vec<_>, _>>()
                    .map(|o| (o, String::new()))
            }
            Work::Seal(pending) => self.device.seal_all(pending, directory, rng).map(|o| (o, String::new())),
            Work::Group { distributions, envelope } => match self.device.seal_all(distributions, directory, rng) {
                Ok(keys) => {
                    self.queue_pairwise(keys, "", rng, out);
                    self.queue(Body::SendGroup(envelope), out);
                    Ok((Vec::new(), String::new()))
                }
                Err(error) => Err(error),
            },
            Work::Pairwise { group, recipients, content } => recipients
                .iter()
                .map(|device| self.device.send(device, &content, directory, rng))
                .collect::<Result<Vec<_>, _>>()
                .map(|o| (o, group)),
            Work::Create { group, members, suite } => {
                self.device.create_group(&group, members, suite, directory, rng).map(|o| (o, String::new()))
            }
            Work::Add { group, member } => self.device.add_member(&group, member.clone(), directory, rng).map(|o| {
                let epoch = self.device.group(&group).map_or(0, |g| g.epoch);
                self.changes.push(Change { group, member, epoch, added: true });
                (o, String::new())
            }),
            Work::Remove { group, member } => self.device.remove_member(&group, &member, directory, rng).map(|o| {
                let epoch = self.device.group(&group).map_or(0, |g| g.epoch);
                self.changes.push(Change { group, member, epoch, added: false });
                (o, String::new())
            }),
        };
        match sealed {
            Ok((outgoing, group)) => {
                self.queue_pairwise(outgoing, &group, rng, out);
            }
            // Bundles were checked first, so this is a device the directory does not know (one
            // that registered after we fetched its user): nothing to do but count it.
            Err(_) => self.stats.sends_dropped += 1,
        }
    }
}
