//! Scenario files (TOML): who is in the world, what they send, and what goes wrong. Every problem
//! in a file is reported with the line it is on.

use std::collections::BTreeSet;

use serde::Deserialize;
use switchboard_session::Suite;
use switchboard_wire::address::Address;
use toml::Spanned;

/// Largest number of devices a scenario may create.
pub const MAX_DEVICES: usize = 200_000;
/// Largest number of messages a scenario may send.
pub const MAX_MESSAGES: u64 = 10_000_000;
/// Largest group.
pub const MAX_GROUP_SIZE: usize = 10_000;
/// Largest plaintext a scenario may ask for.
pub const MAX_MESSAGE_SIZE: usize = 64 * 1024;
/// Longest simulated time, in seconds.
pub const MAX_SECONDS: f64 = 31.0 * 86_400.0;
/// Largest scenario file read.
pub const MAX_FILE_LEN: usize = 1024 * 1024;
/// Most groups a scenario may create.
pub const MAX_GROUPS: u64 = 10_000;
/// Most one-time prekeys a device publishes.
pub const MAX_PREKEYS: u32 = 100;

/// What is wrong with a scenario file, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ScenarioError {
    pub line: usize,
    pub message: String,
}

/// A whole scenario, as read from a file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// A short name for reports.
    pub name: String,
    /// How long traffic runs, in seconds of simulated time.
    pub duration_s: f64,
    /// How long after the traffic (and every fault) ends the network is given to heal before the
    /// delivery invariant is checked.
    #[serde(default = "default_settle")]
    pub settle_s: f64,
    /// `sender-keys` (one encryption, hub/follower fan-out) or `pairwise` (one encryption per
    /// member device).
    #[serde(default)]
    pub group_strategy: GroupStrategy,
    /// The suite of new groups' sender keys (its cipher: a group's messages have no key agreement
    /// of their own).
    #[serde(default = "default_suite")]
    pub suite: Spanned<String>,
    /// One-time prekeys each device publishes, and the stock it fills again when its relay
    /// reports it low.
    #[serde(default = "default_prekeys")]
    pub prekeys_per_device: u32,
    /// The relay reports a device's one-time prekeys low at this many left (default: half the
    /// stock, rounded down); 0: never, and once they are gone sessions start without one.
    #[serde(default)]
    pub prekey_low_mark: Option<u32>,
    /// How old a device's signed prekey grows before it makes a new one, and how long it keeps
    /// the one it replaced (seconds).
    #[serde(default = "default_rotation")]
    pub signed_prekey_rotation_s: f64,
    #[serde(default = "default_grace")]
    pub signed_prekey_grace_s: f64,
    #[serde(rename = "app")]
    pub apps: Vec<App>,
    #[serde(default, rename = "group")]
    pub groups: Vec<GroupSpec>,
    #[serde(default)]
    pub traffic: Traffic,
    #[serde(default, rename = "offline")]
    pub offline: Vec<Offline>,
    #[serde(default, rename = "link")]
    pub links: Vec<LinkFaults>,
    #[serde(default, rename = "partition")]
    pub partitions: Vec<Partition>,
    #[serde(default, rename = "crash")]
    pub crashes: Vec<Crash>,
    #[serde(default, rename = "adversary")]
    pub adversaries: Vec<Adversary>,
    #[serde(default, rename = "theft")]
    pub thefts: Vec<Theft>,
    /// People with accounts on several apps, linked (see `docs/PEOPLE.md`).
    #[serde(default, rename = "person")]
    pub people: Vec<PersonSpec>,
    /// Strangers, blocks and abuse reports (see `docs/CONSENT.md`).
    #[serde(default)]
    pub consent: ConsentSpec,
    /// A channel with followers on every app (see `crate::world::channel`).
    #[serde(default)]
    pub channel: ChannelSpec,
    /// A business account served by several agents (see `crate::world::business`).
    #[serde(default)]
    pub business: BusinessSpec,
    /// Deliberate bugs, for checking that the invariants catch them.
    #[serde(default)]
    pub inject: Inject,
}

/// What the scenario does with consent: strangers who flood someone with first messages, users
/// who block someone who wrote to them, and recipients who report messages (some reports forged).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsentSpec {
    /// Strangers who each send `stranger_messages` first messages at once to someone they never
    /// wrote to, early in the traffic.
    #[serde(default)]
    pub strangers: u32,
    #[serde(default)]
    pub stranger_messages: u32,
    /// Users who block the person behind someone who wrote to them, during the traffic.
    #[serde(default)]
    pub blocks: u32,
    /// Received messages reported by their recipients, and reports forged from received ones
    /// (another content, another sender, another time).
    #[serde(default)]
    pub reports: u32,
    #[serde(default)]
    pub forged_reports: u32,
}

