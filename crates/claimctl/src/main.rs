//! `claimctl`: the one binary. All logic lives in the library so tests drive the same entry point.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match claimctl::run(args, &mut out) {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            eprintln!("claimctl: {error:#}");
            ExitCode::from(2)
        }
    }
}
