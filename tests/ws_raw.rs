//! What every other-language client does: tungstenite's own client API and
//! hand-made frame bytes. Exact bytes both ways, and the close codes for bad
//! input, which close only that connection.
#![cfg(feature = "ws")]

#[path = "../examples/common/greet.rs"]
mod greet;
mod ws_support;

use std::net::TcpStream;

use framerpc::{Limits, Server, WsConfig};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::{Bytes, Message, WebSocket};
use ws_support::*;

/// `hello("bob")`, call id 7: len 7, CALL, flags 0, cmd 1, id 7, str "bob".
const HELLO_BOB: &[u8] = &[
    7, 0, 0, 0, 1, 0, 1, 0, 7, 0, 0, 0, 3, 0, 0, 0, b'b', b'o', b'b',
];
/// The REPLY: len 13, REPLY, cmd 1, id 7, str "hello bob".
const HELLO_BOB_REPLY: &[u8] = &[
    13, 0, 0, 0, 2, 0, 1, 0, 7, 0, 0, 0, 9, 0, 0, 0, b'h', b'e', b'l', b'l', b'o', b' ', b'b',
    b'o', b'b',
];
/// `add_2_words(2, 3)`, call id 8.
const ADD_2_3: &[u8] = &[8, 0, 0, 0, 1, 0, 3, 0, 8, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0];
/// The REPLY: u32 5.
const ADD_2_3_REPLY: &[u8] = &[4, 0, 0, 0, 2, 0, 3, 0, 8, 0, 0, 0, 5, 0, 0, 0];

/// The next data message, skipping pings and pongs.
fn next_data(ws: &mut WebSocket<TcpStream>) -> Message {
    loop {
        match ws.read().expect("read") {
            Message::Ping(_) | Message::Pong(_) => {}
            m => return m,
        }
    }
}

fn call(ws: &mut WebSocket<TcpStream>, frame: &[u8]) -> Vec<u8> {
    ws.send(Message::binary(frame.to_vec())).unwrap();
    match next_data(ws) {
        Message::Binary(b) => b.to_vec(),
        other => panic!("expected a binary reply, got {other:?}"),
    }
}

/// Reads until the server's close frame; returns its code.
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
fn ws_tungstenite_client_calls_hello_and_add_with_exact_bytes() {
    let s = serve_ws("/greet", greet::router());
    let mut ws = tung(s.addr(), "/greet", Some(&s.token())).unwrap();
    assert_eq!(call(&mut ws, HELLO_BOB), HELLO_BOB_REPLY);
    assert_eq!(call(&mut ws, ADD_2_3), ADD_2_3_REPLY);
    // The reserved ping echoes its payload.
    let ping = [3, 0, 0, 0, 1, 0, 0x02, 0xFF, 9, 0, 0, 0, b'a', b'b', b'c'];
    let pong = [3, 0, 0, 0, 2, 0, 0x02, 0xFF, 9, 0, 0, 0, b'a', b'b', b'c'];
    assert_eq!(call(&mut ws, &ping), pong);
    // A WebSocket ping gets its pong.
    ws.send(Message::Ping(Bytes::from_static(b"hb"))).unwrap();
    loop {
        match ws.read().unwrap() {
            Message::Pong(p) => {
                assert_eq!(&p[..], b"hb");
                break;
            }
            Message::Ping(_) => {}
            other => panic!("{other:?}"),
        }
    }
    ws.close(None).unwrap();
}

#[test]
fn ws_token_in_the_query_parameter_works() {
    let s = serve_ws("/greet", greet::router());
    let mut ws = tung(s.addr(), &format!("/greet?token={}", s.token()), None).unwrap();
    assert_eq!(call(&mut ws, ADD_2_3), ADD_2_3_REPLY);
}

#[test]
fn ws_unknown_command_gets_an_error_frame() {
    let s = serve_ws("/greet", greet::router());
    let mut ws = tung(s.addr(), "/greet", Some(&s.token())).unwrap();
    let reply = call(&mut ws, &[0, 0, 0, 0, 1, 0, 0x39, 0x05, 1, 0, 0, 0]);
    assert_eq!(&reply[4..12], &[3, 0, 0x39, 0x05, 1, 0, 0, 0]);
    assert_eq!(&reply[12..14], &[1, 0]); // UNKNOWN_COMMAND
}

