//! Per-connection control: an acceptor that wraps each accepted TCP stream so
//! a handler can abort its connection with a reset (RST), the
//! "connection reset" fault.

use axum_server::accept::Accept;
use socket2::SockRef;
use std::future::{Ready, ready};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Handle to the connection a request arrived on (in the request's extensions).
#[derive(Debug, Default)]
pub struct ConnCtl {
    reset: AtomicBool,
}

impl ConnCtl {
    /// The next read or write on this connection fails and the socket closes with RST.
    pub fn reset(&self) {
        self.reset.store(true, Ordering::SeqCst);
    }
}

/// A TCP stream that can be reset through its [`ConnCtl`].
#[derive(Debug)]
pub struct ResettableStream {
    inner: TcpStream,
    ctl: Arc<ConnCtl>,
}

impl ResettableStream {
    fn check(&self) -> io::Result<()> {
        if self.ctl.reset.load(Ordering::SeqCst) {
            // Linger 0 turns the close that follows into an RST.
            let _ = SockRef::from(&self.inner).set_linger(Some(Duration::ZERO));
            return Err(io::ErrorKind::ConnectionReset.into());
        }
        Ok(())
    }
}

impl AsyncRead for ResettableStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.check()?;
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for ResettableStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.check()?;
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.check()?;
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.check()?;
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Acceptor producing [`ResettableStream`]s and inserting their [`ConnCtl`]
/// into every request's extensions.
#[derive(Debug, Clone, Copy, Default)]
pub struct ResetAcceptor;

impl<S> Accept<TcpStream, S> for ResetAcceptor {
    type Stream = ResettableStream;
    type Service = CtlService<S>;
    type Future = Ready<io::Result<(Self::Stream, Self::Service)>>;

    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        let _ = stream.set_nodelay(true);
        let ctl = Arc::new(ConnCtl::default());
        ready(Ok((
            ResettableStream {
                inner: stream,
                ctl: ctl.clone(),
            },
            CtlService {
                inner: service,
                ctl,
            },
        )))
    }
}

/// Service wrapper adding `Arc<ConnCtl>` to request extensions.
#[derive(Debug, Clone)]
pub struct CtlService<S> {
    inner: S,
    ctl: Arc<ConnCtl>,
}

impl<S, B> tower_service::Service<axum::http::Request<B>> for CtlService<S>
where
    S: tower_service::Service<axum::http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: axum::http::Request<B>) -> Self::Future {
        req.extensions_mut().insert(self.ctl.clone());
        self.inner.call(req)
    }
}
