//! The host side of the host link: a hypervisor image sent to dom0 over the
//! machine's second serial port (a unix socket on the host), which dom0
//! stages and updates to.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// The CRC32C (Castagnoli) of `bytes`, as dom0 checks it.
pub fn crc32c(bytes: &[u8]) -> u32 {
    crc::Crc::<u32>::new(&crc::CRC_32_ISCSI).checksum(bytes)
}

/// The frame dom0 expects: magic, length, CRC32C, image.
pub fn frame(image: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(image.len() + 20);
    f.extend_from_slice(b"HVLUIMG1");
    f.extend_from_slice(&(image.len() as u64).to_le_bytes());
    f.extend_from_slice(&crc32c(image).to_le_bytes());
    f.extend_from_slice(image);
    f
}

/// Sends `image` over the host link at `socket` and returns dom0's replies,
/// ending with `done …` or `error …`.
pub fn send_image(socket: &Path, image: &[u8], timeout: Duration) -> Result<Vec<String>, String> {
    let mut stream = UnixStream::connect(socket).map_err(|e| {
        format!(
            "cannot connect to the host link {}: {e} (is `cargo xtask run` running?)",
            socket.display()
        )
    })?;
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(&frame(image))
        .map_err(|e| format!("cannot send the image: {e}"))?;
    let deadline = Instant::now() + timeout;
    let mut reader = BufReader::new(stream);
    let mut replies = Vec::new();
    let mut line = String::new();
    while Instant::now() < deadline {
        match reader.read_line(&mut line) {
            Ok(0) => return Err("the host link closed".into()),
            Ok(_) => {
                let reply = line.trim().to_string();
                line.clear();
                let last = reply.starts_with("done") || reply.starts_with("error");
                replies.push(reply);
                if last {
                    return Ok(replies);
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(format!("reading the host link: {e}")),
        }
    }
    Err(format!(
        "no answer from dom0 within {timeout:?}; replies so far: {replies:?}"
    ))
}
