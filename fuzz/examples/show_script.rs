//! Prints the actions an input of an interaction target stands for, to read a crash:
//! `cargo run --example show_script -- group_interaction artifacts/group_interaction/crash-…`.
//! (To watch a differential or endpoint input run step by step, replay it with
//! `DIFFERENTIAL_TRACE=1` set instead.)

const TARGETS: &str = "session_interaction|group_interaction|differential_session|differential_group|endpoint";

fn print_steps<T: std::fmt::Debug>(actions: &[T]) {
    for (step, action) in actions.iter().enumerate() {
        println!("{:4}  {action:?}", step + 1);
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, target, path] = args.as_slice() else {
        eprintln!("usage: show_script {TARGETS} FILE");
        std::process::exit(2);
    };
    let data = std::fs::read(path).expect("read the input");
    match target.as_str() {
        "session_interaction" => {
            let script = switchboard_fuzz::session_model::Script::decode(&data);
            println!("three parties: {}", script.three_parties);
            print_steps(&script.actions);
        }
        "group_interaction" => {
            let script = switchboard_fuzz::group_model::Script::decode(&data);
            println!("aes-256-gcm: {}, first members: {:04b}", script.gcm, script.initial);
            print_steps(&script.actions);
        }
        "differential_session" => print_steps(&switchboard_fuzz::differential_session::decode(&data)),
        "differential_group" => print_steps(&switchboard_fuzz::differential_group::decode(&data)),
        "endpoint" => print_steps(&switchboard_fuzz::endpoint_model::decode(&data)),
        other => {
            eprintln!("no script format for {other} (one of {TARGETS})");
            std::process::exit(2);
        }
    }
}