/// A channel: opened at the start of the traffic on `app` by that app's first user, followed by
/// `followers` users of every app (the first ones of each app in turn), who follow during the
/// first `follow_s` seconds of the traffic. `posts` polls are posted after that, over the rest
/// of the traffic; `votes` followers vote on them; `leavers` followers leave halfway.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelSpec {
    #[serde(default)]
    pub app: Option<Spanned<String>>,
    #[serde(default)]
    pub followers: u32,
    #[serde(default = "default_follow_s")]
    pub follow_s: f64,
    #[serde(default)]
    pub posts: u32,
    #[serde(default)]
    pub votes: u32,
    #[serde(default)]
    pub leavers: u32,
}

fn default_follow_s() -> f64 {
    10.0
}

/// A business account `shop@app` served by `agents` agents (one device each, the first its
/// owner's). `customers` users of the other apps write `messages` messages to it in all over the
/// traffic; the agent a conversation is assigned to answers each; `handovers` conversations are
/// handed to another agent; with `remove_agent`, the owner removes the last agent halfway.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BusinessSpec {
    #[serde(default)]
    pub app: Option<Spanned<String>>,
    #[serde(default)]
    pub agents: u32,
    #[serde(default)]
    pub customers: u32,
    #[serde(default)]
    pub messages: u32,
    #[serde(default)]
    pub handovers: u32,
    #[serde(default)]
    pub remove_agent: bool,
}

fn default_settle() -> f64 {
    30.0
}
fn default_suite() -> Spanned<String> {
    Spanned::new(0..0, "aes-256-gcm".to_owned())
}
fn default_prekeys() -> u32 {
    5
}
fn default_rotation() -> f64 {
    2.0 * 86_400.0
}
fn default_grace() -> f64 {
    14.0 * 86_400.0
}
fn one() -> u32 {
    1
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum GroupStrategy {
    #[default]
    SenderKeys,
    Pairwise,
}

/// An app: a provider with its own relay and users.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct App {
    pub name: Spanned<String>,
    /// Named users (`alice`), and/or `user_count` generated ones (`u0`, `u1`, …).
    #[serde(default)]
    pub users: Vec<String>,
    #[serde(default)]
    pub user_count: usize,
    #[serde(default = "one")]
    pub devices_per_user: u32,
    /// Faults on the connections between this app's devices and its relay.
    #[serde(default)]
    pub access: Option<LinkSpec>,
    /// The suites the app's devices offer for 1:1 sessions: a session takes the best both ends
    /// offer.
    #[serde(default)]
    pub suites: SuiteSet,
}

/// The suites an app's devices offer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SuiteSet {
    /// Every suite, post-quantum first.
    #[default]
    All,
    /// `aes-256-gcm` and `signal-v3`: no post-quantum key agreement.
    Classical,
    /// `signal-pqxdh` and `signal-v3`, as libsignal offers today.
    Libsignal,
}

impl SuiteSet {
    /// The suites, best first.
    pub fn suites(self) -> &'static [Suite] {
        match self {
            SuiteSet::All => &Suite::ALL,
            SuiteSet::Classical => &Suite::CLASSICAL,
            SuiteSet::Libsignal => &[Suite::SignalPqxdh, Suite::SignalV3],
        }
    }
}

/// Groups: `count` groups of `size` member users each, drawn from `apps` in turn.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupSpec {
    #[serde(default = "one")]
    pub count: u32,
    pub size: Spanned<usize>,
    /// The apps members come from (all apps when empty); the first member's app is the hub.
    #[serde(default)]
    pub apps: Vec<Spanned<String>>,
    /// Users added to each group during the traffic window.
    #[serde(default)]
    pub joins: u32,
    /// Members removed from each group during the traffic window.
    #[serde(default)]
    pub removals: u32,
}

/// What is sent during the traffic window.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Traffic {
    /// Messages sent in all, at random times over the window.
    pub messages: u64,
    /// Share of them sent to groups (the rest go 1:1).
    #[serde(default = "no_share")]
    pub group_share: Spanned<f64>,
    /// Members of each group that send to it (its first ones, the admin first); all when unset.
    /// Real groups have few active senders, and each sender hands its key to every member once.
    #[serde(default)]
    pub group_senders: Option<usize>,
    /// Plaintext sizes, drawn uniformly.
    #[serde(default = "default_size")]
    pub size: Range,
    /// Relative weights of content kinds.
    #[serde(default)]
    pub kinds: Kinds,
}

