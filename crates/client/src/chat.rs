//! A device connected to its app's relay: what the demo, the terminal chat and the tests use.
//! It fetches bundles through the relay (across apps by federation), sends each message to every
//! device of its recipient, keeps what it sends in an outbox until the relay confirms it is
//! durable, acknowledges what it has processed, and drops duplicates by message id.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::rngs::StdRng;
use rand::Rng;
use switchboard_session::{CiphertextMessage, Error as SessionError, MessageKind, PreKeyBundle, ProtocolAddress, Suite};
use switchboard_wire::switchboard::{
    Acknowledge, AttachmentPointer, Authenticate, ClientFrame, Content, FetchBlob, Envelope, EnvelopeKind, ErrorCode, FetchBundles, GroupEnvelope,
    Register, UploadBlob, UploadBundles, client_frame::Body, content, server_frame,
};
use switchboard_wire::{Message, decode, limits};

use crate::device::{Device, Outgoing, PendingSend, Received};
use crate::directory::InMemoryDirectory;
use crate::error::ClientError;
use crate::net::{Connection, NetError};
use crate::persist::DeviceDatabase;

/// Bundles a device publishes when it registers.
pub const BUNDLES_PUBLISHED: u32 = 100;
/// How often a request refused as `Unavailable` (another app's relay out of reach) is retried,
/// and the pause between tries.
pub const UNAVAILABLE_RETRIES: u32 = 100;
pub const UNAVAILABLE_PAUSE: Duration = Duration::from_millis(100);

/// What a chat client can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Net(#[from] NetError),
    #[error("the relay refused: {code:?}: {detail}")]
    Refused { code: ErrorCode, detail: String },
    #[error("unexpected answer from the relay")]
    Protocol,
    #[error(transparent)]
    Persist(#[from] crate::persist::PersistError),
}

/// Something that arrived.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    Message { from: ProtocolAddress, group: Option<String>, content: Content },
    GroupChanged { group: String, epoch: u64 },
    RemovedFromGroup { group: String },
}

/// Counters, for demos and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChatStats {
    /// Contents sent (one per message, however many devices it went to).
    pub sent: u64,
    /// Contents received and shown.
    pub received: u64,
    /// Deliveries dropped because their message (or ciphertext) was already processed.
    pub duplicates: u64,
    /// Deliveries that failed to decrypt or decode (tampered, or not for us).
    pub rejected: u64,
}

/// One device connected to a relay.
pub struct ChatClient {
    user: String,
    device_id: u32,
    credential: Vec<u8>,
    relay: SocketAddr,
    device: Device,
    connection: Option<Connection>,
    directory: InMemoryDirectory,
    devices_of: HashMap<String, Vec<ProtocolAddress>>,
    outbox: VecDeque<Body>,
    seen: HashSet<Vec<u8>>,
    stats: ChatStats,
    rng: StdRng,
    database: Option<DeviceDatabase>,
    /// Events processed but not yet returned (a failed poll keeps them for the next).
    ready: Vec<Event>,
    /// Responses decided on but not yet sealed (a bundle they need could not be fetched yet).
    unsealed: Vec<PendingSend>,
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

fn app_of(name: &str) -> &str {
    name.rsplit_once('@').map_or("", |(_, app)| app)
}

use crate::wire_address;

fn refused(frame: server_frame::Body) -> ChatError {
    match frame {
        server_frame::Body::Failure(failure) => ChatError::Refused {
            code: ErrorCode::try_from(failure.code).unwrap_or(ErrorCode::Unspecified),
            detail: failure.detail,
        },
        _ => ChatError::Protocol,
    }
}

impl ChatClient {
    /// Creates device `device_id` of `user` (`name@app`) on the relay at `relay`, and publishes
    /// its bundles. Every key of the device comes from `rng`: seed it from the operating system
    /// (`rand::make_rng()`) outside tests.
    pub async fn register(relay: SocketAddr, user: &str, device_id: u32, mut rng: StdRng) -> Result<ChatClient, ChatError> {
        let address = ProtocolAddress::new(user, device_id);
        let mut device = Device::new(address, rng.next_u32() & 0x3fff, &mut rng);
        let mut connection = Connection::connect(relay).await?;
        let answer = connection.request(Body::Register(Register { user: user.to_owned(), device_id })).await?;
        let credential = match answer.body {
            Some(server_frame::Body::Registered(registered)) => registered.credential,
            Some(other) => return Err(refused(other)),
            None => return Err(ChatError::Protocol),
        };
        let bundles = device.publish_bundles(BUNDLES_PUBLISHED, &mut rng).iter().map(PreKeyBundle::to_wire).collect();
        let mut client = ChatClient {
            user: user.to_owned(),
            device_id,
            credential,
            relay,
            device,
            connection: Some(connection),
            directory: InMemoryDirectory::default(),
            devices_of: HashMap::new(),
            outbox: VecDeque::new(),
            seen: HashSet::new(),
            stats: ChatStats::default(),
            rng,
            database: None,
            ready: Vec::new(),
            unsealed: Vec::new(),
        };
        client.authenticate().await?;
        client.request(Body::UploadBundles(UploadBundles { bundles })).await?;
        Ok(client)
    }

