//! Prints the actions an input of `session_interaction` or `group_interaction` stands for, to read
//! a crash: `cargo run --example show_script -- group_interaction artifacts/group_interaction/crash-…`.

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, target, path] = args.as_slice() else {
        eprintln!("usage: show_script session_interaction|group_interaction FILE");
        std::process::exit(2);
    };
    let data = std::fs::read(path).expect("read the input");
    match target.as_str() {
        "session_interaction" => {
            let script = switchboard_fuzz::session_model::Script::decode(&data);
            println!("three parties: {}", script.three_parties);
            for (step, action) in script.actions.iter().enumerate() {
                println!("{step:4}  {action:?}");
            }
        }
        "group_interaction" => {
            let script = switchboard_fuzz::group_model::Script::decode(&data);
            println!("aes-256-gcm: {}, first members: {:04b}", script.gcm, script.initial);
            for (step, action) in script.actions.iter().enumerate() {
                println!("{step:4}  {action:?}");
            }
        }
        other => {
            eprintln!("no script format for {other}");
            std::process::exit(2);
        }
    }
}
