//! The few pieces of WebSocket (RFC 6455) the bench speaks itself: the client's upgrade
//! request and the check of the server's `101`, masked frames from a client, and for the
//! `ceiling-ws` server the answer to an upgrade and the header of an unmasked frame.
//!
//! Key generation and `Sec-WebSocket-Accept` come from tungstenite (a dev-dependency, and
//! hubcast's own WebSocket dependency): the bench does not hash or encode anything itself.

use std::net::SocketAddr;

use tungstenite::handshake::client::generate_key;
use tungstenite::handshake::derive_accept_key;

/// The longest upgrade request or response head accepted.
pub(crate) const MAX_HEAD: usize = 8 * 1024;

/// A client's upgrade request to `addr`, with a fresh random key, and the
/// `Sec-WebSocket-Accept` value the server must answer with.
pub(crate) fn upgrade_request(addr: SocketAddr) -> (Vec<u8>, String) {
    let key = generate_key();
    let accept = derive_accept_key(key.as_bytes());
    let request = format!(
        "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    (request.into_bytes(), accept)
}

/// The end of an HTTP head (after its blank line) in `buf`, if it is all there.
pub(crate) fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// The value of header `name` (case-insensitive) in an HTTP head.
fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.split("\r\n").skip(1).find_map(|line| {
        let (k, v) = line.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Checks a server's answer to the upgrade: status 101 and the expected accept key.
pub(crate) fn check_response(head: &[u8], accept: &str) -> Result<(), String> {
    let head = String::from_utf8_lossy(head);
    let status = head.lines().next().unwrap_or("");
    if !status.starts_with("HTTP/1.1 101") {
        return Err(format!("upgrade refused: {status:?}"));
    }
    match header(&head, "sec-websocket-accept") {
        Some(got) if got == accept => Ok(()),
        got => Err(format!("bad Sec-WebSocket-Accept {got:?}")),
    }
}

/// A masked frame with FIN set, as a client must send: `opcode` 1 text, 2 binary, 10 pong.
/// The mask is fixed: masking protects proxies from a browser's script, not needed here.
pub(crate) fn masked_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    const MASK: [u8; 4] = [0x5a, 0xc3, 0x0f, 0x96];
    let mut out = Vec::with_capacity(payload.len() + 14);
    out.push(0x80 | opcode);
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= 0xffff => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&MASK);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
    out
}

/// The server's side of an upgrade: the `101` answer to a request head, or why not.
pub(crate) fn accept_response(head: &[u8]) -> Result<Vec<u8>, String> {
    let head = String::from_utf8_lossy(head);
    if !head.starts_with("GET ") {
        return Err("not a GET request".into());
    }
    let key = header(&head, "sec-websocket-key").ok_or("no Sec-WebSocket-Key")?;
    Ok(format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n\r\n",
        derive_accept_key(key.as_bytes())
    )
    .into_bytes())
}

/// The header of an unmasked binary frame with FIN set and `len` bytes of payload: 2, 4 or
/// 10 bytes, returned with its length.
pub(crate) fn binary_header(len: usize) -> ([u8; 10], usize) {
    let mut h = [0u8; 10];
    h[0] = 0x82;
    if len < 126 {
        h[1] = len as u8;
        (h, 2)
    } else if len <= 0xffff {
        h[1] = 126;
        h[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        (h, 4)
    } else {
        h[1] = 127;
        h[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        (h, 10)
    }
}

/// Checks the handshake helpers against each other (run by `--self-test`).
pub(crate) fn self_test() {
    let addr = SocketAddr::from(([127, 0, 0, 1], 9));
    let (request, accept) = upgrade_request(addr);
    let end = head_end(&request).expect("a whole head");
    assert_eq!(end, request.len());
    let response = accept_response(&request).expect("an upgrade");
    check_response(&response, &accept).expect("the key matches");
    assert!(check_response(&response, "other").is_err());
    // The RFC's example key.
    assert_eq!(
        derive_accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
        "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    );
    for (len, hl) in [(0, 2), (125, 2), (126, 4), (65_535, 4), (65_536, 10)] {
        assert_eq!(binary_header(len).1, hl);
        assert_eq!(masked_frame(2, &vec![0; len]).len(), len + hl + 4);
    }
}
