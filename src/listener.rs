//! The HTTP listeners (webhook, console, ops), bounded: at most a given number of connections at
//! once, and a connection that sends nothing for [`IDLE`] is closed. Without the bound anyone who
//! can reach a port could hold idle or half-sent requests open without end, until the process runs
//! out of file descriptors, and the reconciler beside it (same process) could then open no
//! connection to PhonePe or MongoDB: settling would stop. Past the bound, new connections wait
//! in the kernel's backlog (no descriptor of ours) until one ends.

use std::future::Future as _;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

/// Connections the console serves at once, at most (a shop's staff needs a handful).
pub const CONSOLE_CONNECTIONS: usize = 64;
/// Connections the webhook serves at once, at most (PhonePe's callbacks are short requests).
pub const WEBHOOK_CONNECTIONS: usize = 100;
/// Connections the ops listener serves at once, at most (a scraper and a health check or two).
pub const OPS_CONNECTIONS: usize = 32;
/// A connection from which nothing arrives this long, while it is read, is closed (a request
/// that waits on PhonePe longer than this loses its connection, not its action: actions run
/// to their end on their own task).
pub const IDLE: Duration = Duration::from_secs(60);

/// The bounded listener.
pub struct Bounded {
    inner: TcpListener,
    slots: Arc<Semaphore>,
}

impl Bounded {
    pub fn new(inner: TcpListener, max_connections: usize) -> Bounded {
        Bounded {
            inner,
            slots: Arc::new(Semaphore::new(max_connections)),
        }
    }
}

impl Listener for Bounded {
    type Io = Held<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        // A free slot first: while every slot is taken, nothing more is accepted.
        let Ok(slot) = self.slots.clone().acquire_owned().await else {
            unreachable!("the connection slots are never closed");
        };
        loop {
            match self.inner.accept().await {
                Ok((stream, peer)) => return (Held::new(stream, Some(slot)), peer),
                Err(e) => {
                    // Out of descriptors, or a connection reset before it was accepted.
                    tracing::warn!(error = %e, "cannot accept a connection; retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// The client's socket address, for `ConnectInfo<Peer>`.
#[derive(Clone, Copy, Debug)]
pub struct Peer(pub SocketAddr);

impl Connected<IncomingStream<'_, Bounded>> for Peer {
    fn connect_info(stream: IncomingStream<'_, Bounded>) -> Peer {
        Peer(*stream.remote_addr())
    }
}

/// A connection holding its slot (given back when it closes) and its idle timer.
pub struct Held<S> {
    stream: S,
    _slot: Option<OwnedSemaphorePermit>,
    idle_for: Duration,
    idle: Pin<Box<Sleep>>,
}

impl<S> Held<S> {
    pub fn new(stream: S, slot: Option<OwnedSemaphorePermit>) -> Held<S> {
        Held::closing_after(stream, slot, IDLE)
    }

    fn closing_after(stream: S, slot: Option<OwnedSemaphorePermit>, idle_for: Duration) -> Held<S> {
        Held {
            stream,
            _slot: slot,
            idle_for,
            idle: Box::pin(tokio::time::sleep(idle_for)),
        }
    }

    fn active(&mut self) {
        let at = Instant::now() + self.idle_for;
        self.idle.as_mut().reset(at);
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Held<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.stream).poll_read(cx, buf) {
            Poll::Ready(r) => {
                if buf.filled().len() > before {
                    self.active();
                }
                Poll::Ready(r)
            }
            Poll::Pending => match self.idle.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "nothing arrived on the connection for too long",
                ))),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Held<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.stream).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.active();
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_connection_that_sends_nothing_is_closed_and_bytes_are_read_through() {
        let (mut client, server) = tokio::io::duplex(64);
        let mut held = Held::closing_after(server, None, Duration::from_millis(100));
        client.write_all(b"GET").await.expect("write");
        let mut buf = [0u8; 8];
        assert_eq!(held.read(&mut buf).await.expect("read"), 3);
        held.write_all(b"HTTP").await.expect("written through");
        // Then nothing: the read fails (the client is still there, silent).
        let err = held.read(&mut buf).await.expect_err("closed");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        drop(client);
    }

    #[tokio::test]
    async fn past_the_bound_nothing_more_is_accepted_until_a_connection_ends() {
        let tcp = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = tcp.local_addr().expect("addr");
        let mut listener = Bounded::new(tcp, 8);
        let mut clients = Vec::new();
        let mut held = Vec::new();
        for _ in 0..8 {
            clients.push(TcpStream::connect(addr).await.expect("connect"));
            held.push(listener.accept().await);
        }
        clients.push(TcpStream::connect(addr).await.expect("the kernel's backlog takes it"));
        let more = tokio::time::timeout(Duration::from_millis(300), listener.accept()).await;
        assert!(more.is_err(), "not accepted while every slot is held");
        drop(held.pop());
        let more = tokio::time::timeout(Duration::from_secs(30), listener.accept()).await;
        assert!(more.is_ok(), "accepted once a slot is free");
    }
}
