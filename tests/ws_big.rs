//! Big and oddly shaped WebSocket messages: the reader's own frame parsing
//! (small messages in the read buffer, big ones in a buffer of their own,
//! fragments, masks at every offset), and the client's handling of frames
//! that arrive along with the 101 answer.
#![cfg(feature = "ws")]

#[path = "../examples/common/greet.rs"]
mod greet;
mod ws_support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

use bytes::Bytes;
use framerpc::codec::BYTES;
use framerpc::{Client, Command, Router};
use tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tungstenite::protocol::frame::Frame;
use tungstenite::protocol::Role;
use tungstenite::{Message, WebSocket};
use ws_support::*;

const ECHO: Command<Bytes, Bytes> = Command::new(13, "echo", &BYTES, &BYTES);

fn pattern(n: usize, seed: usize) -> Vec<u8> {
    (0..n).map(|i| ((i * 31 + seed) % 251) as u8).collect()
}

/// A framerpc `ping` CALL (cmd 0xFF02, echoed in the REPLY) with `payload`.
fn ping_frame(id: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = (payload.len() as u32).to_le_bytes().to_vec();
    f.extend_from_slice(&[1, 0, 0x02, 0xFF, id, 0, 0, 0]);
    f.extend_from_slice(payload);
    f
}

fn next_data(ws: &mut WebSocket<TcpStream>) -> Message {
    loop {
        match ws.read().expect("read") {
            Message::Ping(_) | Message::Pong(_) => {}
            m => return m,
        }
    }
}

fn close_code(ws: &mut WebSocket<TcpStream>) -> CloseCode {
    loop {
        match ws.read() {
            Ok(Message::Close(Some(f))) => return f.code,
            Ok(Message::Close(None)) => panic!("close without a code"),
            Ok(_) => {}
            Err(e) => panic!("connection ended without a close frame: {e}"),
        }
    }
}

#[test]
fn framerpc_client_echoes_big_and_odd_sizes_twice() {
    let s = serve_ws("/echo", Router::new().handle(&ECHO, Ok));
    let client = s.client("/echo");
    // Around the read buffer (4 KiB), the first message buffer (256 KiB),
    // the fragment size (1 MiB, masked in 64 KiB pieces) and kernel pages.
    let sizes = [
        0,
        1,
        4 * 1024 - 30,
        4 * 1024 + 5,
        8 * 1024 - 30,
        8 * 1024 + 5,
        300_001,
        (1 << 20) - 12,
        (1 << 20) + 3,
        (5 << 20) + 7,
    ];
    for round in 0..2 {
        for (k, &n) in sizes.iter().enumerate() {
            let data = Bytes::from(pattern(n, k + round));
            let back = client.call(&ECHO, &data).unwrap();
            assert!(back == data, "size {n}, round {round}");
        }
    }
}

