//! Writes seeds for the `relay_frames` target into `corpus/relay_frames/`: frames from the
//! authenticated device, the stranger and both federation links, in the target's input format
//! (source byte, 2-byte length, frame). Run: `cargo run --example relay_seeds`.

use switchboard_wire::Message;
use switchboard_wire::switchboard::{
    Acknowledge, ChannelInfo, ClientFrame, DeviceAddress, Envelope, EnvelopeRef, FederationFrame, FetchBlob, FetchBundles, FollowChannel, GroupEnvelope,
    OpenChannel, Register, RemoveDevice, UploadBlob, client_frame, federation_frame,
};

fn address(name: &str) -> Option<DeviceAddress> {
    Some(DeviceAddress { name: name.into(), device_id: 1 })
}

fn envelope(from: &str, to: &str) -> Envelope {
    Envelope { id: vec![7; 16].into(), sender: address(from), recipient: address(to), kind: 2, content: vec![0x33; 48].into(), ..Default::default() }
}

fn record(source: u8, frame: Vec<u8>) -> Vec<u8> {
    let mut out = vec![source, (frame.len() >> 8) as u8, frame.len() as u8];
    out.extend(frame);
    out
}

fn client(body: client_frame::Body) -> Vec<u8> {
    ClientFrame { request_id: 9, body: Some(body) }.encode_to_vec()
}

fn link(body: federation_frame::Body) -> Vec<u8> {
    FederationFrame { request_id: 9, body: Some(body) }.encode_to_vec()
}

fn main() {
    let group = GroupEnvelope {
        id: vec![8; 16].into(),
        sender: address("alice@green"),
        group_id: "g@green".into(),
        hub: "green".into(),
        recipients: vec![address("bob@green").unwrap(), address("x@blue").unwrap(), address("y@red").unwrap()],
        content: vec![0x33; 40].into(),
        ..Default::default()
    };
    // A post to news@green, which alice (this relay's device) opens in the seeds that post.
    let post = GroupEnvelope { group_id: "news@green".into(), recipients: Vec::new(), channel: true, ..group.clone() };
    let open = record(0, client(client_frame::Body::OpenChannel(OpenChannel { channel: "news@green".into(), admins: vec!["x@blue".into()] })));
    let commit = || record(4, vec![]);
    let seeds: Vec<(&str, Vec<u8>)> = vec![
        ("send-local", record(0, client(client_frame::Body::Send(envelope("alice@green", "bob@green"))))),
        ("send-remote", record(0, client(client_frame::Body::Send(envelope("alice@green", "x@blue"))))),
        ("send-group", record(0, client(client_frame::Body::SendGroup(group.clone())))),
        ("stranger-send", record(1, client(client_frame::Body::Send(envelope("bob@green", "alice@green"))))),
        ("fetch", record(0, client(client_frame::Body::FetchBundles(FetchBundles { user: "x@red".into(), requester: None })))),
        ("blob", [record(0, client(client_frame::Body::UploadBlob(UploadBlob { blob: vec![1; 30] }))), record(4, vec![]),
                  record(0, client(client_frame::Body::FetchBlob(FetchBlob { blob_id: "00@red".into() })))].concat()),
        ("forward-in", [record(2, link(federation_frame::Body::Forward(envelope("x@blue", "alice@green")))), record(4, vec![])].concat()),
        ("forward-group-in", record(2, link(federation_frame::Body::ForwardGroup(GroupEnvelope { sender: address("x@blue"), hub: "blue".into(), ..group.clone() })))),
        ("ack", record(0, client(client_frame::Body::Acknowledge(Acknowledge { envelopes: vec![EnvelopeRef { sender: address("x@blue"), id: vec![7; 16].into() }] })))),
        ("answer-out", record(3, link(federation_frame::Body::Acknowledge(Acknowledge::default())))),
        // Channels: opened here, followed from here and from blue, posted to by its admins (alice
        // here, x@blue through blue), and a follow of red's channel answered by red.
        ("channel-post", [open.clone(), commit(), record(0, client(client_frame::Body::FollowChannel(FollowChannel { channel: "news@green".into(), follow: true }))), commit(),
                          record(0, client(client_frame::Body::SendGroup(post.clone()))), commit()].concat()),
        ("channel-follow-in", [open.clone(), commit(), record(2, link(federation_frame::Body::FollowChannel(FollowChannel { channel: "news@green".into(), follow: true }))), commit(),
                               record(2, link(federation_frame::Body::ForwardGroup(GroupEnvelope { sender: address("x@blue"), ..post.clone() }))), commit()].concat()),
        ("channel-follow-out", [record(0, client(client_frame::Body::FollowChannel(FollowChannel { channel: "c@red".into(), follow: true }))),
                                record(3, link(federation_frame::Body::ChannelInfo(ChannelInfo { channel: "c@red".into(), admins: vec!["y@red".into()] }))), commit(),
                                record(3, link(federation_frame::Body::ForwardGroup(GroupEnvelope { sender: address("y@red"), group_id: "c@red".into(), hub: "red".into(), ..post.clone() }))), commit(),
                                record(0, client(client_frame::Body::FollowChannel(FollowChannel { channel: "c@red".into(), follow: false }))), commit()].concat()),
        ("remove-device", [record(0, client(client_frame::Body::Register(Register { user: "alice@green".into(), device_id: 2 }))), commit(),
                           record(0, client(client_frame::Body::RemoveDevice(RemoveDevice { device_id: 2 }))), commit()].concat()),
    ];
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/relay_frames");
    std::fs::create_dir_all(&dir).expect("corpus folder");
    for (name, bytes) in seeds {
        std::fs::write(dir.join(format!("seed-{name}")), bytes).expect("seed written");
    }
}