    /// Like [`Self::register`], keeping the device in the database at `path` from now on.
    pub async fn register_with_database(
        relay: SocketAddr,
        user: &str,
        device_id: u32,
        rng: StdRng,
        path: &Path,
    ) -> Result<ChatClient, ChatError> {
        let database = DeviceDatabase::open(path)?;
        let mut client = ChatClient::register(relay, user, device_id, rng).await?;
        client.database = Some(database);
        client.save()?;
        Ok(client)
    }

    /// The device kept in the database at `path`, back online: as it was when it last saved,
    /// with its outbox sent and its mail fetched.
    pub async fn resume(relay: SocketAddr, path: &Path, rng: StdRng) -> Result<ChatClient, ChatError> {
        let database = DeviceDatabase::open(path)?;
        let snapshot = database.load()?.ok_or(ChatError::Protocol)?;
        let device = Device::restore(&snapshot)?;
        let mut devices_of: HashMap<String, Vec<ProtocolAddress>> = HashMap::new();
        for known in device.known_devices() {
            devices_of.entry(known.name().to_owned()).or_default().push(known.clone());
        }
        let address = snapshot.address.clone().ok_or(ChatError::Protocol)?;
        let outbox = snapshot
            .outbox
            .iter()
            .filter_map(|bytes| decode::<ClientFrame>(bytes, limits::MAX_PAYLOAD_LEN * 4).ok()?.body)
            .collect();
        let mut client = ChatClient {
            user: address.name,
            device_id: address.device_id,
            credential: snapshot.credential.clone(),
            relay,
            device,
            connection: None,
            directory: InMemoryDirectory::default(),
            devices_of,
            outbox,
            seen: snapshot.seen_message_ids.iter().cloned().collect(),
            stats: ChatStats::default(),
            rng,
            database: Some(database),
            ready: Vec::new(),
            unsealed: Vec::new(),
        };
        client.reconnect().await?;
        Ok(client)
    }

    /// Writes the device's state to its database, if it has one.
    fn save(&self) -> Result<(), ChatError> {
        let Some(database) = &self.database else { return Ok(()) };
        let mut snapshot = self.device.snapshot();
        snapshot.credential = self.credential.clone();
        snapshot.seen_message_ids = self.seen.iter().cloned().collect();
        snapshot.outbox = self.outbox.iter().map(|body| ClientFrame { request_id: 0, body: Some(body.clone()) }.encode_to_vec()).collect();
        database.save(&snapshot)?;
        Ok(())
    }

    /// This device's user.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// This device's address.
    pub fn address(&self) -> ProtocolAddress {
        ProtocolAddress::new(&self.user, self.device_id)
    }

    pub fn stats(&self) -> ChatStats {
        self.stats
    }

    /// The group `id` as this device sees it.
    pub fn group(&self, id: &str) -> Option<&crate::Group> {
        self.device.group(id)
    }

    /// Goes offline: the relay keeps this device's mail until it comes back.
    pub fn disconnect(&mut self) {
        self.connection = None;
    }

    /// Comes back online (or reconnects after the relay restarted) and sends what waits in the
    /// outbox.
    pub async fn reconnect(&mut self) -> Result<(), ChatError> {
        self.connection = Some(Connection::connect(self.relay).await?);
        self.authenticate().await?;
        self.flush().await
    }

    async fn authenticate(&mut self) -> Result<(), ChatError> {
        let authenticate =
            Authenticate { user: self.user.clone(), device_id: self.device_id, credential: self.credential.clone() };
        self.request(Body::Authenticate(authenticate)).await.map(|_| ())
    }

