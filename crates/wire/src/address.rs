//! Addresses, one type and one parser for the whole project: a user is `name@app`, one of a user's
//! devices is `name@app/n`. Group ids (`name@hub-app`) and attachment blob ids (`id@app`) have the
//! same form as a user and are parsed the same way.
//!
//! The rules:
//! - a user address is split at its **last** `@`: the name before it may hold any character
//!   (including `@` and `/`), the app after it is non-empty and holds neither `@` nor `/`;
//! - the name is non-empty, and the whole `name@app` is at most [`MAX_USER_LEN`] bytes;
//! - a device address is a user address, `/`, and a device id written as a plain decimal number
//!   from 1 to `u32::MAX` (no sign, no leading zero), split at the last `/`. Since an app holds no
//!   `/`, a text is a device address exactly when there is a `/` after its last `@`.
//!
//! Parsing never changes the text: an address displays as exactly the text it was parsed from.

use std::fmt;
use std::str::FromStr;

/// Longest user address (`name@app`), in bytes.
pub const MAX_USER_LEN: usize = 256;

/// What is wrong with an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AddressError {
    /// The text has no `@` at all.
    #[error("no '@': an address is name@app")]
    MissingAt,
    /// Nothing comes before the last `@`.
    #[error("the name before the last '@' is empty")]
    EmptyName,
    /// Nothing comes after the last `@`.
    #[error("the app after the last '@' is empty")]
    EmptyApp,
    /// The app holds this character (`@` or `/`), which no app may.
    #[error("the app holds {0:?}: an app holds no '@' or '/' (a device address is name@app/n)")]
    BadCharInApp(char),
    /// The user address is longer than [`MAX_USER_LEN`].
    #[error("{len} bytes: an address (name@app) is at most {MAX_USER_LEN} bytes")]
    TooLong {
        /// Its length, in bytes.
        len: usize,
    },
    /// A device address was expected, and the text has no `/` to split its device id off.
    #[error("no device: a device address is name@app/n")]
    MissingDevice,
    /// The device id is not a plain decimal number from 1 to `u32::MAX`.
    #[error("the device after the last '/' is not a number from 1 to 4294967295 written plainly")]
    BadDevice,
}

/// Checks an app name on its own: non-empty, without `@` or `/`.
pub fn check_app(app: &str) -> Result<(), AddressError> {
    if app.is_empty() {
        Err(AddressError::EmptyApp)
    } else if let Some(bad) = app.chars().find(|&c| c == '@' || c == '/') {
        Err(AddressError::BadCharInApp(bad))
    } else {
        Ok(())
    }
}

/// A user (`name@app`): someone with an account on the relay of `app`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UserAddress {
    text: String,
    /// Byte index of the last `@`.
    at: usize,
}

impl UserAddress {
    /// Checks `text` as `name@app` without allocating, and splits it into (name, app). This is the
    /// parser [`UserAddress::from_str`] uses; it is for hot paths that only need the parts.
    pub fn split(text: &str) -> Result<(&str, &str), AddressError> {
        if text.len() > MAX_USER_LEN {
            return Err(AddressError::TooLong { len: text.len() });
        }
        let (name, app) = text.rsplit_once('@').ok_or(AddressError::MissingAt)?;
        if name.is_empty() {
            return Err(AddressError::EmptyName);
        }
        check_app(app)?;
        Ok((name, app))
    }

    /// The name, before the last `@`.
    pub fn name(&self) -> &str {
        &self.text[..self.at]
    }

    /// The app, after the last `@`.
    pub fn app(&self) -> &str {
        &self.text[self.at + 1..]
    }

    /// The whole address, `name@app`.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The whole address, `name@app`, as an owned string.
    pub fn into_string(self) -> String {
        self.text
    }
}

impl FromStr for UserAddress {
    type Err = AddressError;

    fn from_str(text: &str) -> Result<Self, AddressError> {
        let (name, _) = Self::split(text)?;
        Ok(UserAddress { text: text.to_owned(), at: name.len() })
    }
}

impl TryFrom<String> for UserAddress {
    type Error = AddressError;

    fn try_from(text: String) -> Result<Self, AddressError> {
        let (name, _) = Self::split(&text)?;
        let at = name.len();
        Ok(UserAddress { text, at })
    }
}

