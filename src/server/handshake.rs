//! [`Handshaking`]: a connection that must open HTTP/2 within a deadline.
//! hyper and h2 wait for the client's connection preface without a timer,
//! so a peer that connects and sends nothing would hold a socket and a task
//! for as long as it likes; this closes it once the deadline passes. On a
//! TLS listener the TLS handshake runs under the same deadline first
//! ([`super::listen`]), and this counts the decrypted preface.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};
use tonic::transport::server::Connected;

/// The shortest client connection preface: the 24-byte magic
/// (`PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`) and the header of the SETTINGS frame
/// that must follow it (RFC 9113 §3.4).
pub const PREFACE_BYTES: usize = 24 + 9;

/// A connection whose reads fail with `TimedOut` if fewer than
/// [`PREFACE_BYTES`] have arrived when its deadline passes; after that it is
/// the connection itself, at the cost of one branch per read.
#[derive(Debug)]
pub struct Handshaking<IO> {
    io: IO,
    /// Until the preface is in.
    deadline: Option<Pin<Box<Sleep>>>,
    seen: usize,
}

impl<IO> Handshaking<IO> {
    /// `io`, which must send its preface by `deadline` (for TLS, the
    /// deadline the TLS handshake already ran under: one budget for both).
    pub fn until(io: IO, deadline: Instant) -> Self {
        Self {
            io,
            deadline: Some(Box::pin(tokio::time::sleep_until(deadline))),
            seen: 0,
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Handshaking<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        let Some(deadline) = &mut this.deadline else {
            return polled;
        };
        match polled {
            Poll::Ready(Ok(())) => {
                this.seen = this
                    .seen
                    .saturating_add(buf.filled().len().saturating_sub(before));
                if this.seen >= PREFACE_BYTES {
                    this.deadline = None;
                }
                Poll::Ready(Ok(()))
            }
            // Waiting for bytes: wake up at the deadline too.
            Poll::Pending if deadline.as_mut().poll(cx).is_ready() => {
                this.deadline = None;
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no HTTP/2 connection preface before the handshake timeout",
                )))
            }
            other => other,
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Handshaking<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

impl<IO: Connected> Connected for Handshaking<IO> {
    type ConnectInfo = IO::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_silent_peer_times_out_and_a_preface_disarms_the_deadline() {
        let timeout = Duration::from_millis(100);
        let (mut client, server) = tokio::io::duplex(64);
        let mut server = Handshaking::until(server, Instant::now() + timeout);
        client.write_all(&[0; 10]).await.unwrap();
        let mut buf = [0; 64];
        assert_eq!(server.read(&mut buf).await.unwrap(), 10);
        // Ten bytes are not a preface: the deadline still holds.
        let err = server.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);

        let (mut client, server) = tokio::io::duplex(64);
        let mut server = Handshaking::until(server, Instant::now() + timeout);
        client.write_all(&[0; PREFACE_BYTES]).await.unwrap();
        assert_eq!(server.read(&mut buf).await.unwrap(), PREFACE_BYTES);
        tokio::time::sleep(timeout * 3).await;
        client.write_all(b"later").await.unwrap();
        assert_eq!(server.read(&mut buf).await.unwrap(), 5);
    }
}