    async fn request(&mut self, body: Body) -> Result<server_frame::Body, ChatError> {
        let connection = self.connection.as_mut().ok_or(NetError::Closed)?;
        let answer = connection.request(body).await;
        if matches!(answer, Err(NetError::Closed | NetError::Timeout)) {
            self.connection = None;
        }
        match answer?.body {
            Some(server_frame::Body::Failure(failure)) => Err(refused(server_frame::Body::Failure(failure))),
            Some(body) => Ok(body),
            None => Err(ChatError::Protocol),
        }
    }

    /// The devices of `user`, fetching a bundle for each one not yet known.
    async fn devices(&mut self, user: &str) -> Result<Vec<ProtocolAddress>, ChatError> {
        if let Some(known) = self.devices_of.get(user) {
            return Ok(known.clone());
        }
        let fetch = Body::FetchBundles(FetchBundles { user: user.to_owned() });
        let mut attempts = 0;
        let answer = loop {
            match self.request(fetch.clone()).await {
                // The other app's relay may be restarting, or the link to it coming up.
                Err(ChatError::Refused { code: ErrorCode::Unavailable, .. }) if attempts < UNAVAILABLE_RETRIES => {
                    attempts += 1;
                    tokio::time::sleep(UNAVAILABLE_PAUSE).await;
                }
                other => break other?,
            }
        };
        let server_frame::Body::Bundles(bundles) = answer else { return Err(ChatError::Protocol) };
        let mut devices = Vec::new();
        for device in bundles.devices {
            let Some(bundle) = device.bundle else { continue };
            let address = ProtocolAddress::new(user, device.device_id);
            let bundle = PreKeyBundle::from_wire(bundle).map_err(ClientError::from)?;
            self.directory.publish(&address, [bundle]);
            devices.push(address);
        }
        self.devices_of.insert(user.to_owned(), devices.clone());
        Ok(devices)
    }

    /// Makes sure a bundle is at hand for every device in `to` (for sealing).
    async fn prepare(&mut self, to: impl IntoIterator<Item = &ProtocolAddress>) -> Result<(), ChatError> {
        let users: HashSet<String> = to.into_iter().map(|a| a.name().to_owned()).collect();
        for user in users {
            self.devices(&user).await?;
        }
        Ok(())
    }

    fn new_content(&mut self, group: Option<&str>, body: content::Body) -> Content {
        let mut message_id = vec![0u8; 16];
        self.rng.fill_bytes(&mut message_id);
        Content { message_id, sent_at_ms: now_ms(), group_id: group.unwrap_or_default().to_owned(), body: Some(body) }
    }

    fn envelope(&mut self, outgoing: Outgoing, group_id: &str) -> Body {
        let mut id = vec![0u8; 16];
        self.rng.fill_bytes(&mut id);
        let kind = match outgoing.message.kind() {
            MessageKind::PreKey => EnvelopeKind::PrekeyMessage,
            MessageKind::Signal => EnvelopeKind::SignalMessage,
        };
        Body::Send(Envelope {
            id,
            sender: Some(wire_address(&self.address())),
            recipient: Some(wire_address(&outgoing.to)),
            kind: kind as i32,
            content: outgoing.message.serialize().to_vec(),
            group_id: group_id.to_owned(),
        })
    }

    /// Sends `body` to every device of `user`. Returns the message id.
    pub async fn send(&mut self, user: &str, body: content::Body) -> Result<Vec<u8>, ChatError> {
        let content = self.new_content(None, body);
        let bytes = content.encode_to_vec();
        for device in self.devices(user).await? {
            let outgoing = self.device.send(&device, &bytes, &mut self.directory, &mut self.rng)?;
            let envelope = self.envelope(outgoing, "");
            self.outbox.push_back(envelope);
        }
        self.stats.sent += 1;
        self.save()?;
        self.flush().await?;
        Ok(content.message_id)
    }

    /// Sends a file to every device of `user`: encrypted with a fresh key, stored by this
    /// device's relay as an opaque blob, and pointed to by an end-to-end encrypted message.
    pub async fn send_attachment(&mut self, user: &str, file: &[u8], content_type: &str, file_name: &str) -> Result<Vec<u8>, ChatError> {
        let sealed = crate::attachment::seal(file, &mut self.rng);
        let answer = self.request(Body::UploadBlob(UploadBlob { blob: sealed.blob })).await?;
        let server_frame::Body::Blob(stored) = answer else { return Err(ChatError::Protocol) };
        let pointer = AttachmentPointer {
            blob_id: stored.blob_id,
            key: sealed.key.to_vec(),
            digest: sealed.digest.to_vec(),
            size: file.len() as u64,
            content_type: content_type.to_owned(),
            file_name: file_name.to_owned(),
        };
        self.send(user, content::Body::Attachment(pointer)).await
    }