impl Default for Traffic {
    fn default() -> Self {
        Traffic { messages: 0, group_share: Spanned::new(0..0, 0.0), group_senders: None, size: default_size(), kinds: Kinds::default() }
    }
}

fn no_share() -> Spanned<f64> {
    Spanned::new(0..0, 0.0)
}

fn default_size() -> Range {
    Range { min: 16, max: 256 }
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Range {
    pub min: usize,
    pub max: usize,
}

/// Relative weights of the content kinds sent.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Kinds {
    #[serde(default)]
    pub text: f64,
    #[serde(default)]
    pub reply: f64,
    #[serde(default)]
    pub reaction: f64,
    #[serde(default)]
    pub receipt: f64,
}

impl Default for Kinds {
    fn default() -> Self {
        Kinds { text: 1.0, reply: 0.0, reaction: 0.0, receipt: 0.0 }
    }
}

/// A device (`name@app/1`) or every device of a user (`name@app`) offline for a while; or, with
/// `share`, that share of all devices, each at a random time in the window, for `for_s`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Offline {
    #[serde(default)]
    pub device: Option<Spanned<String>>,
    #[serde(default)]
    pub share: Option<f64>,
    #[serde(default)]
    pub from_s: f64,
    pub for_s: f64,
}

/// Delay and faults of a link: between two apps' relays (`[[link]]`), or between an app's
/// devices and its relay (`access` of an app).
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct LinkSpec {
    #[serde(default)]
    pub delay: Delay,
    /// Probability that a frame is lost; the connection it was on resets (as TCP gives up).
    #[serde(default)]
    pub drop: f64,
    /// Probability that a frame arrives twice.
    #[serde(default)]
    pub duplicate: f64,
    /// Probability that a frame is held back by up to `reorder_ms` more, overtaken by later ones.
    #[serde(default)]
    pub reorder: f64,
    #[serde(default = "default_reorder_ms")]
    pub reorder_ms: f64,
    /// Probability that bytes of a frame are flipped; the link's integrity check (TLS in a
    /// deployment) catches it and the connection resets.
    #[serde(default)]
    pub corrupt: f64,
    /// Probability that, with a frame, an older frame of the same link is sent again.
    #[serde(default)]
    pub replay: f64,
    /// When the faults apply (delay always does); the whole traffic window by default.
    #[serde(default)]
    pub from_s: Option<f64>,
    #[serde(default)]
    pub until_s: Option<f64>,
}

fn default_reorder_ms() -> f64 {
    50.0
}

/// A delay distribution, in milliseconds.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, tag = "kind", rename_all = "kebab-case")]
pub enum Delay {
    Constant { ms: f64 },
    Uniform { min_ms: f64, max_ms: f64 },
    /// `min_ms` plus an exponentially distributed extra with mean `mean_ms`.
    Exponential { min_ms: f64, mean_ms: f64 },
}

impl Default for Delay {
    fn default() -> Self {
        Delay::Uniform { min_ms: 1.0, max_ms: 5.0 }
    }
}

/// Faults between two apps' relays.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkFaults {
    pub apps: Spanned<Vec<String>>,
    #[serde(flatten)]
    pub spec: LinkSpec,
}

/// No frame passes between two apps for a while.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Partition {
    pub apps: Spanned<Vec<String>>,
    pub from_s: f64,
    pub until_s: f64,
}

/// A relay crashes (losing everything not yet committed) and restarts `down_s` later.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Crash {
    pub relay: Spanned<String>,
    pub at_s: f64,
    #[serde(default = "default_down")]
    pub down_s: f64,
}

fn default_down() -> f64 {
    2.0
}

