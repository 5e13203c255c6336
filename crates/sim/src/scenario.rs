//! Scenario files (TOML): who is in the world, what they send, and what goes wrong. Every problem
//! in a file is reported with the field at fault and the line and column of its value.

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

/// What is wrong with a scenario file, and where: the field at fault, and the line and column of
/// its value (of the table that lacks it, when it is missing; line 1, column 1 for a scenario
/// made in code or an error about the whole file).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {}{message}", field.as_deref().map(|field| format!("{field}: ")).unwrap_or_default())]
#[non_exhaustive]
pub struct ScenarioError {
    /// The line, from 1.
    pub line: usize,
    /// The column on that line, in characters, from 1.
    pub column: usize,
    /// The field, as a person finds it in the file: `duration_s`, `[traffic] size.max`,
    /// `[[app]] #2 devices_per_user` (the second `[[app]]`), `[[group]] #1 apps #3`; none when the
    /// file does not parse as TOML.
    pub field: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl ScenarioError {
    fn new(line: usize, column: usize, field: Option<String>, message: String) -> ScenarioError {
        ScenarioError { line, column, field, message }
    }
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
    /// How long a device keeps a signed prekey it replaced, in seconds (sessions started from it
    /// meanwhile still work).
    #[serde(default = "default_grace")]
    pub signed_prekey_grace_s: f64,
    /// The apps (`[[app]]`), each with its relay and users.
    #[serde(rename = "app")]
    pub apps: Vec<App>,
    /// Groups (`[[group]]`).
    #[serde(default, rename = "group")]
    pub groups: Vec<GroupSpec>,
    /// What is sent (`[traffic]`).
    #[serde(default)]
    pub traffic: Traffic,
    /// Devices offline for a while (`[[offline]]`).
    #[serde(default, rename = "offline")]
    pub offline: Vec<Offline>,
    /// Faults between two apps' relays (`[[link]]`).
    #[serde(default, rename = "link")]
    pub links: Vec<LinkFaults>,
    /// Partitions between two apps (`[[partition]]`).
    #[serde(default, rename = "partition")]
    pub partitions: Vec<Partition>,
    /// Relay crashes (`[[crash]]`).
    #[serde(default, rename = "crash")]
    pub crashes: Vec<Crash>,
    /// Adversarial relays and members (`[[adversary]]`).
    #[serde(default, rename = "adversary")]
    pub adversaries: Vec<Adversary>,
    /// Stolen devices (`[[theft]]`).
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
    /// First messages each stranger sends.
    #[serde(default)]
    pub stranger_messages: u32,
    /// Users who block the person behind someone who wrote to them, during the traffic.
    #[serde(default)]
    pub blocks: u32,
    /// Received messages reported by their recipients, and reports forged from received ones
    /// (another content, another sender, another time).
    #[serde(default)]
    pub reports: u32,
    /// Reports forged from received messages.
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
    /// The channel's app (its first user is the admin); the first app when unset.
    #[serde(default)]
    pub app: Option<Spanned<String>>,
    /// Users who follow it, from every app in turn.
    #[serde(default)]
    pub followers: u32,
    /// They follow during these first seconds of the traffic (default 10).
    #[serde(default = "default_follow_s")]
    pub follow_s: f64,
    /// Polls the admin posts, over the rest of the traffic.
    #[serde(default)]
    pub posts: u32,
    /// Followers who vote (reply to the admin).
    #[serde(default)]
    pub votes: u32,
    /// Followers who leave halfway.
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
    /// The business's app; the first app when unset.
    #[serde(default)]
    pub app: Option<Spanned<String>>,
    /// Agents: devices of `shop@app`, the first its owner's.
    #[serde(default)]
    pub agents: u32,
    /// Customers, users of the other apps.
    #[serde(default)]
    pub customers: u32,
    /// Messages customers write, in all.
    #[serde(default)]
    pub messages: u32,
    /// Conversations handed to another agent.
    #[serde(default)]
    pub handovers: u32,
    /// Whether the owner removes the last agent halfway.
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

/// How a group message reaches the members.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum GroupStrategy {
    /// One encryption with the sender's key, fanned out by the group's hub.
    #[default]
    SenderKeys,
    /// One encryption per member device, over 1:1 sessions.
    Pairwise,
}

/// An app: a provider with its own relay and users.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct App {
    /// Its name (1 to 32 letters, digits or `-`): users are `name@app`.
    pub name: Spanned<String>,
    /// Named users (`alice`), and/or `user_count` generated ones (`u0`, `u1`, …).
    #[serde(default)]
    pub users: Vec<String>,
    /// Users `u0`, `u1`, … made besides the named ones.
    #[serde(default)]
    pub user_count: usize,
    /// Devices each user has (1 to 16; default 1).
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
    /// Groups of this kind (default 1).
    #[serde(default = "one")]
    pub count: u32,
    /// Members of each (users; every device of theirs joins).
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

/// A range of sizes, in bytes, bounds included.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Range {
    /// The smallest.
    pub min: usize,
    /// The largest.
    pub max: usize,
}

