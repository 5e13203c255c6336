//! Counting checks, and reporting the failed ones with the seed and step that replay them.

use std::io::Write;

/// The outcome of a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub passed: u64,
    pub failed: u64,
}

/// Numbers every check (a step) and prints a line for each failure.
pub struct Checker<'a> {
    seed: u64,
    step: u64,
    report: Report,
    out: &'a mut dyn Write,
}

impl<'a> Checker<'a> {
    pub fn new(seed: u64, out: &'a mut dyn Write) -> Self {
        Checker { seed, step: 0, report: Report::default(), out }
    }

    /// Records one check; `describe` is called only on failure.
    pub fn check(&mut self, passed: bool, describe: impl FnOnce() -> String) -> bool {
        self.step += 1;
        if passed {
            self.report.passed += 1;
        } else {
            self.report.failed += 1;
            let _ = writeln!(self.out, "FAIL seed={} step={}: {}", self.seed, self.step, describe());
        }
        passed
    }

    pub fn report(&self) -> Report {
        self.report
    }
}
