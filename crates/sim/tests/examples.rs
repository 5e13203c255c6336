//! The crate's example runs, and its own checks hold (`cargo test` only compiles examples).

#[path = "../examples/run_scenario.rs"]
mod run_scenario;

#[test]
fn the_run_scenario_example_runs() {
    run_scenario::main().expect("the example runs");
}
