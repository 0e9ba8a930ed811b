//! The plain-socket limit: a std::net TCP ping-pong with a 4-byte length
//! prefix, thread per connection, the same work as framerpc's calls.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};

/// Starts a raw server on 127.0.0.1:0: a request of 8 bytes is summed as
/// two u32 (reply 4 bytes); any other request is echoed.
pub fn raw_server() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            std::thread::spawn(move || {
                s.set_nodelay(true).unwrap();
                let mut buf = Vec::new();
                let mut out = Vec::new();
                loop {
                    let mut len = [0u8; 4];
                    if s.read_exact(&mut len).is_err() {
                        return;
                    }
                    let n = u32::from_le_bytes(len) as usize;
                    buf.resize(n, 0);
                    if s.read_exact(&mut buf).is_err() {
                        return;
                    }
                    out.clear();
                    if n == 8 {
                        let a = u32::from_le_bytes(buf[0..4].try_into().unwrap());
                        let b = u32::from_le_bytes(buf[4..8].try_into().unwrap());
                        out.extend_from_slice(&4u32.to_le_bytes());
                        out.extend_from_slice(&a.wrapping_add(b).to_le_bytes());
                    } else {
                        out.extend_from_slice(&len);
                        out.extend_from_slice(&buf);
                    }
                    if s.write_all(&out).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// One raw client connection.
pub struct RawClient {
    s: TcpStream,
    out: Vec<u8>,
    buf: Vec<u8>,
}

impl RawClient {
    pub fn connect(addr: SocketAddr) -> Self {
        let s = TcpStream::connect(addr).unwrap();
        s.set_nodelay(true).unwrap();
        Self {
            s,
            out: Vec::new(),
            buf: Vec::new(),
        }
    }

    pub fn add(&mut self, a: u32, b: u32) -> u32 {
        self.out.clear();
        self.out.extend_from_slice(&8u32.to_le_bytes());
        self.out.extend_from_slice(&a.to_le_bytes());
        self.out.extend_from_slice(&b.to_le_bytes());
        self.s.write_all(&self.out).unwrap();
        let mut r = [0u8; 8];
        self.s.read_exact(&mut r).unwrap();
        u32::from_le_bytes(r[4..8].try_into().unwrap())
    }

    pub fn echo(&mut self, data: &[u8]) -> usize {
        self.out.clear();
        self.out
            .extend_from_slice(&(data.len() as u32).to_le_bytes());
        self.out.extend_from_slice(data);
        self.s.write_all(&self.out).unwrap();
        let mut len = [0u8; 4];
        self.s.read_exact(&mut len).unwrap();
        self.buf.resize(u32::from_le_bytes(len) as usize, 0);
        self.s.read_exact(&mut self.buf).unwrap();
        self.buf.len()
    }
}
