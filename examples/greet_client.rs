//! Calls every greet command once.
//!
//! ```text
//! cargo run --example greet_client -- 127.0.0.1:7878
//! ```

#[path = "common/greet.rs"]
mod greet;

use greet::{ADD_2_WORDS, FUNC_NO_ARGS, GOODBYE, HELLO};

fn main() -> Result<(), framerpc::Error> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:7878".into());
    let client = framerpc::Client::connect_checked(
        addr.as_str(),
        &[&HELLO, &GOODBYE, &ADD_2_WORDS, &FUNC_NO_ARGS],
    )?;
    println!("{}", client.call(&HELLO, &"bob".to_string())?);
    println!("{}", client.call(&GOODBYE, &"bob".to_string())?);
    println!("2 + 3 = {}", client.call(&ADD_2_WORDS, &(2, 3))?);
    client.call(&FUNC_NO_ARGS, &())?;
    println!("func_no_args: ok");
    for c in client.list()? {
        println!(
            "  {:>5}  {:<12} {} -> {}",
            c.id, c.name, c.request_schema, c.response_schema
        );
    }
    Ok(())
}