/// A relay, or a group member, that misbehaves on purpose.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Adversary {
    /// The relay, for a relay's kinds; none for `forge-membership`.
    #[serde(default)]
    pub relay: Option<Spanned<String>>,
    pub kind: Spanned<AdversaryKind>,
    /// Share of the envelopes it hands to its devices that it acts on; for `forge-membership`,
    /// the share of groups with a forging member.
    pub share: f64,
    /// Only envelopes to this user (`name@app`), when given.
    #[serde(default)]
    pub target: Option<Spanned<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AdversaryKind {
    /// Flips a byte of the ciphertext.
    Tamper,
    /// Hands an envelope over again, later.
    Replay,
    /// Holds envelopes back and hands them over out of order.
    Reorder,
    /// Never hands the envelope over (and deletes it).
    Withhold,
    /// Takes the signed suite list out of the prekey bundles it hands its devices, so that they
    /// start sessions under `signal-v3` (a downgrade; `share` is the share of bundle answers).
    StripSuites,
    /// Not a relay: a member of a group, not an admin, whose modified client sends announcements
    /// no admin made — adding a stranger in secret, removing someone, jumping the epoch, and
    /// different changes to different members.
    ForgeMembership,
    /// Not a relay: a member of a group (in `share` of the groups) that sends every other member
    /// junk under the id of each group message it is handed.
    ReuseIds,
    /// Not a relay: another user of `target`'s app sends it a mailbox's worth of junk at once, at
    /// a random time of the traffic (`share` is the chance it happens at all).
    Flood,
    /// Changes the person records it hands its devices in answer to lookups: adds an account
    /// that is not hers (with a device of its own making), or drops one of hers (`share`: the
    /// share of lookup answers it acts on).
    ForgeLink,
    /// Not a relay: records every frame on every link and, at the end, is given every X25519
    /// private key drawn (a quantum computer's answer) but no KEM secret; the report counts the
    /// 1:1 messages it reads per suite (`share` unused).
    HarvestNow,
}

impl AdversaryKind {
    /// Whether a relay plays it (else a device does).
    pub fn is_relay(self) -> bool {
        !matches!(self, AdversaryKind::ForgeMembership | AdversaryKind::ReuseIds | AdversaryKind::Flood | AdversaryKind::HarvestNow)
    }
}

/// One person's accounts (users the apps list), linked before the traffic starts: the first
/// account's first device makes her person key, every other device joins with an invitation.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PersonSpec {
    pub accounts: Spanned<Vec<String>>,
    /// Who may see each account is hers, in the order of `accounts`: `public`, `contacts` or
    /// `nobody`. By default the first is public and the others are shown to her contacts.
    #[serde(default)]
    pub visibility: Vec<LinkVisibility>,
}

/// Who may see a link, as a scenario names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LinkVisibility {
    Public,
    Contacts,
    Nobody,
}

impl PersonSpec {
    /// The visibility of account `index`.
    pub fn visibility(&self, index: usize) -> LinkVisibility {
        match self.visibility.get(index) {
            Some(visibility) => *visibility,
            None if index == 0 => LinkVisibility::Public,
            None => LinkVisibility::Contacts,
        }
    }
}

/// The whole state of a device is copied by a thief at a given time.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Theft {
    pub device: Spanned<String>,
    pub at_s: f64,
}

/// Bugs put in on purpose, to show that the invariants catch them.
#[derive(Debug, Clone, Copy, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Inject {
    /// The senders' clients hand a plaintext copy to their relay, which keeps it.
    #[serde(default)]
    pub relay_keeps_plaintext: bool,
    /// Clients keep their sender key when a member is removed (a build with
    /// `--cfg switchboard_inject_bugs` only; other builds refuse the scenario).
    #[serde(default)]
    pub no_rotation_on_removal: bool,
    /// Clients show an envelope they have already processed again.
    #[serde(default)]
    pub no_duplicate_drop: bool,
    /// Clients accept a session started under a weaker suite than both accept (a build with
    /// `--cfg switchboard_inject_bugs` only; other builds refuse the scenario).
    #[serde(default)]
    pub no_downgrade_check: bool,
    /// Clients apply a change from any member, not only from an admin (a build with
    /// `--cfg switchboard_inject_bugs` only; other builds refuse the scenario).
    #[serde(default)]
    pub no_admin_check: bool,
}

impl Scenario {
    /// Reads and checks a scenario.
    pub fn parse(text: &str) -> Result<Scenario, ScenarioError> {
        if text.len() > MAX_FILE_LEN {
            return Err(ScenarioError { line: 1, message: format!("a scenario file is at most {MAX_FILE_LEN} bytes") });
        }
        let scenario: Scenario = toml::from_str(text).map_err(|error| ScenarioError {
            line: error.span().map_or(1, |span| line_of(text, span.start)),
            message: error.message().trim().to_owned(),
        })?;
        scenario.check(text)?;
        Ok(scenario)
    }

