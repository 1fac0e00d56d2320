//! A plain HTTP/1.1 GET on loopback (the metrics endpoint), with nothing between the test
//! and the bytes the agent sends: the status code, the head and the body, whose length
//! must be the `Content-Length` the head announces.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

#[derive(Debug)]
pub struct Response {
    pub code: u16,
    pub head: String,
    pub body: String,
}

/// `GET path` from `127.0.0.1:port` (a response must come within 10 s).
pub fn get(port: u16, path: &str) -> std::io::Result<Response> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: text/plain\r\n\r\n")
            .as_bytes(),
    )?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let response = String::from_utf8(response).map_err(std::io::Error::other)?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no end of headers"))?;
    let code = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other("no status code"))?;
    let length: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .ok_or_else(|| std::io::Error::other("no Content-Length"))?;
    assert_eq!(length, body.len(), "Content-Length");
    Ok(Response {
        code,
        head: head.to_owned(),
        body: body.to_owned(),
    })
}

/// A free TCP port on loopback (bound and released; another process could take it in
/// between, which tests accept).
pub fn free_loopback_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
