//! The greet commands: fixed, because clients in other languages are
//! tested against them. Server and client both include this module.
#![allow(dead_code)]

use framerpc::codec::{STR, U32, UNIT};
use framerpc::{Command, Router};

/// `hello(name) -> "hello NAME"`
pub const HELLO: Command<String, String> = Command::new(1, "hello", &STR, &STR);
/// `goodbye(name) -> "goodbye NAME"`
pub const GOODBYE: Command<String, String> = Command::new(2, "goodbye", &STR, &STR);
/// `add_2_words(a, b) -> a + b` (wrapping)
pub const ADD_2_WORDS: Command<(u32, u32), u32> = Command::new(3, "add_2_words", &(U32, U32), &U32);
/// `func_no_args() -> ()`
pub const FUNC_NO_ARGS: Command<(), ()> = Command::new(4, "func_no_args", &UNIT, &UNIT);

/// The greet router.
pub fn router() -> Router {
    Router::new()
        .handle(&HELLO, |name| Ok(format!("hello {name}")))
        .handle(&GOODBYE, |name| Ok(format!("goodbye {name}")))
        .handle(&ADD_2_WORDS, |(a, b)| Ok(a.wrapping_add(b)))
        .handle(&FUNC_NO_ARGS, |()| Ok(()))
}