impl fmt::Display for UserAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for UserAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UserAddress({:?})", self.text)
    }
}

impl AsRef<str> for UserAddress {
    fn as_ref(&self) -> &str {
        &self.text
    }
}

/// One device of a user (`name@app/n`, n ≥ 1).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UserDevice {
    user: UserAddress,
    device_id: u32,
}

/// A plain decimal number from 1 to `u32::MAX`: no sign, no leading zero.
fn device_id(text: &str) -> Result<u32, AddressError> {
    let plain = text.bytes().all(|b| b.is_ascii_digit()) && !text.starts_with('0');
    let id = text.parse::<u32>().ok().filter(|_| plain).ok_or(AddressError::BadDevice)?;
    Ok(id)
}

impl UserDevice {
    /// Device `device_id` (1 or more) of `user`.
    pub fn new(user: UserAddress, device_id: u32) -> Result<Self, AddressError> {
        if device_id == 0 {
            return Err(AddressError::BadDevice);
        }
        Ok(UserDevice { user, device_id })
    }

    /// The device's user, `name@app`.
    pub fn user(&self) -> &UserAddress {
        &self.user
    }

    /// The user's name, before the last `@`.
    pub fn name(&self) -> &str {
        self.user.name()
    }

    /// The user's app, after the last `@`.
    pub fn app(&self) -> &str {
        self.user.app()
    }

    /// The device id, 1 or more.
    pub fn device_id(&self) -> u32 {
        self.device_id
    }

    /// The user and the device id, taken apart.
    pub fn into_parts(self) -> (UserAddress, u32) {
        (self.user, self.device_id)
    }
}

impl FromStr for UserDevice {
    type Err = AddressError;

    fn from_str(text: &str) -> Result<Self, AddressError> {
        let (user, device) = text.rsplit_once('/').ok_or(AddressError::MissingDevice)?;
        let user = user.parse::<UserAddress>()?;
        Ok(UserDevice { user, device_id: device_id(device)? })
    }
}

impl fmt::Display for UserDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.user, self.device_id)
    }
}

impl fmt::Debug for UserDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UserDevice(\"{self}\")")
    }
}

/// Either form: a user (`name@app`, meaning all of the user's devices) or one device
/// (`name@app/n`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Address {
    /// A user, `name@app`: all of the user's devices.
    User(UserAddress),
    /// One device, `name@app/n`.
    Device(UserDevice),
}

impl Address {
    /// The user, with or without a device.
    pub fn user(&self) -> &UserAddress {
        match self {
            Address::User(user) => user,
            Address::Device(device) => device.user(),
        }
    }

    /// The device, if one is named.
    pub fn device_id(&self) -> Option<u32> {
        match self {
            Address::User(_) => None,
            Address::Device(device) => Some(device.device_id()),
        }
    }
}

impl FromStr for Address {
    type Err = AddressError;

