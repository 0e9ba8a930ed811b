//! What a user reads when something fails: every error names what failed,
//! the values and the limit or peer involved, and what to do. Each test
//! provokes one failure over a real socket on 127.0.0.1 and checks the
//! parts of the text that matter (names, numbers, hints).

mod support;

use std::error::Error as _;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

use framerpc::codec::{F64Codec, Map, BYTES, F64, U16, U32, UNIT};
use framerpc::frame::{encode_frame, Kind};
use framerpc::{
    Bytes, Client, Command, Disconnect, Error, ErrorCode, Limits, Router, Server, Side, Stage,
};
use support::{eventually, serve, serve_with, T};

const ADD: Command<(u32, u32), u32> = Command::new(3, "add_2_words", &(U32, U32), &U32);
const BLOB: Command<u32, Bytes> = Command::new(5, "blob", &U32, &BYTES);
const SLOW: Command<u32, u32> = Command::new(6, "slow", &U32, &U32);

fn router() -> Router {
    Router::new()
        .handle(&ADD, |(a, b)| Ok(a.wrapping_add(b)))
        .handle(&BLOB, |n| Ok(Bytes::from(vec![7u8; n as usize])))
        .handle_with(&SLOW, |ctx, ms| {
            for _ in 0..ms {
                if ctx.is_cancelled() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            Ok(ms)
        })
}

#[test]
fn error_is_at_most_32_bytes() {
    assert!(
        std::mem::size_of::<Error>() <= 32,
        "{}",
        std::mem::size_of::<Error>()
    );
}

#[test]
fn connection_refused_names_the_address() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    }; // closed: nothing listens there now
    let addr = format!("127.0.0.1:{port}");
    let e = Client::connect(addr.as_str()).unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, Error::Connect { .. }), "{text}");
    assert!(text.contains(&addr), "{text}");
    assert!(text.contains("refused"), "{text}");
    assert!(e.source().is_some(), "the socket error is the source");
}

#[test]
fn a_websocket_url_given_to_connect_says_to_use_connect_ws() {
    let e = Client::connect("ws://127.0.0.1:9/greet").unwrap_err();
    let text = e.to_string();
    assert!(text.contains("ws://127.0.0.1:9/greet"), "{text}");
    assert!(text.contains("Client::connect_ws"), "{text}");
}

#[test]
fn a_reply_over_the_clients_limit_is_too_large_on_this_side() {
    let srv = serve(router());
    let client = Client::builder()
        .timeout(T)
        .limits(Limits::default().max_frame_len(1024))
        .connect(srv.addr())
        .unwrap();
    let e = client.call(&BLOB, &4000).unwrap_err();
    match e {
        Error::TooLarge { len, max, side } => {
            assert_eq!((len, max, side), (4004, 1024, Side::Local));
        }
        ref other => panic!("{other}"),
    }
    let text = e.to_string();
    assert!(text.contains("4004") && text.contains("1024"), "{text}");
    assert!(text.contains("this side's"), "{text}");
    assert!(text.contains("Limits::max_frame_len"), "{text}");
    // The connection is gone, and later calls say why.
    let e = client.call(&ADD, &(1, 2)).unwrap_err();
    match e.disconnect_reason() {
        Some(Disconnect::TooLarge {
            len: 4004,
            max: 1024,
        }) => {}
        _ => panic!("{e}"),
    }
    assert!(
        e.to_string().contains("over this side's limit of 1024"),
        "{e}"
    );
}

#[test]
fn a_request_over_the_clients_limit_fails_locally_and_the_connection_lives() {
    let srv = serve(router());
    let client = Client::builder()
        .timeout(T)
        .limits(Limits::default().max_frame_len(64))
        .connect(srv.addr())
        .unwrap();
    const ECHO_LEN: Command<Bytes, u32> = Command::new(7, "echo_len", &BYTES, &U32);
    let e = client
        .call(&ECHO_LEN, &Bytes::from(vec![0u8; 100]))
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::TooLarge {
                len: 104,
                max: 64,
                side: Side::Local
            }
        ),
        "{e}"
    );
    assert_eq!(client.call(&ADD, &(2, 3)).unwrap(), 5);
}

