//! The simulated device's commands: a motor with a position and a camera.
//! Server and client both include this module.
#![allow(dead_code)]

use framerpc::codec::{BYTES, F64, U16, U64, UNIT};
use framerpc::Command;

/// Moves the motor to a position (mm); returns where it ended up.
pub const MOVE_TO: Command<f64, f64> = Command::new(1, "move_to", &F64, &F64);
/// The motor's position (mm).
pub const POSITION: Command<(), f64> = Command::new(2, "position", &UNIT, &F64);
/// Captures a grey image of `width x height` bytes.
pub const CAPTURE: Command<(u16, u16), bytes::Bytes> =
    Command::new(3, "capture", &(U16, U16), &BYTES);
/// Stops the motor.
pub const STOP: Command<(), ()> = Command::new(4, "stop", &UNIT, &UNIT);
/// Frames captured since the server started.
pub const FRAMES: Command<(), u64> = Command::new(5, "frames", &UNIT, &U64);
