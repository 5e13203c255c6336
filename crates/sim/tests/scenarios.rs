//! The shipped scenarios hold every invariant for several seeds; a seed fixes a run; and each
//! invariant catches the bug it is there for.

use std::path::{Path, PathBuf};

use switchboard_sim::{Report, RunOptions, Scenario};

/// Scenarios too big for a test run (measured in BENCHMARKS.md instead).
const BENCH_ONLY: &[&str] = &["scale.toml", "channel.toml"];

fn scenarios() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("scenarios/ exists")
        .map(|entry| entry.expect("readable").path())
        .filter(|path| path.extension().is_some_and(|e| e == "toml"))
        .filter(|path| !BENCH_ONLY.iter().any(|name| path.ends_with(name)))
        .collect();
    files.sort();
    assert!(files.len() >= 4, "the example scenarios are missing: {files:?}");
    files
}

fn run(scenario: &Scenario, seed: u64) -> Report {
    switchboard_sim::run(scenario, seed, RunOptions::default()).expect("runs").report
}

fn parse(text: &str) -> Scenario {
    Scenario::parse(text).expect("a valid scenario")
}

#[test]
fn every_shipped_scenario_holds_every_invariant_for_several_seeds() {
    for path in scenarios() {
        let scenario = parse(&std::fs::read_to_string(&path).unwrap());
        for seed in 1..=3 {
            let report = run(&scenario, seed);
            assert!(report.violations.is_empty(), "{} seed {seed}:\n{}", path.display(), report.text());
            assert!(report.messages.reads > 0, "{} seed {seed}: nothing read", path.display());
            assert!(report.invariants.iter().all(|i| i.holds));
        }
    }
}