#[test]
fn ws_text_message_closes_1003_and_only_that_connection() {
    let s = serve_ws("/greet", greet::router());
    let mut other = tung(s.addr(), "/greet", Some(&s.token())).unwrap();
    let mut ws = tung(s.addr(), "/greet", Some(&s.token())).unwrap();
    ws.send(Message::text("hello")).unwrap();
    assert_eq!(close_code(&mut ws), CloseCode::Unsupported);
    assert_eq!(call(&mut other, ADD_2_3), ADD_2_3_REPLY);
}

#[test]
fn ws_bad_len_closes_1002_and_only_that_connection() {
    let s = serve_ws("/greet", greet::router());
    let mut other = tung(s.addr(), "/greet", Some(&s.token())).unwrap();
    for bad in [
        // len says 9, the message carries 8 payload bytes
        &[9, 0, 0, 0, 1, 0, 3, 0, 8, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0][..],
        // len says 7, the message carries 8
        &[7, 0, 0, 0, 1, 0, 3, 0, 8, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0][..],
        // shorter than a header
        &[1, 2, 3][..],
        // unknown kind
        &[0, 0, 0, 0, 9, 0, 3, 0, 8, 0, 0, 0][..],
    ] {
        let mut ws = tung(s.addr(), "/greet", Some(&s.token())).unwrap();
        ws.send(Message::binary(bad.to_vec())).unwrap();
        assert_eq!(close_code(&mut ws), CloseCode::Protocol, "{bad:?}");
    }
    assert_eq!(call(&mut other, ADD_2_3), ADD_2_3_REPLY);
}

#[test]
fn ws_message_over_the_limit_closes_1009() {
    let s = serve_ws_with(
        Server::builder().limits(Limits::default().max_frame_len(1000)),
        WsConfig::new().mount("/greet", greet::router()),
    );
    let mut other = tung(s.addr(), "/greet", Some(&s.token())).unwrap();
    // A whole message exactly at the limit (1000 + 12) is fine...
    let mut at_limit = vec![0u8; 1012];
    at_limit[..12].copy_from_slice(&[232, 3, 0, 0, 1, 0, 0x02, 0xFF, 1, 0, 0, 0]);
    assert_eq!(call(&mut other, &at_limit).len(), 1012);
    // ...one byte more is refused with 1009.
    let mut ws = tung(s.addr(), "/greet", Some(&s.token())).unwrap();
    let mut over = vec![0u8; 1013];
    over[..12].copy_from_slice(&[233, 3, 0, 0, 1, 0, 0x02, 0xFF, 1, 0, 0, 0]);
    ws.send(Message::binary(over)).unwrap();
    assert_eq!(close_code(&mut ws), CloseCode::Size);
    // Far over the limit, with megabytes still in flight: the close frame
    // still arrives (the server drains instead of resetting).
    let mut ws = tung(s.addr(), "/greet", Some(&s.token())).unwrap();
    let mut huge = vec![0u8; 2 << 20];
    huge[..12].copy_from_slice(&[0xf4, 0xff, 0x1f, 0, 1, 0, 0x02, 0xFF, 1, 0, 0, 0]);
    ws.send(Message::binary(huge)).unwrap();
    assert_eq!(close_code(&mut ws), CloseCode::Size);
    assert_eq!(call(&mut other, ADD_2_3), ADD_2_3_REPLY);
}

#[test]
fn ws_fragmented_message_from_a_client_is_one_frame() {
    use tungstenite::protocol::frame::coding::{Data, OpCode};
    use tungstenite::protocol::frame::Frame;
    let s = serve_ws("/greet", greet::router());
    let mut ws = tung(s.addr(), "/greet", Some(&s.token())).unwrap();
    let (a, b) = HELLO_BOB.split_at(5);
    ws.send(Message::Frame(Frame::message(
        a.to_vec(),
        OpCode::Data(Data::Binary),
        false,
    )))
    .unwrap();
    ws.send(Message::Frame(Frame::message(
        b.to_vec(),
        OpCode::Data(Data::Continue),
        true,
    )))
    .unwrap();
    match next_data(&mut ws) {
        Message::Binary(r) => assert_eq!(&r[..], HELLO_BOB_REPLY),
        other => panic!("{other:?}"),
    }
}

#[test]
fn ws_client_close_is_answered() {
    let s = serve_ws("/greet", greet::router());
    let mut ws = tung(s.addr(), "/greet", Some(&s.token())).unwrap();
    assert_eq!(call(&mut ws, ADD_2_3), ADD_2_3_REPLY);
    ws.close(None).unwrap();
    loop {
        match ws.read() {
            Ok(Message::Close(_)) | Ok(_) => {}
            Err(tungstenite::Error::ConnectionClosed) => break,
            Err(e) => panic!("{e}"),
        }
    }
}