/// Relative weights of the content kinds sent.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Kinds {
    /// Text messages.
    #[serde(default)]
    pub text: f64,
    /// Replies.
    #[serde(default)]
    pub reply: f64,
    /// Reactions.
    #[serde(default)]
    pub reaction: f64,
    /// Read receipts.
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
    /// The device (`name@app/n`) or user (`name@app`, every device of theirs).
    #[serde(default)]
    pub device: Option<Spanned<String>>,
    /// Or this share of every device, each at a random time of the traffic.
    #[serde(default)]
    pub share: Option<f64>,
    /// When it goes offline, in seconds from the start of the traffic (with `device`).
    #[serde(default)]
    pub from_s: f64,
    /// For how long, in seconds.
    pub for_s: f64,
}

/// Delay and faults of a link: between two apps' relays (`[[link]]`), or between an app's
/// devices and its relay (`access` of an app).
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct LinkSpec {
    /// How long a frame takes.
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
    /// How much longer a reordered frame takes at most (default 50 ms).
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
    /// When the faults stop (seconds from the start of the traffic).
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
    /// Always the same.
    Constant {
        /// The delay.
        ms: f64,
    },
    /// Uniformly distributed between two bounds.
    Uniform {
        /// The shortest.
        min_ms: f64,
        /// The longest.
        max_ms: f64,
    },
    /// `min_ms` plus an exponentially distributed extra with mean `mean_ms`.
    Exponential {
        /// The shortest.
        min_ms: f64,
        /// The mean of the extra.
        mean_ms: f64,
    },
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
    /// The two apps whose relays the link joins.
    pub apps: Spanned<Vec<String>>,
    /// Its delay and faults.
    #[serde(flatten)]
    pub spec: LinkSpec,
}

/// No frame passes between two apps for a while.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Partition {
    /// The two apps cut off from each other.
    pub apps: Spanned<Vec<String>>,
    /// From this time (seconds from the start of the traffic)…
    pub from_s: f64,
    /// …to this one.
    pub until_s: f64,
}

/// A relay crashes (losing everything not yet committed) and restarts `down_s` later.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Crash {
    /// The app whose relay crashes.
    pub relay: Spanned<String>,
    /// When (seconds from the start of the traffic).
    pub at_s: f64,
    /// How long it stays down (default 2 s).
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
    /// What it does.
    pub kind: Spanned<AdversaryKind>,
    /// Share of the envelopes it hands to its devices that it acts on; for `forge-membership`,
    /// the share of groups with a forging member.
    pub share: f64,
    /// Only envelopes to this user (`name@app`), when given.
    #[serde(default)]
    pub target: Option<Spanned<String>>,
}