/// The quantum scenario mixes all four suites, and its harvest adversary reads every classical
/// message and none of a post-quantum session's (the invariants say so too; this checks that the
/// run has something of each to say it of).
#[test]
fn a_quantum_adversary_reads_every_classical_session_and_no_post_quantum_one() {
    let scenario = parse(&std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios/quantum.toml")).unwrap());
    let report = run(&scenario, 1);
    let harvest = report.harvest.as_ref().expect("the scenario has a harvest-now adversary");
    for suite in switchboard_session::Suite::ALL {
        let line = harvest.suites.get(suite.name()).unwrap_or_else(|| panic!("no {suite} session:\n{}", report.text()));
        assert!(line.sent >= 5, "{suite}: {} messages\n{}", line.sent, report.text());
        let expected = if suite.kem().is_some() { 0 } else { line.sent };
        assert_eq!(line.read, expected, "{suite}\n{}", report.text());
    }
    // Without the adversary, the same run has no harvest section.
    let quiet = parse(&std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios/basic.toml")).unwrap());
    assert!(run(&quiet, 1).harvest.is_none());
}

/// The month-long scenario shows the prekey lifecycle at work: every device replaces its signed
/// prekey every two days and forgets replaced ones after a week, and devices whose one-time
/// prekeys run low upload more — with every invariant holding (checked above as well).
#[test]
fn a_month_rotates_signed_prekeys_and_replenishes_one_time_prekeys() {
    let scenario = parse(&std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios/month.toml")).unwrap());
    let report = run(&scenario, 1);
    let c = &report.crypto;
    // 30 days at one rotation per 2 days: about 15 per device (fewer for those offline a while).
    assert!(c.signed_prekey_rotations >= 12 * c.devices, "{}", report.text());
    assert!(c.signed_prekeys_forgotten >= 8 * c.devices, "{}", report.text());
    assert!(c.prekey_replenishments >= c.devices && c.prekeys_replenished >= 4 * c.prekey_replenishments, "{}", report.text());
    // Stocks run out only for devices away for days (a few of the month's ~950 sessions at most).
    assert!(c.sessions_without_prekey * 100 <= c.sessions, "{}", report.text());
    assert!(report.invariants.iter().all(|i| i.holds), "{}", report.text());
}

#[test]
fn one_seed_gives_one_trace_and_another_seed_another() {
    let scenario = parse(&std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios/faults.toml")).unwrap());
    let first = run(&scenario, 7);
    let again = run(&scenario, 7);
    let other = run(&scenario, 8);
    assert_eq!(first.trace_hash, again.trace_hash);
    assert_eq!(first.events, again.events);
    assert_eq!(first.latency_ms.p99, again.latency_ms.p99);
    assert_ne!(first.trace_hash, other.trace_hash);
}

/// Three apps, a group with removals, and traffic after them.
const CHURN: &str = r#"
name = "churn"
duration_s = 20
settle_s = 10
[[app]]
name = "green"
user_count = 4
[[app]]
name = "blue"
user_count = 4
[[app]]
name = "red"
user_count = 4
[[group]]
size = 9
removals = 3
joins = 2
[traffic]
messages = 300
group_share = 0.8
"#;

#[test]
fn a_relay_that_keeps_plaintext_is_caught() {
    let clean = run(&parse(CHURN), 1);
    assert!(clean.violations.is_empty(), "{}", clean.text());
    let leaky = run(&parse(&format!("{CHURN}\n[inject]\nrelay_keeps_plaintext = true\n")), 1);
    let invariant = leaky.invariants.iter().find(|i| i.name == "no plaintext at relays").unwrap();
    assert!(!invariant.holds, "{}", leaky.text());
    assert!(leaky.violations.iter().any(|v| v.invariant == "no plaintext at relays"));
}

/// The bug lives in the client core and is compiled only with `--cfg switchboard_inject_bugs`,
/// never into the product: `scripts/test.sh` runs this test in a build of its own
/// (`RUSTFLAGS="--cfg switchboard_inject_bugs"`, target/inject-bugs).
#[test]
#[cfg_attr(not(switchboard_inject_bugs), ignore = "needs --cfg switchboard_inject_bugs (scripts/test.sh runs it)")]
fn a_client_that_does_not_rotate_on_removal_is_caught() {
    let buggy = run(&parse(&format!("{CHURN}\n[inject]\nno_rotation_on_removal = true\n")), 1);
    let invariant = buggy.invariants.iter().find(|i| i.name == "membership: nothing read outside it").unwrap();
    assert!(!invariant.holds, "{}", buggy.text());
    assert!(buggy.violations.iter().any(|v| v.invariant == "no read after removal"), "{}", buggy.text());
    // With rotation, the same removed members could read none of those messages.
    let clean = run(&parse(CHURN), 1);
    assert!(clean.adversaries.membership_attempts > 0, "the check tried nothing: {}", clean.text());
    assert_eq!(clean.adversaries.membership_readable, 0);
}

/// A client that accepts a downgraded session is caught by "no downgraded session" under the
/// shipped scenario whose relay strips suites from bundles (a client-core bug: built as above).
#[test]
#[cfg_attr(not(switchboard_inject_bugs), ignore = "needs --cfg switchboard_inject_bugs (scripts/test.sh runs it)")]
fn a_client_that_accepts_a_downgrade_is_caught() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios/groups-under-attack.toml");
    let attacked = std::fs::read_to_string(path).unwrap();
    let clean = run(&parse(&attacked), 1);
    assert!(clean.adversaries.bundles_stripped > 0 && clean.adversaries.downgrades_refused > 0, "{}", clean.text());
    assert!(clean.adversaries.sessions_started_back > 0, "responders start sessions back: {}", clean.text());
    assert_eq!(clean.adversaries.downgraded_sessions, 0);
    let buggy = run(&parse(&format!("{attacked}\n[inject]\nno_downgrade_check = true\n")), 1);
    let invariant = buggy.invariants.iter().find(|i| i.name == "no downgraded session").unwrap();
    assert!(!invariant.holds, "{}", buggy.text());
    assert!(buggy.violations.iter().any(|v| v.invariant == "no downgraded session"), "{}", buggy.text());
}

/// A client that applies changes from members who are not admins is caught by "no read while not
/// a member by the admins' changes" under the shipped scenario, whose groups each have a forging
/// member (a client-core bug: built as above).
#[test]
#[cfg_attr(not(switchboard_inject_bugs), ignore = "needs --cfg switchboard_inject_bugs (scripts/test.sh runs it)")]
fn a_client_that_takes_changes_from_any_member_is_caught() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios/groups-under-attack.toml");
    let attacked = std::fs::read_to_string(path).unwrap();
    let clean = run(&parse(&attacked), 1);
    let a = &clean.adversaries;
    // The stranger a forger adds is told it joined, and refuses on its hub's word.
    assert!(a.forged_changes > 0 && a.forgeries_refused > 0 && a.unordered_changes > 0, "{}", clean.text());
    assert_eq!(a.outsider_readable, 0);
    assert!(clean.invariants.iter().all(|i| i.holds), "{}", clean.text());
    let buggy = run(&parse(&format!("{attacked}\n[inject]\nno_admin_check = true\n")), 1);
    let name = switchboard_sim::OUTSIDER_READ;
    assert!(!buggy.invariants.iter().find(|i| i.name == name).unwrap().holds, "{}", buggy.text());
    assert!(buggy.adversaries.outsider_readable > 0, "{}", buggy.text());
    let name = switchboard_sim::FOREIGN_STATE;
    assert!(!buggy.invariants.iter().find(|i| i.name == name).unwrap().holds, "{}", buggy.text());
}

/// The product's build has no such bugs to turn on, and says so instead of running clean.
#[test]
#[cfg(not(switchboard_inject_bugs))]
fn a_build_without_the_bug_refuses_a_scenario_asking_for_it() {
    for bug in ["no_rotation_on_removal", "no_downgrade_check", "no_admin_check"] {
        let error = Scenario::parse(&format!("{CHURN}\n[inject]\n{bug} = true\n")).unwrap_err();
        assert!(error.message.contains("--cfg switchboard_inject_bugs") && error.message.contains(bug), "{error}");
    }
}

#[test]
fn a_client_that_does_not_drop_duplicates_is_caught() {
    let duplicating = format!("{CHURN}\n[[adversary]]\nrelay = \"blue\"\nkind = \"replay\"\nshare = 0.3\n");
    let clean = run(&parse(&duplicating), 1);
    assert!(clean.violations.is_empty(), "{}", clean.text());
    assert!(clean.messages.duplicates_dropped > 0);
    let buggy = run(&parse(&format!("{duplicating}\n[inject]\nno_duplicate_drop = true\n")), 1);
    assert!(buggy.violations.iter().any(|v| v.invariant == "exactly-once delivery" && v.detail.contains("times")), "{}", buggy.text());
}

#[test]
fn a_bad_scenario_is_refused_with_its_line() {
    let cases: &[(&str, usize, &str)] = &[
        ("name = \"x\"\nduration_s = 10\n[[app]]\nname = \"a\"\nusers = [\"u\"]\nbogus = 1\n", 6, "unknown field"),
        ("name = \"x\"\nduration_s = 10\n[[app]]\nname = \"a\"\nuser_count = 3\n[[crash]]\nrelay = \"nowhere\"\nat_s = 1\n", 7, "unknown app"),
        ("name = \"x\"\nduration_s = 10\n[[app]]\nname = \"a\"\nuser_count = 3\n[[group]]\nsize = 9\n", 7, "group size"),
        ("name = \"x\"\nduration_s = 10\n[[app]]\nname = \"a\"\nuser_count = 3\n[[theft]]\ndevice = \"u9@a/1\"\nat_s = 1\n", 7, "unknown user"),
        ("name = \"x\"\nduration_s = 10\nsuite = \"rot13\"\n[[app]]\nname = \"a\"\nuser_count = 3\n", 3, "unknown suite"),
        ("name = \"x\"\nduration_s = 10\n[[app]]\nname = \"a\"\nuser_count = 3\n[[link]]\napps = [\"a\", \"a\"]\n", 7, "two different apps"),
        ("name = \"x\"\nduration_s = \"ten\"\n", 2, "invalid type"),
        // A channel whose app has no user to be its admin (it used to panic the run).
        ("name = \"x\"\nduration_s = 5\n[[app]]\nname = \"a\"\nuser_count = 0\n[[app]]\nname = \"b\"\nuser_count = 3\n[channel]\napp = \"a\"\nfollowers = 2\nfollow_s = 1\n", 10, "no user to be its admin"),
    ];
    for (text, line, words) in cases {
        let error = Scenario::parse(text).expect_err(text);
        assert_eq!(error.line, *line, "{text}\n→ {error}");
        assert!(error.message.contains(words), "{text}\n→ {error}");
    }
}

/// The people scenario (one person on several apps, a relay that forges links) holds every
/// invariant for seeds 1–40, and each run exercises what the invariants are about: transcripts
/// between a person's devices, lookups, and lookup answers a relay changed — all refused.
#[test]
fn linked_people_hold_every_invariant_for_forty_seeds() {
    let scenario = parse(&std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios/people.toml")).unwrap());
    for seed in 1..=40 {
        let report = run(&scenario, seed);
        assert!(report.violations.is_empty(), "seed {seed}:\n{}", report.text());
        let people = report.people.as_ref().expect("the scenario has people");
        assert_eq!(people.people, 3);
        assert!(people.transcripts_received > 100, "seed {seed}: {people:?}");
        assert!(people.links_forged > 0 && people.lookups_refused >= people.links_forged, "seed {seed}: {people:?}");
        assert!(people.lookups_kept > 0 && people.records_held > 0, "seed {seed}: {people:?}");
    }
}

/// The consent scenario (strangers flooding, blocks, honest and forged reports) holds every
/// invariant for seeds 1–40, and each run exercises them: requests shown, blocks the relays
/// enforce, reports verified, and every forged report refused.
#[test]
fn consent_holds_every_invariant_for_forty_seeds() {
    let scenario = parse(&std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios/consent.toml")).unwrap());
    for seed in 1..=40 {
        let report = run(&scenario, seed);
        assert!(report.violations.is_empty(), "seed {seed}:\n{}", report.text());
        let consent = report.consent.as_ref().expect("the scenario has consent");
        assert_eq!(consent.stranger_messages, 200, "seed {seed}: {consent:?}");
        assert!(consent.requests >= 100, "seed {seed}: {consent:?}");
        assert!(consent.blocks >= 1, "seed {seed}: {consent:?}");
        assert!(consent.reports_verified >= 1, "seed {seed}: {consent:?}");
        assert_eq!(consent.forged_reports, 12, "seed {seed}: {consent:?}");
        assert_eq!(consent.forged_reports_verified, 0, "seed {seed}: {consent:?}");
        assert_eq!(consent.forged_reports_refused + consent.forged_reports_unanswered, 12, "seed {seed}: {consent:?}");
        assert!(consent.forged_reports_refused >= 6, "seed {seed}: {consent:?}");
    }
}

/// The business scenario (three agents, customers on two other apps, hand-overs, an agent
/// removed halfway; a channel followed from every app, polls, votes, leavers) holds every
/// invariant for seeds 1–30, and each run exercises them.
#[test]
fn business_and_channel_hold_every_invariant_for_thirty_seeds() {
    let scenario = parse(&std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios/business.toml")).unwrap());
    for seed in 1..=30 {
        let report = run(&scenario, seed);
        assert!(report.violations.is_empty(), "seed {seed}:\n{}", report.text());
        let business = report.business.as_ref().expect("the scenario has a business");
        assert_eq!((business.agents, business.removed_agents, business.handovers), (3, 1, 3), "seed {seed}: {business:?}");
        assert!(business.replies >= 40 && business.analytics_messages_out == business.replies, "seed {seed}: {business:?}");
        let channel = report.channel.as_ref().expect("the scenario has a channel");
        assert_eq!((channel.followed, channel.keys_handed_over, channel.posts, channel.leavers), (30, 30, 4, 4), "seed {seed}: {channel:?}");
        assert!(channel.reads_required >= 90 && channel.reads_done == channel.reads_required && channel.votes_tallied == channel.votes && channel.votes >= 8, "seed {seed}: {channel:?}");
    }
}