#[test]
fn one_frame_and_fragmented_messages_from_tungstenite() {
    let s = serve_ws("/greet", greet::router());
    let mut ws = tung(s.addr(), "/greet", Some(&s.token())).unwrap();
    // One 3 MiB frame (what Python clients send).
    let payload = pattern(3 << 20, 1);
    ws.send(Message::binary(ping_frame(1, &payload))).unwrap();
    match next_data(&mut ws) {
        Message::Binary(b) => {
            assert_eq!(&b[..12], &[0, 0, 0x30, 0, 2, 0, 0x02, 0xFF, 1, 0, 0, 0]);
            assert!(b[12..] == payload[..]);
        }
        other => panic!("{other:?}"),
    }
    // Fragments: the first shorter than a framerpc header, a ping between
    // two of them.
    let payload = pattern((2 << 20) + 1, 2);
    let msg = ping_frame(2, &payload);
    let pieces = [&msg[..5], &msg[5..(1 << 20)], &msg[(1 << 20)..]];
    for (i, p) in pieces.iter().enumerate() {
        let opcode = if i == 0 {
            OpCode::Data(Data::Binary)
        } else {
            OpCode::Data(Data::Continue)
        };
        let fin = i == pieces.len() - 1;
        ws.send(Message::Frame(Frame::message(p.to_vec(), opcode, fin)))
            .unwrap();
        if i == 1 {
            ws.send(Message::Ping(Bytes::from_static(b"mid"))).unwrap();
        }
    }
    let mut pong = false;
    loop {
        match ws.read().unwrap() {
            Message::Pong(p) => {
                assert_eq!(&p[..], b"mid");
                pong = true;
            }
            Message::Binary(b) => {
                assert_eq!(&b[4..12], &[2, 0, 0x02, 0xFF, 2, 0, 0, 0]);
                assert!(b[12..] == payload[..]);
                break;
            }
            Message::Ping(_) => {}
            other => panic!("{other:?}"),
        }
    }
    // The pong may follow the reply, never get lost.
    while !pong {
        if let Message::Pong(p) = ws.read().unwrap() {
            assert_eq!(&p[..], b"mid");
            pong = true;
        }
    }
    // Still serving small calls.
    let small = ping_frame(3, b"abc");
    ws.send(Message::binary(small.clone())).unwrap();
    match next_data(&mut ws) {
        Message::Binary(b) => assert_eq!(&b[12..], b"abc"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn big_messages_whose_len_disagrees_close_1002() {
    let s = serve_ws("/greet", greet::router());
    // One frame of 2 MiB whose header claims one byte more.
    let mut ws = tung(s.addr(), "/greet", Some(&s.token())).unwrap();
    let mut f = ping_frame(1, &vec![0u8; 2 << 20]);
    f[0] = 1;
    f[2] = 0x20;
    ws.send(Message::binary(f)).unwrap();
    assert_eq!(close_code(&mut ws), CloseCode::Protocol);
    // Fragments that run past what the header claims.
    let mut ws = tung(s.addr(), "/greet", Some(&s.token())).unwrap();
    let f = ping_frame(1, &vec![0u8; 1 << 20]);
    ws.send(Message::Frame(Frame::message(
        f.clone(),
        OpCode::Data(Data::Binary),
        false,
    )))
    .unwrap();
    ws.send(Message::Frame(Frame::message(
        vec![0u8; 100],
        OpCode::Data(Data::Continue),
        true,
    )))
    .unwrap();
    assert_eq!(close_code(&mut ws), CloseCode::Protocol);
    // Fragments whose header claims more than the limit: 1009.
    let mut ws = tung(s.addr(), "/greet", Some(&s.token())).unwrap();
    let mut f = ping_frame(1, &[0u8; 100]);
    f[..4].copy_from_slice(&u32::MAX.to_le_bytes());
    ws.send(Message::Frame(Frame::message(
        f,
        OpCode::Data(Data::Binary),
        false,
    )))
    .unwrap();
    assert_eq!(close_code(&mut ws), CloseCode::Size);
}

#[test]
fn client_keeps_frames_that_came_with_the_101() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        s.set_read_timeout(Some(T)).unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            s.read_exact(&mut byte).unwrap();
            head.push(byte[0]);
        }
        let head = String::from_utf8(head).unwrap();
        let key = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("sec-websocket-key")
                    .then(|| v.trim().to_owned())
            })
            .unwrap();
        let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
        let mut answer = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {accept}\r\n\r\n"
        )
        .into_bytes();
        // A ping in the same write as the answer.
        answer.extend_from_slice(&[0x89, 2, b'h', b'i']);
        s.write_all(&answer).unwrap();
        let mut ws = WebSocket::from_raw_socket(s, Role::Server, None);
        loop {
            match ws.read().unwrap() {
                Message::Pong(p) => return p,
                Message::Close(_) => panic!("closed before the pong"),
                _ => {}
            }
        }
    });
    let client = Client::builder()
        .timeout(T)
        .connect_ws(&format!("ws://{addr}/x"))
        .unwrap();
    assert_eq!(&server.join().unwrap()[..], b"hi");
    drop(client);
}