/// What an adversary does (`kind` of an `[[adversary]]`).
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
    /// Her accounts (`name@app`), 2 to 8 users of the apps.
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
    /// Anyone who looks her up.
    Public,
    /// Her contacts.
    Contacts,
    /// No one but her own devices.
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
    /// The device (`name@app/n`).
    pub device: Spanned<String>,
    /// When its state is copied (seconds from the start of the traffic).
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
    /// Reads and checks a scenario. An error names the field at fault, with its line and column
    /// (those of its value; of its table when the field is missing).
    pub fn parse(text: &str) -> Result<Scenario, ScenarioError> {
        if text.len() > MAX_FILE_LEN {
            return Err(ScenarioError::new(1, 1, None, format!("a scenario file is at most {MAX_FILE_LEN} bytes")));
        }
        let scenario: Scenario = toml::from_str(text).map_err(|error| {
            let offset = error.span().map_or(0, |span| span.start);
            let (line, column) = line_and_column(text, offset);
            // The document parses (the error is in a field's value or name): name that field.
            let field = toml::de::DeTable::parse(text).ok().and_then(|doc| path_at(&doc, offset)).map(|path| describe(&path));
            ScenarioError::new(line, column, field, error.message().trim().to_owned())
        })?;
        scenario.check(&Places::new(text))?;
        Ok(scenario)
    }

    /// Checks a scenario made or changed in code (a parsed one was checked already); errors name
    /// the field, at line 1, column 1.
    pub fn validate(&self) -> Result<(), ScenarioError> {
        self.check(&Places::new(""))
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

    fn check(&self, places: &Places<'_>) -> Result<(), ScenarioError> {
        // Every error names its field by path ("app.1.devices_per_user": keys, and indices into
        // arrays), which is also where it is looked up in the file.
        let at = |path: &str, message: String| places.error(path, message);

        let core_bug = [
            ("no_rotation_on_removal", self.inject.no_rotation_on_removal),
            ("no_downgrade_check", self.inject.no_downgrade_check),
            ("no_admin_check", self.inject.no_admin_check),
        ]
            .into_iter()
            .find(|(_, on)| *on && !cfg!(switchboard_inject_bugs));
        if let Some((name, _)) = core_bug {
            return Err(at(
                &format!("inject.{name}"),
                format!("{name} is a bug in the client core, built only with RUSTFLAGS=\"--cfg switchboard_inject_bugs\" (never into the product)"),
            ));
        }
        let seconds = |value: f64| value.is_finite() && (0.0..=MAX_SECONDS).contains(&value);
        if !seconds(self.duration_s) || self.duration_s == 0.0 {
            return Err(at("duration_s", format!("must be over 0 and at most {MAX_SECONDS}")));
        }
        if !seconds(self.settle_s) {
            return Err(at("settle_s", format!("must be 0 to {MAX_SECONDS}")));
        }
        if self.suite.get_ref().parse::<switchboard_session::Suite>().is_err() {
            let known: Vec<&str> = Suite::ALL.iter().map(|suite| suite.name()).collect();
            return Err(at("suite", format!("unknown suite {:?}: one of {}", self.suite.get_ref(), known.join(", "))));
        }
        if self.apps.is_empty() {
            return Err(at("app", "a scenario needs at least one [[app]]".into()));
        }
        if self.prekeys_per_device == 0 || self.prekeys_per_device > MAX_PREKEYS {
            return Err(at("prekeys_per_device", format!("1 to {MAX_PREKEYS}")));
        }
        if self.prekey_low_mark.is_some_and(|mark| mark >= self.prekeys_per_device) {
            return Err(at("prekey_low_mark", "below prekeys_per_device".into()));
        }
        let rotation = self.signed_prekey_rotation_s;
        if !seconds(rotation) || rotation < 60.0 {
            return Err(at("signed_prekey_rotation_s", format!("60 to {MAX_SECONDS}")));
        }
        if !seconds(self.signed_prekey_grace_s) || self.signed_prekey_grace_s < rotation {
            return Err(at("signed_prekey_grace_s", format!("from signed_prekey_rotation_s to {MAX_SECONDS}")));
        }
        let mut names = BTreeSet::new();
        for (index, app) in self.apps.iter().enumerate() {
            let name = app.name.get_ref();
            let valid = !name.is_empty() && name.len() <= 32 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
            if !valid {
                return Err(at(&format!("app.{index}.name"), format!("app name {name:?}: 1 to 32 letters, digits or '-'")));
            }
            if !names.insert(name.clone()) {
                return Err(at(&format!("app.{index}.name"), format!("app {name:?} is listed twice")));
            }
            if app.devices_per_user == 0 || app.devices_per_user > 16 {
                return Err(at(&format!("app.{index}.devices_per_user"), format!("1 to 16, not {}", app.devices_per_user)));
            }
            let mut users = BTreeSet::new();
            for (position, user) in app.users.iter().enumerate() {
                let valid = !user.is_empty() && user.len() <= 64 && !user.contains(['@', '/']);
                if !valid || !users.insert(user) || generated_index(user).is_some_and(|n| n < app.user_count) {
                    return Err(at(
                        &format!("app.{index}.users.{position}"),
                        format!("user {user:?} is invalid, listed twice, or one of the generated u0, u1, …"),
                    ));
                }
            }
            if let Some(access) = &app.access {
                check_link(access).map_err(|(key, message)| at(&format!("app.{index}.access.{key}"), message))?;
            }
        }
        if self.device_count() > MAX_DEVICES {
            return Err(at("app", format!("{} devices: at most {MAX_DEVICES}", self.device_count())));
        }
        let known = |path: &str, name: &str| -> Result<(), ScenarioError> {
            if names.contains(name) { Ok(()) } else { Err(at(path, format!("unknown app {name:?}"))) }
        };
        let users_of = |apps: &[&str]| -> usize {
            self.apps
                .iter()
                .filter(|app| apps.is_empty() || apps.contains(&app.name.get_ref().as_str()))
                .map(|app| app.users.len() + app.user_count)
                .sum()
        };
        let group_count: u64 = self.groups.iter().map(|group| u64::from(group.count)).sum();
        if group_count > MAX_GROUPS {
            return Err(at("group", format!("{group_count} groups: at most {MAX_GROUPS}")));
        }
        for (index, group) in self.groups.iter().enumerate() {
            for (position, app) in group.apps.iter().enumerate() {
                known(&format!("group.{index}.apps.{position}"), app.get_ref())?;
            }
            let size = *group.size.get_ref();
            let apps: Vec<&str> = group.apps.iter().map(|app| app.get_ref().as_str()).collect();
            let available = users_of(&apps);
            if !(2..=MAX_GROUP_SIZE.min(available)).contains(&size) {
                return Err(at(
                    &format!("group.{index}.size"),
                    format!("group size {size}: 2 to {MAX_GROUP_SIZE}, and at most the {available} users of its apps"),
                ));
            }
            if group.removals as usize >= size {
                return Err(at(&format!("group.{index}.removals"), format!("fewer removals than the {size} members")));
            }
            if group.joins as usize > available - size {
                return Err(at(&format!("group.{index}.joins"), format!("more joins than the {} users left outside", available - size)));
            }
        }
        let traffic = &self.traffic;
        if traffic.messages > MAX_MESSAGES {
            return Err(at("traffic.messages", format!("at most {MAX_MESSAGES}")));
        }
        let share = *traffic.group_share.get_ref();
        if !(0.0..=1.0).contains(&share) || (share > 0.0 && self.groups.is_empty()) {
            return Err(at("traffic.group_share", "group_share is 0 to 1, and above 0 only with a [[group]]".into()));
        }
        if traffic.size.min < 1 || traffic.size.min > traffic.size.max {
            return Err(at("traffic.size.min", format!("1 ≤ min ≤ max ≤ {MAX_MESSAGE_SIZE}")));
        }
        if traffic.size.max > MAX_MESSAGE_SIZE {
            return Err(at("traffic.size.max", format!("1 ≤ min ≤ max ≤ {MAX_MESSAGE_SIZE}")));
        }
        let kinds = [("text", traffic.kinds.text), ("reply", traffic.kinds.reply), ("reaction", traffic.kinds.reaction), ("receipt", traffic.kinds.receipt)];
        if let Some((kind, _)) = kinds.iter().find(|(_, w)| !w.is_finite() || *w < 0.0) {
            return Err(at(&format!("traffic.kinds.{kind}"), "weights are 0 or more".into()));
        }
        if kinds.iter().map(|(_, w)| w).sum::<f64>() <= 0.0 {
            return Err(at("traffic.kinds", "weights are not all 0".into()));
        }
        if traffic.group_senders == Some(0) {
            return Err(at("traffic.group_senders", "at least 1 (or leave it out for every member)".into()));
        }
        let users_total = users_of(&[]);
        if traffic.messages > 0 && share < 1.0 && users_total < 2 {
            return Err(at("traffic.messages", "1:1 traffic needs at least two users".into()));
        }
        for (index, offline) in self.offline.iter().enumerate() {
            for (key, value) in [("from_s", offline.from_s), ("for_s", offline.for_s)] {
                if !seconds(value) {
                    return Err(at(&format!("offline.{index}.{key}"), format!("0 to {MAX_SECONDS}")));
                }
            }
            match (&offline.device, offline.share) {
                (Some(device), None) => {
                    self.check_device(device, true).map_err(|m| at(&format!("offline.{index}.device"), m))?;
                }
                (None, Some(share)) if (0.0..=1.0).contains(&share) => {}
                (None, Some(_)) => return Err(at(&format!("offline.{index}.share"), "a share is 0 to 1".into())),
                _ => return Err(at(&format!("offline.{index}"), "give either device = \"name@app[/n]\" or share = 0..1".into())),
            }
        }
        for (index, link) in self.links.iter().enumerate() {
            self.check_pair(&link.apps).map_err(|(position, m)| at(&join_index(&format!("link.{index}.apps"), position), m))?;
            check_link(&link.spec).map_err(|(key, m)| at(&format!("link.{index}.{key}"), m))?;
        }
        for (index, partition) in self.partitions.iter().enumerate() {
            self.check_pair(&partition.apps).map_err(|(position, m)| at(&join_index(&format!("partition.{index}.apps"), position), m))?;
            for (key, value) in [("from_s", partition.from_s), ("until_s", partition.until_s)] {
                if !seconds(value) {
                    return Err(at(&format!("partition.{index}.{key}"), format!("0 to {MAX_SECONDS}")));
                }
            }
            if partition.from_s > partition.until_s {
                return Err(at(&format!("partition.{index}.until_s"), "a partition needs from_s ≤ until_s".into()));
            }
        }
        for (index, crash) in self.crashes.iter().enumerate() {
            known(&format!("crash.{index}.relay"), crash.relay.get_ref())?;
            for (key, value) in [("at_s", crash.at_s), ("down_s", crash.down_s)] {
                if !seconds(value) {
                    return Err(at(&format!("crash.{index}.{key}"), format!("0 to {MAX_SECONDS}")));
                }
            }
        }
        for (index, adversary) in self.adversaries.iter().enumerate() {
            let field = |key: &str| format!("adversary.{index}.{key}");
            let kind = *adversary.kind.get_ref();
            if !(0.0..=1.0).contains(&adversary.share) {
                return Err(at(&field("share"), "share is 0 to 1".into()));
            }
            let Some(relay) = &adversary.relay else {
                if kind.is_relay() {
                    return Err(at(&field("kind"), "this kind of adversary needs a relay".into()));
                }
                if self.adversaries[..index].iter().any(|other| *other.kind.get_ref() == kind) {
                    return Err(at(&field("kind"), "one adversary of this kind".into()));
                }
                match (kind, &adversary.target) {
                    (AdversaryKind::Flood, None) => return Err(at(&field("kind"), "a flood needs a target (name@app)".into())),
                    (AdversaryKind::Flood, Some(target)) => {
                        self.check_device(target, false).map_err(|m| at(&field("target"), m))?;
                    }
                    (_, Some(_)) => return Err(at(&field("target"), "this kind of adversary takes no target".into())),
                    (_, None) => {}
                }
                continue;
            };
            if !kind.is_relay() {
                return Err(at(&field("relay"), "this adversary is a device, not a relay: leave relay out".into()));
            }
            known(&field("relay"), relay.get_ref())?;
            if self.adversaries[..index].iter().any(|other| other.relay.as_ref().is_some_and(|other| other.get_ref() == relay.get_ref())) {
                return Err(at(&field("relay"), "one adversary per relay".into()));
            }
            if let Some(target) = &adversary.target {
                let address = self.check_device(target, false).map_err(|m| at(&field("target"), m))?;
                if address.user().app() != relay.get_ref() {
                    return Err(at(&field("target"), "a relay can only target users of its own app".into()));
                }
            }
        }
        let mut linked = BTreeSet::new();
        for (index, person) in self.people.iter().enumerate() {
            let accounts = person.accounts.get_ref();
            if accounts.len() < 2 || accounts.len() > switchboard_client_core::person::MAX_LINKED_ACCOUNTS {
                return Err(at(&format!("person.{index}.accounts"), format!("a person links 2 to {} accounts", switchboard_client_core::person::MAX_LINKED_ACCOUNTS)));
            }
            if person.visibility.len() > accounts.len() {
                return Err(at(&format!("person.{index}.visibility"), "one visibility per account, at most".into()));
            }
            for (position, account) in accounts.iter().enumerate() {
                let path = format!("person.{index}.accounts.{position}");
                let spanned = Spanned::new(person.accounts.span(), account.clone());
                self.check_device(&spanned, false).map_err(|m| at(&path, m))?;
                if !linked.insert(account.clone()) {
                    return Err(at(&path, format!("{account:?} is linked twice (one person per account)")));
                }
            }
        }
        let other_users = |path: &str, app: &Option<Spanned<String>>| -> Result<usize, ScenarioError> {
            match app {
                Some(app) => {
                    known(path, app.get_ref())?;
                    Ok(users_of(&[]) - users_of(&[app.get_ref().as_str()]))
                }
                None => Ok(users_of(&[]) - users_of(&[self.apps[0].name.get_ref().as_str()])),
            }
        };
        let channel = &self.channel;
        if channel.followers > 0 || channel.posts > 0 {
            if !seconds(channel.follow_s) || channel.follow_s >= self.duration_s {
                return Err(at("channel.follow_s", "follow_s is 0 to the traffic's duration".into()));
            }
            if channel.followers as usize >= users_of(&[]) {
                return Err(at("channel.followers", "followers must be fewer than the scenario's users (its admin is one)".into()));
            }
            // Its admin is the first user of its app: the app must have one.
            if other_users("channel.app", &channel.app)? == users_of(&[]) {
                return Err(at("channel.app", "the channel's app has no user to be its admin".into()));
            }
            if channel.votes > channel.followers {
                return Err(at("channel.votes", "votes are at most followers".into()));
            }
            if channel.leavers > channel.followers {
                return Err(at("channel.leavers", "leavers are at most followers".into()));
            }
        }
        let business = &self.business;
        if business.agents > 0 {
            if business.agents as usize > switchboard_wire::limits::MAX_DEVICES_PER_USER || business.agents < 2 && business.remove_agent {
                return Err(at("business.agents", format!("agents is 1 to {} (2 or more to remove one)", switchboard_wire::limits::MAX_DEVICES_PER_USER)));
            }
            if business.customers as usize > other_users("business.app", &business.app)? {
                return Err(at("business.customers", "customers are users of the other apps".into()));
            }
            if business.customers == 0 && business.messages > 0 {
                return Err(at("business.messages", "messages need customers".into()));
            }
            if business.handovers > business.customers {
                return Err(at("business.handovers", "handovers are at most customers".into()));
            }
        }
        for (index, theft) in self.thefts.iter().enumerate() {
            let path = format!("theft.{index}.device");
            let address = self.check_device(&theft.device, true).map_err(|m| at(&path, m))?;
            if self.thefts[..index].iter().any(|other| other.device.get_ref() == theft.device.get_ref()) {
                return Err(at(&path, "one theft per device".into()));
            }
            if address.device_id().is_none() {
                return Err(at(&path, "a theft names one device: name@app/n".into()));
            }
            if !seconds(theft.at_s) {
                return Err(at(&format!("theft.{index}.at_s"), format!("at_s is 0 to {MAX_SECONDS}")));
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

    /// Two different apps the scenario has; else the position of the offending one (none when
    /// the pair as a whole is wrong) and why.
    fn check_pair(&self, apps: &Spanned<Vec<String>>) -> Result<(), (Option<usize>, String)> {
        match apps.get_ref().as_slice() {
            [a, b] if a != b => {
                for (position, app) in [a, b].into_iter().enumerate() {
                    if !self.apps.iter().any(|known| known.name.get_ref() == app) {
                        return Err((Some(position), format!("unknown app {app:?}")));
                    }
                }
                Ok(())
            }
            _ => Err((None, "apps names two different apps".into())),
        }
    }
}

/// `path`, and `.position` when given.
fn join_index(path: &str, position: Option<usize>) -> String {
    match position {
        Some(position) => format!("{path}.{position}"),
        None => path.to_owned(),
    }
}

/// A link's faults are sound; else the key at fault (`drop`, `delay`, …) and why.
fn check_link(spec: &LinkSpec) -> Result<(), (&'static str, String)> {
    for (name, p) in [("drop", spec.drop), ("duplicate", spec.duplicate), ("reorder", spec.reorder), ("corrupt", spec.corrupt), ("replay", spec.replay)] {
        if !(0.0..=1.0).contains(&p) {
            return Err((name, format!("{name} is a probability, 0 to 1")));
        }
    }
    // A link that loses every frame never heals.
    if spec.drop + spec.corrupt > 0.5 {
        let key = if spec.drop >= spec.corrupt { "drop" } else { "corrupt" };
        return Err((key, "drop + corrupt above 0.5: the link could never carry a conversation".into()));
    }
    let ms = |v: f64| v.is_finite() && (0.0..=60_000.0).contains(&v);
    let delay_ok = match spec.delay {
        Delay::Constant { ms: v } => ms(v),
        Delay::Uniform { min_ms, max_ms } => ms(min_ms) && ms(max_ms) && min_ms <= max_ms,
        Delay::Exponential { min_ms, mean_ms } => ms(min_ms) && ms(mean_ms),
    };
    if !delay_ok {
        return Err(("delay", "delays are 0 to 60000 ms (and min ≤ max)".into()));
    }
    if !ms(spec.reorder_ms) {
        return Err(("reorder_ms", "0 to 60000 ms".into()));
    }
    for (key, window) in [("from_s", spec.from_s), ("until_s", spec.until_s)] {
        if window.is_some_and(|window| !(window.is_finite() && (0.0..=MAX_SECONDS).contains(&window))) {
            return Err((key, format!("from_s and until_s are 0 to {MAX_SECONDS}")));
        }
    }
    Ok(())
}

/// The file a scenario was read from, parsed once more to find where a field is.
struct Places<'a> {
    text: &'a str,
    /// The document with every key's and value's place (none for a scenario made in code).
    doc: Option<Spanned<toml::de::DeTable<'a>>>,
}

impl<'a> Places<'a> {
    fn new(text: &'a str) -> Places<'a> {
        Places { text, doc: toml::de::DeTable::parse(text).ok() }
    }

    /// The error `message` about the field at `path`, placed at its value in the file (or at
    /// the nearest table or array holding it, when it is not written there).
    fn error(&self, path: &str, message: String) -> ScenarioError {
        let offset = self.doc.as_ref().map_or(0, |doc| place_of(doc, path));
        let (line, column) = line_and_column(self.text, offset);
        ScenarioError::new(line, column, Some(describe(path)), message)
    }
}

/// Where the value at `path` starts: keys, and indices into arrays, dot-separated. A step that is
/// not there leaves the place of the last one found (a table's header; 0, the file's start, for a
/// top-level field).
fn place_of(doc: &Spanned<toml::de::DeTable<'_>>, path: &str) -> usize {
    use toml::de::DeValue;
    let mut place = 0;
    let mut table = Some(doc.get_ref());
    let mut array = None;
    for step in path.split('.') {
        let found = match (table, array, step.parse::<usize>()) {
            (_, Some(items), Ok(index)) => <[_]>::get(items, index),
            (Some(entries), _, _) => entries.iter().find(|(key, _)| key.get_ref() == step).map(|(_, value)| value),
            _ => None,
        };
        let Some(value) = found else { break };
        place = value.span().start;
        (table, array) = match value.get_ref() {
            DeValue::Table(entries) => (Some(entries), None),
            DeValue::Array(items) => (None, Some(items.as_ref())),
            _ => (None, None),
        };
    }
    place
}

/// The path of the field whose name or value holds byte `offset` (the innermost one), as
/// [`place_of`] takes it.
fn path_at(doc: &Spanned<toml::de::DeTable<'_>>, offset: usize) -> Option<String> {
    let mut path = Vec::new();
    (search_table(doc.get_ref(), offset, &mut path) && !path.is_empty()).then(|| path.join("."))
}

fn search_table(entries: &toml::de::DeTable<'_>, offset: usize, path: &mut Vec<String>) -> bool {
    for (key, value) in entries.iter() {
        path.push(key.get_ref().to_string());
        if holds(key.span(), offset) || search_value(value, offset, path) {
            return true;
        }
        path.pop();
    }
    false
}

/// Whether `value` holds `offset`, with the path to the innermost field that does pushed.
fn search_value(value: &Spanned<toml::de::DeValue<'_>>, offset: usize, path: &mut Vec<String>) -> bool {
    use toml::de::DeValue;
    match value.get_ref() {
        // A table's span is its header (or its braces): its fields may lie after it.
        DeValue::Table(entries) => search_table(entries, offset, path) || holds(value.span(), offset),
        DeValue::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                path.push(index.to_string());
                if search_value(item, offset, path) {
                    return true;
                }
                path.pop();
            }
            holds(value.span(), offset)
        }
        _ => holds(value.span(), offset),
    }
}

fn holds(span: std::ops::Range<usize>, offset: usize) -> bool {
    span.contains(&offset) || span.start == offset
}

/// A path as a person reads it: `app.1.devices_per_user` is `[[app]] #2 devices_per_user`,
/// `traffic.size.max` is `[traffic] size.max`.
fn describe(path: &str) -> String {
    let steps: Vec<&str> = path.split('.').collect();
    let index = |step: &str| step.parse::<usize>().ok();
    let (head, rest) = match steps.as_slice() {
        [only] => return (*only).to_owned(),
        [table, n, rest @ ..] if index(n).is_some() => (format!("[[{table}]] #{}", index(n).unwrap_or(0).saturating_add(1)), rest),
        [table, rest @ ..] => (format!("[{table}]"), rest),
        [] => return String::new(),
    };
    let mut out = head;
    for (position, step) in rest.iter().enumerate() {
        match index(step) {
            Some(n) => out.push_str(&format!(" #{}", n.saturating_add(1))),
            None => {
                out.push(if position == 0 || index(rest[position - 1]).is_some() { ' ' } else { '.' });
                out.push_str(step);
            }
        }
    }
    out
}

/// `n` for a generated user name `u{n}` (spelled exactly so: `u01` is not `u1`).
fn generated_index(name: &str) -> Option<usize> {
    let digits = name.strip_prefix('u')?;
    digits.parse::<usize>().ok().filter(|n| n.to_string() == digits)
}

/// The 1-based line of byte `offset`, and its 1-based column in characters.
fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
    (before.matches('\n').count() + 1, before[line_start..].chars().count() + 1)
}
