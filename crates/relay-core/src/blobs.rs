//! Encrypted attachments: stored for anyone who has their id, bounded in number ([`MAX_BLOBS`])
//! and bytes ([`MAX_BLOB_BYTES`]), deleted [`BLOB_LIFETIME`] after they were stored. The core keeps
//! each blob's size and time; the blob itself is read back from the store when it is fetched.

use rand::Rng;
use switchboard_wire::switchboard::{Blob, ErrorCode, FetchBlob, ServerFrame, UploadBlob, federation_frame, server_frame};

use super::{Action, BLOB_LIFETIME, ConnId, Deferred, MAX_BLOB_BYTES, MAX_BLOB_LEN, MAX_BLOBS, RelayCore, app_of, failure};
use crate::state::Mutation;

type Refusal = (ErrorCode, &'static str);

impl RelayCore {
    pub(super) fn upload_blob(&mut self, conn: ConnId, request_id: u64, upload: UploadBlob) -> Result<(), Refusal> {
        if upload.blob.len() > MAX_BLOB_LEN {
            return Err((ErrorCode::TooLarge, "blob over 768 KiB"));
        }
        if self.state.blobs.len() >= MAX_BLOBS || self.blob_bytes + upload.blob.len() > MAX_BLOB_BYTES {
            return Err((ErrorCode::Unavailable, "this relay keeps no more blobs"));
        }
        self.blob_bytes += upload.blob.len();
        let mut id = [0u8; 16];
        self.rng.fill_bytes(&mut id);
        let blob_id = format!("{}@{}", hex(&id), self.app);
        self.blob_times.insert((self.clock, blob_id.clone()));
        self.mutate(Mutation::PutBlob { id: blob_id.clone(), blob: upload.blob, stored_at: self.clock });
        let stored = Blob { blob_id, blob: Vec::new() };
        self.deferred.push(Deferred::Client(conn, ServerFrame { request_id, body: Some(server_frame::Body::Blob(stored)) }));
        Ok(())
    }

    /// A device asks for a blob: read here if it is this app's, asked of its app otherwise.
    pub(super) fn fetch_blob(&mut self, conn: ConnId, request_id: u64, fetch: FetchBlob) -> Vec<Action> {
        let Some(app) = app_of(&fetch.blob_id).map(str::to_owned) else {
            return vec![failure(conn, request_id, ErrorCode::Malformed, "a blob id is hex@app")];
        };
        if app != self.app {
            let subject = fetch.blob_id.clone();
            return self.ask_app(conn, request_id, app, subject, federation_frame::Body::FetchBlob(fetch));
        }
        match self.read_blob(&fetch.blob_id) {
            Ok(Some(blob)) => {
                let frame = ServerFrame { request_id, body: Some(server_frame::Body::Blob(Blob { blob_id: fetch.blob_id, blob })) };
                vec![Action::ToClient { conn, frame }]
            }
            Ok(None) => vec![failure(conn, request_id, ErrorCode::UnknownRecipient, "no such blob")],
            Err(stop) => vec![stop],
        }
    }

    /// The blob `id` of this app, if it is stored (and durable); the action that stops the relay
    /// if the store cannot be read.
    pub(super) fn read_blob(&self, id: &str) -> Result<Option<Vec<u8>>, Action> {
        if !self.state.blobs.contains_key(id) {
            return Ok(None);
        }
        self.contents.blob(id).map_err(|error| Action::StorageFailed(error.chain()))
    }

    /// Deletes the blobs stored [`BLOB_LIFETIME`] or longer ago.
    pub(super) fn expire_blobs(&mut self) {
        let oldest_kept = self.clock.saturating_sub(BLOB_LIFETIME.as_secs());
        while let Some((stored_at, _)) = self.blob_times.first()
            && *stored_at < oldest_kept
        {
            let (_, id) = self.blob_times.pop_first().expect("just seen");
            if let Some(blob) = self.state.blobs.get(&id) {
                self.blob_bytes -= blob.bytes;
                self.metrics.blobs_expired += 1;
                self.mutate(Mutation::DeleteBlob { id });
            }
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