    /// Fetches and decrypts the file an attachment pointer names (through federation when
    /// another app's relay holds it).
    pub async fn download(&mut self, pointer: &AttachmentPointer) -> Result<Vec<u8>, ChatError> {
        let answer = self.request(Body::FetchBlob(FetchBlob { blob_id: pointer.blob_id.clone() })).await?;
        let server_frame::Body::Blob(blob) = answer else { return Err(ChatError::Protocol) };
        Ok(crate::attachment::open(&blob.blob, &pointer.key, &pointer.digest)?)
    }

    /// Creates group `id` (`name@app`, the app being the group's hub) with every device of `users`.
    pub async fn create_group(&mut self, id: &str, users: &[&str], suite: Suite) -> Result<(), ChatError> {
        let mut members = Vec::new();
        for user in users {
            members.extend(self.devices(user).await?);
        }
        let outgoing = self.device.create_group(id, members, suite, &mut self.directory, &mut self.rng)?;
        self.queue(outgoing);
        self.save()?;
        self.flush().await
    }

    /// Adds every device of `user` to group `id`.
    pub async fn add_member(&mut self, id: &str, user: &str) -> Result<(), ChatError> {
        for device in self.devices(user).await? {
            let members: Vec<ProtocolAddress> = self.group(id).map(|g| g.members.iter().cloned().collect()).unwrap_or_default();
            self.prepare(members.iter()).await?;
            let outgoing = self.device.add_member(id, device, &mut self.directory, &mut self.rng)?;
            self.queue(outgoing);
        }
        self.save()?;
        self.flush().await
    }

    /// Removes every device of `user` from group `id`; every remaining member rotates its key.
    pub async fn remove_member(&mut self, id: &str, user: &str) -> Result<(), ChatError> {
        for device in self.devices(user).await? {
            let outgoing = self.device.remove_member(id, &device, &mut self.directory, &mut self.rng)?;
            self.queue(outgoing);
        }
        self.save()?;
        self.flush().await
    }

    /// Sends `body` to group `id`: encrypted once, fanned out by the relays.
    pub async fn send_group(&mut self, id: &str, body: content::Body) -> Result<Vec<u8>, ChatError> {
        let content = self.new_content(Some(id), body);
        let me = self.address();
        let members: Vec<ProtocolAddress> = self.group(id).map(|g| g.members.iter().cloned().collect()).unwrap_or_default();
        self.prepare(members.iter().filter(|member| **member != me)).await?;
        let mut message = self.device.encrypt_group(id, &content.encode_to_vec(), &mut self.rng)?;
        // Our sender key, to the members that do not hold it yet, goes first.
        let distributions = std::mem::take(&mut message.key_distributions);
        let sealed = match self.device.seal_all(distributions.clone(), &mut self.directory, &mut self.rng) {
            Ok(sealed) => sealed,
            Err(error) => {
                self.device.key_not_delivered(id, &distributions);
                return Err(error.into());
            }
        };
        self.queue(sealed);
        let mut envelope_id = vec![0u8; 16];
        self.rng.fill_bytes(&mut envelope_id);
        self.outbox.push_back(Body::SendGroup(GroupEnvelope {
            id: envelope_id,
            sender: Some(wire_address(&self.address())),
            group_id: id.to_owned(),
            hub: app_of(id).to_owned(),
            recipients: message.recipients.iter().map(wire_address).collect(),
            content: message.bytes,
        }));
        self.stats.sent += 1;
        self.save()?;
        self.flush().await?;
        Ok(content.message_id)
    }

    fn queue(&mut self, outgoing: Vec<Outgoing>) {
        for message in outgoing {
            let envelope = self.envelope(message, "");
            self.outbox.push_back(envelope);
        }
    }

    /// Sends the outbox, oldest first, until it is empty or the relay cannot take more now.
    /// Each entry leaves the outbox only once the relay has confirmed it durable (or refused it
    /// for good).
    pub async fn flush(&mut self) -> Result<(), ChatError> {
        while let Some(front) = self.outbox.front().cloned() {
            if self.connection.is_none() {
                return Ok(());
            }
            match self.request(front).await {
                Ok(_) => {}
                Err(ChatError::Refused { code: ErrorCode::Unavailable | ErrorCode::MailboxFull, .. }) => return Ok(()),
                Err(ChatError::Refused { code, detail }) => {
                    tracing::warn!(?code, detail, "the relay refused a message for good");
                }
                Err(ChatError::Net(_)) => return Ok(()),
                Err(other) => return Err(other),
            }
            self.outbox.pop_front();
            self.save()?;
        }
        Ok(())
    }

