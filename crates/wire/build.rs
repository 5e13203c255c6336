//! Generates the prost types from the workspace's proto/ folder, with protox instead of a system protoc.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let files = [
        "signal/wire.proto",
        "signal/storage.proto",
        "switchboard/bundle.proto",
        "switchboard/group.proto",
        "switchboard/relay.proto",
        "switchboard/content.proto",
        "switchboard/device.proto",
    ];
    for file in &files {
        println!("cargo:rerun-if-changed={}", proto_root.join(file).display());
    }
    let descriptors = protox::compile(files, [&proto_root])?;
    prost_build::Config::new().compile_fds(descriptors)?;
    Ok(())
}
