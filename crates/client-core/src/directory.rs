//! Where prekey bundles come from: a relay's directory in a deployment, a map in tests.

use std::collections::{HashMap, VecDeque};

use switchboard_session::{PreKeyBundle, ProtocolAddress};

/// A source of prekey bundles; each fetch hands out a bundle with a fresh one-time prekey while
/// any are left.
pub trait BundleDirectory {
    fn fetch_bundle(&mut self, address: &ProtocolAddress) -> Option<PreKeyBundle>;
    /// Whether [`Self::fetch_bundle`] would give a bundle for `address`.
    fn has_bundle(&self, address: &ProtocolAddress) -> bool;
}

/// Bundles published in memory, each one-time prekey handed out once; when a device's stock is
/// used up, its last bundle is handed out without a one-time prekey.
#[derive(Default)]
pub struct InMemoryDirectory {
    bundles: HashMap<ProtocolAddress, VecDeque<PreKeyBundle>>,
}

impl InMemoryDirectory {
    /// Publishes `bundles` for `address`.
    pub fn publish(&mut self, address: &ProtocolAddress, bundles: impl IntoIterator<Item = PreKeyBundle>) {
        self.bundles.entry(address.clone()).or_default().extend(bundles);
    }
}

impl BundleDirectory for InMemoryDirectory {
    fn has_bundle(&self, address: &ProtocolAddress) -> bool {
        self.bundles.get(address).is_some_and(|queue| !queue.is_empty())
    }

    fn fetch_bundle(&mut self, address: &ProtocolAddress) -> Option<PreKeyBundle> {
        let queue = self.bundles.get_mut(address)?;
        if queue.len() > 1 {
            return queue.pop_front();
        }
        let last = queue.front_mut()?;
        let bundle = last.clone();
        last.prekey = None;
        Some(bundle)
    }
}