    /// Messages waiting in the outbox.
    pub fn outbox_len(&self) -> usize {
        self.outbox.len()
    }

    /// Processes what the relay delivers, until nothing more arrives for `quiet`. An error
    /// loses nothing: what was processed is returned by the next call, and what was decided
    /// but could not be sent yet is sent then.
    pub async fn poll(&mut self, quiet: Duration) -> Result<Vec<Event>, ChatError> {
        self.seal_responses().await?;
        loop {
            let Some(connection) = self.connection.as_mut() else { break };
            let Some(envelope) = connection.next_delivery(quiet).await else { break };
            let id = envelope.id.clone();
            let (event, responses) = self.process(envelope);
            self.ready.extend(event);
            self.unsealed.extend(responses);
            self.seal_responses().await?;
            // Processed (or refused for good) and saved: only now may the relay delete it.
            self.save()?;
            if let Some(connection) = self.connection.as_mut() {
                connection.notify(Body::Acknowledge(Acknowledge { ids: vec![id] })).await?;
            }
        }
        self.flush().await?;
        Ok(std::mem::take(&mut self.ready))
    }

    /// Seals the responses waiting for bundles and queues them in the outbox.
    async fn seal_responses(&mut self) -> Result<(), ChatError> {
        if self.unsealed.is_empty() {
            return Ok(());
        }
        let waiting = self.unsealed.clone();
        self.prepare(waiting.iter().map(|p| &p.to)).await?;
        let outgoing = self.device.seal_all(waiting, &mut self.directory, &mut self.rng)?;
        self.unsealed.clear();
        self.queue(outgoing);
        Ok(())
    }

    fn process(&mut self, envelope: Envelope) -> (Option<Event>, Vec<PendingSend>) {
        let Some(sender) = envelope.sender.as_ref().map(|s| ProtocolAddress::new(&s.name, s.device_id)) else {
            self.stats.rejected += 1;
            return (None, Vec::new());
        };
        let kind = EnvelopeKind::try_from(envelope.kind).unwrap_or(EnvelopeKind::Unspecified);
        let decrypted = match kind {
            EnvelopeKind::SenderKeyMessage => self
                .device
                .decrypt_group(&envelope.group_id, &sender, &envelope.content)
                .map(|plaintext| (Received::Application(plaintext), Vec::new())),
            EnvelopeKind::PrekeyMessage | EnvelopeKind::SignalMessage => {
                let kind = if kind == EnvelopeKind::PrekeyMessage { MessageKind::PreKey } else { MessageKind::Signal };
                CiphertextMessage::parse(kind, &envelope.content)
                    .map_err(ClientError::from)
                    .and_then(|message| self.device.receive_pending(&sender, &message, &mut self.rng))
            }
            EnvelopeKind::Unspecified => Err(ClientError::InvalidPayload("unknown envelope kind")),
        };
        match decrypted {
            Ok((Received::Application(plaintext), responses)) => {
                let group = (kind == EnvelopeKind::SenderKeyMessage).then(|| envelope.group_id.clone());
                (self.content(sender, group, &plaintext), responses)
            }
            Ok((Received::Group { group, epoch }, responses)) => (Some(Event::GroupChanged { group, epoch }), responses),
            Ok((Received::RemovedFromGroup { group }, responses)) => (Some(Event::RemovedFromGroup { group }), responses),
            Err(ClientError::Session(SessionError::Duplicate { .. })) => {
                self.stats.duplicates += 1;
                (None, Vec::new())
            }
            Err(error) => {
                tracing::debug!(%error, "a delivery was refused");
                self.stats.rejected += 1;
                (None, Vec::new())
            }
        }
    }

    fn content(&mut self, from: ProtocolAddress, group: Option<String>, plaintext: &[u8]) -> Option<Event> {
        let Ok(content) = decode::<Content>(plaintext, limits::MAX_PAYLOAD_LEN) else {
            self.stats.rejected += 1;
            return None;
        };
        if !self.seen.insert(content.message_id.clone()) {
            self.stats.duplicates += 1;
            return None;
        }
        self.stats.received += 1;
        Some(Event::Message { from, group, content })
    }
}