    fn from_str(text: &str) -> Result<Self, AddressError> {
        let after_at = text.rsplit_once('@').map_or("", |(_, after)| after);
        if after_at.contains('/') {
            text.parse().map(Address::Device)
        } else {
            text.parse().map(Address::User)
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::User(user) => user.fmt(f),
            Address::Device(device) => device.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn users() {
        let alice: UserAddress = "alice@green".parse().unwrap();
        assert_eq!((alice.name(), alice.app(), alice.as_str()), ("alice", "green", "alice@green"));
        assert_eq!(alice.to_string(), "alice@green");
        // Split at the last '@': a name may hold '@' (and '/').
        let odd: UserAddress = "a@b/c@red".parse().unwrap();
        assert_eq!((odd.name(), odd.app()), ("a@b/c", "red"));
        assert_eq!(UserAddress::split("bob@blue"), Ok(("bob", "blue")));

        for (text, error) in [
            ("", AddressError::MissingAt),
            ("alice", AddressError::MissingAt),
            ("@green", AddressError::EmptyName),
            ("alice@", AddressError::EmptyApp),
            ("alice@gr/een", AddressError::BadCharInApp('/')),
            ("alice@green/1", AddressError::BadCharInApp('/')),
        ] {
            assert_eq!(text.parse::<UserAddress>(), Err(error), "{text:?}");
        }
        let longest = format!("{}@green", "a".repeat(MAX_USER_LEN - 6));
        assert!(longest.parse::<UserAddress>().is_ok());
        let too_long = format!("a{longest}");
        assert_eq!(too_long.parse::<UserAddress>(), Err(AddressError::TooLong { len: MAX_USER_LEN + 1 }));
    }

    #[test]
    fn devices() {
        let device: UserDevice = "alice@green/2".parse().unwrap();
        assert_eq!((device.name(), device.app(), device.device_id()), ("alice", "green", 2));
        assert_eq!(device.user().as_str(), "alice@green");
        assert_eq!(device.to_string(), "alice@green/2");
        let last: UserDevice = "a/b@green/4294967295".parse().unwrap();
        assert_eq!((last.name(), last.device_id()), ("a/b", u32::MAX));

        for text in ["alice@green/0", "alice@green/01", "alice@green/+1", "alice@green/", "alice@green/x", "alice@green/4294967296"] {
            assert_eq!(text.parse::<UserDevice>(), Err(AddressError::BadDevice), "{text:?}");
        }
        assert_eq!("alice@green".parse::<UserDevice>(), Err(AddressError::MissingDevice));
        assert_eq!("alice@gr/een/1".parse::<UserDevice>(), Err(AddressError::BadCharInApp('/')));
        assert_eq!(UserDevice::new("alice@green".parse().unwrap(), 0), Err(AddressError::BadDevice));
    }

    #[test]
    fn either() {
        assert_eq!("alice@green".parse::<Address>().unwrap().device_id(), None);
        let device = "alice@green/3".parse::<Address>().unwrap();
        assert_eq!((device.user().as_str(), device.device_id()), ("alice@green", Some(3)));
        // A '/' before the last '@' is part of the name.
        let user = "a/1@green".parse::<Address>().unwrap();
        assert_eq!((user.user().name(), user.device_id()), ("a/1", None));
        assert_eq!("alice@green/0".parse::<Address>(), Err(AddressError::BadDevice));
        assert_eq!("alice".parse::<Address>(), Err(AddressError::MissingAt));
    }

    #[test]
    fn apps() {
        assert_eq!(check_app("green"), Ok(()));
        assert_eq!(check_app(""), Err(AddressError::EmptyApp));
        assert_eq!(check_app("a@b"), Err(AddressError::BadCharInApp('@')));
        assert_eq!(check_app("a/b"), Err(AddressError::BadCharInApp('/')));
    }

    proptest! {
        #[test]
        fn display_parse_round_trip(name in "[^\\x00]{1,40}", app in "[^@/]{1,20}", device in 1u32..) {
            let text = format!("{name}@{app}");
            prop_assume!(text.len() <= MAX_USER_LEN);
            let user: UserAddress = text.parse().unwrap();
            prop_assert_eq!((user.name(), user.app()), (name.as_str(), app.as_str()));
            prop_assert_eq!(user.to_string(), text.clone());
            prop_assert_eq!(UserAddress::try_from(text.clone()), Ok(user.clone()));
            let device = UserDevice::new(user.clone(), device).unwrap();
            let shown = device.to_string();
            prop_assert_eq!(shown.parse::<UserDevice>(), Ok(device.clone()));
            prop_assert_eq!(shown.parse::<Address>(), Ok(Address::Device(device)));
            prop_assert_eq!(text.parse::<Address>(), Ok(Address::User(user)));
        }

        #[test]
        fn garbage_never_panics(text in "\\PC{0,300}|[a@/0-9]{0,20}") {
            let user = text.parse::<UserAddress>();
            if let Ok(user) = &user {
                prop_assert_eq!(user.to_string(), text.clone());
                prop_assert!(text.len() <= MAX_USER_LEN);
            }
            if let Ok(device) = text.parse::<UserDevice>() {
                prop_assert_eq!(device.to_string(), text.clone());
            }
            if let Ok(address) = text.parse::<Address>() {
                prop_assert_eq!(address.to_string(), text.clone());
            }
            prop_assert_eq!(UserAddress::split(&text).is_ok(), user.is_ok());
        }
    }
}
