//! Where prekey bundles come from: a relay's directory in a deployment, a map in tests.

use std::collections::{HashMap, VecDeque};

use switchboard_session::{PreKeyBundle, ProtocolAddress, Result, VerifiedBundle};

/// A source of prekey bundles whose signatures hold; each fetch hands out a bundle with a fresh
/// one-time prekey while any are left.
pub trait BundleDirectory {
    /// A bundle for `address`, its signatures checked; a one-time prekey it carries is handed out
    /// by no other fetch. `None` if no bundle is published for `address`.
    fn fetch_bundle(&mut self, address: &ProtocolAddress) -> Option<VerifiedBundle>;
    /// Whether [`Self::fetch_bundle`] would give a bundle for `address`.
    fn has_bundle(&self, address: &ProtocolAddress) -> bool;
}

/// Bundles published in memory, checked once as they are published, each one-time prekey handed
/// out once; when a device's stock is used up, its last bundle is handed out without a one-time
/// prekey.
#[derive(Default)]
pub struct InMemoryDirectory {
    bundles: HashMap<ProtocolAddress, VecDeque<VerifiedBundle>>,
}

impl InMemoryDirectory {
    /// Publishes `bundles` for `address` if every one's signatures hold; otherwise publishes none
    /// and says why.
    pub fn publish(&mut self, address: &ProtocolAddress, bundles: impl IntoIterator<Item = PreKeyBundle>) -> Result<()> {
        let verified = bundles.into_iter().map(PreKeyBundle::into_verified).collect::<Result<Vec<_>>>()?;
        self.bundles.entry(address.clone()).or_default().extend(verified);
        Ok(())
    }

    /// The identity key of the bundle [`BundleDirectory::fetch_bundle`] would give for `address`.
    pub fn identity_of(&self, address: &ProtocolAddress) -> Option<switchboard_session::IdentityKey> {
        self.bundles.get(address)?.front().map(|bundle| bundle.identity_key)
    }
}

impl BundleDirectory for InMemoryDirectory {
    fn has_bundle(&self, address: &ProtocolAddress) -> bool {
        self.bundles.get(address).is_some_and(|queue| !queue.is_empty())
    }

    fn fetch_bundle(&mut self, address: &ProtocolAddress) -> Option<VerifiedBundle> {
        let queue = self.bundles.get_mut(address)?;
        if queue.len() > 1 {
            return queue.pop_front();
        }
        let last = queue.front_mut()?;
        if last.prekey.is_some() && !last.kem_prekeys.is_empty() {
            // A one-time bundle's KEM prekeys are one-time too: it goes whole, and the next
            // session asks for a fresh bundle.
            return queue.pop_front();
        }
        let bundle = last.clone();
        last.take_prekey();
        Some(bundle)
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;
    use crate::Device;

    #[test]
    fn a_bundle_whose_signature_fails_is_not_published_nor_any_given_with_it() {
        let mut rng = StdRng::seed_from_u64(3);
        let bob = ProtocolAddress::new("bob@b", 1);
        let mut device = Device::new(bob.clone(), 1, &mut rng);
        let mut bundles = device.publish_bundles(2, &mut rng);
        bundles[1].signed_prekey_signature[0] ^= 1;
        let mut directory = InMemoryDirectory::default();
        assert!(directory.publish(&bob, bundles.clone()).is_err());
        assert!(!directory.has_bundle(&bob));

        let last_resort = bundles.pop().unwrap();
        directory.publish(&bob, [bundles.remove(0), last_resort]).unwrap();
        let first = directory.fetch_bundle(&bob).unwrap();
        assert!(first.prekey.is_some());
        // The last-resort bundle is handed out as often as asked, and still verifies.
        for _ in 0..2 {
            let again = directory.fetch_bundle(&bob).unwrap();
            assert!(again.prekey.is_none());
            assert!(again.into_inner().verify().is_ok());
        }
        // A one-time bundle left last goes whole: its KEM prekeys are one-time too.
        let mut directory = InMemoryDirectory::default();
        let one_time = device.publish_bundles(1, &mut rng).remove(0);
        directory.publish(&bob, [one_time]).unwrap();
        assert!(directory.fetch_bundle(&bob).unwrap().prekey.is_some());
        assert!(!directory.has_bundle(&bob));
    }
}