    /// Checks a scenario made or changed in code (a parsed one was checked already); errors name
    /// line 1.
    pub fn validate(&self) -> Result<(), ScenarioError> {
        self.check("")
    }

    /// The apps' names, in file order.
    pub fn app_names(&self) -> Vec<String> {
        self.apps.iter().map(|app| app.name.get_ref().clone()).collect()
    }

    /// Devices the scenario creates.
    pub fn device_count(&self) -> usize {
        self.apps
            .iter()
            .map(|app| (app.users.len() + app.user_count).saturating_mul(app.devices_per_user as usize))
            .fold(0usize, usize::saturating_add)
            .saturating_add(self.business.agents as usize)
    }

    fn check(&self, text: &str) -> Result<(), ScenarioError> {
        let at = |span: std::ops::Range<usize>, message: String| ScenarioError { line: line_of(text, span.start), message };
        // Errors with no field of their own point at the table that holds them.
        let table = |header: &str, index: usize, message: String| ScenarioError {
            line: nth_header_line(text, header, index),
            message,
        };
        let top = |message: String| ScenarioError { line: 1, message };

        let core_bug = [
            ("no_rotation_on_removal", self.inject.no_rotation_on_removal),
            ("no_downgrade_check", self.inject.no_downgrade_check),
            ("no_admin_check", self.inject.no_admin_check),
        ]
            .into_iter()
            .find(|(_, on)| *on && !cfg!(switchboard_inject_bugs));
        if let Some((name, _)) = core_bug {
            return Err(table(
                "inject",
                0,
                format!("{name} is a bug in the client core, built only with RUSTFLAGS=\"--cfg switchboard_inject_bugs\" (never into the product)"),
            ));
        }
        let seconds = |value: f64| value.is_finite() && (0.0..=MAX_SECONDS).contains(&value);
        if !seconds(self.duration_s) || self.duration_s == 0.0 {
            return Err(top(format!("duration_s must be over 0 and at most {MAX_SECONDS}")));
        }
        if !seconds(self.settle_s) {
            return Err(top(format!("settle_s must be 0 to {MAX_SECONDS}")));
        }
        if self.suite.get_ref().parse::<switchboard_session::Suite>().is_err() {
            let known: Vec<&str> = Suite::ALL.iter().map(|suite| suite.name()).collect();
            return Err(at(self.suite.span(), format!("unknown suite {:?}: one of {}", self.suite.get_ref(), known.join(", "))));
        }
        if self.apps.is_empty() {
            return Err(top("a scenario needs at least one [[app]]".into()));
        }
        if self.prekeys_per_device == 0 || self.prekeys_per_device > MAX_PREKEYS {
            return Err(top(format!("prekeys_per_device is 1 to {MAX_PREKEYS}")));
        }
        if self.prekey_low_mark.is_some_and(|mark| mark >= self.prekeys_per_device) {
            return Err(top("prekey_low_mark is below prekeys_per_device".into()));
        }
        let rotation = self.signed_prekey_rotation_s;
        if !seconds(rotation) || rotation < 60.0 || !seconds(self.signed_prekey_grace_s) || self.signed_prekey_grace_s < rotation {
            return Err(top(format!(
                "signed_prekey_rotation_s is 60 to {MAX_SECONDS}, signed_prekey_grace_s from it to {MAX_SECONDS}"
            )));
        }
        let mut names = BTreeSet::new();
        for app in &self.apps {
            let name = app.name.get_ref();
            let valid = !name.is_empty() && name.len() <= 32 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
            if !valid {
                return Err(at(app.name.span(), format!("app name {name:?}: 1 to 32 letters, digits or '-'")));
            }
            if !names.insert(name.clone()) {
                return Err(at(app.name.span(), format!("app {name:?} is listed twice")));
            }
            if app.devices_per_user == 0 || app.devices_per_user > 16 {
                return Err(at(app.name.span(), format!("app {name:?}: devices_per_user is 1 to 16")));
            }
            let mut users = BTreeSet::new();
            for user in &app.users {
                let valid = !user.is_empty() && user.len() <= 64 && !user.contains(['@', '/']);
                if !valid || !users.insert(user) || generated_index(user).is_some_and(|n| n < app.user_count) {
                    return Err(at(
                        app.name.span(),
                        format!("app {name:?}: user {user:?} is invalid, listed twice, or one of the generated u0, u1, …"),
                    ));
                }
            }
            if let Some(access) = &app.access {
                check_link(access).map_err(|message| at(app.name.span(), format!("app {name:?} access: {message}")))?;
            }
        }
        if self.device_count() > MAX_DEVICES {
            return Err(top(format!("{} devices: at most {MAX_DEVICES}", self.device_count())));
        }
        let known = |name: &Spanned<String>| -> Result<(), ScenarioError> {
            if names.contains(name.get_ref()) { Ok(()) } else { Err(at(name.span(), format!("unknown app {:?}", name.get_ref()))) }
        };
        let users_of = |apps: &[Spanned<String>]| -> usize {
            self.apps
                .iter()
                .filter(|app| apps.is_empty() || apps.iter().any(|a| a.get_ref() == app.name.get_ref()))
                .map(|app| app.users.len() + app.user_count)
                .sum()
        };
        let group_count: u64 = self.groups.iter().map(|group| u64::from(group.count)).sum();
        if group_count > MAX_GROUPS {
            return Err(top(format!("{group_count} groups: at most {MAX_GROUPS}")));
        }
        for group in &self.groups {
            for app in &group.apps {
                known(app)?;
            }
            let size = *group.size.get_ref();
            let available = users_of(&group.apps);
            if size < 2 || size > MAX_GROUP_SIZE || size > available {
                return Err(at(
                    group.size.span(),
                    format!("group size {size}: 2 to {MAX_GROUP_SIZE}, and at most the {available} users of its apps"),
                ));
            }
            if group.removals as usize >= size || (group.joins as usize) > available - size {
                return Err(at(group.size.span(), "more removals than members, or more joins than users left outside".into()));
            }
        }
        let traffic = &self.traffic;
        if traffic.messages > MAX_MESSAGES {
            return Err(top(format!("traffic.messages: at most {MAX_MESSAGES}")));
        }
        let share = *traffic.group_share.get_ref();
        if !(0.0..=1.0).contains(&share) || (share > 0.0 && self.groups.is_empty()) {
            return Err(at(traffic.group_share.span(), "group_share is 0 to 1, and above 0 only with a [[group]]".into()));
        }
        if traffic.size.min > traffic.size.max || traffic.size.max > MAX_MESSAGE_SIZE || traffic.size.min < 1 {
            return Err(top(format!("traffic.size: 1 ≤ min ≤ max ≤ {MAX_MESSAGE_SIZE}")));
        }
        let kinds = [traffic.kinds.text, traffic.kinds.reply, traffic.kinds.reaction, traffic.kinds.receipt];
        if kinds.iter().any(|w| !w.is_finite() || *w < 0.0) || kinds.iter().sum::<f64>() <= 0.0 {
            return Err(top("traffic.kinds: weights are 0 or more, and not all 0".into()));
        }
        if traffic.group_senders == Some(0) {
            return Err(top("traffic.group_senders: at least 1 (or leave it out for every member)".into()));
        }
        let users_total = users_of(&[]);
        if traffic.messages > 0 && share < 1.0 && users_total < 2 {
            return Err(top("1:1 traffic needs at least two users".into()));
        }
        for (index, offline) in self.offline.iter().enumerate() {
            if !seconds(offline.from_s) || !seconds(offline.for_s) {
                return Err(table("[[offline]]", index, format!("from_s and for_s are 0 to {MAX_SECONDS}")));
            }
            match (&offline.device, offline.share) {
                (Some(device), None) => {
                    self.check_device(device, true).map_err(|m| at(device.span(), m))?;
                }
                (None, Some(share)) if (0.0..=1.0).contains(&share) => {}
                _ => return Err(table("[[offline]]", index, "give either device = \"name@app[/n]\" or share = 0..1".into())),
            }
        }
        for link in &self.links {
            self.check_pair(&link.apps).map_err(|m| at(link.apps.span(), m))?;
            check_link(&link.spec).map_err(|m| at(link.apps.span(), m))?;
        }
        for partition in &self.partitions {
            self.check_pair(&partition.apps).map_err(|m| at(partition.apps.span(), m))?;
            if !seconds(partition.from_s) || !seconds(partition.until_s) || partition.from_s > partition.until_s {
                return Err(at(partition.apps.span(), "a partition needs 0 ≤ from_s ≤ until_s".into()));
            }
        }
        for crash in &self.crashes {
            known(&crash.relay)?;
            if !seconds(crash.at_s) || !seconds(crash.down_s) {
                return Err(at(crash.relay.span(), format!("at_s and down_s are 0 to {MAX_SECONDS}")));
            }
        }
        for (index, adversary) in self.adversaries.iter().enumerate() {
            let kind = *adversary.kind.get_ref();
            if !(0.0..=1.0).contains(&adversary.share) {
                return Err(at(adversary.kind.span(), "share is 0 to 1".into()));
            }
            let Some(relay) = &adversary.relay else {
                if kind.is_relay() {
                    return Err(at(adversary.kind.span(), "this kind of adversary needs a relay".into()));
                }
                if self.adversaries[..index].iter().any(|other| *other.kind.get_ref() == kind) {
                    return Err(at(adversary.kind.span(), "one adversary of this kind".into()));
                }
                match (kind, &adversary.target) {
                    (AdversaryKind::Flood, None) => return Err(at(adversary.kind.span(), "a flood needs a target (name@app)".into())),
                    (AdversaryKind::Flood, Some(target)) => {
                        self.check_device(target, false).map_err(|m| at(target.span(), m))?;
                    }
                    (_, Some(target)) => return Err(at(target.span(), "this kind of adversary takes no target".into())),
                    (_, None) => {}
                }
                continue;
            };
            if !kind.is_relay() {
                return Err(at(relay.span(), "this adversary is a device, not a relay: leave relay out".into()));
            }
            known(relay)?;
            if self.adversaries[..index].iter().any(|other| other.relay.as_ref().is_some_and(|other| other.get_ref() == relay.get_ref())) {
                return Err(at(relay.span(), "one adversary per relay".into()));
            }
            if let Some(target) = &adversary.target {
                let address = self.check_device(target, false).map_err(|m| at(target.span(), m))?;
                if address.user().app() != relay.get_ref() {
                    return Err(at(target.span(), "a relay can only target users of its own app".into()));
                }
            }
        }
        let mut linked = BTreeSet::new();
        for person in &self.people {
            let accounts = person.accounts.get_ref();
            if accounts.len() < 2 || accounts.len() > switchboard_client_core::person::MAX_LINKED_ACCOUNTS {
                return Err(at(person.accounts.span(), format!("a person links 2 to {} accounts", switchboard_client_core::person::MAX_LINKED_ACCOUNTS)));
            }
            if person.visibility.len() > accounts.len() {
                return Err(at(person.accounts.span(), "one visibility per account, at most".into()));
            }
            for account in accounts {
                let spanned = Spanned::new(person.accounts.span(), account.clone());
                self.check_device(&spanned, false).map_err(|m| at(person.accounts.span(), m))?;
                if !linked.insert(account.clone()) {
                    return Err(at(person.accounts.span(), format!("{account:?} is linked twice (one person per account)")));
                }
            }
        }
        let other_users = |app: &Option<Spanned<String>>| -> Result<usize, ScenarioError> {
            match app {
                Some(app) => {
                    known(app)?;
                    Ok(users_of(&[]) - users_of(std::slice::from_ref(app)))
                }
                None => Ok(users_of(&[]) - users_of(&[Spanned::new(0..0, self.apps[0].name.get_ref().clone())])),
            }
        };
        let channel = &self.channel;
        if channel.followers > 0 || channel.posts > 0 {
            if !seconds(channel.follow_s) || channel.follow_s >= self.duration_s {
                return Err(table("[channel]", 0, "follow_s is 0 to the traffic's duration".into()));
            }
            if channel.followers as usize >= users_of(&[]) {
                return Err(table("[channel]", 0, "followers must be fewer than the scenario's users (its admin is one)".into()));
            }
            // Its admin is the first user of its app: the app must have one.
            if other_users(&channel.app)? == users_of(&[]) {
                return Err(table("[channel]", 0, "the channel's app has no user to be its admin".into()));
            }
            if channel.votes > channel.followers || channel.leavers > channel.followers {
                return Err(table("[channel]", 0, "votes and leavers are at most followers".into()));
            }
        }
        let business = &self.business;
        if business.agents > 0 {
            if business.agents as usize > switchboard_wire::limits::MAX_DEVICES_PER_USER || business.agents < 2 && business.remove_agent {
                return Err(table("[business]", 0, format!("agents is 1 to {} (2 or more to remove one)", switchboard_wire::limits::MAX_DEVICES_PER_USER)));
            }
            if business.customers as usize > other_users(&business.app)? || (business.customers == 0 && business.messages > 0) {
                return Err(table("[business]", 0, "customers are users of the other apps, and messages need customers".into()));
            }
            if business.handovers > business.customers {
                return Err(table("[business]", 0, "handovers are at most customers".into()));
            }
        }
        for (index, theft) in self.thefts.iter().enumerate() {
            let address = self.check_device(&theft.device, true).map_err(|m| at(theft.device.span(), m))?;
            if self.thefts[..index].iter().any(|other| other.device.get_ref() == theft.device.get_ref()) {
                return Err(at(theft.device.span(), "one theft per device".into()));
            }
            if address.device_id().is_none() {
                return Err(at(theft.device.span(), "a theft names one device: name@app/n".into()));
            }
            if !seconds(theft.at_s) {
                return Err(at(theft.device.span(), format!("at_s is 0 to {MAX_SECONDS}")));
            }
        }
        Ok(())
    }

