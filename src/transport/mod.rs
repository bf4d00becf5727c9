//! The one seam between the hub and a client's byte stream: plain TCP, or TLS over TCP
//! with the `tls` feature. Everything above it (framing, queues, fan-out) sees plaintext.

use std::io::{self, IoSlice, Read, Write};
use std::net::Shutdown;

use mio::net::TcpStream;

#[cfg(feature = "tls")]
pub(crate) mod tls;

/// A client connection as the dispatcher reads and writes it.
#[derive(Debug)]
pub(crate) enum Conn {
    Tcp(TcpStream),
    #[cfg(feature = "tls")]
    Tls(Box<tls::TlsConn>),
}

impl Conn {
    /// The socket, for registering with the poller.
    pub(crate) fn socket(&mut self) -> &mut TcpStream {
        match self {
            Conn::Tcp(stream) => stream,
            #[cfg(feature = "tls")]
            Conn::Tls(tls) => &mut tls.sock,
        }
    }

    /// Reads plaintext. `Ok(0)` is the end of the stream; `WouldBlock` means wait for
    /// readiness (for TLS, also while a handshake or a partial record is in progress).
    pub(crate) fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Tcp(stream) => stream.read(buf),
            #[cfg(feature = "tls")]
            Conn::Tls(tls) => tls.read(buf),
        }
    }

    /// Takes plaintext for sending; returns how much was taken (`WouldBlock` if none).
    pub(crate) fn write_vectored(&mut self, iov: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Conn::Tcp(stream) => stream.write_vectored(iov),
            #[cfg(feature = "tls")]
            Conn::Tls(tls) => tls.write_vectored(iov),
        }
    }

    /// Pushes out bytes the transport buffered (TLS records). `WouldBlock` if some remain.
    pub(crate) fn flush(&mut self) -> io::Result<()> {
        match self {
            Conn::Tcp(_) => Ok(()),
            #[cfg(feature = "tls")]
            Conn::Tls(tls) => tls.flush(),
        }
    }

    /// Whether the transport holds bytes not yet handed to the kernel.
    pub(crate) fn has_buffered_output(&self) -> bool {
        match self {
            Conn::Tcp(_) => false,
            #[cfg(feature = "tls")]
            Conn::Tls(tls) => tls.has_buffered_output(),
        }
    }

    /// Whether a transport handshake (TLS) is still under way.
    pub(crate) fn is_handshaking(&self) -> bool {
        match self {
            Conn::Tcp(_) => false,
            #[cfg(feature = "tls")]
            Conn::Tls(tls) => tls.is_handshaking(),
        }
    }

    /// Ends the sending side after what was written (TLS: `close_notify` first).
    pub(crate) fn shutdown_write(&mut self) {
        #[cfg(feature = "tls")]
        if let Conn::Tls(tls) = self {
            tls.close_notify();
        }
        let _ = self.socket().shutdown(Shutdown::Write);
    }

    /// Reads and discards what the peer has sent, so that closing the socket with unread
    /// input does not turn into a reset that could destroy data still on its way to the peer.
    pub(crate) fn discard_input(&mut self) {
        let mut scratch = [0; 4096];
        for _ in 0..16 {
            match self.socket().read(&mut scratch) {
                Ok(n) if n > 0 => continue,
                _ => return,
            }
        }
    }
}
