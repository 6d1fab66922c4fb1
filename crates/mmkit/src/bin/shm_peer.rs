//! Test helper: an unrelated process that receives a memfd over a Unix socket and uses it.
//!
//! `shm_peer <socket-path> view`: connects, receives a [`SharedMemory`], reads the message the
//! sender left (a `u32` length at byte 60, the bytes at 64), writes it reversed at byte 1024,
//! adds 1 to the `AtomicU64` at byte 0, tries to shrink the memfd, and prints
//! `name=<name> len=<len> msg=<message> shrink_errno=<errno or 0> seals=<bits>`.
//!
//! `shm_peer <socket-path> write`: receives a memfd and tries to write to it through a
//! descriptor write and a writable map, printing `write_errno=<n> map_errno=<n>`.
//!
//! `shm_peer <socket-path> ring <bytes>`: receives a ring buffer's memfd, attaches as its
//! consumer and reads `<bytes>` bytes as the producer commits them, checking that byte `i` is
//! `ring_byte(i)`; prints `bytes=<n> reads=<reads> first_bad=<index or none>`.

use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};

use mmkit::shm::{RingConsumer, SharedMemory};

/// The byte a ring test writes at stream position `i` (period 251, prime to page sizes).
fn ring_byte(i: u64) -> u8 {
    (i.wrapping_mul(7) % 251) as u8
}

fn main() {
    if let Err(e) = run() {
        eprintln!("shm_peer: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args.next().ok_or("usage: shm_peer <socket-path> <view|write>")?;
    let mode = args.next().unwrap_or_else(|| "view".into());
    let sock = UnixStream::connect(&path)?;
    let shm = SharedMemory::recv(&sock)?;
    match mode.as_str() {
        "view" => {
            let view = shm.view()?;
            let n: u32 = view.read(60)?;
            let mut msg = vec![0u8; n as usize];
            view.read_bytes(64, &mut msg)?;
            let rev: Vec<u8> = msg.iter().rev().copied().collect();
            view.write_bytes(1024, &rev)?;
            view.atomic::<AtomicU64>(0)?.fetch_add(1, Ordering::SeqCst);
            let shrink = shm.set_len(0).err().and_then(|e| e.errno()).unwrap_or(0);
            println!(
                "name={} len={} msg={} shrink_errno={} seals={}",
                shm.name(),
                shm.len()?,
                String::from_utf8_lossy(&msg),
                shrink,
                shm.seals()?.bits()
            );
        }
        "write" => {
            use std::io::Write;
            let mut file = std::fs::File::from(std::os::fd::OwnedFd::from(shm.try_clone()?));
            let write_errno = file.write(b"x").err().and_then(|e| e.raw_os_error()).unwrap_or(0);
            // SAFETY: the map is dropped at once and never read; this only probes the seal.
            let map_errno = match unsafe { shm.map_mut() } {
                Ok(_) => 0,
                Err(e) => e.errno().unwrap_or(-1),
            };
            println!("write_errno={write_errno} map_errno={map_errno}");
        }
        "ring" => {
            let total: u64 = args.next().ok_or("ring needs a byte count")?.parse()?;
            let mut rx = RingConsumer::attach(shm)?;
            let (mut at, mut reads, mut first_bad) = (0u64, 0u64, None);
            let mut buf = vec![0u8; rx.capacity()];
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
            while at < total {
                let want = buf.len().min((total - at) as usize);
                let n = rx.pop(&mut buf[..want]);
                if n == 0 {
                    if std::time::Instant::now() > deadline {
                        return Err(format!("stalled after {at} of {total} bytes").into());
                    }
                    std::thread::yield_now();
                    continue;
                }
                for (k, &b) in buf[..n].iter().enumerate() {
                    if first_bad.is_none() && b != ring_byte(at + k as u64) {
                        first_bad = Some(at + k as u64);
                    }
                }
                at += n as u64;
                reads += 1;
            }
            let bad = first_bad.map_or("none".to_owned(), |i| i.to_string());
            println!("bytes={at} reads={reads} first_bad={bad}");
        }
        other => return Err(format!("unknown mode {other:?}").into()),
    }
    Ok(())
}
