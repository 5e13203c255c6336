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
        "switchboard/person.proto",
    ];
    for file in &files {
        println!("cargo:rerun-if-changed={}", proto_root.join(file).display());
    }
    let descriptors = protox::compile(files, [&proto_root])?;
    // An envelope's id and content (and the ids that acknowledge it) are shared, not copied, when a relay stores one envelope in
    // many mailboxes and hands it on: cloning them is a reference count.
    prost_build::Config::new()
        .bytes([
            ".switchboard.Envelope.id",
            ".switchboard.Envelope.content",
            ".switchboard.GroupEnvelope.id",
            ".switchboard.GroupEnvelope.content",
            ".switchboard.EnvelopeRef.id",
        ])
        // Messages that hold private keys, or a plaintext a user reported: their `Debug` (in
        // `secret_debug.rs`) shows neither.
        .skip_debug([".switchboard.DeviceSnapshot", ".switchboard.LinkInvitation", ".switchboard.Report"])
        .compile_fds(descriptors)?;
    Ok(())
}