#[test]
fn server_shutdown_is_the_reason_of_the_disconnect() {
    let srv = Server::bind("127.0.0.1:0", router()).unwrap();
    let client = Client::builder()
        .timeout(T)
        .connect(srv.local_addr())
        .unwrap();
    assert_eq!(client.call(&ADD, &(1, 1)).unwrap(), 2);
    srv.shutdown();
    eventually("the client sees the end", || !client.is_connected());
    let e = client.call(&ADD, &(1, 1)).unwrap_err();
    match e.disconnect_reason() {
        Some(Disconnect::Refused { code, message }) => {
            assert_eq!(*code, ErrorCode::SHUTTING_DOWN);
            assert!(message.contains("shutting down"), "{message}");
        }
        _ => panic!("{e}"),
    }
    assert!(e.to_string().contains("SHUTTING_DOWN"), "{e}");
}

#[test]
fn a_peer_that_closes_is_named_as_the_reason() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let t = std::thread::spawn(move || {
        let (s, _) = l.accept().unwrap();
        drop(s);
    });
    let client = Client::builder().timeout(T).connect(addr).unwrap();
    t.join().unwrap();
    eventually("the client sees the end", || !client.is_connected());
    let e = client.call(&ADD, &(1, 1)).unwrap_err();
    assert_eq!(e.disconnect_reason(), Some(&Disconnect::PeerClosed), "{e}");
    assert!(
        e.to_string().contains("the peer closed the connection"),
        "{e}"
    );
}

#[test]
fn closing_the_client_is_named_as_the_reason() {
    let srv = serve(router());
    let client = srv.client();
    client.close();
    let e = client.call(&ADD, &(1, 1)).unwrap_err();
    assert_eq!(e.disconnect_reason(), Some(&Disconnect::Closed), "{e}");
    assert!(e.to_string().contains("this side closed"), "{e}");
}

#[test]
fn a_silent_peer_is_named_with_the_setting() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let t = std::thread::spawn(move || {
        let (s, _) = l.accept().unwrap();
        let _ = rx.recv(); // holds the socket open, never answers
        drop(s);
    });
    let client = Client::builder()
        .timeout(T)
        .limits(
            Limits::default()
                .heartbeat(Some((Duration::from_millis(20), Duration::from_millis(80)))),
        )
        .connect(addr)
        .unwrap();
    eventually("the client drops the silent peer", || {
        !client.is_connected()
    });
    let e = client.call(&ADD, &(1, 1)).unwrap_err();
    assert!(
        matches!(e.disconnect_reason(), Some(Disconnect::Silent { .. })),
        "{e}"
    );
    assert!(e.to_string().contains("Limits::heartbeat"), "{e}");
    tx.send(()).unwrap();
    t.join().unwrap();
}

#[test]
fn a_peer_that_breaks_the_protocol_is_named_as_the_reason() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let t = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut f = encode_frame(Kind::Reply, 1, 1, b"");
        f[4] = 9; // no such kind
        s.write_all(&f).unwrap();
        let mut sink = [0u8; 64];
        s.set_read_timeout(Some(T)).unwrap();
        while matches!(s.read(&mut sink), Ok(n) if n > 0) {}
    });
    let client = Client::builder().timeout(T).connect(addr).unwrap();
    eventually("the client ends the connection", || !client.is_connected());
    let e = client.call(&ADD, &(1, 1)).unwrap_err();
    assert!(
        matches!(e.disconnect_reason(), Some(Disconnect::Protocol(_))),
        "{e}"
    );
    assert!(e.to_string().contains("unknown frame kind 9"), "{e}");
    t.join().unwrap();
}

#[test]
fn unauthorized_on_raw_tcp_points_at_the_token_setting() {
    let srv = serve_with(Server::builder().token("s3cret"), router());
    let client = Client::builder().timeout(T).connect(srv.addr()).unwrap();
    let e = client.call(&ADD, &(1, 1)).unwrap_err();
    // The client's first frame (`identify`, one way) already ended the
    // connection, so the call finds it closed, for that reason (or, when
    // the call went out first, is answered UNAUTHORIZED itself).
    let unauthorized = e.code() == Some(ErrorCode::UNAUTHORIZED)
        || matches!(e.disconnect_reason(),
            Some(Disconnect::Refused { code, .. }) if *code == ErrorCode::UNAUTHORIZED);
    assert!(unauthorized, "{e}");
    assert!(e.to_string().contains("ClientBuilder::token"), "{e}");
    // The token itself is never echoed, and the right one works.
    assert!(!e.to_string().contains("s3cret"), "{e}");
    let ok = Client::builder()
        .timeout(T)
        .token("s3cret")
        .connect(srv.addr())
        .unwrap();
    assert_eq!(ok.call(&ADD, &(1, 1)).unwrap(), 2);
}