    /// `name@app` or (with `device_allowed`) `name@app/n`, naming a user the scenario has.
    fn check_device(&self, text: &Spanned<String>, device_allowed: bool) -> Result<Address, String> {
        let address: Address = text.get_ref().parse().map_err(|error| format!("{:?}: {error}", text.get_ref()))?;
        if address.device_id().is_some() && !device_allowed {
            return Err(format!("{:?}: a user here, name@app", text.get_ref()));
        }
        let user = address.user();
        let app = self.apps.iter().find(|a| a.name.get_ref() == user.app()).ok_or_else(|| format!("unknown app in {:?}", text.get_ref()))?;
        let generated = generated_index(user.name()).is_some_and(|n| n < app.user_count);
        if !generated && !app.users.iter().any(|u| u == user.name()) {
            return Err(format!("unknown user {:?}", user.as_str()));
        }
        if address.device_id().is_some_and(|n| n > app.devices_per_user) {
            return Err(format!("{:?}: devices are numbered 1 to {}", text.get_ref(), app.devices_per_user));
        }
        Ok(address)
    }

    fn check_pair(&self, apps: &Spanned<Vec<String>>) -> Result<(), String> {
        match apps.get_ref().as_slice() {
            [a, b] if a != b => {
                for app in [a, b] {
                    if !self.apps.iter().any(|known| known.name.get_ref() == app) {
                        return Err(format!("unknown app {app:?}"));
                    }
                }
                Ok(())
            }
            _ => Err("apps names two different apps".into()),
        }
    }
}

