//! Counting checks, and reporting the failed ones with the seed and step that replay them and the
//! side the fault is put on. A failure whose text was already reported is counted, not printed
//! again; the end of the run says how often each repeated one happened.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;

/// The side a failure is put on (see `docs/PEER_PROTOCOL.md`, "Whose fault").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Fault {
    /// Peer A (`--a`).
    A,
    /// Peer B (`--b`).
    B,
    /// Both sides show the same fault on their own.
    Both,
    /// One wrote what the other refused, and nothing in the run tells which is wrong.
    Undecided,
}

impl Fault {
    /// The fault of the side with index 0 (A) or 1 (B).
    pub fn side(index: usize) -> Fault {
        if index == 0 { Fault::A } else { Fault::B }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Fault::A => "A",
            Fault::B => "B",
            Fault::Both => "A and B",
            Fault::Undecided => "A or B",
        })
    }
}

/// How many failures were put on each side.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Faults {
    /// Failures put on A.
    pub a: u64,
    /// Failures put on B.
    pub b: u64,
    /// Failures both sides show.
    pub both: u64,
    /// Failures between a writer and a reader that the run could not decide.
    pub undecided: u64,
}

impl Faults {
    fn count(&mut self, fault: Fault) {
        match fault {
            Fault::A => self.a += 1,
            Fault::B => self.b += 1,
            Fault::Both => self.both += 1,
            Fault::Undecided => self.undecided += 1,
        }
    }
}

/// The outcome of a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Checks that passed.
    pub passed: u64,
    /// Checks that failed (repeats included).
    pub failed: u64,
    /// Whose fault the failures were.
    pub faults: Faults,
}

/// A failed check: what happened, whose fault it is, and why the runner thinks so.
pub(crate) struct Failure {
    pub fault: Fault,
    pub what: String,
    pub why: Option<String>,
}

impl Failure {
    /// A failure of `side`, which alone took part in it (it gave the wrong answer).
    pub fn of(side: usize, what: String) -> Failure {
        Failure { fault: Fault::side(side), what, why: None }
    }
}

struct Repeat {
    first_step: u64,
    last_step: u64,
    times: u64,
}

/// Numbers every check (a step) and prints a line for each new failure.
pub(crate) struct Checker<'a> {
    seed: u64,
    step: u64,
    report: Report,
    /// By fault and text: where each failure first happened and how often.
    seen: BTreeMap<(Fault, String), Repeat>,
    out: &'a mut dyn Write,
}

impl<'a> Checker<'a> {
    pub fn new(seed: u64, out: &'a mut dyn Write) -> Self {
        Checker { seed, step: 0, report: Report::default(), seen: BTreeMap::new(), out }
    }

    /// Records one check; `failure` is called only when it failed.
    pub fn check(&mut self, passed: bool, failure: impl FnOnce() -> Failure) -> bool {
        self.step += 1;
        if passed {
            self.report.passed += 1;
        } else {
            self.record(failure());
        }
        passed
    }

    /// Records one check that passed.
    pub fn pass(&mut self) {
        self.step += 1;
        self.report.passed += 1;
    }

    /// Records one check that failed.
    pub fn fail(&mut self, failure: Failure) {
        self.step += 1;
        self.record(failure);
    }

    fn record(&mut self, failure: Failure) {
        self.report.failed += 1;
        self.report.faults.count(failure.fault);
        let step = self.step;
        let repeat = self
            .seen
            .entry((failure.fault, failure.what.clone()))
            .or_insert(Repeat { first_step: step, last_step: step, times: 0 });
        repeat.times += 1;
        repeat.last_step = step;
        if repeat.times == 1 {
            let why = failure.why.map(|why| format!(" — {why}")).unwrap_or_default();
            let _ = writeln!(self.out, "FAIL seed={} step={step}: [fault: {}] {}{why}", self.seed, failure.fault, failure.what);
        }
    }

    /// Writes how often each repeated failure happened, and whose faults the failures were.
    pub fn summarize(&mut self) -> std::io::Result<()> {
        let mut repeats: Vec<&Repeat> = self.seen.values().filter(|r| r.times > 1).collect();
        repeats.sort_by_key(|r| r.first_step);
        for repeat in repeats {
            writeln!(
                self.out,
                "repeated: the failure of step {} happened {} times in all, the last at step {}",
                repeat.first_step, repeat.times, repeat.last_step
            )?;
        }
        if self.report.failed > 0 {
            let faults = self.report.faults;
            let parts: Vec<String> = [(Fault::A, faults.a), (Fault::B, faults.b), (Fault::Both, faults.both), (Fault::Undecided, faults.undecided)]
                .into_iter()
                .filter(|(_, n)| *n > 0)
                .map(|(fault, n)| format!("{fault}: {n}"))
                .collect();
            writeln!(self.out, "faults: {}", parts.join(", "))?;
        }
        Ok(())
    }

    pub fn report(&self) -> Report {
        self.report
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_failure_is_printed_once_and_counted() {
        let mut out = Vec::new();
        let mut checker = Checker::new(3, &mut out);
        checker.check(true, || unreachable!());
        for _ in 0..20 {
            checker.check(false, || Failure::of(1, "peer B stopped reading".into()));
        }
        checker.check(false, || Failure { fault: Fault::Undecided, what: "something else".into(), why: Some("because".into()) });
        let report = checker.report();
        checker.summarize().unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "FAIL seed=3 step=2: [fault: B] peer B stopped reading\n\
             FAIL seed=3 step=22: [fault: A or B] something else — because\n\
             repeated: the failure of step 2 happened 20 times in all, the last at step 21\n\
             faults: B: 20, A or B: 1\n"
        );
        assert_eq!(report, Report { passed: 1, failed: 21, faults: Faults { a: 0, b: 20, both: 0, undecided: 1 } });
    }
}