#[test]
fn unknown_command_names_the_command_and_hints_connect_checked() {
    const MOVE_TO: Command<f64, f64> = Command::new(42, "move_to", &F64, &F64);
    let srv = serve(router());
    let client = srv.client();
    let e = client.call(&MOVE_TO, &1.0).unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::UNKNOWN_COMMAND), "{e}");
    let text = e.to_string();
    assert!(text.contains("unknown command 42"), "{text}");
    assert!(text.contains("\"move_to\""), "{text}");
    assert!(text.contains("connect_checked"), "{text}");
    // The check at connect says the same before any call.
    let e = Client::connect_checked(srv.addr(), &[&MOVE_TO]).unwrap_err();
    assert!(matches!(e, Error::SchemaMismatch(_)), "{e}");
    assert!(e.to_string().contains("no command with id 42"), "{e}");
}

#[test]
fn a_server_built_from_other_specs_names_the_command_and_schema() {
    // The client's spec of id 3 takes three words; the server's two.
    const ADD3: Command<(u32, u32, u64), u32> =
        Command::new(3, "add_2_words", &(U32, U32, framerpc::codec::U64), &U32);
    let srv = serve(router());
    let client = srv.client();
    let e = client.call(&ADD3, &(1, 2, 3)).unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::BAD_PAYLOAD), "{e}");
    let text = e.to_string();
    assert!(text.contains("\"add_2_words\" (id 3)"), "{text}");
    assert!(text.contains("(u32,u32)"), "{text}");
    assert!(text.contains("8 trailing bytes"), "{text}");
    assert!(text.contains("connect_checked"), "{text}");

    // A reply that does not decode with the client's response codec.
    const ADD_U16: Command<(u32, u32), u16> = Command::new(3, "add_2_words", &(U32, U32), &U16);
    let e = client.call(&ADD_U16, &(1, 2)).unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, Error::SchemaMismatch(_)), "{text}");
    assert!(text.contains("\"add_2_words\" (id 3)"), "{text}");
    assert!(text.contains("u16"), "{text}");
    assert!(text.contains("2 trailing bytes"), "{text}");
    assert!(e.source().is_some(), "the decode error is the source");
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Pos {
    x: f64,
    y: f64,
}

#[test]
fn a_struct_whose_fields_were_swapped_fails_the_connect_check() {
    const POS: Map<(F64Codec, F64Codec), Pos> =
        Map::new((F64, F64), |(x, y)| Ok(Pos { x, y }), |p| (p.x, p.y)).named("Pos", &["x", "y"]);
    const SWAPPED: Map<(F64Codec, F64Codec), Pos> =
        Map::new((F64, F64), |(y, x)| Ok(Pos { x, y }), |p| (p.y, p.x)).named("Pos", &["y", "x"]);
    const MOVE: Command<Pos, Pos> = Command::new(8, "move_to", &POS, &POS);
    const MOVE_OLD: Command<Pos, Pos> = Command::new(8, "move_to", &SWAPPED, &SWAPPED);
    let srv = serve(Router::new().handle(&MOVE, Ok));
    let client = Client::connect_checked(srv.addr(), &[&MOVE]).unwrap();
    let p = Pos { x: 1.0, y: 2.0 };
    assert_eq!(client.call(&MOVE, &p).unwrap(), p);
    let e = Client::connect_checked(srv.addr(), &[&MOVE_OLD]).unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, Error::SchemaMismatch(_)), "{text}");
    assert!(text.contains("Pos{y:f64,x:f64}"), "{text}");
    assert!(text.contains("Pos{x:f64,y:f64}"), "{text}");
}

#[test]
fn a_call_timeout_names_the_command_and_the_call() {
    let srv = serve(router());
    let client = srv.client();
    let e = client
        .call_timeout(&SLOW, &5_000, Duration::from_millis(30))
        .unwrap_err();
    match &e {
        Error::Timeout(t) => {
            assert_eq!(t.stage, Stage::Call);
            assert_eq!(&*t.what, "slow");
            assert!(t.id > 0);
            assert!(t.after <= Duration::from_millis(30), "{:?}", t.after);
        }
        other => panic!("{other}"),
    }
    assert!(e.to_string().contains("may still be running"), "{e}");
    assert_eq!(e.code(), Some(ErrorCode::TIMEOUT));
}

