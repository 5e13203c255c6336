//! `libsignal-c-peer [SEED]`: Signal's reference C library behind the peer protocol
//! (`docs/PEER_PROTOCOL.md`), JSON lines on standard input and output. `SEED` (default 0) seeds
//! the first party's randomness, `SEED + 1` the next one's, and so on.

use std::io::{BufReader, BufWriter};

use switchboard_libsignal_c::peer::CBackend;

fn main() -> std::io::Result<()> {
    let seed = std::env::args().nth(1).and_then(|arg| arg.parse().ok()).unwrap_or(0);
    let mut backend = CBackend::new(seed);
    let stdin = BufReader::new(std::io::stdin().lock());
    let stdout = BufWriter::new(std::io::stdout().lock());
    switchboard_peer::serve(&mut backend, stdin, stdout)
}
