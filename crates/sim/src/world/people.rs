//! People on several apps (`[[person]]`): their accounts linked before the traffic, and what the
//! report checks of them at the end — that every record a device holds is one its person signed
//! for accounts that are hers (no relay forged or hid a link), and that a reader sees every
//! account of one person it heard from, whose link it may see, as that one person (one thread).

use switchboard_wire::Message;
use switchboard_wire::switchboard::Visibility;

use super::World;
use crate::ledger::Violation;
use crate::scenario::LinkVisibility;

/// The invariant a device breaks by holding a link its person did not make.
pub const FORGED_LINK: &str = "no relay can forge or hide a link";
/// The invariant a reader breaks by not seeing one person behind her accounts.
pub const ONE_THREAD: &str = "a person's messages form one thread across apps";

fn visibility(link: LinkVisibility) -> Visibility {
    match link {
        LinkVisibility::Public => Visibility::Public,
        LinkVisibility::Contacts => Visibility::Contacts,
        LinkVisibility::Nobody => Visibility::Nobody,
    }
}

/// What the report gives of the scenario's people.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct PeopleCounts {
    /// People with accounts on several apps (`[[person]]`).
    pub people: u64,
    /// Devices of people, in all.
    pub devices: u64,
    /// Transcripts sent to a person's other devices (what she sent, for them to show).
    pub transcripts_sent: u64,
    /// Transcripts her other devices read.
    pub transcripts_received: u64,
    /// Lookups answered with a record kept.
    pub lookups_kept: u64,
    /// Lookups whose answer was refused (a relay changed it, or it did not match the devices
    /// its relay serves).
    pub lookups_refused: u64,
    /// Lookup answers a `forge-link` relay changed.
    pub links_forged: u64,
    /// Records of other people the devices hold at the end.
    pub records_held: u64,
}

impl World {
    /// Links each person's accounts: the first account's first device makes her person key; every
    /// other device joins with an invitation from the device that joined before it (which holds
    /// her record as it stands, so that no two joins make one version). Her devices then tell
    /// each other, end to end.
    pub(super) fn link_people(&mut self) {
        let people = self.scenario.people.clone();
        for spec in &people {
            let mut previous: Option<usize> = None;
            for (index, account) in spec.accounts.get_ref().iter().enumerate() {
                let visibility = visibility(spec.visibility(index));
                let user = self.user_index[account.as_str()];
                for device in self.users[user].devices.clone() {
                    let mut out = Vec::new();
                    let rng = &mut crate::harvest::Watched::new(&mut self.rng, self.harvester.as_mut());
                    match previous.and_then(|p| self.clients[p].person_invitation()) {
                        None => self.clients[device].become_person(self.now, visibility, rng, &mut out),
                        Some(invitation) => self.clients[device].join_person(self.now, &invitation, visibility, rng, &mut out),
                    }
                    self.client_out(device, out);
                    previous = Some(device);
                }
            }
        }
    }

    /// A message from `sender` to `user` (one account of a person): the first time this device
    /// writes to that user, it looks her record up first (the answer may come after the message
    /// went; her own devices carry that one on).
    pub(super) fn look_up_before_writing(&mut self, sender: usize, user: usize) {
        if self.person_of_user[user].is_none() || !self.looked_up.insert((sender, user)) {
            return;
        }
        let name = self.users[user].name.clone();
        let (mut out, mut outcomes) = (Vec::new(), Vec::new());
        self.clients[sender].lookup_person(self.now, &name, &mut out, &mut outcomes);
        self.client_out(sender, out);
        self.outcomes(sender, outcomes);
    }

    /// The checks of the people invariants, with their counts.
    pub(crate) fn check_people(&self) -> (PeopleCounts, Vec<Violation>, Vec<Violation>) {
        let mut counts = PeopleCounts {
            people: self.person_devices.len() as u64,
            devices: self.person_devices.iter().map(|d| d.len() as u64).sum(),
            lookups_kept: self.ledger.lookups_kept,
            lookups_refused: self.ledger.lookups_refused,
            links_forged: self.ledger.links_forged,
            ..PeopleCounts::default()
        };
        for client in &self.clients {
            counts.transcripts_sent += client.stats().transcripts_sent;
            counts.transcripts_received += client.stats().transcripts_received;
        }
        // Each person's key, as her first device holds it.
        let keys: Vec<Option<[u8; 33]>> = self
            .person_devices
            .iter()
            .map(|devices| self.clients[devices[0]].device().person().map(|p| p.person_key().serialize()))
            .collect();
        let person_of_account = |account: &str| self.user_index.get(account).and_then(|user| self.person_of_user[*user]);
        let mut forged = Vec::new();
        for client in &self.clients {
            let people = client.device().people();
            counts.records_held += people.len() as u64;
            for record in people.records() {
                if self.ledger.forged_records.contains(&record.to_wire().encode_to_vec()) {
                    forged.push(Violation { invariant: FORGED_LINK, detail: format!("{} holds a record a relay changed", client.address) });
                    continue;
                }
                let key = record.person_key().serialize();
                let Some(person) = keys.iter().position(|k| *k == Some(key)) else {
                    forged.push(Violation { invariant: FORGED_LINK, detail: format!("{} holds a record of a person no one is", client.address) });
                    continue;
                };
                for account in record.accounts() {
                    if person_of_account(&account.user) != Some(person) {
                        forged.push(Violation {
                            invariant: FORGED_LINK,
                            detail: format!("{} holds a record that links {} to a person it is not", client.address, account.user),
                        });
                    }
                }
            }
        }
        // Every account a reader heard from, whose link it may see (the person wrote to it from
        // that account, and shows the account to her contacts or everyone), is seen as hers.
        let mut threads = Vec::new();
        let mut checked = rustc_hash::FxHashSet::default();
        for &(message, reader) in self.ledger.reads.keys() {
            let Some(record) = self.ledger.messages.get(message as usize) else { continue };
            if record.group.is_some() || !record.addressed.contains(&reader) {
                continue;
            }
            let sender_user = self.user_of[record.sender];
            let Some(person) = self.person_of_user[sender_user] else { continue };
            if self.person_of_user[self.user_of[reader]] == Some(person) || !checked.insert((reader, sender_user)) {
                continue;
            }
            let account = &self.users[sender_user].name;
            let spec = &self.scenario.people[person];
            let index = spec.accounts.get_ref().iter().position(|a| a == account).unwrap_or(0);
            if spec.visibility(index) == LinkVisibility::Nobody {
                continue;
            }
            let seen = self.clients[reader].device().people().person_of(account).map(|r| r.person_key().serialize());
            if seen.is_none() || seen != keys[person] {
                threads.push(Violation {
                    invariant: ONE_THREAD,
                    detail: format!("{} read {account} without knowing it as the person it is", self.clients[reader].address),
                });
            }
        }
        threads.sort_by(|a, b| a.detail.cmp(&b.detail));
        (counts, forged, threads)
    }
}