#[test]
fn debug_reads_like_display_for_main() {
    let srv = serve(router());
    let client = srv.client();
    client.close();
    let e = client.call(&ADD, &(1, 1)).unwrap_err();
    assert_eq!(format!("{e:?}"), e.to_string());
    assert!(!format!("{e:?}").contains("Disconnected("), "{e:?}");
}

#[test]
fn every_error_type_is_a_std_error() {
    fn is_error<E: std::error::Error + Send + Sync + 'static>() {}
    is_error::<Error>();
    is_error::<framerpc::DecodeError>();
    is_error::<framerpc::ProtocolError>();
    is_error::<framerpc::Mismatch>();
    is_error::<framerpc::Disconnect>();
    is_error::<framerpc::Timeout>();
    let _ = UNIT; // (keeps the codec import list honest)
}

#[cfg(feature = "msgpack")]
#[test]
fn a_dynamic_type_mismatch_keeps_what_was_found() {
    let e = Error::from(framerpc::dynamic::TypeMismatch::new(
        "float32 array of 1 dimension",
        "float64 array of shape (2, 2)",
    ));
    let text = e.to_string();
    assert!(
        text.contains("expected float32 array of 1 dimension"),
        "{text}"
    );
    assert!(
        text.contains("found float64 array of shape (2, 2)"),
        "{text}"
    );
    assert_eq!(e.code(), Some(ErrorCode::BAD_PAYLOAD));
}

#[cfg(feature = "ws")]
mod ws {
    use super::*;
    use framerpc::WsConfig;

    #[test]
    fn raw_tcp_on_a_websocket_only_port_says_where_the_commands_are() {
        let srv = serve_with(
            Server::builder().ws(WsConfig::new().open().mount("/dev", router())),
            Router::new(),
        );
        let client = srv.client();
        let e = client.call(&ADD, &(1, 1)).unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::UNKNOWN_COMMAND), "{e}");
        let text = e.to_string();
        assert!(text.contains("WebSocket"), "{text}");
        assert!(text.contains(&format!("ws://{}/dev", srv.addr())), "{text}");
        assert!(text.contains("Client::connect_ws"), "{text}");
    }

    #[test]
    fn raw_tcp_on_a_port_with_raw_tcp_off_is_told_why_it_is_closed() {
        let srv = serve_with(
            Server::builder().ws(WsConfig::new()
                .open()
                .raw_tcp(false)
                .mount("/dev", router())),
            Router::new(),
        );
        let client = srv.client();
        let e = client.call(&ADD, &(1, 1)).unwrap_err();
        match e.disconnect_reason() {
            Some(Disconnect::Refused { code, message }) => {
                assert_eq!(*code, ErrorCode::PROTOCOL);
                assert!(message.contains("raw_tcp(false)"), "{message}");
                assert!(message.contains("/dev"), "{message}");
            }
            _ => panic!("{e}"),
        }
    }

    #[test]
    fn http_401_points_at_the_token_and_never_echoes_it() {
        let srv = serve_with(
            Server::builder()
                .token("s3cret")
                .ws(WsConfig::new().mount("/dev", router())),
            Router::new(),
        );
        let url = format!("ws://{}/dev?token=wrong-one", srv.addr());
        let e = Client::builder().timeout(T).connect_ws(&url).unwrap_err();
        let text = e.to_string();
        assert!(matches!(e, Error::Handshake(_)), "{text}");
        assert!(text.contains("401"), "{text}");
        assert!(text.contains("ClientBuilder::token"), "{text}");
        assert!(text.contains(&format!("ws://{}/dev", srv.addr())), "{text}");
        assert!(!text.contains("wrong-one"), "{text}");
    }

    #[test]
    fn a_handshake_timeout_has_the_timeout_shape() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let t = std::thread::spawn(move || {
            let (s, _) = l.accept().unwrap();
            let _ = rx.recv(); // reads nothing, answers nothing
            drop(s);
        });
        let url = format!("ws://{addr}/dev");
        let e = Client::builder()
            .connect_timeout(Duration::from_millis(200))
            .connect_ws(&url)
            .unwrap_err();
        match &e {
            Error::Timeout(t) => {
                assert_eq!(t.stage, Stage::Handshake);
                assert_eq!(&*t.what, url.as_str());
                assert_eq!(t.after, Duration::from_millis(200));
            }
            other => panic!("{other}"),
        }
        assert!(e.to_string().contains("connect_timeout"), "{e}");
        tx.send(()).unwrap();
        t.join().unwrap();
    }
}