fn check_link(spec: &LinkSpec) -> Result<(), String> {
    for (name, p) in [("drop", spec.drop), ("duplicate", spec.duplicate), ("reorder", spec.reorder), ("corrupt", spec.corrupt), ("replay", spec.replay)] {
        if !(0.0..=1.0).contains(&p) {
            return Err(format!("{name} is a probability, 0 to 1"));
        }
    }
    // A link that loses every frame never heals.
    if spec.drop + spec.corrupt > 0.5 {
        return Err("drop + corrupt above 0.5: the link could never carry a conversation".into());
    }
    let ms = |v: f64| v.is_finite() && (0.0..=60_000.0).contains(&v);
    let delay_ok = match spec.delay {
        Delay::Constant { ms: v } => ms(v),
        Delay::Uniform { min_ms, max_ms } => ms(min_ms) && ms(max_ms) && min_ms <= max_ms,
        Delay::Exponential { min_ms, mean_ms } => ms(min_ms) && ms(mean_ms),
    };
    if !delay_ok || !ms(spec.reorder_ms) {
        return Err("delays are 0 to 60000 ms (and min ≤ max)".into());
    }
    for window in [spec.from_s, spec.until_s].into_iter().flatten() {
        if !(window.is_finite() && (0.0..=MAX_SECONDS).contains(&window)) {
            return Err(format!("from_s and until_s are 0 to {MAX_SECONDS}"));
        }
    }
    Ok(())
}

/// `n` for a generated user name `u{n}` (spelled exactly so: `u01` is not `u1`).
fn generated_index(name: &str) -> Option<usize> {
    let digits = name.strip_prefix('u')?;
    digits.parse::<usize>().ok().filter(|n| n.to_string() == digits)
}

/// The 1-based line of byte `offset`.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())].iter().filter(|&&b| b == b'\n').count() + 1
}

/// The line of the `index`th `header` (e.g. `[[offline]]`), or 1.
fn nth_header_line(text: &str, header: &str, index: usize) -> usize {
    text.lines().enumerate().filter(|(_, line)| line.trim() == header).nth(index).map_or(1, |(n, _)| n + 1)
}
