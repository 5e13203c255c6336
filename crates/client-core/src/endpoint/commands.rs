//! Commands for the relay that must be answered once (open a channel, follow or leave one,
//! remove a device): kept until the relay answers, and sent again on every connection until it
//! does. Kept in memory only: a device that restarts before the answer does not hear it, and
//! its user gives the command again.

use rand_core::CryptoRng;
use switchboard_wire::switchboard::{FollowChannel, OpenChannel, RemoveDevice, client_frame::Body, server_frame::Body as S};

use super::{Endpoint, Event, Phase, Request, RequestFailed, error_code, transient};

/// Commands waiting for their answer.
pub const MAX_PENDING_COMMANDS: usize = 1_024;

/// A command for the relay, with the handle its answer event carries.
#[derive(Clone, Debug)]
pub(super) enum Command {
    Open(OpenChannel),
    Follow(FollowChannel),
    Remove(RemoveDevice),
}

impl Command {
    fn body(&self) -> Body {
        match self {
            Command::Open(open) => Body::OpenChannel(open.clone()),
            Command::Follow(follow) => Body::FollowChannel(follow.clone()),
            Command::Remove(remove) => Body::RemoveDevice(*remove),
        }
    }
}

impl Endpoint {
    /// Queues `command` and sends it if online; its handle.
    pub(super) fn command(&mut self, command: Command) -> Result<u64, super::CommandError> {
        if self.commands.len() >= MAX_PENDING_COMMANDS {
            return Err(super::CommandError::TooManyCommands);
        }
        let handle = self.next_handle();
        self.commands.push((handle, command));
        if self.phase == Phase::Online {
            self.send_command(handle);
        }
        Ok(handle)
    }

    fn send_command(&mut self, handle: u64) {
        let Some(body) = self.commands.iter().find(|(h, _)| *h == handle).map(|(_, command)| command.body()) else { return };
        self.request(Request::Command(handle), body);
    }

    /// Sends every command not in flight (on going online, and at each retry).
    pub(super) fn send_commands(&mut self) {
        let in_flight: Vec<u64> = self.requests.values().filter_map(|r| if let Request::Command(h) = r { Some(*h) } else { None }).collect();
        let waiting: Vec<u64> = self.commands.iter().map(|(h, _)| *h).filter(|h| !in_flight.contains(h)).collect();
        for handle in waiting {
            self.send_command(handle);
        }
    }

    /// The relay's answer to command `handle`.
    pub(super) fn command_answered(&mut self, handle: u64, answer: S, rng: &mut (impl CryptoRng + ?Sized)) {
        if let S::Failure(failure) = &answer
            && transient(failure.code)
        {
            // Sent again at the next retry.
            self.schedule_retry(rng);
            return;
        }
        let Some(position) = self.commands.iter().position(|(h, _)| *h == handle) else { return };
        let (_, command) = self.commands.remove(position);
        let result = match answer {
            S::Done(_) | S::ChannelInfo(_) => Ok(answer),
            S::Failure(failure) => Err(RequestFailed::Refused(error_code(failure.code))),
            _ => Err(RequestFailed::UnexpectedAnswer),
        };
        match command {
            Command::Open(open) => {
                let result = result.map(|_| ());
                self.events.push_back(Event::ChannelOpened { request: handle, channel: open.channel, result });
            }
            Command::Follow(follow) if follow.follow => self.followed(handle, follow.channel, result, rng),
            Command::Follow(follow) => self.events.push_back(Event::ChannelLeft { request: handle, channel: follow.channel, result: result.map(|_| ()) }),
            Command::Remove(remove) => self.device_removed(handle, remove.device_id, result.map(|_| ()), rng),
        }
    }
}
